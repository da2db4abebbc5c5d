//! Which statements a grant level may send, decided on PostgreSQL's own
//! parse tree (libpg_query through the `pg_query` crate): Unicode-escaped
//! and quoted identifiers, comments and dollar quoting are resolved by the
//! parser before anything is decided. This is defence in depth: the
//! authority is the database itself, where every plugin session runs as a
//! role without server-level powers (see `roles`).
//!
//! The gate allows statement kinds per level (an allow-list, not a list
//! of forbidden names): read = queries, write = + DML, admin = + DDL
//! inside the database. Anywhere in a statement (CTEs, sub-queries, the
//! query of a COPY or an EXPLAIN), every nested statement counts, and calls
//! of functions that reach past the database (server files, programs,
//! signals, settings, dynamic SQL, other databases, replication) are
//! refused whatever the level.

use serde_json::Value as Json;

use super::super::CapError;
use crate::policy::DbLevel;

/// What a statement kind needs.
#[derive(Debug, Clone, Copy)]
enum Needs {
    Level(DbLevel),
    /// Never through query/execute, with the reason.
    Never(&'static str),
    /// Not through query/execute: another call does it.
    OtherCall(&'static str),
}

/// Statement node kinds (as libpg_query names them) and what they need.
/// Anything ending in `Stmt` that is not listed is refused.
fn needs(kind: &str) -> Needs {
    use DbLevel::*;
    match kind {
        "SelectStmt" | "VariableShowStmt" | "ExplainStmt" => Needs::Level(Read),
        "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" | "LockStmt" => {
            Needs::Level(Write)
        }
        "CreateStmt" | "CreateTableAsStmt" | "AlterTableStmt" | "IndexStmt" | "DropStmt"
        | "RenameStmt" | "CommentStmt" | "ViewStmt" | "CreateSeqStmt" | "AlterSeqStmt"
        | "CreateSchemaStmt" | "CreateFunctionStmt" | "AlterFunctionStmt" | "CreateTrigStmt"
        | "TruncateStmt" | "GrantStmt" | "CreateEnumStmt" | "AlterEnumStmt"
        | "CompositeTypeStmt" | "CreateDomainStmt" | "AlterDomainStmt" | "ClusterStmt"
        | "VacuumStmt" | "ReindexStmt" | "CallStmt" | "AlterOwnerStmt" | "CreatePolicyStmt"
        | "AlterPolicyStmt" | "AlterDefaultPrivilegesStmt" | "RuleStmt"
        | "RefreshMatViewStmt" | "AlterObjectSchemaStmt" | "CreateStatsStmt"
        | "AlterStatsStmt" | "CreateRangeStmt" | "DefineStmt" | "AlterTableMoveAllStmt" => {
            Needs::Level(Admin)
        }
        "TransactionStmt" => Needs::OtherCall("use the connection's begin, commit and rollback"),
        "CopyStmt" => Needs::OtherCall("use copy-out (TO STDOUT) or copy-in (FROM STDIN)"),
        "VariableSetStmt" | "AlterRoleSetStmt" | "AlterDatabaseSetStmt" | "AlterSystemStmt" => {
            Needs::Never("settings (SET, RESET, SET ROLE, SESSION AUTHORIZATION, ALTER SYSTEM) are the host's")
        }
        "DoStmt" => Needs::Never("anonymous code blocks run dynamic SQL the gate cannot see"),
        "CreateRoleStmt" | "AlterRoleStmt" | "DropRoleStmt" | "GrantRoleStmt"
        | "ReassignOwnedStmt" | "DropOwnedStmt" => Needs::Never("roles belong to the whole server"),
        "CreatedbStmt" | "DropdbStmt" | "AlterDatabaseStmt" | "AlterDatabaseRefreshCollStmt" => {
            Needs::Never("databases are managed with create-database, drop-database and rename-database")
        }
        "CreateExtensionStmt" | "AlterExtensionStmt" | "AlterExtensionContentsStmt"
        | "LoadStmt" => Needs::Never("extensions and libraries run code in the server"),
        "CreateFdwStmt" | "AlterFdwStmt" | "CreateForeignServerStmt" | "AlterForeignServerStmt"
        | "CreateUserMappingStmt" | "AlterUserMappingStmt" | "DropUserMappingStmt"
        | "CreateForeignTableStmt" | "ImportForeignSchemaStmt" => {
            Needs::Never("foreign servers reach other databases")
        }
        "CreateTableSpaceStmt" | "DropTableSpaceStmt" | "AlterTableSpaceOptionsStmt"
        | "CreateSubscriptionStmt" | "AlterSubscriptionStmt" | "DropSubscriptionStmt"
        | "CreatePublicationStmt" | "AlterPublicationStmt" | "CheckPointStmt"
        | "CreateEventTrigStmt" | "AlterEventTrigStmt" => {
            Needs::Never("it acts on the whole server")
        }
        _ => Needs::Never("this kind of statement is not available through the db capability"),
    }
}

/// Functions that reach past the granted database, refused at every level
/// (the database refuses them too: plugin roles hold none of the powers).
fn outside_function(name: &str) -> Option<&'static str> {
    const SERVER_FILES: [&str; 13] = [
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "pg_ls_logdir",
        "pg_ls_waldir",
        "pg_ls_tmpdir",
        "pg_ls_archive_statusdir",
        "lo_import",
        "lo_export",
        "pg_file_write",
        "pg_file_rename",
        "pg_file_unlink",
    ];
    const SERVER_CONTROL: [&str; 12] = [
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_promote",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_log_backend_memory_contexts",
        "set_config",
        "pg_signal_backend",
    ];
    const DYNAMIC_SQL: [&str; 7] = [
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "ts_stat",
        "ts_rewrite",
    ];
    // Session-level advisory locks outlive the statement (and would block
    // the product's own users of them until the plugin's session ends).
    const SESSION_LOCKS: [&str; 4] = [
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
    ];
    if SERVER_FILES.contains(&name) {
        Some("reads or writes the server's files")
    } else if SERVER_CONTROL.contains(&name) {
        Some("acts on other sessions or the server's settings")
    } else if DYNAMIC_SQL.contains(&name) {
        Some("runs SQL text the gate cannot see")
    } else if SESSION_LOCKS.contains(&name) {
        Some("takes a lock that outlives the statement (use the _xact_ variants)")
    } else if name.starts_with("dblink") || name.starts_with("postgres_fdw") {
        Some("reaches other databases")
    } else if name.contains("replication_slot")
        || name.starts_with("pg_logical_")
        || name.starts_with("pg_replication_origin")
    {
        Some("uses replication, which reaches the whole server")
    } else {
        None
    }
}

/// A parsed statement: its kind, the kinds nested in it, its function calls.
struct Parsed {
    kind: String,
    body: Json,
    nested_kinds: Vec<String>,
    functions: Vec<String>,
    /// Object types named by generic DDL (rename, owner, grant, comment,
    /// drop, set schema), as libpg_query's `ObjectType` numbers.
    object_types: Vec<i64>,
    /// A `SELECT … INTO` anywhere (it creates a table).
    creates_table: bool,
}

fn parse(sql: &str) -> Result<Parsed, CapError> {
    // The server parses with standard_conforming_strings on (its default;
    // plugins cannot SET it), as the parser does by default.
    let result = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| CapError::Invalid(format!("the statement does not parse: {e}")))?;
    let tree = serde_json::to_value(&result.protobuf)
        .map_err(|e| CapError::Failed(format!("reading the parse tree: {e}")))?;
    let stmts = tree["stmts"].as_array().cloned().unwrap_or_default();
    if stmts.len() != 1 {
        return Err(CapError::Invalid(format!(
            "one statement per call ({} given)",
            stmts.len()
        )));
    }
    let (kind, body) = stmts[0]["stmt"]["node"]
        .as_object()
        .and_then(|m| m.iter().next())
        .map(|(k, v)| (k.clone(), v.clone()))
        .ok_or_else(|| CapError::Invalid("empty statement".into()))?;
    let mut parsed = Parsed {
        kind,
        body,
        nested_kinds: Vec::new(),
        functions: Vec::new(),
        object_types: Vec::new(),
        creates_table: false,
    };
    // Walk the statement with its own kind as the key, so that it is seen
    // like every nested one.
    let top = Json::Object(
        [(parsed.kind.clone(), parsed.body.clone())]
            .into_iter()
            .collect(),
    );
    walk(&top, &mut parsed);
    Ok(parsed)
}

/// Every node kind ending in `Stmt` and every function name, anywhere.
fn walk(v: &Json, out: &mut Parsed) {
    match v {
        Json::Object(map) => {
            for (key, value) in map {
                if key.ends_with("Stmt") && key.starts_with(|c: char| c.is_ascii_uppercase()) {
                    out.nested_kinds.push(key.clone());
                    let field = match key.as_str() {
                        "RenameStmt" => Some("rename_type"),
                        "AlterOwnerStmt" | "AlterObjectSchemaStmt" | "AlterObjectDependsStmt" => {
                            Some("object_type")
                        }
                        "GrantStmt" | "CommentStmt" | "SecLabelStmt" => Some("objtype"),
                        "DropStmt" => Some("remove_type"),
                        _ => None,
                    };
                    if let Some(t) = field.and_then(|f| value[f].as_i64()) {
                        out.object_types.push(t);
                    }
                }
                if key == "into_clause" && !value.is_null() {
                    out.creates_table = true;
                }
                if key == "FuncCall" {
                    if let Some(name) = value["funcname"]
                        .as_array()
                        .and_then(|parts| parts.last())
                        .and_then(|last| last["node"]["String"]["sval"].as_str())
                    {
                        out.functions.push(name.to_string());
                    }
                }
                walk(value, out);
            }
        }
        Json::Array(items) => items.iter().for_each(|i| walk(i, out)),
        _ => {}
    }
}

/// Check everything that is refused at every level (functions that reach
/// past the database, statement kinds no call or another call does,
/// server-wide objects, unsafe function definitions) and find the level the
/// statement needs: the highest of its own kind and every nested kind.
/// Returns that level and what decided it.
fn needed(p: &Parsed) -> Result<(DbLevel, String), CapError> {
    if let Some((f, why)) = p
        .functions
        .iter()
        .find_map(|f| outside_function(f).map(|why| (f, why)))
    {
        return Err(CapError::Denied(format!(
            "{f}() {why}: refused at every grant level"
        )));
    }
    let mut level = DbLevel::Read;
    let mut decided_by = p.kind.clone();
    for kind in std::iter::once(&p.kind).chain(&p.nested_kinds) {
        match needs(kind) {
            Needs::Never(why) => {
                return Err(CapError::Denied(format!("{kind}: {why}")));
            }
            Needs::OtherCall(why) => {
                return Err(CapError::Invalid(format!("{kind}: {why}")));
            }
            Needs::Level(needed) if needed > level => {
                level = needed;
                decided_by = kind.clone();
            }
            Needs::Level(_) => {}
        }
    }
    if p.creates_table && level < DbLevel::Admin {
        level = DbLevel::Admin;
        decided_by = "SELECT INTO".into();
    }
    if let Some(t) = p.object_types.iter().find(|t| server_wide_object(**t)) {
        let what = i32::try_from(*t)
            .ok()
            .and_then(|t| pg_query::protobuf::ObjectType::try_from(t).ok())
            .map_or("object", |o| o.as_str_name());
        return Err(CapError::Denied(format!(
            "{}: {what} belongs to the whole server, not to the granted database",
            p.kind
        )));
    }
    check_function_definition(p)?;
    Ok((level, decided_by))
}

/// Objects that live outside one database: generic DDL (rename, owner,
/// grant, comment, drop, set schema) on them is refused.
fn server_wide_object(t: i64) -> bool {
    use pg_query::protobuf::ObjectType as O;
    [
        O::ObjectDatabase,
        O::ObjectRole,
        O::ObjectTablespace,
        O::ObjectFdw,
        O::ObjectForeignServer,
        O::ObjectUserMapping,
        O::ObjectExtension,
        O::ObjectLanguage,
        O::ObjectLargeobject,
        O::ObjectParameterAcl,
        O::ObjectSubscription,
        O::ObjectPublication,
        O::ObjectEventTrigger,
        O::ObjectAccessMethod,
    ]
    .iter()
    .any(|o| *o as i64 == t)
}

/// A function an admin plugin defines runs as that plugin's role: never
/// `SECURITY DEFINER` (it would run as its owner for whoever calls it
/// later), never in C or `internal`.
fn check_function_definition(p: &Parsed) -> Result<(), CapError> {
    if !p
        .nested_kinds
        .iter()
        .any(|k| k == "CreateFunctionStmt" || k == "AlterFunctionStmt")
    {
        return Ok(());
    }
    let mut options = Vec::new();
    collect_def_elems(&p.body, &mut options);
    for (name, arg) in options {
        let text = arg.to_ascii_lowercase();
        if name == "security" && (text.contains("true") || text.contains("ival\":1")) {
            return Err(CapError::Denied(
                "SECURITY DEFINER functions would run with their owner's rights for every caller: refused".into(),
            ));
        }
        if name == "language" && (text.contains("\"c\"") || text.contains("internal")) {
            return Err(CapError::Denied(
                "functions in C or internal run code in the server: refused".into(),
            ));
        }
    }
    Ok(())
}

fn collect_def_elems(v: &Json, out: &mut Vec<(String, String)>) {
    match v {
        Json::Object(map) => {
            if let Some(def) = map.get("DefElem") {
                if let Some(name) = def["defname"].as_str() {
                    out.push((name.to_string(), def["arg"].to_string()));
                }
            }
            map.values().for_each(|x| collect_def_elems(x, out));
        }
        Json::Array(items) => items.iter().for_each(|x| collect_def_elems(x, out)),
        _ => {}
    }
}

/// A statement a plugin may send at some level: its kind and the level
/// it needs (the narrowest grant for the host's gate to check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// For the audit line: the statement's kind, and what needs a higher
    /// level than the kind when something nested does (e.g. `SelectStmt
    /// with InsertStmt` for a data-modifying CTE).
    pub what: String,
    pub level: DbLevel,
}

impl Classified {
    fn new(kind: &str, level: DbLevel, decided_by: String) -> Self {
        let what = if decided_by == kind || level == DbLevel::Read {
            kind.to_string()
        } else {
            format!("{kind} with {decided_by}")
        };
        Self { what, level }
    }
}

/// What a statement sent through query/execute is and the level it needs;
/// an error for what no level allows (its message starts with the kind).
pub fn classify(sql: &str) -> Result<Classified, CapError> {
    let parsed = parse(sql)?;
    let (level, decided_by) = needed(&parsed).map_err(|e| e.context(&parsed.kind))?;
    Ok(Classified::new(&parsed.kind, level, decided_by))
}

/// `COPY … TO STDOUT` (copy-out, read) or `COPY … FROM STDIN` (copy-in,
/// write) only: never a server file or program. What is nested in the COPY
/// (its query) counts as usual.
pub fn classify_copy(sql: &str, out: bool) -> Result<Classified, CapError> {
    let parsed = parse(sql)?;
    if parsed.kind != "CopyStmt" {
        return Err(CapError::Invalid(format!(
            "expected a COPY statement, got {}",
            parsed.kind
        )));
    }
    let body = &parsed.body;
    if body["is_program"].as_bool() == Some(true) {
        return Err(CapError::Denied(
            "COPY … PROGRAM runs commands on the database server and is refused".into(),
        ));
    }
    let file = body["filename"].as_str().unwrap_or_default();
    if !file.is_empty() {
        return Err(CapError::Denied(format!(
            "COPY with a server file ({file:?}) reaches the server's files and is refused: use TO STDOUT / FROM STDIN"
        )));
    }
    let from = body["is_from"].as_bool().unwrap_or(false);
    match (out, from) {
        (true, true) => return Err(CapError::Invalid("copy-out takes COPY … TO STDOUT".into())),
        (false, false) => return Err(CapError::Invalid("copy-in takes COPY … FROM STDIN".into())),
        _ => {}
    }
    // The COPY itself is read (out) or write (in).
    let nested_kinds = parsed
        .nested_kinds
        .iter()
        .filter(|k| *k != "CopyStmt")
        .cloned()
        .collect();
    let inner = Parsed {
        kind: if out { "SelectStmt" } else { "InsertStmt" }.into(),
        body: Json::Null,
        nested_kinds,
        ..parsed
    };
    let (level, decided_by) = needed(&inner)?;
    let kind = if out {
        "COPY TO STDOUT"
    } else {
        "COPY FROM STDIN"
    };
    let decided_by = if decided_by == inner.kind {
        kind.to_string()
    } else {
        decided_by
    };
    Ok(Classified::new(kind, level, decided_by))
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
    use crate::policy::Grant;

    /// What the gate decides for a plugin holding `level` on `name`.
    fn check_statement(sql: &str, level: DbLevel, name: &str) -> Result<String, CapError> {
        allowed(classify(sql)?, level, name)
    }

    fn check_copy(sql: &str, level: DbLevel, name: &str, out: bool) -> Result<String, CapError> {
        allowed(classify_copy(sql, out)?, level, name)
    }

    fn allowed(c: Classified, level: DbLevel, name: &str) -> Result<String, CapError> {
        if c.level > level {
            let wanted = Grant::Db {
                resource: name.to_string(),
                level: c.level,
            };
            return Err(CapError::missing(&wanted, &c.what));
        }
        Ok(c.what)
    }

    fn ok(sql: &str, level: DbLevel) -> bool {
        check_statement(sql, level, "a").is_ok()
    }

    #[test]
    fn levels_gate_statement_kinds() {
        assert_eq!(
            check_statement("SELECT 1", DbLevel::Read, "a")
                .ok()
                .as_deref(),
            Some("SelectStmt")
        );
        assert!(ok("  -- hi\n /* x */ (select 1)", DbLevel::Read));
        assert!(ok("TABLE t", DbLevel::Read));
        assert!(ok("VALUES (1)", DbLevel::Read));
        assert!(ok("SHOW server_version", DbLevel::Read));
        assert!(
            matches!(check_statement("insert into t values (1)", DbLevel::Read, "a"), Err(CapError::Denied(m)) if m.contains("db=a:write"))
        );
        assert!(ok("insert into t values (1)", DbLevel::Write));
        assert!(
            matches!(check_statement("create table t()", DbLevel::Write, "a"), Err(CapError::Denied(m)) if m.contains("db=a:admin"))
        );
        assert!(ok("create table t()", DbLevel::Admin));
        // A data-modifying CTE inside a SELECT needs write.
        assert!(!ok(
            "WITH w AS (INSERT INTO t VALUES (9) RETURNING x) SELECT * FROM w",
            DbLevel::Read
        ));
        assert!(!ok("EXPLAIN ANALYZE DELETE FROM t", DbLevel::Read));
        assert!(!ok("SELECT 1 INTO newtable", DbLevel::Write));
        assert!(!ok(
            "EXPLAIN ANALYZE SELECT 1 INTO newtable",
            DbLevel::Write
        ));
        assert!(!ok("SELECT 1; SELECT 2", DbLevel::Admin));
        assert!(!ok("SELEC 1", DbLevel::Admin));
    }

    #[test]
    fn the_level_is_the_highest_anywhere_and_names_what_decided_it() {
        let c = |sql: &str| classify(sql).expect(sql);
        assert_eq!(
            c("SELECT 1"),
            Classified {
                what: "SelectStmt".into(),
                level: DbLevel::Read
            }
        );
        let cte = c("WITH w AS (INSERT INTO t VALUES (9) RETURNING x) SELECT * FROM w");
        assert_eq!(cte.level, DbLevel::Write);
        assert_eq!(cte.what, "SelectStmt with InsertStmt");
        assert_eq!(c("UPDATE t SET x = 1").what, "UpdateStmt");
        assert_eq!(c("SELECT 1 INTO n").what, "SelectStmt with SELECT INTO");
        assert_eq!(c("SELECT 1 INTO n").level, DbLevel::Admin);
        assert_eq!(c("DROP TABLE t").level, DbLevel::Admin);
        let copy_out = classify_copy("COPY (DELETE FROM t RETURNING x) TO STDOUT", true)
            .expect("copy of a DELETE");
        assert_eq!(copy_out.level, DbLevel::Write);
        assert_eq!(copy_out.what, "COPY TO STDOUT with DeleteStmt");
        let copy_in = classify_copy("COPY t FROM STDIN", false).expect("copy in");
        assert_eq!(
            (copy_in.what.as_str(), copy_in.level),
            ("COPY FROM STDIN", DbLevel::Write)
        );
    }

    #[test]
    fn the_parser_sees_through_spelling() {
        for sql in [
            r#"SELECT U&"pg_read\005ffile"('/etc/hostname')"#,
            r#"SELECT "pg_read_file"('/etc/hostname')"#,
            "SELECT pg_catalog.pg_read_file('/etc/hostname')",
            "SELECT * FROM pg_ls_dir('.')",
            "SELECT /* x */ pg_terminate_backend(1)",
            "SELECT query_to_xml('select pg_read' || '_file(1)', true, true, '')",
            "SELECT set_config('role', 'postgres', false)",
            "SELECT lo_export(1, '/tmp/x')",
            "SELECT pg_reload_conf()",
            "SELECT dblink_connect('dbname=postgres')",
            "SELECT 1 FROM t WHERE x IN (SELECT pg_cancel_backend(1))",
            "SELECT ts_stat('select set_config(''statement_timeout'', ''0'', false)')",
            "SELECT ts_rewrite('a'::tsquery, 'select pg_terminate_backend(1)')",
            "SELECT pg_advisory_lock(1)",
        ] {
            assert!(
                matches!(
                    check_statement(sql, DbLevel::Admin, "a"),
                    Err(CapError::Denied(_))
                ),
                "{sql}"
            );
        }
    }

    #[test]
    fn server_wide_and_session_statements_are_refused_at_every_level() {
        for sql in [
            "COMMIT",
            "begin",
            "SET default_transaction_read_only = off",
            "RESET ROLE",
            "SET ROLE postgres",
            "SET SESSION AUTHORIZATION postgres",
            "DROP DATABASE other",
            "create role evil",
            "alter system set fsync = off",
            "CREATE EXTENSION dblink",
            "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw",
            "DO $$ BEGIN PERFORM 1; END $$",
            "copy t to '/tmp/x'",
            "LOAD 'x'",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$",
            "CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'f'",
            "ALTER FUNCTION f() SECURITY DEFINER",
            "ALTER DATABASE other RENAME TO x",
            "ALTER DATABASE other OWNER TO me",
            "REVOKE CONNECT ON DATABASE other FROM PUBLIC",
            "DROP EXTENSION plpgsql",
            "DROP SERVER s",
            "COMMENT ON DATABASE other IS 'x'",
            "ALTER ROLE me RENAME TO x",
            "GRANT USAGE ON FOREIGN SERVER s TO me",
        ] {
            assert!(check_statement(sql, DbLevel::Admin, "a").is_err(), "{sql}");
        }
        assert!(ok(
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
            DbLevel::Admin
        ));
        for sql in [
            "ALTER TABLE t RENAME TO u",
            "DROP TABLE t",
            "GRANT SELECT ON t TO PUBLIC",
            "COMMENT ON TABLE t IS 'x'",
            "ALTER FUNCTION f() SECURITY INVOKER",
        ] {
            assert!(ok(sql, DbLevel::Admin), "{sql}");
        }
    }

    #[test]
    fn copy_directions_and_targets() {
        assert!(check_copy("COPY t TO STDOUT", DbLevel::Read, "a", true).is_ok());
        assert!(check_copy(
            "COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)",
            DbLevel::Read,
            "a",
            true
        )
        .is_ok());
        assert!(check_copy("COPY t TO '/etc/x'", DbLevel::Admin, "a", true).is_err());
        assert!(check_copy(
            "COPY (SELECT 'x') TO '/tmp/f' /* TO STDOUT */",
            DbLevel::Admin,
            "a",
            true
        )
        .is_err());
        assert!(check_copy("COPY t TO PROGRAM 'sh'", DbLevel::Admin, "a", true).is_err());
        assert!(check_copy(
            "COPY (SELECT 1) TO PROGRAM'touch /tmp/x' -- TO STDOUT",
            DbLevel::Admin,
            "a",
            true
        )
        .is_err());
        assert!(check_copy(
            "COPY (SELECT pg_read_file('/x')) TO STDOUT",
            DbLevel::Admin,
            "a",
            true
        )
        .is_err());
        assert!(check_copy("COPY t FROM STDIN", DbLevel::Read, "a", false).is_err());
        assert!(check_copy("COPY t FROM STDIN", DbLevel::Write, "a", false).is_ok());
        assert!(check_copy("COPY t FROM STDIN", DbLevel::Write, "a", true).is_err());
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
