//! migrations: the database's `_migrations` against the migrations the
//! running image knows (`/conformance`'s `migrations`): pending ones (the
//! image expects them), and newer ones (the database came from a newer
//! release, or a failed upgrade left one applied).

use super::{Check, Finding, Settings};
use crate::deployment::HTTP_API;
use opshost_sdk::db::{self, Value};
use opshost_sdk::{fail, web, Context, Result};

pub const CHECK: Check = Check {
    name: "migrations",
    about: "migrations pending, or newer than the running image (_migrations vs /conformance)",
    run,
};

fn list(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn known_by_image() -> Result<(String, Vec<i64>)> {
    let r = web::get(HTTP_API, "/conformance").context("asking /conformance")?;
    if r.head.status != 200 {
        return Err(fail(format!("/conformance answered {}", r.head.status)));
    }
    let body: serde_json::Value = serde_json::from_slice(&r.body)
        .map_err(|e| fail(format!("/conformance is not JSON: {e}")))?;
    let ids = body["migrations"]
        .as_array()
        .ok_or_else(|| fail("/conformance has no migrations list"))?
        .iter()
        .filter_map(serde_json::Value::as_i64)
        .collect();
    Ok((body["version"].as_str().unwrap_or("?").to_string(), ids))
}

fn applied() -> Result<Option<Vec<i64>>> {
    let conn = db::connect("agledger").context("connecting to the database")?;
    let exists = conn.query("SELECT to_regclass('_migrations') IS NOT NULL", &[])?;
    if !matches!(
        exists.rows.first().and_then(|r| r.first()),
        Some(Value::Boolean(true))
    ) {
        return Ok(None);
    }
    let rows = conn.query("SELECT id::int8 FROM _migrations ORDER BY id", &[])?;
    Ok(Some(
        rows.rows
            .iter()
            .filter_map(|r| match r.first() {
                Some(Value::Int(i)) => Some(*i),
                _ => None,
            })
            .collect(),
    ))
}

fn run(_: &Settings) -> Result<Vec<Finding>> {
    let (version, known) = known_by_image()?;
    let Some(applied) = applied()? else {
        return Ok(vec![Finding::error(
            "the database has no _migrations table: it was never migrated",
            format!("the running {version} knows migrations [{}]", list(&known)),
            "run the release's migrations (docker compose run --rm agledger-migrate), or check that DATABASE_URL \
             names AGLedger's database",
        )]);
    };
    let pending: Vec<i64> = known
        .iter()
        .copied()
        .filter(|k| !applied.contains(k))
        .collect();
    let newer: Vec<i64> = applied
        .iter()
        .copied()
        .filter(|a| !known.contains(a))
        .collect();
    let evidence = format!(
        "_migrations holds [{}]; the running image ({version}, /conformance) knows [{}]",
        list(&applied),
        list(&known)
    );
    let mut found = Vec::new();
    if !pending.is_empty() {
        found.push(Finding::error(
            format!("migrations of the running release are not applied: [{}]", list(&pending)),
            evidence.clone(),
            "run the release's migrations (docker compose run --rm agledger-migrate), then its preflight",
        ));
    }
    if !newer.is_empty() {
        found.push(Finding::error(
            format!("the database is newer than the running image: migrations [{}] are unknown to it", list(&newer)),
            evidence,
            "a newer release migrated this database (or a failed upgrade left its migration applied): run that \
             release again, or put the pre-upgrade database back (opshost run rollback.wasm, or restore.wasm -- BACKUP); \
             migrations are forward-only, never undo them by hand",
        ));
    }
    Ok(found)
}
