//! The restore as a runbook: its steps, each with its undo, and the state
//! they share (journaled by the engine in the backup directory before and
//! after each step, so a restore that was killed is found by the next run
//! and undone with `--recover`).

use opshost_sdk::runbook::{text_field, Runbook, State, Step};
use opshost_sdk::{db, progress, Result};
use serde_json::{json, Value};

use agledger_ops::restore::{self as restoring, swap, verify};
use agledger_ops::vault::checkpoint::Checkpoint;

/// What the steps share. The journaled part says which databases are
/// which; the rest is this run's.
pub struct Restore {
    pub backup: String,
    pub staging: String,
    /// The live database's name on the server.
    pub live_db: String,
    pub restore_db: String,
    pub previous_db: String,
    pub keep_previous: bool,
    // This run only:
    pub dump_path: String,
    pub jobs: u32,
    pub allow_broken_vault: bool,
    pub manifest: Option<Value>,
    pub checkpoint: Option<Checkpoint>,
    pub verified: Option<verify::Verified>,
    pub version: String,
    pub previous: String,
}

impl State for Restore {
    fn to_json(&self) -> Value {
        json!({
            "backup": self.backup,
            "staging": self.staging,
            "live_database": self.live_db,
            "restore_database": self.restore_db,
            "previous_database": self.previous_db,
            "keep_previous": self.keep_previous,
        })
    }

    fn from_json(doc: &Value) -> Result<Self> {
        let text = |key: &str| text_field(doc, "restore", key);
        Ok(Self {
            backup: text("backup")?,
            staging: text("staging")?,
            live_db: text("live_database")?,
            restore_db: text("restore_database")?,
            previous_db: text("previous_database")?,
            keep_previous: doc["keep_previous"].as_bool().unwrap_or(false),
            dump_path: String::new(),
            jobs: 1,
            allow_broken_vault: false,
            manifest: None,
            checkpoint: None,
            verified: None,
            version: String::new(),
            previous: String::new(),
        })
    }
}

pub const RUNBOOK: Runbook<Restore> = Runbook {
    operation: "restore",
    recover_command: "opshost run restore.wasm -- --recover",
    steps: &[
        Step {
            name: "restore into a new database and verify it",
            apply: restore_beside,
            undo: Some(drop_restored),
        },
        Step {
            name: "stop the services",
            apply: |_| swap::stop_services(),
            undo: Some(|_| swap::start_and_check().map(drop)),
        },
        Step {
            name: "move the live database aside",
            apply: |r| {
                progress::step("swapping databases", None);
                swap::move_aside(&r.live_db, &r.previous_db)
            },
            undo: Some(|r| swap::undo_move_aside(&r.live_db, &r.previous_db)),
        },
        Step {
            name: "move the restored database in",
            apply: |r| swap::move_in(&r.restore_db, &r.live_db),
            undo: Some(|r| swap::undo_move_in(&r.restore_db, &r.live_db, &r.previous_db)),
        },
        Step {
            name: "start the services and check them",
            apply: |r| {
                r.version = swap::start_and_check()?;
                Ok(())
            },
            undo: Some(|_| swap::stop_services()),
        },
    ],
    finish: &[Step {
        name: "drop the previous database",
        apply: |r| {
            r.previous = finish(r);
            Ok(())
        },
        undo: None,
    }],
};

fn restore_beside(r: &mut Restore) -> Result<()> {
    r.verified = Some(restoring::into_new_database(
        &r.dump_path,
        &r.restore_db,
        r.jobs,
        r.manifest.as_ref(),
        r.checkpoint.as_ref(),
        r.allow_broken_vault,
    )?);
    Ok(())
}

fn drop_restored(r: &mut Restore) -> Result<()> {
    restoring::drop_if_exists(&r.restore_db)
}

/// Drop the previous database unless it is to be kept; what became of it.
/// Never fails: the restore is complete by now.
fn finish(r: &Restore) -> String {
    if r.keep_previous {
        return format!("kept as {} (--keep-previous)", r.previous_db);
    }
    if !swap::exists(&r.previous_db).unwrap_or(true) {
        return "dropped".into();
    }
    progress::step(
        &format!("dropping the previous database {}", r.previous_db),
        None,
    );
    match db::drop_database(swap::DB, &r.previous_db) {
        Ok(()) => "dropped".into(),
        Err(e) => {
            progress::warn(&format!(
                "could not drop {}: {}",
                r.previous_db,
                opshost_sdk::describe(&e)
            ));
            format!("still there as {} (drop it when convenient)", r.previous_db)
        }
    }
}
