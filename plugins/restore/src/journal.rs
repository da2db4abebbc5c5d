//! The restore's journal: one JSON file in the backup directory, written
//! (atomically) before each phase that changes the deployment, removed when
//! the restore has ended either way. Finding one means a restore was killed.

use opshost_sdk::fs::Dir;
use opshost_sdk::{fail, Context, Result};
use serde_json::json;

pub const FILE: &str = ".opshost-restore.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Restoring into / verifying the new database: the deployment is untouched.
    Restoring,
    /// Services stopped and databases being renamed: the deployment is down.
    Swapping,
    /// The new database is live and healthy; the old one is being dropped.
    Finishing,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Self::Restoring => "restoring",
            Self::Swapping => "swapping",
            Self::Finishing => "finishing",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Restoring, Self::Swapping, Self::Finishing]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Journal {
    pub backup: String,
    pub started_at: String,
    pub phase: Phase,
    pub staging: String,
    /// The live database's name on the server.
    pub live_db: String,
    pub restore_db: String,
    pub previous_db: String,
    pub keep_previous: bool,
}

impl Journal {
    pub fn write(&self, dir: &Dir) -> Result<()> {
        let doc = json!({
            "backup": self.backup,
            "started_at": self.started_at,
            "phase": self.phase.as_str(),
            "staging": self.staging,
            "live_database": self.live_db,
            "restore_database": self.restore_db,
            "previous_database": self.previous_db,
            "keep_previous": self.keep_previous,
        });
        dir.write(FILE, doc.to_string().as_bytes())
            .context("writing the restore journal")
    }

    pub fn enter(&mut self, dir: &Dir, phase: Phase) -> Result<()> {
        self.phase = phase;
        self.write(dir)
    }

    pub fn remove(dir: &Dir) {
        let _ = dir.remove(FILE);
    }

    /// The journal of an interrupted restore, if there is one.
    pub fn read(dir: &Dir) -> Result<Option<Self>> {
        let Ok(bytes) = dir.read(FILE) else {
            return Ok(None);
        };
        let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            fail(format!(
                "{FILE} in the backup directory is not readable ({e}): an interrupted restore left it; \
                 check the databases by hand, then remove it"
            ))
        })?;
        let text = |key: &str| doc[key].as_str().unwrap_or_default().to_string();
        let phase = Phase::parse(&text("phase"))
            .ok_or_else(|| fail(format!("{FILE}: unknown phase {:?}", doc["phase"])))?;
        Ok(Some(Self {
            backup: text("backup"),
            started_at: text("started_at"),
            phase,
            staging: text("staging"),
            live_db: text("live_database"),
            restore_db: text("restore_database"),
            previous_db: text("previous_database"),
            keep_previous: doc["keep_previous"].as_bool().unwrap_or(false),
        }))
    }

    pub fn phase_text(&self) -> &'static str {
        match self.phase {
            Phase::Restoring => {
                "while restoring into a new database (the deployment was not touched)"
            }
            Phase::Swapping => "while swapping databases (the services may be stopped)",
            Phase::Finishing => "after the new database was live (only cleanup was left)",
        }
    }
}
