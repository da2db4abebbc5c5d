//! Putting a release in place: `.env` says which version and digest run,
//! and each service is replaced by a container of that image, gated on its
//! health. The upgrade does it forwards, its undo and the rollback
//! backwards, with these same functions.

use opshost_sdk::container::{self, RecreateSpec};
use opshost_sdk::{fail, fs, progress, Context, Result};

use crate::deployment::{self as dep, Env, API, CONTAINERS, WORKER};

/// Where the original `.env` is kept (beside it, same mode and owner)
/// until the operation has finished or been undone.
pub const ENV_SAVED: &str = ".env.opshost-pre-upgrade";

/// A copy of `.env` left by a run that ended without its clean-up (its
/// journal is gone: no run holds it) must never be "restored" by a later
/// undo: drop it, saying so.
pub fn drop_stale_env_copy() -> Result<()> {
    let dir = fs::open(dep::COMPOSE)?;
    if dir.stat(ENV_SAVED).is_ok() {
        progress::warn(&format!(
            "removing compose/{ENV_SAVED}, a copy of .env an earlier run left behind"
        ));
        dir.remove(ENV_SAVED)?;
    }
    Ok(())
}

/// `.env` for `version` at `pin` (removed variables commented out), after
/// keeping a copy of the original (once: a resumed undo finds it).
pub fn write_env(version: &str, pin: &str) -> Result<()> {
    let env = Env::open()?;
    if env.dir.stat(ENV_SAVED).is_err() {
        env.dir
            .write(ENV_SAVED, env.file.text().as_bytes())
            .context("keeping a copy of .env")?;
    }
    for key in env.removed_present() {
        progress::info(&format!(
            "commenting out {key} in .env (removed from the product)"
        ));
    }
    let text = env.file.edited(&env.changes_for(version, pin))?;
    env.write(&text)
}

/// Put the original `.env` back, byte for byte, if it was changed.
pub fn restore_env() -> Result<()> {
    let dir = fs::open(dep::COMPOSE)?;
    if let Ok(original) = dir.read(ENV_SAVED) {
        dir.write(dep::ENV_FILE, &original)
            .context("putting .env back")?;
        dir.remove(ENV_SAVED)?;
    }
    Ok(())
}

/// The environment a replaced container gets: what `.env` now says about
/// the version and pin; removed variables gone.
/// The host runs only images whose signature it verified in this run: a
/// recovery (a new run) or an undo pulls the pin again first, which is
/// cheap for an image that is there and checks its signature again.
fn verified(pin: &str) -> Result<()> {
    container::pull(CONTAINERS, pin)
        .map(drop)
        .context(format!("pulling {pin}"))
}

fn env_change(version: &str, pin: &str, healthy_within_ms: Option<u32>) -> RecreateSpec {
    RecreateSpec {
        healthy_within_ms,
        // Asked of each new container directly: Docker's healthcheck
        // interval would make every replica wait up to 15-30 s.
        ready_path: healthy_within_ms.map(|_| "/health/ready".to_string()),
        stopped: false,
        image: Some(pin.to_string()),
        env_set: vec![
            (dep::VERSION_KEY.into(), version.into()),
            (dep::PIN_KEY.into(), pin.into()),
        ],
        env_unset: dep::REMOVED.iter().map(|k| k.to_string()).collect(),
    }
}

/// Undoing a replace: `service` back on `pin`, created but NOT started.
/// Until a later undo has put the right database back, the schema (or the
/// data) is the other release's: the image must not run on it. The last
/// undo (the one that stopped the services, or the database put back)
/// starts it.
pub fn put_back_stopped(service: &str, pin: &str, version: &str) -> Result<()> {
    progress::step(
        &format!("putting {service} back on {version} (started once its database is back)"),
        None,
    );
    verified(pin)?;
    let mut spec = env_change(version, pin, None);
    spec.stopped = true;
    container::recreate(CONTAINERS, service, &spec).map(drop)
}

/// Replace agledger-api, wait for `/health/ready`, check the version.
pub fn replace_api(pin: &str, version: &str, ready_within_s: u64) -> Result<()> {
    progress::step(&format!("replacing agledger-api with {version}"), None);
    verified(pin)?;
    // One container (a fixed host port): readiness is polled below, at
    // a shorter interval than Docker's healthcheck.
    container::recreate(CONTAINERS, API, &env_change(version, pin, None))?;
    dep::wait_ready(ready_within_s * 1000)
        .map_err(|e| with_logs(e, API))
        .and_then(|()| expect_version(version))
}

/// Replace agledger-worker and wait until it is healthy.
pub fn replace_worker(pin: &str, version: &str, ready_within_s: u64) -> Result<()> {
    progress::step(&format!("replacing agledger-worker with {version}"), None);
    verified(pin)?;
    // Scaled workers are replaced one at a time, each new one ready (its
    // own /health/ready, asked by the host every 100 ms) before the next
    // goes: some worker always answers, and nobody waits for Docker's
    // healthcheck interval.
    let within = u32::try_from(ready_within_s * 1000).unwrap_or(u32::MAX);
    container::recreate(CONTAINERS, WORKER, &env_change(version, pin, Some(within)))
        .map(drop)
        .map_err(|e| with_logs(e, WORKER))
}

pub fn expect_version(version: &str) -> Result<()> {
    let reported = dep::health_version()?;
    if reported != version {
        return Err(fail(format!(
            "/health reports version {reported}, not {version}"
        )));
    }
    Ok(())
}

/// The error with the service's last log lines appended.
pub fn with_logs(e: opshost_sdk::Error, service: &str) -> opshost_sdk::Error {
    let logs = dep::last_logs(service, 20);
    if logs.is_empty() {
        return e;
    }
    fail(format!(
        "{}\nlast lines {service} logged:\n{}",
        opshost_sdk::describe(&e),
        indent(&logs)
    ))
}

pub fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
