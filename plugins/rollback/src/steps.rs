//! The rollback as a runbook: the rollback point restored beside the live
//! database, then services stopped, databases swapped, `.env` and the
//! services put on the previous release, the result checked.

use agledger_ops::deployment::{self as dep, API, CONTAINERS};
use agledger_ops::restore::{self as restoring, swap, verify};
use agledger_ops::vault::checkpoint::{self, Checkpoint};
use agledger_ops::{artifact, release};
use opshost_sdk::runbook::{text_field, Runbook, State, Step};
use opshost_sdk::{container, db, fs, progress, Context, Result};
use serde_json::{json, Value};

/// What the steps share; journaled, except the run-only part.
pub struct Rollback {
    pub backup: String,
    pub staging: String,
    pub from_version: String,
    pub from_image: String,
    pub from_pin: String,
    pub to_version: String,
    pub to_image: String,
    pub to_pin: String,
    pub live_db: String,
    pub restore_db: String,
    pub previous_db: String,
    pub ready_within_s: u64,
    // This run only:
    pub dump_path: String,
    pub manifest: Option<Value>,
    /// The backup's vault checkpoint; after the restore step, the one that
    /// step's check verified, so the final check proves it by digest.
    pub checkpoint: Option<Checkpoint>,
}

impl State for Rollback {
    fn to_json(&self) -> Value {
        json!({
            "backup": self.backup, "staging": self.staging,
            "from_version": self.from_version, "from_image": self.from_image, "from_pin": self.from_pin,
            "to_version": self.to_version, "to_image": self.to_image, "to_pin": self.to_pin,
            "live_database": self.live_db, "restore_database": self.restore_db,
            "previous_database": self.previous_db, "ready_within_s": self.ready_within_s,
        })
    }

    fn from_json(v: &Value) -> Result<Self> {
        let text = |key: &str| text_field(v, "rollback", key);
        Ok(Self {
            backup: text("backup")?,
            staging: text("staging")?,
            from_version: text("from_version")?,
            from_image: text("from_image")?,
            from_pin: text("from_pin")?,
            to_version: text("to_version")?,
            to_image: text("to_image")?,
            to_pin: text("to_pin")?,
            live_db: text("live_database")?,
            restore_db: text("restore_database")?,
            previous_db: text("previous_database")?,
            ready_within_s: v["ready_within_s"].as_u64().unwrap_or(120),
            dump_path: String::new(),
            manifest: None,
            checkpoint: None,
        })
    }
}

pub const RECOVER: &str = "opshost run rollback.wasm -- --recover";

pub const RUNBOOK: Runbook<Rollback> = Runbook {
    operation: "rollback",
    recover_command: RECOVER,
    steps: &[
        Step {
            name: "pull and verify the images",
            apply: pull_images,
            undo: None,
        },
        Step {
            name: "restore the rollback point beside the live database",
            apply: |r| {
                let verified = restoring::into_new_database(
                    &r.dump_path,
                    &r.restore_db,
                    2,
                    r.manifest.as_ref(),
                    r.checkpoint.as_ref(),
                    false,
                )?;
                if let Some(scan) = verified.vault {
                    r.checkpoint = Some(scan.checkpoint);
                }
                Ok(())
            },
            undo: Some(|r| restoring::drop_if_exists(&r.restore_db)),
        },
        Step {
            name: "stop the services",
            apply: |_| swap::stop_services(),
            undo: Some(|r| {
                container::start(CONTAINERS, dep::API)?;
                container::start(CONTAINERS, dep::WORKER)?;
                dep::wait_ready(r.ready_within_s * 1000)
            }),
        },
        Step {
            name: "move the live database aside",
            apply: |r| swap::move_aside(&r.live_db, &r.previous_db),
            undo: Some(|r| swap::undo_move_aside(&r.live_db, &r.previous_db)),
        },
        Step {
            name: "move the restored database in",
            apply: |r| swap::move_in(&r.restore_db, &r.live_db),
            undo: Some(|r| swap::undo_move_in(&r.restore_db, &r.live_db, &r.previous_db)),
        },
        Step {
            name: "write .env",
            apply: |r| release::write_env(&r.to_version, &r.to_pin),
            undo: Some(|_| release::restore_env()),
        },
        Step {
            name: "replace agledger-api",
            apply: |r| release::replace_api(&r.to_pin, &r.to_version, r.ready_within_s),
            undo: Some(|r| release::put_back_stopped(API, &r.from_pin, &r.from_version)),
        },
        Step {
            name: "replace agledger-worker",
            apply: |r| release::replace_worker(&r.to_pin, &r.to_version, r.ready_within_s),
            undo: Some(|r| release::put_back_stopped(dep::WORKER, &r.from_pin, &r.from_version)),
        },
        Step {
            name: "check health, version, preflight and the vault",
            apply: check,
            undo: None,
        },
    ],
    finish: &[Step {
        name: "drop the replaced database",
        apply: finish,
        undo: None,
    }],
};

fn pull_images(r: &mut Rollback) -> Result<()> {
    progress::step(&format!("pulling {}", r.to_image), None);
    r.to_pin =
        container::pull(CONTAINERS, &r.to_image).context(format!("pulling {}", r.to_image))?;
    progress::step(&format!("pulling {} (to come back to)", r.from_image), None);
    r.from_pin = container::pull(CONTAINERS, &r.from_image)
        .context(format!("pulling the running image {}", r.from_image))?;
    Ok(())
}

fn check(r: &mut Rollback) -> Result<()> {
    progress::step("checking the rolled-back deployment", None);
    release::expect_version(&r.to_version)?;
    dep::preflight(None, vec![]).map_err(|e| release::with_logs(e, API))?;
    let checked = verify::restored(&r.live_db, None, r.checkpoint.as_ref(), false)?;
    if let Some(scan) = checked.vault {
        progress::info(&format!(
            "vault: {} chains, {} entries, none broken ({} proven by the digest of what the restore step verified, {} signatures verified)",
            scan.mandates, scan.entries, scan.proven, scan.signatures
        ));
        // The rolled-back database is the live one now (this is the last
        // step that can fail): the next scan starts from what was verified.
        if let Err(e) = fs::open("backups").and_then(|d| checkpoint::save(&d, &scan.checkpoint)) {
            progress::warn(&format!(
                "the vault checkpoint was not updated ({}): the next vault-scan verifies what it cannot prove",
                opshost_sdk::describe(&e)
            ));
        }
    }
    Ok(())
}

fn finish(r: &mut Rollback) -> Result<()> {
    if swap::exists(&r.previous_db)? {
        progress::step(
            &format!("dropping the replaced database {}", r.previous_db),
            None,
        );
        db::drop_database(swap::DB, &r.previous_db)?;
    }
    // (The staging directory is the operation's to remove, however it ends.)
    let backups = fs::open("backups")?;
    // The upgrade is undone: a second rollback has nothing to go back to.
    let _ = backups.remove(artifact::LAST_UPGRADE);
    let compose = fs::open(dep::COMPOSE)?;
    let _ = compose.remove(release::ENV_SAVED);
    Ok(())
}
