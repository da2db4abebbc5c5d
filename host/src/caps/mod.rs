//! Capabilities: one module per WIT interface, each the same shape (the
//! grant it checks, the host implementation, the audit events it emits).
//! This module holds what they share: the generated bindings, the error
//! type, the grant set and the audited-call helper.

pub mod archive;
pub mod container;
pub mod crypto;
pub mod db;
pub mod fs;
pub mod http;
pub mod lock;
pub mod progress;
mod state;
pub mod stream;

pub use state::HostState;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::audit::{self, AuditLog, Event, PluginRef};
use crate::output::Output;
use crate::policy::{FsAccess, Grant};

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "operation",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "opshost:plugin/types.reader": crate::caps::stream::Reader,
            "opshost:plugin/types.writer": crate::caps::stream::Writer,
            "opshost:plugin/fs.dir": crate::caps::fs::DirHandle,
            "opshost:plugin/fs.lock": crate::caps::lock::Lock,
            "opshost:plugin/db.connection": crate::caps::db::Connection,
            "opshost:plugin/container.process": crate::caps::container::Process,
            "opshost:plugin/container.deployment": crate::caps::container::DeploymentHandle,
        },
        trappable_error_type: {
            "opshost:plugin/types.error" => crate::caps::CapError,
        },
    });
}

pub use bindings::opshost::plugin::types::Error as WitError;

/// What a host call can end in. All but `Trap` reach the plugin as the WIT
/// `error` variant; `Trap` stops the plugin (a limit, a broken handle, an
/// audit log that cannot be written).
#[derive(Debug, thiserror::Error)]
pub enum CapError {
    #[error("denied: {0}")]
    Denied(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("failed: {0}")]
    Failed(String),
    #[error("timed out: {0}")]
    TimedOut(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Failed after reaching the backend: some effect may have happened
    /// (audited as `uncertain`; the plugin sees `failed`).
    #[error("failed (the server may have acted before failing): {0}")]
    Uncertain(String),
    #[error("{0}")]
    Trap(wasmtime::Error),
}

impl CapError {
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Denied(_) => "denied",
            Self::NotFound(_) => "not-found",
            Self::Invalid(_) => "invalid-input",
            Self::Failed(_) => "failed",
            Self::TimedOut(_) => "timed-out",
            Self::Unsupported(_) => "unsupported",
            Self::Uncertain(_) => "uncertain",
            Self::Trap(_) => "trap",
        }
    }

    /// A denial naming the exact grant that would allow the call.
    pub fn missing(grant: &Grant, context: &str) -> Self {
        Self::Denied(format!("{grant} is not granted ({context})"))
    }

    /// The same error, its message prefixed with what was being done.
    pub fn context(self, what: &str) -> Self {
        match self {
            Self::Denied(m) => Self::Denied(format!("{what}: {m}")),
            Self::NotFound(m) => Self::NotFound(format!("{what}: {m}")),
            Self::Invalid(m) => Self::Invalid(format!("{what}: {m}")),
            Self::Failed(m) => Self::Failed(format!("{what}: {m}")),
            Self::TimedOut(m) => Self::TimedOut(format!("{what}: {m}")),
            Self::Unsupported(m) => Self::Unsupported(format!("{what}: {m}")),
            Self::Uncertain(m) => Self::Uncertain(format!("{what}: {m}")),
            Self::Trap(e) => Self::Trap(e),
        }
    }

    fn into_wit(self) -> wasmtime::Result<WitError> {
        Ok(match self {
            Self::Denied(m) => WitError::Denied(m),
            Self::NotFound(m) => WitError::NotFound(m),
            Self::Invalid(m) => WitError::InvalidInput(m),
            Self::Failed(m) => WitError::Failed(m),
            Self::TimedOut(m) => WitError::TimedOut(m),
            Self::Unsupported(m) => WitError::Unsupported(m),
            Self::Uncertain(m) => WitError::Failed(m),
            Self::Trap(e) => return Err(e),
        })
    }
}

impl From<wasmtime::component::ResourceTableError> for CapError {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        Self::Trap(wasmtime::Error::msg(format!("bad resource handle: {e}")))
    }
}

impl From<std::io::Error> for CapError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::NotFound => Self::NotFound(e.to_string()),
            ErrorKind::PermissionDenied => Self::Denied(e.to_string()),
            ErrorKind::TimedOut => Self::TimedOut(e.to_string()),
            ErrorKind::InvalidInput => Self::Invalid(e.to_string()),
            _ => Self::Failed(e.to_string()),
        }
    }
}

impl bindings::opshost::plugin::types::Host for HostState {
    fn convert_error(&mut self, err: CapError) -> wasmtime::Result<WitError> {
        err.into_wit()
    }
}

/// The grants a run holds: exactly what the manifest requested and the
/// policy covered. Every enforcement point asks this one place.
#[derive(Debug, Clone, Default)]
pub struct GrantSet(Vec<Grant>);

impl GrantSet {
    pub fn new(grants: Vec<Grant>) -> Self {
        Self(grants)
    }

    pub fn all(&self) -> &[Grant] {
        &self.0
    }

    pub fn fs(&self, name: &str) -> Option<FsAccess> {
        self.0
            .iter()
            .filter_map(|g| match g {
                Grant::Fs { resource, access } if resource == name => Some(*access),
                _ => None,
            })
            .max()
    }

    /// Is `wanted` (a single-verb grant built by the caller) covered?
    pub fn allows(&self, wanted: &Grant) -> bool {
        self.0.iter().any(|g| g.covers(wanted))
    }
}

/// Everything a run's host calls share, behind one Arc.
pub struct RunContext {
    pub plugin: PluginRef,
    pub audit: Arc<AuditLog>,
    pub output: Arc<Output>,
    pub config: Arc<crate::config::Config>,
    pub grants: GrantSet,
    pub log_budget: Arc<crate::runtime::limits::LogBudget>,
    /// The Docker Engine client, connected on first use.
    pub docker: tokio::sync::OnceCell<bollard::Docker>,
    /// Audited host calls made so far, and the most allowed.
    pub calls: AtomicU64,
    pub max_calls: u64,
    /// Set when a call was refused for the budget: the run ends as a limit.
    pub calls_exceeded: AtomicBool,
    /// Database sessions handed to the plugin: cancelled when it stops.
    pub db_sessions: db::Sessions,
    /// When the run's time limit ends (statement timeouts stay inside it).
    pub deadline: Instant,
    /// Image digests whose signatures this run verified, and `--require-signed`.
    pub image_trust: crate::trust::RunTrust,
    /// The one gate every capability call passes, and the run's mode.
    pub gate: Arc<crate::gate::Gate>,
}

impl RunContext {
    /// Start an audited call; `finish` writes the audit line.
    pub fn call(
        self: &Arc<Self>,
        capability: &'static str,
        resource: &str,
        verb: &'static str,
    ) -> Call {
        Call {
            ctx: Arc::clone(self),
            capability,
            resource: resource.to_string(),
            verb,
            detail: None,
            outcome: None,
            simulated: false,
            started: Instant::now(),
        }
    }

    /// Count one audited call against the run's budget; past it, a trap
    /// (the first time, with a `limit` audit line).
    pub fn count_call(&self, capability: &str, verb: &str) -> Result<(), CapError> {
        let made = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if made <= self.max_calls {
            return Ok(());
        }
        if !self.calls_exceeded.swap(true, Ordering::SeqCst) {
            let message = self.call_budget_message();
            let _ = self.event(capability, verb, "limit", Some(&message));
        }
        Err(CapError::Trap(wasmtime::Error::msg(
            self.call_budget_message(),
        )))
    }

    pub fn call_budget_message(&self) -> String {
        format!("host call limit reached ({} audited calls)", self.max_calls)
    }

    /// Write a lifecycle or limit event that is not a host call.
    pub fn event(
        &self,
        capability: &str,
        verb: &str,
        outcome: &str,
        detail: Option<&str>,
    ) -> anyhow::Result<()> {
        self.audit.record(&Event {
            time: audit::now_rfc3339(),
            plugin: &self.plugin,
            capability,
            resource: "",
            verb,
            outcome,
            detail,
            duration_us: 0,
        })
    }
}

/// One host call being audited. Build it before doing the work, `finish`
/// it with the result: the audit line is written whatever the outcome.
pub struct Call {
    ctx: Arc<RunContext>,
    capability: &'static str,
    resource: String,
    verb: &'static str,
    detail: Option<String>,
    /// An outcome that says more than `ok` for a successful call (a lock
    /// found `held`).
    outcome: Option<&'static str>,
    /// Plan mode intercepted this change: the capability answers it with
    /// its simulated result and the audit line says `planned`.
    simulated: bool,
    started: Instant,
}

impl Call {
    /// What the call touched (a relative path, an HTTP path): never a secret.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn outcome(mut self, outcome: &'static str) -> Self {
        self.outcome = Some(outcome);
        self
    }

    /// Plan mode: do not act, answer with the documented simulated result.
    pub fn simulated(&self) -> bool {
        self.simulated
    }

    pub(crate) fn mark_simulated(&mut self) {
        self.simulated = true;
    }

    pub(crate) fn context(&self) -> Arc<RunContext> {
        Arc::clone(&self.ctx)
    }

    pub(crate) fn capability(&self) -> &'static str {
        self.capability
    }

    pub(crate) fn resource(&self) -> &str {
        &self.resource
    }

    pub(crate) fn verb(&self) -> &'static str {
        self.verb
    }

    pub(crate) fn detail_text(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The call in a few words, e.g. `write backup.tar (10 bytes)`.
    pub(crate) fn describe(&self) -> String {
        match &self.detail {
            Some(d) => format!("{} {d}", self.verb),
            None => self.verb.to_string(),
        }
    }

    /// End the call refused: audit it and hand back the error.
    pub fn deny(self, error: CapError) -> CapError {
        match self.finish::<()>(Err(error)) {
            Err(e) => e,
            Ok(()) => CapError::Trap(wasmtime::Error::msg("a denied call cannot succeed")),
        }
    }

    pub fn finish<T>(self, result: Result<T, CapError>) -> Result<T, CapError> {
        let outcome = match &result {
            Ok(_) if self.simulated => "planned",
            Ok(_) => self.outcome.unwrap_or("ok"),
            Err(e) => e.outcome(),
        };
        let detail = match (&self.detail, &result) {
            (Some(d), Err(e)) => Some(format!("{d}: {e}")),
            (None, Err(e)) => Some(e.to_string()),
            (d, Ok(_)) => d.clone(),
        };
        let written = self.ctx.audit.record(&Event {
            time: audit::now_rfc3339(),
            plugin: &self.ctx.plugin,
            capability: self.capability,
            resource: &self.resource,
            verb: self.verb,
            outcome,
            detail: detail.as_deref(),
            duration_us: audit::micros(self.started.elapsed()),
        });
        match written {
            // The call happened and is audited; past the budget, the run
            // stops here.
            Ok(()) => self.ctx.count_call(self.capability, self.verb).and(result),
            // No unaudited host calls: stop the plugin.
            Err(e) => Err(CapError::Trap(wasmtime::Error::msg(format!("{e:#}")))),
        }
    }
}
