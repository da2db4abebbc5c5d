//! Running a plugin: check it, decide its grants, compile (or load from
//! cache), link only what is granted, instantiate under limits, call `run`.

pub mod engine;
pub mod guest_log;
pub mod limits;
pub mod linker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::audit::{AuditLog, PluginRef};
use crate::caps::bindings::opshost::plugin::types::Report;
use crate::caps::bindings::Operation;
use crate::caps::{GrantSet, HostState, RunContext, WitError};
use crate::config::Config;
use crate::output::Output;
use crate::plugin::fit::{self, Verdict, VersionCheck};
use crate::plugin::{compat, PluginFile};
use crate::policy::{decide, Grant, Policy};
pub use engine::{CompileCache, Compiled};
use guest_log::GuestOutput;
pub use limits::Limits;
use limits::{Deadline, LogBudget, MemoryLimiter};

/// The store's data, composed here: WASI (empty), the capabilities' state
/// (their resource table and the run's context: what every capability
/// sees, and all it sees) and the memory limiter. WASI shares the
/// capabilities' table, as wasmtime-wasi's views do.
pub struct StoreData {
    wasi: WasiCtx,
    pub(crate) caps: HostState,
    limiter: MemoryLimiter,
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.caps.table,
        }
    }
}

/// Everything a run needs, resolved by the caller (the CLI or a test).
pub struct RunRequest<'a> {
    pub engine: &'a Engine,
    pub cache: &'a CompileCache,
    pub plugin: &'a PluginFile,
    pub config: Arc<Config>,
    pub policy: &'a Policy,
    /// One-run grants from `--allow`.
    pub allow: &'a [Grant],
    pub args: Vec<String>,
    pub limits: Limits,
    pub output: Arc<Output>,
    pub audit: Arc<AuditLog>,
    /// `--require-signed`: pulls without a signature policy are refused.
    pub require_signed: bool,
    /// The deployment's version as read for this plugin, and `--force-version`.
    pub version: VersionCheck,
    /// Run, plan (`--plan`) or learn (`--learn`).
    pub mode: crate::gate::Mode,
}

#[derive(Debug)]
pub struct RunSuccess {
    pub report: Report,
    pub compiled: Compiled,
    pub granted: Vec<Grant>,
    pub duration: Duration,
    /// Calls the manifest requests that an `exact` policy denied (the
    /// plugin carried on): the run needs the operator's attention.
    pub narrowed: Vec<String>,
}

/// Why a run did not succeed. Each maps to its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The operator's input (config, policy, flags) is wrong.
    #[error("{0:#}")]
    Config(anyhow::Error),
    /// Refused before the plugin started (grants missing, bad plugin shape).
    #[error("{0}")]
    Refused(String),
    /// The plugin ran and returned an error.
    #[error("the plugin failed: {}", describe(.0))]
    Plugin(WitError),
    /// The plugin crashed (trap, panic).
    #[error("the plugin crashed: {0}")]
    Crashed(String),
    /// The plugin hit a limit and was stopped.
    #[error("the plugin was stopped: {0}")]
    Limit(String),
    /// The host itself failed (cannot compile, cannot write the audit log).
    #[error("{0:#}")]
    Host(anyhow::Error),
}

pub fn describe(e: &WitError) -> String {
    match e {
        WitError::Denied(m) => format!("denied: {m}"),
        WitError::NotFound(m) => format!("not found: {m}"),
        WitError::InvalidInput(m) => format!("invalid input: {m}"),
        WitError::Failed(m) => m.clone(),
        WitError::TimedOut(m) => format!("timed out: {m}"),
        WitError::Unsupported(m) => format!("unsupported: {m}"),
    }
}

pub fn plugin_ref(plugin: &PluginFile) -> PluginRef {
    PluginRef {
        vendor: plugin.manifest.vendor.clone(),
        name: plugin.manifest.name.clone(),
        version: plugin.manifest.version.to_string(),
        sha256: plugin.sha256.clone(),
        mode: "run",
    }
}

/// The checks that need no engine: host version, version fit, grants,
/// imports, config. Returns the grants the plugin will hold.
pub fn admit(req: &RunRequest<'_>) -> Result<Vec<Grant>, RunError> {
    let granted = admission(req.plugin, &req.config, req.policy, req.allow, &req.version)?;
    if let Verdict::Unchecked(why) = fit::judge(&req.plugin.manifest, &req.version.target) {
        req.output.warn(&why);
    }
    if let Some(line) = fit::confirmation(&req.plugin.manifest, &req.version.target) {
        req.output.info(&line);
    }
    for grant in &granted {
        if grant.is_wildcard() {
            req.output.warn(&format!(
                "{grant} grants every verb, including ones added in later versions"
            ));
        }
    }
    Ok(granted)
}

/// The decision `admit` makes, without a word to the operator: choosing a
/// build by name asks it of every candidate, so the build picked is one a
/// run admits, for the same reasons.
pub fn admission(
    plugin: &PluginFile,
    config: &Config,
    policy: &Policy,
    allow: &[Grant],
    version: &VersionCheck,
) -> Result<Vec<Grant>, RunError> {
    let manifest = &plugin.manifest;
    compat::check_min_host(&manifest.min_host)
        .map_err(|e| RunError::Refused(format!("{}: {e:#}", manifest.identity())))?;
    // A signature that does not verify is evidence of tampering: refuse
    // whatever the policy says (an unsigned plugin is merely unsigned).
    if let crate::plugin::signature::Status::Invalid(why) = &plugin.signature {
        return Err(RunError::Refused(format!(
            "{}: its signature file does not verify: {why}. Do not run it; get the plugin and its .sig from the vendor again.",
            manifest.identity()
        )));
    }
    // Forced mismatches go ahead; `run` warns and audits them.
    if let Verdict::Mismatch(mismatch) = fit::judge(manifest, &version.target) {
        if !version.force {
            return Err(RunError::Refused(mismatch.full));
        }
    }
    let decision = decide(manifest, &plugin.sha256, &plugin.signature, policy, allow);
    if !decision.allowed() {
        return Err(RunError::Refused(decision.refusal(
            manifest,
            &plugin.sha256,
            policy,
        )));
    }
    // Imports are checked against what the manifest declares: with an
    // `exact` policy the plugin may hold less, and the gate denies the rest.
    plugin
        .world
        .check(&declared(manifest))
        .map_err(|e| RunError::Refused(format!("{}: {e:#}", manifest.identity())))?;
    config
        .check_resources(&decision.granted)
        .map_err(RunError::Config)?;
    Ok(decision.granted)
}

/// Every grant the manifest requests: the interfaces the plugin may import
/// and the host links (each call still passes the gate).
fn declared(manifest: &crate::plugin::manifest::Manifest) -> Vec<Grant> {
    manifest.requests.iter().map(|r| r.grant.clone()).collect()
}

pub async fn run(req: RunRequest<'_>) -> Result<RunSuccess, RunError> {
    run_recorded(req).await.0
}

/// Run, and hand back the gate with what plan or learn mode recorded
/// (kept whether the run succeeded or not: a plan that stopped half-way
/// still says what it would have done up to there).
pub async fn run_recorded(
    req: RunRequest<'_>,
) -> (Result<RunSuccess, RunError>, Arc<crate::gate::Gate>) {
    let gate = Arc::new(crate::gate::Gate::new(req.mode));
    let result = run_gated(req, Arc::clone(&gate)).await;
    (result, gate)
}

async fn run_gated(
    req: RunRequest<'_>,
    gate: Arc<crate::gate::Gate>,
) -> Result<RunSuccess, RunError> {
    let started = Instant::now();
    let budget = Arc::new(LogBudget::new(
        req.limits.log_bytes,
        Some(req.engine.clone()),
    ));
    let ctx_for_audit = |grants: Vec<Grant>| {
        Arc::new(RunContext {
            // Plan and learn runs are audited as such.
            plugin: PluginRef {
                mode: req.mode.as_str(),
                ..plugin_ref(req.plugin)
            },
            audit: Arc::clone(&req.audit),
            output: Arc::clone(&req.output),
            config: Arc::clone(&req.config),
            grants: GrantSet::new(grants),
            log_budget: Arc::clone(&budget),
            docker: tokio::sync::OnceCell::new(),
            calls: Default::default(),
            max_calls: req.limits.host_calls,
            calls_exceeded: Default::default(),
            db_sessions: Default::default(),
            deadline: started + req.limits.timeout,
            image_trust: crate::trust::RunTrust::new(req.require_signed),
            gate: Arc::clone(&gate),
        })
    };
    let granted = match admit(&req) {
        Ok(g) => g,
        Err(e) => {
            let ctx = ctx_for_audit(Vec::new());
            ctx.event("run", "admit", "refused", Some(&e.to_string()))
                .map_err(RunError::Host)?;
            return Err(e);
        }
    };
    let ctx = ctx_for_audit(granted.clone());
    gate.declare(declared(&req.plugin.manifest));
    if req.version.force {
        if let Verdict::Mismatch(mismatch) = fit::judge(&req.plugin.manifest, &req.version.target) {
            req.output.warn(&format!(
                "--force-version: running {} although it does not fit: {}. The operator, not the plugin's vendor, vouches for this run.",
                req.plugin.manifest.identity(),
                mismatch.short
            ));
            ctx.event("run", "force-version", "ok", Some(&mismatch.short))
                .map_err(RunError::Host)?;
        }
    }
    let grant_list: Vec<String> = granted.iter().map(ToString::to_string).collect();
    ctx.event("run", "start", "ok", Some(&grant_list.join(" ")))
        .map_err(RunError::Host)?;

    let result = execute(&req, &ctx, &budget).await;
    if result.is_err() {
        // Work stops when the plugin stops: nothing it started may go on
        // running on a database server, holding locks.
        let cancelled = ctx.db_sessions.cancel_all().await;
        if cancelled > 0 {
            let detail = format!("{cancelled} database session(s) asked to cancel their queries");
            ctx.event("db", "cancel", "ok", Some(&detail))
                .map_err(RunError::Host)?;
        }
    }
    let (outcome, detail) = match &result {
        Ok((report, _)) => ("ok", report.summary.clone()),
        Err(RunError::Limit(m)) => ("limit", m.clone()),
        Err(RunError::Crashed(m)) => ("trap", m.clone()),
        Err(e) => ("failed", e.to_string()),
    };
    ctx.event("run", "end", outcome, Some(&detail))
        .map_err(RunError::Host)?;
    let (report, compiled) = result?;
    Ok(RunSuccess {
        report,
        compiled,
        granted,
        duration: started.elapsed(),
        narrowed: gate.narrowed_denials(),
    })
}

async fn execute(
    req: &RunRequest<'_>,
    ctx: &Arc<RunContext>,
    budget: &Arc<LogBudget>,
) -> Result<(Report, Compiled), RunError> {
    let (component, compiled) = req
        .cache
        .load(req.engine, req.plugin)
        .map_err(RunError::Host)?;
    let linker =
        linker::build(req.engine, &declared(&req.plugin.manifest)).map_err(RunError::Host)?;

    let stdout = GuestOutput::new("stdout", Arc::clone(&req.output), Arc::clone(budget));
    let stderr = GuestOutput::new("stderr", Arc::clone(&req.output), Arc::clone(budget));
    // Deny by default: no preopens, no environment, no arguments, no network.
    let wasi = WasiCtx::builder()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let state = StoreData {
        wasi,
        caps: HostState::new(Arc::clone(ctx)),
        limiter: MemoryLimiter::new(req.limits.memory_bytes),
    };
    let mut store = Store::new(req.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_trap();

    let deadline = Deadline::start(req.engine, req.limits.timeout);
    let call = async {
        let op = Operation::instantiate_async(&mut store, &component, &linker).await?;
        op.call_run(&mut store, &req.args).await
    };
    // Epoch interruption stops wasm code; this outer timeout also covers a
    // plugin waiting inside a slow host call.
    let outcome = tokio::time::timeout(req.limits.timeout + Duration::from_millis(500), call).await;
    stdout.flush_partial();
    stderr.flush_partial();
    req.output.finish_bar();

    let timeout_msg = || {
        format!(
            "time limit reached ({})",
            humantime::format_duration(req.limits.timeout)
        )
    };
    let result = match outcome {
        Err(_elapsed) => return Err(RunError::Limit(timeout_msg())),
        Ok(r) => r,
    };
    // A run that failed once its time was up failed because it was up
    // (a query ended by its statement_timeout, which never outlasts the run).
    if !matches!(result, Ok(Ok(_))) && Instant::now() >= ctx.deadline {
        return Err(RunError::Limit(timeout_msg()));
    }
    match result {
        Ok(Ok(report)) => Ok((report, compiled)),
        Ok(Err(plugin_error)) => Err(RunError::Plugin(plugin_error)),
        Err(trap) => {
            // Most specific first: the log cap also interrupts via the epoch.
            let limit = if store.data().limiter.hit {
                Some(format!(
                    "memory limit reached ({} MiB)",
                    req.limits.memory_bytes >> 20
                ))
            } else if budget.exceeded() {
                Some(budget.exceeded_message())
            } else if ctx.calls_exceeded.load(std::sync::atomic::Ordering::SeqCst) {
                Some(ctx.call_budget_message())
            } else if trap_message(&trap).contains("too much data is being copied") {
                Some("host call copy limit reached (wasmtime's 128 MiB per call): the plugin passed too much data in one call".into())
            } else if deadline.fired() || trap.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                Some(timeout_msg())
            } else {
                None
            };
            match limit {
                Some(m) => Err(RunError::Limit(m)),
                None => Err(RunError::Crashed(trap_message(&trap))),
            }
        }
    }
}

/// The trap reason and the wasm backtrace, without the host's Rust backtrace.
fn trap_message(err: &wasmtime::Error) -> String {
    let mut parts = Vec::new();
    for cause in err.chain() {
        parts.push(cause.to_string());
    }
    parts.join(": ")
}
