//! Whole-database administration on the resource's server: list, create,
//! drop and rename databases, end their sessions. Only the granted
//! database and `<granted>_<suffix>` beside it are reachable (restore
//! then swap), through a host session to the maintenance database.

use tokio_postgres::Client;

use super::super::{CapError, RunContext};
use super::connect::{self, Target};
use super::error::{pg_error, statement_error};
use super::{gate, quote_ident};
use crate::policy::DbLevel;

/// The resource's endpoint, once every database a call names is one the
/// grant reaches.
pub(super) async fn checked(
    run: &RunContext,
    name: &str,
    databases: &[&str],
) -> Result<Target, CapError> {
    let (target, _) = run.db_target(name, DbLevel::Admin).await?;
    for database in databases {
        gate::check_database_name(target.dbname(), database, name)?;
    }
    Ok(target)
}

/// A session to the server's maintenance database, for whole-database work.
pub(super) async fn maintenance(target: &Target) -> Result<Client, CapError> {
    connect::connect(&target.with_dbname("postgres")).await
}

/// The databases the grant reaches, by name.
pub(super) async fn list(target: &Target, name: &str) -> Result<Vec<String>, CapError> {
    let client = maintenance(target).await?;
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname",
            &[],
        )
        .await
        .map_err(|e| pg_error(name, e))?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .filter(|d| gate::check_database_name(target.dbname(), d, name).is_ok())
        .collect())
}

/// `CREATE DATABASE x` / `DROP DATABASE x`.
pub(super) async fn statement(
    target: &Target,
    name: &str,
    statement: &str,
    database: &str,
) -> Result<(), CapError> {
    let client = maintenance(target).await?;
    let sql = format!("{statement} {}", quote_ident(database));
    ddl(&client, &sql, name).await
}

pub(super) async fn rename(
    target: &Target,
    name: &str,
    database: &str,
    new_name: &str,
) -> Result<(), CapError> {
    let client = maintenance(target).await?;
    let sql = format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(database),
        quote_ident(new_name)
    );
    ddl(&client, &sql, name).await
}

/// Create `database` unless it exists (a restore's scratch database).
pub(super) async fn ensure(target: &Target, name: &str, database: &str) -> Result<(), CapError> {
    let client = maintenance(target).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .map_err(|e| pg_error(name, e))?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(database)))
            .await
            .map_err(|e| pg_error(name, e))?;
    }
    Ok(())
}

/// End the client sessions on `database`; how many were ended.
pub(super) async fn terminate_sessions(
    target: &Target,
    name: &str,
    database: &str,
) -> Result<u32, CapError> {
    let client = maintenance(target).await?;
    let row = client
        .query_one(
            // Client sessions only: the server ends its own workers
            // (autovacuum) itself for RENAME and DROP, and a login
            // that is not superuser may not signal them.
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid)) FROM pg_stat_activity a \
             WHERE a.datname = $1 AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend' \
             AND (NOT coalesce((SELECT rolsuper FROM pg_roles WHERE oid = a.usesysid), false) \
                  OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))",
            &[&database],
        )
        .await
        .map_err(|e| pg_error(name, e))?;
    Ok(u32::try_from(row.get::<_, i64>(0)).unwrap_or(u32::MAX))
}

/// Database DDL (rename, drop) waits for sessions to leave: a session the
/// server is still ending, or one that connected just before, makes it fail
/// with "being accessed by other users". Retried for a few seconds.
async fn ddl(client: &Client, sql: &str, name: &str) -> Result<(), CapError> {
    let mut attempt = 0;
    loop {
        match client.batch_execute(sql).await {
            Err(e)
                if attempt < 10
                    && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            // A lost connection leaves it unknown whether it happened.
            done => return done.map_err(|e| statement_error(name, e)),
        }
    }
}
