//! The doctor: the troubleshooting runbook as checks. Each check is one
//! file of the same shape (a name, what it looks at, `run` -> findings),
//! each finding says what is wrong, the evidence it was seen by, and the
//! fix. The doctor plugin runs them for the operator; the upgrade runs
//! them first and refuses on a finding that would break it.

mod backups;
mod health;
mod migrations;
mod pin;
mod pool;
mod pooler;
mod preflight;
mod removed;
mod tls;

use opshost_sdk::{describe, Result};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Broken now, or certain to fail.
    Error,
    /// A risk, or something that fails only in some conditions.
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub severity: Severity,
    /// What is wrong, in one line.
    pub title: String,
    /// What was seen that shows it (figures, answers, names).
    pub evidence: String,
    /// What to do about it.
    pub fix: String,
    /// An upgrade started now would fail because of it (and would not
    /// put it right itself).
    pub blocks_upgrade: bool,
}

impl Finding {
    pub fn error(
        title: impl Into<String>,
        evidence: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            title: title.into(),
            evidence: evidence.into(),
            fix: fix.into(),
            blocks_upgrade: false,
        }
    }

    pub fn warning(
        title: impl Into<String>,
        evidence: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(title, evidence, fix)
        }
    }

    /// An upgrade would fail because of it.
    pub fn blocking(mut self) -> Self {
        self.blocks_upgrade = true;
        self
    }

    pub fn to_json(&self) -> Value {
        json!({
            "severity": self.severity.as_str(),
            "title": self.title,
            "evidence": self.evidence,
            "fix": self.fix,
            "blocks_upgrade": self.blocks_upgrade,
        })
    }
}

/// What the operator set for this run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Recovery point objective: the newest backup may be this old.
    pub rpo_s: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { rpo_s: 24 * 3600 }
    }
}

pub struct Check {
    pub name: &'static str,
    /// What it looks at, for `--help` and `--list`.
    pub about: &'static str,
    pub run: fn(&Settings) -> Result<Vec<Finding>>,
}

/// Every check, in the order a person would look.
pub const CHECKS: &[Check] = &[
    health::CHECK,
    pooler::CHECK,
    tls::CHECK,
    migrations::CHECK,
    preflight::CHECK,
    pool::CHECK,
    removed::CHECK,
    pin::CHECK,
    backups::CHECK,
];

/// What the upgrade runs before anything: all but backup age (the
/// upgrade takes its own backup).
pub const UPGRADE_CHECKS: &[&str] = &[
    "health",
    "pooler",
    "tls",
    "migrations",
    "preflight",
    "pool",
    "removed-variables",
    "image-pin",
];

pub fn find(name: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|c| c.name == name)
}

/// How one check came out.
pub enum Status {
    Ok,
    Findings(Vec<Finding>),
    /// It could not look (no grant, nothing answered): never read as ok.
    Unchecked(String),
}

pub struct Outcome {
    pub check: &'static str,
    pub status: Status,
}

impl Outcome {
    pub fn findings(&self) -> &[Finding] {
        match &self.status {
            Status::Findings(f) => f,
            _ => &[],
        }
    }

    pub fn to_json(&self) -> Value {
        match &self.status {
            Status::Ok => json!({ "check": self.check, "status": "ok", "findings": [] }),
            Status::Findings(f) => json!({
                "check": self.check,
                "status": "findings",
                "findings": f.iter().map(Finding::to_json).collect::<Vec<_>>(),
            }),
            Status::Unchecked(why) => json!({
                "check": self.check, "status": "unchecked", "reason": why, "findings": [],
            }),
        }
    }
}

/// Run `checks` in order; a check that fails to look is `Unchecked`.
pub fn run(checks: &[&'static Check], settings: &Settings) -> Vec<Outcome> {
    checks
        .iter()
        .map(|c| {
            opshost_sdk::progress::step(&format!("doctor: {}", c.name), None);
            let status = match (c.run)(settings) {
                Ok(f) if f.is_empty() => Status::Ok,
                Ok(f) => Status::Findings(f),
                Err(e) => Status::Unchecked(describe(&e)),
            };
            Outcome {
                check: c.name,
                status,
            }
        })
        .collect()
}

/// A finding as lines for a person.
pub fn explain(check: &str, f: &Finding) -> String {
    format!(
        "[{check}] {}: {}\n  evidence: {}\n  fix: {}",
        f.severity.as_str(),
        f.title,
        f.evidence,
        f.fix
    )
}
