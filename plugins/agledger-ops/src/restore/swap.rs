//! Putting a verified database in place of the live one, and back.
//! Every step is one host call; the journal says how far it got.

use opshost_sdk::container;
use opshost_sdk::{db, fail, progress, Result};

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
    crate::deployment::preflight(None, vec![])?;
    crate::deployment::health_version()
}

/// The swap's two renames as steps with undo (restore and rollback):
/// the live database aside...
pub fn move_aside(live: &str, previous: &str) -> Result<()> {
    rename(live, previous)
}

/// ...undone only while the previous database is aside and nothing took
/// the live name (a run that died in between).
pub fn undo_move_aside(live: &str, previous: &str) -> Result<()> {
    if exists(previous)? && !exists(live)? {
        rename(previous, live)?;
    }
    Ok(())
}

/// The restored database in...
pub fn move_in(restored: &str, live: &str) -> Result<()> {
    rename(restored, live)
}

/// ...undone only if the live name holds the restored database (the
/// previous one is still aside).
pub fn undo_move_in(restored: &str, live: &str, previous: &str) -> Result<()> {
    if exists(previous)? && exists(live)? {
        rename(live, restored)?;
    }
    Ok(())
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
