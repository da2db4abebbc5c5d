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
//!
//! Two line formats, chosen by `[audit] format` in the config: opshost's
//! own (`opshost`, the default, below) and OCSF API Activity events
//! (`ocsf`, see [`ocsf`]) for a SIEM. Both carry the same facts;
//! `opshost audit` ([`view`]) reads either, line by line.

pub mod ocsf;
pub mod view;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// How audit lines are written (`[audit] format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One flat JSON object per event (the fields of [`Event`]).
    #[default]
    Opshost,
    /// OCSF API Activity (class 6003) events, see [`ocsf`].
    Ocsf,
}

/// The plugin an event is about, and the mode its run is in.
#[derive(Debug, Clone, Serialize)]
pub struct PluginRef {
    pub vendor: String,
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// `run`, `plan` (`--plan`: changes were simulated) or `learn`
    /// (`--learn`), see [`MODES`]. Written only when not `run`, so the
    /// lines of ordinary runs stay as they were before modes existed; a
    /// reader takes a missing `mode` as `run`.
    #[serde(skip_serializing_if = "is_run")]
    pub mode: &'static str,
}

/// The modes a run can be in (what `PluginRef::mode` holds).
pub const MODES: [&str; 3] = ["run", "plan", "learn"];

/// Every outcome an event can have. `held`: a lock another run holds;
/// `planned`: plan mode answered a change without making it; `uncertain`:
/// the call reached its backend and failed there, so some effect may have
/// happened.
pub const OUTCOMES: [&str; 13] = [
    "ok",
    "held",
    "planned",
    "denied",
    "refused",
    "not-found",
    "invalid-input",
    "failed",
    "uncertain",
    "timed-out",
    "unsupported",
    "limit",
    "trap",
];

fn is_run(mode: &&'static str) -> bool {
    *mode == "run"
}

#[derive(Debug, Clone, Serialize)]
pub struct Event<'a> {
    pub time: String,
    pub plugin: &'a PluginRef,
    /// `fs`, `http`, `db`, `container`, `progress`, or `run` for lifecycle events.
    pub capability: &'a str,
    pub resource: &'a str,
    pub verb: &'a str,
    /// One of [`OUTCOMES`].
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
    format: Format,
    /// Where OCSF events say they come from (this host).
    origin: ocsf::Origin,
    /// The last event written, as JSON, and how often it has repeated since.
    last: Option<Repeats>,
}

struct Repeats {
    key: String,
    line: Folded,
    count: u64,
    duration_us: u64,
    /// When the first of the repeats not yet written happened (OCSF
    /// writes the window an aggregate covers).
    first: Option<String>,
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

impl Folded {
    fn event(&self) -> Event<'_> {
        Event {
            time: self.time.clone(),
            plugin: &self.plugin,
            capability: &self.capability,
            resource: &self.resource,
            verb: &self.verb,
            outcome: &self.outcome,
            detail: self.detail.as_deref(),
            duration_us: self.duration_us,
        }
    }
}

impl Sink {
    fn write_line(&mut self, value: &impl Serialize) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(value)?;
        line.push(b'\n');
        // One write call per line keeps lines whole under O_APPEND.
        Ok(self.file.write_all(&line)?)
    }

    fn write_event(&mut self, event: &Event<'_>) -> anyhow::Result<()> {
        match self.format {
            Format::Opshost => self.write_line(event),
            Format::Ocsf => {
                let line = ocsf::event(event, None, &self.origin);
                self.write_line(&line)
            }
        }
    }

    /// Write the count of repeats of the last event, if any.
    fn flush_repeats(&mut self) -> anyhow::Result<()> {
        let Some(r) = self.last.as_mut().filter(|r| r.count > 0) else {
            return Ok(());
        };
        let mut line = r.line.clone();
        line.time = now_rfc3339();
        line.repeated = r.count;
        line.duration_us = r.duration_us;
        let first = r.first.take();
        r.count = 0;
        r.duration_us = 0;
        match self.format {
            Format::Opshost => self.write_line(&line),
            Format::Ocsf => {
                let aggregate = ocsf::Aggregate {
                    count: line.repeated,
                    first: first.as_deref(),
                };
                let event = ocsf::event(&line.event(), Some(aggregate), &self.origin);
                self.write_line(&event)
            }
        }
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

    /// Open for appending opshost-format lines.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_as(path, Format::Opshost)
    }

    /// Open for appending lines in `format`. A log may hold both formats
    /// (the config changed): each line is read on its own.
    pub fn open_as(path: &Path, format: Format) -> anyhow::Result<Self> {
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
            file: Mutex::new(Sink {
                file,
                format,
                origin: ocsf::Origin::this_host(),
                last: None,
            }),
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
            event.plugin.mode,
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
                if r.count == 0 {
                    r.first = Some(event.time.clone());
                }
                r.count += 1;
                r.duration_us = r.duration_us.saturating_add(event.duration_us);
                // Written now and then, so a killed run loses few repeats.
                if r.count >= FLUSH_REPEATS_EVERY {
                    sink.flush_repeats()?;
                }
                return Ok(());
            }
            sink.flush_repeats()?;
            sink.write_event(event)?;
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
                first: None,
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
            mode: "run",
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

    #[test]
    fn the_mode_is_written_only_when_not_run() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("audit.ndjson");
        let log = AuditLog::open(&path).expect("open");
        for mode in MODES {
            let plugin = PluginRef {
                vendor: "v".into(),
                name: "n".into(),
                version: "1".into(),
                sha256: "x".into(),
                mode,
            };
            log.record(&Event {
                time: now_rfc3339(),
                plugin: &plugin,
                capability: "run",
                resource: "",
                verb: "start",
                outcome: "ok",
                detail: None,
                duration_us: 0,
            })
            .expect("record");
        }
        drop(log);
        let text = std::fs::read_to_string(&path).expect("read");
        let modes: Vec<serde_json::Value> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("json")["plugin"]["mode"]
                    .clone()
            })
            .collect();
        // Lines of ordinary runs are as they were before modes existed.
        assert_eq!(
            modes,
            [serde_json::Value::Null, "plan".into(), "learn".into()]
        );
    }
}
