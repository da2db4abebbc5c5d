//! The rollback: find the rollback point, say what will be lost, ask, run.

use agledger_ops::deployment::{self as dep, Env};
use agledger_ops::restore::{swap, verify};
use agledger_ops::{artifact, clock, lock, vault};
use opshost_sdk::fs::{self, Dir};
use opshost_sdk::progress::{self, Confirmation};
use opshost_sdk::runbook::{Interrupted, Outcome};
use opshost_sdk::{db, describe, fail, invalid, Context, Report, Result};
use serde_json::json;

use crate::steps::{Rollback as State, RECOVER, RUNBOOK};
use crate::Options;

opshost_sdk::manifest! {
    name: "rollback",
    vendor: "opshost",
    description: "Rolls AGLedger back to the release before the last upgrade: restores its rollback point and pins its image digest, as one operation, then checks health, version and the vault",
    applies_to: ">=1.0.0, <2.0.0",
    min_host: "0.1.0",
    requests: [
        ("db=agledger:admin", "restores the rollback point beside the live database, swaps it in, counts what will be lost"),
        ("fs=backups:rw", "reads the rollback point and the upgrade record, keeps the journal and the deployment lock"),
        ("fs=compose:rw", "puts the previous version and pin in compose/.env"),
        ("fs=install:ro", "reads the VERSION file at the install root"),
        ("container=agledger:inspect,logs,stop,start,pull,recreate,run", "stops the services, replaces them with the previous image, runs preflight"),
        ("http=api/health:GET", "waits for /health/ready, checks the version"),
        ("http=api/conformance:GET", "reads the running version"),
    ],
}

struct Rollback;

impl opshost_sdk::Operation for Rollback {
    fn run(args: Vec<String>) -> Result<Report> {
        let opts = crate::parse(&args).map_err(|e| invalid(format!("{e}\n{}", crate::USAGE)))?;
        if opts.help {
            return Ok(Report::ok(crate::USAGE));
        }
        let dir = fs::open("backups").context("opening the backup directory")?;
        let _lock = lock::take(
            &dir,
            if opts.recover {
                "rollback --recover"
            } else {
                "rollback"
            },
        )?;
        match (RUNBOOK.interrupted(&dir)?, opts.recover) {
            (Some(i), true) => recover(&dir, i),
            (Some(i), false) => Err(fail(format!(
                "a rollback to {} started {} did not finish: it stopped at \"{}\" (its process is gone). \
                 Run `{RECOVER}` to undo it, then roll back again",
                i.state.to_version, i.started_at, i.at
            ))),
            (None, true) => Ok(Report::ok("nothing to recover: no interrupted rollback is recorded")),
            (None, false) => rollback(&dir, &opts),
        }
    }
}

opshost_sdk::plugin!(Rollback);

/// The backup to go back to, the version it belongs to and that version's
/// image: the last upgrade's record, else the operator's `--backup/--to`,
/// else the vendor script's markers.
fn rollback_point(
    dir: &Dir,
    opts: &Options,
    repository: &str,
    running: &str,
) -> Result<(String, String, String)> {
    if let (Some(backup), Some(to)) = (&opts.backup, &opts.to) {
        return Ok((backup.clone(), to.clone(), format!("{repository}:{to}")));
    }
    if let Ok(bytes) = dir.read(artifact::LAST_UPGRADE) {
        let doc: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| fail(format!("{} is not readable ({e})", artifact::LAST_UPGRADE)))?;
        let text = |k: &str| {
            doc[k]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let backup = text("backup").ok_or_else(|| {
            fail(
                "the last upgrade ran with --skip-backup: there is no rollback point; \
                  give one with --backup FILE --to VERSION",
            )
        })?;
        let to = text("from_version").ok_or_else(|| fail("the upgrade record names no version"))?;
        // The record must describe what runs: after another tool (or a
        // hand) upgraded further, going back to this record's backup would
        // lose everything since, unannounced.
        let upgraded_to = text("to_version").unwrap_or_default();
        if upgraded_to != running && to != running {
            return Err(fail(format!(
                "the last upgrade opshost recorded went {to} -> {upgraded_to}, but {running} runs now: \
                 something else changed the deployment since. Nothing was changed. To go back anyway, \
                 name the backup and its version: --backup FILE --to VERSION"
            )));
        }
        let image = text("from_pin").unwrap_or_else(|| format!("{repository}:{to}"));
        return Ok((backup, to, image));
    }
    let marker = dir.read(artifact::ROLLBACK_MARKER).ok();
    let vendor = dir.read(artifact::VENDOR_PRE_UPGRADE).ok();
    match (marker, vendor) {
        (Some(m), Some(v)) => {
            let backup = String::from_utf8_lossy(&m).trim().to_string();
            let to = String::from_utf8_lossy(&v).trim().to_string();
            Ok((backup, to.clone(), format!("{repository}:{to}")))
        }
        _ => Err(fail(
            "no upgrade is recorded in the backup directory (no .opshost-last-upgrade.json, no rollback point): \
             nothing to roll back. To go back to a given backup, use --backup FILE --to VERSION",
        )),
    }
}

fn rollback(dir: &Dir, opts: &Options) -> Result<Report> {
    let env = Env::open()?;
    let current = dep::current(&env)?;
    let repository = dep::repository(&current.image);
    let (backup, to_version, to_image) = rollback_point(dir, opts, &repository, &current.version)?;
    agledger_ops::release::drop_stale_env_copy()?;
    if to_version == current.version {
        return Ok(Report::ok(format!(
            "nothing to do: {to_version} is already running. Nothing was changed"
        )));
    }
    let stamp = clock::stamp(clock::now());
    let id = format!("{}_{}", stamp.replace('-', "_"), lock::unique_suffix());
    let live = swap::live_database().context("asking the database its name")?;
    let staging = format!(".opshost-rollback-{id}");
    let checked = verify::backup(dir, &backup, &staging)
        .inspect_err(|_| agledger_ops::remove_tree(dir, &staging))?;
    let lost = lost_rows(checked.manifest.as_ref())?;
    confirm(
        &current.version,
        &to_version,
        &backup,
        &checked.created,
        &lost,
        opts.yes,
    )
    .inspect_err(|_| agledger_ops::remove_tree(dir, &staging))?;

    let mut state = State {
        backup: backup.clone(),
        staging: staging.clone(),
        from_version: current.version.clone(),
        from_image: current.image.clone(),
        from_pin: String::new(),
        to_version: to_version.clone(),
        to_image,
        to_pin: String::new(),
        restore_db: format!("{live}_restore_{id}"),
        previous_db: format!("{live}_previous_{id}"),
        live_db: live,
        ready_within_s: opts.ready_within_s,
        dump_path: checked.dump_path.clone(),
        manifest: checked.manifest.clone(),
        checkpoint: checked.checkpoint.clone(),
    };
    let outcome = RUNBOOK.run(dir, &mut state, &clock::rfc3339(clock::now()));
    if !matches!(outcome, Ok(Outcome::Degraded { .. })) {
        agledger_ops::remove_tree(dir, &staging);
    }
    match outcome? {
        Outcome::Done => Ok(Report::ok(format!(
            "rolled back {} -> {to_version}: database of {backup} restored, image pinned, services healthy, vault checked",
            current.version
        ))
        .fact("backup", &backup)
        .fact("running version", &to_version)
        .fact("image", &state.to_pin)
        .fact("lost", if lost.is_empty() { "nothing".to_string() } else { lost.join(", ") })
        .data(
            json!({
                "from_version": current.version,
                "to_version": to_version,
                "image_pin": state.to_pin,
                "backup": backup,
                "lost": lost,
            })
            .to_string(),
        )),
        other => other.into_result("rollback").map(|()| Report::ok("")),
    }
}

/// Rows written since the backup, per table, in words ("12 mandates").
fn lost_rows(manifest: Option<&serde_json::Value>) -> Result<Vec<String>> {
    let Some(counts) = manifest.and_then(|m| m["row_counts"].as_object()) else {
        return Ok(vec![
            "unknown (the backup has no manifest with row counts)".into()
        ]);
    };
    let conn = db::connect(swap::DB)?;
    let mut lost = Vec::new();
    // `_migrations` and the like are the schema's bookkeeping, not data.
    for (table, then) in counts
        .iter()
        .filter(|(t, _)| !t.rsplit('.').next().unwrap_or(t).starts_with('_'))
    {
        let quoted: Vec<String> = table
            .split('.')
            .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
            .collect();
        let Ok(now) = vault::count(&conn, &format!("SELECT count(*) FROM {}", quoted.join(".")))
        else {
            continue;
        };
        let then = then.as_u64().unwrap_or(0);
        let name = table.rsplit('.').next().unwrap_or(table).replace('_', " ");
        if now > then {
            lost.push(format!("{} {name}", now - then));
        } else if now < then {
            lost.push(format!(
                "{} {name} deleted since the backup come back",
                then - now
            ));
        }
    }
    Ok(lost)
}

fn confirm(
    from: &str,
    to: &str,
    backup: &str,
    made: &str,
    lost: &[String],
    yes: bool,
) -> Result<()> {
    // Net row counts of the tables the backup knew: updates, and rows in
    // tables a newer migration made, are lost too and not counted here.
    let loss = if lost.is_empty() {
        "No rows were added to or deleted from the backed-up tables since the backup (updates are not counted)."
            .to_string()
    } else {
        format!(
            "Written since the backup and LOST by the rollback: {} (net row counts of the backed-up tables; \
             updates and tables added by the upgrade are lost too).",
            lost.join(", ")
        )
    };
    let plan = format!(
        "Roll back AGLedger {from} -> {to}: stop the services, put the database of {backup} (made {made}) in place \
         of the live one, pin {to}'s image, start, check health, version and the vault.\n{loss}"
    );
    if yes {
        progress::info(&plan);
        return Ok(());
    }
    match progress::confirm(&format!("{plan}\nProceed?")) {
        Confirmation::Yes => Ok(()),
        Confirmation::Declined => Err(fail("rollback cancelled: nothing was changed")),
        Confirmation::NoTerminal => Err(invalid(
            "a rollback replaces the database and needs a yes: there is no terminal to ask on, so run again \
             with --yes (e.g. opshost run --yes rollback.wasm). Nothing was changed",
        )),
    }
}

fn recover(dir: &Dir, interrupted: Interrupted<State>) -> Result<Report> {
    let staging = interrupted.state.staging.clone();
    let to = interrupted.state.to_version.clone();
    let outcome = RUNBOOK.recover(dir, interrupted)?;
    agledger_ops::remove_tree(dir, &staging);
    match outcome {
        Outcome::Done => Ok(Report::ok(format!(
            "the rollback to {to} had completed; its cleanup is done now"
        ))),
        Outcome::RolledBack { .. } => Ok(Report::ok(
            "the interrupted rollback was undone: the deployment is as it was before it",
        )),
        other => Err(fail(format!(
            "undoing the rollback: {}",
            describe(&fail(other.describe("rollback")))
        ))),
    }
}
