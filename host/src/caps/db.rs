//! db: PostgreSQL databases named in the config. This build enforces the
//! grants (`db=NAME:read|write|admin`) and audits every call; the backend
//! (tokio-postgres, pg_dump/pg_restore) is not implemented yet, so granted
//! calls answer `unsupported` rather than pretending to work.

use wasmtime::component::Resource;

use super::bindings::opshost::plugin::db::{
    self as wit, Access, DumpInfo, RestoreOptions, Rows, Value,
};
use super::fs::DirHandle;
use super::stream::{Reader, Writer};
use super::{CapError, Grant};
use crate::policy::DbLevel;
use crate::runtime::HostState;

/// An open database session (none can be opened until the backend lands).
pub struct Connection {
    level: DbLevel,
}

const NOT_YET: &str =
    "the db capability is granted, but this opshost build has no PostgreSQL backend yet";

impl HostState {
    /// The grant check every db entry point makes before anything else.
    fn db_check(&self, name: &str, needed: DbLevel, what: &'static str) -> Result<(), CapError> {
        match self.run.grants.db(name) {
            Some(level) if level >= needed => Ok(()),
            _ => Err(CapError::missing(
                &Grant::Db {
                    resource: name.to_string(),
                    level: needed,
                },
                what,
            )),
        }
    }

    fn db_call<T>(&self, name: &str, needed: DbLevel, verb: &'static str) -> Result<T, CapError> {
        let call = self.run.call("db", name, verb);
        call.finish(
            self.db_check(name, needed, verb)
                .and(Err(CapError::Unsupported(NOT_YET.into()))),
        )
    }
}

impl wit::Host for HostState {
    async fn connect(&mut self, name: String) -> Result<Resource<Connection>, CapError> {
        self.db_call(&name, DbLevel::Read, "connect")
    }

    async fn dump(
        &mut self,
        name: String,
        _target: Resource<DirHandle>,
        _path: String,
    ) -> Result<DumpInfo, CapError> {
        self.db_call(&name, DbLevel::Admin, "dump")
    }

    async fn restore(
        &mut self,
        name: String,
        _source: Resource<DirHandle>,
        _path: String,
        _options: RestoreOptions,
    ) -> Result<(), CapError> {
        self.db_call(&name, DbLevel::Admin, "restore")
    }

    async fn dump_contents(
        &mut self,
        source: Resource<DirHandle>,
        _path: String,
    ) -> Result<Vec<String>, CapError> {
        let dir = self.table.get(&source)?.name().to_string();
        let call = self.run.call("db", &dir, "dump-contents");
        call.finish(Err(CapError::Unsupported(NOT_YET.into())))
    }

    async fn create_database(&mut self, name: String, _database: String) -> Result<(), CapError> {
        self.db_call(&name, DbLevel::Admin, "create-database")
    }

    async fn drop_database(&mut self, name: String, _database: String) -> Result<(), CapError> {
        self.db_call(&name, DbLevel::Admin, "drop-database")
    }

    async fn rename_database(
        &mut self,
        name: String,
        _database: String,
        _new_name: String,
    ) -> Result<(), CapError> {
        self.db_call(&name, DbLevel::Admin, "rename-database")
    }

    async fn terminate_sessions(
        &mut self,
        name: String,
        _database: String,
    ) -> Result<u32, CapError> {
        self.db_call(&name, DbLevel::Admin, "terminate-sessions")
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

    async fn server_version(&mut self, _conn: Resource<Connection>) -> Result<String, CapError> {
        Err(CapError::Unsupported(NOT_YET.into()))
    }

    async fn query(
        &mut self,
        _conn: Resource<Connection>,
        _sql: String,
        _params: Vec<Value>,
    ) -> Result<Rows, CapError> {
        Err(CapError::Unsupported(NOT_YET.into()))
    }

    async fn execute(
        &mut self,
        _conn: Resource<Connection>,
        _sql: String,
        _params: Vec<Value>,
    ) -> Result<u64, CapError> {
        Err(CapError::Unsupported(NOT_YET.into()))
    }

    async fn begin(&mut self, _conn: Resource<Connection>) -> Result<(), CapError> {
        Err(CapError::Unsupported(NOT_YET.into()))
    }

    async fn commit(&mut self, _conn: Resource<Connection>) -> Result<(), CapError> {
        Err(CapError::Unsupported(NOT_YET.into()))
    }

    async fn rollback(&mut self, _conn: Resource<Connection>) -> Result<(), CapError> {
        Err(CapError::Unsupported(NOT_YET.into()))
    }

    async fn copy_out(
        &mut self,
        _conn: Resource<Connection>,
        _sql: String,
    ) -> Result<Resource<Reader>, CapError> {
        Err(CapError::Unsupported(NOT_YET.into()))
    }

    async fn copy_in(
        &mut self,
        _conn: Resource<Connection>,
        _sql: String,
    ) -> Result<Resource<Writer>, CapError> {
        Err(CapError::Unsupported(NOT_YET.into()))
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}
