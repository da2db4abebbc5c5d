//! The doctor against the AGLedger stand-in (both modes) and a real
//! PgBouncer: every check on a deployment that has its problem and on one
//! that has not. Problems are made for real (a pooler in front of the
//! database, a database stopped, rows in `_migrations`, `.env` values)
//! and put back; `.env` problems go into a copy of the deployment's
//! `.env` (the doctor only reads it). Last, the upgrade refusing on a
//! breaking finding before it changes anything.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::standin::*;
use common::*;

const CA: &str = "/tmp/opshost-test-pg/ca.crt";
const TRANSACTION_POOLER: u16 = 64329;
const SESSION_POOLER: u16 = 64330;

fn ca() -> String {
    std::env::var("OPSHOST_TEST_PG_CA").unwrap_or_else(|_| CA.to_string())
}

/// A sandbox for `mode`; `compose`: a directory holding another `.env`
/// (a copy with a problem in it) for both the compose dir and the db.
fn sandbox(mode: Mode, compose: Option<&Path>) -> Sandbox {
    let sb = Sandbox::new();
    let install = mode.install();
    let compose = compose
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("{install}/compose"));
    let db = match mode {
        Mode::Bundled => format!("env_file = \"{compose}/.env\"\ncontainer = \"agledger\"\n"),
        Mode::External => format!("env_file = \"{compose}/.env\"\n"),
    };
    std::fs::write(
        sb.path("config.toml"),
        format!(
            "[dir.backups]\npath = \"backups\"\n[dir.compose]\npath = \"{compose}\"\n[dir.install]\npath = \"{install}\"\n\
             [containers.agledger]\nproject = \"{project}\"\n[db.agledger]\n{db}[http.api]\nurl = \"http://{api}\"\n",
            project = mode.project(),
            api = mode.api()
        ),
    )
    .expect("config");
    std::fs::create_dir_all(sb.path("backups")).expect("backups");
    sb.write_policy(
        "[[plugin]]\nvendor = \"opshost\"\nname = \"doctor\"\n\
         allow = [\"db=agledger:read\", \"fs=compose:ro\", \"fs=backups:ro\", \"container=agledger:inspect,run\", \
         \"http=api/health:GET\", \"http=api/conformance:GET\"]\n\
         [[plugin]]\nvendor = \"opshost\"\nname = \"backup\"\n\
         allow = [\"db=agledger:admin\", \"fs=backups:rw\", \"http=api/health:GET\"]\n\
         [[plugin]]\nvendor = \"opshost\"\nname = \"upgrade\"\n\
         allow = [\"db=agledger:admin\", \"fs=backups:rw\", \"fs=compose:rw\", \"fs=install:ro\", \
         \"container=agledger:inspect,logs,stop,start,pull,recreate,run\", \"http=api/health:GET\", \
         \"http=api/conformance:GET\"]\n",
    );
    sb
}

fn env_text(mode: Mode) -> String {
    std::fs::read_to_string(format!("{}/compose/.env", mode.install())).expect(".env")
}

/// A temp compose directory whose `.env` is the deployment's, edited.
fn env_copy(mode: Mode, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join(".env"), edit(&env_text(mode))).expect("write .env");
    dir
}

/// The `.env` without a live AGLEDGER_IMAGE_PIN: a rollback leaves one
/// (the vendor's rollback pins the previous release), which the stand-in's
/// compose file does not apply, so a container compose recreated runs the
/// tag beside it (README of tests/standin): the image-pin check's problem.
fn without_pin(text: &str) -> String {
    text.lines()
        .map(|l| {
            let live = l.trim_start().trim_start_matches("export ").trim_start();
            if live.starts_with("AGLEDGER_IMAGE_PIN=") {
                format!("# {l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The `.env` with DATABASE_URL replaced (the last live line).
fn with_database_url(text: &str, url: &str) -> String {
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("DATABASE_URL="))
        .map(str::to_string)
        .collect();
    out.push(format!("DATABASE_URL={url}"));
    out.join("\n") + "\n"
}

/// user, password, host:port and database of the external DATABASE_URL.
fn external_login() -> (String, String, String) {
    let text = env_text(Mode::External);
    let url = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("DATABASE_URL="))
        .expect("external DATABASE_URL");
    let rest = url.strip_prefix("postgres://").expect("postgres URL");
    let (login, after) = rest.split_once('@').expect("login");
    let (user, password) = login.split_once(':').expect("password");
    let db = after
        .split_once('/')
        .map(|(_, d)| d.split('?').next().unwrap_or(d))
        .expect("database");
    (user.to_string(), password.to_string(), db.to_string())
}

fn doctor(sb: &Sandbox, args: &[&str]) -> Output {
    sb.run(&plugin("doctor"), &["--json"], args)
}

/// The outcome of one check: ("ok" | "findings" | "unchecked", findings).
fn check(out: &Output, name: &str) -> (String, Vec<serde_json::Value>) {
    let result = result_json(out);
    let checks = result["data"]["checks"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no checks in the result: {}\n{}", out.stdout, out.stderr));
    let c = checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {}", out.stdout));
    (
        c["status"].as_str().unwrap_or_default().to_string(),
        c["findings"].as_array().cloned().unwrap_or_default(),
    )
}

fn assert_ok(out: &Output, name: &str) {
    let (status, findings) = check(out, name);
    assert_eq!(status, "ok", "{name}: {findings:?}\n{}", out.stderr);
}

/// The one finding of `name`, checked for its severity.
fn finding(out: &Output, name: &str, severity: &str) -> serde_json::Value {
    let (status, findings) = check(out, name);
    assert_eq!(status, "findings", "{name}: {}", out.stdout);
    let f = findings
        .iter()
        .find(|f| f["severity"] == severity)
        .unwrap_or_else(|| panic!("{name}: no {severity} in {findings:?}"))
        .clone();
    for key in ["title", "evidence", "fix"] {
        assert!(
            !f[key].as_str().unwrap_or_default().is_empty(),
            "{name}: empty {key}"
        );
    }
    f
}

fn text(f: &serde_json::Value) -> String {
    format!("{} | {} | {}", f["title"], f["evidence"], f["fix"])
}

/// A PgBouncer on `port` in front of the test cluster, stopped on drop.
struct Pooler(u16);

impl Pooler {
    fn start(mode: &str, port: u16) -> Self {
        let (user, password, _) = external_login();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pgbouncer.sh");
        let out = Command::new(script)
            .args([
                "start",
                mode,
                &port.to_string(),
                &format!("{user}:{password}"),
            ])
            .output()
            .expect("pgbouncer.sh");
        assert!(
            out.status.success(),
            "pgbouncer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Pooler(port)
    }

    fn url(&self) -> String {
        let (user, password, db) = external_login();
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{db}?sslmode=prefer",
            self.0
        )
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/pgbouncer.sh");
        let _ = Command::new(script)
            .args(["stop", &self.0.to_string()])
            .output();
    }
}

#[test]
fn help_and_bad_arguments() {
    let sb = sandbox(Mode::Bundled, None);
    let out = sb.run(&plugin("doctor"), &[], &["--help"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(out.combined().contains("--rpo"), "{}", out.combined());
    assert!(out.combined().contains("pooler"), "{}", out.combined());
    // A plugin's invalid-input error exits 1 (the host keeps 2 for its
    // own command line, config and policy).
    let out = sb.run(&plugin("doctor"), &[], &["--check", "no-such-check"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(
        out.combined().contains("no check named"),
        "{}",
        out.combined()
    );
    let out = sb.run(&plugin("doctor"), &[], &["--rpo", "soon"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(out.combined().contains("--rpo"), "{}", out.combined());
}

/// Both deployments as tests/standin-up.sh leaves them: nothing wrong but
/// what the doctor is right to say (no backup in a fresh directory; the
/// external one's sslmode=prefer to a certificate for another name, which
/// node-postgres would refuse).
#[test]
fn healthy_deployments_pass() {
    let _lock = deployment_lock();
    for mode in [Mode::Bundled, Mode::External] {
        let env = env_copy(mode, without_pin);
        let sb = sandbox(mode, Some(env.path()));
        let out = doctor(&sb, &[]);
        assert_eq!(out.code, ATTENTION, "{mode:?}: {}", out.combined());
        for name in [
            "health",
            "pooler",
            "migrations",
            "preflight",
            "pool",
            "removed-variables",
            "image-pin",
        ] {
            assert_ok(&out, name);
        }
        finding(&out, "backups", "error");
        match mode {
            Mode::Bundled => assert_ok(&out, "tls"),
            Mode::External => {
                let f = finding(&out, "tls", "warning");
                assert!(text(&f).contains("verify-full"), "{}", text(&f));
                assert_eq!(f["blocks_upgrade"], false);
            }
        }
        assert_eq!(result_json(&out)["data"]["blocks_upgrade"], 0, "{mode:?}");
    }
}

#[test]
fn a_transaction_pooler_is_found_by_trying_and_a_session_pooler_is_not() {
    let _lock = deployment_lock();
    let transaction = Pooler::start("transaction", TRANSACTION_POOLER);
    let session = Pooler::start("session", SESSION_POOLER);

    let env = env_copy(Mode::External, |t| with_database_url(t, &transaction.url()));
    let sb = sandbox(Mode::External, Some(env.path()));
    let out = doctor(&sb, &["--check", "pooler"]);
    assert_eq!(out.code, ATTENTION, "{}", out.combined());
    let f = finding(&out, "pooler", "error");
    assert_eq!(f["blocks_upgrade"], true);
    let evidence = f["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("same backend") || evidence.contains("changed between"),
        "{evidence}"
    );
    assert!(evidence.contains("NOTIFY"), "{evidence}");
    assert!(text(&f).contains("pool_mode = session"), "{}", text(&f));

    let env = env_copy(Mode::External, |t| with_database_url(t, &session.url()));
    let sb = sandbox(Mode::External, Some(env.path()));
    let out = doctor(&sb, &["--check", "pooler"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert_ok(&out, "pooler");

    // Straight to PostgreSQL, both modes.
    for mode in [Mode::Bundled, Mode::External] {
        let out = doctor(&sandbox(mode, None), &["--check", "pooler"]);
        assert_eq!(out.code, OK, "{mode:?}: {}", out.combined());
    }
}

#[test]
fn tls_settings_that_fail_and_ones_that_work() {
    let _lock = deployment_lock();
    let (user, password, db) = external_login();
    let ca = ca();
    let run = |url: String| {
        let env = env_copy(Mode::External, |t| with_database_url(t, &url));
        let out = doctor(
            &sandbox(Mode::External, Some(env.path())),
            &["--check", "tls"],
        );
        (out, env)
    };

    // The certificate names localhost and 127.0.0.1, not the bridge address.
    let (out, _env) = run(format!(
        "postgres://{user}:{password}@172.17.0.1:54329/{db}?sslmode=verify-full&sslrootcert={ca}"
    ));
    assert_eq!(out.code, ATTENTION, "{}", out.combined());
    let f = finding(&out, "tls", "error");
    assert_eq!(f["blocks_upgrade"], true);
    assert!(
        text(&f).contains("not 172.17.0.1") && text(&f).contains("127.0.0.1"),
        "{}",
        text(&f)
    );

    // Verified by the right CA and a name the certificate holds.
    let (out, _env) = run(format!(
        "postgres://{user}:{password}@127.0.0.1:54329/{db}?sslmode=verify-full&sslrootcert={ca}"
    ));
    assert_eq!(out.code, OK, "{}", out.combined());
    assert_ok(&out, "tls");

    // require without the CA: libpq (and opshost) connect, the product's
    // driver verifies against public roots and would not.
    let (out, _env) = run(format!(
        "postgres://{user}:{password}@127.0.0.1:54329/{db}?sslmode=require"
    ));
    let f = finding(&out, "tls", "warning");
    assert!(text(&f).contains("UnknownIssuer"), "{}", text(&f));
    assert!(text(&f).contains("sslrootcert="), "{}", text(&f));
    assert_eq!(f["blocks_upgrade"], false);

    // node-postgres' uselibpqcompat=true quiets that driver, but libpq
    // tools (pg_dump, the vendor's backup script, opshost) refuse the URL.
    let (out, _env) = run(format!(
        "postgres://{user}:{password}@127.0.0.1:54329/{db}?sslmode=require&uselibpqcompat=true"
    ));
    let f = finding(&out, "tls", "error");
    let evidence = f["evidence"].as_str().unwrap_or_default();
    assert!(evidence.contains("uselibpqcompat"), "{evidence}");
    assert_eq!(f["blocks_upgrade"], true);

    // require to a server that offers no TLS (a PgBouncer without client TLS).
    let pooler = Pooler::start("session", SESSION_POOLER);
    let (out, _env) = run(pooler.url().replace("sslmode=prefer", "sslmode=require"));
    let f = finding(&out, "tls", "error");
    assert!(text(&f).contains("does not offer TLS"), "{}", text(&f));
}

#[test]
fn migrations_pending_and_newer_than_the_image() {
    let _lock = deployment_lock();
    for mode in [Mode::Bundled, Mode::External] {
        let before = fingerprint(mode);
        let sb = sandbox(mode, None);
        // Newer: a migration the running 1.3.2 does not know.
        sql(
            mode,
            "INSERT INTO _migrations (id, name) VALUES (99, 'from_the_future')",
        );
        let out = doctor(&sb, &["--check", "migrations"]);
        sql(mode, "DELETE FROM _migrations WHERE id = 99");
        let f = finding(&out, "migrations", "error");
        assert!(
            text(&f).contains("newer than the running image"),
            "{}",
            text(&f)
        );
        assert!(text(&f).contains("[99]"), "{}", text(&f));

        // Pending: migration 2 taken out (and put back exactly as it was),
        // which the image's own preflight notices too.
        let row = sql(
            mode,
            "SELECT name || '|' || applied_at::text FROM _migrations WHERE id = 2",
        );
        let (name, at) = row.split_once('|').expect("migration 2");
        sql(mode, "DELETE FROM _migrations WHERE id = 2");
        let out = doctor(&sb, &["--check", "migrations,preflight"]);
        sql(
            mode,
            &format!("INSERT INTO _migrations (id, name, applied_at) VALUES (2, '{name}', '{at}')"),
        );
        let f = finding(&out, "migrations", "error");
        assert!(text(&f).contains("not applied: [2]"), "{}", text(&f));
        let p = finding(&out, "preflight", "error");
        assert!(text(&p).contains("FAIL"), "{}", text(&p));
        // The upgrade runs the migrations itself: not a reason to refuse it.
        assert_eq!(p["blocks_upgrade"], false, "{}", text(&p));

        let out = doctor(&sb, &["--check", "migrations,preflight"]);
        assert_eq!(out.code, OK, "{mode:?}: {}", out.combined());
        assert_eq!(fingerprint(mode), before);
    }
}

/// The database stopped: not ready, preflight fails; both stop an upgrade.
#[test]
fn a_database_that_is_down() {
    let _lock = deployment_lock();
    let mode = Mode::Bundled;
    let postgres = container(mode, "postgres");
    let sb = sandbox(mode, None);
    docker(&["stop", &postgres]);
    let out = doctor(&sb, &["--check", "health,preflight"]);
    docker(&["start", &postgres]);
    let h = finding(&out, "health", "error");
    assert!(
        text(&h).contains("/health/ready answered 503"),
        "{}",
        text(&h)
    );
    assert_eq!(h["blocks_upgrade"], true);
    // "database" fails (an upgrade cannot run without it); "migrations"
    // is not checked then.
    let (_, preflight) = check(&out, "preflight");
    assert!(
        preflight
            .iter()
            .any(|f| f["blocks_upgrade"] == true && text(f).contains("database")),
        "{preflight:?}"
    );

    // Back: wait for the API to be ready again, then all is well.
    let mut ready = false;
    for _ in 0..120 {
        let out = doctor(&sb, &["--check", "health"]);
        if out.code == OK {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(ready, "the bundled deployment did not come back");
    let out = doctor(&sb, &["--check", "health,preflight"]);
    assert_eq!(out.code, OK, "{}", out.combined());
}

#[test]
fn pool_sizing_against_max_connections() {
    let _lock = deployment_lock();
    let mode = Mode::Bundled;
    let max: i64 = sql(mode, "SHOW max_connections").parse().expect("max");
    let reserved: i64 = sql(mode, "SHOW superuser_reserved_connections")
        .parse()
        .expect("reserved");
    let usable = max - reserved;
    // 1 api + 1 worker: steady 2p + 10, upgrade peak 3p + 10.
    let steady_over = (usable - 10) / 2 + 1;
    let only_peak = (usable - 10) / 3 + 1;
    assert!(
        2 * only_peak + 10 <= usable,
        "pick sizes for max_connections={max}"
    );
    let run = |value: &str| {
        let env = env_copy(mode, |t| format!("{t}DATABASE_POOL_MAX={value}\n"));
        doctor(&sandbox(mode, Some(env.path())), &["--check", "pool"])
    };
    let out = run(&steady_over.to_string());
    let f = finding(&out, "pool", "error");
    let expected = format!(
        "1 api + 1 worker replicas x DATABASE_POOL_MAX={steady_over} + 10 overhead = {}",
        2 * steady_over + 10
    );
    assert!(text(&f).contains(&expected), "{} / {expected}", text(&f));
    assert!(
        text(&f).contains(&format!("max_connections={max}")),
        "{}",
        text(&f)
    );

    let out = run(&only_peak.to_string());
    let f = finding(&out, "pool", "warning");
    assert!(text(&f).contains("upgrade"), "{}", text(&f));

    let out = run("lots");
    let f = finding(&out, "pool", "error");
    assert!(text(&f).contains("DATABASE_POOL_MAX=lots"), "{}", text(&f));

    // Unset: node-postgres's default of 10.
    let out = doctor(&sandbox(mode, None), &["--check", "pool"]);
    assert_eq!(out.code, OK, "{}", out.combined());
}

#[test]
fn removed_variables_still_set() {
    let _lock = deployment_lock();
    for mode in [Mode::Bundled, Mode::External] {
        let env = env_copy(mode, |t| {
            format!("{t}AGLEDGER_LICENSE_MODE=offline   # old\nexport AGLEDGER_RELEASE_DATE=2025-01-01\n")
        });
        let out = doctor(
            &sandbox(mode, Some(env.path())),
            &["--check", "removed-variables"],
        );
        assert_eq!(out.code, ATTENTION, "{}", out.combined());
        let e = finding(&out, "removed-variables", "error");
        assert!(
            text(&e).contains("AGLEDGER_LICENSE_MODE=offline"),
            "{}",
            text(&e)
        );
        // The upgrade comments them out itself.
        assert_eq!(e["blocks_upgrade"], false);
        let w = finding(&out, "removed-variables", "warning");
        assert!(text(&w).contains("AGLEDGER_RELEASE_DATE"), "{}", text(&w));

        // Commented out, as the deployment has it: nothing to say.
        let out = doctor(&sandbox(mode, None), &["--check", "removed-variables"]);
        assert_eq!(out.code, OK, "{}", out.combined());
    }
}

#[test]
fn a_pin_that_is_not_what_runs() {
    let _lock = deployment_lock();
    let mode = Mode::External;
    let image = docker(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &container(mode, "agledger-api"),
    ]);
    let digests = docker(&["image", "inspect", "-f", "{{json .RepoDigests}}", &image]);
    let digests: Vec<String> = serde_json::from_str(&digests).expect("RepoDigests");
    let repo = image.rsplit_once(':').map(|(r, _)| r).expect("repo:tag");
    let pin = digests
        .iter()
        .find(|d| d.starts_with(&format!("{repo}@")))
        .expect("a digest of the running image's repository")
        .clone();

    // The deployment runs the tag; a pin (of the same image, even) means
    // the next recreate switches to it.
    let env = env_copy(mode, |t| {
        format!("{}AGLEDGER_IMAGE_PIN={pin}\n", without_pin(t))
    });
    let out = doctor(&sandbox(mode, Some(env.path())), &["--check", "image-pin"]);
    let f = finding(&out, "image-pin", "warning");
    assert!(
        text(&f).contains(&pin) && text(&f).contains(&image),
        "{}",
        text(&f)
    );

    let env = env_copy(mode, |t| {
        format!("{t}AGLEDGER_IMAGE_PIN=agledger/agledger:1.3.3\n")
    });
    let out = doctor(&sandbox(mode, Some(env.path())), &["--check", "image-pin"]);
    let f = finding(&out, "image-pin", "error");
    assert!(text(&f).contains("not an image digest"), "{}", text(&f));

    let env = env_copy(mode, without_pin);
    let out = doctor(&sandbox(mode, Some(env.path())), &["--check", "image-pin"]);
    assert_eq!(out.code, OK, "{}", out.combined());
}

#[test]
fn backups_against_the_rpo() {
    let _lock = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode, None);
    let out = doctor(&sb, &["--check", "backups"]);
    let f = finding(&out, "backups", "error");
    assert!(text(&f).contains("no backup"), "{}", text(&f));

    let out = sb.run(&plugin("backup"), &["--json"], &[]);
    assert_eq!(out.code, OK, "backup: {}", out.combined());
    let out = doctor(&sb, &["--check", "backups", "--rpo", "1h"]);
    assert_eq!(out.code, OK, "{}", out.combined());

    // The same backup, named as if taken long ago.
    let name = std::fs::read_dir(sb.path("backups"))
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("backup-") && n.ends_with(".tar.gz"))
        .expect("the backup");
    let older = "backup-2020-01-01-000000.tar.gz".to_string();
    std::fs::rename(
        sb.path("backups").join(&name),
        sb.path("backups").join(&older),
    )
    .expect("rename");
    let out = doctor(&sb, &["--check", "backups", "--rpo", "24h"]);
    let f = finding(&out, "backups", "error");
    assert!(
        text(&f).contains(&older) && text(&f).contains("RPO"),
        "{}",
        text(&f)
    );
    let out = doctor(&sb, &["--check", "backups", "--rpo", "36500d"]);
    assert_eq!(out.code, OK, "{}", out.combined());
}

/// The upgrade runs the doctor first and refuses on a transaction pooler
/// (its migrations serialise on an advisory lock, pg-boss needs
/// LISTEN/NOTIFY) before it changes anything.
#[test]
fn the_upgrade_refuses_on_a_breaking_finding_before_any_change() {
    let _lock = deployment_lock();
    let mode = Mode::External;
    let pooler = Pooler::start("transaction", TRANSACTION_POOLER);
    let env = env_copy(mode, |t| with_database_url(t, &pooler.url()));
    let env_before = std::fs::read(env.path().join(".env")).expect(".env");
    let live_env_before = env_text(mode);
    let data_before = fingerprint(mode);
    let started_before = started_at(mode);
    let sb = sandbox(mode, Some(env.path()));

    let out = sb.run(
        &plugin("upgrade"),
        &["--json", "--timeout", "5m"],
        &["--yes", "1.3.3"],
    );
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    let error = result_json(&out)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("upgrade refused"), "{error}");
    assert!(
        error.contains("connection pooler in transaction mode"),
        "{error}"
    );
    assert!(error.contains("Nothing was changed"), "{error}");

    // Nothing changed: no pull, no backup, .env, data and containers as they were.
    assert!(
        sb.audit()
            .iter()
            .all(|e| e["verb"] != "pull" && e["verb"] != "dump" && e["verb"] != "stop"),
        "the upgrade acted before refusing"
    );
    let made: Vec<_> = std::fs::read_dir(sb.path("backups"))
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("backup-"))
        .collect();
    assert!(made.is_empty(), "{made:?}");
    assert_eq!(
        std::fs::read(env.path().join(".env")).expect(".env"),
        env_before
    );
    assert_eq!(env_text(mode), live_env_before);
    assert_eq!(fingerprint(mode), data_before);
    assert_eq!(started_at(mode), started_before);
    assert_eq!(health(mode), 200);

    // The operator may leave a check out, loudly; without --yes and a
    // terminal the upgrade then stops before changing anything anyway.
    let out = sb.run(
        &plugin("upgrade"),
        &["--json", "--timeout", "5m"],
        &["1.3.3", "--skip-check", "pooler"],
    );
    assert_ne!(out.code, OK, "{}", out.combined());
    assert!(
        out.combined().contains("SKIPPED (--skip-check pooler)"),
        "{}",
        out.combined()
    );
    let error = result_json(&out)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!error.contains("doctor found"), "{error}");
    assert_eq!(
        std::fs::read(env.path().join(".env")).expect(".env"),
        env_before
    );
    assert_eq!(fingerprint(mode), data_before);
    assert_eq!(started_at(mode), started_before);
}
