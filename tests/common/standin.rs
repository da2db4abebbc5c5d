//! The AGLedger stand-in deployments the tests share (tests/standin-up.sh
//! brings them up): which is which, and what the tests read from them
//! (data fingerprints, databases, container start times, health).

use std::process::Command;

use super::{psql, psql_in_container};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Bundled,
    External,
}

impl Mode {
    pub fn install(self) -> String {
        let var = match self {
            Mode::Bundled => "OPSHOST_TEST_STANDIN",
            Mode::External => "OPSHOST_TEST_STANDIN_EXT",
        };
        std::env::var(var).unwrap_or_else(|_| {
            panic!(
                "{var} is not set: run the tests with tests/run.sh, which brings up the stand-in"
            )
        })
    }

    pub fn project(self) -> String {
        let var = match self {
            Mode::Bundled => "OPSHOST_TEST_STANDIN_PROJECT",
            Mode::External => "OPSHOST_TEST_STANDIN_EXT_PROJECT",
        };
        std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set (tests/run.sh sets it)"))
    }

    pub fn api(self) -> &'static str {
        match self {
            Mode::Bundled => "127.0.0.1:24001",
            Mode::External => "127.0.0.1:24011",
        }
    }

    /// The live database's name on the server.
    pub fn database(self) -> &'static str {
        match self {
            Mode::Bundled => "agledger",
            Mode::External => "agledger_ext",
        }
    }
}

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn container(mode: Mode, service: &str) -> String {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={}", mode.project()),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ])
    .lines()
    .next()
    .unwrap_or_default()
    .to_string()
}

/// SQL on the live database (or `database`), as a superuser.
pub fn sql_on(mode: Mode, database: &str, query: &str) -> String {
    match mode {
        Mode::Bundled => psql_in_container(&mode.project(), database, query),
        Mode::External => psql(database, query),
    }
}

pub fn sql(mode: Mode, query: &str) -> String {
    sql_on(mode, mode.database(), query)
}

/// Row counts of the product's tables and a digest of every vault entry.
pub fn fingerprint(mode: Mode) -> String {
    sql(
        mode,
        "SELECT (SELECT count(*) FROM mandates) || '/' || (SELECT count(*) FROM vault_entries) || '/' || \
         (SELECT count(*) FROM api_keys) || '/' || (SELECT count(*) FROM vault_signing_keys) || '/' || \
         (SELECT md5(string_agg(mandate_id || chain_position || payload_hash || coalesce(previous_hash, '') || signature, ',' \
           ORDER BY mandate_id, chain_position)) FROM vault_entries)",
    )
}

/// The databases on the server that belong to this deployment.
pub fn databases(mode: Mode) -> Vec<String> {
    let all = sql_on(
        mode,
        "postgres",
        &format!(
            "SELECT datname FROM pg_database WHERE datname LIKE '{}%' ORDER BY 1",
            mode.database()
        ),
    );
    all.lines().map(str::to_string).collect()
}

/// When the api and worker containers last started: a stop/start changes it.
pub fn started_at(mode: Mode) -> String {
    ["agledger-api", "agledger-worker"]
        .iter()
        .map(|s| docker(&["inspect", "-f", "{{.State.StartedAt}}", &container(mode, s)]))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn seed(mode: Mode, mandates: u32, entries: u32) {
    let api = container(mode, "agledger-api");
    let out = Command::new("docker")
        .args(["exec", &api, "/agledger", "seed", "--mandates"])
        .arg(mandates.to_string())
        .arg("--entries-per-mandate")
        .arg(entries.to_string())
        .args(["--api-keys", "1"])
        .output()
        .expect("seed");
    assert!(
        out.status.success(),
        "seed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn health(mode: Mode) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(mode.api()) else {
        return 0;
    };
    let _ = write!(
        s,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Held by every test that uses or changes the shared stand-in
/// deployments. A file lock, not only a mutex: cargo runs test binaries one
/// after another, but two test runs on one machine (two engineers, or a
/// test beside the demo) would otherwise restart each other's services.
pub struct DeploymentLock {
    _file: std::fs::File,
    _guard: std::sync::MutexGuard<'static, ()>,
}

pub fn deployment_lock() -> DeploymentLock {
    static IN_PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let path = std::env::temp_dir().join("opshost-standin-tests.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    DeploymentLock {
        _file: file,
        _guard: guard,
    }
}

/// The config the upgrade-family operations run with against a stand-in:
/// backups in the sandbox, the install's compose directory, the project
/// with its test image-signature policy, the database and the API.
pub fn operations_config(mode: Mode) -> String {
    let install = mode.install();
    let trust = std::env::var("OPSHOST_TEST_TRUST")
        .unwrap_or_else(|_| "/tmp/opshost-test-trust".to_string());
    let db = match mode {
        Mode::Bundled => {
            format!("env_file = \"{install}/compose/.env\"\ncontainer = \"agledger\"\n")
        }
        Mode::External => format!("env_file = \"{install}/compose/.env\"\n"),
    };
    format!(
        r#"[dir.backups]
path = "backups"
[dir.compose]
path = "{install}/compose"
[dir.install]
path = "{install}"
[containers.agledger]
project = "{project}"
[containers.agledger.signatures]
fulcio_roots = ["{trust}/fulcio-root.pem"]
rekor_keys = ["{trust}/rekor.pub"]
identity_regexp = '^https://github\.com/agledger-ai/agledger-api/\.github/workflows/.+@refs/tags/v.+$'
issuer = "https://token.actions.githubusercontent.com"
[db.agledger]
{db}[http.api]
url = "http://{api}"
"#,
        project = mode.project(),
        api = mode.api()
    )
}

/// What upgrade, rollback (and restore, backup) are granted in those tests.
pub const OPERATIONS_GRANTS: &str =
    "\"db=agledger:admin\", \"fs=backups:rw\", \"fs=compose:rw\", \"fs=install:ro\", \
     \"container=agledger:inspect,logs,stop,start,pull,recreate,run\", \
     \"http=api/health:GET\", \"http=api/conformance:GET\"";
