//! Image signatures, end to end: cosign-layout signatures made by
//! tests/standin/images/sign.sh (a test CA for Fulcio, a test Rekor key)
//! in the real local registry, pulled through the real Docker Engine by
//! the ctlprobe plugin, verified by the host. Each test signs its own
//! image (the stand-in's 1.3.2 plus a unique label, so a digest of its
//! own) in the scratch repository 127.0.0.1:5000/opshost-trust-test/agledger,
//! so the stand-in's signed releases are never touched, and runs one-off
//! containers from a throwaway project. The tests share the engine and run
//! one at a time.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use common::*;

static ENGINE: Mutex<()> = Mutex::new(());

const SCRATCH: &str = "127.0.0.1:5000/opshost-trust-test/agledger";
const ISSUER: &str = "https://token.actions.githubusercontent.com";
const RELEASE: &str =
    "https://github.com/agledger-ai/agledger-api/.github/workflows/release.yml@refs/tags/v1.3.2";

/// A throwaway compose "project" of one created (never started)
/// container, service `app`: what one-off runs copy their configuration
/// from. The tests do not touch the stand-in's projects, which other tests
/// upgrade and recreate meanwhile. Removed when dropped.
struct Project;

const PROJECT: &str = "opshost-trust-test";

impl Project {
    fn new() -> Self {
        let registry = Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", "http://127.0.0.1:5000/v2/"])
            .status()
            .expect("curl");
        assert!(
            registry.success(),
            "no registry on 127.0.0.1:5000: run the tests with tests/run.sh, which brings up the stand-in and its registry"
        );
        let _ = Command::new("docker")
            .args(["rm", "-f", "opshost-trust-test-app"])
            .output();
        docker(&[
            "create",
            "--name",
            "opshost-trust-test-app",
            "--label",
            &format!("com.docker.compose.project={PROJECT}"),
            "--label",
            "com.docker.compose.service=app",
            "agledger/agledger:1.3.2",
            "version",
        ]);
        Self
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "opshost-trust-test-app"])
            .output();
    }
}

fn sign_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/standin/images/sign.sh")
}

fn sh(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker(args: &[&str]) -> String {
    sh(Path::new("docker"), args)
}

/// The trust roots sign.sh made (`init` is idempotent): the one configs
/// trust, and a rogue CA nobody configured.
fn trust_dirs() -> (String, String) {
    let trust = std::env::var("OPSHOST_TEST_TRUST").unwrap_or("/tmp/opshost-test-trust".into());
    let rogue = format!("{trust}-rogue");
    sh(&sign_sh(), &["init", &trust]);
    sh(&sign_sh(), &["init", &rogue]);
    (trust, rogue)
}

/// A fresh image in the scratch repository, pushed and then removed
/// locally (so a pull really pulls). Returns (tag reference, digest reference).
fn scratch_image(name: &str) -> (String, String) {
    let tag = format!("{SCRATCH}:{name}");
    let unique = format!(
        "{name}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    );
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", &tag, "--label"])
        .arg(format!("opshost.trust-test={unique}"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        // The legacy builder's deprecation notice is noise here.
        .stderr(Stdio::null())
        .spawn()
        .expect("docker build");
    {
        use std::io::Write;
        let mut stdin = build.stdin.take().expect("stdin");
        stdin
            .write_all(b"FROM agledger/agledger:1.3.2\n")
            .expect("Dockerfile");
    }
    assert!(
        build.wait().expect("docker build").success(),
        "docker build"
    );
    docker(&["push", "-q", &tag]);
    let digest = sh(&sign_sh(), &["digest", &tag]);
    assert!(digest.starts_with("sha256:"), "{digest}");
    docker(&["rmi", &tag]);
    (tag, format!("{SCRATCH}@{digest}"))
}

fn keyless_policy(trust: &str) -> String {
    format!(
        "[containers.agledger.signatures]\n\
         fulcio_roots = [\"{trust}/fulcio-root.pem\"]\n\
         rekor_keys = [\"{trust}/rekor.pub\"]\n\
         identity_regexp = '^https://github\\.com/agledger-ai/agledger-api/\\.github/workflows/.+@refs/tags/v.+$'\n\
         issuer = \"{ISSUER}\"\n"
    )
}

/// A sandbox whose `agledger` project is the throwaway one, may use the scratch
/// repository, and has `signatures` (TOML) as its signature policy.
fn sandbox(signatures: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write_config(&format!(
        "[containers.agledger]\nproject = \"{PROJECT}\"\nimages = [\"{SCRATCH}\"]\n{signatures}"
    ));
    let text = std::fs::read_to_string(sb.path("config.toml")).expect("config");
    let standard = "[containers.agledger]\nproject = \"agledger\"\n";
    std::fs::write(sb.path("config.toml"), text.replacen(standard, "", 1)).expect("config");
    sb.write_policy(
        "[[plugin]]\nvendor = \"opshost-testing\"\nname = \"ctlprobe\"\n\
         allow = [\"container=agledger:inspect,logs,exec,stop,start,pull,recreate,run\"]\n",
    );
    sb
}

fn probe(sb: &Sandbox, flags: &[&str], args: &[&str]) -> (Output, serde_json::Value) {
    let mut all = vec!["--json", "--timeout", "3m"];
    all.extend_from_slice(flags);
    let out = sb.run(&plugin("ctlprobe"), &all, args);
    let v = result_json(&out);
    (out, v)
}

/// The pull's audit line.
fn pull_audit(sb: &Sandbox) -> serde_json::Value {
    sb.audit()
        .into_iter()
        .rev()
        .find(|e| e["capability"] == "container" && e["verb"] == "pull")
        .unwrap_or_else(|| panic!("no pull audited: {}", sb.audit_text()))
}

/// No container (running or not) was ever made from the scratch repository.
fn nothing_ran() {
    let images = docker(&["ps", "-a", "--format", "{{.Image}}"]);
    assert!(
        !images.contains("opshost-trust-test"),
        "a container runs a scratch image: {images}"
    );
}

/// The pull is refused with `want` in the message, audited as denied,
/// and nothing ran.
fn refused(sb: &Sandbox, flags: &[&str], image: &str, want: &str) {
    let (out, v) = probe(sb, flags, &["pull", image]);
    assert_eq!(v["ok"], false, "should be refused: {}", out.combined());
    assert_eq!(v["exit_code"], DENIED, "{v}");
    let error = v["error"].as_str().unwrap_or_default();
    assert!(error.contains(want), "{error:?} lacks {want:?}");
    let audit = pull_audit(sb);
    assert_eq!(audit["outcome"], "denied", "{audit}");
    assert!(
        audit["detail"].as_str().is_some_and(|d| d.contains(want)),
        "{audit}"
    );
    nothing_ran();
}

#[test]
fn keyless_signature_verifies_and_the_digest_may_run() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let _project = Project::new();
    let (trust, _) = trust_dirs();
    let (tag, digest) = scratch_image("keyless-good");
    sh(
        &sign_sh(),
        &["keyless", &trust, &digest, "--identity", RELEASE],
    );
    let sb = sandbox(&keyless_policy(&trust));
    // Pull, then a one-off run of the digest the pull verified.
    let (out, v) = probe(&sb, &[], &["pull-run", "app", &tag, "version"]);
    assert_eq!(v["ok"], true, "{}", out.combined());
    assert_eq!(v["data"]["digest"], digest.as_str());
    assert_eq!(v["data"]["code"], 0, "{v}");
    assert!(
        v["data"]["stdout"]
            .as_str()
            .is_some_and(|s| s.contains("1.3.2")),
        "{v}"
    );
    let audit = pull_audit(&sb);
    assert_eq!(audit["outcome"], "ok");
    let detail = audit["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with(&format!("{digest} signature verified: keyless {RELEASE}")),
        "{detail}"
    );
    assert!(!out.stdout.contains("NOT VERIFIED"), "{}", out.stdout);
}

#[test]
fn key_based_signature_verifies() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let _project = Project::new();
    let (trust, _) = trust_dirs();
    let (tag, digest) = scratch_image("key-good");
    sh(&sign_sh(), &["key", &trust, &digest]);
    let keys_only = format!("[containers.agledger.signatures]\nkeys = [\"{trust}/cosign.pub\"]\n");
    for policy in [
        keys_only.clone(),
        format!(
            "{}keys = [\"{trust}/cosign.pub\"]\n",
            keyless_policy(&trust)
        ),
    ] {
        let sb = sandbox(&policy);
        let (out, v) = probe(&sb, &[], &["pull", &tag]);
        assert_eq!(v["ok"], true, "{policy}: {}", out.combined());
        assert_eq!(v["data"], digest.as_str());
        let detail = pull_audit(&sb)["detail"].to_string();
        assert!(
            detail.contains("signed with key") && detail.contains("cosign.pub"),
            "{detail}"
        );
    }
    // A keyless-only policy does not take a key signature.
    let sb = sandbox(&keyless_policy(&trust));
    refused(&sb, &[], &tag, "made with a key, not a Fulcio certificate");
    // Nor does another key.
    let (_, rogue) = trust_dirs();
    let sb = sandbox(&format!(
        "[containers.agledger.signatures]\nkeys = [\"{rogue}/cosign.pub\"]\n"
    ));
    refused(&sb, &[], &tag, "does not verify with any configured key");
}

#[test]
fn another_identity_is_refused() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let _project = Project::new();
    let (trust, _) = trust_dirs();
    let (tag, digest) = scratch_image("wrong-identity");
    let fork = "https://github.com/someone-else/agledger-api/.github/workflows/release.yml@refs/tags/v1.3.2";
    sh(
        &sign_sh(),
        &["keyless", &trust, &digest, "--identity", fork],
    );
    refused(
        &sandbox(&keyless_policy(&trust)),
        &[],
        &tag,
        &format!("the certificate identity {fork} does not match"),
    );
    // A branch build of the right repository is not a release either.
    let branch =
        "https://github.com/agledger-ai/agledger-api/.github/workflows/release.yml@refs/heads/main";
    sh(
        &sign_sh(),
        &["keyless", &trust, &digest, "--identity", branch],
    );
    refused(
        &sandbox(&keyless_policy(&trust)),
        &[],
        &tag,
        "does not match",
    );
}

#[test]
fn another_issuer_is_refused() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let _project = Project::new();
    let (trust, _) = trust_dirs();
    let (tag, digest) = scratch_image("wrong-issuer");
    sh(
        &sign_sh(),
        &[
            "keyless",
            &trust,
            &digest,
            "--identity",
            RELEASE,
            "--issuer",
            "https://accounts.google.com",
        ],
    );
    refused(
        &sandbox(&keyless_policy(&trust)),
        &[],
        &tag,
        "OIDC issuer \"https://accounts.google.com\" is not",
    );
}

#[test]
fn tampered_signatures_are_refused() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let _project = Project::new();
    let (trust, _) = trust_dirs();
    let (tag, digest) = scratch_image("tampered");
    // The payload changed after signing.
    sh(&sign_sh(), &["tamper", &trust, &digest]);
    let sb = sandbox(&keyless_policy(&trust));
    refused(
        &sb,
        &[],
        &tag,
        "does not verify with the certificate's key (payload tampered?)",
    );
    // A genuine signature of another image, copied onto this one.
    let other = format!("sha256:{}", "ab".repeat(32));
    sh(
        &sign_sh(),
        &[
            "keyless",
            &trust,
            &digest,
            "--identity",
            RELEASE,
            "--payload-digest",
            &other,
        ],
    );
    refused(&sb, &[], &tag, &format!("names image {other}, not"));
}

#[test]
fn an_unsigned_image_is_refused() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let _project = Project::new();
    let (trust, _) = trust_dirs();
    let (tag, digest) = scratch_image("unsigned");
    // Signed, then the signature deleted: unsign really removes it.
    sh(
        &sign_sh(),
        &["keyless", &trust, &digest, "--identity", RELEASE],
    );
    sh(&sign_sh(), &["unsign", &digest]);
    refused(
        &sandbox(&keyless_policy(&trust)),
        &[],
        &tag,
        &format!("no signature found for {digest}"),
    );
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let _project = Project::new();
    let (trust, rogue) = trust_dirs();
    let (tag, digest) = scratch_image("rogue-ca");
    // Right identity and issuer, logged in the trusted Rekor, but the
    // certificate comes from a CA nobody configured.
    sh(
        &sign_sh(),
        &[
            "keyless",
            &trust,
            &digest,
            "--identity",
            RELEASE,
            "--ca",
            &rogue,
        ],
    );
    refused(
        &sandbox(&keyless_policy(&trust)),
        &[],
        &tag,
        "not signed by a trusted Fulcio root",
    );
}

#[test]
fn a_bad_rekor_timestamp_is_refused() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let _project = Project::new();
    let (trust, rogue) = trust_dirs();
    let (tag, digest) = scratch_image("bad-set");
    sh(
        &sign_sh(),
        &[
            "keyless",
            &trust,
            &digest,
            "--identity",
            RELEASE,
            "--bad-set",
        ],
    );
    let sb = sandbox(&keyless_policy(&trust));
    refused(&sb, &[], &tag, "Rekor entry timestamp (SET) is invalid");
    // A log nobody configured (the rogue root's Rekor key).
    sh(
        &sign_sh(),
        &[
            "keyless",
            &rogue,
            &digest,
            "--identity",
            RELEASE,
            "--ca",
            &trust,
        ],
    );
    refused(&sb, &[], &tag, "not a configured rekor key");
}

#[test]
fn without_a_policy_pulls_warn_and_require_signed_refuses() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let _project = Project::new();
    let (tag, digest) = scratch_image("no-policy");
    let sb = sandbox("");
    let (out, v) = probe(&sb, &[], &["pull", &tag]);
    assert_eq!(v["ok"], true, "{}", out.combined());
    assert_eq!(v["data"], digest.as_str());
    let warned = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|e| {
            e["event"] == "warn"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("IMAGE NOT VERIFIED") && m.contains(&digest))
        });
    assert!(warned, "{}", out.stdout);
    let detail = pull_audit(&sb)["detail"].to_string();
    assert!(
        detail.contains("UNVERIFIED (no signature policy)"),
        "{detail}"
    );
    // With no policy and no flag, an explicit image for run/recreate is
    // as before (the allow-list decides).
    let (out, v) = probe(&sb, &[], &["run", "app", &digest, "version"]);
    assert_eq!(v["ok"], true, "{}", out.combined());
    // Human output: the warning is on stderr.
    let human = sb.run(&plugin("ctlprobe"), &[], &["pull", &tag]);
    assert_eq!(human.code, OK, "{}", human.combined());
    assert!(
        human.stderr.contains("warning: !!! IMAGE NOT VERIFIED"),
        "{}",
        human.stderr
    );

    docker(&["rmi", &tag]);
    refused(&sb, &["--require-signed"], &tag, "--require-signed");
    let local = Command::new("docker")
        .args(["image", "inspect", &tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("docker");
    assert!(!local.success(), "the refused pull pulled nothing");
}

#[test]
fn recreate_and_run_take_only_digests_verified_in_the_run() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let _project = Project::new();
    let (trust, _) = trust_dirs();
    let (tag, digest) = scratch_image("use-verified");
    sh(
        &sign_sh(),
        &["keyless", &trust, &digest, "--identity", RELEASE],
    );
    let sb = sandbox(&keyless_policy(&trust));
    // Verified in an earlier run does not count: each run verifies what it uses.
    let (out, v) = probe(&sb, &[], &["pull", &tag]);
    assert_eq!(v["ok"], true, "{}", out.combined());
    let ours = format!("label=com.docker.compose.project={PROJECT}");
    let before = docker(&["ps", "-aq", "--no-trunc", "--filter", &ours]);
    for args in [
        vec!["run", "app", digest.as_str(), "version"],
        vec!["run", "app", tag.as_str(), "version"],
        vec!["recreate", "app", digest.as_str()],
        vec!["recreate", "app", tag.as_str()],
    ] {
        let (out, v) = probe(&sb, &[], &args);
        assert_eq!(v["ok"], false, "{args:?}: {}", out.combined());
        assert_eq!(v["exit_code"], DENIED, "{v}");
        assert!(
            v["error"].as_str().is_some_and(
                |e| e.contains("is not a digest whose signature was verified in this run")
            ),
            "{v}"
        );
    }
    assert_eq!(
        docker(&["ps", "-aq", "--no-trunc", "--filter", &ours]),
        before,
        "nothing was created or replaced"
    );
    nothing_ran();
    // The service's own image (no explicit image) stays allowed.
    let (out, v) = probe(&sb, &[], &["run", "app", "-", "version"]);
    assert_eq!(v["ok"], true, "{}", out.combined());
    // Pulled and verified in the same run, by tag or by digest: accepted.
    for image in [&tag, &digest] {
        let (out, v) = probe(&sb, &[], &["pull-run", "app", image, "version"]);
        assert_eq!(v["ok"], true, "{}", out.combined());
        assert_eq!(v["data"]["digest"], digest.as_str());
        assert_eq!(v["data"]["code"], 0, "{v}");
    }
}

/// cosign 3's layout: a Sigstore bundle attached as an OCI referrer (this
/// registry has no referrers API: the index is at the tag `sha256-<hex>`).
/// A bundle carries no chain: the policy names the intermediate too.
#[test]
fn cosign3_bundles_verify_with_the_same_checks() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let _project = Project::new();
    let (trust, rogue) = trust_dirs();
    let (tag, digest) = scratch_image("bundle");
    // The intermediate in fulcio_roots, or Sigstore's trusted_root.json.
    let with_intermediate = keyless_policy(&trust).replace(
        &format!("fulcio_roots = [\"{trust}/fulcio-root.pem\"]"),
        &format!(
            "fulcio_roots = [\"{trust}/fulcio-root.pem\", \"{trust}/fulcio-intermediate.pem\"]"
        ),
    );
    let trusted_root = format!(
        "[containers.agledger.signatures]\n\
         trusted_root = \"{trust}/trusted_root.json\"\n\
         identity_regexp = '^https://github\\.com/agledger-ai/agledger-api/\\.github/workflows/.+@refs/tags/v.+$'\n\
         issuer = \"{ISSUER}\"\n"
    );
    sh(
        &sign_sh(),
        &["bundle", &trust, &digest, "--identity", RELEASE],
    );
    for policy in [&with_intermediate, &trusted_root] {
        let sb = sandbox(policy);
        let (out, v) = probe(&sb, &[], &["pull-run", "app", &tag, "version"]);
        assert_eq!(v["ok"], true, "{policy}: {}", out.combined());
        assert_eq!(v["data"]["code"], 0, "{v}");
        let detail = pull_audit(&sb)["detail"].to_string();
        assert!(
            detail.contains(&format!(
                "signature verified: keyless (Sigstore bundle) {RELEASE}"
            )),
            "{detail}"
        );
    }
    let sb = sandbox(&trusted_root);
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--identity",
                "https://github.com/someone-else/x/.github/workflows/r.yml@refs/tags/v1",
            ],
            "does not match",
        ),
        (
            &[
                "--identity",
                RELEASE,
                "--issuer",
                "https://accounts.google.com",
            ],
            "OIDC issuer",
        ),
        (
            &["--identity", RELEASE, "--tamper"],
            "(statement tampered?)",
        ),
        (
            &["--identity", RELEASE, "--ca", &rogue],
            "not signed by a trusted Fulcio root",
        ),
        (
            &["--identity", RELEASE, "--bad-set"],
            "Rekor entry timestamp (SET) is invalid",
        ),
    ];
    for (options, want) in cases {
        let mut args = vec!["bundle", trust.as_str(), digest.as_str()];
        args.extend_from_slice(options);
        sh(&sign_sh(), &args);
        refused(&sb, &[], &tag, want);
    }
    let other = format!("sha256:{}", "cd".repeat(32));
    sh(
        &sign_sh(),
        &[
            "bundle",
            &trust,
            &digest,
            "--identity",
            RELEASE,
            "--payload-digest",
            &other,
        ],
    );
    refused(&sb, &[], &tag, &format!("names image {other}, not"));
    // Both layouts gone: nothing to verify.
    sh(&sign_sh(), &["unsign", &digest]);
    refused(&sb, &[], &tag, "no signature found for");
}

#[test]
fn broken_signature_policies_are_config_errors() {
    let sb = Sandbox::new();
    let dir = sb.path("trust");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("not.pem"), "hello").expect("file");
    let cases = [
        ("keys = [\"trust/missing.pub\"]", "keys: cannot read"),
        ("keys = [\"trust/not.pem\"]", "no PEM PUBLIC KEY"),
        ("issuer = \"https://x\"", "needs fulcio_roots, rekor_keys, identity_regexp and issuer together"),
        ("keys = []", "give keys, or fulcio_roots"),
        ("key = [\"x\"]", "unknown field `key`"),
        (
            "trusted_root = \"trust/not.pem\"\nidentity_regexp = \"x\"\nissuer = \"y\"",
            "not a trusted_root.json",
        ),
        (
            "fulcio_roots = [\"trust/not.pem\"]\nrekor_keys = [\"trust/not.pem\"]\nidentity_regexp = \"(\"\nissuer = \"x\"",
            "fulcio_roots",
        ),
    ];
    for (body, want) in cases {
        sb.write_config(&format!(
            "[containers.signed]\nproject = \"x\"\n[containers.signed.signatures]\n{body}\n"
        ));
        let out = sb.run(&plugin("noop"), &[], &[]);
        assert_eq!(out.code, USAGE, "{body}: {}", out.combined());
        // toml reports an unknown key with its line, not its table.
        let named =
            body.starts_with("key =") || out.stderr.contains("[containers.signed.signatures]");
        assert!(
            named && out.stderr.contains(want),
            "{body}: {} lacks {want:?}",
            out.stderr
        );
    }
}
