//! db: PostgreSQL databases named in the config (`[db.NAME]`), through
//! tokio-postgres. Grant `db=NAME:read|write|admin`, checked at `connect`
//! (and by each whole-database call); a connection carries its level.
//! The authority is the database: plugin sessions log in as roles without
//! server-level powers (`roles`), bounded by a `statement_timeout`, and
//! are cancelled when the plugin stops (`Sessions`). `read` also runs every
//! statement in a READ ONLY transaction; `gate` parses every statement
//! with PostgreSQL's grammar and keeps plugins inside their level.
//!
//! The module map: `glue` is the WIT interface (audit, grant, arguments);
//! the logic is in `session` (connections, statements, transactions),
//! `copy` (COPY streams), `dump` (dump, restore, table of contents),
//! `admin` (whole databases) and `target` (where the database is, bundled
//! in a container or not); `connect`, `roles`, `values`, `probe` and
//! `tls_probe` are what those stand on.

mod admin;
mod connect;
mod copy;
mod dump;
mod error;
mod gate;
mod glue;
mod probe;
mod roles;
mod session;
mod target;
mod tls_probe;
mod tools;
mod values;

use super::{CapError, Grant, RunContext};
use crate::policy::DbLevel;
pub use connect::{resolve, Target};
pub use error::pg_message;
pub use session::{Connection, Sessions};

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
}
