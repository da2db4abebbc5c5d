//! The checks on both sides of a restore: the backup file before anything
//! is touched, and the restored database before it is swapped in.

use crate::artifact::{self, Layout};
use crate::vault::checkpoint::{self, Checkpoint};
use crate::{clock, vault};
use opshost_sdk::db::{self, Value};
use opshost_sdk::fs::{ArchiveMember, Dir};
use opshost_sdk::{describe, fail, progress, Context, Result};

/// A backup that passed every check, its dump extracted to `dump_path`.
pub struct Checked {
    pub dump_path: String,
    pub dump_size: u64,
    pub manifest: Option<serde_json::Value>,
    pub created: String,
    pub agledger_version: String,
    pub toc_entries: usize,
    /// The vault checkpoint the backup recorded, if it was taken over a
    /// verified vault: the restore's check proves what it covers by digest.
    pub checkpoint: Option<Checkpoint>,
}

/// Check `backup` and extract its dump into `staging` (which it creates).
pub fn backup(dir: &Dir, backup: &str, staging: &str) -> Result<Checked> {
    progress::step(&format!("checking {backup}"), None);
    let entry = dir.stat(backup).map_err(|e| match e {
        opshost_sdk::Error::NotFound(_) => fail(format!(
            "no file {backup} in the backup directory \"{}\": give the name of a backup there. Nothing was changed",
            dir.name()
        )),
        other => other,
    })?;
    progress::step(&format!("reading {backup}"), Some(entry.size));
    let members = dir.archive_members(backup).map_err(|e| {
        fail(format!(
            "{backup} is not a readable backup archive: {}. Nothing was changed",
            describe(&e)
        ))
    })?;
    let layout = artifact::locate(&members)
        .map_err(|e| fail(format!("{backup}: {}. Nothing was changed", describe(&e))))?;
    dir.mkdir(staging)?;
    // A plan extracts nothing (the host simulates it), so what is checked
    // in the extracted files is left to the real run, and the plan says so.
    let planning = progress::planning();
    if planning {
        progress::warn(
            "plan: the manifest, the checksums and pg_restore's table of contents are checked \
             in the extracted files, which a plan does not extract",
        );
    }
    let manifest = match &layout.manifest {
        Some(m) if planning => {
            dir.extract(
                backup,
                &m.name,
                &format!("{staging}/{}", artifact::MANIFEST),
            )?;
            None
        }
        Some(m) => Some(read_manifest(dir, backup, staging, m, &members, &layout)?),
        None => {
            progress::warn(&format!(
                "{backup} has no manifest.json (a backup from the vendor's script?): its checksums \
                 and row counts cannot be checked; the dump's readability and the vault still are"
            ));
            None
        }
    };

    let checkpoint = match &manifest {
        Some(m) if m["files"].get(checkpoint::MEMBER).is_some() => {
            recorded_checkpoint(dir, backup, staging, &layout)
        }
        _ => None,
    };

    progress::step("extracting the dump", Some(layout.dump.size));
    let dump_path = format!("{staging}/{}", artifact::DUMP);
    let extracted = dir
        .extract(backup, &layout.dump.name, &dump_path)
        .context(format!("extracting {}", layout.dump.name))?;
    if !planning && extracted.sha256 != layout.dump.sha256 {
        return Err(fail(format!(
            "{backup}: the dump read differently twice (disk trouble?). Nothing was changed"
        )));
    }
    progress::step(
        "reading the dump's table of contents (pg_restore --list)",
        None,
    );
    let toc = if planning {
        Vec::new()
    } else {
        db::dump_contents(dir, &dump_path).map_err(|e| {
            fail(format!(
                "{backup}: pg_restore cannot read its dump: {}. Nothing was changed",
                describe(&e)
            ))
        })?
    };
    let created = manifest
        .as_ref()
        .and_then(|m| m["created_at"].as_str().map(str::to_string))
        .or_else(|| artifact::time_of(backup).map(clock::rfc3339))
        .unwrap_or_else(|| "an unknown time".into());
    let agledger_version = manifest
        .as_ref()
        .and_then(|m| m["agledger_version"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    Ok(Checked {
        dump_path,
        dump_size: extracted.size,
        manifest,
        created,
        agledger_version,
        toc_entries: toc.len(),
        checkpoint,
    })
}

/// The checkpoint member (its checksum was checked with the manifest's).
/// One that cannot be read only costs speed: every signature is verified.
fn recorded_checkpoint(
    dir: &Dir,
    backup: &str,
    staging: &str,
    layout: &Layout,
) -> Option<Checkpoint> {
    let path = format!("{staging}/{}", checkpoint::MEMBER);
    let read = dir
        .extract(backup, &layout.path(checkpoint::MEMBER), &path)
        .and_then(|_| dir.read(&path))
        .map_err(|e| describe(&e))
        .and_then(|bytes| Checkpoint::parse(&bytes));
    match read {
        Ok(c) => Some(c),
        Err(e) => {
            progress::warn(&format!(
                "{backup}: its vault checkpoint cannot be read ({e}): the restore's check verifies every signature"
            ));
            None
        }
    }
}

fn read_manifest(
    dir: &Dir,
    backup: &str,
    staging: &str,
    member: &ArchiveMember,
    members: &[ArchiveMember],
    layout: &Layout,
) -> Result<serde_json::Value> {
    if member.size > 16 << 20 {
        return Err(fail(format!(
            "{backup}: manifest.json is {} bytes: not a manifest",
            member.size
        )));
    }
    let path = format!("{staging}/{}", artifact::MANIFEST);
    dir.extract(backup, &member.name, &path)?;
    let manifest: serde_json::Value = serde_json::from_slice(&dir.read(&path)?).map_err(|e| {
        fail(format!(
            "{backup}: manifest.json is not JSON ({e}). Nothing was changed"
        ))
    })?;
    let format = manifest["format"].as_str().unwrap_or_default();
    if format != artifact::MANIFEST_FORMAT {
        return Err(fail(format!(
            "{backup}: manifest format {format:?} is not {:?} (made by a newer opshost?): \
             use a restore plugin that knows it. Nothing was changed",
            artifact::MANIFEST_FORMAT
        )));
    }
    let files = manifest["files"]
        .as_object()
        .ok_or_else(|| fail(format!("{backup}: manifest.json lists no files")))?;
    for (file, recorded) in files {
        let name = layout.path(file);
        let found = members
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| fail(format!("{backup}: {name} is listed in the manifest but missing from the archive. Nothing was changed")))?;
        let (size, sha) = (recorded["size"].as_u64(), recorded["sha256"].as_str());
        if size != Some(found.size) || sha != Some(found.sha256.as_str()) {
            return Err(fail(format!(
                "{backup}: {name} does not match its manifest (size {} vs {}, sha256 {} vs {}): \
                 the backup is corrupt or was altered. Nothing was changed",
                found.size,
                size.map_or("?".into(), |s| s.to_string()),
                found.sha256,
                sha.unwrap_or("?")
            )));
        }
    }
    if !files.contains_key(artifact::DUMP) {
        return Err(fail(format!(
            "{backup}: the manifest has no checksum for {}",
            artifact::DUMP
        )));
    }
    Ok(manifest)
}

/// What the restored database looked like.
pub struct Verified {
    pub tables_checked: usize,
    pub vault: Option<vault::Scan>,
}

fn present(conn: &db::Connection, table: &str) -> Result<bool> {
    let rows = conn.query(
        "SELECT to_regclass($1) IS NOT NULL",
        &[Value::Text(table.into())],
    )?;
    Ok(matches!(
        rows.rows.first().and_then(|r| r.first()),
        Some(Value::Boolean(true))
    ))
}

fn quote_table(qualified: &str) -> String {
    qualified
        .split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// Row counts against the manifest (when it has them) and the vault chains.
pub fn restored(
    database: &str,
    manifest: Option<&serde_json::Value>,
    checkpoint: Option<&Checkpoint>,
    allow_broken_vault: bool,
) -> Result<Verified> {
    progress::step("verifying the restored database", None);
    let conn =
        db::connect_to("agledger", database).context("connecting to the restored database")?;
    if !present(&conn, "_migrations")? {
        return Err(fail(
            "the restored database has no _migrations table: this dump is not an AGLedger database",
        ));
    }
    let mut checked = 0;
    let mut wrong = Vec::new();
    if let Some(counts) = manifest.and_then(|m| m["row_counts"].as_object()) {
        for (table, expected) in counts {
            let sql = format!("SELECT count(*) FROM {}", quote_table(table));
            let got = vault::count(&conn, &sql).context(format!("counting {table}"))?;
            if Some(got) != expected.as_u64() {
                wrong.push(format!(
                    "{table}: {got} rows, the backup recorded {expected}"
                ));
            }
            checked += 1;
        }
    }
    if !wrong.is_empty() {
        return Err(fail(format!(
            "the restored database differs from the backup: {}",
            wrong.join("; ")
        )));
    }
    let scan = if present(&conn, "vault_entries")? {
        let scan = vault::scan_with(&conn, "verifying vault chains", checkpoint)?;
        if scan.used_checkpoint {
            progress::info(&format!(
                "vault: {} entries proven by the checkpoint's digest, {} signatures verified",
                scan.proven, scan.signatures
            ));
        }
        for m in &scan.mismatched {
            progress::warn(&format!(
                "mandate {}: {} (since the checkpoint); verified in full: {}",
                m["mandate_id"], m["reason"], m["verified_in_full"]
            ));
        }
        if !scan.broken.is_empty() {
            for b in &scan.broken {
                progress::warn(&format!(
                    "mandate {}: position {}: {}",
                    b["mandate_id"], b["position"], b["reason"]
                ));
            }
            if !allow_broken_vault {
                return Err(fail(format!(
                    "{} vault chain(s) in the restored database are broken (listed above): not swapping it in. \
                     To restore this backup anyway, run again with --allow-broken-vault",
                    scan.broken.len()
                )));
            }
        }
        Some(scan)
    } else {
        None
    };
    Ok(Verified {
        tables_checked: checked,
        vault: scan,
    })
}
