//! The plugin's entry: the manifest, the arguments, and what every
//! rotation shares around its runbook: the deployment lock, finding an
//! interrupted run, `--recover` / `--resume`, the plan and the question.

use agledger_ops::lock;
use opshost_sdk::fs::{self, Dir};
use opshost_sdk::progress::{self, Confirmation};
use opshost_sdk::runbook::{Interrupted, Outcome, Runbook, State};
use opshost_sdk::{fail, invalid, Context, Report, Result};
use serde_json::json;

use crate::{Options, Subject};

opshost_sdk::manifest! {
    name: "rotate",
    vendor: "opshost",
    description: "Rotates AGLedger's API_KEY_SECRET (with a rehash of every key) or VAULT_SIGNING_KEY (old entries keep verifying), as journaled steps that prove themselves and undo themselves",
    applies_to: ">=1.0.0, <2.0.0",
    min_host: "0.1.0",
    requests: [
        ("fs=backups:rw", "the rotation's journal and the deployment lock"),
        ("fs=compose:rw", "reads and edits compose/.env (the secrets), atomically, keeping every other byte"),
        ("container=agledger:logs,recreate,run", "recreates agledger-api and -worker with the new secret; runs rehash-api-keys in a one-off container; logs: the last lines of a service that does not come up (no inspect: its environment would show secrets)"),
        ("http=api/health:GET", "waits for /health/ready after each recreate"),
        ("http=api/v1/auth/me:GET", "proves the operator's API key authenticates before, during and after the rotation"),
        ("db=agledger:read", "vault-signing-key: checks the active key row and scans the vault"),
    ],
}

struct Rotate;

impl opshost_sdk::Operation for Rotate {
    fn run(args: Vec<String>) -> Result<Report> {
        let opts = crate::parse(&args).map_err(|e| invalid(format!("{e}\n{}", crate::USAGE)))?;
        if opts.help {
            return Ok(Report::ok(crate::USAGE));
        }
        match opts.subject {
            Some(Subject::ApiKeySecret) => crate::api_key::run(&opts),
            Some(Subject::VaultSigningKey) => crate::signing_key::run(&opts),
            None => Err(invalid(crate::USAGE)),
        }
    }
}

opshost_sdk::plugin!(Rotate);

/// One rotation as the entry sees it.
pub struct Kind<C: 'static> {
    pub runbook: &'static Runbook<C>,
    /// e.g. "API_KEY_SECRET rotation".
    pub what: &'static str,
    pub recover: &'static str,
    pub resume: &'static str,
}

pub fn backups() -> Result<Dir> {
    fs::open("backups")
        .context("opening the backup directory (the journal and the lock live there)")
}

/// Take the lock, then: an interrupted run is refused (naming --recover
/// and --resume), recovered or resumed; otherwise `fresh` starts one.
/// `report` turns an outcome into the operator's answer.
pub fn drive<C: State>(
    kind: &Kind<C>,
    opts: &Options,
    fresh: impl FnOnce(&Dir) -> Result<(Outcome, C)>,
    report: impl Fn(Outcome, &C, i64) -> Result<Report>,
) -> Result<Report> {
    let dir = backups()?;
    let label = match (opts.recover, opts.resume) {
        (true, _) => format!("rotate {} --recover", kind.runbook.operation),
        (_, true) => format!("rotate {} --resume", kind.runbook.operation),
        _ => format!("rotate {}", kind.runbook.operation),
    };
    // Held for the whole run, automatic undo included.
    let _lock = lock::take(&dir, &label)?;
    let started = agledger_ops::clock::now();
    match (kind.runbook.interrupted(&dir)?, opts.recover, opts.resume) {
        (Some(interrupted), true, _) => recover(kind, &dir, interrupted, &report),
        (Some(interrupted), _, true) => {
            progress::info(&format!(
                "resuming the {} started {}, stopped at \"{}\"",
                kind.what, interrupted.started_at, interrupted.at
            ));
            let (outcome, state) = kind.runbook.resume(&dir, interrupted, true)?;
            report(outcome, &state, agledger_ops::clock::now() - started)
        }
        (Some(interrupted), false, false) => Err(fail(format!(
            "a {} started {} did not finish: it stopped at \"{}\" (its process is gone). \
             Run `{}` to undo it, or `{}` to go on with it. Nothing was changed",
            kind.what, interrupted.started_at, interrupted.at, kind.recover, kind.resume
        ))),
        (None, true, _) | (None, _, true) => Ok(Report::ok(format!(
            "nothing to recover or resume: no interrupted {} is recorded",
            kind.what
        ))),
        (None, false, false) => {
            let (outcome, state) = fresh(&dir)?;
            report(outcome, &state, agledger_ops::clock::now() - started)
        }
    }
}

/// `report` judges a recovery that went forward as it judges a finished
/// run: a finish that could not complete is a failure with what to do by
/// hand, never an exit 0.
fn recover<C: State>(
    kind: &Kind<C>,
    dir: &Dir,
    interrupted: Interrupted<C>,
    report: &impl Fn(Outcome, &C, i64) -> Result<Report>,
) -> Result<Report> {
    let at = interrupted.at.clone();
    progress::info(&format!(
        "recovering the {} started {}, stopped at \"{at}\"",
        kind.what, interrupted.started_at
    ));
    let (outcome, state) = kind.runbook.recover_with_state(dir, interrupted)?;
    if matches!(outcome, Outcome::Done) {
        report(Outcome::Done, &state, 0)?;
    }
    match outcome {
        Outcome::Done => Ok(Report::ok(format!(
            "the {} had passed its point of no return, so recovering went forward: its finish ran again and the new \
             secret stays in place",
            kind.what
        ))
        .fact("interrupted at", &at)
        .data(json!({ "recovered": "finished", "interrupted_at": at }).to_string())),
        Outcome::RolledBack { .. } => Ok(Report::ok(format!(
            "the {} was undone: compose/.env and the services are as they were before it",
            kind.what
        ))
        .fact("interrupted at", &at)
        .data(json!({ "recovered": "undone", "interrupted_at": at }).to_string())),
        other => Err(fail(other.describe(&format!("recovering the {}", kind.what)))),
    }
}

/// For `--plan`: an interrupted run of this kind, in words (read without
/// the lock: the plan changes nothing, and says only what it saw).
pub fn interrupted_note<C: State>(kind: &Kind<C>) -> Option<String> {
    let dir = backups().ok()?;
    let interrupted = kind.runbook.interrupted(&dir).ok()??;
    Some(format!(
        "a {} started {} did not finish (stopped at \"{}\"): a new one is refused until `{}` or `{}`",
        kind.what, interrupted.started_at, interrupted.at, kind.recover, kind.resume
    ))
}

/// The steps, numbered, each with what it changes.
pub fn plan_text(title: &str, steps: &[(&str, &str)]) -> String {
    let mut lines = vec![title.to_string()];
    for (i, (name, changes)) in steps.iter().enumerate() {
        lines.push(format!("  {}. {name}: {changes}", i + 1));
    }
    lines.join("\n")
}

pub fn plan_data(steps: &[(&str, &str)]) -> serde_json::Value {
    json!(steps
        .iter()
        .map(|(name, changes)| json!({ "step": name, "changes": changes }))
        .collect::<Vec<_>>())
}

/// Show the plan; ask on a terminal, `--yes` otherwise.
pub fn confirm(plan: &str, opts: &Options) -> Result<()> {
    if opts.yes {
        progress::info(plan);
        return Ok(());
    }
    match progress::confirm(&format!("{plan}\nProceed?")) {
        Confirmation::Yes => Ok(()),
        Confirmation::Declined => Err(fail("rotation cancelled: nothing was changed")),
        Confirmation::NoTerminal => Err(invalid(
            "a rotation changes the deployment's secrets and needs a yes: there is no terminal to ask on, so run \
             again with --yes (e.g. opshost run --yes rotate.wasm -- api-key-secret). Nothing was changed",
        )),
    }
}

/// `--plan`: the steps, then whether a rotation would start now (`ready`:
/// what holds, or why it would refuse). Exit 6 when it would not.
pub fn plan_report<C: State>(
    kind: &Kind<C>,
    title: &str,
    steps: &[(&str, &str)],
    ready: impl FnOnce() -> Result<String>,
) -> Result<Report> {
    let text = plan_text(title, steps);
    let (report, ready) = match interrupted_note(kind) {
        Some(note) => (Report::attention(format!("{text}\n{note}")), false),
        None => match ready() {
            Ok(holds) => (Report::ok(format!("{text}\nReady: {holds}")), true),
            Err(e) => (
                Report::attention(format!(
                    "{text}\nA rotation would refuse now: {}",
                    opshost_sdk::describe(&e)
                )),
                false,
            ),
        },
    };
    Ok(report.data(json!({ "plan": plan_data(steps), "ready": ready }).to_string()))
}
