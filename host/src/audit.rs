//! The audit trail: one NDJSON line per host call, denial, refusal and
//! limit. Lines carry names, verbs, outcomes and durations, never a
//! secret, a URL with credentials, SQL parameters or file contents.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::Serialize;

/// The plugin an event is about.
#[derive(Debug, Clone, Serialize)]
pub struct PluginRef {
    pub vendor: String,
    pub name: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event<'a> {
    pub time: String,
    pub plugin: &'a PluginRef,
    /// `fs`, `http`, `db`, `container`, `progress`, or `run` for lifecycle events.
    pub capability: &'a str,
    pub resource: &'a str,
    pub verb: &'a str,
    /// `ok`, `denied`, `not-found`, `invalid-input`, `failed`, `timed-out`,
    /// `unsupported`, `refused`, `limit`, `trap`.
    pub outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    pub duration_us: u64,
}

pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// `~/.local/state/opshost/audit.ndjson` (XDG state dir) unless configured.
    pub fn default_path() -> PathBuf {
        dirs::state_dir()
            .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."))
            .join("opshost")
            .join("audit.ndjson")
    }

    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| {
                format!("cannot create the audit log directory {}", parent.display())
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the audit log {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one event. An audit line that cannot be written is an error
    /// the caller must act on (the run stops: no unaudited host calls).
    pub fn record(&self, event: &Event<'_>) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .map_err(|_| anyhow::anyhow!("audit log lock poisoned"))?;
        // One write call per line keeps lines whole under O_APPEND.
        file.write_all(&line)
            .with_context(|| format!("cannot write the audit log {}", self.path.display()))
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
