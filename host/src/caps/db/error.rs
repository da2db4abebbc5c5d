//! PostgreSQL errors as the plugin and the audit log see them.

use tokio_postgres::error::SqlState;

use super::super::{CapError, Grant};
use crate::policy::DbLevel;

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

/// A failure before the server acted (or of a read): denials by the
/// database are `denied`, a missing database `not-found`.
pub(super) fn pg_error(name: &str, e: tokio_postgres::Error) -> CapError {
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
pub(super) fn statement_error(name: &str, e: tokio_postgres::Error) -> CapError {
    match pg_error(name, e) {
        CapError::Failed(m) => CapError::Uncertain(m),
        other => other,
    }
}
