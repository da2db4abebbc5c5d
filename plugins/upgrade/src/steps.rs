//! The upgrade as a runbook: the vendor's upgrade.sh, step by step, each
//! change with its undo. The engine journals the state below in the backup
//! directory before and after every step.

use agledger_ops::deployment::{self as dep, API, CONTAINERS, WORKER};
use agledger_ops::{artifact, backup, release, restore};
use opshost_sdk::container::{self, RunSpec};
use opshost_sdk::runbook::{text_field, Runbook, State, Step};
use opshost_sdk::{fail, fs, progress, Context, Result};
use serde_json::{json, Value};

/// What the steps share; every field is journaled.
pub struct Upgrade {
    pub from_version: String,
    pub to_version: String,
    /// The image agledger-api ran, as configured (`repo:tag` or a pin).
    pub from_image: String,
    /// `repo@sha256:…` of each, once pulled and verified.
    pub from_pin: String,
    pub to_pin: String,
    pub repository: String,
    /// The pre-upgrade backup (none with --skip-backup).
    pub backup: Option<String>,
    pub live_db: String,
    /// Makes scratch names unique.
    pub id: String,
    pub keep: usize,
    pub ready_within_s: u64,
    /// This run only: has `migrate` been started? Until then, undoing the
    /// step has no database to put back (and throwing away the writes made
    /// since the backup would be a loss for nothing). Not journaled: a
    /// recovering run assumes it had.
    pub migrate_started: bool,
}

impl State for Upgrade {
    fn to_json(&self) -> Value {
        json!({
            "from_version": self.from_version,
            "to_version": self.to_version,
            "from_image": self.from_image,
            "from_pin": self.from_pin,
            "to_pin": self.to_pin,
            "repository": self.repository,
            "backup": self.backup,
            "live_database": self.live_db,
            "id": self.id,
            "keep": self.keep,
            "ready_within_s": self.ready_within_s,
        })
    }

    fn from_json(v: &Value) -> Result<Self> {
        let text = |key: &str| text_field(v, "upgrade", key);
        Ok(Self {
            from_version: text("from_version")?,
            to_version: text("to_version")?,
            from_image: text("from_image")?,
            from_pin: text("from_pin")?,
            to_pin: text("to_pin")?,
            repository: text("repository")?,
            backup: v["backup"].as_str().map(str::to_string),
            live_db: text("live_database")?,
            id: text("id")?,
            keep: v["keep"].as_u64().unwrap_or(7) as usize,
            ready_within_s: v["ready_within_s"].as_u64().unwrap_or(120),
            migrate_started: true,
        })
    }
}

pub const RECOVER: &str = "opshost run upgrade.wasm -- --recover";
/// Every step may be applied again (a pull, a new backup, migrations that
/// skip what is applied, idempotent .env edits, recreates): an interrupted
/// upgrade can go on from where it stopped.
pub const RESUME: &str = "opshost run upgrade.wasm -- --resume";

pub const RUNBOOK: Runbook<Upgrade> = Runbook {
    operation: "upgrade",
    recover_command: RECOVER,
    steps: &[
        Step {
            name: "pull and verify the images",
            apply: pull_images,
            undo: None,
        },
        Step {
            name: "pre-upgrade backup",
            apply: pre_upgrade_backup,
            undo: None,
        },
        Step {
            name: "stop agledger-worker",
            apply: stop_worker,
            undo: Some(|_| container::start(CONTAINERS, WORKER)),
        },
        Step {
            name: "run the migrations",
            apply: migrate,
            undo: Some(put_back_database),
        },
        Step {
            name: "write .env",
            apply: |u| release::write_env(&u.to_version, &u.to_pin),
            undo: Some(|_| release::restore_env()),
        },
        Step {
            name: "replace agledger-api",
            apply: |u| release::replace_api(&u.to_pin, &u.to_version, u.ready_within_s),
            undo: Some(|u| release::put_back_stopped(API, &u.from_pin, &u.from_version)),
        },
        Step {
            name: "replace agledger-worker",
            apply: |u| release::replace_worker(&u.to_pin, &u.to_version, u.ready_within_s),
            undo: Some(|u| release::put_back_stopped(WORKER, &u.from_pin, &u.from_version)),
        },
        Step {
            name: "check the upgraded deployment",
            apply: check,
            undo: None,
        },
    ],
    finish: &[Step {
        name: "record the upgrade",
        apply: record,
        undo: None,
    }],
};

fn backups() -> Result<fs::Dir> {
    fs::open("backups").context("opening the backup directory")
}

fn pre_upgrade_backup(u: &mut Upgrade) -> Result<()> {
    let dir = backups()?;
    if u.backup.is_none() {
        progress::warn(
            "NO PRE-UPGRADE BACKUP (--skip-backup): if a migration fails or the new release is unhealthy, \
             the database cannot be put back as it was",
        );
    } else {
        progress::step("pre-upgrade backup (the rollback point)", None);
        // Marked as the rollback point (and the vendor's
        // .pre-upgrade-version written) only once the upgrade completed: an
        // upgrade that undoes itself must not move the markers off the
        // rollback point of the last one that did.
        let taken = backup::take(
            &dir,
            &backup::Options {
                keep: u.keep,
                rollback_point: false,
                clean_interrupted: false,
            },
        )
        .context("the pre-upgrade backup")?;
        u.backup = Some(taken.name);
    }
    Ok(())
}

/// Both images, by digest from their own repository: the target to run,
/// the current one to come back to. The host verifies signatures when it
/// pulls (a trust policy in its config) and refuses unverified ones.
fn pull_images(u: &mut Upgrade) -> Result<()> {
    let target = format!("{}:{}", u.repository, u.to_version);
    progress::step(&format!("pulling {target}"), None);
    u.to_pin = container::pull(CONTAINERS, &target).context(format!("pulling {target}"))?;
    progress::info(&format!("target image: {}", u.to_pin));
    progress::step(&format!("pulling {} (to come back to)", u.from_image), None);
    u.from_pin = container::pull(CONTAINERS, &u.from_image).context(format!(
        "pulling the running image {} (needed to undo the upgrade)",
        u.from_image
    ))?;
    Ok(())
}

/// The vendor stops the worker while the migrations run. A scaled worker
/// (the HA layout) is not stopped: the point of several is that one always
/// serves, so its release's migrations must be online; it is replaced one
/// container at a time instead.
fn stop_worker(_: &mut Upgrade) -> Result<()> {
    let replicas = container::list(CONTAINERS)?
        .iter()
        .filter(|c| c.service == WORKER)
        .count();
    if replicas > 1 {
        progress::info(&format!(
            "agledger-worker runs {replicas} containers (scaled): they keep serving through the migrations \
             and are replaced one at a time"
        ));
        return Ok(());
    }
    progress::step("stopping agledger-worker", None);
    container::stop(CONTAINERS, WORKER, Some(30))
}

fn migrate(u: &mut Upgrade) -> Result<()> {
    progress::step(&format!("running the migrations of {}", u.to_version), None);
    // The host runs only digests it verified in this run (a resumed run
    // did not pull yet).
    container::pull(CONTAINERS, &u.to_pin).context(format!("pulling {}", u.to_pin))?;
    u.migrate_started = true;
    let spec = RunSpec {
        image: Some(u.to_pin.clone()),
        command: Some(vec!["migrate".into()]),
        env_set: vec![],
        timeout_ms: Some(1_800_000),
    };
    let out = container::run(CONTAINERS, API, &spec)?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.exit_code != 0 {
        return Err(fail(format!(
            "the migrations of {} failed (exit {}):\n{}",
            u.to_version,
            out.exit_code,
            release::indent(output.trim())
        )));
    }
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        progress::info(line);
    }
    Ok(())
}

/// Undo the migrations: the database of the pre-upgrade backup goes back
/// in place (migrations are forward-only), then the API starts again.
fn put_back_database(u: &mut Upgrade) -> Result<()> {
    if !u.migrate_started {
        progress::info("the migrations never started: the database is as it was");
        container::start(CONTAINERS, API)?;
        return dep::wait_ready(u.ready_within_s * 1000);
    }
    let Some(backup) = u.backup.clone().filter(|b| !b.is_empty()) else {
        // Nothing to put back with: say so and go on undoing the rest (a
        // failing undo would leave a journal no run could clear).
        progress::warn(
            "NO PRE-UPGRADE BACKUP (--skip-backup): the database keeps the migrations it got, which the \
             previous version may refuse; restore a backup taken before the upgrade \
             (opshost run restore.wasm -- BACKUP) if it does",
        );
        container::start(CONTAINERS, API)?;
        return dep::wait_ready(u.ready_within_s * 1000);
    };
    progress::step(
        &format!("putting the pre-upgrade database back from {backup}"),
        None,
    );
    restore::put_back(&backups()?, &backup, &u.live_db, &u.id)?;
    container::start(CONTAINERS, API)?;
    dep::wait_ready(u.ready_within_s * 1000)
}

fn check(u: &mut Upgrade) -> Result<()> {
    progress::step("checking the upgraded deployment", None);
    release::expect_version(&u.to_version)?;
    match dep::reported_version() {
        Some(v) if v == u.to_version => {}
        other => {
            return Err(fail(format!(
                "/conformance reports version {}, not {}",
                other.as_deref().unwrap_or("nothing"),
                u.to_version
            )))
        }
    }
    dep::preflight(None, vec![]).map_err(|e| release::with_logs(e, API))
}

/// What rollback needs later; the `.env` copy is no longer needed.
fn record(u: &mut Upgrade) -> Result<()> {
    let compose = fs::open(dep::COMPOSE)?;
    let _ = compose.remove(release::ENV_SAVED);
    let dir = backups()?;
    if let Some(backup) = u.backup.as_deref().filter(|b| !b.is_empty()) {
        dir.write(artifact::ROLLBACK_MARKER, format!("{backup}\n").as_bytes())?;
    }
    // The vendor's marker: the version that ran before the last upgrade.
    dir.write(
        artifact::VENDOR_PRE_UPGRADE,
        format!("{}\n", u.from_version).as_bytes(),
    )?;
    let doc = json!({
        "from_version": u.from_version,
        "from_pin": u.from_pin,
        "to_version": u.to_version,
        "to_pin": u.to_pin,
        "backup": u.backup,
        "at": agledger_ops::clock::rfc3339(agledger_ops::clock::now()),
    });
    dir.write(artifact::LAST_UPGRADE, doc.to_string().as_bytes())
}
