//! Putting a verified database in place of the live one, and back.
//! Every step is one host call; the journal says how far it got.

use opshost_sdk::container::{self, RunSpec};
use opshost_sdk::{db, describe, fail, progress, web, Result};

/// The config's name for the database (`[db.agledger]`); the database's
/// own name on the server is what [`live_database`] says.
pub const DB: &str = "agledger";
const CONTAINERS: &str = "agledger";
const API: &str = "agledger-api";
const WORKER: &str = "agledger-worker";
const STOP_GRACE_S: u32 = 30;
const HEALTHY_WITHIN_MS: u32 = 180_000;

/// Stop the worker first (it writes), then the API.
pub fn stop_services() -> Result<()> {
    progress::step("stopping agledger-worker and agledger-api", None);
    container::stop(CONTAINERS, WORKER, Some(STOP_GRACE_S))?;
    container::stop(CONTAINERS, API, Some(STOP_GRACE_S))
}

/// Start both, wait until Docker reports them healthy, run the image's
/// preflight and ask `/health`.
pub fn start_and_check() -> Result<String> {
    progress::step("starting agledger-api and agledger-worker", None);
    container::start(CONTAINERS, API)?;
    container::start(CONTAINERS, WORKER)?;
    progress::step("waiting for the services to be healthy", None);
    container::wait_healthy(CONTAINERS, API, HEALTHY_WITHIN_MS)?;
    container::wait_healthy(CONTAINERS, WORKER, HEALTHY_WITHIN_MS)?;
    progress::step("preflight", None);
    let spec = RunSpec {
        image: None,
        command: Some(vec!["preflight".into()]),
        env_set: vec![],
        timeout_ms: Some(120_000),
    };
    let out = container::run(CONTAINERS, API, &spec)?;
    if out.exit_code != 0 {
        let text = String::from_utf8_lossy(if out.stderr.is_empty() {
            &out.stdout
        } else {
            &out.stderr
        });
        return Err(fail(format!(
            "preflight failed (exit {}): {}",
            out.exit_code,
            text.trim()
        )));
    }
    let health = web::get("api", "/health")?;
    let body: serde_json::Value = serde_json::from_slice(&health.body).unwrap_or_default();
    if health.head.status != 200 || body["status"] != "ok" {
        return Err(fail(format!(
            "/health answered {} {}",
            health.head.status,
            String::from_utf8_lossy(&health.body).trim()
        )));
    }
    Ok(body["version"].as_str().unwrap_or("unknown").to_string())
}

/// End the sessions on `from` and rename it; a client reconnecting in
/// between makes the rename fail, so try a few times.
pub fn rename(from: &str, to: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..5 {
        db::terminate_sessions(DB, from)?;
        match db::rename_database(DB, from, to) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| fail("rename failed")))
}

/// The live database's name on the server (`agledger` in the bundled
/// mode; whatever DATABASE_URL names in the external one).
pub fn live_database() -> Result<String> {
    let conn = db::connect(DB)?;
    let rows = conn.query("SELECT current_database()::text", &[])?;
    match rows.rows.first().and_then(|r| r.first()) {
        Some(db::Value::Text(name)) => Ok(name.clone()),
        _ => Err(fail("the server did not say which database this is")),
    }
}

pub fn exists(database: &str) -> Result<bool> {
    Ok(db::list_databases(DB)?.iter().any(|d| d == database))
}

/// Best effort, for cleanup after a failure: say what did not work.
pub fn attempt(what: &str, result: Result<()>) -> bool {
    match result {
        Ok(()) => true,
        Err(e) => {
            progress::warn(&format!("{what}: {}", describe(&e)));
            false
        }
    }
}

/// Put the previous database back after a failed swap: whatever is live
/// under `agledger` (the new database, if it got there) goes to
/// `failed_db` (`live` is the database name the deployment uses),, `previous_db` comes back, services start. The state it
/// leaves, in words.
pub fn put_back(live: &str, previous_db: &str, failed_db: &str) -> String {
    progress::step("putting the previous database back", None);
    let _ = container::stop(CONTAINERS, WORKER, Some(STOP_GRACE_S));
    let _ = container::stop(CONTAINERS, API, Some(STOP_GRACE_S));
    let previous_there = exists(previous_db).unwrap_or(false);
    if previous_there {
        if exists(live).unwrap_or(false)
            && !attempt("moving the restored database out", rename(live, failed_db))
        {
            return format!(
                "DEGRADED: could not move the restored database out of the way; the previous data is in \
                 database {previous_db}. Rename it back to {live} by hand (ALTER DATABASE) and start the services"
            );
        }
        if !attempt(
            "renaming the previous database back",
            rename(previous_db, live),
        ) {
            return format!(
                "DEGRADED: the previous data is in database {previous_db} and could not be renamed back to {live}: \
                 do it by hand (ALTER DATABASE {previous_db} RENAME TO {live}) and start the services"
            );
        }
    }
    match start_and_check() {
        Ok(version) => format!(
            "the previous database is live again and the services are healthy (version {version}); nothing was lost"
        ),
        Err(e) => format!(
            "DEGRADED: the previous database is back in place but the services are not healthy: {}. \
             Check `docker logs` of agledger-api",
            describe(&e)
        ),
    }
}
