//! Test equipment shared by the integration tests: a real HTTP server on
//! 127.0.0.1, a sandbox directory with config/policy/audit files, and a
//! runner for the real `opshost` binary.
#![allow(dead_code)]

pub mod standin;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A plugin built by `tests/run.sh` (cargo build --target wasm32-wasip2).
pub fn plugin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release")
        // cargo names a cdylib after the crate, with '-' as '_'.
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "{} is missing: run tests/run.sh, which builds the plugins first",
        path.display()
    );
    path
}

/// A minimal HTTP/1.1 server answering from a routing function. Each
/// request is counted, so a test can prove a server was never reached.
pub struct HttpServer {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

pub type Route = fn(&str, &str, SocketAddr) -> (u16, Vec<(String, String)>, Vec<u8>);

impl HttpServer {
    pub fn start(route: Route, other: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = serve(stream, route, other);
            }
        });
        Self { addr, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn serve(stream: TcpStream, route: Route, other: SocketAddr) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let (status, headers, body) = route(&method, &path, other);
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    )?;
    for (k, v) in headers {
        write!(out, "{k}: {v}\r\n")?;
    }
    write!(out, "\r\n")?;
    out.write_all(&body)?;
    out.flush()
}

/// The API stand-in for platform tests: /health, and redirects in and out.
pub fn api_route(
    method: &str,
    path: &str,
    other: SocketAddr,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let loc = |l: String| vec![("Location".to_string(), l)];
    match (method, path) {
        ("GET", "/health") => (
            200,
            vec![],
            br#"{"status":"ok","version":"1.3.2"}"#.to_vec(),
        ),
        ("GET", "/redirect-in") => (302, loc("/health".into()), vec![]),
        ("GET", "/redirect-out") => (302, loc(format!("http://{other}/steal")), vec![]),
        ("GET", "/redirect-loop") => (302, loc("/redirect-loop".into()), vec![]),
        _ => (404, vec![], b"not found".to_vec()),
    }
}

pub fn evil_route(_: &str, _: &str, _: SocketAddr) -> (u16, Vec<(String, String)>, Vec<u8>) {
    (200, vec![], b"stolen".to_vec())
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A temp directory holding a work dir, config, policy, audit log and
/// compile cache, with an API server and an "evil" server behind it.
pub struct Sandbox {
    pub root: tempfile::TempDir,
    pub api: HttpServer,
    pub evil: HttpServer,
}

impl Sandbox {
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let evil = HttpServer::start(evil_route, "127.0.0.1:9".parse().expect("addr"));
        let api = HttpServer::start(api_route, evil.addr);
        let sb = Self { root, api, evil };
        std::fs::create_dir_all(sb.path("work")).expect("work");
        std::fs::create_dir_all(sb.path("outside")).expect("outside");
        std::fs::create_dir_all(sb.path("secret")).expect("secret");
        std::fs::write(sb.path("outside/secret.txt"), "outside secret").expect("secret");
        std::fs::write(sb.path("work/hello.txt"), "hello").expect("hello");
        sb.write_config("");
        sb.write_policy("");
        sb
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// The standard config, plus `extra` TOML.
    pub fn write_config(&self, extra: &str) {
        self.write_config_with_db(
            "postgres://agledger:db-password-123@127.0.0.1:1/agledger",
            extra,
        );
    }

    /// The standard config with `[db.agledger]` at `db_url`, plus `extra`.
    pub fn write_config_with_db(&self, db_url: &str, extra: &str) {
        std::fs::create_dir_all(self.path("backups")).expect("backups");
        let text = format!(
            "[dir.work]\npath = \"work\"\n[dir.secret]\npath = \"secret\"\n\
             [http.api]\nurl = \"{api}\"\n[http.other]\nurl = \"{evil}\"\n\
             [dir.backups]\npath = \"backups\"\n\
             [db.agledger]\nurl = \"{db_url}\"\n\
             [db.other]\nurl = \"postgres://x:y@127.0.0.1:1/other\"\n\
             [containers.agledger]\nproject = \"agledger\"\n\
             [containers.otherproject]\nproject = \"otherproject\"\n{extra}",
            api = self.api.url(),
            evil = self.evil.url(),
        );
        std::fs::write(self.path("config.toml"), text).expect("config");
    }

    pub fn write_policy(&self, text: &str) {
        std::fs::write(self.path("policy.toml"), text).expect("policy");
    }

    /// `opshost run PLUGIN` with this sandbox's files, then `flags`, then `-- args`.
    pub fn run(&self, plugin_path: &Path, flags: &[&str], args: &[&str]) -> Output {
        run_command(self.command(plugin_path, flags, args))
    }

    /// The command `run` runs, for a test that starts it in the background.
    pub fn command(&self, plugin_path: &Path, flags: &[&str], args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_opshost"));
        cmd.arg("run")
            .arg(plugin_path)
            .arg("--config")
            .arg(self.path("config.toml"))
            .arg("--policy")
            .arg(self.path("policy.toml"))
            .arg("--audit-log")
            .arg(self.path("audit.ndjson"))
            .arg("--cache-dir")
            .arg(self.path("cache"))
            .args(flags);
        if !args.is_empty() {
            cmd.arg("--").args(args);
        }
        cmd.env("OPSHOST_TEST_SECRET", "host-env-secret-42");
        cmd
    }

    pub fn audit(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.path("audit.ndjson")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    pub fn audit_text(&self) -> String {
        std::fs::read_to_string(self.path("audit.ndjson")).unwrap_or_default()
    }

    /// Audit events with this capability and outcome.
    pub fn audited(&self, capability: &str, outcome: &str) -> Vec<serde_json::Value> {
        self.audit()
            .into_iter()
            .filter(|e| e["capability"] == capability && e["outcome"] == outcome)
            .collect()
    }
}

pub fn run_command(mut cmd: Command) -> Output {
    let out = cmd.output().expect("run opshost");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Exit codes, as documented in the README.
pub const OK: i32 = 0;
pub const PLUGIN_FAILED: i32 = 1;
pub const USAGE: i32 = 2;
pub const DENIED: i32 = 3;
pub const LIMIT: i32 = 5;
pub const ATTENTION: i32 = 6;

/// The test PostgreSQL started by tests/run.sh (tests/pg.sh).
pub fn pg_admin_url() -> String {
    std::env::var("OPSHOST_TEST_PG").unwrap_or_else(|_| {
        panic!("OPSHOST_TEST_PG is not set: run the tests with tests/run.sh, which starts PostgreSQL (tests/pg.sh)")
    })
}

/// The test server's URL for another database.
pub fn database_url(db: &str) -> String {
    let admin = pg_admin_url();
    let base = admin
        .strip_suffix("/postgres")
        .expect("OPSHOST_TEST_PG ends in /postgres");
    format!("{base}/{db}")
}

/// `psql` against the test server; panics with its stderr on failure.
pub fn psql(db: &str, sql: &str) -> String {
    let url = database_url(db);
    let out = Command::new("psql")
        .args([url.as_str(), "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A fresh database on the test server, named uniquely for this test.
pub fn fresh_database(tag: &str) -> (String, String) {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "t{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        tag
    );
    psql("postgres", &format!("CREATE DATABASE {name}"));
    let url = database_url(&name);
    (name, url)
}

/// The last NDJSON line of a `--json` run.
pub fn result_json(out: &Output) -> serde_json::Value {
    let last = out
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output: {}", out.stderr));
    serde_json::from_str(last).expect("result line is JSON")
}

/// SQL on `database` in the postgres container of the compose `project`
/// (the stand-in's bundled database), as its superuser; the output trimmed.
#[allow(dead_code)]
pub fn psql_in_container(project: &str, database: &str, sql: &str) -> String {
    let pg = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--filter",
            "label=com.docker.compose.service=postgres",
        ])
        .output()
        .expect("docker ps");
    let pg = String::from_utf8_lossy(&pg.stdout).trim().to_string();
    let out = Command::new("docker")
        .args([
            "exec", &pg, "psql", "-U", "agledger", "-d", database, "-Atqc", sql,
        ])
        .output()
        .expect("docker exec psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Start `plugin` and kill -9 the opshost process once `when` says so.
pub fn run_and_kill(sb: &Sandbox, name: &str, args: &[&str], when: impl Fn(&str) -> bool) {
    let mut child = sb
        .command(&plugin(name), &["--json", "--timeout", "10m"], args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if when(&line) {
            child.kill().expect("kill -9");
            killed = true;
            break;
        }
    }
    let _ = child.wait();
    assert!(killed, "{name} ended before the kill point");
}

/// Start `plugin` in the background (`--json`), its output piped.
pub fn spawn(sb: &Sandbox, name: &str, args: &[&str]) -> std::process::Child {
    sb.command(&plugin(name), &["--json", "--timeout", "10m"], args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Wait for a background run and collect its output.
pub fn finished(child: std::process::Child) -> Output {
    let out = child.wait_with_output().expect("wait");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
