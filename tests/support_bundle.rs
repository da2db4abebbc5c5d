//! support-bundle against the AGLedger stand-in (real containers, real
//! PostgreSQL, the product's admin API with the operator's platform key):
//! secrets of every kind are seeded into the deployment's `.env`, its
//! container logs, its database schema and operator-named files; the
//! tarball is unpacked and no secret, nor any 16-character piece of one,
//! may survive in any file (or name) in it, while listed non-secrets stay.
//!
//! Every test leaves the deployment as it found it (same `.env` bytes,
//! same data, same schema, healthy).

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::standin::*;
use common::*;

const GRANTS: &str = "\"fs=compose:ro\", \"fs=support:ro\", \"fs=bundles:rw\", \
    \"container=agledger:inspect,logs\", \"db=agledger:read\", \"http=api/health:GET\", \
    \"http=api/conformance:GET\", \"http=api/status:GET\", \"http=api/v1/admin/support-bundle:GET\"";

fn sandbox(mode: Mode) -> Sandbox {
    let sb = Sandbox::new();
    let install = mode.install();
    let db = match mode {
        Mode::Bundled => {
            format!("env_file = \"{install}/compose/.env\"\ncontainer = \"agledger\"\n")
        }
        Mode::External => format!("env_file = \"{install}/compose/.env\"\n"),
    };
    std::fs::write(
        sb.path("config.toml"),
        format!(
            "[dir.bundles]\npath = \"bundles\"\n[dir.support]\npath = \"support\"\n\
             [dir.compose]\npath = \"{install}/compose\"\n\
             [containers.agledger]\nproject = \"{project}\"\n[db.agledger]\n{db}\
             [http.api]\nurl = \"http://{api}\"\nbearer_token_file = \"{install}/standin-platform-key\"\n",
            project = mode.project(),
            api = mode.api()
        ),
    )
    .expect("config");
    std::fs::create_dir_all(sb.path("bundles")).expect("bundles");
    std::fs::create_dir_all(sb.path("support")).expect("support");
    sb.write_policy(&format!(
        "[[plugin]]\nvendor = \"opshost\"\nname = \"support-bundle\"\nallow = [{GRANTS}]\n"
    ));
    sb
}

/// A fresh random string over `alphabet`, so no secret is in any file by chance.
fn random(len: usize, alphabet: &str) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut bytes = vec![0u8; len];
    getrandom::getrandom(&mut bytes).expect("random");
    bytes
        .iter()
        .map(|b| chars[*b as usize % chars.len()])
        .collect()
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const HEX: &str = "0123456789abcdef";
const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Puts a file back as it was when the test ends, however it ends.
struct Restore {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        std::fs::write(&self.path, &self.bytes).expect("restore .env");
    }
}

/// Drops the test's schema when the test ends.
struct DropSchema(Mode);

impl Drop for DropSchema {
    fn drop(&mut self) {
        sql(self.0, "DROP SCHEMA IF EXISTS opshost_sbtest CASCADE");
    }
}

/// The secrets a test seeds, by where they were seeded.
struct Seeded {
    secrets: Vec<(&'static str, String)>,
}

impl Seeded {
    fn add(&mut self, kind: &'static str, value: impl Into<String>) -> String {
        let value = value.into();
        self.secrets.push((kind, value.clone()));
        value
    }
}

/// Secrets the deployment's `.env` holds already, by key.
fn env_secret(mode: Mode, key: &str) -> String {
    let text = std::fs::read_to_string(format!("{}/compose/.env", mode.install())).expect(".env");
    text.lines()
        .filter_map(|l| {
            l.trim_start()
                .strip_prefix("export ")
                .or(Some(l.trim_start()))
        })
        .find_map(|l| {
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
        .unwrap_or_else(|| panic!("{key} not in .env"))
}

/// Seed secrets into `.env` (restored by the returned guard), the schema
/// (dropped by its guard), the postgres log (bundled mode) and
/// operator-named files in `support/`.
fn seed_everything(sb: &Sandbox, mode: Mode) -> (Seeded, Restore, DropSchema) {
    let mut s = Seeded { secrets: vec![] };
    let pg_password = s.add("POSTGRES_PASSWORD", env_secret(mode, "POSTGRES_PASSWORD"));
    let api_secret = s.add("API_KEY_SECRET", env_secret(mode, "API_KEY_SECRET"));
    let vault_key = s.add("VAULT_SIGNING_KEY", env_secret(mode, "VAULT_SIGNING_KEY"));

    // .env: more kinds of secret, appended; the guard puts the bytes back.
    let env_path = PathBuf::from(format!("{}/compose/.env", mode.install()));
    let original = std::fs::read(&env_path).expect(".env");
    let guard = Restore {
        path: env_path.clone(),
        bytes: original.clone(),
    };
    let smtp = s.add(
        "SMTP_PASSWORD",
        format!("{}!{}", random(10, ALNUM), random(8, ALNUM)),
    );
    let aws_id = s.add("AWS_ACCESS_KEY_ID", format!("AKIA{}", random(16, UPPER)));
    let aws_secret = s.add("AWS_SECRET_ACCESS_KEY", random(40, B64));
    let github = s.add("GITHUB_TOKEN", format!("ghp_{}", random(36, ALNUM)));
    let stripe = s.add("STRIPE_KEY", format!("sk_live_{}", random(24, ALNUM)));
    let redis_pw = s.add("REDIS_URL password", random(24, ALNUM));
    let jwt_secret = s.add("JWT_SIGNING_SECRET", random(44, B64));
    let mut env = original.clone();
    env.extend_from_slice(
        format!(
            "\n# seeded by tests/support_bundle.rs\nSMTP_PASSWORD={smtp}\n\
             AWS_ACCESS_KEY_ID={aws_id}\nAWS_SECRET_ACCESS_KEY={aws_secret}\n\
             GITHUB_TOKEN={github}\nSTRIPE_API_KEY=\"{stripe}\"\n\
             REDIS_URL=redis://cache:{redis_pw}@redis.internal:6379/0\n\
             export JWT_SIGNING_SECRET='{jwt_secret}'\n"
        )
        .as_bytes(),
    );
    std::fs::write(&env_path, env).expect("seed .env");

    // The schema: a column default, a comment and a function body.
    let dsn_pw = s.add("schema DSN password", random(20, ALNUM));
    let comment_token = s.add(
        "schema comment token",
        format!("xoxb-{}", random(30, ALNUM)),
    );
    let fn_key = s.add(
        "schema function key",
        format!("sk_live_{}", random(24, ALNUM)),
    );
    let schema_guard = DropSchema(mode);
    sql(
        mode,
        &format!(
            "CREATE SCHEMA opshost_sbtest; \
             CREATE TABLE opshost_sbtest.integrations (id int, dsn text DEFAULT 'postgres://svc:{dsn_pw}@db.partner.example:5432/x'); \
             COMMENT ON TABLE opshost_sbtest.integrations IS 'slack bot token {comment_token}'; \
             CREATE FUNCTION opshost_sbtest.vendor_key() RETURNS text LANGUAGE sql AS $$ SELECT 'api_key={fn_key}' $$"
        ),
    );

    // Logs: the database logs a failed statement with what it held (the
    // postgres password bare, a bearer JWT, the HMAC secret bare).
    let jwt = s.add(
        "bearer JWT",
        format!(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{}.{}",
            random(40, ALNUM),
            random(43, ALNUM)
        ),
    );
    if mode == Mode::Bundled {
        let pg = container(mode, "postgres");
        let statement = format!(
            "SELECT 'retry with {pg_password} after Authorization: Bearer {jwt} hmac {api_secret}'::int"
        );
        let out = Command::new("docker")
            .args([
                "exec", &pg, "psql", "-U", "agledger", "-d", "agledger", "-c", &statement,
            ])
            .output()
            .expect("docker exec");
        assert!(
            !out.status.success(),
            "the seeding statement must fail and be logged"
        );
    }

    // Operator-named files.
    let support = sb.path("support");
    let db_password = s.add("config.yaml db_password", random(22, ALNUM));
    let ticket = s.add("operator regex ticket", format!("TKT-{}", random(24, HEX)));
    let customer = s.add(
        "operator literal",
        format!("acme-cust-{}", random(12, ALNUM)),
    );
    let client_secret = s.add("settings.json client_secret", random(32, ALNUM));
    let pem_body = s.add("PEM private key body", random(64, B64));
    let in_binary = s.add(
        "secret inside a binary",
        format!("binsecret-{}", random(24, ALNUM)),
    );
    let in_archive = s.add(
        "secret inside a nested archive",
        format!("tarsecret-{}", random(24, ALNUM)),
    );
    let in_gz = s.add(
        "secret inside a gzip log",
        format!("gzsecret-{}", random(24, ALNUM)),
    );
    write(
        &support.join("app/config.yaml"),
        format!(
            "data_dir: /var/lib/agledger/data\nlisten_port: 8443\ndb_password: {db_password}\n\
         support_ticket: {ticket}\n"
        ),
    );
    write(&support.join("app/settings.json"), format!(
        "{{\"endpoint\": \"https://api.example.com/v1\", \"timeout_ms\": 2500, \"client_secret\": \"{client_secret}\"}}\n"
    ));
    write(
        &support.join("app/notes.txt"),
        format!(
            "Customer {customer} migrated on 2026-11-02.\nThe vault key was {vault_key} before.\n\
         Old AWS secret {aws_secret} was revoked.\n"
        ),
    );
    write(
        &support.join("keys/tls.key"),
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n{}\n-----END PRIVATE KEY-----\n",
            &pem_body[..32],
            &pem_body[32..]
        ),
    );
    // A file named after a secret: its name is redacted too.
    write(
        &support.join(format!("app/{customer}.txt")),
        "notes about one customer\n",
    );
    let mut binary: Vec<u8> = (0u8..=255).collect();
    binary.extend_from_slice(in_binary.as_bytes());
    binary.extend_from_slice(&[0, 1, 2, 3]);
    std::fs::write(support.join("app/blob.bin"), &binary).expect("blob");
    std::fs::write(
        support.join("old-logs.tar.gz"),
        tar_gz(&[("old.log", format!("token={in_archive}\n"))]),
    )
    .expect("tar");
    std::fs::write(
        support.join("app/app.log.gz"),
        gzip(format!("password={in_gz}\n").as_bytes()),
    )
    .expect("gz");
    write(
        &support.join("rules.toml"),
        "literals = [\"acme-cust-\"]\n".replace("acme-cust-", &customer)
            + "[[regex]]\nname = \"ticket-token\"\npattern = 'TKT-[0-9a-f]{24}'\n",
    );
    (s, guard, schema_guard)
}

fn write(path: &Path, text: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

fn tar_gz(files: &[(&str, String)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, text) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        builder
            .append_data(&mut h, name, text.as_bytes())
            .expect("tar");
    }
    gzip(&builder.into_inner().expect("tar"))
}

/// Every regular file of a `.tar.gz`, by name.
fn unpack(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(path).expect("bundle");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().expect("path").to_string_lossy().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read");
        files.insert(name, data);
    }
    files
}

/// Where a secret, or a 16-character piece of it, shows in `haystack`.
fn leak(secret: &str, haystack: &[u8]) -> Option<String> {
    let b = secret.as_bytes();
    let pieces: Vec<&[u8]> = if b.len() <= 16 {
        vec![b]
    } else {
        b.windows(16).collect()
    };
    pieces.into_iter().find_map(|piece| {
        haystack
            .windows(piece.len())
            .any(|w| w == piece)
            .then(|| String::from_utf8_lossy(piece).to_string())
    })
}

fn assert_no_leak(seeded: &Seeded, what: &str, haystack: &[u8]) {
    for (kind, secret) in &seeded.secrets {
        if let Some(piece) = leak(secret, haystack) {
            panic!("{kind} survives in {what} (piece {piece:?})");
        }
    }
}

fn bundles(sb: &Sandbox) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(sb.path("bundles"))
        .expect("bundles")
        .map(|e| e.expect("entry").path())
        .collect();
    found.sort();
    found
}

#[test]
fn no_seeded_secret_survives_anywhere_and_non_secrets_stay() {
    let _lock = deployment_lock();
    let mode = Mode::Bundled;
    let before = fingerprint(mode);
    let env_before = std::fs::read(format!("{}/compose/.env", mode.install())).expect(".env");
    let sb = sandbox(mode);
    {
        let (seeded, _env_guard, _schema_guard) = seed_everything(&sb, mode);
        // The check itself finds what it looks for: every secret seeded
        // into .env is there, whole and as a 16-character piece.
        let seeded_env = std::fs::read(format!("{}/compose/.env", mode.install())).expect(".env");
        for (kind, secret) in seeded.secrets.iter().take(10) {
            assert!(leak(secret, &seeded_env).is_some(), "{kind} was not seeded");
            let piece = &secret[secret.len().saturating_sub(16)..];
            assert!(
                leak(secret, format!("..{piece}..").as_bytes()).is_some(),
                "{kind}: a piece"
            );
        }

        // --dry-run: the list and the report, nothing written, no secret shown.
        let dry = sb.run(
            &plugin("support-bundle"),
            &[],
            &[
                "--dry-run",
                "--include",
                "app",
                "--include",
                "keys",
                "--include",
                "old-logs.tar.gz",
                "--rules",
                "rules.toml",
            ],
        );
        assert_eq!(dry.code, 0, "{}", dry.combined());
        assert!(
            bundles(&sb).is_empty(),
            "--dry-run wrote {:?}",
            bundles(&sb)
        );
        for listed in [
            "compose/.env",
            "database/schema.sql",
            "containers/logs/postgres.log",
            "redaction-report.json",
        ] {
            assert!(
                dry.stdout.contains(listed),
                "--dry-run does not list {listed}:\n{}",
                dry.stdout
            );
        }
        assert!(dry.stdout.contains("redaction report"), "{}", dry.stdout);
        assert_no_leak(&seeded, "the --dry-run output", dry.combined().as_bytes());

        let out = sb.run(
            &plugin("support-bundle"),
            &["--json"],
            &[
                "--include",
                "app",
                "--include",
                "keys",
                "--include",
                "old-logs.tar.gz",
                "--rules",
                "rules.toml",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.combined());
        assert_no_leak(&seeded, "opshost's output", out.combined().as_bytes());
        // The operator's own audit log names the files read, so the file
        // named after the operator literal shows there (it stays on the
        // operator's machine); no other secret may.
        let not_file_names = Seeded {
            secrets: seeded
                .secrets
                .iter()
                .filter(|(kind, _)| *kind != "operator literal")
                .cloned()
                .collect(),
        };
        assert_no_leak(&not_file_names, "the audit log", sb.audit_text().as_bytes());
        let result = result_json(&out);
        let made = bundles(&sb);
        assert_eq!(made.len(), 1, "{made:?}");
        let name = made[0]
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        assert_eq!(result["data"]["bundle"], name.as_str());
        assert!(
            name.starts_with("support-bundle-") && name.ends_with(".tar.gz"),
            "{name}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode_bits = std::fs::metadata(&made[0])
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(
            mode_bits, 0o600,
            "the bundle holds deployment details: owner-only"
        );

        let files = unpack(&made[0]);
        let root = name.trim_end_matches(".tar.gz").to_string();
        let get = |rel: &str| -> String {
            let data = files
                .get(&format!("{root}/{rel}"))
                .unwrap_or_else(|| panic!("{rel} is not in the bundle: {:?}", files.keys()));
            String::from_utf8_lossy(data).to_string()
        };
        // No secret, nor a 16-character piece of one, in any file or name.
        for (path, data) in &files {
            assert_no_leak(&seeded, path, data);
            assert_no_leak(&seeded, "a member's name", path.as_bytes());
            assert!(
                !data.starts_with(&[0x1f, 0x8b]) && !data.starts_with(b"PK\x03\x04"),
                "{path} is a nested archive copied as it was"
            );
        }
        // Binary files and nested archives: left out (never copied unredacted), and said so.
        for gone in [
            "included/app/blob.bin",
            "included/old-logs.tar.gz",
            "included/app/app.log.gz",
        ] {
            assert!(
                !files.contains_key(&format!("{root}/{gone}")),
                "{gone} was copied"
            );
        }
        let report_json: serde_json::Value =
            serde_json::from_str(&get("redaction-report.json")).expect("report json");
        let report_text = get("redaction-report.txt");
        for gone in [
            "included/app/blob.bin",
            "included/old-logs.tar.gz",
            "included/app/app.log.gz",
        ] {
            assert!(
                report_text.contains(gone),
                "the report does not say {gone} was left out:\n{report_text}"
            );
        }
        assert!(report_json["redactions"].as_u64().unwrap_or(0) >= seeded.secrets.len() as u64);
        assert!(
            report_json.to_string().contains("ticket-token"),
            "the operator's regex rule is not named in the report: {report_json}"
        );

        // What the vendor needs stays.
        let env = get("compose/.env");
        for kept in [
            "AGLEDGER_VERSION=1.3.2",
            "API_PORT=24001",
            "SIEM_SYSLOG_HOST=siem.internal.example",
            "SIEM_SYSLOG_PORT=6514",
            "LOG_LEVEL=info",
            "POSTGRES_USER=agledger",
            "@redis.internal:6379/0",
        ] {
            assert!(env.contains(kept), "{kept} was lost from .env:\n{env}");
        }
        let config = get("included/app/config.yaml");
        for kept in ["data_dir: /var/lib/agledger/data", "listen_port: 8443"] {
            assert!(config.contains(kept), "{kept} was lost:\n{config}");
        }
        let settings = get("included/app/settings.json");
        for kept in ["https://api.example.com/v1", "\"timeout_ms\": 2500"] {
            assert!(settings.contains(kept), "{kept} was lost:\n{settings}");
        }
        assert!(get("included/app/notes.txt").contains("migrated on 2026-11-02"));
        assert!(
            files.iter().any(|(p, d)| p.contains("/included/app/")
                && p.ends_with(".txt")
                && d == b"notes about one customer\n"),
            "the file named after a secret is kept under its redacted name: {:?}",
            files.keys()
        );
        let schema = get("database/schema.sql");
        assert!(schema.contains("CREATE TABLE public.mandates"), "{schema}");
        assert!(
            schema.contains("opshost_sbtest.integrations"),
            "the seeded table is not in the schema"
        );
        assert!(get("containers/logs/agledger-api.log").contains("listening on 0.0.0.0:3000"));
        assert!(
            get("containers/logs/postgres.log").contains("invalid input syntax for type integer"),
            "the seeded log line is not in the postgres log"
        );
        let counts: serde_json::Value =
            serde_json::from_str(&get("database/row-counts.json")).expect("counts");
        assert_eq!(
            counts["public.mandates"].as_i64().map(|n| n.to_string()),
            Some(sql(mode, "SELECT count(*) FROM mandates"))
        );
        let migrations: serde_json::Value =
            serde_json::from_str(&get("database/migrations.json")).expect("m");
        assert_eq!(
            migrations.as_array().map(Vec::len),
            Some(2),
            "1.3.2 has migrations 1 and 2"
        );
        let facts: serde_json::Value =
            serde_json::from_str(&get("system/facts.json")).expect("facts");
        assert_eq!(facts["agledger_reported_version"], "1.3.2");
        assert_eq!(facts["agledger_version_env"], "1.3.2");
        assert!(
            facts["postgresql_version"]
                .as_str()
                .unwrap_or("")
                .starts_with("15"),
            "{facts}"
        );
        assert!(
            facts["database_size_bytes"].as_i64().unwrap_or(0) > 0,
            "{facts}"
        );
        // The admin endpoint answered with the host's platform key.
        let admin: serde_json::Value =
            serde_json::from_str(&get("api/admin-support-bundle.json")).expect("admin");
        assert_eq!(admin["version"], "1.3.2", "{admin}");
        assert!(get("api/health.json").contains("\"ok\""));
        assert!(get("containers/states.json").contains("agledger-api"));
    }
    // The guards put .env and the schema back.
    assert_eq!(
        std::fs::read(format!("{}/compose/.env", mode.install())).expect(".env"),
        env_before
    );
    assert_eq!(
        sql(
            mode,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'opshost_sbtest'"
        ),
        "0"
    );
    assert_eq!(fingerprint(mode), before);
    assert_eq!(health(mode), 200);
}

#[test]
fn a_bad_rules_file_or_path_is_refused_before_anything_is_collected() {
    let _lock = deployment_lock();
    let sb = sandbox(Mode::Bundled);
    write(&sb.path("support/short.toml"), "literals = [\"ab\"]\n");
    write(
        &sb.path("support/bad.toml"),
        "[[regex]]\nname = \"x\"\npattern = '('\n",
    );
    for (args, says) in [
        (&["--rules", "short.toml"][..], "at least 6"),
        (&["--rules", "bad.toml"], "does not compile"),
        (&["--rules", "missing.toml"], "missing.toml"),
        (&["--include", "../etc"], ".."),
        (&["--include", "not-there.log"], "not-there.log"),
        (&["--frobnicate"], "unknown argument"),
    ] {
        let out = sb.run(&plugin("support-bundle"), &[], args);
        // The host exits 1 for every plugin failure, bad input included;
        // the message names the argument and what to do.
        assert_eq!(out.code, 1, "{args:?}: {}", out.combined());
        assert!(
            out.combined().contains(says),
            "{args:?} should say {says:?}: {}",
            out.combined()
        );
        assert!(bundles(&sb).is_empty());
        // Nothing was collected: no container, database or API call was made.
        assert!(
            sb.audit_text()
                .lines()
                .all(|l| !l.contains("\"container\"") && !l.contains("\"db\"")),
            "{args:?} collected before refusing"
        );
    }
}

#[test]
fn external_database_bundle_has_the_schema_and_no_database_url_password() {
    let _lock = deployment_lock();
    let mode = Mode::External;
    let before = fingerprint(mode);
    let sb = sandbox(mode);
    let url = env_secret(mode, "DATABASE_URL");
    let password = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('@').next())
        .and_then(|cred| cred.split(':').nth(1))
        .expect("DATABASE_URL has a password")
        .to_string();
    let out = sb.run(&plugin("support-bundle"), &["--json"], &[]);
    assert_eq!(out.code, 0, "{}", out.combined());
    let made = bundles(&sb);
    assert_eq!(made.len(), 1);
    let files = unpack(&made[0]);
    let seeded = Seeded {
        secrets: vec![
            ("DATABASE_URL password", password),
            ("API_KEY_SECRET", env_secret(mode, "API_KEY_SECRET")),
            ("VAULT_SIGNING_KEY", env_secret(mode, "VAULT_SIGNING_KEY")),
        ],
    };
    for (path, data) in &files {
        assert_no_leak(&seeded, path, data);
    }
    let schema = files
        .iter()
        .find(|(p, _)| p.ends_with("/database/schema.sql"))
        .map(|(_, d)| String::from_utf8_lossy(d).to_string())
        .expect("schema.sql (local pg_dump in external mode)");
    assert!(schema.contains("CREATE TABLE public.mandates"), "{schema}");
    let env = files
        .iter()
        .find(|(p, _)| p.ends_with("/compose/.env"))
        .map(|(_, d)| String::from_utf8_lossy(d).to_string())
        .expect(".env");
    assert!(
        env.contains("DATABASE_URL=postgres://agledger_ext:"),
        "the URL's shape stays: {env}"
    );
    assert_eq!(fingerprint(mode), before);
}

/// Starts the API container again when the test ends, however it ends,
/// and waits until it answers.
struct StartAgain(Mode);

impl Drop for StartAgain {
    fn drop(&mut self) {
        docker(&["start", &container(self.0, "agledger-api")]);
        for _ in 0..300 {
            if health(self.0) == 200 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

#[test]
fn a_part_that_cannot_be_collected_is_recorded_and_the_bundle_still_written() {
    let _lock = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let api = container(mode, "agledger-api");
    let _start = StartAgain(mode);
    docker(&["stop", "-t", "5", &api]);
    assert_ne!(health(mode), 200, "the API should be down");

    let out = sb.run(&plugin("support-bundle"), &["--json"], &[]);
    assert_eq!(out.code, 6, "completed with findings: {}", out.combined());
    let result = result_json(&out);
    let problems = result["data"]["problems"].to_string();
    assert!(problems.contains("GET /health"), "{problems}");
    let made = bundles(&sb);
    assert_eq!(made.len(), 1, "{}", out.combined());
    let files = unpack(&made[0]);
    let find = |suffix: &str| {
        files
            .iter()
            .find(|(p, _)| p.ends_with(suffix))
            .map(|(_, d)| String::from_utf8_lossy(d).to_string())
    };
    // What could be collected is there: the stopped container's state and
    // its last log lines, the database, the config.
    assert!(find("/containers/states.json")
        .expect("states")
        .contains("exited"));
    assert!(find("/containers/logs/agledger-api.log").is_some());
    assert!(find("/database/schema.sql").is_some());
    assert!(find("/compose/.env").is_some());
    assert!(find("/collection.json")
        .expect("collection")
        .contains("GET /health"));
    assert!(find("/api/health.json").is_none());
}
