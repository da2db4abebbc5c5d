//! What both rotations do to the deployment: edit `compose/.env` (atomic,
//! mode kept, every other byte kept), recreate agledger-api and
//! agledger-worker with secrets set or unset, run a one-off of the image,
//! prove that the operator's API key authenticates. No function here
//! prints a secret: what reaches output is scrubbed of the values given.

use agledger_ops::deployment::{self as dep, Env, API, CONTAINERS, HTTP_API, WORKER};
use agledger_ops::release;
use opshost_sdk::container::{self, RecreateSpec, RunSpec};
use opshost_sdk::dotenv::{Change, EnvFile};
use opshost_sdk::{describe, fail, progress, web, Context, Result};

/// The endpoint that answers 200 for a valid API key.
pub const AUTH_ME: &str = "/v1/auth/me";

/// Where the original `.env` is kept (beside it, owner-only) while a
/// vault key rotation runs: the key it replaces as the previous one may
/// itself have replaced an older previous key, which only this copy still
/// holds for an undo. Removed when the rotation finished or was undone.
pub const ENV_SAVED: &str = ".env.opshost-pre-rotate";

/// `.env` as compose reads it.
pub fn env() -> Result<Env> {
    Env::open()
}

/// Apply `changes` to `.env` and write it (atomically) if anything changed;
/// the written text is parsed again and `expect`ed values checked, so a
/// value compose would read differently never lands.
pub fn edit(changes: &[Change], expect: &[(&str, Option<&str>)]) -> Result<()> {
    let env = env()?;
    let text = env.file.edited(changes)?;
    let back = EnvFile::parse(text.as_bytes(), "the edited compose/.env")?;
    for (key, value) in expect {
        if back.value(key).as_deref() != *value {
            return Err(fail(format!(
                "editing compose/.env would not leave {key} as compose must read it; nothing was written"
            )));
        }
    }
    if text != env.file.text() {
        env.write(&text)?;
    }
    Ok(())
}

/// A value that must be declared (and not empty) in `.env`.
pub fn required(env: &Env, key: &str) -> Result<String> {
    env.file
        .value(key)
        .map(|v| v.trim().to_string())
        .ok_or_else(|| fail(format!("compose/.env has no {key}")))
}

/// A secret that comes from `NAME_FILE` cannot be rotated in `.env`.
pub fn refuse_file_form(env: &Env, key: &str) -> Result<()> {
    if env.file.value(&format!("{key}_FILE")).is_some() {
        return Err(fail(format!(
            "{key} comes from {key}_FILE (a file on the host): this plugin rotates secrets kept in compose/.env. \
             Nothing was changed"
        )));
    }
    Ok(())
}

/// Keep a copy of `.env` (once: a resumed or undone run finds it).
pub fn keep_copy(env: &Env) -> Result<()> {
    if env.dir.stat(ENV_SAVED).is_err() {
        env.dir
            .write(ENV_SAVED, env.file.text().as_bytes())
            .context("keeping a copy of compose/.env")?;
    }
    Ok(())
}

/// The kept copy, parsed, if there is one.
pub fn copy() -> Result<Option<EnvFile>> {
    let env = env()?;
    match env.dir.read(ENV_SAVED) {
        Ok(bytes) => Ok(Some(EnvFile::parse(
            &bytes,
            &format!("compose/{ENV_SAVED}"),
        )?)),
        Err(_) => Ok(None),
    }
}

/// Put the kept copy back byte for byte; whether there was one.
pub fn restore_copy() -> Result<bool> {
    let env = env()?;
    let Ok(original) = env.dir.read(ENV_SAVED) else {
        return Ok(false);
    };
    env.dir
        .write(dep::ENV_FILE, &original)
        .context("putting compose/.env back")?;
    env.dir.remove(ENV_SAVED)?;
    Ok(true)
}

pub fn drop_copy() -> Result<()> {
    let env = env()?;
    if env.dir.stat(ENV_SAVED).is_ok() {
        env.dir.remove(ENV_SAVED)?;
    }
    Ok(())
}

/// A copy left by a run whose journal is gone must never be restored by a
/// later undo (it holds an old secret, too): drop it, saying so.
pub fn drop_stale_copy() -> Result<()> {
    let env = env()?;
    if env.dir.stat(ENV_SAVED).is_ok() {
        progress::warn(&format!(
            "removing compose/{ENV_SAVED}, a copy of .env an earlier rotation left behind"
        ));
        env.dir.remove(ENV_SAVED)?;
    }
    Ok(())
}

/// Recreate agledger-api (then wait for /health/ready) and agledger-worker
/// (each new container gated on its own /health/ready) with `set` and
/// `unset` applied to their environment. A restart would not do: Docker
/// keeps a container's environment, so a changed secret needs a new one.
pub fn recreate(set: &[(&str, String)], unset: &[&str], ready_within_s: u64) -> Result<()> {
    let env_set: Vec<(String, String)> = set
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let env_unset: Vec<String> = unset.iter().map(|k| k.to_string()).collect();
    let spec = |gate: Option<u32>| RecreateSpec {
        image: None,
        env_set: env_set.clone(),
        env_unset: env_unset.clone(),
        healthy_within_ms: gate,
        ready_path: gate.map(|_| "/health/ready".to_string()),
        stopped: false,
    };
    progress::step("recreating agledger-api", None);
    container::recreate(CONTAINERS, API, &spec(None)).context("recreating agledger-api")?;
    dep::wait_ready(ready_within_s * 1000).map_err(|e| release::with_logs(e, API))?;
    progress::step("recreating agledger-worker", None);
    let within = u32::try_from(ready_within_s * 1000).unwrap_or(u32::MAX);
    container::recreate(CONTAINERS, WORKER, &spec(Some(within)))
        .map(drop)
        .map_err(|e| release::with_logs(e, WORKER))
}

/// Run `command` in a one-off container of agledger-api's configuration
/// with `set` over its environment; its output, scrubbed of every value in
/// `set`, goes to the log. Fails on a non-zero exit.
pub fn one_off(command: &str, set: &[(&str, String)]) -> Result<()> {
    let spec = RunSpec {
        image: None,
        command: Some(vec![command.to_string()]),
        env_set: set
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        timeout_ms: Some(1_800_000),
    };
    let out = container::run(CONTAINERS, API, &spec).context(format!("running {command}"))?;
    let mut text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (_, secret) in set {
        if !secret.is_empty() {
            text = text.replace(secret.as_str(), "<redacted>");
        }
    }
    if out.exit_code != 0 {
        return Err(fail(format!(
            "{command} failed (exit {}):\n{}",
            out.exit_code,
            release::indent(text.trim())
        )));
    }
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        progress::info(line);
    }
    Ok(())
}

/// Prove that the operator's API key (sent by the host from `[http.api]
/// bearer_token_file`) authenticates: `GET /v1/auth/me` answers 200. A
/// 503 (the database not yet reachable) is asked again for a while.
pub fn prove(when: &str, within_s: u64) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        let response =
            opshost_sdk::web::get(HTTP_API, AUTH_ME).context(format!("GET {AUTH_ME} {when}"))?;
        match response.head.status {
            200 => {
                let body: serde_json::Value =
                    serde_json::from_slice(&response.body).unwrap_or_default();
                progress::info(&format!(
                    "proved {when}: the operator's API key authenticates (GET {AUTH_ME}: 200, role {})",
                    body["role"].as_str().unwrap_or("unknown")
                ));
                return Ok(());
            }
            503 if start.elapsed().as_secs() < within_s => {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            status => {
                return Err(fail(format!(
                    "the operator's API key does not authenticate {when}: GET {AUTH_ME} answered {status} {}",
                    String::from_utf8_lossy(&response.body).trim()
                )))
            }
        }
    }
}

/// Before a rotation: an API key must prove it works now, or the rotation
/// could never prove itself and must not start.
pub fn require_a_working_key() -> Result<()> {
    let response = web::get(HTTP_API, AUTH_ME).map_err(|e| {
        fail(format!(
            "cannot ask GET {AUTH_ME} ({}). The rotation proves itself with an API key and cannot start. Nothing was changed",
            describe(&e)
        ))
    })?;
    match response.head.status {
        200 => Ok(()),
        401 | 403 => Err(fail(format!(
            "GET {AUTH_ME} answered {}: no API key of the operator authenticates, so the rotation could not prove \
             itself and does not start. Put a platform API key in a file readable only by the operator and name it \
             in the opshost config: [http.api] bearer_token_file = \"/path/to/platform-key\". Nothing was changed",
            response.head.status
        ))),
        status => Err(fail(format!(
            "GET {AUTH_ME} answered {status} {}: the API is not ready to prove a rotation. Nothing was changed",
            String::from_utf8_lossy(&response.body).trim()
        ))),
    }
}
