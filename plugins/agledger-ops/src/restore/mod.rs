//! Restoring a backup beside the live database and swapping it in: the
//! restore operation, the upgrade's automatic rollback and the rollback
//! operation all do it with these steps.

pub mod swap;
pub mod verify;

use opshost_sdk::{db, fail, progress, Context, Result};

use swap::DB;

/// `pg_restore` the dump at `dump_path` (in the backup directory) into a
/// new database `into`, then check it against the backup's manifest and
/// the vault. `into` must not exist.
pub fn into_new_database(
    dump_path: &str,
    into: &str,
    jobs: u32,
    manifest: Option<&serde_json::Value>,
    checkpoint: Option<&crate::vault::checkpoint::Checkpoint>,
    allow_broken_vault: bool,
) -> Result<verify::Verified> {
    progress::step(&format!("restoring into {into} (pg_restore)"), None);
    if swap::exists(into)? {
        return Err(fail(format!("database {into} exists already")));
    }
    let options = db::RestoreOptions {
        into_database: Some(into.to_string()),
        jobs: Some(jobs),
        no_owner: true,
    };
    let dir = opshost_sdk::fs::open("backups")?;
    db::restore(DB, &dir, dump_path, &options).context("pg_restore")?;
    verify::restored(into, manifest, checkpoint, allow_broken_vault)
}

/// Drop `database` if it is there (undoing [`into_new_database`], also
/// after a run that died half-way through it).
pub fn drop_if_exists(database: &str) -> Result<()> {
    if swap::exists(database)? {
        db::drop_database(DB, database)?;
    }
    Ok(())
}

/// Put the database a backup holds in place of the live one (the upgrade's
/// automatic rollback). Safe to call again after a run died half-way: the
/// backup is restored under a scratch name and renamed ready only once
/// verified; the swap is two renames whose progress the server's list of
/// databases shows. Stops agledger-api and -worker; the caller starts
/// them (with the image it wants). `id` makes the names unique.
pub fn put_back(dir: &opshost_sdk::fs::Dir, backup: &str, live: &str, id: &str) -> Result<()> {
    let restoring = format!("{live}_restoring_{id}");
    let ready = format!("{live}_rollback_{id}");
    let replaced = format!("{live}_replaced_{id}");
    // What this run verified, for the checkpoint once it is live.
    let mut verified = None;
    if !swap::exists(&replaced)? {
        if !swap::exists(&ready)? {
            drop_if_exists(&restoring)?;
            let staging = format!(".opshost-rollback-{id}");
            let checked = verify::backup(dir, backup, &staging);
            let restored = checked.and_then(|c| {
                into_new_database(
                    &c.dump_path,
                    &restoring,
                    2,
                    c.manifest.as_ref(),
                    c.checkpoint.as_ref(),
                    true,
                )
            });
            crate::remove_tree(dir, &staging);
            verified = restored?.vault.map(|scan| scan.checkpoint);
            db::rename_database(DB, &restoring, &ready)?;
        }
        swap::stop_services()?;
        swap::rename(live, &replaced)?;
    } else {
        swap::stop_services()?;
    }
    if swap::exists(&ready)? && !swap::exists(live)? {
        swap::rename(&ready, live)?;
        if let Some(checkpoint) = verified {
            if let Err(e) = crate::vault::checkpoint::save(dir, &checkpoint) {
                progress::warn(&format!(
                    "the vault checkpoint was not updated ({}): the next vault-scan verifies what it cannot prove",
                    opshost_sdk::describe(&e)
                ));
            }
        }
    }
    if let Err(e) = db::drop_database(DB, &replaced) {
        progress::warn(&format!(
            "the replaced database is still there as {replaced}: {}",
            opshost_sdk::describe(&e)
        ));
    }
    Ok(())
}
