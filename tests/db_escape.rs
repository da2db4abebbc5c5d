//! A hostile plugin holding a db grant on a server whose configured login
//! is a superuser (as the bundled deployment's POSTGRES_USER is) tries
//! every known way out: server files and programs, other sessions,
//! settings and roles, dynamic SQL, other databases, queries that outlive
//! the plugin. Each must be refused by the gate or by the database, with
//! no side effect, checked from outside.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn policy() -> String {
    ["read", "write", "admin"]
        .iter()
        .map(|level| {
            format!(
                "[[plugin]]\nvendor = \"opshost-testing\"\nname = \"dbprobe-{level}\"\nallow = [\"db=agledger:{level}\"{}]\n",
                if *level == "admin" { ", \"fs=backups:rw\"" } else { "" }
            )
        })
        .collect()
}

/// A sandbox whose `agledger` is a fresh database on the test server,
/// reached with the server's superuser login.
fn sandbox(tag: &str) -> (Sandbox, String) {
    let (name, url) = fresh_database(tag);
    psql(
        &name,
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (3)",
    );
    let sb = Sandbox::new();
    sb.write_config_with_db(&url, "");
    sb.write_policy(&policy());
    (sb, name)
}

fn probe(sb: &Sandbox, level: &str, args: &[&str]) -> serde_json::Value {
    result_json(&sb.run(&plugin(&format!("dbprobe-{level}")), &["--json"], args))
}

fn refused(v: &serde_json::Value, what: &str) {
    assert_eq!(v["ok"], false, "{what} was allowed: {v}");
}

/// Refused, with one of `reasons` in the message.
fn refused_because(v: &serde_json::Value, what: &str, reasons: &[&str]) {
    refused(v, what);
    let error = v["error"].as_str().unwrap_or_default();
    assert!(
        reasons.iter().any(|r| error.contains(r)),
        "{what}: want one of {reasons:?} in {error:?}"
    );
}

fn rows(v: &serde_json::Value) -> serde_json::Value {
    assert_eq!(v["ok"], true, "{v}");
    v["data"]["rows"].clone()
}

/// A file the server would write if an attack got through.
fn marker(tag: &str) -> String {
    let path = format!("/tmp/opshost-escape-{}-{tag}", std::process::id());
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn plugin_sessions_log_in_as_roles_without_server_powers() {
    let (sb, name) = sandbox("roles");
    for level in ["read", "write", "admin"] {
        let v = probe(
            &sb,
            level,
            &[
                "query",
                "SELECT session_user::text, r.rolsuper, r.rolcreaterole, \
                 pg_has_role(session_user, 'pg_signal_backend', 'MEMBER'), \
                 pg_has_role(session_user, 'pg_execute_server_program', 'MEMBER'), \
                 pg_has_role(session_user, 'pg_read_server_files', 'MEMBER'), \
                 pg_has_role(session_user, 'pg_write_server_files', 'MEMBER'), \
                 current_setting('statement_timeout') \
                 FROM pg_roles r WHERE r.rolname = session_user",
            ],
        );
        let row = &rows(&v)[0];
        assert_eq!(row[0], format!("opshost_{name}_{level}"), "{level}");
        for (i, power) in [
            "superuser",
            "createrole",
            "signal",
            "program",
            "read files",
            "write files",
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(row[i + 1], false, "{level} session has {power}");
        }
        assert_ne!(row[7], "0", "{level} session has no statement_timeout");
    }
    // The levels are the database's privileges, not only the gate's.
    assert_eq!(
        rows(&probe(&sb, "read", &["query", "SELECT count(*) FROM t"]))[0][0],
        3
    );
    assert_eq!(
        probe(&sb, "write", &["execute", "INSERT INTO t VALUES (4)"])["ok"],
        true
    );
    assert_eq!(psql(&name, "SELECT count(*) FROM t"), "4");
    // Only this database's own tables: never the server's password verifiers.
    for level in ["read", "admin"] {
        let v = probe(
            &sb,
            level,
            &["query", "SELECT rolname::text, rolpassword FROM pg_authid"],
        );
        refused_because(&v, "reading pg_authid", &["permission denied"]);
    }
    // The role's password is the host's: nothing of it reaches the audit log.
    assert!(!sb.audit_text().contains("PASSWORD"));
}

#[test]
fn server_files_and_programs_stay_out_of_reach() {
    let (sb, _) = sandbox("files");
    let program = marker("program");
    let file = marker("file");
    let lo = marker("lo");
    let attacks = [
        (
            "read",
            "query",
            r#"SELECT U&"pg_read\005ffile"('/etc/hostname')"#.to_string(),
        ),
        (
            "read",
            "query",
            "SELECT query_to_xml('select pg_read' || '_file(''/etc/hostname'')', true, true, '')"
                .to_string(),
        ),
        (
            "admin",
            "query",
            "SELECT pg_read_file('/etc/hostname')".to_string(),
        ),
        (
            "admin",
            "copy-out",
            format!("COPY (SELECT 1) TO PROGRAM'touch {program}' -- TO STDOUT"),
        ),
        (
            "admin",
            "copy-out",
            format!("COPY (SELECT 'x') TO '{file}' /* TO STDOUT */"),
        ),
        (
            "admin",
            "query",
            format!("SELECT lo_export(lo_from_bytea(0, 'x'), '{lo}')"),
        ),
        ("admin", "query", "SELECT pg_reload_conf()".to_string()),
    ];
    for (level, op, sql) in &attacks {
        refused(&probe(&sb, level, &[op, sql]), sql);
    }
    for path in [&program, &file, &lo] {
        assert!(
            !std::path::Path::new(path).exists(),
            "{path} was written on the server"
        );
    }
}

#[test]
fn the_database_refuses_what_the_gate_cannot_see() {
    let (sb, name) = sandbox("dynamic");
    let file = marker("plpgsql");
    // A function the database already has (here made by its superuser) runs
    // SQL the gate cannot see: the database checks the privilege when it
    // runs, as the plugin's role.
    psql(
        &name,
        &format!(
            "CREATE FUNCTION sneak() RETURNS text LANGUAGE plpgsql AS $$ BEGIN \
             EXECUTE 'COPY (SELECT 1) TO ''{file}'''; RETURN pg_read_file('/etc/hostname'); END $$"
        ),
    );
    for level in ["read", "admin"] {
        let v = probe(&sb, level, &["query", "SELECT sneak()"]);
        refused_because(
            &v,
            "a function reading server files",
            &["permission denied", "must be superuser"],
        );
    }
    // An admin plugin cannot plant functions where the product (logged in
    // as the same superuser) would find them: no CREATE in its schemas.
    let v = probe(
        &sb,
        "admin",
        &[
            "execute",
            "CREATE FUNCTION public.planted() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
        ],
    );
    refused_because(&v, "creating a function in public", &["permission denied"]);
    refused(
        &probe(&sb, "admin", &["execute", "CREATE SCHEMA postgres"]),
        "a schema",
    );
    assert!(!std::path::Path::new(&file).exists());
    // SECURITY DEFINER would run as its owner for whoever calls it later.
    refused(
        &probe(
            &sb,
            "admin",
            &[
                "execute",
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$",
            ],
        ),
        "SECURITY DEFINER",
    );
    refused(
        &probe(
            &sb,
            "write",
            &[
                "execute",
                "CREATE FUNCTION g() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$",
            ],
        ),
        "SECURITY DEFINER at write",
    );
    assert!(!sb.audited("db", "denied").is_empty());
}

#[test]
fn sessions_of_others_cannot_be_ended() {
    let (sb, name) = sandbox("signal");
    // The victim runs as the very same plugin role (read), in the same
    // database: the role may signal its own sessions, so only the gate
    // stands between them; and a superuser session in another database.
    let mut victim = sb
        .command(
            &plugin("dbprobe-read"),
            &["--timeout", "60s"],
            &["query", "SELECT pg_sleep(30) /* opshost-victim */"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the victim");
    let mut superuser = Command::new("psql")
        .args([
            database_url("postgres").as_str(),
            "-XAtqc",
            "SELECT pg_sleep(30) /* opshost-su-victim */",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start psql");
    let pid_of = |marker: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let pid = psql(
                "postgres",
                &format!("SELECT pid FROM pg_stat_activity WHERE query LIKE '%{marker}%' AND query NOT LIKE '%pg_stat_activity%'"),
            );
            if !pid.is_empty() || Instant::now() > deadline {
                break pid;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (pid, su_pid) = (pid_of("opshost-victim"), pid_of("opshost-su-victim"));
    assert!(
        !pid.is_empty() && !su_pid.is_empty(),
        "the victims did not start"
    );
    assert_eq!(
        psql(
            &name,
            &format!("SELECT usename FROM pg_stat_activity WHERE pid = {pid}")
        ),
        format!("opshost_{name}_read"),
        "the victim is the attacker's own role"
    );
    for (level, sql) in [
        ("read", format!("SELECT pg_terminate_backend({pid})")),
        (
            "read",
            format!("SELECT query_to_xml('select pg_terminate_backend({pid})', true, true, '')"),
        ),
        (
            "read",
            format!("SELECT ts_stat('select pg_terminate_backend({pid})::text::tsvector')"),
        ),
        ("read", format!("SELECT pg_cancel_backend({su_pid})")),
        ("admin", format!("SELECT pg_cancel_backend({pid})")),
    ] {
        refused(&probe(&sb, level, &["query", &sql]), &sql);
    }
    for p in [&pid, &su_pid] {
        assert_eq!(
            psql(
                "postgres",
                &format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = {p} AND state = 'active'"
                )
            ),
            "1",
            "session {p} was ended or cancelled"
        );
    }
    let _ = superuser.kill();
    let _ = superuser.wait();
    let _ = victim.kill();
    let _ = victim.wait();
}

#[test]
fn a_trap_planted_for_the_host_never_runs_with_its_login() {
    // Objects that would run if the host's own (superuser) session resolved
    // names through `public` or a schema named after its login: operators
    // its catalog queries use, and a function of the same name in schema
    // "postgres".
    let (sb, name) = sandbox("trap");
    let file = marker("trap");
    let body = format!("BEGIN EXECUTE 'COPY (SELECT 1) TO ''{file}'''; RETURN true; END");
    // Planted by hand (a plugin cannot create anything there): the test is
    // that the host's own sessions never resolve names through them.
    for sql in [
        format!("CREATE FUNCTION public.trap(name, name) RETURNS bool LANGUAGE plpgsql AS $$ {body} $$"),
        format!("CREATE FUNCTION public.trap2(name, text) RETURNS bool LANGUAGE plpgsql AS $$ {body} $$"),
        "CREATE OPERATOR public.!~~ (LEFTARG = name, RIGHTARG = name, FUNCTION = public.trap)".to_string(),
        "CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = text, FUNCTION = public.trap2)".to_string(),
        "CREATE SCHEMA postgres".to_string(),
        format!("CREATE FUNCTION postgres.starts_with(text, text) RETURNS bool LANGUAGE plpgsql AS $$ {body} $$"),
    ] {
        psql(&name, &sql);
    }
    // Every level's next session is provisioned by the host's login.
    for level in ["read", "write", "admin"] {
        assert_eq!(
            probe(&sb, level, &["query", "SELECT 1"])["ok"],
            true,
            "{level}"
        );
    }
    assert!(
        !std::path::Path::new(&file).exists(),
        "the planted code ran with the host's login"
    );
}

#[test]
fn roles_settings_and_server_objects_are_refused() {
    let (sb, name) = sandbox("session");
    for sql in [
        "RESET ROLE",
        "SET ROLE postgres",
        "SET SESSION AUTHORIZATION postgres",
        "SELECT query_to_xml('select set_config(''role'', ''postgres'', false)', true, true, '')",
        "SELECT set_config('role', 'postgres', false)",
        "ALTER SYSTEM SET log_statement = 'all'",
        "CREATE EXTENSION dblink",
        "CREATE EXTENSION postgres_fdw",
        "CREATE SERVER other FOREIGN DATA WRAPPER postgres_fdw",
        "DO $$ BEGIN EXECUTE 'ALTER ROLE ' || session_user || ' SUPERUSER'; END $$",
        "CREATE ROLE evil SUPERUSER",
        "ALTER ROLE postgres PASSWORD 'x'",
        "DROP DATABASE postgres",
        "ALTER DATABASE postgres RENAME TO gone",
        "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC",
        "ALTER FUNCTION pg_catalog.now() SECURITY DEFINER",
        "SELECT ts_stat('select set_config(''statement_timeout'', ''0'', false)::tsvector')",
    ] {
        refused(&probe(&sb, "admin", &["execute", sql]), sql);
    }
    // Nothing changed on the server.
    assert_eq!(
        psql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'evil'"
        ),
        "0"
    );
    assert_eq!(
        psql(
            "postgres",
            "SELECT count(*) FROM pg_extension WHERE extname IN ('dblink', 'postgres_fdw')"
        ),
        "0"
    );
    assert_eq!(psql("postgres", "SHOW log_statement"), "none");
    // A plugin cannot pick another database either.
    refused(
        &probe(
            &sb,
            "admin",
            &[
                "query",
                "SELECT * FROM dblink('dbname=postgres', 'select 1') AS t(x int)",
            ],
        ),
        "dblink",
    );
    let _ = name;
}

/// No query tagged `marker` runs on `database` within a second from now.
fn assert_gone_within_a_second(database: &str, marker: &str) {
    let stopped = Instant::now();
    let left = loop {
        let left = psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"),
        );
        if left == "0" || stopped.elapsed() > Duration::from_secs(1) {
            break left;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(left, "0", "the query tagged {marker} outlived the plugin");
}

#[test]
fn a_stopped_plugin_leaves_no_query_running() {
    let (sb, name) = sandbox("cancel");
    // Stopped by its time limit in the middle of a query: the session's
    // statement_timeout (the time the run had left) and the cancel end it.
    let out = sb.run(
        &plugin("dbprobe-read"),
        &["--json", "--timeout", "2s"],
        &["query", "SELECT pg_sleep(100000) /* opshost-cancel-test */"],
    );
    assert_eq!(out.code, LIMIT, "{}", out.combined());
    assert_gone_within_a_second(&name, "opshost-cancel-test");

    assert!(sb
        .audit()
        .iter()
        .any(|e| e["capability"] == "db" && e["verb"] == "cancel"));
}

#[test]
fn a_statement_that_failed_on_the_server_is_audited_as_uncertain() {
    let (sb, _) = sandbox("audit");
    refused(
        &probe(&sb, "write", &["execute", "UPDATE t SET x = x / 0"]),
        "division by zero",
    );
    let line = sb
        .audit()
        .into_iter()
        .find(|e| e["capability"] == "db" && e["verb"] == "execute")
        .expect("the execute was audited");
    assert_eq!(line["outcome"], "uncertain", "{line}");
    assert!(
        line["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("UpdateStmt"),
        "{line}"
    );
    // A refusal by the gate never reached the server: it is `denied`.
    refused(
        &probe(
            &sb,
            "read",
            &["query", "SELECT pg_read_file('/etc/hostname')"],
        ),
        "gate",
    );
    assert!(sb.audited("db", "denied").iter().any(|e| e["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("SelectStmt: pg_read_file()")));
}

/// A login that may create roles but is no superuser, as RDS's master user
/// (rds_superuser has CREATEROLE): the host provisions through it too.
#[test]
fn a_createrole_login_like_a_managed_database_provisions_too() {
    let tag = format!("rds{}", std::process::id());
    psql(
        "postgres",
        &format!("CREATE ROLE {tag} LOGIN CREATEROLE PASSWORD 'rds-pw'"),
    );
    psql("postgres", &format!("CREATE DATABASE {tag} OWNER {tag}"));
    let url = database_url(&tag).replace("postgres:opshost-test@", &format!("{tag}:rds-pw@"));
    psql(
        &tag,
        &format!("SET ROLE {tag}; CREATE TABLE t (x int); INSERT INTO t VALUES (1)"),
    );
    let sb = Sandbox::new();
    sb.write_config_with_db(&url, "");
    sb.write_policy(&policy());
    let v = probe(
        &sb,
        "read",
        &[
            "query",
            "SELECT session_user::text, (SELECT count(*) FROM t)",
        ],
    );
    assert_eq!(rows(&v)[0][0], format!("opshost_{tag}_read"));
    assert_eq!(rows(&v)[0][1], 1);
    let v = probe(&sb, "admin", &["query", "SELECT session_user::text"]);
    assert_eq!(rows(&v)[0][0], format!("opshost_{tag}_admin"));
    // The CREATEROLE owner is not reachable from the admin role.
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT pg_has_role('opshost_{tag}_admin', '{tag}', 'MEMBER')")
        ),
        "f"
    );
}

#[test]
fn a_powerful_login_that_cannot_make_roles_is_refused_naming_the_power() {
    let (name, _) = fresh_database("signal_login");
    let login = format!("sig{}", std::process::id());
    psql(
        "postgres",
        &format!("CREATE ROLE {login} LOGIN PASSWORD 'sig-pw'; GRANT pg_signal_backend TO {login}"),
    );
    let url = database_url(&name).replace("postgres:opshost-test@", &format!("{login}:sig-pw@"));
    let sb = Sandbox::new();
    sb.write_config_with_db(&url, "");
    sb.write_policy(&policy());
    let v = probe(&sb, "read", &["query", "SELECT 1"]);
    refused_because(
        &v,
        "a session as a member of pg_signal_backend",
        &["member of pg_signal_backend"],
    );
    assert_eq!(v["exit_code"], DENIED);
}

#[test]
fn a_plugin_role_someone_made_powerful_is_refused() {
    let (sb, name) = sandbox("granted");
    assert_eq!(probe(&sb, "read", &["query", "SELECT 1"])["ok"], true);
    psql(
        "postgres",
        &format!("GRANT pg_signal_backend TO opshost_{name}_read"),
    );
    let v = probe(&sb, "read", &["query", "SELECT 1"]);
    refused(&v, "a session whose role was granted pg_signal_backend");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("REVOKE"),
        "{v}"
    );
    psql(
        "postgres",
        &format!("REVOKE pg_signal_backend FROM opshost_{name}_read"),
    );
    assert_eq!(probe(&sb, "read", &["query", "SELECT 1"])["ok"], true);
}
