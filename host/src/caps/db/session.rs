//! Plugin sessions: opening one at a grant level, the statements it runs
//! (a READ ONLY transaction around each at `read`), its transactions, and
//! the list of every session so that the host can cancel their work when
//! the plugin stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;
use wasmtime::component::Resource;

use super::super::bindings::opshost::plugin::db::{Column, Rows, Value};
use super::super::{CapError, Grant, RunContext};
use super::connect::{self, Target};
use super::error::{pg_error, statement_error};
use super::{gate, roles, values};
use crate::caps::HostState;
use crate::policy::DbLevel;

/// Results bigger than this are refused: use copy-out.
const MAX_ROWS: usize = 100_000;

/// An open session at a grant level (the plugin's `connection`).
pub struct Connection {
    pub(super) name: String,
    pub(super) level: DbLevel,
    client: Arc<Client>,
    /// Every statement runs in a READ ONLY transaction: at `read`, and at
    /// every level in plan mode (whatever the classifier takes for a read
    /// but changes something, `nextval` or a volatile function, is then
    /// refused by the database itself).
    read_only: bool,
    pub(super) in_transaction: bool,
    /// A copy-out opened a read-only transaction that its reader commits at
    /// the end; if the reader was dropped early, the next call rolls it back.
    copy_transaction: Arc<AtomicBool>,
}

impl Connection {
    /// A fresh session, outside any transaction.
    fn new(name: &str, level: DbLevel, read_only: bool, client: Client) -> Self {
        Self {
            name: name.to_string(),
            level,
            read_only,
            client: Arc::new(client),
            in_transaction: false,
            copy_transaction: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Every session handed to the plugin, so that the host can cancel what
/// they are running when the plugin stops (a limit, a trap, an error):
/// otherwise a query would go on on the server, holding its locks.
#[derive(Default)]
pub struct Sessions(std::sync::Mutex<Vec<(tokio_postgres::CancelToken, connect::Tls)>>);

impl Sessions {
    fn register(&self, client: &Client, target: &Target) {
        if let Ok(mut list) = self.0.lock() {
            list.push((client.cancel_token(), target.tls.clone()));
        }
    }

    /// Cancel whatever each session is running; the number asked.
    pub async fn cancel_all(&self) -> usize {
        let list = match self.0.lock() {
            Ok(mut list) => std::mem::take(&mut *list),
            Err(_) => return 0,
        };
        let asked = list.len();
        let cancels = list.iter().map(|(token, tls)| connect::cancel(token, tls));
        // A session that is idle or gone makes its cancel a no-op.
        let _ = futures::future::join_all(cancels).await;
        asked
    }
}

/// Open a plugin session on `name` at `level`: to the granted database,
/// or to `sibling` beside it (`<granted>_<suffix>`). `read_only`: see
/// [`Connection`].
pub(super) async fn open(
    run: &RunContext,
    name: &str,
    level: DbLevel,
    read_only: bool,
    sibling: Option<&str>,
) -> Result<Connection, CapError> {
    let (target, _) = run.db_target(name, level).await?;
    let session_target = match sibling {
        None => target.clone(),
        Some(database) => {
            gate::check_database_name(target.dbname(), database, name)?;
            target.with_dbname(database)
        }
    };
    let client = plugin_session(run, name, &session_target, level, target.dbname()).await?;
    let read_only = read_only || level == DbLevel::Read;
    if read_only {
        // Every statement also gets an explicit READ ONLY transaction;
        // this makes the session default agree.
        client
            .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            .await
            .map_err(|e| pg_error(name, e))?;
    }
    Ok(Connection::new(name, level, read_only, client))
}

/// The level a session logs in at: the strongest the run holds on `name`
/// (its grant was checked by the gate; each statement is checked again at
/// its own level, so learn mode records the level really used).
pub(super) fn granted_level(run: &RunContext, name: &str) -> DbLevel {
    [DbLevel::Admin, DbLevel::Write]
        .into_iter()
        .find(|level| {
            run.grants.allows(&Grant::Db {
                resource: name.to_string(),
                level: *level,
            })
        })
        .unwrap_or(DbLevel::Read)
}

/// A session for the plugin's own SQL: a role without server-level
/// powers, a statement timeout no longer than the run has left, and
/// registered for cancellation when the plugin stops.
async fn plugin_session(
    run: &RunContext,
    name: &str,
    target: &Target,
    level: DbLevel,
    role_db: &str,
) -> Result<Client, CapError> {
    let left = run
        .deadline
        .saturating_duration_since(std::time::Instant::now())
        .max(std::time::Duration::from_secs(1));
    let (client, login) = roles::plugin_session(target, level, left, name, role_db).await?;
    run.db_sessions.register(&client, &login);
    Ok(client)
}

pub(super) async fn server_version(client: &Client, name: &str) -> Result<String, CapError> {
    let row = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(|e| pg_error(name, e))?;
    Ok(row.get::<_, String>(0))
}

impl HostState {
    /// Clone what a statement needs out of the table (the borrow ends here).
    pub(super) fn session(&self, conn: &Resource<Connection>) -> Result<Session, CapError> {
        let c = self.table.get(conn)?;
        Ok(Session {
            name: c.name.clone(),
            read_only: c.read_only,
            client: Arc::clone(&c.client),
            in_transaction: c.in_transaction,
            copy_transaction: Arc::clone(&c.copy_transaction),
        })
    }
}

/// A connection's state, owned, for the length of one call.
pub(super) struct Session {
    pub(super) name: String,
    pub(super) read_only: bool,
    pub(super) client: Arc<Client>,
    pub(super) in_transaction: bool,
    pub(super) copy_transaction: Arc<AtomicBool>,
}

impl Session {
    /// Close a read-only transaction a dropped copy-out reader left open.
    pub(super) async fn settle(&self) -> Result<(), CapError> {
        if self.copy_transaction.swap(false, Ordering::SeqCst) {
            self.client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| pg_error(&self.name, e))?;
        }
        Ok(())
    }

    /// Run `work` in a READ ONLY transaction when the session is read-only
    /// and the plugin has none open; otherwise as is.
    async fn statement<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, CapError>>,
    ) -> Result<T, CapError> {
        self.settle().await?;
        let wrap = self.read_only && !self.in_transaction;
        if wrap {
            self.client
                .batch_execute("START TRANSACTION READ ONLY")
                .await
                .map_err(|e| pg_error(&self.name, e))?;
        }
        let result = work.await;
        if wrap {
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            self.client
                .batch_execute(end)
                .await
                .map_err(|e| pg_error(&self.name, e))?;
        }
        result
    }

    async fn prepared(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<(tokio_postgres::Statement, Vec<values::Param>), CapError> {
        let stmt = self
            .client
            .prepare(sql)
            .await
            .map_err(|e| pg_error(&self.name, e))?;
        if stmt.params().len() != params.len() {
            return Err(CapError::Invalid(format!(
                "the statement takes {} parameters, the plugin passed {}",
                stmt.params().len(),
                params.len()
            )));
        }
        let converted = params
            .iter()
            .zip(stmt.params())
            .enumerate()
            .map(|(i, (v, ty))| values::to_param(v, ty, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((stmt, converted))
    }

    /// A statement's rows, typed (at most `MAX_ROWS`).
    pub(super) async fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, CapError> {
        self.statement(async {
            let (stmt, params) = self.prepared(sql, params).await?;
            let columns = stmt
                .columns()
                .iter()
                .map(|c| Column {
                    name: c.name().to_string(),
                    type_name: c.type_().name().to_string(),
                })
                .collect();
            let stream = self
                .client
                .query_raw(&stmt, refs(&params))
                .await
                .map_err(|e| statement_error(&self.name, e))?;
            futures::pin_mut!(stream);
            let mut rows = Vec::new();
            while let Some(row) = stream.next().await {
                let row = row.map_err(|e| statement_error(&self.name, e))?;
                if rows.len() == MAX_ROWS {
                    return Err(CapError::Failed(format!(
                        "more than {MAX_ROWS} rows: use copy-out"
                    )));
                }
                let cells = (0..row.len())
                    .map(|i| row.try_get::<_, values::Cell>(i).map(|c| c.0))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| CapError::Failed(format!("cannot read a value: {e}")))?;
                rows.push(cells);
            }
            Ok(Rows { columns, rows })
        })
        .await
    }

    /// A statement's count of affected rows.
    pub(super) async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, CapError> {
        self.statement(async {
            let (stmt, params) = self.prepared(sql, params).await?;
            self.client
                .execute(&stmt, &refs(&params))
                .await
                .map_err(|e| statement_error(&self.name, e))
        })
        .await
    }

    /// A read-only REPEATABLE READ transaction and its exported snapshot
    /// (for pg_dump --snapshot and other sessions).
    pub(super) async fn begin_snapshot(&self) -> Result<String, CapError> {
        if self.in_transaction {
            return Err(CapError::Invalid("a transaction is already open".into()));
        }
        self.settle().await?;
        self.client
            .batch_execute("START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| pg_error(&self.name, e))?;
        let row = self
            .client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(|e| pg_error(&self.name, e))?;
        row.try_get::<_, String>(0)
            .map_err(|e| pg_error(&self.name, e))
    }

    /// A transaction (READ ONLY if the session is).
    pub(super) async fn begin(&self) -> Result<(), CapError> {
        if self.in_transaction {
            return Err(CapError::Invalid("a transaction is already open".into()));
        }
        self.settle().await?;
        let sql = if self.read_only {
            "START TRANSACTION READ ONLY"
        } else {
            "BEGIN"
        };
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| pg_error(&self.name, e))
    }

    /// `COMMIT` or `ROLLBACK` of the open transaction.
    pub(super) async fn end(&self, sql: &'static str) -> Result<(), CapError> {
        if !self.in_transaction {
            return Err(CapError::Invalid("no transaction is open".into()));
        }
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| statement_error(&self.name, e))
    }
}

fn refs(params: &[values::Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}
