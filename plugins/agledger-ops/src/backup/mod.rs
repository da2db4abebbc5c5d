//! The backup itself: snapshot, dump, pack, retention. The backup
//! operation and the upgrade's pre-upgrade backup both run [`take`]; the
//! caller holds the deployment lock.

pub mod retention;
mod verified;

use opshost_sdk::db::{self, Value};
use opshost_sdk::fs::{Dir, EntryKind, MemberSource};
use opshost_sdk::io::ReadStream;
use opshost_sdk::{describe, fail, progress, web, Context, Result};
use serde_json::json;

use crate::vault::checkpoint;
use crate::{artifact, clock};
use retention::Found;
use verified::Verified;

/// What the operator asked of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Keep the newest N complete backups.
    pub keep: usize,
    /// Mark this backup as an upgrade's rollback point (never pruned).
    pub rollback_point: bool,
    /// Remove what killed backups left instead of only reporting it.
    pub clean_interrupted: bool,
}

/// A backup made, verified and retained.
pub struct Taken {
    /// `backup-<stamp>.tar.gz` in the backup directory.
    pub name: String,
    pub made: Made,
    /// Backups retention removed.
    pub removed: Vec<String>,
    /// Leftovers of killed backups: removed (`clean_interrupted`) or found.
    pub swept: Vec<String>,
    pub interrupted: Vec<String>,
}

/// Make a backup in `dir`, then apply retention. The caller holds the
/// deployment lock (so leftovers found are a dead run's).
pub fn take(dir: &Dir, opts: &Options) -> Result<Taken> {
    progress::step("checking the backup directory", None);
    let (interrupted, swept) = leftovers(dir, opts.clean_interrupted)?;

    // Names have one-second resolution: never reuse one.
    let mut started = clock::now();
    let mut attempts = 0;
    while dir
        .stat(&artifact::file_name(&clock::stamp(started)))
        .is_ok()
    {
        attempts += 1;
        if attempts > 3 {
            return Err(fail(format!(
                "{} already exists and the clock does not move on: check the system time",
                artifact::file_name(&clock::stamp(started))
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
        started = clock::now();
    }
    let stamp = clock::stamp(started);
    let name = artifact::file_name(&stamp);
    let staging = format!(".opshost-backup-{stamp}");
    dir.mkdir(&staging)?;
    let made = make(dir, &staging, &stamp, &name, started);
    crate::remove_tree(dir, &staging);
    let made = made?;

    if opts.rollback_point {
        dir.write(artifact::ROLLBACK_MARKER, format!("{name}\n").as_bytes())
            .context("recording the rollback point")?;
    }
    progress::step("applying retention", None);
    let removed = prune(dir, opts.keep, &name)?;
    Ok(Taken {
        name,
        made,
        removed,
        swept,
        interrupted,
    })
}

pub struct Made {
    pub dump_size: u64,
    pub archive_size: u64,
    pub agledger_version: String,
    pub server_version: String,
    pub tables: usize,
    pub manifest: serde_json::Value,
}

fn make(dir: &Dir, staging: &str, stamp: &str, name: &str, started: i64) -> Result<Made> {
    let agledger_version = running_version();
    let conn = db::connect("agledger").context("connecting to the database")?;
    progress::step("reading row counts and vault keys", None);
    // One snapshot for the counts, the key export and the dump: the
    // deployment keeps writing meanwhile, and a restore compares counts.
    let snapshot = conn
        .begin_snapshot()
        .context("opening a snapshot of the database")?;
    let counts = row_counts(&conn)?;
    let keys_csv = vault_keys_csv(&conn)?;
    let last_migration = last_migration(&conn)?;
    let database = match conn
        .query("SELECT current_database()::text", &[])?
        .rows
        .first()
        .and_then(|r| r.first())
    {
        Some(Value::Text(name)) => name.clone(),
        _ => "agledger".to_string(),
    };

    progress::step("dumping the database (pg_dump -Fc)", None);
    let dump_path = format!("{staging}/{}", artifact::DUMP);
    let dump = db::dump(
        "agledger",
        dir,
        &dump_path,
        &db::DumpOptions {
            snapshot: Some(snapshot),
            // Packed, read back and fsynced as the archive next.
            durable: false,
        },
    )
    .context("pg_dump")?;
    // Read-only: nothing to commit.
    let _ = conn.rollback();

    let keys_sha = crate::sha256_hex(&keys_csv);
    let checkpoint = recorded_checkpoint(dir);
    let mut manifest = json!({
        "format": artifact::MANIFEST_FORMAT,
        "created_at": clock::rfc3339(started),
        "agledger_version": agledger_version,
        "postgres_server_version": dump.server_version,
        "database": database,
        "last_migration": last_migration,
        "plugin": { "name": "backup", "version": env!("CARGO_PKG_VERSION") },
        "files": {
            artifact::DUMP: { "size": dump.size, "sha256": dump.sha256 },
            artifact::KEYS_CSV: { "size": keys_csv.len(), "sha256": keys_sha },
        },
        "row_counts": counts.iter().map(|(t, n)| (t.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
    });
    let member = |file: &str| format!("{stamp}/{file}");
    let mut members = vec![
        (member(artifact::DUMP), MemberSource::File(dump_path)),
        (member(artifact::KEYS_CSV), MemberSource::Bytes(keys_csv)),
    ];
    if let Some(bytes) = checkpoint {
        manifest["files"][checkpoint::MEMBER] =
            json!({ "size": bytes.len(), "sha256": crate::sha256_hex(&bytes) });
        members.push((member(checkpoint::MEMBER), MemberSource::Bytes(bytes)));
    }
    let manifest_text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| fail(format!("writing the manifest: {e}")))?;

    members.push((
        member(artifact::MANIFEST),
        MemberSource::Bytes(manifest_text),
    ));

    progress::step(&format!("packing {name}"), Some(dump.size));
    let packed = dir
        .pack(
            name, &members,
            // pg_dump -Fc is compressed already: gzip framing, stored bytes.
            false,
        )
        .context("packing the archive")?;
    let packed_dump = packed.iter().find(|m| m.name == member(artifact::DUMP));
    if packed_dump.map(|m| (m.size, m.sha256.as_str())) != Some((dump.size, dump.sha256.as_str())) {
        let _ = dir.remove(name);
        return Err(fail(
            "the dump in the archive differs from the dump pg_dump wrote: archive removed",
        ));
    }
    let archive_size = dir.stat(name).map(|e| e.size).unwrap_or(0);
    Ok(Made {
        dump_size: dump.size,
        archive_size,
        agledger_version: manifest["agledger_version"]
            .as_str()
            .unwrap_or("unknown")
            .to_string(),
        server_version: dump.server_version,
        tables: counts.len(),
        manifest,
    })
}

/// The version `/health` reports, or "unknown" (a backup of a deployment
/// whose API is down is exactly when a backup matters).
fn running_version() -> String {
    let found = web::get("api", "/health").and_then(|r| {
        serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["version"].as_str().map(str::to_string))
            .ok_or_else(|| {
                fail(format!(
                    "/health answered {} without a version",
                    r.head.status
                ))
            })
    });
    found.unwrap_or_else(|e| {
        progress::warn(&format!(
            "the AGLedger version is unknown ({}): the manifest records \"unknown\"",
            describe(&e)
        ));
        "unknown".into()
    })
}

/// The vault checkpoint as it stands in the backup directory, recorded
/// as a member so the restore's check can prove what it covers by digest
/// against the restored database. The backup does not verify anything
/// itself (a checkpoint older or newer than the dump only proves less:
/// the digests are recomputed from the restored entries).
fn recorded_checkpoint(dir: &Dir) -> Option<Vec<u8>> {
    let bytes = dir.read(checkpoint::FILE).ok()?;
    match checkpoint::Checkpoint::parse(&bytes) {
        Ok(_) => Some(bytes),
        Err(e) => {
            progress::warn(&format!(
                "{} is not a vault checkpoint ({e}): not recorded; the restore's check will verify every signature",
                checkpoint::FILE
            ));
            None
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Exact row counts of every user table, `schema.table` -> rows.
fn row_counts(conn: &db::Connection) -> Result<Vec<(String, u64)>> {
    let tables = conn
        .query(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1, 2",
            &[],
        )
        .context("listing tables")?;
    let mut counts = Vec::new();
    for row in tables.rows {
        if let [Value::Text(schema), Value::Text(table)] = row.as_slice() {
            let sql = format!(
                "SELECT count(*) FROM {}.{}",
                quote_ident(schema),
                quote_ident(table)
            );
            let n = crate::vault::count(conn, &sql)
                .context(format!("counting rows of {schema}.{table}"))?;
            counts.push((format!("{schema}.{table}"), n));
        }
    }
    Ok(counts)
}

/// `vault_signing_keys` as CSV with a header, or a note when it is absent.
fn vault_keys_csv(conn: &db::Connection) -> Result<Vec<u8>> {
    let present = conn.query("SELECT to_regclass('vault_signing_keys') IS NOT NULL", &[])?;
    if !matches!(
        present.rows.first().and_then(|r| r.first()),
        Some(Value::Boolean(true))
    ) {
        progress::warn("vault_signing_keys is absent: the backup holds a note instead of keys");
        return Ok(
            b"# vault_signing_keys is absent from this database: no vault public keys to export\n"
                .to_vec(),
        );
    }
    let reader = conn.copy_out(
        "COPY (SELECT * FROM vault_signing_keys ORDER BY key_id) TO STDOUT WITH (FORMAT csv, HEADER true)",
    )?;
    let mut csv = Vec::new();
    std::io::Read::read_to_end(&mut ReadStream::new(reader), &mut csv)
        .map_err(|e| fail(format!("exporting vault_signing_keys: {e}")))?;
    Ok(csv)
}

fn last_migration(conn: &db::Connection) -> Result<Option<String>> {
    let present = conn.query("SELECT to_regclass('_migrations') IS NOT NULL", &[])?;
    if !matches!(
        present.rows.first().and_then(|r| r.first()),
        Some(Value::Boolean(true))
    ) {
        return Ok(None);
    }
    let rows = conn.query(
        "SELECT name::text FROM _migrations ORDER BY id DESC LIMIT 1",
        &[],
    )?;
    Ok(match rows.rows.first().and_then(|r| r.first()) {
        Some(Value::Text(name)) => Some(name.clone()),
        _ => None,
    })
}

fn seconds(ms: Option<u64>) -> Option<i64> {
    ms.map(|m| i64::try_from(m / 1000).unwrap_or(i64::MAX))
}

/// Leftovers of a backup that was killed: its staging directory
/// (`.opshost-backup-<stamp>`) and an unfinished archive
/// (`.backup-<stamp>.tar.gz.opshost-…tmp`). They are never counted as
/// backups. Reported, and removed when the operator says so
/// (`--clean-interrupted`). Returns (found, removed).
fn leftovers(dir: &Dir, remove: bool) -> Result<(Vec<String>, Vec<String>)> {
    let (mut found, mut removed) = (Vec::new(), Vec::new());
    for entry in dir.list("").context("listing the backup directory")? {
        let staging =
            entry.name.starts_with(".opshost-backup-") && entry.kind == EntryKind::Directory;
        let partial = entry.name.starts_with(".backup-")
            && entry.name.contains(".tar.gz.opshost-")
            && entry.name.ends_with(".tmp")
            && entry.kind == EntryKind::File;
        if !staging && !partial {
            continue;
        }
        if remove {
            if staging {
                crate::remove_tree(dir, &entry.name);
            } else {
                dir.remove(&entry.name)?;
            }
            progress::info(&format!(
                "removed {}, left by an interrupted backup",
                entry.name
            ));
            removed.push(entry.name);
            continue;
        }
        // This run holds the deployment lock: whoever left it is gone.
        progress::warn(&format!(
            "{} was left by an interrupted backup (its process is gone); it is not a backup. \
             Remove it with --clean-interrupted",
            entry.name
        ));
        found.push(entry.name);
    }
    Ok((found, removed))
}

/// Apply retention; the names removed.
fn prune(dir: &Dir, keep: usize, just_made: &str) -> Result<Vec<String>> {
    let files: Vec<Found> = dir
        .list("")?
        .into_iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| Found {
            name: e.name,
            modified: seconds(e.modified_ms),
            size: e.size,
        })
        .collect();
    let marker = dir
        .read(artifact::ROLLBACK_MARKER)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let vendor_marker = files
        .iter()
        .find(|f| f.name == artifact::VENDOR_PRE_UPGRADE)
        .and_then(|f| f.modified);
    let rollback = retention::rollback_point(marker.as_deref(), vendor_marker, &files);
    let mut protected = vec![just_made];
    if let Some(r) = rollback.as_deref() {
        protected.push(r);
    }
    let mut verified = Verified::load(dir);
    verified.record(&files, just_made);
    let plan = retention::plan(&files, keep, &protected, |name| {
        verified.check(dir, &files, name)
    });
    verified.save(dir, &files);
    for (name, why) in &plan.unreadable {
        progress::warn(&format!(
            "{name} is not a complete backup ({why}): not counted toward --keep and not removed. \
             Look at it, and remove it yourself if it is garbage"
        ));
    }
    let mut removed = Vec::new();
    for name in plan.remove {
        match dir.remove(&name) {
            Ok(()) => removed.push(name),
            Err(e) => progress::warn(&format!(
                "retention could not remove {name}: {}",
                describe(&e)
            )),
        }
    }
    Ok(removed)
}
