//! `restore --test`: the monthly restore test. A backup is only as good as
//! the last time it was restored, so this restores one into a scratch
//! database beside the live one, verifies it (archive checksums, tables and
//! their row counts against the backup's manifest, every vault chain),
//! records the result in `restore-tests.ndjson` in the backup directory,
//! and drops the scratch database. The running deployment is never
//! stopped, renamed or written to: only the server gets one more database
//! for the length of the test.

use agledger_ops::restore::{self as restoring, swap, verify};
use agledger_ops::{artifact, clock};
use opshost_sdk::fs::Dir;
use opshost_sdk::{db, describe, fail, progress, Context, Report, Result};
use serde_json::json;

/// One JSON line per test, newest last.
pub const LOG: &str = "restore-tests.ndjson";
/// Scratch databases are `<live>_restoretest_<id>`.
const SCRATCH: &str = "_restoretest_";
const STAGING: &str = ".opshost-restoretest-";

/// What one test found.
struct Tested {
    checked: verify::Checked,
    verified: verify::Verified,
}

pub fn run(dir: &Dir, backup: Option<&str>, jobs: u32) -> Result<Report> {
    let live = swap::live_database().context("asking the database its name")?;
    clear_leftovers(dir, &live)?;
    let backup = match backup {
        Some(b) => b.to_string(),
        None => newest_backup(dir)?,
    };
    let started = clock::now();
    let id = format!(
        "{}_{}",
        clock::stamp(started).replace('-', "_"),
        agledger_ops::lock::unique_suffix()
    );
    let scratch = format!("{live}{SCRATCH}{id}");
    let staging = format!("{STAGING}{id}");
    progress::info(&format!(
        "restore test of {backup} into scratch database {scratch}; the live database {live} and the services are not touched"
    ));
    let result = test(dir, &backup, &staging, &scratch, jobs);
    agledger_ops::remove_tree(dir, &staging);
    let dropped = restoring::drop_if_exists(&scratch);
    let seconds = clock::now() - started;
    let outcome = match &result {
        Ok(t) if broken_chains(t) == 0 => "passed".to_string(),
        Ok(t) => format!("{} broken vault chain(s)", broken_chains(t)),
        Err(e) => describe(e),
    };
    record(dir, &backup, started, seconds, &result, &outcome)?;
    if let Err(e) = dropped {
        progress::warn(&format!(
            "the scratch database {scratch} could not be dropped ({}); the next restore test drops it",
            describe(&e)
        ));
    }
    let tested = result.map_err(|e| {
        fail(format!(
            "restore test of {backup} FAILED: {}. Recorded in {LOG}; the live deployment was not touched. \
             This backup cannot be trusted for a restore: take a new one (opshost run backup.wasm) and test it",
            describe(&e)
        ))
    })?;
    Ok(report(&backup, &scratch, seconds, &tested))
}

fn test(dir: &Dir, backup: &str, staging: &str, scratch: &str, jobs: u32) -> Result<Tested> {
    let checked = verify::backup(dir, backup, staging)?;
    // Broken chains are the test's finding, not a reason to stop reading.
    let verified = restoring::into_new_database(
        &checked.dump_path,
        scratch,
        jobs,
        checked.manifest.as_ref(),
        checked.checkpoint.as_ref(),
        true,
    )?;
    Ok(Tested { checked, verified })
}

fn broken_chains(t: &Tested) -> usize {
    t.verified.vault.as_ref().map_or(0, |v| v.broken.len())
}

/// The newest file named like a backup.
fn newest_backup(dir: &Dir) -> Result<String> {
    dir.list("")
        .context("listing the backup directory")?
        .into_iter()
        .filter_map(|e| artifact::time_of(&e.name).map(|t| (t, e.name)))
        .max()
        .map(|(_, name)| name)
        .ok_or_else(|| {
            fail("the backup directory holds no backup-*.tar.gz to test: take one first (opshost run backup.wasm)")
        })
}

/// A test that was killed leaves its scratch database and staging
/// directory. We hold the deployment lock, so any found now are a dead
/// run's: drop them.
fn clear_leftovers(dir: &Dir, live: &str) -> Result<()> {
    let prefix = format!("{live}{SCRATCH}");
    for database in db::list_databases(swap::DB)? {
        if database.starts_with(&prefix) {
            progress::warn(&format!(
                "dropping {database}, left by a restore test that did not finish"
            ));
            db::drop_database(swap::DB, &database)?;
        }
    }
    for entry in dir.list("").context("listing the backup directory")? {
        if entry.name.starts_with(STAGING) {
            agledger_ops::remove_tree(dir, &entry.name);
        }
    }
    Ok(())
}

/// Append one line to the log (rewritten whole, atomically: the host's
/// write is temp file + rename, so a crash never leaves half a log).
fn record(
    dir: &Dir,
    backup: &str,
    started: i64,
    seconds: i64,
    result: &Result<Tested>,
    outcome: &str,
) -> Result<()> {
    let mut line = json!({
        "time": clock::rfc3339(started),
        "backup": backup,
        "passed": matches!(result, Ok(t) if broken_chains(t) == 0),
        "outcome": outcome,
        "seconds": seconds,
    });
    if let Ok(t) = result {
        line["made"] = json!(t.checked.created);
        line["agledger_version"] = json!(t.checked.agledger_version);
        line["tables_checked"] = json!(t.verified.tables_checked);
        line["vault"] = t
            .verified
            .vault
            .as_ref()
            .map_or(json!(null), |v| v.to_json());
    }
    let mut log = match dir.read(LOG) {
        Ok(bytes) => bytes,
        Err(opshost_sdk::Error::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e).context(format!("reading {LOG}")),
    };
    if !log.is_empty() && !log.ends_with(b"\n") {
        log.push(b'\n');
    }
    log.extend_from_slice(line.to_string().as_bytes());
    log.push(b'\n');
    dir.write(LOG, &log)
        .context(format!("recording the result in {LOG}"))
}

fn report(backup: &str, scratch: &str, seconds: i64, t: &Tested) -> Report {
    let broken = broken_chains(t);
    let summary = if broken == 0 {
        format!(
            "restore test of {backup} passed: restored, row counts and every vault chain verified"
        )
    } else {
        format!(
            "restore test of {backup}: restored, but {broken} vault chain(s) are broken (listed above); recorded in {LOG}"
        )
    };
    let report = if broken == 0 {
        Report::ok(summary)
    } else {
        Report::attention(summary)
    };
    let mut report = report
        .fact("backup", backup)
        .fact("made", &t.checked.created)
        .fact("AGLedger version", &t.checked.agledger_version)
        .fact(
            "row counts checked",
            format!("{} tables", t.verified.tables_checked),
        )
        .fact("took", format!("{seconds} s"))
        .fact("scratch database", format!("{scratch} (dropped)"))
        .fact("recorded in", LOG);
    if let Some(v) = &t.verified.vault {
        report = report.fact(
            "vault",
            format!(
                "{} chains, {} entries, {} broken",
                v.mandates,
                v.entries,
                v.broken.len()
            ),
        );
    }
    report.data(
        json!({
            "backup": backup,
            "passed": broken == 0,
            "made": t.checked.created,
            "agledger_version": t.checked.agledger_version,
            "tables_checked": t.verified.tables_checked,
            "vault": t.verified.vault.as_ref().map(|v| v.to_json()),
            "seconds": seconds,
        })
        .to_string(),
    )
}
