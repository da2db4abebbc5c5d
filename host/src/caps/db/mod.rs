//! db: PostgreSQL databases named in the config (`[db.NAME]`), through
//! tokio-postgres. Grant `db=NAME:read|write|admin`. Every call passes the
//! host's gate (`crate::gate`) with the narrowest grant it needs: `connect`
//! needs `read` (the session logs in at the strongest level granted), and
//! each statement the level its SQL needs, as `gate` (the SQL classifier:
//! PostgreSQL's own grammar, an allow-list of statement kinds per level)
//! decides it, so that learn mode records the level really used. The
//! authority is the database: plugin sessions log in as roles without
//! server-level powers (`roles`), bounded by a `statement_timeout`, and
//! are cancelled when the plugin stops (`Sessions`). `read` also runs every
//! statement in a READ ONLY transaction.
//!
//! Verbs and what they need (reads act in every mode):
//! - connect, begin-snapshot, begin, commit, rollback, probe-session,
//!   probe-tls, dump-schema: `read`; connect-to, list-databases: `admin`;
//!   dump-contents: `fs=DIR:ro` of the dump's directory;
//! - query, execute, copy-out, copy-in: the statement's level (copy-in is
//!   at least `write`); a `write` or `admin` statement is a change;
//! - dump: `admin` (pg_dump reads all of it) and `fs=DIR:rw`, a change
//!   (the file); restore (and `fs=DIR:ro`), create-database,
//!   drop-database, rename-database, terminate-sessions: `admin`, changes.
//!
//! Plan mode (`opshost run --plan`) answers changes without making them;
//! checks that only read (the config, the database names, the dump's
//! path) still run, so a plan fails where the run would:
//! - execute of a write/admin statement: 0 rows affected, nothing sent;
//! - query of a write/admin statement: no columns, no rows, nothing sent;
//! - copy-out whose query writes: a reader with nothing in it;
//! - copy-in: a writer that counts what it is given and keeps nothing;
//! - dump: no file written; size 0, the SHA-256 of nothing (e3b0c442…),
//!   the server's real version (audited and listed as planned);
//! - restore: ok, pg_restore not run (the file is not opened);
//! - create-database, drop-database, rename-database: ok;
//! - terminate-sessions: 0;
//! - connect acts, provisioning the plugin's login roles as in a run (the
//!   host's own access control, idempotent; see `roles`);
//! - begin, commit, rollback act: a transaction holding only simulated
//!   statements changes nothing. Every statement that does act runs in a
//!   READ ONLY transaction in a plan, whatever the level, so the database
//!   itself refuses what the classifier takes for a read but writes
//!   (`nextval`, a volatile function).
//!
//! The module map: `glue` is the WIT interface (audit, gate, arguments,
//! simulated answers); the logic is in `session` (connections, statements,
//! transactions), `copy` (COPY streams), `dump` (dump, restore, table of
//! contents), `admin` (whole databases) and `target` (where the database
//! is, bundled in a container or not); `connect`, `roles`, `values`,
//! `probe` and `tls_probe` are what those stand on.

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

pub use connect::{resolve, Target};
pub use error::pg_message;
pub use session::{Connection, Sessions};

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
