//! rotate against the AGLedger stand-in (real containers, real database):
//! API_KEY_SECRET with the dual window proven (old and new secret both
//! authenticate between the steps, only the new one after), kill -9 at
//! every step then --recover or --resume, `.env` kept byte for byte,
//! secrets never in output or the audit log, refusals that change
//! nothing; VAULT_SIGNING_KEY with old entries verifying and new ones
//! signed by the new key.
//!
//! Every test holds the deployment lock and leaves the deployment as it
//! found it: the original `.env` bytes, services recreated from it, every
//! key hash recomputed with the original secret, rows it added removed.

mod common;

use std::process::Command;

use common::standin::*;
use common::*;
use hmac::{Hmac, Mac};

fn platform_key_file(mode: Mode) -> String {
    format!("{}/standin-platform-key", mode.install())
}

fn platform_key(mode: Mode) -> String {
    std::fs::read_to_string(platform_key_file(mode))
        .expect("platform key")
        .trim()
        .to_string()
}

/// The config a rotation needs; `with_key`: the operator's platform key
/// as `[http.api] bearer_token_file`.
fn sandbox(mode: Mode, with_key: bool) -> Sandbox {
    let sb = Sandbox::new();
    let install = mode.install();
    let db = match mode {
        Mode::Bundled => {
            format!("env_file = \"{install}/compose/.env\"\ncontainer = \"agledger\"\n")
        }
        Mode::External => format!("env_file = \"{install}/compose/.env\"\n"),
    };
    let key = if with_key {
        format!("bearer_token_file = \"{}\"\n", platform_key_file(mode))
    } else {
        String::new()
    };
    std::fs::write(
        sb.path("config.toml"),
        format!(
            "[dir.backups]\npath = \"backups\"\n[dir.compose]\npath = \"{install}/compose\"\n\
             [containers.agledger]\nproject = \"{project}\"\n[db.agledger]\n{db}\
             [http.api]\nurl = \"http://{api}\"\n{key}",
            project = mode.project(),
            api = mode.api()
        ),
    )
    .expect("config");
    std::fs::create_dir_all(sb.path("backups")).expect("backups");
    sb.write_policy(
        "[[plugin]]\nvendor = \"opshost\"\nname = \"rotate\"\nallow = [\"fs=backups:rw\", \"fs=compose:rw\", \
         \"container=agledger:logs,recreate,run\", \"http=api/health:GET\", \"http=api/v1/auth/me:GET\", \
         \"db=agledger:read\"]\n",
    );
    sb
}

fn rotate(sb: &Sandbox, args: &[&str]) -> Output {
    sb.run(&plugin("rotate"), &["--json", "--timeout", "10m"], args)
}

fn error_of(out: &Output) -> String {
    result_json(out)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn env_path(mode: Mode) -> String {
    format!("{}/compose/.env", mode.install())
}

fn env_text(mode: Mode) -> String {
    std::fs::read_to_string(env_path(mode)).expect(".env")
}

fn env_mode(mode: Mode) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(env_path(mode))
        .expect("stat .env")
        .permissions()
        .mode()
        & 0o7777
}

/// The value of the live `KEY=` line (`export` allowed), without an inline
/// comment: the secrets here are bare hex or base64.
fn env_value(text: &str, key: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        let l = l.trim_start();
        let l = l.strip_prefix("export ").unwrap_or(l);
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.split(" #").next().unwrap_or_default().trim().to_string())
    })
}

fn journal_left(sb: &Sandbox) -> bool {
    std::fs::read_dir(sb.path("backups")).expect("ls").any(|e| {
        e.expect("entry")
            .file_name()
            .to_string_lossy()
            .ends_with(".journal.json")
    })
}

fn journal_text(sb: &Sandbox) -> String {
    std::fs::read_dir(sb.path("backups"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".journal.json"))
        .map(|p| std::fs::read_to_string(p).expect("journal"))
        .collect()
}

/// GET /v1/auth/me with `key`: the status.
fn auth_status(mode: Mode, key: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "-H",
            &format!("Authorization: Bearer {key}"),
            &format!("http://{}/v1/auth/me", mode.api()),
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

/// The stored hash of an API key under `secret` (hex), as the product
/// computes it.
fn hmac_hex(secret_hex: &str, key: &str) -> String {
    let secret = hex::decode(secret_hex).expect("hex secret");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret).expect("hmac");
    mac.update(key.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A key inserted by hand, hashed with `secret` and without the stand-in's
/// plaintext column: rehash-api-keys cannot recompute it, so it shows
/// which secret the services accept.
fn insert_key(mode: Mode, id: &str, key: &str, secret_hex: &str) {
    sql(
        mode,
        &format!(
            "INSERT INTO api_keys (id, name, role, key_hash) VALUES ('{id}', '{id}', 'viewer', '{}')",
            hmac_hex(secret_hex, key)
        ),
    );
}

fn list(mode: Mode, query: &str) -> String {
    sql(mode, query)
}

/// What a test must leave as it found it.
struct Before {
    mode: Mode,
    env: String,
    env_mode: u32,
    hashes: String,
    signing_keys: String,
    fingerprint: String,
    version: String,
    ids: [(&'static str, &'static str, String); 4],
    restored: bool,
}

const HASHES: &str = "SELECT string_agg(id || ':' || key_hash, ',' ORDER BY id) FROM api_keys";
const SIGNING_KEYS: &str =
    "SELECT string_agg(key_id || ':' || status, ',' ORDER BY key_id) FROM vault_signing_keys";

impl Before {
    fn now(mode: Mode) -> Self {
        let ids = |table: &str, column: &str| {
            list(
                mode,
                &format!("SELECT coalesce(string_agg(quote_literal({column}), ','), '''''') FROM {table}"),
            )
        };
        Self {
            mode,
            env: env_text(mode),
            env_mode: env_mode(mode),
            hashes: list(mode, HASHES),
            signing_keys: list(mode, SIGNING_KEYS),
            fingerprint: fingerprint(mode),
            version: running_version(mode),
            ids: [
                ("vault_entries", "mandate_id", ids("mandates", "id")),
                ("mandates", "id", ids("mandates", "id")),
                ("api_keys", "id", ids("api_keys", "id")),
                (
                    "vault_signing_keys",
                    "key_id",
                    ids("vault_signing_keys", "key_id"),
                ),
            ],
            restored: false,
        }
    }

    /// Back as found: `.env` bytes, services recreated from them (compose
    /// reads `.env`), every hash recomputed with the original secret, the
    /// rows a test added deleted. Best effort: also runs from `Drop`.
    fn restore(&mut self) {
        self.restored = true;
        let mode = self.mode;
        let _ = std::fs::write(env_path(mode), &self.env);
        let _ = Command::new("docker-compose")
            .args(["-p", &mode.project()])
            .args([
                "up",
                "-d",
                "--force-recreate",
                "--no-deps",
                "agledger-api",
                "agledger-worker",
            ])
            .current_dir(format!("{}/compose", mode.install()))
            .output();
        wait_ready(mode);
        let _ = Command::new("docker")
            .args([
                "exec",
                &container(mode, "agledger-api"),
                "/agledger",
                "rehash-api-keys",
            ])
            .output();
        for (table, column, ids) in &self.ids {
            let _ = std::panic::catch_unwind(|| {
                sql(
                    mode,
                    &format!("DELETE FROM {table} WHERE {column} NOT IN ({ids})"),
                )
            });
        }
    }

    fn check(&self, sb: &Sandbox, what: &str) {
        let mode = self.mode;
        assert_eq!(env_text(mode), self.env, "{what}: .env byte for byte");
        assert_eq!(env_mode(mode), self.env_mode, "{what}: .env mode");
        assert_eq!(health(mode), 200, "{what}: healthy");
        assert_eq!(
            running_version(mode),
            self.version,
            "{what}: the same release runs"
        );
        assert_eq!(
            auth_status(mode, &platform_key(mode)),
            200,
            "{what}: the platform key works"
        );
        assert_eq!(
            list(mode, HASHES),
            self.hashes,
            "{what}: key hashes as before"
        );
        assert_eq!(
            list(mode, SIGNING_KEYS),
            self.signing_keys,
            "{what}: signing keys as before"
        );
        assert_eq!(
            fingerprint(mode),
            self.fingerprint,
            "{what}: data as before"
        );
        assert!(!journal_left(sb), "{what}: no journal left");
        assert!(
            !std::path::Path::new(&format!(
                "{}/compose/.env.opshost-pre-rotate",
                mode.install()
            ))
            .exists(),
            "{what}: no copy of .env left"
        );
    }

    /// Restore, then prove it.
    fn restore_and_check(&mut self, sb: &Sandbox, what: &str) {
        self.restore();
        self.check(sb, what);
    }
}

impl Drop for Before {
    fn drop(&mut self) {
        if !self.restored {
            self.restore();
        }
    }
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

fn wait_ready(mode: Mode) {
    let start = std::time::Instant::now();
    while start.elapsed().as_secs() < 60 {
        if health(mode) == 200 && auth_status(mode, &platform_key(mode)) == 200 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The values docker-compose (v1, the one here) resolves for `key` in the
/// services' environments: `.env` as compose itself reads it.
fn compose_values(mode: Mode, key: &str) -> Vec<String> {
    let out = Command::new("docker-compose")
        .args(["-p", &mode.project(), "config"])
        .current_dir(format!("{}/compose", mode.install()))
        .output()
        .expect("docker-compose config");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
        .collect()
}

/// Neither output nor audit log carries a secret of `texts`.
fn assert_no_secret(sb: &Sandbox, outputs: &[&Output], secrets: &[&str]) {
    let audit = sb.audit_text();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!audit.contains(secret), "a secret is in the audit log");
        for out in outputs {
            assert!(
                !out.combined().contains(secret),
                "a secret is in the output"
            );
        }
    }
}

#[test]
fn api_key_secret_rotation_replaces_only_the_secret_and_proves_itself() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode, true);
    let mut before = Before::now(mode);
    let old = env_value(&before.env, "API_KEY_SECRET").expect("secret");
    insert_key(mode, "key_handmade_old", "agl_handmade_old", &old);
    assert_eq!(
        auth_status(mode, "agl_handmade_old"),
        200,
        "a key under the old secret works before"
    );

    let out = rotate(&sb, &["api-key-secret", "--yes", "--ready-within", "30"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    eprintln!(
        "figure: API_KEY_SECRET rotation took {} s",
        result_json(&out)["data"]["seconds"]
    );
    let after = env_text(mode);
    let new = env_value(&after, "API_KEY_SECRET").expect("new secret");
    assert_eq!(new.len(), 64, "64 hex characters");
    assert!(new.bytes().all(|b| b.is_ascii_hexdigit()), "hex");
    assert_ne!(new, old);
    // Only the secret's value changed: same line form, same comment, no
    // API_KEY_SECRET_PREVIOUS line left (the commented template stays).
    assert_eq!(
        after,
        before.env.replace(&old, &new),
        ".env: every other byte kept"
    );
    assert!(!after.contains("\nAPI_KEY_SECRET_PREVIOUS="));
    let compose = compose_values(mode, "API_KEY_SECRET");
    assert!(
        !compose.is_empty() && compose.iter().all(|v| *v == new),
        "docker-compose reads the new secret"
    );
    assert!(compose_values(mode, "API_KEY_SECRET_PREVIOUS").is_empty());
    assert_eq!(env_mode(mode), before.env_mode, ".env keeps its mode");
    assert!(!journal_left(&sb));
    // Stored keys were rehashed: the platform key works; a key only the old
    // secret knows (never rehashed) no longer does.
    assert_eq!(auth_status(mode, &platform_key(mode)), 200);
    assert_eq!(
        auth_status(mode, "agl_handmade_old"),
        401,
        "the old secret is gone"
    );
    let hashes = list(mode, HASHES);
    assert_ne!(hashes, before.hashes, "hashes were recomputed");
    // Secrets never in output or audit; the host's random source audited
    // by size only.
    assert_no_secret(&sb, &[&out], &[&old, &new]);
    let random = sb.audited("crypto", "ok");
    assert!(
        random
            .iter()
            .any(|e| e["verb"] == "random-bytes" && e["detail"] == "32 bytes"),
        "{random:?}"
    );
    before.restore_and_check(&sb, "after the rotation, restored");
}

/// Killed as the rehash starts: the services hold both secrets, so a key
/// hashed with either authenticates. `--resume` finishes; then only keys
/// hashed with the new secret do.
#[test]
fn between_the_steps_both_secrets_authenticate_and_after_the_finish_only_the_new() {
    let _d = deployment_lock();
    let mode = Mode::External;
    let sb = sandbox(mode, true);
    let mut before = Before::now(mode);
    let old = env_value(&before.env, "API_KEY_SECRET").expect("secret");
    run_and_kill(&sb, "rotate", &["api-key-secret", "--yes"], |line| {
        line.contains("\"event\":\"step\"") && line.contains("rehash:")
    });
    let mid = env_text(mode);
    let new = env_value(&mid, "API_KEY_SECRET").expect("new secret");
    assert_ne!(new, old);
    assert_eq!(
        env_value(&mid, "API_KEY_SECRET_PREVIOUS").as_deref(),
        Some(old.as_str())
    );
    insert_key(mode, "key_window_old", "agl_window_old", &old);
    insert_key(mode, "key_window_new", "agl_window_new", &new);
    assert_eq!(
        auth_status(mode, "agl_window_old"),
        200,
        "the old secret authenticates in the window"
    );
    assert_eq!(
        auth_status(mode, "agl_window_new"),
        200,
        "the new secret authenticates in the window"
    );
    assert_eq!(auth_status(mode, &platform_key(mode)), 200);

    let refused = rotate(&sb, &["api-key-secret", "--yes"]);
    assert_eq!(refused.code, PLUGIN_FAILED, "{}", refused.combined());
    let error = error_of(&refused);
    assert!(
        error.contains("did not finish") && error.contains("--resume"),
        "{error}"
    );

    let plan = rotate(&sb, &["api-key-secret", "--plan"]);
    assert_eq!(plan.code, ATTENTION, "{}", plan.combined());
    assert!(
        plan.stdout.contains("did not finish"),
        "{}",
        plan.combined()
    );

    let out = rotate(&sb, &["api-key-secret", "--resume"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    let after = env_text(mode);
    assert_eq!(
        env_value(&after, "API_KEY_SECRET").as_deref(),
        Some(new.as_str()),
        "resume keeps the new secret"
    );
    assert_eq!(after, before.env.replace(&old, &new));
    assert_eq!(
        auth_status(mode, "agl_window_old"),
        401,
        "after the finish the old secret is refused"
    );
    assert_eq!(
        auth_status(mode, "agl_window_new"),
        200,
        "the new secret authenticates"
    );
    assert_eq!(
        auth_status(mode, &platform_key(mode)),
        200,
        "rehashed keys authenticate"
    );
    assert_no_secret(&sb, &[&refused, &out], &[&old, &new]);
    before.restore_and_check(&sb, "after the resumed rotation, restored");
}

/// kill -9 as `step` starts, a plain run refuses, `--recover` undoes (or,
/// past the point of no return, completes).
fn kill_then_recover(mode: Mode, step: &str) {
    let name = format!("\"name\":\"{step}");
    kill_then_recover_at(mode, step, &["\"event\":\"step\"", &name])
}

/// As above, killed when a line of the run's `--json` output holds every
/// text of `when`.
fn kill_then_recover_at(mode: Mode, step: &str, when: &[&str]) {
    let sb = sandbox(mode, true);
    let mut before = Before::now(mode);
    let old = env_value(&before.env, "API_KEY_SECRET").expect("secret");
    insert_key(mode, "key_kill_old", "agl_kill_old", &old);
    let with_key = list(mode, HASHES);
    run_and_kill(&sb, "rotate", &["api-key-secret", "--yes"], |line| {
        when.iter().all(|w| line.contains(w))
    });
    assert!(journal_left(&sb), "killed at {step}: the journal is there");
    // The journal says which step ran, never a secret.
    let journal = journal_text(&sb);
    let mid = env_text(mode);
    for secret in [Some(old.clone()), env_value(&mid, "API_KEY_SECRET")]
        .into_iter()
        .flatten()
    {
        assert!(
            !journal.contains(&secret),
            "{step}: a secret is in the journal"
        );
    }
    let refused = rotate(&sb, &["api-key-secret", "--yes"]);
    assert_eq!(refused.code, PLUGIN_FAILED, "{}", refused.combined());
    assert!(
        error_of(&refused).contains("--recover"),
        "{}",
        error_of(&refused)
    );

    let out = rotate(&sb, &["api-key-secret", "--recover"]);
    assert_eq!(
        out.code,
        OK,
        "recover after a kill at {step}: {}",
        out.combined()
    );
    assert!(!journal_left(&sb), "{step}: journal removed");
    let now = env_text(mode);
    if step == "finish" {
        // Past the point of no return: recovering completes the rotation.
        let new = env_value(&now, "API_KEY_SECRET").expect("secret");
        assert_ne!(new, old, "{step}: rotated");
        assert_eq!(
            now,
            before.env.replace(&old, &new),
            "{step}: only the secret changed"
        );
        assert_eq!(
            auth_status(mode, "agl_kill_old"),
            401,
            "{step}: old secret gone"
        );
        assert_no_secret(&sb, &[&refused, &out], &[&old, &new]);
    } else {
        assert_eq!(now, before.env, "{step}: .env byte for byte as before");
        assert_eq!(
            auth_status(mode, "agl_kill_old"),
            200,
            "{step}: the old secret authenticates again"
        );
        assert_eq!(
            list(mode, HASHES),
            with_key,
            "{step}: every hash is the old secret's again"
        );
        // The secret that was made and thrown away must not show either.
        assert_no_secret(&sb, &[&refused, &out], &[&old]);
    }
    assert_eq!(
        auth_status(mode, &platform_key(mode)),
        200,
        "{step}: the platform key works"
    );
    before.restore_and_check(&sb, &format!("killed at {step}, recovered, restored"));
}

#[test]
fn killed_while_it_creates_the_secret_recover_undoes() {
    let _d = deployment_lock();
    // Killed once the new secret is in .env (the step may not be marked
    // done yet): the undo must put the original bytes back.
    kill_then_recover_at(
        Mode::Bundled,
        "create",
        &["compose/.env now holds the new secret and the previous one"],
    );
}

#[test]
fn killed_while_it_sets_both_secrets_recover_undoes() {
    let _d = deployment_lock();
    kill_then_recover(Mode::Bundled, "set");
}

#[test]
fn killed_while_it_rehashes_recover_undoes() {
    let _d = deployment_lock();
    kill_then_recover(Mode::External, "rehash");
}

#[test]
fn killed_while_it_tests_recover_undoes() {
    let _d = deployment_lock();
    kill_then_recover(Mode::Bundled, "test");
}

#[test]
fn killed_while_it_finishes_recover_completes() {
    let _d = deployment_lock();
    kill_then_recover(Mode::Bundled, "finish");
}

/// Killed while it recreates a service with both secrets: `--resume`
/// applies that step again and finishes.
#[test]
fn killed_while_it_recreates_resume_finishes() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode, true);
    let mut before = Before::now(mode);
    let old = env_value(&before.env, "API_KEY_SECRET").expect("secret");
    run_and_kill(&sb, "rotate", &["api-key-secret", "--yes"], |line| {
        line.contains("\"event\":\"step\"") && line.contains("recreating agledger-worker")
    });
    let out = rotate(&sb, &["api-key-secret", "--resume"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    let new = env_value(&env_text(mode), "API_KEY_SECRET").expect("secret");
    assert_ne!(new, old);
    assert_eq!(env_text(mode), before.env.replace(&old, &new));
    assert_eq!(auth_status(mode, &platform_key(mode)), 200);
    before.restore_and_check(&sb, "resumed, restored");
}

#[test]
fn without_an_operator_key_the_rotation_refuses_and_says_how_to_configure_one() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode, false);
    let mut before = Before::now(mode);
    let out = rotate(&sb, &["api-key-secret", "--yes"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    let error = error_of(&out);
    assert!(
        error.contains("bearer_token_file") && error.contains("Nothing was changed"),
        "{error}"
    );
    before.check(&sb, "refused without a key");
    before.restored = true;
}

#[test]
fn plan_shows_the_steps_and_changes_nothing_and_a_rotation_needs_yes() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode, true);
    let mut before = Before::now(mode);
    for subject in ["api-key-secret", "vault-signing-key"] {
        let out = rotate(&sb, &[subject, "--plan"]);
        assert_eq!(out.code, OK, "{}", out.combined());
        let result = result_json(&out);
        let steps = result["data"]["plan"].as_array().expect("plan steps").len();
        assert!(steps >= 4, "{result}");
        assert_eq!(result["data"]["ready"], true, "{result}");
        // No terminal, no --yes: refused before anything changes.
        let out = rotate(&sb, &[subject]);
        assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
        assert!(error_of(&out).contains("--yes"), "{}", error_of(&out));
    }
    let out = rotate(&sb, &["password"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(
        error_of(&out).contains("api-key-secret"),
        "{}",
        error_of(&out)
    );
    before.check(&sb, "plan and refusals");
    before.restored = true;
}

/// The active key row, as the server registered it.
fn active_key(mode: Mode) -> String {
    list(
        mode,
        "SELECT string_agg(key_id, ',') FROM vault_signing_keys WHERE status = 'active'",
    )
}

fn vault_scan_broken(mode: Mode) -> serde_json::Value {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "30",
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {}", platform_key(mode)),
            &format!("http://{}/v1/admin/vault/scan", mode.api()),
        ])
        .output()
        .expect("curl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("scan JSON");
    v["broken"].clone()
}

#[test]
fn vault_signing_key_rotation_signs_new_entries_with_the_new_key_and_old_ones_verify() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode, true);
    let mut before = Before::now(mode);
    seed(mode, 2, 4);
    let old_key = env_value(&env_text(mode), "VAULT_SIGNING_KEY").expect("key");
    let old_id = active_key(mode);
    // The seeded entries (and every earlier one) are signed with the old key.
    let with_env = env_text(mode);

    let out = rotate(&sb, &["vault-signing-key", "--yes", "--ready-within", "30"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    let data = &result_json(&out)["data"];
    eprintln!(
        "figure: VAULT_SIGNING_KEY rotation took {} s",
        data["seconds"]
    );
    let new_id = data["key_id"].as_str().expect("key id").to_string();
    assert_eq!(data["previous_key_id"].as_str(), Some(old_id.as_str()));
    assert_ne!(new_id, old_id);
    assert_eq!(
        active_key(mode),
        new_id,
        "the server registered the new key"
    );
    assert_eq!(
        list(
            mode,
            &format!("SELECT status FROM vault_signing_keys WHERE key_id = '{old_id}'")
        ),
        "retired",
        "the old key stays registered, retired"
    );
    // .env: the key replaced, the old one appended as the previous key,
    // every other byte (the commented `#VAULT_SIGNING_KEY_PREVIOUS=`
    // template too) as it was.
    let after = env_text(mode);
    let new_key = env_value(&after, "VAULT_SIGNING_KEY").expect("new key");
    assert_ne!(new_key, old_key);
    assert_eq!(
        after,
        format!(
            "{}VAULT_SIGNING_KEY_PREVIOUS={old_key}\n",
            with_env.replace(
                &format!("VAULT_SIGNING_KEY={old_key}"),
                &format!("VAULT_SIGNING_KEY={new_key}")
            )
        )
    );
    assert_eq!(env_mode(mode), before.env_mode);
    assert!(!journal_left(&sb));
    for (key, value) in [
        ("VAULT_SIGNING_KEY", &new_key),
        ("VAULT_SIGNING_KEY_PREVIOUS", &old_key),
    ] {
        let compose = compose_values(mode, key);
        assert!(
            !compose.is_empty() && compose.iter().all(|v| v == value),
            "docker-compose reads {key} as written"
        );
    }
    // New entries carry the new key; every entry, old and new, verifies.
    assert_eq!(
        list(
            mode,
            &format!("SELECT count(*) FROM vault_entries WHERE key_id = '{new_id}'")
        ),
        "0"
    );
    seed(mode, 1, 3);
    let new_entries = list(
        mode,
        &format!("SELECT count(*) FROM vault_entries WHERE key_id = '{new_id}'"),
    );
    assert_eq!(
        new_entries, "3",
        "the new entries are signed with the new key"
    );
    assert_eq!(
        vault_scan_broken(mode),
        serde_json::json!([]),
        "every chain verifies"
    );
    assert_no_secret(&sb, &[&out], &[&old_key, &new_key]);
    assert!(
        sb.audited("crypto", "ok")
            .iter()
            .any(|e| e["verb"] == "generate-ed25519"),
        "the key came from the host"
    );
    before.restore_and_check(&sb, "after the key rotation, restored");
}

#[test]
fn vault_signing_key_killed_while_it_sets_recover_puts_the_old_key_back() {
    let _d = deployment_lock();
    let mode = Mode::External;
    let sb = sandbox(mode, true);
    let mut before = Before::now(mode);
    let old_id = active_key(mode);
    run_and_kill(&sb, "rotate", &["vault-signing-key", "--yes"], |line| {
        line.contains("\"event\":\"step\"") && line.contains("recreating agledger-worker")
    });
    assert!(
        std::path::Path::new(&format!(
            "{}/compose/.env.opshost-pre-rotate",
            mode.install()
        ))
        .exists(),
        "the original .env is kept while the rotation is open"
    );
    let out = rotate(&sb, &["vault-signing-key", "--recover"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert_eq!(env_text(mode), before.env, ".env byte for byte");
    assert_eq!(
        active_key(mode),
        old_id,
        "the old key is the active one again"
    );
    assert_eq!(vault_scan_broken(mode), serde_json::json!([]));
    before.restore_and_check(&sb, "vault key: killed, recovered, restored");
}

/// A second rotation replaces a previous key that is already there: its
/// undo must put that older key back too (from the kept copy of `.env`).
#[test]
fn a_second_vault_key_rotation_killed_and_recovered_puts_back_both_keys() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode, true);
    let mut before = Before::now(mode);
    let out = rotate(&sb, &["vault-signing-key", "--yes"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    let first = env_text(mode);
    let first_id = active_key(mode);
    assert!(env_value(&first, "VAULT_SIGNING_KEY_PREVIOUS").is_some());
    run_and_kill(&sb, "rotate", &["vault-signing-key", "--yes"], |line| {
        line.contains("\"event\":\"step\"") && line.contains("test:")
    });
    let journal = journal_text(&sb);
    let mid = env_text(mode);
    for key in ["VAULT_SIGNING_KEY", "VAULT_SIGNING_KEY_PREVIOUS"] {
        let value = env_value(&mid, key).expect("key");
        assert!(!journal.contains(&value), "a key is in the journal");
    }
    assert_ne!(mid, first, "the second rotation had changed .env");
    let out = rotate(&sb, &["vault-signing-key", "--recover"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert_eq!(
        env_text(mode),
        first,
        ".env as after the first rotation, both keys"
    );
    assert_eq!(
        active_key(mode),
        first_id,
        "the first rotation's key is active again"
    );
    assert_eq!(vault_scan_broken(mode), serde_json::json!([]));
    before.restore_and_check(&sb, "two key rotations, restored");
}

/// A rehash that fails (a trigger refuses every change of a key hash) is
/// undone on the spot: `.env`, services and hashes as they were.
#[test]
fn a_failing_rehash_undoes_the_rotation() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode, true);
    let mut before = Before::now(mode);
    sql(
        mode,
        "CREATE FUNCTION opshost_test_refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$BEGIN RAISE EXCEPTION 'key hashes are frozen by the test'; END$$; \
         CREATE TRIGGER opshost_test_refuse BEFORE UPDATE OF key_hash ON api_keys \
         FOR EACH ROW EXECUTE FUNCTION opshost_test_refuse();",
    );
    let out = rotate(&sb, &["api-key-secret", "--yes"]);
    sql(
        mode,
        "DROP TRIGGER opshost_test_refuse ON api_keys; DROP FUNCTION opshost_test_refuse();",
    );
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    let error = error_of(&out);
    assert!(
        error.contains("\"rehash\"") && error.contains("Every change was undone"),
        "{error}"
    );
    before.check(&sb, "a failed rehash, undone");
    before.restored = true;
}
