//! Putting a verified database in place of the live one, and back.
//! Every step is one host call; the journal says how far it got.

use opshost_sdk::container::{self, RunSpec};
use opshost_sdk::{db, fail, progress, web, Result};

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
