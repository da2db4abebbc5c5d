//! Dumps and restores through the PostgreSQL client tools (on the host, or
//! in the database container in bundled mode), with files in granted fs
//! directories: a dump appears under its name only once it is complete
//! and readable, with its size and SHA-256 read back from the same
//! descriptor.

use sha2::{Digest, Sha256};

use super::super::bindings::opshost::plugin::db::{DumpInfo, DumpOptions, RestoreOptions};
use super::super::fs::{checked_path, AtomicFile, DirHandle};
use super::super::{CapError, RunContext};
use super::connect::{self, Target};
use super::{admin, gate, session, tools};
use crate::policy::DbLevel;

/// `pg_dump -Fc` of the granted database into `dir/path`.
pub(super) async fn dump(
    run: &RunContext,
    name: &str,
    dir: &DirHandle,
    path: &str,
    options: &DumpOptions,
) -> Result<DumpInfo, CapError> {
    let rel = checked_path(dir.name(), path, false)?;
    let (db, runner) = run.db_target(name, DbLevel::Admin).await?;
    let mut file = AtomicFile::create(dir.cap_dir(), rel)?;
    // The plugin is inside this one call for the whole dump: show its
    // bytes growing on the current progress step meanwhile.
    let watched = file.std_handle()?;
    let output = run.output.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            if let Ok(meta) = watched.metadata() {
                output.advance(meta.len());
            }
        }
    });
    let dumped = tools::dump(
        &runner,
        &db,
        options.snapshot.as_deref(),
        file.std_handle()?,
    )
    .await;
    ticker.abort();
    dumped?;
    // Nothing is named `path` until the dump is complete and readable.
    tools::contents(&runner, file.std_handle_from_start()?).await?;
    let (size, sha256) = digest(&mut file.std_handle_from_start()?)?;
    let version = session::server_version(&connect::connect(&db).await?, name).await?;
    if options.durable {
        file.commit()?;
    } else {
        file.commit_unsynced()?;
    }
    Ok(DumpInfo {
        size,
        sha256,
        server_version: version,
    })
}

/// Plan mode's answer to a dump: nothing written, size 0 and the SHA-256
/// of nothing; the server's version is read (a read acts), so a plan
/// still fails where the database cannot be reached.
pub(super) async fn planned(
    run: &RunContext,
    name: &str,
    dir: &DirHandle,
    path: &str,
) -> Result<DumpInfo, CapError> {
    checked_path(dir.name(), path, false)?;
    let (db, _) = run.db_target(name, DbLevel::Admin).await?;
    let version = session::server_version(&connect::connect(&db).await?, name).await?;
    Ok(DumpInfo {
        size: 0,
        sha256: hex::encode(Sha256::digest(b"")),
        server_version: version,
    })
}

/// `pg_dump --schema-only` of the granted database.
pub(super) async fn schema(run: &RunContext, name: &str) -> Result<Vec<u8>, CapError> {
    let (db, runner) = run.db_target(name, DbLevel::Read).await?;
    tools::schema(&runner, &db).await
}

/// Where a restore goes: the granted database, or a sibling the grant
/// reaches (`into-database`), on the resource's server.
pub(super) struct Restore {
    db: Target,
    runner: tools::Runner,
    into: String,
}

pub(super) async fn restore_target(
    run: &RunContext,
    name: &str,
    options: &RestoreOptions,
) -> Result<Restore, CapError> {
    let (db, runner) = run.db_target(name, DbLevel::Admin).await?;
    let into = options
        .into_database
        .clone()
        .unwrap_or_else(|| db.dbname().to_string());
    gate::check_database_name(db.dbname(), &into, name)?;
    Ok(Restore { db, runner, into })
}

/// `pg_restore` of `dir/path` (a sibling database is created first if
/// missing, as the WIT promises).
pub(super) async fn restore(
    to: &Restore,
    name: &str,
    dir: &DirHandle,
    path: &str,
    options: &RestoreOptions,
) -> Result<(), CapError> {
    let rel = checked_path(dir.name(), path, false)?;
    let file = dir.cap_dir().open(rel)?.into_std();
    if to.into != to.db.dbname() {
        admin::ensure(&to.db, name, &to.into).await?;
    }
    tools::restore(
        &to.runner,
        &to.db.with_dbname(&to.into),
        file,
        options.jobs,
        options.no_owner,
    )
    .await
}

/// A dump's table of contents. Reading it needs no server: the host's tool.
pub(super) async fn contents(dir: &DirHandle, path: &str) -> Result<Vec<String>, CapError> {
    let rel = checked_path(dir.name(), path, false)?;
    let file = dir.cap_dir().open(rel)?.into_std();
    tools::contents(&tools::Runner::Host, file).await
}

/// A dump file: SHA-256 and size, read back through the same descriptor.
fn digest(file: &mut std::fs::File) -> Result<(u64, String), CapError> {
    use std::io::{Read, Seek};
    file.rewind()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}
