//! The WIT glue of the db capability: for each call, its audit line, its
//! pass through the gate (the narrowest grant, whether it changes
//! anything, plan mode's simulated answer) and the translation of its
//! arguments; the work is done by the logic modules (`session`, `copy`,
//! `dump`, `admin`).

use wasmtime::component::Resource;

use super::super::bindings::opshost::plugin::db::{
    self as wit, Access, DumpInfo, DumpOptions, RestoreOptions, Rows, Value,
};
use super::super::fs::{checked_path, DirHandle};
use super::super::stream::{Discard, Empty, Origin, Reader, Writer};
use super::super::{Call, CapError, Grant};
use super::gate::{classify, classify_copy, Classified};
use super::session::{self, Connection};
use super::{admin, copy, dump, probe, tls_probe};
use crate::caps::HostState;
use crate::gate::{Effect, Mode};
use crate::policy::DbLevel;

/// The grant a call on database resource `name` needs at `level`.
fn db(name: &str, level: DbLevel) -> Grant {
    Grant::Db {
        resource: name.to_string(),
        level,
    }
}

/// A statement that needs write or admin changes the database; a read
/// acts in every mode.
fn effect(level: DbLevel) -> Effect {
    if level == DbLevel::Read {
        Effect::Reads
    } else {
        Effect::Changes
    }
}

/// Pass a statement's call through the gate at the level its SQL needs.
/// SQL no level allows is refused (and audited) before any grant is named.
fn gate_sql(
    call: Call,
    name: &str,
    classified: Result<Classified, CapError>,
) -> Result<Call, CapError> {
    match classified {
        Ok(c) => {
            let wanted = db(name, c.level);
            call.detail(c.what).gate(&wanted, effect(c.level))
        }
        // The refusal's message starts with the statement kind.
        Err(e) => Err(call.detail("refused").deny(e)),
    }
}

impl HostState {
    fn planning(&self) -> bool {
        self.run.gate.mode() == Mode::Plan
    }
}

impl wit::Host for HostState {
    async fn connect(&mut self, name: String) -> Result<Resource<Connection>, CapError> {
        let call = self.run.call("db", &name, "connect");
        let call = call.gate(&db(&name, DbLevel::Read), Effect::Reads)?;
        let level = session::granted_level(&self.run, &name);
        let opened = session::open(&self.run, &name, level, self.planning(), None).await;
        let conn = call.finish(opened)?;
        Ok(self.table.push(conn)?)
    }

    async fn connect_to(
        &mut self,
        name: String,
        database: String,
    ) -> Result<Resource<Connection>, CapError> {
        let call = self.run.call("db", &name, "connect-to").detail(&database);
        let call = call.gate(&db(&name, DbLevel::Admin), Effect::Reads)?;
        let level = session::granted_level(&self.run, &name);
        let opened = session::open(&self.run, &name, level, self.planning(), Some(&database)).await;
        let conn = call.finish(opened)?;
        Ok(self.table.push(conn)?)
    }

    async fn list_databases(&mut self, name: String) -> Result<Vec<String>, CapError> {
        let call = self.run.call("db", &name, "list-databases");
        let call = call.gate(&db(&name, DbLevel::Admin), Effect::Reads)?;
        let run = self.run.clone();
        let listed = async {
            let target = admin::checked(&run, &name, &[]).await?;
            admin::list(&target, &name).await
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
        // pg_dump only reads the database (it needs admin to read all of
        // it); the change is the file it writes into the directory, which
        // needs `fs=DIR:rw`. One call, so one entry in a plan.
        let call = call
            .gate(&db(&name, DbLevel::Admin), Effect::Reads)?
            .gate(&dir.grant(Effect::Changes), Effect::Changes)?;
        let result = if call.simulated() {
            dump::planned(&self.run, &name, &dir, &path).await
        } else {
            dump::dump(&self.run, &name, &dir, &path, &options).await
        };
        call.finish(result)
    }

    async fn dump_schema(&mut self, name: String) -> Result<Vec<u8>, CapError> {
        let call = self.run.call("db", &name, "dump-schema");
        let call = call.gate(&db(&name, DbLevel::Read), Effect::Reads)?;
        call.finish(dump::schema(&self.run, &name).await)
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
        let call = call
            .gate(&db(&name, DbLevel::Admin), Effect::Changes)?
            .gate(&dir.grant(Effect::Reads), Effect::Reads)?;
        let run = self.run.clone();
        let simulated = call.simulated();
        let result = async {
            let to = dump::restore_target(&run, &name, &options).await?;
            if simulated {
                // The file is not opened: in a plan it is often the
                // product of a simulated extract, which wrote nothing.
                return checked_path(dir.name(), &path, false).map(drop);
            }
            dump::restore(&to, &name, &dir, &path, &options).await
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
        let call = call.gate(&dir.grant(Effect::Reads), Effect::Reads)?;
        call.finish(dump::contents(&dir, &path).await)
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
        let call = call.gate(&db(&name, DbLevel::Admin), Effect::Changes)?;
        let run = self.run.clone();
        let simulated = call.simulated();
        let result = async {
            let target = admin::checked(&run, &name, &[&database, &new_name]).await?;
            if simulated {
                return Ok(());
            }
            admin::rename(&target, &name, &database, &new_name).await
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
        let call = call.gate(&db(&name, DbLevel::Admin), Effect::Changes)?;
        let run = self.run.clone();
        let simulated = call.simulated();
        let result = async {
            let target = admin::checked(&run, &name, &[&database]).await?;
            if simulated {
                return Ok(0);
            }
            admin::terminate_sessions(&target, &name, &database).await
        }
        .await;
        call.finish(result)
    }

    async fn probe_session(&mut self, name: String) -> Result<wit::SessionProbe, CapError> {
        let call = self.run.call("db", &name, "probe-session");
        let call = call.gate(&db(&name, DbLevel::Read), Effect::Reads)?;
        let run = self.run.clone();
        let result = async {
            // The product's own URL (DATABASE_URL), whatever the grant.
            let (target, _) = run.db_target(&name, DbLevel::Read).await?;
            probe::session(&target).await
        }
        .await;
        call.finish(result)
    }

    async fn probe_tls(&mut self, name: String) -> Result<wit::TlsProbe, CapError> {
        let call = self.run.call("db", &name, "probe-tls");
        let call = call.gate(&db(&name, DbLevel::Read), Effect::Reads)?;
        let run = self.run.clone();
        let result = async {
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
        session::server_version(&s.client, &s.name).await
    }

    async fn query(
        &mut self,
        conn: Resource<Connection>,
        sql: String,
        params: Vec<Value>,
    ) -> Result<Rows, CapError> {
        let s = self.session(&conn)?;
        let call = self.run.call("db", &s.name, "query");
        let call = gate_sql(call, &s.name, classify(&sql))?;
        if call.simulated() {
            // A write or admin statement in a plan: nothing is sent.
            return call.finish(Ok(Rows {
                columns: Vec::new(),
                rows: Vec::new(),
            }));
        }
        call.finish(s.query(&sql, &params).await)
    }

    async fn execute(
        &mut self,
        conn: Resource<Connection>,
        sql: String,
        params: Vec<Value>,
    ) -> Result<u64, CapError> {
        let s = self.session(&conn)?;
        let call = self.run.call("db", &s.name, "execute");
        let call = gate_sql(call, &s.name, classify(&sql))?;
        if call.simulated() {
            return call.finish(Ok(0));
        }
        call.finish(s.execute(&sql, &params).await)
    }

    async fn begin_snapshot(&mut self, conn: Resource<Connection>) -> Result<String, CapError> {
        let s = self.session(&conn)?;
        let call = self.run.call("db", &s.name, "begin-snapshot");
        let call = call.gate(&db(&s.name, DbLevel::Read), Effect::Reads)?;
        let snapshot = call.finish(s.begin_snapshot().await)?;
        self.table.get_mut(&conn)?.in_transaction = true;
        Ok(snapshot)
    }

    async fn begin(&mut self, conn: Resource<Connection>) -> Result<(), CapError> {
        let s = self.session(&conn)?;
        let call = self.run.call("db", &s.name, "begin");
        // A transaction acts in every mode: one with only simulated
        // statements in it changes nothing (and in a plan it is READ ONLY).
        let call = call.gate(&db(&s.name, DbLevel::Read), Effect::Reads)?;
        call.finish(s.begin().await)?;
        self.table.get_mut(&conn)?.in_transaction = true;
        Ok(())
    }

    async fn commit(&mut self, conn: Resource<Connection>) -> Result<(), CapError> {
        self.end_transaction(conn, "commit", "COMMIT").await
    }

    async fn rollback(&mut self, conn: Resource<Connection>) -> Result<(), CapError> {
        self.end_transaction(conn, "rollback", "ROLLBACK").await
    }

    async fn copy_out(
        &mut self,
        conn: Resource<Connection>,
        sql: String,
    ) -> Result<Resource<Reader>, CapError> {
        let s = self.session(&conn)?;
        let call = self.run.call("db", &s.name, "copy-out");
        let call = gate_sql(call, &s.name, classify_copy(&sql, true))?;
        let origin = self.origin(&s.name, "COPY TO STDOUT");
        if call.simulated() {
            // The COPY's query writes (a DELETE … RETURNING): no rows.
            let reader = call.finish(Ok(Reader::new(Empty, origin)))?;
            return Ok(self.table.push(reader)?);
        }
        let source = call.finish(copy::out(s, &sql).await)?;
        Ok(self.table.push(Reader::new(source, origin))?)
    }

    async fn copy_in(
        &mut self,
        conn: Resource<Connection>,
        sql: String,
    ) -> Result<Resource<Writer>, CapError> {
        let s = self.session(&conn)?;
        let call = self.run.call("db", &s.name, "copy-in");
        let call = gate_sql(call, &s.name, classify_copy(&sql, false))?;
        let origin = self.origin(&s.name, "COPY FROM STDIN");
        if call.simulated() {
            // The writer counts what it is given (its audit line) and keeps
            // nothing.
            let writer = call.finish(Ok(Writer::new(Discard, origin)))?;
            return Ok(self.table.push(writer)?);
        }
        let sink = call.finish(copy::into(&s, &sql).await)?;
        Ok(self.table.push(Writer::new(sink, origin))?)
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
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
        let call = call.gate(&db(&name, DbLevel::Admin), Effect::Changes)?;
        let run = self.run.clone();
        let simulated = call.simulated();
        let result = async {
            let target = admin::checked(&run, &name, &[&database]).await?;
            if simulated {
                return Ok(());
            }
            admin::statement(&target, &name, statement, &database).await
        }
        .await;
        call.finish(result)
    }

    async fn end_transaction(
        &mut self,
        conn: Resource<Connection>,
        verb: &'static str,
        sql: &'static str,
    ) -> Result<(), CapError> {
        let s = self.session(&conn)?;
        let call = self.run.call("db", &s.name, verb);
        let call = call.gate(&db(&s.name, DbLevel::Read), Effect::Reads)?;
        let result = s.end(sql).await;
        // Whatever the outcome, the transaction is over.
        self.table.get_mut(&conn)?.in_transaction = false;
        call.finish(result)
    }

    /// Where a COPY stream came from, for its audit line when it closes.
    fn origin(&self, name: &str, what: &str) -> Origin {
        Origin {
            ctx: self.run.clone(),
            capability: "db",
            resource: name.to_string(),
            what: what.into(),
        }
    }
}
