//! The restore, phase by phase, and `--recover` for one that was killed.

use agledger_ops::clock;
use opshost_sdk::fs::{self, Dir};
use opshost_sdk::progress::{self, Confirmation};
use opshost_sdk::{db, describe, fail, invalid, Context, Error, Report, Result};
use serde_json::json;

use crate::journal::{Journal, Phase, FILE as JOURNAL};
use crate::swap::{self, attempt, DB};
use crate::{verify, Options};

opshost_sdk::manifest! {
    name: "restore",
    vendor: "opshost",
    description: "Restores a backup into a new database, verifies it (row counts, vault chains), swaps it in; puts the old one back on failure",
    applies_to: ">=1.0.0, <2.0.0",
    min_host: "0.1.0",
    requests: [
        ("db=agledger:admin", "restores into agledger_restore_<ts>, verifies it, renames databases, ends sessions"),
        ("fs=backups:rw", "reads the backup, extracts its dump to a staging directory, keeps the restore journal"),
        ("container=agledger:inspect,stop,start,run", "stops and starts agledger-api/-worker, waits for health, runs preflight"),
        ("http=api/health:GET", "checks /health at the end"),
    ],
}

struct Restore;

impl opshost_sdk::Operation for Restore {
    fn run(args: Vec<String>) -> Result<Report> {
        let opts = crate::parse(&args).map_err(|e| invalid(format!("{e}\n{}", crate::USAGE)))?;
        if opts.help {
            return Ok(Report::ok(crate::USAGE));
        }
        let dir = fs::open("backups").context("opening the backup directory")?;
        // Held until this run ends, however it ends: while we hold it, a
        // journal can only be one a dead run left.
        let _lock = agledger_ops::lock::take(
            &dir,
            if opts.recover {
                "restore --recover"
            } else {
                "restore"
            },
        )?;
        match (Journal::read(&dir)?, opts.recover) {
            (Some(journal), true) => recover(&dir, journal),
            (Some(journal), false) => Err(fail(format!(
                "a restore of {} started {} was interrupted {} (its process is gone). Run `opshost run restore.wasm -- --recover` \
                 to put the deployment back as it was before it, then restore again",
                journal.backup,
                journal.started_at,
                journal.phase_text()
            ))),
            (None, true) => Ok(Report::ok("nothing to recover: no interrupted restore is recorded")),
            (None, false) => restore(&dir, &opts),
        }
    }
}

opshost_sdk::plugin!(Restore);

/// Ask before replacing the live database.
fn confirm(backup: &str, live: &str, checked: &verify::Checked, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let question = format!(
        "Replace database {live} with {backup} (made {}, AGLedger {})? The services stop meanwhile; \
         the current database is kept until the restore has succeeded.",
        checked.created, checked.agledger_version
    );
    match progress::confirm(&question) {
        Confirmation::Yes => Ok(()),
        Confirmation::Declined => Err(fail("restore cancelled: nothing was changed")),
        Confirmation::NoTerminal => Err(invalid(
            "restore replaces the live database and needs a yes: there is no terminal to ask on, \
             so run again with --yes (e.g. opshost run --yes restore.wasm -- BACKUP). Nothing was changed",
        )),
    }
}

/// A backup anyone else on the machine could have changed is not restored:
/// its dump runs as the database's owner.
fn refuse_if_others_may_write(dir: &Dir, backup: &str) -> Result<()> {
    let Ok(entry) = dir.stat(backup) else {
        return Ok(()); // the checks that follow say it is missing
    };
    if entry.mode & 0o022 != 0 {
        return Err(fail(format!(
            "{backup} is writable by other users (mode {:o}): anyone on this machine could have changed it, \
             and a restore runs what it holds. Check where it came from, then `chmod go-w` it and restore again. Nothing was changed",
            entry.mode
        )));
    }
    Ok(())
}

fn remove_staging(dir: &Dir, staging: &str) {
    agledger_ops::remove_tree(dir, staging);
}

fn restore(dir: &Dir, opts: &Options) -> Result<Report> {
    let backup = opts.backup.clone().unwrap_or_default();
    let stamp = clock::stamp(clock::now());
    // Unique even for two restores in one second (names on the server and
    // in the directory outlive a run when it is killed).
    let suffix = agledger_ops::lock::unique_suffix();
    let id = format!("{}_{suffix}", stamp.replace('-', "_"));
    let staging = format!(".opshost-restore-{stamp}-{suffix}");
    refuse_if_others_may_write(dir, &backup)?;
    let live = swap::live_database().context("asking the database its name")?;
    let mut journal = Journal {
        backup: backup.clone(),
        started_at: clock::rfc3339(clock::now()),
        phase: Phase::Restoring,
        staging: staging.clone(),
        restore_db: format!("{live}_restore_{id}"),
        previous_db: format!("{live}_previous_{id}"),
        live_db: live.clone(),
        keep_previous: opts.keep_previous,
    };

    let checked =
        verify::backup(dir, &backup, &staging).inspect_err(|_| remove_staging(dir, &staging))?;
    confirm(&backup, &live, &checked, opts.yes).inspect_err(|_| remove_staging(dir, &staging))?;

    // Phase 1: a new database beside the live one. Failing here changes nothing.
    journal.write(dir)?;
    let prepared = prepare(dir, opts, &journal, &checked);
    let verified = match prepared {
        Ok(v) => v,
        Err(e) => {
            if swap::exists(&journal.restore_db).unwrap_or(true) {
                attempt(
                    "dropping the unfinished restore database",
                    db::drop_database(DB, &journal.restore_db),
                );
            }
            remove_staging(dir, &staging);
            Journal::remove(dir);
            return Err(fail(format!(
                "{}. The running deployment was not touched",
                describe(&e).trim_end_matches(". Nothing was changed")
            )));
        }
    };

    // Phase 2: the swap. From here a failure puts the previous database back.
    journal.enter(dir, Phase::Swapping)?;
    let swapped = swap_in(&journal);
    let version = match swapped {
        Ok(v) => v,
        Err(e) => {
            let state = swap::put_back(&journal.live_db, &journal.previous_db, &journal.restore_db);
            if swap::exists(&journal.restore_db).unwrap_or(true) {
                attempt(
                    "dropping the restored database",
                    db::drop_database(DB, &journal.restore_db),
                );
            }
            remove_staging(dir, &staging);
            if !state.starts_with("DEGRADED") {
                Journal::remove(dir);
            }
            return Err(fail(format!(
                "restore failed after the swap began: {}. Now: {state}",
                describe(&e)
            )));
        }
    };

    // Phase 3: the old database goes (or stays, if asked).
    journal.enter(dir, Phase::Finishing)?;
    let previous = finish(&journal);
    remove_staging(dir, &staging);
    Journal::remove(dir);

    let scan = verified.vault.as_ref();
    let mut report = Report::ok(format!(
        "restored {backup}: database {live} replaced, services healthy (version {version})"
    ))
    .fact("backup", &backup)
    .fact("made", &checked.created)
    .fact(
        "dump",
        format!(
            "{} bytes, {} entries",
            checked.dump_size, checked.toc_entries
        ),
    )
    .fact(
        "row counts checked",
        format!("{} tables", verified.tables_checked),
    )
    .fact("running version", &version)
    .fact("previous database", &previous);
    if let Some(s) = scan {
        report = report.fact(
            "vault",
            format!(
                "{} chains, {} entries, {} broken",
                s.mandates,
                s.entries,
                s.broken.len()
            ),
        );
    }
    Ok(report.data(
        json!({
            "backup": backup,
            "created_at": checked.created,
            "agledger_version": checked.agledger_version,
            "tables_checked": verified.tables_checked,
            "vault": scan.map(|s| s.to_json()),
            "previous_database": previous,
            "running_version": version,
        })
        .to_string(),
    ))
}

/// Restore into the new database and verify it.
fn prepare(
    dir: &Dir,
    opts: &Options,
    journal: &Journal,
    checked: &verify::Checked,
) -> Result<verify::Verified> {
    progress::step(
        &format!("restoring into {} (pg_restore)", journal.restore_db),
        None,
    );
    if swap::exists(&journal.restore_db)? {
        return Err(fail(format!(
            "database {} exists already",
            journal.restore_db
        )));
    }
    let options = db::RestoreOptions {
        into_database: Some(journal.restore_db.clone()),
        jobs: Some(opts.jobs),
        no_owner: true,
    };
    db::restore(DB, dir, &checked.dump_path, &options).context("pg_restore")?;
    verify::restored(
        &journal.restore_db,
        checked.manifest.as_ref(),
        opts.allow_broken_vault,
    )
}

fn swap_in(journal: &Journal) -> Result<String> {
    swap::stop_services()?;
    progress::step("swapping databases", None);
    swap::rename(&journal.live_db, &journal.previous_db)?;
    swap::rename(&journal.restore_db, &journal.live_db)?;
    swap::start_and_check()
}

/// Drop the previous database unless it is to be kept; what became of it.
fn finish(journal: &Journal) -> String {
    if journal.keep_previous {
        return format!("kept as {} (--keep-previous)", journal.previous_db);
    }
    progress::step(
        &format!("dropping the previous database {}", journal.previous_db),
        None,
    );
    match db::drop_database(DB, &journal.previous_db) {
        Ok(()) => "dropped".into(),
        Err(e) => {
            progress::warn(&format!(
                "could not drop {}: {}",
                journal.previous_db,
                describe(&e)
            ));
            format!(
                "still there as {} (drop it when convenient)",
                journal.previous_db
            )
        }
    }
}

/// Undo (or, if only cleanup was left, finish) an interrupted restore.
fn recover(dir: &Dir, journal: Journal) -> Result<Report> {
    progress::info(&format!(
        "recovering the restore of {} started {}, interrupted {}",
        journal.backup,
        journal.started_at,
        journal.phase_text()
    ));
    let summary = match journal.phase {
        Phase::Restoring => {
            // The services were never stopped; only the new database is left over.
            if swap::exists(&journal.restore_db)? {
                db::drop_database(DB, &journal.restore_db)?;
            }
            format!(
                "the interrupted restore never touched the deployment; its unfinished database {} is gone",
                journal.restore_db
            )
        }
        Phase::Swapping => {
            let live = swap::exists(&journal.live_db)?;
            let previous = swap::exists(&journal.previous_db)?;
            if !live && !previous {
                return Err(fail(format!(
                    "neither {} nor {} exists: cannot tell which database to put back. \
                     Databases there: {}. Rename the right one to {} by hand, then remove {JOURNAL}",
                    journal.live_db,
                    journal.previous_db,
                    db::list_databases(DB)?.join(", "),
                    journal.live_db
                )));
            }
            let state = swap::put_back(&journal.live_db, &journal.previous_db, &journal.restore_db);
            if state.starts_with("DEGRADED") {
                return Err(Error::Failed(state));
            }
            if swap::exists(&journal.restore_db)? {
                attempt(
                    "dropping the restored database",
                    db::drop_database(DB, &journal.restore_db),
                );
            }
            format!("the interrupted restore was undone: {state}")
        }
        Phase::Finishing => {
            let previous = finish(&journal);
            format!("the restore had completed; its cleanup is done now (previous database: {previous})")
        }
    };
    remove_staging(dir, &journal.staging);
    Journal::remove(dir);
    Ok(Report::ok(summary)
        .fact("backup", &journal.backup)
        .fact("interrupted", journal.phase_text()))
}
