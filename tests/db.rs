//! The db capability against a real PostgreSQL 15: typed values, the three
//! grant levels, escapes, COPY, dump/restore through the host's tools,
//! database management, TLS and .env resolution.

mod common;

use common::*;

fn policy(level: &str, extra: &str) -> String {
    format!(
        "[[plugin]]\nvendor = \"opshost-testing\"\nname = \"dbprobe-{level}\"\nallow = [\"db=agledger:{level}\"{extra}]\n"
    )
}

/// A sandbox whose `agledger` database is a fresh one holding table t(x).
fn db_sandbox(tag: &str) -> (Sandbox, String, String) {
    let (name, url) = fresh_database(tag);
    psql(
        &name,
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (3)",
    );
    let sb = Sandbox::new();
    sb.write_config_with_db(&url, "");
    sb.write_policy(&format!(
        "{}{}{}",
        policy("read", ""),
        policy("write", ""),
        policy("admin", ", \"fs=backups:rw\"")
    ));
    (sb, name, url)
}

fn probe(sb: &Sandbox, level: &str, args: &[&str]) -> Output {
    sb.run(&plugin(&format!("dbprobe-{level}")), &["--json"], args)
}

fn data(out: &Output) -> serde_json::Value {
    let v = result_json(out);
    assert_eq!(v["ok"], true, "{}", out.combined());
    v["data"].clone()
}

fn assert_refused(out: &Output, code: i32, message: &str) {
    let v = result_json(out);
    assert_eq!(v["exit_code"], code, "{}", out.combined());
    let error = v["error"].as_str().unwrap_or_default();
    assert!(error.contains(message), "want {message:?} in {error:?}");
}

#[test]
fn values_cross_the_sandbox_typed() {
    let (sb, _, _) = db_sandbox("values");
    let d = data(&probe(&sb, "read", &["params"]));
    let row = &d["rows"][0];
    assert_eq!(row[0], 42);
    assert_eq!(row[1], "héllo");
    assert_eq!(row[2], "{\"a\":[1,2]}");
    assert_eq!(row[3], "2026-11-27T10:00:00.000000Z");
    assert_eq!(row[4], "bytes:3");
    assert_eq!(row[5], "12345.678");
    assert_eq!(row[6], serde_json::Value::Null);
    assert_eq!(row[7], true);
    assert_eq!(row[8], 2.5);
    assert_eq!(row[9], "2026-11-27");
    assert_eq!(d["types"][0], "int4");
    assert_refused(
        &probe(&sb, "read", &["bad-param"]),
        PLUGIN_FAILED,
        "parameter $1 is int4 but the plugin passed text",
    );
}

#[test]
fn a_read_grant_cannot_write_by_any_route() {
    let (sb, name, _) = db_sandbox("read");
    assert_eq!(
        data(&probe(&sb, "read", &["query", "SELECT count(*) FROM t"]))["rows"][0][0],
        3
    );
    assert_refused(
        &probe(&sb, "read", &["execute", "INSERT INTO t VALUES (9)"]),
        DENIED,
        "db=agledger:write is not granted",
    );
    // The parser sees the INSERT nested in the SELECT; the gate's denial
    // names the call and what needed write.
    let cte = "WITH w AS (INSERT INTO t VALUES (9) RETURNING x) SELECT * FROM w";
    assert_refused(
        &probe(&sb, "read", &["query", cte]),
        DENIED,
        "db=agledger:write is not granted (query SelectStmt with InsertStmt)",
    );
    for sql in [
        "SET default_transaction_read_only = off",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
    ] {
        assert_eq!(
            result_json(&probe(&sb, "read", &["query", sql]))["ok"],
            false,
            "{sql}"
        );
    }
    assert_refused(
        &probe(&sb, "read", &["txn-escape", "INSERT INTO t VALUES (9)"]),
        PLUGIN_FAILED,
        "use the connection's begin",
    );
    assert_refused(
        &probe(&sb, "read", &["copy-in", "COPY t FROM STDIN", "9\n"]),
        DENIED,
        "db=agledger:write",
    );
    assert_eq!(
        psql(&name, "SELECT count(*) FROM t"),
        "3",
        "nothing was written"
    );
    assert!(!sb.audited("db", "denied").is_empty());
}

#[test]
fn a_write_grant_allows_dml_but_not_ddl() {
    let (sb, name, _) = db_sandbox("write");
    assert_eq!(
        result_json(&probe(
            &sb,
            "write",
            &["execute", "UPDATE t SET x = x * 10"]
        ))["facts"]["affected"],
        "3"
    );
    for ddl in [
        "CREATE TABLE evil (y int)",
        "DROP TABLE t",
        "ALTER TABLE t ADD COLUMN y int",
        "TRUNCATE t",
        "GRANT ALL ON t TO public",
    ] {
        assert_refused(
            &probe(&sb, "write", &["execute", ddl]),
            DENIED,
            "db=agledger:admin is not granted",
        );
    }
    assert_eq!(psql(&name, "SELECT sum(x) FROM t"), "60");
    assert_eq!(
        psql(
            &name,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'evil'"
        ),
        "0"
    );
    probe(&sb, "write", &["txn-rollback", "DELETE FROM t"]);
    assert_eq!(psql(&name, "SELECT count(*) FROM t"), "3", "rolled back");
}

#[test]
fn other_databases_are_out_of_reach() {
    let (sb, _, _) = db_sandbox("other");
    assert_refused(
        &probe(&sb, "admin", &["other-db"]),
        DENIED,
        "db=other:read is not granted",
    );
    let dblink = "SELECT * FROM dblink('dbname=postgres', 'SELECT 1') AS r(x int)";
    assert_refused(
        &probe(&sb, "admin", &["query", dblink]),
        DENIED,
        "dblink() reaches other databases",
    );
    assert_refused(
        &probe(&sb, "admin", &["execute", "DROP DATABASE postgres"]),
        DENIED,
        "DropdbStmt: databases are managed with",
    );
    assert_refused(
        &probe(&sb, "admin", &["execute", "CREATE ROLE evil SUPERUSER"]),
        DENIED,
        "CreateRoleStmt: roles belong to the whole server",
    );
    assert_refused(
        &probe(
            &sb,
            "admin",
            &["query", "SELECT pg_read_file('/etc/passwd')"],
        ),
        DENIED,
        "pg_read_file",
    );
    assert_refused(
        &probe(&sb, "admin", &["drop-db", "postgres"]),
        DENIED,
        "does not reach other databases",
    );
    assert_refused(
        &probe(&sb, "admin", &["create-db", "other_x"]),
        DENIED,
        "does not reach other databases",
    );
    assert_refused(
        &probe(&sb, "write", &["create-db", "x"]),
        DENIED,
        "db=agledger:admin is not granted",
    );
}

#[test]
fn copy_streams_in_and_out() {
    let (sb, name, _) = db_sandbox("copy");
    probe(
        &sb,
        "write",
        &["copy-in", "COPY t (x) FROM STDIN", "7\n8\n"],
    );
    assert_eq!(psql(&name, "SELECT count(*) FROM t"), "5");
    let d = data(&probe(
        &sb,
        "read",
        &["copy-out", "COPY (SELECT x FROM t ORDER BY x) TO STDOUT"],
    ));
    assert_eq!(d["text"], "1\n2\n3\n7\n8\n");
    assert_refused(
        &probe(&sb, "admin", &["copy-out", "COPY t TO '/tmp/x'"]),
        DENIED,
        "reaches the server's files",
    );
    assert_refused(
        &probe(&sb, "admin", &["copy-out", "COPY t TO PROGRAM 'id'"]),
        DENIED,
        "PROGRAM",
    );
}

#[test]
fn dump_then_restore_beside_it_round_trips() {
    let (sb, name, _) = db_sandbox("dump");
    psql(
        &name,
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 5000) g",
    );
    let out = probe(&sb, "admin", &["dump", "db.dump"]);
    let v = result_json(&out);
    assert_eq!(v["ok"], true, "{}", out.combined());
    let bytes = std::fs::read(sb.path("backups/db.dump")).expect("dump file");
    assert_eq!(v["facts"]["size"], bytes.len().to_string());
    use sha2::Digest;
    assert_eq!(
        v["facts"]["sha256"],
        hex::encode(sha2::Sha256::digest(&bytes))
    );
    assert!(v["facts"]["server"]
        .as_str()
        .is_some_and(|s| s.starts_with("15.")));
    assert!(
        std::fs::read_dir(sb.path("backups")).expect("ls").count() == 1,
        "no temp file left"
    );

    let contents = result_json(&probe(&sb, "admin", &["contents", "db.dump"]));
    assert!(contents["facts"]["entries"]
        .as_str()
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n >= 2));

    let copy = format!("{name}_restore");
    assert_eq!(
        result_json(&probe(&sb, "admin", &["create-db", &copy]))["ok"],
        true
    );
    let restored = probe(&sb, "admin", &["restore", "db.dump", &copy, "2"]);
    assert_eq!(
        result_json(&restored)["ok"],
        true,
        "{}",
        restored.combined()
    );
    assert_eq!(
        psql(&copy, "SELECT count(*), sum(id) FROM big"),
        psql(&name, "SELECT count(*), sum(id) FROM big")
    );
    assert_eq!(psql(&copy, "SELECT count(*) FROM t"), "3");

    // Swap-style rename and clean up, all through the grant.
    let aside = format!("{name}_old");
    assert_eq!(
        result_json(&probe(&sb, "admin", &["rename-db", &copy, &aside]))["ok"],
        true
    );
    assert_eq!(
        result_json(&probe(&sb, "admin", &["drop-db", &aside]))["ok"],
        true
    );
    assert_refused(
        &probe(&sb, "admin", &["drop-db", &aside]),
        PLUGIN_FAILED,
        "does not exist",
    );
}

#[test]
fn a_failed_dump_leaves_no_file() {
    let (sb, _, _) = db_sandbox("faildump");
    sb.write_config_with_db(
        "postgres://postgres:wrong-password-55@127.0.0.1:54329/nope",
        "",
    );
    let out = probe(&sb, "admin", &["dump", "db.dump"]);
    assert_refused(&out, PLUGIN_FAILED, "pg_dump failed");
    assert_eq!(
        std::fs::read_dir(sb.path("backups")).expect("ls").count(),
        0,
        "no file, no temp file"
    );
    assert!(!out.combined().contains("wrong-password-55"));
    assert!(!sb.audit_text().contains("wrong-password-55"));
}

#[test]
fn a_corrupt_dump_is_refused_with_a_reason() {
    let (sb, name, _) = db_sandbox("corrupt");
    std::fs::write(
        sb.path("backups/bad.dump"),
        b"PGDMP this is not really a dump",
    )
    .expect("write");
    assert_refused(
        &probe(&sb, "admin", &["contents", "bad.dump"]),
        PLUGIN_FAILED,
        "pg_restore --list failed",
    );
    assert_refused(
        &probe(&sb, "admin", &["restore", "bad.dump"]),
        PLUGIN_FAILED,
        "pg_restore failed",
    );
    assert_eq!(
        psql(&name, "SELECT count(*) FROM t"),
        "3",
        "the database is untouched"
    );
}

#[test]
fn tls_modes_follow_sslmode() {
    let (name, url) = fresh_database("tls");
    let ca = std::env::var("OPSHOST_TEST_PG_CA").expect("OPSHOST_TEST_PG_CA (set by tests/run.sh)");
    let sb = Sandbox::new();
    sb.write_policy(&policy("read", ""));
    let ssl_query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let localhost = url.replace("127.0.0.1", "localhost");
    for (db_url, ssl) in [
        (format!("{url}?sslmode=disable"), false),
        (format!("{url}?sslmode=require"), true),
        (
            format!("{localhost}?sslmode=verify-full&sslrootcert={ca}"),
            true,
        ),
    ] {
        sb.write_config_with_db(&db_url, "");
        let d = data(&probe(&sb, "read", &["query", ssl_query]));
        assert_eq!(d["rows"][0][0], ssl, "{db_url}");
    }
    // A self-signed server certificate does not verify against public roots.
    sb.write_config_with_db(&format!("{localhost}?sslmode=verify-full"), "");
    assert_refused(
        &probe(&sb, "read", &["query", "SELECT 1"]),
        PLUGIN_FAILED,
        "cannot connect",
    );
    let _ = name;
}

#[test]
fn the_connection_can_come_from_a_compose_env_file() {
    let (sb, _, url) = db_sandbox("envfile");
    std::fs::write(
        sb.path("app.env"),
        format!("# compose .env\nexport POSTGRES_USER=agledger\nDATABASE_URL='{url}'   # external database\nOTHER=1\n"),
    )
    .expect("env");
    let text = std::fs::read_to_string(sb.path("config.toml")).expect("config");
    std::fs::write(
        sb.path("config.toml"),
        text.replace(&format!("url = \"{url}\""), "env_file = \"app.env\""),
    )
    .expect("write");
    assert_eq!(
        data(&probe(&sb, "read", &["query", "SELECT count(*) FROM t"]))["rows"][0][0],
        3
    );
    assert!(
        !sb.audit_text().contains(":opshost-test@"),
        "the password never reaches the audit log"
    );
}

#[test]
fn a_call_without_its_grant_is_denied_by_the_gate_in_one_shape() {
    let (sb, name, _) = db_sandbox("gate");
    assert_refused(
        &probe(&sb, "write", &["create-db", "x"]),
        DENIED,
        "db=agledger:admin is not granted (create-database x)",
    );
    assert_refused(
        &probe(&sb, "read", &["execute", "INSERT INTO t VALUES (9)"]),
        DENIED,
        "db=agledger:write is not granted (execute InsertStmt)",
    );
    assert_refused(
        &probe(&sb, "read", &["other-db"]),
        DENIED,
        "db=other:read is not granted (connect)",
    );
    // The audit line every capability writes for a denial: the call's own
    // detail, then the grant that would allow it and the call in words.
    let denied: Vec<[String; 3]> = sb
        .audited("db", "denied")
        .iter()
        .map(|e| {
            ["resource", "verb", "detail"].map(|k| e[k].as_str().unwrap_or_default().to_string())
        })
        .collect();
    let want = |line: [&str; 3]| line.map(str::to_string);
    assert_eq!(
        denied,
        [
            want([
                "agledger",
                "create-database",
                "x: denied: db=agledger:admin is not granted (create-database x)"
            ]),
            want([
                "agledger",
                "execute",
                "InsertStmt: denied: db=agledger:write is not granted (execute InsertStmt)"
            ]),
            want([
                "other",
                "connect",
                "denied: db=other:read is not granted (connect)"
            ]),
        ]
    );
    assert_eq!(psql(&name, "SELECT count(*) FROM t"), "3");
}

/// A `--plan` run of a dbprobe: it must succeed; its result line.
fn planned(sb: &Sandbox, level: &str, args: &[&str]) -> serde_json::Value {
    let out = sb.run(
        &plugin(&format!("dbprobe-{level}")),
        &["--json", "--plan"],
        args,
    );
    let v = result_json(&out);
    assert_eq!(v["ok"], true, "{args:?}: {}", out.combined());
    v
}

#[test]
fn a_plan_changes_nothing_in_the_database() {
    let (sb, name, _) = db_sandbox("plan");
    psql(&name, "CREATE SEQUENCE s");
    let databases = || {
        psql(
            "postgres",
            &format!("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE '{name}%'"),
        )
    };
    let before = (psql(&name, "SELECT count(*), sum(x) FROM t"), databases());

    // Reads act: the table's real rows.
    let v = planned(&sb, "write", &["query", "SELECT count(*) FROM t"]);
    assert_eq!(v["data"]["rows"][0][0], 3);
    // Changes are simulated: 0 rows affected, no rows back, nothing sent.
    let v = planned(&sb, "write", &["execute", "UPDATE t SET x = x * 10"]);
    assert_eq!(v["facts"]["affected"], "0");
    let v = planned(
        &sb,
        "write",
        &["query", "INSERT INTO t VALUES (9) RETURNING x"],
    );
    assert_eq!(v["data"]["rows"], serde_json::json!([]));
    planned(
        &sb,
        "write",
        &["copy-in", "COPY t (x) FROM STDIN", "7\n8\n"],
    );
    planned(&sb, "admin", &["execute", "DROP TABLE t"]);
    // What the classifier takes for a read but writes is refused by the
    // database: in a plan every statement runs READ ONLY.
    let out = sb.run(
        &plugin("dbprobe-write"),
        &["--json", "--plan"],
        &["query", "SELECT nextval('s')"],
    );
    assert_eq!(result_json(&out)["ok"], false, "{}", out.combined());

    let dump = planned(&sb, "admin", &["dump", "db.dump"]);
    assert_eq!(dump["facts"]["size"], "0");
    assert_eq!(
        dump["facts"]["sha256"],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert!(dump["facts"]["server"]
        .as_str()
        .is_some_and(|s| s.starts_with("15.")));
    assert_eq!(
        std::fs::read_dir(sb.path("backups")).expect("ls").count(),
        0,
        "no dump file, no temp file"
    );
    let scratch = format!("{name}_plan");
    planned(&sb, "admin", &["create-db", &scratch]);
    planned(&sb, "admin", &["restore", "db.dump", &scratch]);
    planned(&sb, "admin", &["rename-db", &name, &format!("{name}_old")]);
    let v = planned(&sb, "admin", &["terminate", &name]);
    assert_eq!(v["facts"]["sessions"], "0");
    planned(&sb, "admin", &["drop-db", &name]);

    // A plan still fails where the run would: a database out of reach.
    let out = sb.run(
        &plugin("dbprobe-admin"),
        &["--json", "--plan"],
        &["drop-db", "postgres"],
    );
    assert_refused(&out, DENIED, "does not reach other databases");

    assert_eq!(
        (psql(&name, "SELECT count(*), sum(x) FROM t"), databases()),
        before,
        "the table and the list of databases are as they were"
    );
    assert_eq!(psql(&name, "SELECT last_value FROM s"), "1");
    assert_eq!(psql(&name, "SELECT is_called FROM s"), "f");
    // Each change is audited as planned, and listed in the plan.
    let planned_verbs: Vec<String> = sb
        .audited("db", "planned")
        .iter()
        .filter_map(|e| e["verb"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        planned_verbs,
        [
            "execute",
            "query",
            "copy-in",
            "execute",
            "dump",
            "create-database",
            "restore",
            "rename-database",
            "terminate-sessions",
            "drop-database"
        ]
    );
    assert_eq!(v["plan"]["changes"][0]["verb"], "terminate-sessions");
}
