//! The WIT glue of the db capability: for each call, its audit line, its
//! grant check and the translation of its arguments; the work is done by
//! the logic modules (`session`, `copy`, `dump`, `admin`).

use wasmtime::component::Resource;

use super::super::bindings::opshost::plugin::db::{
    self as wit, Access, DumpInfo, DumpOptions, RestoreOptions, Rows, Value,
};
use super::super::fs::DirHandle;
use super::super::stream::{Origin, Reader, Writer};
use super::super::CapError;
use super::session::{self, Connection};
use super::{admin, copy, dump, gate, probe, tls_probe};
use crate::gate::Effect;
use crate::policy::DbLevel;
use crate::runtime::HostState;

impl wit::Host for HostState {
    async fn connect(&mut self, name: String) -> Result<Resource<Connection>, CapError> {
        let call = self.run.call("db", &name, "connect");
        let run = self.run.clone();
        let opened = async {
            let level = run.db_level(&name, DbLevel::Read, "connect")?;
            session::open(&run, &name, level, None).await
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
            session::open(&run, &name, level, Some(&database)).await
        }
        .await;
        let conn = call.finish(opened)?;
        Ok(self.table.push(conn)?)
    }

    async fn list_databases(&mut self, name: String) -> Result<Vec<String>, CapError> {
        let call = self.run.call("db", &name, "list-databases");
        let run = self.run.clone();
        let listed = async {
            run.db_level(&name, DbLevel::Admin, "manage databases")?;
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
        let run = self.run.clone();
        let result = async {
            run.db_level(&name, DbLevel::Admin, "dump")?;
            let write = dir.grant(Effect::Changes);
            if !run.grants.allows(&write) {
                return Err(CapError::missing(&write, "write a dump"));
            }
            dump::dump(&run, &name, &dir, &path, &options).await
        }
        .await;
        call.finish(result)
    }

    async fn dump_schema(&mut self, name: String) -> Result<Vec<u8>, CapError> {
        let call = self.run.call("db", &name, "dump-schema");
        let run = self.run.clone();
        let result = async {
            run.db_level(&name, DbLevel::Read, "dump the schema")?;
            dump::schema(&run, &name).await
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
            let to = dump::restore_target(&run, &name, &options).await?;
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
        let run = self.run.clone();
        let result = async {
            run.db_level(&name, DbLevel::Admin, "manage databases")?;
            let target = admin::checked(&run, &name, &[&database, &new_name]).await?;
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
        let run = self.run.clone();
        let result = async {
            run.db_level(&name, DbLevel::Admin, "manage databases")?;
            let target = admin::checked(&run, &name, &[&database]).await?;
            admin::terminate_sessions(&target, &name, &database).await
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
        session::server_version(&s.client, &s.name).await
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
            s.query(&sql, &params).await
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
        let kind = match &checked {
            Ok(kind) => kind.clone(),
            Err(_) => "refused".to_string(),
        };
        let call = self.run.call("db", &s.name, "execute").detail(kind);
        let result = async {
            checked?;
            s.execute(&sql, &params).await
        }
        .await;
        call.finish(result)
    }

    async fn begin_snapshot(&mut self, conn: Resource<Connection>) -> Result<String, CapError> {
        let s = self.session(&conn)?;
        let call = self.run.call("db", &s.name, "begin-snapshot");
        let snapshot = call.finish(s.begin_snapshot().await)?;
        self.table.get_mut(&conn)?.in_transaction = true;
        Ok(snapshot)
    }

    async fn begin(&mut self, conn: Resource<Connection>) -> Result<(), CapError> {
        let s = self.session(&conn)?;
        let call = self.run.call("db", &s.name, "begin");
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
        let checked = gate::check_copy(&sql, s.level, &s.name, true);
        let call = self
            .run
            .call("db", &s.name, "copy-out")
            .detail(checked.as_ref().map_or("refused", String::as_str));
        let origin = self.origin(&s.name, "COPY TO STDOUT");
        let source = async {
            checked?;
            copy::out(s, &sql).await
        }
        .await;
        let source = call.finish(source)?;
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
            copy::into(&s, &sql).await
        }
        .await;
        let sink = call.finish(sink)?;
        let origin = self.origin(&s.name, "COPY FROM STDIN");
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
        let run = self.run.clone();
        let result = async {
            run.db_level(&name, DbLevel::Admin, "manage databases")?;
            let target = admin::checked(&run, &name, &[&database]).await?;
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
