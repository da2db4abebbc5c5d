//! db: PostgreSQL databases named in the config (`[db.NAME]`), through
//! tokio-postgres. Grant `db=NAME:read|write|admin`, checked at `connect`
//! (and by each whole-database call); a connection carries its level.
//! The authority is the database: plugin sessions log in as roles without
//! server-level powers (`roles`), bounded by a `statement_timeout`, and
//! are cancelled when the plugin stops (`Sessions`). `read` also runs every
//! statement in a READ ONLY transaction; `gate` parses every statement
//! with PostgreSQL's grammar and keeps plugins inside their level.

mod connect;
mod gate;
mod probe;
mod roles;
mod tls_probe;
mod tools;
mod values;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;
use wasmtime::component::Resource;

use super::bindings::opshost::plugin::db::{
    self as wit, Access, Column, DumpInfo, DumpOptions, RestoreOptions, Rows, Value,
};
use super::container::scope;
use super::fs::{checked_path, AtomicFile, DirHandle};
use super::stream::{ByteSink, ByteSource, Origin, Reader, Writer};
use super::{CapError, Grant, RunContext};
use crate::policy::DbLevel;
use crate::runtime::HostState;
pub use connect::{resolve, Target};

/// Results bigger than this are refused: use copy-out.
const MAX_ROWS: usize = 100_000;

/// An open session at a grant level.
pub struct Connection {
    name: String,
    level: DbLevel,
    client: Arc<Client>,
    in_transaction: bool,
    /// A copy-out opened a read-only transaction that its reader commits at
    /// the end; if the reader was dropped early, the next call rolls it back.
    copy_transaction: Arc<AtomicBool>,
}

impl Connection {
    /// A fresh session, outside any transaction.
    fn new(name: &str, level: DbLevel, client: Client) -> Self {
        Self {
            name: name.to_string(),
            level,
            client: Arc::new(client),
            in_transaction: false,
            copy_transaction: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// A PostgreSQL error as one line: severity, SQLSTATE, message, detail, hint.
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(d) = db.detail() {
                m.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!(" hint: {h}"));
            }
            m
        }
        None => {
            let mut m = e.to_string();
            if let Some(source) = std::error::Error::source(e) {
                m.push_str(&format!(": {source}"));
            }
            m
        }
    }
}

fn pg_error(name: &str, e: tokio_postgres::Error) -> CapError {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => {
            CapError::Denied(format!("the database refused it: {}", pg_message(&e)))
        }
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => CapError::missing(
            &Grant::Db {
                resource: name.to_string(),
                level: DbLevel::Write,
            },
            &format!(
                "the database refused a write in a read-only transaction: {}",
                pg_message(&e)
            ),
        ),
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => CapError::NotFound(pg_message(&e)),
        _ => CapError::Failed(pg_message(&e)),
    }
}

/// A statement the server received and then failed: it may have acted
/// before failing (a sequence advanced, a program ran), so it is never
/// audited as a plain `failed`.
fn statement_error(name: &str, e: tokio_postgres::Error) -> CapError {
    match pg_error(name, e) {
        CapError::Failed(m) => CapError::Uncertain(m),
        other => other,
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

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl RunContext {
    fn db_level(&self, name: &str, needed: DbLevel, what: &str) -> Result<DbLevel, CapError> {
        match self.grants.db(name) {
            Some(level) if level >= needed => Ok(level),
            _ => Err(CapError::missing(
                &Grant::Db {
                    resource: name.to_string(),
                    level: needed,
                },
                what,
            )),
        }
    }

    /// Where the database is, and where its client tools run: on the host,
    /// or (bundled mode) inside the project's database container.
    async fn db_target(
        &self,
        name: &str,
        level: DbLevel,
    ) -> Result<(Target, tools::Runner), CapError> {
        let resource = self.config.db.get(name).ok_or_else(|| {
            CapError::NotFound(format!("the config names no database \"{name}\""))
        })?;
        let (bundled_host, runner) = match &resource.container {
            None => (None, tools::Runner::Host),
            Some(containers) => {
                let project = &self
                    .config
                    .containers
                    .get(containers)
                    .ok_or_else(|| {
                        CapError::NotFound(format!(
                            "the config names no compose project \"{containers}\""
                        ))
                    })?
                    .project;
                let service = resource.service.as_deref().unwrap_or("postgres");
                let docker = self.docker().await?;
                let c = scope::service_container(&docker, project, service).await?;
                let ip = c
                    .network_settings
                    .as_ref()
                    .and_then(|n| n.networks.as_ref())
                    .and_then(|n| {
                        n.values()
                            .find_map(|e| e.ip_address.clone().filter(|ip| !ip.is_empty()))
                    })
                    .ok_or_else(|| {
                        CapError::Failed(format!(
                            "the {service} container has no network address (is it running?)"
                        ))
                    })?;
                (
                    Some(ip),
                    tools::Runner::Container {
                        docker,
                        id: scope::id(&c)?,
                    },
                )
            }
        };
        let target = resolve(resource, level, bundled_host.as_deref())
            .map_err(|e| CapError::Failed(format!("[db.{name}]: {e:#}")))?;
        Ok((target, runner))
    }

    /// A session for the plugin's own SQL: a role without server-level
    /// powers, a statement timeout no longer than the run has left, and
    /// registered for cancellation when the plugin stops.
    async fn plugin_session(
        &self,
        name: &str,
        target: &Target,
        level: DbLevel,
        role_db: &str,
    ) -> Result<Client, CapError> {
        let left = self
            .deadline
            .saturating_duration_since(std::time::Instant::now())
            .max(std::time::Duration::from_secs(1));
        let (client, login) = roles::plugin_session(target, level, left, name, role_db).await?;
        self.db_sessions.register(&client, &login);
        Ok(client)
    }

    /// A session to the server's maintenance database, for whole-database work.
    async fn maintenance(&self, name: &str) -> Result<(Target, Client), CapError> {
        self.db_level(name, DbLevel::Admin, "manage databases")?;
        let (target, _) = self.db_target(name, DbLevel::Admin).await?;
        let client = connect::connect(&target.with_dbname("postgres")).await?;
        Ok((target, client))
    }
}

impl HostState {
    /// Clone what a statement needs out of the table (the borrow ends here).
    fn session(&self, conn: &Resource<Connection>) -> Result<Session, CapError> {
        let c = self.table.get(conn)?;
        Ok(Session {
            name: c.name.clone(),
            level: c.level,
            client: Arc::clone(&c.client),
            in_transaction: c.in_transaction,
            copy_transaction: Arc::clone(&c.copy_transaction),
        })
    }
}

struct Session {
    name: String,
    level: DbLevel,
    client: Arc<Client>,
    in_transaction: bool,
    copy_transaction: Arc<AtomicBool>,
}

impl Session {
    /// Close a read-only transaction a dropped copy-out reader left open.
    async fn settle(&self) -> Result<(), CapError> {
        if self.copy_transaction.swap(false, Ordering::SeqCst) {
            self.client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| pg_error(&self.name, e))?;
        }
        Ok(())
    }

    /// Run `work` in a READ ONLY transaction when the level is read and the
    /// plugin has none open; otherwise as is.
    async fn statement<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, CapError>>,
    ) -> Result<T, CapError> {
        self.settle().await?;
        let wrap = self.level == DbLevel::Read && !self.in_transaction;
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
}

fn refs(params: &[values::Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// Rows of a COPY TO STDOUT, chunk by chunk.
struct CopyOut {
    stream: std::pin::Pin<Box<tokio_postgres::CopyOutStream>>,
    pending: bytes::Bytes,
    session: Session,
}

impl ByteSource for CopyOut {
    fn read(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<u8>, CapError>> {
        Box::pin(async move {
            if self.pending.is_empty() {
                match self.stream.next().await {
                    Some(chunk) => {
                        self.pending = chunk.map_err(|e| pg_error(&self.session.name, e))?
                    }
                    None => {
                        if self.session.copy_transaction.swap(false, Ordering::SeqCst) {
                            let commit = self.session.client.batch_execute("COMMIT").await;
                            commit.map_err(|e| pg_error(&self.session.name, e))?;
                        }
                        return Ok(Vec::new());
                    }
                }
            }
            let n = max.min(self.pending.len());
            Ok(self.pending.split_to(n).to_vec())
        })
    }
}

/// Rows into a COPY FROM STDIN; `finish` completes it.
struct CopyIn {
    sink: std::pin::Pin<Box<tokio_postgres::CopyInSink<bytes::Bytes>>>,
    name: String,
}

impl ByteSink for CopyIn {
    fn write(&mut self, data: Vec<u8>) -> BoxFuture<'_, Result<(), CapError>> {
        Box::pin(async move {
            self.sink
                .send(bytes::Bytes::from(data))
                .await
                .map_err(|e| statement_error(&self.name, e))
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<(), CapError>> {
        Box::pin(async move {
            self.sink
                .as_mut()
                .finish()
                .await
                .map(drop)
                .map_err(|e| statement_error(&self.name, e))
        })
    }
}

/// A dump file: SHA-256 and size, read back through the same descriptor.
fn digest(file: &mut std::fs::File) -> Result<(u64, String), CapError> {
    use std::io::{Read, Seek};
    file.rewind()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

async fn server_version(client: &Client, name: &str) -> Result<String, CapError> {
    let row = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(|e| pg_error(name, e))?;
    Ok(row.get::<_, String>(0))
}

impl wit::Host for HostState {
    async fn connect(&mut self, name: String) -> Result<Resource<Connection>, CapError> {
        let call = self.run.call("db", &name, "connect");
        let run = self.run.clone();
        let opened = async {
            let level = run.db_level(&name, DbLevel::Read, "connect")?;
            let (target, _) = run.db_target(&name, level).await?;
            let client = run
                .plugin_session(&name, &target, level, target.dbname())
                .await?;
            if level == DbLevel::Read {
                // Every statement also gets an explicit READ ONLY transaction;
                // this makes the session default agree.
                client
                    .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                    .await
                    .map_err(|e| pg_error(&name, e))?;
            }
            Ok(Connection::new(&name, level, client))
        }
        .await;
        let conn = call.finish(opened)?;
        Ok(self.table.push(conn)?)
    }

    async fn connect_to(
        &mut self,
        name: String,
        database: String,
    ) -> Result<Resource<Connection>, CapError> {
        let call = self.run.call("db", &name, "connect-to").detail(&database);
        let run = self.run.clone();
        let opened = async {
            let level = run.db_level(&name, DbLevel::Admin, "connect to a sibling database")?;
            let (target, _) = run.db_target(&name, level).await?;
            gate::check_database_name(target.dbname(), &database, &name)?;
            let client = run
                .plugin_session(
                    &name,
                    &target.with_dbname(&database),
                    level,
                    target.dbname(),
                )
                .await?;
            Ok(Connection::new(&name, level, client))
        }
        .await;
        let conn = call.finish(opened)?;
        Ok(self.table.push(conn)?)
    }

    async fn list_databases(&mut self, name: String) -> Result<Vec<String>, CapError> {
        let call = self.run.call("db", &name, "list-databases");
        let run = self.run.clone();
        let listed = async {
            let (target, client) = run.maintenance(&name).await?;
            let rows = client
                .query(
                    "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname",
                    &[],
                )
                .await
                .map_err(|e| pg_error(&name, e))?;
            Ok(rows
                .iter()
                .filter_map(|r| r.try_get::<_, String>(0).ok())
                .filter(|d| gate::check_database_name(target.dbname(), d, &name).is_ok())
                .collect())
        }
        .await;
        call.finish(listed)
    }

    async fn dump(
        &mut self,
        name: String,
        target: Resource<DirHandle>,
        path: String,
        options: DumpOptions,
    ) -> Result<DumpInfo, CapError> {
        let dir = self.table.get(&target)?.duplicate()?;
        let call = self
            .run
            .call("db", &name, "dump")
            .detail(format!("{}/{path}", dir.name()));
        let run = self.run.clone();
        let result = async {
            run.db_level(&name, DbLevel::Admin, "dump")?;
            dir.require_rw("write a dump")?;
            let rel = checked_path(dir.name(), &path, false)?;
            let (db, runner) = run.db_target(&name, DbLevel::Admin).await?;
            let mut file = AtomicFile::create(dir.cap_dir(), rel)?;
            // The plugin is inside this one call for the whole dump: show
            // its bytes growing on the current progress step meanwhile.
            let watched = file.std_handle()?;
            let output = run.output.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    if let Ok(meta) = watched.metadata() {
                        output.advance(meta.len());
                    }
                }
            });
            let dumped = tools::dump(
                &runner,
                &db,
                options.snapshot.as_deref(),
                file.std_handle()?,
            )
            .await;
            ticker.abort();
            dumped?;
            // Nothing is named `path` until the dump is complete and readable.
            tools::contents(&runner, file.std_handle_from_start()?).await?;
            let (size, sha256) = digest(&mut file.std_handle_from_start()?)?;
            let version = server_version(&connect::connect(&db).await?, &name).await?;
            if options.durable {
                file.commit()?;
            } else {
                file.commit_unsynced()?;
            }
            Ok(DumpInfo {
                size,
                sha256,
                server_version: version,
            })
        }
        .await;
        call.finish(result)
    }

    async fn dump_schema(&mut self, name: String) -> Result<Vec<u8>, CapError> {
        let call = self.run.call("db", &name, "dump-schema");
        let run = self.run.clone();
        let result = async {
            run.db_level(&name, DbLevel::Read, "dump the schema")?;
            let (db, runner) = run.db_target(&name, DbLevel::Read).await?;
            tools::schema(&runner, &db).await
        }
        .await;
        call.finish(result)
    }

    async fn restore(
        &mut self,
        name: String,
        source: Resource<DirHandle>,
        path: String,
        options: RestoreOptions,
    ) -> Result<(), CapError> {
        let dir = self.table.get(&source)?.duplicate()?;
        let call = self
            .run
            .call("db", &name, "restore")
            .detail(format!("{}/{path}", dir.name()));
        let run = self.run.clone();
        let result = async {
            run.db_level(&name, DbLevel::Admin, "restore")?;
            let rel = checked_path(dir.name(), &path, false)?;
            let file = dir.cap_dir().open(rel)?.into_std();
            let (db, runner) = run.db_target(&name, DbLevel::Admin).await?;
            let into = options
                .into_database
                .clone()
                .unwrap_or_else(|| db.dbname().to_string());
            gate::check_database_name(db.dbname(), &into, &name)?;
            if into != db.dbname() {
                // The WIT promises: created if missing.
                let (_, client) = run.maintenance(&name).await?;
                let exists = client
                    .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&into])
                    .await
                    .map_err(|e| pg_error(&name, e))?
                    .is_some();
                if !exists {
                    client
                        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&into)))
                        .await
                        .map_err(|e| pg_error(&name, e))?;
                }
            }
            tools::restore(
                &runner,
                &db.with_dbname(&into),
                file,
                options.jobs,
                options.no_owner,
            )
            .await
        }
        .await;
        call.finish(result)
    }

    async fn dump_contents(
        &mut self,
        source: Resource<DirHandle>,
        path: String,
    ) -> Result<Vec<String>, CapError> {
        let dir = self.table.get(&source)?.duplicate()?;
        let call = self
            .run
            .call("db", dir.name(), "dump-contents")
            .detail(&path);
        let result = async {
            let rel = checked_path(dir.name(), &path, false)?;
            let file = dir.cap_dir().open(rel)?.into_std();
            // Reading a table of contents needs no server: the host's tool.
            tools::contents(&tools::Runner::Host, file).await
        }
        .await;
        call.finish(result)
    }

    async fn create_database(&mut self, name: String, database: String) -> Result<(), CapError> {
        self.database_statement(name, database, "create-database", "CREATE DATABASE")
            .await
    }

    async fn drop_database(&mut self, name: String, database: String) -> Result<(), CapError> {
        self.database_statement(name, database, "drop-database", "DROP DATABASE")
            .await
    }

    async fn rename_database(
        &mut self,
        name: String,
        database: String,
        new_name: String,
    ) -> Result<(), CapError> {
        let call = self
            .run
            .call("db", &name, "rename-database")
            .detail(format!("{database} -> {new_name}"));
        let run = self.run.clone();
        let result = async {
            let (target, client) = run.maintenance(&name).await?;
            gate::check_database_name(target.dbname(), &database, &name)?;
            gate::check_database_name(target.dbname(), &new_name, &name)?;
            let sql = format!(
                "ALTER DATABASE {} RENAME TO {}",
                quote_ident(&database),
                quote_ident(&new_name)
            );
            database_ddl(&client, &sql, &name).await
        }
        .await;
        call.finish(result)
    }

    async fn terminate_sessions(
        &mut self,
        name: String,
        database: String,
    ) -> Result<u32, CapError> {
        let call = self
            .run
            .call("db", &name, "terminate-sessions")
            .detail(&database);
        let run = self.run.clone();
        let result = async {
            let (target, client) = run.maintenance(&name).await?;
            gate::check_database_name(target.dbname(), &database, &name)?;
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
                .map_err(|e| pg_error(&name, e))?;
            Ok(u32::try_from(row.get::<_, i64>(0)).unwrap_or(u32::MAX))
        }
        .await;
        call.finish(result)
    }

    async fn probe_session(&mut self, name: String) -> Result<wit::SessionProbe, CapError> {
        let call = self.run.call("db", &name, "probe-session");
        let run = self.run.clone();
        let result = async {
            run.db_level(&name, DbLevel::Read, "probe the session")?;
            // The product's own URL (DATABASE_URL), whatever the grant.
            let (target, _) = run.db_target(&name, DbLevel::Read).await?;
            probe::session(&target).await
        }
        .await;
        call.finish(result)
    }

    async fn probe_tls(&mut self, name: String) -> Result<wit::TlsProbe, CapError> {
        let call = self.run.call("db", &name, "probe-tls");
        let run = self.run.clone();
        let result = async {
            run.db_level(&name, DbLevel::Read, "probe the database's TLS")?;
            let (target, _) = run.db_target(&name, DbLevel::Read).await?;
            tls_probe::tls(&target).await
        }
        .await;
        call.finish(result)
    }
}

impl wit::HostConnection for HostState {
    async fn access(&mut self, conn: Resource<Connection>) -> wasmtime::Result<Access> {
        Ok(match self.table.get(&conn)?.level {
            DbLevel::Read => Access::Read,
            DbLevel::Write => Access::Write,
            DbLevel::Admin => Access::Admin,
        })
    }

    async fn server_version(&mut self, conn: Resource<Connection>) -> Result<String, CapError> {
        let s = self.session(&conn)?;
        server_version(&s.client, &s.name).await
    }

    async fn query(
        &mut self,
        conn: Resource<Connection>,
        sql: String,
        params: Vec<Value>,
    ) -> Result<Rows, CapError> {
        let s = self.session(&conn)?;
        let checked = gate::check_statement(&sql, s.level, &s.name);
        // The audit detail names the statement kind, refused or not (the
        // refusal's message starts with it).
        let kind = match &checked {
            Ok(kind) => kind.clone(),
            Err(_) => "refused".to_string(),
        };
        let call = self.run.call("db", &s.name, "query").detail(kind);
        let result = async {
            checked?;
            s.statement(async {
                let (stmt, params) = s.prepared(&sql, &params).await?;
                let columns = stmt
                    .columns()
                    .iter()
                    .map(|c| Column {
                        name: c.name().to_string(),
                        type_name: c.type_().name().to_string(),
                    })
                    .collect();
                let stream = s
                    .client
                    .query_raw(&stmt, refs(&params))
                    .await
                    .map_err(|e| statement_error(&s.name, e))?;
                futures::pin_mut!(stream);
                let mut rows = Vec::new();
                while let Some(row) = stream.next().await {
                    let row = row.map_err(|e| statement_error(&s.name, e))?;
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
        .await;
        call.finish(result)
    }

    async fn execute(
        &mut self,
        conn: Resource<Connection>,
        sql: String,
        params: Vec<Value>,
    ) -> Result<u64, CapError> {
        let s = self.session(&conn)?;
        let checked = gate::check_statement(&sql, s.level, &s.name);
        // The audit detail names the statement kind, refused or not (the
        // refusal's message starts with it).
        let kind = match &checked {
            Ok(kind) => kind.clone(),
            Err(_) => "refused".to_string(),
        };
        let call = self.run.call("db", &s.name, "execute").detail(kind);
        let result = async {
            checked?;
            s.statement(async {
                let (stmt, params) = s.prepared(&sql, &params).await?;
                s.client
                    .execute(&stmt, &refs(&params))
                    .await
                    .map_err(|e| statement_error(&s.name, e))
            })
            .await
        }
        .await;
        call.finish(result)
    }

    async fn begin_snapshot(&mut self, conn: Resource<Connection>) -> Result<String, CapError> {
        let s = self.session(&conn)?;
        let call = self.run.call("db", &s.name, "begin-snapshot");
        let result = async {
            if s.in_transaction {
                return Err(CapError::Invalid("a transaction is already open".into()));
            }
            s.settle().await?;
            s.client
                .batch_execute("START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(|e| pg_error(&s.name, e))?;
            let row = s
                .client
                .query_one("SELECT pg_export_snapshot()", &[])
                .await
                .map_err(|e| pg_error(&s.name, e))?;
            row.try_get::<_, String>(0)
                .map_err(|e| pg_error(&s.name, e))
        }
        .await;
        let snapshot = call.finish(result)?;
        self.table.get_mut(&conn)?.in_transaction = true;
        Ok(snapshot)
    }

    async fn begin(&mut self, conn: Resource<Connection>) -> Result<(), CapError> {
        let s = self.session(&conn)?;
        let call = self.run.call("db", &s.name, "begin");
        let result = async {
            if s.in_transaction {
                return Err(CapError::Invalid("a transaction is already open".into()));
            }
            s.settle().await?;
            let sql = if s.level == DbLevel::Read {
                "START TRANSACTION READ ONLY"
            } else {
                "BEGIN"
            };
            s.client
                .batch_execute(sql)
                .await
                .map_err(|e| pg_error(&s.name, e))
        }
        .await;
        call.finish(result)?;
        self.table.get_mut(&conn)?.in_transaction = true;
        Ok(())
    }

    async fn commit(&mut self, conn: Resource<Connection>) -> Result<(), CapError> {
        self.end_transaction(conn, "COMMIT").await
    }

    async fn rollback(&mut self, conn: Resource<Connection>) -> Result<(), CapError> {
        self.end_transaction(conn, "ROLLBACK").await
    }

    async fn copy_out(
        &mut self,
        conn: Resource<Connection>,
        sql: String,
    ) -> Result<Resource<Reader>, CapError> {
        let s = self.session(&conn)?;
        let checked = gate::check_copy(&sql, s.level, &s.name, true);
        let call = self
            .run
            .call("db", &s.name, "copy-out")
            .detail(checked.as_ref().map_or("refused", String::as_str));
        let stream = async {
            checked?;
            s.settle().await?;
            if s.level == DbLevel::Read && !s.in_transaction {
                s.client
                    .batch_execute("START TRANSACTION READ ONLY")
                    .await
                    .map_err(|e| pg_error(&s.name, e))?;
                s.copy_transaction.store(true, Ordering::SeqCst);
            }
            s.client
                .copy_out(sql.as_str())
                .await
                .map_err(|e| statement_error(&s.name, e))
        }
        .await;
        let stream = call.finish(stream)?;
        let origin = Origin {
            ctx: self.run.clone(),
            capability: "db",
            resource: s.name.clone(),
            what: "COPY TO STDOUT".into(),
        };
        let source = CopyOut {
            stream: Box::pin(stream),
            pending: bytes::Bytes::new(),
            session: s,
        };
        Ok(self.table.push(Reader::new(source, origin))?)
    }

    async fn copy_in(
        &mut self,
        conn: Resource<Connection>,
        sql: String,
    ) -> Result<Resource<Writer>, CapError> {
        let s = self.session(&conn)?;
        let checked = gate::check_copy(&sql, s.level, &s.name, false);
        let call = self
            .run
            .call("db", &s.name, "copy-in")
            .detail(checked.as_ref().map_or("refused", String::as_str));
        let sink = async {
            checked?;
            s.settle().await?;
            s.client
                .copy_in::<_, bytes::Bytes>(sql.as_str())
                .await
                .map_err(|e| statement_error(&s.name, e))
        }
        .await;
        let sink = call.finish(sink)?;
        let origin = Origin {
            ctx: self.run.clone(),
            capability: "db",
            resource: s.name.clone(),
            what: "COPY FROM STDIN".into(),
        };
        Ok(self.table.push(Writer::new(
            CopyIn {
                sink: Box::pin(sink),
                name: s.name,
            },
            origin,
        ))?)
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

/// Database DDL (rename, drop) waits for sessions to leave: a session the
/// server is still ending, or one that connected just before, makes it fail
/// with "being accessed by other users". Retried for a few seconds.
async fn database_ddl(client: &Client, sql: &str, name: &str) -> Result<(), CapError> {
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

impl HostState {
    /// `CREATE DATABASE x` / `DROP DATABASE x` on the resource's server, for
    /// a database the grant may name.
    async fn database_statement(
        &mut self,
        name: String,
        database: String,
        verb: &'static str,
        statement: &'static str,
    ) -> Result<(), CapError> {
        let call = self.run.call("db", &name, verb).detail(&database);
        let run = self.run.clone();
        let result = async {
            let (target, client) = run.maintenance(&name).await?;
            gate::check_database_name(target.dbname(), &database, &name)?;
            let sql = format!("{statement} {}", quote_ident(&database));
            database_ddl(&client, &sql, &name).await
        }
        .await;
        call.finish(result)
    }

    async fn end_transaction(
        &mut self,
        conn: Resource<Connection>,
        sql: &'static str,
    ) -> Result<(), CapError> {
        let s = self.session(&conn)?;
        let call = self.run.call(
            "db",
            &s.name,
            if sql == "COMMIT" {
                "commit"
            } else {
                "rollback"
            },
        );
        let result = async {
            if !s.in_transaction {
                return Err(CapError::Invalid("no transaction is open".into()));
            }
            s.client
                .batch_execute(sql)
                .await
                .map_err(|e| statement_error(&s.name, e))
        }
        .await;
        // Whatever the outcome, the transaction is over.
        self.table.get_mut(&conn)?.in_transaction = false;
        call.finish(result)
    }
}
