//! `opshost audit`: read the log line by line (either format, even both
//! in one file), keep the events a [`Filter`] matches, print them as a
//! table or as JSON lines.
//!
//! A line that is not an audit event is skipped and counted, not fatal:
//! the rest of the log is still worth reading in an incident, and the
//! caller reports the skipped lines by number (a log opshost wrote holds
//! none, so any is worth a look: an edit, a cut-off write).

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event read back from the log, whatever format it was written in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub time: String,
    pub plugin: RecordPlugin,
    pub mode: String,
    pub capability: String,
    pub resource: String,
    pub verb: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub duration_us: u64,
    /// A folded line: how many repeats of the event before it this stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeated: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordPlugin {
    pub vendor: String,
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// An opshost-format line (see `super::Event`).
#[derive(Deserialize)]
struct Native {
    time: String,
    plugin: NativePlugin,
    capability: String,
    resource: String,
    verb: String,
    outcome: String,
    detail: Option<String>,
    duration_us: u64,
    repeated: Option<u64>,
}

#[derive(Deserialize)]
struct NativePlugin {
    #[serde(flatten)]
    plugin: RecordPlugin,
    /// Absent on lines of ordinary runs (and on lines from before modes).
    mode: Option<String>,
}

impl Record {
    /// One log line, in either format.
    pub fn parse(line: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
        let record = if value.get("class_uid").is_some() {
            super::ocsf::parse(&value)?
        } else {
            let n: Native =
                serde_json::from_value(value).map_err(|e| format!("not an audit event ({e})"))?;
            Record {
                time: n.time,
                plugin: n.plugin.plugin,
                mode: n.plugin.mode.unwrap_or_else(|| "run".into()),
                capability: n.capability,
                resource: n.resource,
                verb: n.verb,
                outcome: n.outcome,
                detail: n.detail,
                duration_us: n.duration_us,
                repeated: n.repeated,
            }
        };
        record.at()?;
        Ok(record)
    }

    /// When it happened.
    pub fn at(&self) -> Result<SystemTime, String> {
        humantime::parse_rfc3339_weak(&self.time)
            .map_err(|e| format!("time {:?} is not RFC 3339 ({e})", self.time))
    }
}

impl RecordPlugin {
    /// `NAME`, `VENDOR/NAME`, or a sha256 prefix of 8 or more digits.
    fn matches(&self, wanted: &str) -> bool {
        wanted == self.name
            || wanted
                .split_once('/')
                .is_some_and(|(v, n)| v == self.vendor && n == self.name)
            || (wanted.len() >= 8 && self.sha256.starts_with(&wanted.to_ascii_lowercase()))
    }
}

/// Which events to show. Each list matches any of its values (empty: all);
/// all the given ones must match.
#[derive(Debug, Default)]
pub struct Filter {
    pub plugins: Vec<String>,
    pub outcomes: Vec<String>,
    pub capabilities: Vec<String>,
    pub modes: Vec<String>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

impl Filter {
    pub fn matches(&self, r: &Record) -> bool {
        let any =
            |wanted: &[String], value: &str| wanted.is_empty() || wanted.iter().any(|w| w == value);
        (self.plugins.is_empty() || self.plugins.iter().any(|p| r.plugin.matches(p)))
            && any(&self.outcomes, &r.outcome)
            && any(&self.capabilities, &r.capability)
            && any(&self.modes, &r.mode)
            && self.in_window(r)
    }

    fn in_window(&self, r: &Record) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        // Record::parse checked the time.
        let Ok(at) = r.at() else { return false };
        self.since.is_none_or(|s| at >= s) && self.until.is_none_or(|u| at <= u)
    }
}

/// `--since`/`--until`: an RFC 3339 time in UTC (`2026-11-28T14:00:00Z`,
/// `2026-11-28 14:00`), a date (`2026-11-28`, midnight UTC), or an age
/// before `now` (`90m`, `1h`, `2d`, `1h 30m`).
pub fn parse_time(text: &str, now: SystemTime) -> anyhow::Result<SystemTime> {
    let text = text.trim();
    if let Ok(age) = humantime::parse_duration(text) {
        return now
            .checked_sub(age)
            .with_context(|| format!("{text:?} reaches back before 1970"));
    }
    // humantime wants seconds: `2026-11-28` and `2026-11-28 14:05` get them.
    let dated = text.as_bytes().get(4) == Some(&b'-');
    let full = match text.len() {
        10 if dated => format!("{text}T00:00:00Z"),
        16 if dated => format!("{text}:00Z"),
        _ => text.to_string(),
    };
    match humantime::parse_rfc3339_weak(&full) {
        Ok(t) => Ok(t),
        Err(_) => bail!(
            "{text:?} is neither a time (2026-11-28T14:00:00Z or 2026-11-28, in UTC) nor an age (90m, 1h, 2d)"
        ),
    }
}

/// Where `opshost audit` reads, and why there.
pub struct LogLocation {
    pub path: PathBuf,
    /// `--log`, `[audit] path in FILE`, or `the default`.
    pub source: String,
}

/// The log `opshost run` writes: `--log`, else the config's `[audit]
/// path`, else `AuditLog::default_path()`.
pub fn locate(flag: Option<PathBuf>, config: Option<&Path>) -> anyhow::Result<LogLocation> {
    if let Some(path) = flag {
        return Ok(LogLocation {
            path,
            source: "--log".into(),
        });
    }
    if let Some(file) = config {
        if let Some(path) = crate::config::Config::load_audit(file)?.path {
            return Ok(LogLocation {
                path,
                source: format!("[audit] path in {}", file.display()),
            });
        }
    }
    Ok(LogLocation {
        path: super::AuditLog::default_path(),
        source: "the default".into(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("there is no audit log at {0} (opshost run creates it; give the log with --log, or the config that names it with --config)")]
    Missing(PathBuf),
    #[error("cannot read the audit log {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
}

/// What reading the log found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The matching events with their line numbers (1-based), in log order.
    pub matched: Vec<(usize, Record)>,
    /// Events read (matching or not).
    pub events: usize,
    /// Lines that are not audit events, and the first few with why.
    pub malformed: usize,
    pub first_malformed: Vec<(usize, String)>,
    /// Values the log holds, so a filter that matches nothing can say so.
    seen_outcomes: BTreeSet<String>,
    seen_capabilities: BTreeSet<String>,
    seen_modes: BTreeSet<String>,
    seen_plugins: Vec<RecordPlugin>,
}

const MALFORMED_SHOWN: usize = 5;

/// Read the log, keeping the events `filter` matches (only the last
/// `last` of them, if given).
pub fn scan(path: &Path, filter: &Filter, last: Option<usize>) -> Result<Scan, LogError> {
    let unreadable = |source: io::Error| LogError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => LogError::Missing(path.to_path_buf()),
        _ => unreadable(e),
    })?;
    let mut reader = BufReader::new(file);
    let mut scan = Scan::default();
    let mut kept = VecDeque::new();
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(unreadable)? == 0 {
            break;
        }
        number += 1;
        let parsed = std::str::from_utf8(&buf)
            .map_err(|_| "not UTF-8".to_string())
            .map(str::trim);
        let record = match parsed {
            Ok("") => continue,
            Ok(line) => Record::parse(line),
            Err(e) => Err(e),
        };
        let record = match record {
            Ok(r) => r,
            Err(why) => {
                scan.malformed += 1;
                if scan.first_malformed.len() < MALFORMED_SHOWN {
                    scan.first_malformed.push((number, why));
                }
                continue;
            }
        };
        scan.events += 1;
        scan.note(&record);
        if filter.matches(&record) {
            kept.push_back((number, record));
            if last.is_some_and(|n| kept.len() > n) {
                kept.pop_front();
            }
        }
    }
    scan.matched = kept.into();
    Ok(scan)
}

impl Scan {
    fn note(&mut self, r: &Record) {
        for (set, value) in [
            (&mut self.seen_outcomes, &r.outcome),
            (&mut self.seen_capabilities, &r.capability),
            (&mut self.seen_modes, &r.mode),
        ] {
            if !set.contains(value) {
                set.insert(value.clone());
            }
        }
        if !self.seen_plugins.contains(&r.plugin) {
            self.seen_plugins.push(r.plugin.clone());
        }
    }

    /// Filter values no event in the log has (a typo, or the wrong log).
    pub fn unmatched(&self, filter: &Filter) -> Vec<String> {
        let mut out = Vec::new();
        for (what, wanted, seen) in [
            ("outcome", &filter.outcomes, &self.seen_outcomes),
            ("capability", &filter.capabilities, &self.seen_capabilities),
            ("mode", &filter.modes, &self.seen_modes),
        ] {
            for w in wanted.iter().filter(|w| !seen.contains(*w)) {
                let known: Vec<&str> = seen.iter().map(String::as_str).collect();
                out.push(format!(
                    "no event in the log has {what} {w:?} (it has: {})",
                    known.join(", ")
                ));
            }
        }
        for w in &filter.plugins {
            if !self.seen_plugins.iter().any(|p| p.matches(w)) {
                let known: BTreeSet<String> = self
                    .seen_plugins
                    .iter()
                    .map(|p| format!("{}/{}", p.vendor, p.name))
                    .collect();
                let known: Vec<String> = known.into_iter().collect();
                out.push(format!(
                    "no event in the log is from plugin {w:?} (it has: {})",
                    known.join(", ")
                ));
            }
        }
        out
    }
}

/// One JSON object per line: the event in opshost's shape (whichever
/// format the log holds), `mode` always present, plus its `line` number.
pub fn write_json(out: &mut impl Write, matched: &[(usize, Record)]) -> io::Result<()> {
    #[derive(Serialize)]
    struct Line<'a> {
        line: usize,
        #[serde(flatten)]
        record: &'a Record,
    }
    for (line, record) in matched {
        serde_json::to_writer(
            &mut *out,
            &Line {
                line: *line,
                record,
            },
        )?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// A table, one event per row; the detail column is cut to `width`
/// (the terminal's) when given.
pub fn write_table(
    out: &mut impl Write,
    matched: &[(usize, Record)],
    width: Option<usize>,
) -> io::Result<()> {
    const HEADER: [&str; 7] = [
        "TIME (UTC)",
        "PLUGIN",
        "CAPABILITY",
        "RESOURCE",
        "VERB",
        "OUTCOME",
        "DETAIL",
    ];
    // The most a column other than the detail takes; longer cells are cut.
    const CAPS: [usize; 6] = [19, 32, 10, 24, 18, 24];
    let rows: Vec<[String; 7]> = matched.iter().map(|(_, r)| row(r)).collect();
    let mut widths = [0usize; 6];
    for (i, w) in widths.iter_mut().enumerate() {
        *w = rows
            .iter()
            .map(|r| r[i].chars().count())
            .chain([HEADER[i].chars().count()])
            .max()
            .unwrap_or(0)
            .min(CAPS[i]);
    }
    let fixed: usize = widths.iter().map(|w| w + 2).sum();
    // Too narrow a terminal still gets some detail (the line wraps).
    let detail_width = width.map(|w| w.saturating_sub(fixed).max(12));
    let header = HEADER.map(str::to_string);
    for cells in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, w) in widths.iter().enumerate() {
            let cell = cut(&cells[i], *w);
            line.push_str(&format!("{cell:<w$}  "));
        }
        match detail_width {
            Some(w) => line.push_str(&cut(&cells[6], w)),
            None => line.push_str(&cells[6]),
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn row(r: &Record) -> [String; 7] {
    // `2026-11-28T18:30:45.123456Z` -> `2026-11-28 18:30:45`.
    let time: String = r
        .time
        .chars()
        .take(19)
        .collect::<String>()
        .replace('T', " ");
    let mut plugin = format!("{} {}", r.plugin.name, r.plugin.version);
    if r.mode != "run" {
        plugin.push_str(&format!(" [{}]", r.mode));
    }
    let outcome = match r.repeated {
        Some(n) => format!("{} ({n} more)", r.outcome),
        None => r.outcome.clone(),
    };
    [
        time,
        plugin,
        r.capability.clone(),
        r.resource.clone(),
        r.verb.clone(),
        outcome,
        r.detail.clone().unwrap_or_default(),
    ]
}

/// `text` cut to `width` characters, ending in `…` when cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests;
