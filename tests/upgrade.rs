//! upgrade and rollback against the AGLedger stand-in (real containers, the
//! local registry with signed images, real databases, both modes):
//! 1.3.2 -> 1.3.3 and back, a never-healthy release and a failing
//! migration that undo themselves, refused signatures, nothing-to-do and
//! downgrades, `.env` edits, two operations at once, kill -9 and recovery.
//!
//! Every test leaves the deployment running 1.3.2 as it found it.

mod common;

use std::process::Command;
use std::sync::Mutex;

use common::standin::*;
use common::*;

const TRUST: &str = "/tmp/opshost-test-trust";
const REPO: &str = "127.0.0.1:5000/agledger/agledger";

fn trust_dir() -> String {
    std::env::var("OPSHOST_TEST_TRUST").unwrap_or_else(|_| TRUST.to_string())
}

fn sandbox(mode: Mode) -> Sandbox {
    let sb = Sandbox::new();
    std::fs::write(sb.path("config.toml"), operations_config(mode)).expect("config");
    std::fs::create_dir_all(sb.path("backups")).expect("backups");
    let ops = OPERATIONS_GRANTS;
    sb.write_policy(&format!(
        "[[plugin]]\nvendor = \"opshost\"\nname = \"upgrade\"\nallow = [{ops}]\n\
         [[plugin]]\nvendor = \"opshost\"\nname = \"rollback\"\nallow = [{ops}]\n\
         [[plugin]]\nvendor = \"opshost\"\nname = \"backup\"\n\
         allow = [\"db=agledger:admin\", \"fs=backups:rw\", \"http=api/health:GET\"]\n"
    ));
    sb
}

fn env_path(mode: Mode) -> String {
    format!("{}/compose/.env", mode.install())
}

fn env_text(mode: Mode) -> String {
    std::fs::read_to_string(env_path(mode)).expect(".env")
}

/// The value compose would read for `key` (last live declaration).
fn env_value(mode: Mode, key: &str) -> Option<String> {
    env_text(mode).lines().rev().find_map(|l| {
        let l = l
            .trim_start()
            .strip_prefix("export ")
            .unwrap_or(l.trim_start());
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| {
            v.split(" #")
                .next()
                .unwrap_or_default()
                .trim()
                .trim_matches('"')
                .to_string()
        })
    })
}

fn run(sb: &Sandbox, plugin_name: &str, args: &[&str]) -> Output {
    sb.run(&plugin(plugin_name), &["--json", "--timeout", "15m"], args)
}

fn upgrade(sb: &Sandbox, args: &[&str]) -> Output {
    let mut all = vec!["--yes", "--ready-within", "20"];
    all.extend_from_slice(args);
    run(sb, "upgrade", &all)
}

fn error_of(out: &Output) -> String {
    result_json(out)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The version /health reports.
fn running_version(mode: Mode) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://{}/health", mode.api()),
        ])
        .output()
        .expect("curl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["version"].as_str().unwrap_or_default().to_string()
}

fn migrations(mode: Mode) -> String {
    sql(
        mode,
        "SELECT string_agg(id::text, ',' ORDER BY id) FROM _migrations",
    )
}

fn image_of(mode: Mode, service: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &container(mode, service),
    ])
}

fn journal_left(sb: &Sandbox) -> bool {
    std::fs::read_dir(sb.path("backups")).expect("ls").any(|e| {
        e.expect("entry")
            .file_name()
            .to_string_lossy()
            .ends_with(".journal.json")
    })
}

/// What must hold after an upgrade that changed nothing or undid itself.
struct Before {
    mode: Mode,
    fingerprint: String,
    env: String,
    migrations: String,
    databases: Vec<String>,
}

impl Before {
    fn now(mode: Mode) -> Self {
        Self {
            mode,
            fingerprint: fingerprint(mode),
            env: env_text(mode),
            migrations: migrations(mode),
            databases: databases(mode),
        }
    }

    fn check(&self, sb: &Sandbox, what: &str) {
        let mode = self.mode;
        assert_eq!(running_version(mode), "1.3.2", "{what}: 1.3.2 serves again");
        assert_eq!(health(mode), 200, "{what}: healthy");
        assert_eq!(fingerprint(mode), self.fingerprint, "{what}: data intact");
        assert_eq!(
            migrations(mode),
            self.migrations,
            "{what}: schema as before"
        );
        assert_eq!(env_text(mode), self.env, "{what}: .env byte for byte");
        assert_eq!(
            databases(mode),
            self.databases,
            "{what}: no database left over"
        );
        assert!(!journal_left(sb), "{what}: journal removed");
        assert!(
            !std::path::Path::new(&format!(
                "{}/compose/.env.opshost-pre-upgrade",
                mode.install()
            ))
            .exists(),
            "{what}: .env copy removed"
        );
    }
}

fn upgrade_and_roll_back(mode: Mode) {
    let sb = sandbox(mode);
    seed(mode, 6, 10);
    // Real-world .env: a removed variable in its export form with an
    // inline comment, another removed one, and no COMPOSE_FILE at all
    // (bundled) — the upgrade must neutralise / add them, nothing else.
    let original = env_text(mode);
    let compose_file = original
        .lines()
        .find(|l| l.starts_with("COMPOSE_FILE="))
        .expect("COMPOSE_FILE")
        .to_string();
    let mut edited = original.replace(&format!("{compose_file}\n"), "");
    edited.push_str("export AGLEDGER_LICENSE_MODE=offline   # legacy, removed in 0.15.0\nAGLEDGER_RELEASE_DATE=2025-01-01\n");
    std::fs::write(env_path(mode), &edited).expect("write .env");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env_path(mode), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let before = fingerprint(mode);

    let out = upgrade(&sb, &["1.3.3"]);
    assert_eq!(out.code, OK, "upgrade: {}", out.combined());
    let data = &result_json(&out)["data"];
    let pin = data["image_pin"].as_str().expect("pin").to_string();
    assert!(pin.starts_with(&format!("{REPO}@sha256:")), "{pin}");
    assert_eq!(running_version(mode), "1.3.3");
    assert_eq!(migrations(mode), "1,2,3", "the new migration applied");
    assert_eq!(fingerprint(mode), before, "data intact");
    assert_eq!(image_of(mode, "agledger-api"), pin);
    assert_eq!(image_of(mode, "agledger-worker"), pin);
    assert_eq!(
        env_value(mode, "AGLEDGER_VERSION").as_deref(),
        Some("1.3.3")
    );
    assert_eq!(
        env_value(mode, "AGLEDGER_IMAGE_PIN").as_deref(),
        Some(pin.as_str())
    );
    let env = env_text(mode);
    assert!(
        env.contains("# export AGLEDGER_LICENSE_MODE=offline   # legacy, removed in 0.15.0\n"),
        "{env}"
    );
    assert!(
        env.contains("# AGLEDGER_RELEASE_DATE=2025-01-01\n"),
        "{env}"
    );
    assert!(
        env.contains(&format!("{compose_file}\n")),
        "COMPOSE_FILE added back: {env}"
    );
    // Every other line as it was.
    let untouched = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| {
                ![
                    "AGLEDGER_VERSION=",
                    "AGLEDGER_IMAGE_PIN=",
                    "COMPOSE_FILE=",
                    "export AGLEDGER_LICENSE_MODE",
                    "AGLEDGER_RELEASE_DATE",
                    "# export AGLEDGER_LICENSE_MODE",
                    "# AGLEDGER_RELEASE_DATE",
                ]
                .iter()
                .any(|k| l.starts_with(k))
            })
            .map(str::to_string)
            .collect()
    };
    assert_eq!(untouched(&env), untouched(&edited));
    let mode_bits = std::fs::metadata(env_path(mode))
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode_bits, 0o600, ".env keeps its mode");
    let backups_dir = sb.path("backups");
    assert_eq!(
        std::fs::read_to_string(backups_dir.join(".pre-upgrade-version"))
            .expect("marker")
            .trim(),
        "1.3.2"
    );
    assert!(!journal_left(&sb));

    // Same version again: nothing to do, no backup.
    let count = std::fs::read_dir(&backups_dir).expect("ls").count();
    let out = upgrade(&sb, &["1.3.3"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(out.stdout.contains("nothing to do"), "{}", out.stdout);
    assert_eq!(
        std::fs::read_dir(&backups_dir).expect("ls").count(),
        count,
        "no backup"
    );
    // Older: refused, pointing at rollback.
    let out = upgrade(&sb, &["1.3.2"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(error_of(&out).contains("rollback"), "{}", error_of(&out));
    assert_eq!(running_version(mode), "1.3.3");

    // Rows written after the upgrade are what a rollback loses: it says so.
    sql(
        mode,
        "INSERT INTO mandates (id, title) VALUES ('mdt_after_upgrade', 'lost by the rollback')",
    );
    let out = run(&sb, "rollback", &["--yes", "--ready-within", "20"]);
    assert_eq!(out.code, OK, "rollback: {}", out.combined());
    assert!(
        out.stdout.contains("1 mandates"),
        "what is lost is said: {}",
        out.stdout
    );
    assert_eq!(running_version(mode), "1.3.2");
    assert_eq!(migrations(mode), "1,2", "the newer migration is gone");
    assert_eq!(fingerprint(mode), before, "the pre-upgrade data");
    assert_eq!(
        env_value(mode, "AGLEDGER_VERSION").as_deref(),
        Some("1.3.2")
    );
    let back_pin = env_value(mode, "AGLEDGER_IMAGE_PIN").expect("pinned");
    assert!(
        back_pin.starts_with(&format!("{REPO}@sha256:")) && back_pin != pin,
        "{back_pin}"
    );
    assert_eq!(image_of(mode, "agledger-api"), back_pin);
    assert_eq!(databases(mode), vec![mode.database().to_string()]);
    assert!(!journal_left(&sb));
    // A second rollback: the version before the upgrade already runs.
    let out = run(&sb, "rollback", &["--yes"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(out.stdout.contains("nothing to do"), "{}", out.stdout);
}

#[test]
fn upgrade_then_rollback_bundled_database() {
    let _d = deployment_lock();
    upgrade_and_roll_back(Mode::Bundled);
}

#[test]
fn upgrade_then_rollback_external_database() {
    let _d = deployment_lock();
    upgrade_and_roll_back(Mode::External);
}

#[test]
fn a_release_that_never_becomes_healthy_rolls_itself_back() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let before = Before::now(mode);
    let out = upgrade(&sb, &["1.3.4", "--ready-within", "8"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    let error = error_of(&out);
    assert!(
        error.contains("replace agledger-api"),
        "names the step: {error}"
    );
    assert!(
        error.contains("last lines agledger-api logged"),
        "shows the logs: {error}"
    );
    assert!(error.contains("Every change was undone"), "{error}");
    before.check(&sb, "never-healthy release");
}

#[test]
fn a_failing_migration_is_undone_with_the_pre_upgrade_database() {
    let _d = deployment_lock();
    let mode = Mode::External;
    let sb = sandbox(mode);
    let before = Before::now(mode);
    let out = upgrade(&sb, &["1.3.5"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    let error = error_of(&out);
    assert!(error.contains("run the migrations"), "{error}");
    assert!(
        error.contains("vault_backfill"),
        "the migration's output: {error}"
    );
    before.check(&sb, "failing migration");
}

#[test]
fn without_a_terminal_an_upgrade_needs_yes() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let before = Before::now(mode);
    let out = run(&sb, "upgrade", &["1.3.3"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(error_of(&out).contains("--yes"), "{}", error_of(&out));
    before.check(&sb, "no --yes");
}

fn sign(args: &[&str]) {
    let st = Command::new("tests/standin/images/sign.sh")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR").to_string() + "/..")
        .status()
        .expect("sign.sh");
    assert!(st.success(), "sign.sh {args:?}");
}

fn digest_ref(tag: &str) -> String {
    let out = Command::new("tests/standin/images/sign.sh")
        .args(["digest", &format!("{REPO}:{tag}")])
        .current_dir(env!("CARGO_MANIFEST_DIR").to_string() + "/..")
        .output()
        .expect("sign.sh digest");
    format!("{REPO}@{}", String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn unsigned_or_wrongly_signed_targets_are_refused_before_anything_changes() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let trust = trust_dir();
    let target = digest_ref("1.3.3");
    let before = Before::now(mode);
    let cases: [(&str, Vec<&str>, &str); 4] = [
        ("unsigned", vec!["unsign", &target], "signature"),
        ("tampered", vec!["tamper", &trust, &target], "does not verify"),
        (
            "wrong identity",
            vec!["keyless", &trust, &target, "--identity", "https://github.com/someone-else/agledger-api/.github/workflows/release.yml@refs/tags/v1.3.3"],
            "identity",
        ),
        (
            "wrong issuer",
            vec!["keyless", &trust, &target, "--issuer", "https://accounts.example.com"],
            "issuer",
        ),
    ];
    for (what, signing, expected) in cases {
        sign(&signing);
        let out = upgrade(&sb, &["1.3.3"]);
        assert_ne!(out.code, OK, "{what}: {}", out.combined());
        let error = error_of(&out);
        assert!(error.contains(expected), "{what}: {error}");
        assert!(error.contains("refused"), "{what}: {error}");
        assert_eq!(out.code, DENIED, "{what}: {}", out.combined());
        // Refused before anything: not even a backup was made.
        let backups: Vec<_> = std::fs::read_dir(sb.path("backups"))
            .expect("ls")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("backup-"))
            .collect();
        assert!(backups.is_empty(), "{what}: {backups:?}");
        assert_eq!(migrations(mode), before.migrations, "{what}");
        assert_eq!(env_text(mode), before.env, "{what}");
        assert_eq!(running_version(mode), "1.3.2", "{what}");
        assert!(!journal_left(&sb), "{what}");
    }
    // Signed properly again, as the release pipeline does.
    sign(&["release", &trust, REPO]);
    before.check(&sb, "refused signatures");
}

#[test]
fn two_operations_at_once_the_second_is_refused_naming_the_first() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let before = Before::now(mode);
    let child = spawn(&sb, "upgrade", &["--yes", "--ready-within", "8", "1.3.4"]);
    // Wait until it holds the lock (its journal appears).
    let start = std::time::Instant::now();
    while !journal_left(&sb) && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = sb.run(&plugin("backup"), &["--json"], &[]);
    assert_ne!(out.code, OK, "{}", out.combined());
    assert!(
        error_of(&out).contains("upgrade"),
        "names the holder: {}",
        error_of(&out)
    );
    let out = finished(child);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    before.check(&sb, "two at once");
}

fn kill_upgrade_at(mode: Mode, step: &str) {
    let sb = sandbox(mode);
    let before = Before::now(mode);
    run_and_kill(
        &sb,
        "upgrade",
        &["--yes", "--ready-within", "20", "1.3.3"],
        |line| line.contains("\"event\":\"step\"") && line.contains(step),
    );
    let out = upgrade(&sb, &["1.3.3"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    let error = error_of(&out);
    assert!(
        error.contains("did not finish") && error.contains("--recover"),
        "{error}"
    );
    let out = run(&sb, "upgrade", &["--recover"]);
    assert_eq!(
        out.code,
        OK,
        "recover after a kill at {step}: {}",
        out.combined()
    );
    before.check(&sb, &format!("killed at {step}, recovered"));
}

#[test]
fn killing_an_upgrade_while_it_migrates_is_recovered() {
    let _d = deployment_lock();
    kill_upgrade_at(Mode::Bundled, "running the migrations");
}

#[test]
fn killing_an_upgrade_while_it_replaces_the_api_is_recovered() {
    let _d = deployment_lock();
    kill_upgrade_at(Mode::External, "replacing agledger-api");
}

/// docker-compose in the install's compose directory, with `env` over `.env`.
fn compose(mode: Mode, args: &[&str], env: &[(&str, &str)]) {
    let out = Command::new("docker-compose")
        .args(["-p", &mode.project()])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(format!("{}/compose", mode.install()))
        .output()
        .expect("docker-compose");
    assert!(
        out.status.success(),
        "docker-compose {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The addresses of a service's containers on their network.
fn addresses(mode: Mode, service: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={}", mode.project()),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ])
    .lines()
    .map(|id| {
        docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            id,
        ])
    })
    .flat_map(|ips| {
        ips.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    })
    .collect()
}

fn answers(address: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(addr) = format!("{address}:3001").parse::<std::net::SocketAddr>() else {
        return false;
    };
    let Ok(mut s) =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_millis(500)));
    let _ = write!(
        s,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

#[test]
fn a_scaled_worker_is_replaced_one_container_at_a_time_and_always_answers() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    // Two workers (the second takes the next port of a range).
    compose(
        mode,
        &[
            "up",
            "-d",
            "--no-deps",
            "--no-recreate",
            "--scale",
            "agledger-worker=2",
            "agledger-worker",
        ],
        &[("WORKER_PORT", "24002-24003")],
    );
    let start = std::time::Instant::now();
    while addresses(mode, "agledger-worker")
        .iter()
        .filter(|a| answers(a))
        .count()
        < 2
    {
        assert!(
            start.elapsed().as_secs() < 60,
            "the second worker never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Every 50 ms, each worker container's own address, each probe on its
    // own thread; a sample passes when any container answered.
    let done = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::<(u64, bool)>::new()));
    let prober = {
        let (done, samples) = (done.clone(), samples.clone());
        std::thread::spawn(move || {
            let mut targets = addresses(mode, "agledger-worker");
            let mut n = 0u64;
            let mut threads = Vec::new();
            while !done.load(Ordering::SeqCst) {
                if n.is_multiple_of(4) {
                    targets = addresses(mode, "agledger-worker");
                }
                for t in targets.clone() {
                    let samples = samples.clone();
                    threads.push(std::thread::spawn(move || {
                        let ok = answers(&t);
                        samples.lock().expect("samples").push((n, ok));
                    }));
                }
                n += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            for t in threads {
                let _ = t.join();
            }
        })
    };
    let out = upgrade(&sb, &["1.3.3"]);
    done.store(true, Ordering::SeqCst);
    prober.join().expect("prober");
    assert_eq!(out.code, OK, "upgrade: {}", out.combined());
    let samples = samples.lock().expect("samples").clone();
    let total = samples.iter().map(|s| s.0).max().unwrap_or(0);
    let dark: Vec<u64> = (0..total)
        .filter(|n| !samples.iter().any(|(m, ok)| m == n && *ok))
        .collect();
    assert!(total > 20, "the prober ran ({total} samples)");
    assert!(
        dark.is_empty(),
        "samples where no worker answered: {dark:?} of {total}"
    );
    let images: Vec<String> = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={}", mode.project()),
        "--filter",
        "label=com.docker.compose.service=agledger-worker",
    ])
    .lines()
    .map(|id| docker(&["inspect", "-f", "{{.Config.Image}}", id]))
    .collect();
    let pin = result_json(&out)["data"]["image_pin"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(images, vec![pin.clone(), pin], "both workers replaced");

    let out = run(&sb, "rollback", &["--yes", "--ready-within", "20"]);
    assert_eq!(out.code, OK, "rollback: {}", out.combined());
    assert_eq!(running_version(mode), "1.3.2");
    // Back to one worker, as the other tests expect.
    let second = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={}", mode.project()),
        "--filter",
        "label=com.docker.compose.container-number=2",
        "--filter",
        "label=com.docker.compose.service=agledger-worker",
    ]);
    for id in second.lines() {
        docker(&["rm", "-f", id]);
    }
}

#[test]
fn no_auto_rollback_leaves_the_failure_for_inspection_and_recover_undoes_it() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let before = Before::now(mode);
    let out = upgrade(&sb, &["1.3.4", "--ready-within", "8", "--no-auto-rollback"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    let error = error_of(&out);
    assert!(error.contains("nothing was undone"), "{error}");
    assert!(
        error.contains("opshost run upgrade.wasm -- --recover"),
        "the command: {error}"
    );
    // Left as it failed: the broken release in place, the journal kept.
    assert_eq!(
        env_value(mode, "AGLEDGER_VERSION").as_deref(),
        Some("1.3.4")
    );
    assert!(journal_left(&sb));
    assert_ne!(health(mode), 200, "the broken release answers 503");
    // Any other run is refused until it is recovered.
    let out = upgrade(&sb, &["1.3.3"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(error_of(&out).contains("--recover"), "{}", error_of(&out));
    let out = run(&sb, "upgrade", &["--recover"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    before.check(&sb, "--no-auto-rollback then --recover");
}

#[test]
fn killing_an_upgrade_while_it_backs_up_is_recovered() {
    let _d = deployment_lock();
    kill_upgrade_at(Mode::Bundled, "dumping the database");
}

#[test]
fn killing_an_upgrade_while_it_stops_the_worker_is_recovered() {
    let _d = deployment_lock();
    kill_upgrade_at(Mode::External, "stopping agledger-worker");
}

#[test]
fn killing_an_upgrade_while_it_replaces_the_worker_is_recovered() {
    let _d = deployment_lock();
    kill_upgrade_at(Mode::Bundled, "replacing agledger-worker");
}

#[test]
fn killing_an_upgrade_while_it_checks_the_result_is_recovered() {
    let _d = deployment_lock();
    kill_upgrade_at(Mode::Bundled, "checking the upgraded deployment");
}

#[test]
fn killing_a_rollback_while_it_swaps_is_recovered_then_rolls_back() {
    let _d = deployment_lock();
    let mode = Mode::External;
    let sb = sandbox(mode);
    let before = Before::now(mode);
    let out = upgrade(&sb, &["1.3.3"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    let upgraded = fingerprint(mode);
    run_and_kill(
        &sb,
        "rollback",
        &["--yes", "--ready-within", "20"],
        |line| {
            line.contains("\"event\":\"step\"")
                && line.contains("stopping agledger-worker and agledger-api")
        },
    );
    let out = run(&sb, "rollback", &["--yes"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(error_of(&out).contains("--recover"), "{}", error_of(&out));
    let out = run(&sb, "rollback", &["--recover"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert_eq!(
        running_version(mode),
        "1.3.3",
        "the upgraded deployment is back"
    );
    assert_eq!(fingerprint(mode), upgraded);
    assert_eq!(databases(mode), vec![mode.database().to_string()]);
    let out = run(&sb, "rollback", &["--yes", "--ready-within", "20"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert_eq!(running_version(mode), "1.3.2");
    assert_eq!(fingerprint(mode), before.fingerprint);
    assert_eq!(migrations(mode), before.migrations);
}

#[test]
fn an_upgrade_killed_while_it_replaces_the_api_can_resume_instead() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let before = Before::now(mode);
    run_and_kill(
        &sb,
        "upgrade",
        &["--yes", "--ready-within", "20", "1.3.3"],
        |line| line.contains("\"event\":\"step\"") && line.contains("replacing agledger-api"),
    );
    let out = upgrade(&sb, &["1.3.3"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(
        error_of(&out).contains("--resume"),
        "offered: {}",
        error_of(&out)
    );
    let out = run(&sb, "upgrade", &["--resume"]);
    assert_eq!(out.code, OK, "resume: {}", out.combined());
    assert_eq!(running_version(mode), "1.3.3");
    assert_eq!(migrations(mode), "1,2,3");
    assert_eq!(fingerprint(mode), before.fingerprint, "data intact");
    assert!(!journal_left(&sb));
    let pin = env_value(mode, "AGLEDGER_IMAGE_PIN").expect("pin");
    assert_eq!(image_of(mode, "agledger-api"), pin);
    assert_eq!(image_of(mode, "agledger-worker"), pin);
    // And the resumed upgrade rolls back like any other.
    let out = run(&sb, "rollback", &["--yes", "--ready-within", "20"]);
    assert_eq!(out.code, OK, "rollback: {}", out.combined());
    assert_eq!(running_version(mode), "1.3.2");
    assert_eq!(fingerprint(mode), before.fingerprint);
    assert_eq!(migrations(mode), before.migrations);
}
