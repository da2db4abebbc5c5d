//! The upgrade: what runs, what is asked, the plan, the runbook, the report.

use agledger_ops::deployment::{self as dep, Env};
use agledger_ops::{clock, lock, release, restore::swap};
use opshost_sdk::fs::{self, Dir};
use opshost_sdk::progress::{self, Confirmation};
use opshost_sdk::runbook::{Interrupted, Outcome};
use opshost_sdk::{fail, invalid, Context, Report, Result};
use serde_json::json;

use crate::steps::{Upgrade as State, RECOVER, RESUME, RUNBOOK};
use crate::Options;

opshost_sdk::manifest! {
    name: "upgrade",
    vendor: "opshost",
    description: "Upgrades AGLedger: pre-upgrade backup, signed image by digest, migrations, .env, services replaced one by one and health-gated, result checked; undoes itself on failure",
    applies_to: ">=1.0.0, <2.0.0",
    min_host: "0.1.0",
    requests: [
        ("db=agledger:admin", "pre-upgrade backup (pg_dump); on failure, restores it beside the live database and swaps it in"),
        ("fs=backups:rw", "writes the backup, the journal, the deployment lock, .pre-upgrade-version"),
        ("fs=compose:rw", "reads and edits compose/.env (version, pin, removed variables)"),
        ("fs=install:ro", "reads the VERSION file at the install root"),
        ("container=agledger:inspect,logs,stop,start,pull,recreate,run", "pulls the target image, runs its migrations, replaces agledger-api and -worker"),
        ("http=api/health:GET", "waits for /health/ready, checks the version /health reports"),
        ("http=api/conformance:GET", "checks the version /conformance reports"),
    ],
}

struct Upgrade;

impl opshost_sdk::Operation for Upgrade {
    fn run(args: Vec<String>) -> Result<Report> {
        let opts = crate::parse(&args).map_err(|e| invalid(format!("{e}\n{}", crate::USAGE)))?;
        if opts.help {
            return Ok(Report::ok(crate::USAGE));
        }
        let dir = fs::open("backups").context("opening the backup directory")?;
        // Held for the whole run, automatic rollback included.
        let _lock = lock::take(
            &dir,
            match (opts.recover, opts.resume) {
                (true, _) => "upgrade --recover",
                (_, true) => "upgrade --resume",
                _ => "upgrade",
            },
        )?;
        match (RUNBOOK.interrupted(&dir)?, opts.recover, opts.resume) {
            (Some(interrupted), true, _) => recover(&dir, interrupted),
            (Some(interrupted), _, true) => {
                progress::info(&format!(
                    "resuming the upgrade {} -> {} started {}, stopped at \"{}\"",
                    interrupted.state.from_version,
                    interrupted.state.to_version,
                    interrupted.started_at,
                    interrupted.at
                ));
                let started = clock::now();
                let (outcome, state) = RUNBOOK.resume(&dir, interrupted, opts.auto_rollback)?;
                report(&state, outcome, clock::now() - started)
            }
            (Some(interrupted), false, false) => Err(fail(format!(
                "an upgrade from {} to {} started {} did not finish: it stopped at \"{}\" (its process is gone). \
                 Run `{RECOVER}` to undo it (the deployment comes back as it was before it, data included), \
                 or `{RESUME}` to go on with it",
                interrupted.state.from_version,
                interrupted.state.to_version,
                interrupted.started_at,
                interrupted.at
            ))),
            (None, true, _) | (None, _, true) => Ok(Report::ok(
                "nothing to recover or resume: no interrupted upgrade is recorded",
            )),
            (None, false, false) => upgrade(&dir, &opts),
        }
    }
}

opshost_sdk::plugin!(Upgrade);

fn upgrade(dir: &Dir, opts: &Options) -> Result<Report> {
    let target = opts
        .target
        .clone()
        .ok_or_else(|| invalid("no target version"))?;
    let env = Env::open()?;
    let current = dep::current(&env)?;
    for d in &current.disagreements {
        progress::warn(&format!(
            "the running version is {} by {}, but {d}",
            current.version, current.source
        ));
    }
    let running = semver::Version::parse(&current.version).map_err(|e| {
        fail(format!(
            "the running version {:?} (from {}) is not a release version: {e}",
            current.version, current.source
        ))
    })?;
    if running == target {
        return Ok(Report::ok(format!(
            "nothing to do: {target} is already running (by {}). Nothing was changed",
            current.source
        ))
        .data(json!({ "nothing_to_do": true, "version": target.to_string() }).to_string()));
    }
    if target < running {
        return Err(invalid(format!(
            "{target} is older than the running {running}: an upgrade never goes back \
             (migrations are forward-only). To go back to the version before the last upgrade, \
             use opshost run rollback.wasm. Nothing was changed"
        )));
    }

    // The doctor first: refuse what would break the upgrade before anything changes.
    crate::doctor::preflight(&opts.skip_checks)?;

    let stamp = clock::stamp(clock::now());
    let mut state = State {
        from_version: current.version.clone(),
        to_version: target.to_string(),
        // A pin is exact; a tag (`latest`!) may have moved since it was
        // pulled: come back to the version that runs, by its own tag.
        from_image: if current.image.contains('@') {
            current.image.clone()
        } else {
            format!("{}:{}", dep::repository(&current.image), current.version)
        },
        from_pin: String::new(),
        to_pin: String::new(),
        repository: dep::repository(&current.image),
        backup: (!opts.skip_backup).then(String::new),
        live_db: swap::live_database().context("asking the database its name")?,
        id: format!("{}_{}", stamp.replace('-', "_"), lock::unique_suffix()),
        keep: opts.keep,
        ready_within_s: opts.ready_within_s,
        migrate_started: false,
    };
    if state.backup.is_some() {
        scratch_names_fit(&state.live_db, &state.id)?;
    }
    release::drop_stale_env_copy()?;
    let removed = env.removed_present();
    confirm(&state, &removed, opts)?;

    let started = clock::now();
    let outcome = RUNBOOK.run_with(
        dir,
        &mut state,
        &clock::rfc3339(started),
        opts.auto_rollback,
    )?;
    report(&state, outcome, clock::now() - started)
}

/// How the runbook ended, for the operator.
fn report(state: &State, outcome: Outcome, seconds: i64) -> Result<Report> {
    match outcome {
        Outcome::Done => Ok(Report::ok(format!(
            "upgraded {} -> {}: services healthy, version and preflight checked ({seconds} s)",
            state.from_version, state.to_version
        ))
        .fact("from", &state.from_version)
        .fact("to", &state.to_version)
        .fact("image", &state.to_pin)
        .fact("rollback point", state.backup.as_deref().unwrap_or("none (--skip-backup)"))
        .fact("undo with", "opshost run rollback.wasm")
        .data(
            json!({
                "from_version": state.from_version,
                "to_version": state.to_version,
                "image_pin": state.to_pin,
                "previous_image_pin": state.from_pin,
                "backup": state.backup,
                "seconds": seconds,
            })
            .to_string(),
        )),
        // A refused image signature stays a refusal (exit code "denied").
        Outcome::RolledBack {
            step,
            error: opshost_sdk::Error::Denied(why),
        } if step == RUNBOOK.steps[0].name => Err(opshost_sdk::Error::Denied(format!(
            "upgrade to {} refused: {why}. Nothing was changed",
            state.to_version
        ))),
        // Failing at the first step (the pull), nothing had changed yet.
        Outcome::RolledBack { step, error } if step == RUNBOOK.steps[0].name => Err(fail(format!(
            "upgrade to {} failed at \"{step}\": {}\nNothing was changed: {} is running as before",
            state.to_version,
            opshost_sdk::describe(&error),
            state.from_version
        ))),
        Outcome::RolledBack { step, error } => Err(fail(format!(
            "upgrade to {} failed at \"{step}\": {}\nEvery change was undone: {} is running again with its data \
             as it was before the upgrade (the pre-upgrade backup is {})",
            state.to_version,
            opshost_sdk::describe(&error),
            state.from_version,
            state
                .backup
                .as_deref()
                .filter(|b| !b.is_empty())
                .unwrap_or("not made")
        ))),
        Outcome::Stopped { step, error, .. } => Err(fail(format!(
            "upgrade to {} failed at \"{step}\": {}\nStopped there for inspection (--no-auto-rollback): nothing was undone. \
             To roll back: {RECOVER}",
            state.to_version,
            opshost_sdk::describe(&error)
        ))),
        degraded @ Outcome::Degraded { .. } => Err(fail(degraded.describe("upgrade"))),
    }
}

/// An automatic rollback restores beside the live database under scratch
/// names; find out now, not half-way through an undo, if the server cannot
/// hold them (PostgreSQL: 63 bytes; the host: lower-case, digits, `_`).
fn scratch_names_fit(live: &str, id: &str) -> Result<()> {
    let longest = format!("{live}_restoring_{id}");
    let fits = longest.len() <= 63
        && longest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if fits {
        return Ok(());
    }
    Err(fail(format!(
        "the database {live:?} cannot have an automatic rollback: restoring beside it needs the name {longest:?}, \
         and database names here are lower-case letters, digits and '_', at most 63 bytes. Nothing was changed. \
         Upgrade with --skip-backup after a backup of your own, or rename the database"
    )))
}

/// Print the plan; ask on a terminal, `--yes` otherwise.
fn confirm(state: &State, removed: &[&str], opts: &Options) -> Result<()> {
    let mut plan = vec![format!(
        "Upgrade AGLedger {} -> {} ({}:{}):",
        state.from_version, state.to_version, state.repository, state.to_version
    )];
    plan.push("  1. pull the target image and verify its signature; pin its digest".into());
    match &state.backup {
        Some(_) => plan.push("  2. back up the database (the rollback point)".into()),
        None => plan
            .push("  2. NO BACKUP (--skip-backup): a failure cannot restore the database".into()),
    }
    plan.push("  3. stop agledger-worker; run the migrations of the new release".into());
    let mut env_line = format!(
        "  4. compose/.env: AGLEDGER_VERSION={}, AGLEDGER_IMAGE_PIN=<digest>",
        state.to_version
    );
    if !removed.is_empty() {
        env_line.push_str(&format!(", comment out {}", removed.join(", ")));
    }
    plan.push(env_line);
    plan.push("  5. replace agledger-api, then agledger-worker, each waiting for health".into());
    plan.push("  6. check /health, /conformance and preflight".into());
    plan.push(if opts.auto_rollback {
        "Any failure undoes every change and brings the database back.".into()
    } else {
        format!("--no-auto-rollback: a failure stops there; `{RECOVER}` undoes")
    });
    let plan = plan.join("\n");
    if opts.yes {
        progress::info(&plan);
        return Ok(());
    }
    match progress::confirm(&format!("{plan}\nProceed?")) {
        Confirmation::Yes => Ok(()),
        Confirmation::Declined => Err(fail("upgrade cancelled: nothing was changed")),
        Confirmation::NoTerminal => Err(invalid(
            "an upgrade changes the deployment and needs a yes: there is no terminal to ask on, so run again \
             with --yes (e.g. opshost run --yes upgrade.wasm -- VERSION). Nothing was changed",
        )),
    }
}

/// Undo an interrupted (or stopped) upgrade.
fn recover(dir: &Dir, interrupted: Interrupted<State>) -> Result<Report> {
    let (from, to, at) = (
        interrupted.state.from_version.clone(),
        interrupted.state.to_version.clone(),
        interrupted.at.clone(),
    );
    progress::info(&format!(
        "undoing the upgrade {from} -> {to} started {}, stopped at \"{at}\"",
        interrupted.started_at
    ));
    match RUNBOOK.recover(dir, interrupted)? {
        Outcome::Done => Ok(Report::ok(format!(
            "the upgrade to {to} had completed; only its record was left to write, and is now"
        ))),
        Outcome::RolledBack { .. } => Ok(Report::ok(format!(
            "the upgrade {from} -> {to} was undone: {from} is running again with its pre-upgrade data"
        ))
        .fact("interrupted at", at)),
        other => Err(fail(other.describe("undoing the upgrade"))),
    }
}
