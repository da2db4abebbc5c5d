//! The audit trail: one NDJSON line per host call, denial, refusal and
//! limit. Lines carry names, verbs, outcomes and durations, never a
//! secret, a URL with credentials, SQL parameters or file contents.
//!
//! Identical events in a row (same plugin, capability, resource, verb,
//! outcome and detail) are folded: the first is written at once, the
//! repeats are counted and written as one line with `repeated` and their
//! total duration when a different event comes (at the latest the run's
//! `end`). With the per-run host call limit this bounds what a plugin can
//! make the audit log hold.

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
    file: Mutex<Sink>,
}

struct Sink {
    file: File,
    /// The last event written, as JSON, and how often it has repeated since.
    last: Option<Repeats>,
}

struct Repeats {
    key: String,
    line: Folded,
    count: u64,
    duration_us: u64,
}

/// The line that says how often the event before it repeated: the same
/// fields in the same order, plus `repeated`.
#[derive(Clone, Serialize)]
struct Folded {
    time: String,
    plugin: PluginRef,
    capability: String,
    resource: String,
    verb: String,
    outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    duration_us: u64,
    repeated: u64,
}

impl Sink {
    fn write_line(&mut self, value: &impl Serialize) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(value)?;
        line.push(b'\n');
        // One write call per line keeps lines whole under O_APPEND.
        Ok(self.file.write_all(&line)?)
    }

    /// Write the count of repeats of the last event, if any.
    fn flush_repeats(&mut self) -> anyhow::Result<()> {
        if let Some(r) = self.last.as_mut().filter(|r| r.count > 0) {
            let mut line = r.line.clone();
            line.time = now_rfc3339();
            line.repeated = r.count;
            line.duration_us = r.duration_us;
            r.count = 0;
            r.duration_us = 0;
            self.write_line(&line)?;
        }
        Ok(())
    }
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
            file: Mutex::new(Sink { file, last: None }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one event. An audit line that cannot be written is an error
    /// the caller must act on (the run stops: no unaudited host calls).
    pub fn record(&self, event: &Event<'_>) -> anyhow::Result<()> {
        // Plugin-chosen names and messages are clipped: a line stays small.
        let resource = clip(event.resource);
        let detail = event.detail.map(clip);
        let clipped = Event {
            resource: &resource,
            detail: detail.as_deref(),
            ..event.clone()
        };
        let event = &clipped;
        let key = serde_json::to_string(&(
            &event.plugin.sha256,
            event.capability,
            event.resource,
            event.verb,
            event.outcome,
            event.detail,
        ))?;
        let mut sink = self
            .file
            .lock()
            .map_err(|_| anyhow::anyhow!("audit log lock poisoned"))?;
        let written = (|| -> anyhow::Result<()> {
            if let Some(r) = sink.last.as_mut().filter(|r| r.key == key) {
                r.count += 1;
                r.duration_us = r.duration_us.saturating_add(event.duration_us);
                // Written now and then, so a killed run loses few repeats.
                if r.count >= FLUSH_REPEATS_EVERY {
                    sink.flush_repeats()?;
                }
                return Ok(());
            }
            sink.flush_repeats()?;
            sink.write_line(event)?;
            sink.last = Some(Repeats {
                key,
                line: Folded {
                    time: String::new(),
                    plugin: event.plugin.clone(),
                    capability: event.capability.to_string(),
                    resource: event.resource.to_string(),
                    verb: event.verb.to_string(),
                    outcome: event.outcome.to_string(),
                    detail: event.detail.map(str::to_string),
                    duration_us: 0,
                    repeated: 0,
                },
                count: 0,
                duration_us: 0,
            });
            Ok(())
        })();
        written.with_context(|| format!("cannot write the audit log {}", self.path.display()))
    }

    /// Write any pending count of repeats (the run's end does it anyway).
    pub fn flush(&self) -> anyhow::Result<()> {
        let mut sink = self
            .file
            .lock()
            .map_err(|_| anyhow::anyhow!("audit log lock poisoned"))?;
        sink.flush_repeats()
            .with_context(|| format!("cannot write the audit log {}", self.path.display()))
    }
}

/// Repeats of one event are written at least this often.
const FLUSH_REPEATS_EVERY: u64 = 10_000;
/// The most of a plugin-chosen field (a name, a path, a message) a line keeps.
const MAX_FIELD: usize = 256;

fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_FIELD {
        return text.into();
    }
    let mut end = MAX_FIELD;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &text[..end], text.len()).into()
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_fold_into_one_line_with_a_count() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("audit.ndjson");
        let log = AuditLog::open(&path).expect("open");
        let plugin = PluginRef {
            vendor: "v".into(),
            name: "n".into(),
            version: "1".into(),
            sha256: "x".into(),
        };
        let event = |verb: &'static str| Event {
            time: now_rfc3339(),
            plugin: &plugin,
            capability: "fs",
            resource: "work",
            verb,
            outcome: "ok",
            detail: None,
            duration_us: 2,
        };
        for _ in 0..1000 {
            log.record(&event("stat")).expect("record");
        }
        log.record(&event("read")).expect("record");
        log.record(&event("read")).expect("record");
        drop(log);
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[1]["verb"], "stat");
        assert_eq!(lines[1]["repeated"], 999);
        assert_eq!(lines[1]["duration_us"], 1998);
        assert_eq!(lines[3]["repeated"], 1);
    }
}
