//! Which statements a grant level may send. The real enforcement of `read`
//! is the read-only transaction every statement runs in; this guard keeps a
//! plugin from leaving that transaction (transaction control, SET), from
//! DDL under a `write` grant, and from reaching past its database (other
//! databases, dblink/FDW, server files), at every level.

use super::super::{CapError, Grant};
use crate::policy::DbLevel;

const READ: [&str; 6] = ["SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN"];
const WRITE: [&str; 4] = ["INSERT", "UPDATE", "DELETE", "MERGE"];
const TRANSACTION: [&str; 9] = [
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "PREPARE",
];
/// Objects that live outside one database: never through SQL.
const SERVER_WIDE: [&str; 6] = [
    "DATABASE",
    "ROLE",
    "USER",
    "TABLESPACE",
    "SUBSCRIPTION",
    "SERVER",
];
/// Functions and extensions that reach other databases or the server's files.
const OUTSIDE: [&str; 9] = [
    "dblink",
    "postgres_fdw",
    "lo_import",
    "lo_export",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_file_write",
];

/// The leading keywords of a statement, upper-cased, comments skipped.
pub fn keywords(sql: &str, count: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while out.len() < count {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(' || c == ';');
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map(|(_, r)| r).unwrap_or("");
            continue;
        }
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map(|(_, r)| r).unwrap_or("");
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        out.push(rest[..end].to_ascii_uppercase());
        rest = &rest[end..];
    }
    out
}

fn needs(name: &str, level: DbLevel, why: &str) -> CapError {
    CapError::missing(
        &Grant::Db {
            resource: name.to_string(),
            level,
        },
        why,
    )
}

/// Refuse what reaches outside the granted database, at any level.
fn outside_checks(sql: &str, words: &[String]) -> Result<(), CapError> {
    let lower = sql.to_ascii_lowercase();
    if let Some(f) = OUTSIDE.iter().find(|f| lower.contains(*f)) {
        return Err(CapError::Denied(format!(
            "statements using {f} reach outside the granted database and are refused"
        )));
    }
    if matches!(
        words.first().map(String::as_str),
        Some("CREATE" | "DROP" | "ALTER")
    ) && words
        .get(1)
        .is_some_and(|w| SERVER_WIDE.contains(&w.as_str()))
    {
        return Err(CapError::Denied(format!(
            "{} {} acts on the whole server; databases are managed with create-database, drop-database and rename-database",
            words[0], words[1]
        )));
    }
    if words.first().map(String::as_str) == Some("ALTER")
        && words.get(1).map(String::as_str) == Some("SYSTEM")
    {
        return Err(CapError::Denied(
            "ALTER SYSTEM changes the whole server and is refused".into(),
        ));
    }
    Ok(())
}

/// May a plugin holding `level` on `name` run `sql` through query/execute?
pub fn check_statement(sql: &str, level: DbLevel, name: &str) -> Result<String, CapError> {
    let words = keywords(sql, 2);
    let first = words
        .first()
        .cloned()
        .ok_or_else(|| CapError::Invalid("empty statement".into()))?;
    outside_checks(sql, &words)?;
    if TRANSACTION.contains(&first.as_str()) {
        return Err(CapError::Invalid(format!(
            "{first}: use the connection's begin, commit and rollback"
        )));
    }
    if first == "COPY" {
        return Err(CapError::Invalid(
            "COPY: use copy-out (TO STDOUT) or copy-in (FROM STDIN)".into(),
        ));
    }
    if level < DbLevel::Admin && sql.to_ascii_lowercase().contains("set_config") {
        return Err(needs(
            name,
            DbLevel::Admin,
            "set_config changes session settings",
        ));
    }
    let allowed = READ.contains(&first.as_str())
        || (level >= DbLevel::Write && WRITE.contains(&first.as_str()))
        || level == DbLevel::Admin;
    if allowed {
        return Ok(first);
    }
    let wanted = if WRITE.contains(&first.as_str()) {
        DbLevel::Write
    } else {
        DbLevel::Admin
    };
    Err(needs(name, wanted, &format!("{first} statement")))
}

/// `COPY … TO STDOUT` (read) or `COPY … FROM STDIN` (write) only.
pub fn check_copy(sql: &str, level: DbLevel, name: &str, out: bool) -> Result<(), CapError> {
    let words = keywords(sql, 2);
    outside_checks(sql, &words)?;
    let upper = sql.to_ascii_uppercase();
    let squeezed: String = upper.split_whitespace().collect::<Vec<_>>().join(" ");
    if words.first().map(String::as_str) != Some("COPY") {
        return Err(CapError::Invalid("expected a COPY statement".into()));
    }
    if squeezed.contains(" PROGRAM ") {
        return Err(CapError::Denied(
            "COPY … PROGRAM runs commands on the database server and is refused".into(),
        ));
    }
    if out && !squeezed.contains("TO STDOUT") {
        return Err(CapError::Invalid("copy-out takes COPY … TO STDOUT".into()));
    }
    if !out {
        if !squeezed.contains("FROM STDIN") {
            return Err(CapError::Invalid("copy-in takes COPY … FROM STDIN".into()));
        }
        if level < DbLevel::Write {
            return Err(needs(name, DbLevel::Write, "COPY FROM STDIN"));
        }
    }
    Ok(())
}

/// Databases an admin grant may create, drop, rename or empty of sessions:
/// the granted one, and `<granted>_<suffix>` beside it (restore-then-swap).
pub fn check_database_name(granted_db: &str, candidate: &str, name: &str) -> Result<(), CapError> {
    let well_formed = !candidate.is_empty()
        && candidate.len() <= 63
        && candidate
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !well_formed {
        return Err(CapError::Invalid(format!(
            "database name {candidate:?}: use lower-case letters, digits and '_' (at most 63)"
        )));
    }
    let related = candidate == granted_db
        || candidate
            .strip_prefix(granted_db)
            .is_some_and(|rest| rest.starts_with('_') && rest.len() > 1);
    if !related {
        return Err(CapError::Denied(format!(
            "database {candidate:?} is not {granted_db:?} or {granted_db}_<suffix>: db={name} does not reach other databases"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_skip_comments_and_parens() {
        assert_eq!(keywords("  -- hi\n /* x */ (select 1)", 2), ["SELECT", "1"]);
        assert_eq!(keywords("drop database x", 2), ["DROP", "DATABASE"]);
    }

    #[test]
    fn levels_gate_statements() {
        assert!(check_statement("SELECT 1", DbLevel::Read, "a").is_ok());
        assert!(
            matches!(check_statement("insert into t values (1)", DbLevel::Read, "a"), Err(CapError::Denied(m)) if m.contains("db=a:write"))
        );
        assert!(check_statement("insert into t values (1)", DbLevel::Write, "a").is_ok());
        assert!(
            matches!(check_statement("create table t()", DbLevel::Write, "a"), Err(CapError::Denied(m)) if m.contains("db=a:admin"))
        );
        assert!(check_statement("create table t()", DbLevel::Admin, "a").is_ok());
    }

    #[test]
    fn escapes_are_refused_at_every_level() {
        for sql in [
            "COMMIT",
            "begin",
            "SET default_transaction_read_only = off",
            "select set_config('default_transaction_read_only','off',false)",
            "select * from dblink('dbname=other','select 1') as t(x int)",
            "DROP DATABASE other",
            "alter system set fsync = off",
            "select pg_read_file('/etc/passwd')",
            "copy t to '/tmp/x'",
        ] {
            assert!(check_statement(sql, DbLevel::Read, "a").is_err(), "{sql}");
        }
        for sql in [
            "COMMIT",
            "DROP DATABASE other",
            "create role evil",
            "select dblink_exec('x')",
        ] {
            assert!(check_statement(sql, DbLevel::Admin, "a").is_err(), "{sql}");
        }
    }

    #[test]
    fn copy_directions() {
        assert!(check_copy("COPY t TO STDOUT", DbLevel::Read, "a", true).is_ok());
        assert!(check_copy("COPY t TO '/etc/x'", DbLevel::Admin, "a", true).is_err());
        assert!(check_copy("COPY t TO PROGRAM 'sh'", DbLevel::Admin, "a", true).is_err());
        assert!(check_copy("COPY t FROM STDIN", DbLevel::Read, "a", false).is_err());
        assert!(check_copy("COPY t FROM STDIN", DbLevel::Write, "a", false).is_ok());
    }

    #[test]
    fn database_names_stay_beside_the_granted_one() {
        assert!(check_database_name("agledger", "agledger", "a").is_ok());
        assert!(check_database_name("agledger", "agledger_restore_1", "a").is_ok());
        assert!(check_database_name("agledger", "agledger_", "a").is_err());
        assert!(check_database_name("agledger", "postgres", "a").is_err());
        assert!(check_database_name("agledger", "agledgerx", "a").is_err());
        assert!(check_database_name("agledger", "Agledger_x", "a").is_err());
        assert!(check_database_name("agledger", "agledger_x\"; drop", "a").is_err());
    }
}
