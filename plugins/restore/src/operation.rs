//! The restore, phase by phase, and `--recover` for one that was killed.

use agledger_ops::clock;
use agledger_ops::vault::checkpoint;
use opshost_sdk::fs::{self, Dir};
use opshost_sdk::progress::{self, Confirmation};
use opshost_sdk::runbook::{Interrupted, Outcome};
use opshost_sdk::{describe, fail, invalid, Context, Report, Result};
use serde_json::json;

use crate::journal::{Restore as State, RUNBOOK};
use crate::Options;
use agledger_ops::restore::{swap, verify};

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
            } else if opts.test {
                "restore --test"
            } else {
                "restore"
            },
        )?;
        if opts.test {
            return crate::drill::run(&dir, opts.backup.as_deref(), opts.jobs);
        }
        match (RUNBOOK.interrupted(&dir)?, opts.recover) {
            (Some(interrupted), true) => recover(&dir, interrupted),
            (Some(interrupted), false) => Err(fail(format!(
                "a restore of {} started {} was interrupted at \"{}\" (its process is gone). Run `opshost run restore.wasm -- --recover` \
                 to put the deployment back as it was before it, then restore again",
                interrupted.state.backup, interrupted.started_at, interrupted.at
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

    let checked =
        verify::backup(dir, &backup, &staging).inspect_err(|_| remove_staging(dir, &staging))?;
    confirm(&backup, &live, &checked, opts.yes).inspect_err(|_| remove_staging(dir, &staging))?;

    let mut state = State {
        backup: backup.clone(),
        staging: staging.clone(),
        restore_db: format!("{live}_restore_{id}"),
        previous_db: format!("{live}_previous_{id}"),
        live_db: live.clone(),
        keep_previous: opts.keep_previous,
        dump_path: checked.dump_path.clone(),
        jobs: opts.jobs,
        allow_broken_vault: opts.allow_broken_vault,
        manifest: checked.manifest.clone(),
        checkpoint: checked.checkpoint.clone(),
        verified: None,
        version: String::new(),
        previous: String::new(),
    };
    let outcome = RUNBOOK.run(dir, &mut state, &clock::rfc3339(clock::now()));
    let degraded = matches!(outcome, Ok(Outcome::Degraded { .. }));
    if !degraded {
        // A degraded run keeps what --recover needs; otherwise clean up.
        remove_staging(dir, &staging);
    }
    match outcome? {
        Outcome::Done => {}
        Outcome::RolledBack { step, error } if step == RUNBOOK.steps[0].name => {
            return Err(fail(format!(
                "{}. The running deployment was not touched",
                describe(&error).trim_end_matches(". Nothing was changed")
            )))
        }
        // Done continues to the report; every other outcome is an error.
        other => other.into_result("restore")?,
    }

    let scan = state.verified.as_ref().and_then(|v| v.vault.as_ref());
    // The restored vault is the live one now: the next scan starts from
    // what this restore verified, not from the replaced database's state.
    if let Some(s) = scan {
        if let Err(e) = checkpoint::save(dir, &s.checkpoint) {
            progress::warn(&format!(
                "the vault checkpoint was not updated ({}): the next vault-scan verifies what it cannot prove",
                describe(&e)
            ));
        }
    }
    let tables_checked = state.verified.as_ref().map_or(0, |v| v.tables_checked);
    let version = &state.version;
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
    .fact("row counts checked", format!("{tables_checked} tables"))
    .fact("running version", version)
    .fact("previous database", &state.previous);
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
        report = report.fact(
            "vault verification",
            if s.used_checkpoint {
                format!(
                    "{} entries proven by the backup's checkpoint, {} signatures verified, {} mandate(s) changed since it",
                    s.proven,
                    s.signatures,
                    s.mismatched.len()
                )
            } else {
                format!("every signature verified ({}), no checkpoint", s.signatures)
            },
        );
    }
    Ok(report.data(
        json!({
            "backup": backup,
            "created_at": checked.created,
            "agledger_version": checked.agledger_version,
            "tables_checked": tables_checked,
            "vault": scan.map(|s| s.to_json()),
            "previous_database": state.previous,
            "running_version": version,
        })
        .to_string(),
    ))
}

/// Undo (or, if only cleanup was left, finish) an interrupted restore.
fn recover(dir: &Dir, interrupted: Interrupted<State>) -> Result<Report> {
    let backup = interrupted.state.backup.clone();
    let staging = interrupted.state.staging.clone();
    let at = interrupted.at.clone();
    progress::info(&format!(
        "recovering the restore of {backup} started {}, interrupted at \"{at}\"",
        interrupted.started_at
    ));
    let summary = match RUNBOOK.recover(dir, interrupted)? {
        // Recovery goes forward only when every step had applied.
        Outcome::Done => "the restore had completed; its cleanup is done now",
        Outcome::RolledBack { .. } => {
            "the interrupted restore was undone: the deployment is as it was before it, services healthy"
        }
        degraded @ (Outcome::Degraded { .. } | Outcome::Stopped { .. }) => {
            return Err(fail(degraded.describe("recovering the restore")))
        }
    };
    remove_staging(dir, &staging);
    Ok(Report::ok(summary)
        .fact("backup", &backup)
        .fact("interrupted at", at))
}
