//! `rotate vault-signing-key`: a new Ed25519 key (made by the host from its
//! secure random), the old one kept as VAULT_SIGNING_KEY_PREVIOUS, the
//! services recreated; then proof: the server registered the new key as
//! the active one, entries written since carry it, and a vault scan finds
//! no chain broken that was not broken before (old entries verify with
//! their retired key, whose public half stays in vault_signing_keys).
//!
//! The journal holds key ids (public: the first 16 hex of SHA-256 of the
//! public key), never a key. The original `.env` is kept beside it until
//! the rotation ends: the key this run moves to PREVIOUS may replace an
//! older previous key, which an undo must put back byte for byte.

use agledger_ops::vault;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use opshost_sdk::dotenv::{Change, EnvFile};
use opshost_sdk::runbook::{text_field, Outcome, Runbook, State, Step};
use opshost_sdk::{describe, fail, progress, secure, Report, Result};
use serde_json::{json, Value as Json};

use crate::deploy;
use crate::operation::{self, Kind};
use crate::registry::{self, active_keys, connect, db_now, key_id, wait_active};
use crate::Options;

const KEY: &str = "VAULT_SIGNING_KEY";
const PREVIOUS: &str = "VAULT_SIGNING_KEY_PREVIOUS";

pub const RECOVER: &str = "opshost run rotate.wasm -- vault-signing-key --recover";
pub const RESUME: &str = "opshost run rotate.wasm -- vault-signing-key --resume";

/// What the steps share; every field is journaled (none is a secret).
pub struct SigningKey {
    pub ready_within_s: u64,
    /// The key id of the key being replaced, and of its successor (empty
    /// until "create" has made it).
    pub from_key_id: String,
    pub to_key_id: String,
    /// Chains the vault scan found broken before the rotation: the check
    /// fails only on more.
    pub broken_before: u64,
    /// The database's clock just before the services got the new key:
    /// entries written since must carry it.
    pub since: String,
}

impl State for SigningKey {
    fn to_json(&self) -> Json {
        json!({
            "ready_within_s": self.ready_within_s,
            "from_key_id": self.from_key_id,
            "to_key_id": self.to_key_id,
            "broken_before": self.broken_before,
            "since": self.since,
        })
    }

    fn from_json(v: &Json) -> Result<Self> {
        Ok(Self {
            ready_within_s: v["ready_within_s"].as_u64().unwrap_or(120),
            from_key_id: text_field(v, "vault-signing-key rotation", "from_key_id")?,
            to_key_id: v["to_key_id"].as_str().unwrap_or_default().to_string(),
            broken_before: v["broken_before"].as_u64().unwrap_or(0),
            since: v["since"].as_str().unwrap_or_default().to_string(),
        })
    }
}

pub static RUNBOOK: Runbook<SigningKey> = Runbook {
    operation: "rotate-vault-signing-key",
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
            name: "test",
            apply: test,
            undo: None,
        },
    ],
    finish: &[Step {
        name: "finish",
        apply: |_| deploy::drop_copy(),
        undo: None,
    }],
};

const KIND: Kind<SigningKey> = Kind {
    runbook: &RUNBOOK,
    what: "VAULT_SIGNING_KEY rotation",
    recover: RECOVER,
    resume: RESUME,
};

const PLAN: &[(&str, &str)] = &[
    ("create", "compose/.env: VAULT_SIGNING_KEY_PREVIOUS = the current key; VAULT_SIGNING_KEY = a new Ed25519 key (base64 PKCS#8 DER) made by the host from its secure random (one atomic write; the original .env kept beside it until the end)"),
    ("set", "recreate agledger-api and agledger-worker with the new key (the server registers it as the active key and the previous one as retired)"),
    ("test", "vault_signing_keys: the new key is the active row, the old one still registered; entries written since carry the new key; a vault scan: every old entry still verifies"),
    ("finish", "drop the kept copy of compose/.env"),
];

pub fn run(opts: &Options) -> Result<Report> {
    if opts.plan {
        return plan();
    }
    operation::drive(&KIND, opts, |dir| fresh(dir, opts), report)
}

/// Checks before a rotation; the state it starts from.
fn preconditions(ready_within_s: u64) -> Result<SigningKey> {
    let env = deploy::env()?;
    deploy::refuse_file_form(&env, KEY)?;
    let from_key_id = key_id(&deploy::required(&env, KEY)?, KEY)?;
    let conn = connect()?;
    let active = active_keys(&conn)?;
    if active != [from_key_id.clone()] {
        progress::warn(&format!(
            "vault_signing_keys has active key(s) {active:?}, not {from_key_id} of compose/.env: the services may \
             not run the key .env holds"
        ));
    }
    let scan = vault::scan(&conn, "vault scan before the rotation")?;
    if !scan.broken.is_empty() {
        progress::warn(&format!(
            "{} vault chain(s) are broken before the rotation (see vault-scan.wasm); the rotation checks that it \
             breaks none more",
            scan.broken.len()
        ));
    }
    Ok(SigningKey {
        ready_within_s,
        from_key_id,
        to_key_id: String::new(),
        broken_before: scan.broken.len() as u64,
        since: String::new(),
    })
}

fn plan() -> Result<Report> {
    operation::plan_report(
        &KIND,
        "Rotate VAULT_SIGNING_KEY (nothing is changed by --plan):",
        PLAN,
        || {
            preconditions(120).map(|s| {
                format!(
                    "the current key is {} ({} vault chain(s) broken now)",
                    s.from_key_id, s.broken_before
                )
            })
        },
    )
}

fn fresh(dir: &opshost_sdk::fs::Dir, opts: &Options) -> Result<(Outcome, SigningKey)> {
    deploy::drop_stale_copy()?;
    let mut state = preconditions(opts.ready_within_s)?;
    operation::confirm(
        &operation::plan_text(
            &format!("Rotate VAULT_SIGNING_KEY (now key {}):", state.from_key_id),
            PLAN,
        ),
        opts,
    )?;
    let started = agledger_ops::clock::rfc3339(agledger_ops::clock::now());
    let outcome = RUNBOOK.run(dir, &mut state, &started)?;
    Ok((outcome, state))
}

fn report(outcome: Outcome, s: &SigningKey, seconds: i64) -> Result<Report> {
    match outcome {
        Outcome::Done => Ok(Report::ok(format!(
            "VAULT_SIGNING_KEY rotated: key {} is active, {} is kept as the previous key; old entries verify ({seconds} s)",
            s.to_key_id, s.from_key_id
        ))
        .fact("new key id", &s.to_key_id)
        .fact("previous key id", &s.from_key_id)
        .data(
            json!({ "rotated": KEY, "key_id": s.to_key_id, "previous_key_id": s.from_key_id, "seconds": seconds })
                .to_string(),
        )),
        Outcome::RolledBack { step, error } => Err(fail(format!(
            "the VAULT_SIGNING_KEY rotation failed at \"{step}\": {}\nEvery change was undone: compose/.env is as it \
             was and the services sign with key {} again",
            describe(&error),
            s.from_key_id
        ))),
        other => Err(fail(other.describe("the VAULT_SIGNING_KEY rotation"))),
    }
}

/// create: the current key kept as the previous one, a new one installed.
fn create(s: &mut SigningKey) -> Result<()> {
    let env = deploy::env()?;
    let current = deploy::required(&env, KEY)?;
    let current_id = key_id(&current, KEY)?;
    if current_id != s.from_key_id {
        progress::info(&format!(
            "create: compose/.env already holds the new key {current_id}"
        ));
        s.to_key_id = current_id;
        return Ok(());
    }
    progress::step(
        "create: keeping VAULT_SIGNING_KEY as VAULT_SIGNING_KEY_PREVIOUS, installing a new key",
        None,
    );
    deploy::keep_copy(&env)?;
    let new = B64.encode(secure::ed25519_pkcs8()?);
    let new_id = key_id(&new, "the new key")?;
    deploy::edit(
        &[
            Change::Set(PREVIOUS.into(), current.clone()),
            Change::Set(KEY.into(), new.clone()),
        ],
        &[(KEY, Some(&new)), (PREVIOUS, Some(&current))],
    )?;
    progress::info(&format!("new vault signing key {new_id}"));
    s.to_key_id = new_id;
    Ok(())
}

/// Undo "create": the original `.env`, byte for byte.
fn put_env_back(s: &mut SigningKey) -> Result<()> {
    if deploy::restore_copy()? {
        progress::step("put compose/.env back as it was", None);
        return Ok(());
    }
    let current = key_id(&deploy::required(&deploy::env()?, KEY)?, KEY)?;
    if current == s.from_key_id {
        return Ok(());
    }
    Err(fail(format!(
        "compose/.env holds key {current}, not {}, and its original copy compose/{} is gone: put the original \
         VAULT_SIGNING_KEY back by hand",
        s.from_key_id,
        deploy::ENV_SAVED
    )))
}

/// set: the services recreated with the new key and the previous one.
fn set(s: &mut SigningKey) -> Result<()> {
    progress::step("set: recreating the services with the new key", None);
    let env = deploy::env()?;
    let key = deploy::required(&env, KEY)?;
    let previous = deploy::required(&env, PREVIOUS)?;
    s.to_key_id = key_id(&key, KEY)?;
    s.since = db_now(&connect()?)?;
    deploy::recreate(&[(KEY, key), (PREVIOUS, previous)], &[], s.ready_within_s)
}

/// Undo "set": the services on the original key (and original previous
/// key, or none), from the kept copy of `.env` when it is still there.
fn put_services_back(s: &mut SigningKey) -> Result<()> {
    progress::step("putting the services back on the previous key", None);
    let original = match deploy::copy()? {
        Some(copy) => copy,
        None => EnvFile::parse(deploy::env()?.file.text().as_bytes(), "compose/.env")?,
    };
    let key = original
        .value(KEY)
        .ok_or_else(|| fail(format!("the original compose/.env has no {KEY}")))?;
    let (set, unset): (Vec<(&str, String)>, Vec<&str>) = match original.value(PREVIOUS) {
        Some(previous) => (vec![(KEY, key), (PREVIOUS, previous)], vec![]),
        None => (vec![(KEY, key)], vec![PREVIOUS]),
    };
    deploy::recreate(&set, &unset, s.ready_within_s)?;
    let conn = connect()?;
    wait_active(&conn, &s.from_key_id, s.ready_within_s)
}

/// test: the new key active, the old one registered, new entries signed
/// with the new key, and no chain broken that was not before.
fn test(s: &mut SigningKey) -> Result<()> {
    progress::step("test: checking the key registry and the vault", None);
    registry::check(s)
}
