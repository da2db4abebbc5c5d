//! `rotate api-key-secret`: the vendor's six manual steps as a runbook, in
//! the shape of AWS Secrets Manager's rotation (create, set, test, finish).
//!
//! No secret is journaled. What a resumed or undone step needs is in
//! `.env`: once "create" applied, API_KEY_SECRET is the new secret and
//! API_KEY_SECRET_PREVIOUS the old one; "create" is done exactly when the
//! two are declared and differ (a fresh rotation refuses to start while
//! API_KEY_SECRET_PREVIOUS is set). Deleting the previous secret is the
//! point of no return (the old secret is then nowhere), so it is the
//! forward-only finish: `--recover` completes it rather than undo.

use opshost_sdk::dotenv::Change;
use opshost_sdk::runbook::{Outcome, Runbook, State, Step};
use opshost_sdk::{describe, fail, progress, secure, Report, Result};
use serde_json::{json, Value};

use crate::deploy;
use crate::operation::{self, Kind};
use crate::Options;

const SECRET: &str = "API_KEY_SECRET";
const PREVIOUS: &str = "API_KEY_SECRET_PREVIOUS";
/// 32 bytes: the 64 hex characters the product requires.
const SECRET_BYTES: u32 = 32;

pub const RECOVER: &str = "opshost run rotate.wasm -- api-key-secret --recover";
/// Every step may be applied again: "create" sees it is done, recreates
/// and the rehash (a no-op for keys already current) repeat harmlessly.
pub const RESUME: &str = "opshost run rotate.wasm -- api-key-secret --resume";

/// What the steps share; every field is journaled (none is a secret).
pub struct ApiKey {
    pub ready_within_s: u64,
    /// `.env` had a live but empty `API_KEY_SECRET_PREVIOUS=` line: undo
    /// and finish leave it so instead of deleting it.
    pub previous_declared: bool,
    /// This run only: what the finish could not do (it is forward-only:
    /// the engine warns and goes on; the report says it failed).
    pub finish_problem: Option<String>,
}

impl State for ApiKey {
    fn to_json(&self) -> Value {
        json!({ "ready_within_s": self.ready_within_s, "previous_declared": self.previous_declared })
    }

    fn from_json(v: &Value) -> Result<Self> {
        Ok(Self {
            ready_within_s: v["ready_within_s"].as_u64().unwrap_or(120),
            previous_declared: v["previous_declared"].as_bool().unwrap_or(false),
            finish_problem: None,
        })
    }
}

pub static RUNBOOK: Runbook<ApiKey> = Runbook {
    operation: "rotate-api-key-secret",
    recover_command: RECOVER,
    steps: &[
        Step {
            name: "create",
            apply: create,
            undo: Some(put_env_back),
        },
        Step {
            name: "set",
            apply: set,
            undo: Some(put_services_back),
        },
        Step {
            name: "rehash",
            apply: rehash,
            undo: Some(rehash_back),
        },
        Step {
            name: "test",
            apply: test,
            undo: None,
        },
    ],
    finish: &[Step {
        name: "finish",
        apply: finish,
        undo: None,
    }],
};

const KIND: Kind<ApiKey> = Kind {
    runbook: &RUNBOOK,
    what: "API_KEY_SECRET rotation",
    recover: RECOVER,
    resume: RESUME,
};

const PLAN: &[(&str, &str)] = &[
    ("create", "compose/.env: API_KEY_SECRET_PREVIOUS = the current secret; API_KEY_SECRET = 64 new hex characters from the host's secure random (one atomic write)"),
    ("set", "recreate agledger-api and agledger-worker with both secrets (keys hashed with either authenticate); prove GET /v1/auth/me answers 200"),
    ("rehash", "run rehash-api-keys in a one-off container: every stored key hash recomputed with the new secret"),
    ("test", "recreate both services again; prove GET /v1/auth/me answers 200"),
    ("finish", "compose/.env: delete the API_KEY_SECRET_PREVIOUS line; recreate both services with the new secret only; prove again (the point of no return)"),
];

pub fn run(opts: &Options) -> Result<Report> {
    if opts.plan {
        return plan();
    }
    operation::drive(&KIND, opts, |dir| fresh(dir, opts), report)
}

/// What must hold before a rotation starts; `Ok(previous_declared)`.
fn preconditions() -> Result<bool> {
    let env = deploy::env()?;
    deploy::refuse_file_form(&env, SECRET)?;
    let current = deploy::required(&env, SECRET)?;
    if current.len() != 64 || !current.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(fail(format!(
            "{SECRET} in compose/.env is not 64 hex characters as the product requires; fix it first. Nothing was changed"
        )));
    }
    if env.file.value(PREVIOUS).is_some() {
        return Err(fail(format!(
            "{PREVIOUS} is set in compose/.env: an earlier rotation did not finish (by hand, or its journal is gone). \
             Finish it first: run rehash-api-keys, delete the {PREVIOUS} line, recreate agledger-api and \
             agledger-worker. Nothing was changed"
        )));
    }
    deploy::require_a_working_key()?;
    Ok(env.file.declares(PREVIOUS))
}

fn plan() -> Result<Report> {
    operation::plan_report(
        &KIND,
        "Rotate API_KEY_SECRET (nothing is changed by --plan):",
        PLAN,
        || preconditions().map(|_| "every precondition holds".to_string()),
    )
}

fn fresh(dir: &opshost_sdk::fs::Dir, opts: &Options) -> Result<(Outcome, ApiKey)> {
    let previous_declared = preconditions()?;
    operation::confirm(&operation::plan_text("Rotate API_KEY_SECRET:", PLAN), opts)?;
    let mut state = ApiKey {
        ready_within_s: opts.ready_within_s,
        previous_declared,
        finish_problem: None,
    };
    let started = agledger_ops::clock::rfc3339(agledger_ops::clock::now());
    let outcome = RUNBOOK.run(dir, &mut state, &started)?;
    Ok((outcome, state))
}

fn report(outcome: Outcome, state: &ApiKey, seconds: i64) -> Result<Report> {
    match outcome {
        Outcome::Done => match &state.finish_problem {
            None => Ok(Report::ok(format!(
                "API_KEY_SECRET rotated: every stored key rehashed, the previous secret removed, the operator's API key \
                 proven before and after ({seconds} s)"
            ))
            .fact("secret", SECRET)
            .fact("previous secret", "removed from compose/.env")
            .data(json!({ "rotated": SECRET, "seconds": seconds }).to_string())),
            Some(problem) => Err(fail(format!(
                "API_KEY_SECRET was rotated and every key rehashed, but the last step did not complete: {problem}. \
                 The new secret is in place. To finish by hand: delete the {PREVIOUS} line from compose/.env if it is \
                 still there, recreate agledger-api and agledger-worker, and check an API key"
            ))),
        },
        Outcome::RolledBack { step, error } => Err(fail(format!(
            "the API_KEY_SECRET rotation failed at \"{step}\": {}\nEvery change was undone: compose/.env holds the \
             secret it held before, the services run with it and every stored key is hashed with it",
            describe(&error)
        ))),
        other => Err(fail(other.describe("the API_KEY_SECRET rotation"))),
    }
}

/// The new and the previous secret, as `.env` holds them mid-rotation.
fn both() -> Result<(String, String)> {
    let env = deploy::env()?;
    let previous = env.file.value(PREVIOUS).ok_or_else(|| {
        fail(format!(
            "compose/.env has no {PREVIOUS}: the rotation's \"create\" step is not in place"
        ))
    })?;
    Ok((deploy::required(&env, SECRET)?, previous))
}

/// create: keep the current secret as the previous one, install a new one.
fn create(_: &mut ApiKey) -> Result<()> {
    let env = deploy::env()?;
    let current = deploy::required(&env, SECRET)?;
    if env.file.value(PREVIOUS).is_some_and(|p| p != current) {
        progress::info("create: compose/.env already holds the new and the previous secret");
        return Ok(());
    }
    progress::step(
        "create: keeping API_KEY_SECRET as API_KEY_SECRET_PREVIOUS, installing a new secret",
        None,
    );
    let new = secure::random_hex(SECRET_BYTES)?;
    deploy::edit(
        &[
            Change::Set(PREVIOUS.into(), current.clone()),
            Change::Set(SECRET.into(), new.clone()),
        ],
        &[(SECRET, Some(&new)), (PREVIOUS, Some(&current))],
    )?;
    progress::info("create: compose/.env now holds the new secret and the previous one");
    Ok(())
}

/// Undo "create": the previous secret back as the secret, its line gone.
/// Byte for byte: the secret's line keeps its form (export, comment), and
/// the appended line goes with its line ending.
fn put_env_back(s: &mut ApiKey) -> Result<()> {
    let env = deploy::env()?;
    let Some(previous) = env.file.value(PREVIOUS) else {
        return Ok(());
    };
    progress::step(
        "putting the previous API_KEY_SECRET back in compose/.env",
        None,
    );
    deploy::edit(
        &[
            Change::Set(SECRET.into(), previous.clone()),
            drop_previous(s),
        ],
        &[(SECRET, Some(&previous)), (PREVIOUS, None)],
    )
}

fn drop_previous(s: &ApiKey) -> Change {
    if s.previous_declared {
        Change::Set(PREVIOUS.into(), String::new())
    } else {
        Change::Remove(PREVIOUS.into())
    }
}

/// set: the services get both secrets; a key hashed with either works.
fn set(s: &mut ApiKey) -> Result<()> {
    progress::step("set: recreating the services with both secrets", None);
    let (new, previous) = both()?;
    deploy::recreate(
        &[(SECRET, new), (PREVIOUS, previous)],
        &[],
        s.ready_within_s,
    )?;
    deploy::prove("with both secrets set", s.ready_within_s)
}

/// Undo "set": `.env` back, the services on the original secret alone.
fn put_services_back(s: &mut ApiKey) -> Result<()> {
    put_env_back(s)?;
    progress::step(
        "putting the services back on the previous API_KEY_SECRET",
        None,
    );
    let secret = deploy::required(&deploy::env()?, SECRET)?;
    deploy::recreate(&[(SECRET, secret)], &[PREVIOUS], s.ready_within_s)?;
    deploy::prove("with the secret put back", s.ready_within_s)
}

/// rehash: every stored key's hash recomputed with the new secret (one
/// transaction in the product's program: all or nothing).
fn rehash(_: &mut ApiKey) -> Result<()> {
    progress::step(
        "rehash: recomputing every stored API key hash with the new secret",
        None,
    );
    let (new, previous) = both()?;
    deploy::one_off("rehash-api-keys", &[(SECRET, new), (PREVIOUS, previous)])
}

/// Undo "rehash": the hashes recomputed with the previous secret.
fn rehash_back(_: &mut ApiKey) -> Result<()> {
    progress::step(
        "rehashing every stored API key with the previous secret",
        None,
    );
    let (new, previous) = both()?;
    deploy::one_off("rehash-api-keys", &[(SECRET, previous), (PREVIOUS, new)])
}

/// test: recreate after the rehash (as the vendor does) and prove again.
fn test(s: &mut ApiKey) -> Result<()> {
    progress::step("test: recreating the services after the rehash", None);
    let (new, previous) = both()?;
    deploy::recreate(
        &[(SECRET, new), (PREVIOUS, previous)],
        &[],
        s.ready_within_s,
    )?;
    deploy::prove("after the rehash", s.ready_within_s)
}

/// finish: the previous secret deleted, the services on the new one only,
/// proven. Forward-only: the engine warns on a failure; the report fails.
fn finish(s: &mut ApiKey) -> Result<()> {
    let result = (|| {
        progress::step("finish: removing API_KEY_SECRET_PREVIOUS", None);
        let env = deploy::env()?;
        let secret = deploy::required(&env, SECRET)?;
        deploy::edit(
            &[drop_previous(s)],
            &[(SECRET, Some(&secret)), (PREVIOUS, None)],
        )?;
        deploy::recreate(&[(SECRET, secret)], &[PREVIOUS], s.ready_within_s)?;
        deploy::prove("with the new secret only", s.ready_within_s)
    })();
    if let Err(e) = &result {
        s.finish_problem = Some(describe(e));
    }
    result
}
