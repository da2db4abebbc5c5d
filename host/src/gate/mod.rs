//! The gate: the one place every capability call passes before it acts.
//!
//! A capability builds its audited [`Call`], names the narrowest grant the
//! call needs and whether it changes anything, and asks [`Call::gate`]:
//!
//! 1. the grant is checked against the run's grants (a denial is audited
//!    here, so every capability refuses with the same line shape);
//! 2. in learn mode the grant is recorded, with the call as its evidence;
//! 3. in plan mode a call that changes something is recorded in the plan
//!    and the capability answers it with its documented simulated result
//!    instead of acting ([`Call::simulated`]);
//! 4. the capability does the work and `finish`es the call (the audit line;
//!    `planned` for a simulated call).
//!
//! Resolving the named resource (the config entry) happens once, at open
//! for handle-based capabilities, through [`configured`].

pub mod learn;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::caps::{Call, CapError, RunContext};
use crate::policy::Grant;

pub use learn::Learned;
pub use plan::{Plan, Planned};

/// Whether a call can change the deployment. Plan mode intercepts changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Reads,
    Changes,
}

/// How a run treats its host calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every granted call acts.
    #[default]
    Run,
    /// Reads act; changes are recorded and simulated (`opshost run --plan`).
    Plan,
    /// Every granted call acts and its grant is recorded (`--learn`).
    Learn,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Plan => "plan",
            Self::Learn => "learn",
        }
    }
}

/// The run's gate: its mode and what the mode records.
#[derive(Debug, Default)]
pub struct Gate {
    mode: Mode,
    /// The current `progress.step`, so the plan groups calls by step.
    step: Mutex<Option<String>>,
    plan: Mutex<Plan>,
    learned: Mutex<Learned>,
    /// What the manifest requests, and the calls within it that an `exact`
    /// policy denied: the plugin may carry on past them, the run may not
    /// end as if all was well.
    declared: std::sync::OnceLock<Vec<Grant>>,
    narrowed: Mutex<Vec<String>>,
}

impl Gate {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The grants the plugin's manifest requests (set once, at start).
    pub fn declare(&self, requests: Vec<Grant>) {
        let _ = self.declared.set(requests);
    }

    /// Denials of calls the manifest requested (an `exact` policy granted
    /// less): each as the denial message, naming the grant.
    pub fn narrowed_denials(&self) -> Vec<String> {
        self.narrowed.lock().map(|d| d.clone()).unwrap_or_default()
    }

    fn record_denial(&self, wanted: &Grant, message: &str) {
        let requested = self
            .declared
            .get()
            .is_some_and(|d| d.iter().any(|r| r.covers(wanted)));
        if requested {
            if let Ok(mut narrowed) = self.narrowed.lock() {
                if !narrowed.iter().any(|m| m == message) {
                    narrowed.push(message.to_string());
                }
            }
        }
    }

    /// The plugin started a named phase (`progress.step`).
    pub fn step(&self, name: &str) {
        if let Ok(mut step) = self.step.lock() {
            *step = Some(name.to_string());
        }
        if self.mode == Mode::Plan {
            if let Ok(mut plan) = self.plan.lock() {
                plan.step(name);
            }
        }
    }

    /// A plan-mode note from the plugin (a warning while planning).
    pub fn note(&self, message: &str) {
        if self.mode == Mode::Plan {
            if let Ok(mut plan) = self.plan.lock() {
                plan.note(message);
            }
        }
    }

    /// What plan mode recorded (empty in other modes).
    pub fn plan(&self) -> Plan {
        self.plan.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// What learn mode recorded (empty in other modes).
    pub fn learned(&self) -> Learned {
        self.learned.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Learn mode only: the evidence is built only then (every host call
    /// passes here; in a plain run it costs a comparison).
    fn record_use(&self, wanted: &Grant, evidence: impl FnOnce() -> String) {
        if self.mode == Mode::Learn {
            if let Ok(mut learned) = self.learned.lock() {
                learned.record(wanted, evidence());
            }
        }
    }

    fn record_planned(&self, planned: Planned) {
        if let Ok(mut plan) = self.plan.lock() {
            plan.push(planned);
        }
    }
}

impl Call {
    /// Pass the gate (see the module doc). `wanted` is the narrowest grant
    /// that allows this call: a denial names it, learn mode records it.
    /// Denied: the audit line is written here and the error returned.
    pub fn gate(mut self, wanted: &Grant, effect: Effect) -> Result<Call, CapError> {
        let run = self.context();
        if !run.permits(wanted, || self.describe()) {
            let denied = CapError::missing(wanted, &self.describe());
            run.gate.record_denial(wanted, &denied.to_string());
            return Err(self.deny(denied));
        }
        if effect == Effect::Changes && run.gate.mode() == Mode::Plan {
            let step = run.gate.step.lock().ok().and_then(|s| s.clone());
            run.gate.record_planned(Planned {
                step,
                capability: self.capability().to_string(),
                resource: self.resource().to_string(),
                verb: self.verb().to_string(),
                detail: self.detail_text().map(str::to_string),
            });
            self.mark_simulated();
        }
        Ok(self)
    }
}

impl RunContext {
    /// Is `wanted` granted? In learn mode a granted use is recorded, with
    /// `evidence` (the call in a few words). For checks inside a call that
    /// already passed the gate (a redirect hop); calls use [`Call::gate`].
    pub fn permits(&self, wanted: &Grant, evidence: impl FnOnce() -> String) -> bool {
        let granted = self.grants.allows(wanted);
        if granted {
            self.gate.record_use(wanted, evidence);
        }
        granted
    }
}

impl Call {
    /// Pass the gate for opening a handle on a resource (a deployment):
    /// any grant of the same capability on it will do, since each call on
    /// the handle then passes the gate with its own verb. A denial names
    /// `example`, the least grant that would open it.
    pub fn gate_open(self, example: &Grant) -> Result<Call, CapError> {
        let run = self.context();
        let any =
            run.grants.all().iter().any(|g| {
                g.capability() == example.capability() && g.resource() == example.resource()
            });
        if any {
            return Ok(self);
        }
        let what = self.describe();
        Err(self.deny(CapError::missing(example, &what)))
    }
}

/// The config entry for a named resource, or the one error every
/// capability gives for a name the operator's config does not define.
pub fn configured<'a, T>(
    table: &'a BTreeMap<String, T>,
    kind: &str,
    name: &str,
) -> Result<&'a T, CapError> {
    table
        .get(name)
        .ok_or_else(|| CapError::NotFound(format!("the config names no {kind} \"{name}\"")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::audit::{AuditLog, PluginRef};
    use crate::caps::GrantSet;

    fn context(grants: &[&str], mode: Mode, log: &std::path::Path) -> Arc<RunContext> {
        Arc::new(RunContext {
            plugin: PluginRef {
                vendor: "opshost".into(),
                name: "probe".into(),
                version: "0.1.0".into(),
                sha256: "ab".repeat(32),
                mode: mode.as_str(),
            },
            audit: Arc::new(AuditLog::open(log).expect("audit log")),
            output: Arc::new(crate::output::Output::new(crate::output::Mode::Json)),
            config: Arc::new(crate::config::Config::default()),
            grants: GrantSet::new(grants.iter().map(|g| g.parse().expect("grant")).collect()),
            log_budget: Arc::new(crate::runtime::limits::LogBudget::new(1 << 20, None)),
            docker: Default::default(),
            calls: Default::default(),
            max_calls: 1000,
            calls_exceeded: Default::default(),
            db_sessions: Default::default(),
            deadline: Instant::now() + Duration::from_secs(60),
            image_trust: crate::trust::RunTrust::new(false),
            gate: Arc::new(Gate::new(mode)),
        })
    }

    fn audit_lines(log: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(log)
            .expect("log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    /// One ungranted call of each capability: (capability, resource, verb,
    /// the grant it needs, its effect).
    const CALLS: [(&str, &str, &str, &str, Effect); 4] = [
        ("fs", "backups", "write", "fs=backups:rw", Effect::Changes),
        (
            "db",
            "agledger",
            "execute",
            "db=agledger:write",
            Effect::Changes,
        ),
        ("http", "api", "send", "http=api/v1/x:POST", Effect::Changes),
        (
            "container",
            "agledger",
            "stop",
            "container=agledger/api:stop",
            Effect::Changes,
        ),
    ];

    #[test]
    fn every_capability_is_refused_through_the_same_path_and_line() {
        let tmp = tempfile::tempdir().expect("tmp");
        let log = tmp.path().join("audit.ndjson");
        // Each holds a weaker grant on the same resource, never the one asked.
        let run = context(
            &[
                "fs=backups:ro",
                "db=agledger:read",
                "http=api/v1/x:GET",
                "container=agledger/api:inspect",
            ],
            Mode::Run,
            &log,
        );
        for (capability, resource, verb, needed, effect) in CALLS {
            let wanted: Grant = needed.parse().expect("grant");
            let call = run.call(capability, resource, verb).detail("the detail");
            let err = match call.gate(&wanted, effect) {
                Err(e) => e,
                Ok(_) => panic!("{needed} was granted"),
            };
            assert!(matches!(err, CapError::Denied(_)), "{err}");
            assert_eq!(
                err.to_string(),
                format!("denied: {needed} is not granted ({verb} the detail)")
            );
        }
        let lines = audit_lines(&log);
        assert_eq!(lines.len(), CALLS.len());
        let shape = |v: &serde_json::Value| -> Vec<String> {
            let mut keys: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            keys.sort();
            keys
        };
        for (line, (capability, resource, verb, needed, _)) in lines.iter().zip(CALLS) {
            assert_eq!(shape(line), shape(&lines[0]), "same shape: {line}");
            assert_eq!(line["capability"], capability);
            assert_eq!(line["resource"], resource);
            assert_eq!(line["verb"], verb);
            assert_eq!(line["outcome"], "denied");
            assert_eq!(
                line["detail"],
                format!("the detail: denied: {needed} is not granted ({verb} the detail)")
            );
        }
    }

    #[test]
    fn plan_mode_simulates_changes_and_lets_reads_act() {
        let tmp = tempfile::tempdir().expect("tmp");
        let log = tmp.path().join("audit.ndjson");
        let run = context(&["fs=backups:rw"], Mode::Plan, &log);
        run.gate.step("write the archive");
        let write: Grant = "fs=backups:rw".parse().expect("grant");
        let read: Grant = "fs=backups:ro".parse().expect("grant");
        let call = run
            .call("fs", "backups", "write")
            .detail("x.tar (3 bytes)")
            .gate(&write, Effect::Changes)
            .expect("granted");
        assert!(call.simulated());
        call.finish(Ok(())).expect("planned");
        let call = run
            .call("fs", "backups", "read")
            .gate(&read, Effect::Reads)
            .expect("granted");
        assert!(!call.simulated(), "reads act in a plan");
        call.finish(Ok(())).expect("read");
        let plan = run.gate.plan();
        assert_eq!(plan.steps, ["write the archive"]);
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].step.as_deref(), Some("write the archive"));
        assert_eq!(plan.changes[0].detail.as_deref(), Some("x.tar (3 bytes)"));
        let lines = audit_lines(&log);
        assert_eq!(lines[0]["outcome"], "planned");
        assert_eq!(lines[0]["plugin"]["mode"], "plan");
        assert_eq!(lines[1]["outcome"], "ok");
    }

    #[test]
    fn learn_mode_records_what_was_granted_and_used() {
        let tmp = tempfile::tempdir().expect("tmp");
        let log = tmp.path().join("audit.ndjson");
        let run = context(&["fs=backups:rw", "db=agledger:admin"], Mode::Learn, &log);
        for (grant, effect) in [
            ("fs=backups:ro", Effect::Reads),
            ("db=agledger:read", Effect::Reads),
        ] {
            let wanted: Grant = grant.parse().expect("grant");
            let call = run
                .call("x", "y", "z")
                .gate(&wanted, effect)
                .expect("granted");
            assert!(!call.simulated(), "learn mode acts");
            call.finish(Ok(())).expect("ok");
        }
        let lines: Vec<String> = run
            .gate
            .learned()
            .lines()
            .iter()
            .map(|l| l.grant.to_string())
            .collect();
        assert_eq!(lines, ["db=agledger:read", "fs=backups:ro"]);
    }
}
