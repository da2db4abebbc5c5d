//! The platform end to end through the real CLI: grants, refusals,
//! compile cache, JSON output, plugin shape and version checks.

mod common;

use common::*;

const EXAMPLE_POLICY: &str = r#"
[[plugin]]
vendor = "opshost"
name = "example"
allow = ["fs=work:rw", "http=api:GET"]
"#;

#[test]
fn example_runs_with_its_grants() {
    let sb = Sandbox::new();
    sb.write_policy(EXAMPLE_POLICY);
    let out = sb.run(&plugin("example"), &[], &["first", "run"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(out.stdout.contains("the API is healthy"), "{}", out.stdout);
    let report =
        std::fs::read_to_string(sb.path("work/health-report.txt")).expect("report written");
    assert!(
        report.contains("status: 200") && report.contains("\"version\":\"1.3.2\""),
        "{report}"
    );
    assert!(report.contains("note: first run"), "{report}");
    assert_eq!(sb.audited("http", "ok").len(), 1);
    assert!(sb
        .audited("fs", "ok")
        .iter()
        .any(|e| e["verb"] == "write-stream"));
    // Only the final file remains: no temp file is left behind.
    let names: Vec<String> = std::fs::read_dir(sb.path("work"))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

#[test]
fn removing_any_grant_refuses_before_running_and_names_it() {
    for (kept, missing) in [
        ("http=api:GET", "fs=work:rw"),
        ("fs=work:rw", "http=api/health:GET"),
    ] {
        let sb = Sandbox::new();
        sb.write_policy(&format!(
            "[[plugin]]\nvendor = \"opshost\"\nname = \"example\"\nallow = [\"{kept}\"]\n"
        ));
        let out = sb.run(&plugin("example"), &[], &[]);
        assert_eq!(out.code, DENIED, "{}", out.combined());
        assert!(
            out.stderr.contains(&format!("\"{missing}\",")),
            "policy line for {missing}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&format!("--allow {missing}")),
            "{}",
            out.stderr
        );
        // The plugin never ran: nothing written, nothing but the refusal audited.
        assert!(!sb.path("work/health-report.txt").exists());
        assert_eq!(sb.api.hits(), 0);
        let audit = sb.audit();
        assert_eq!(audit.len(), 1, "{audit:?}");
        assert_eq!(audit[0]["outcome"], "refused");
    }
}

#[test]
fn allow_flags_grant_for_one_run() {
    let sb = Sandbox::new();
    let out = sb.run(
        &plugin("example"),
        &["--allow", "fs=work:rw", "--allow", "http=api:GET"],
        &[],
    );
    assert_eq!(out.code, OK, "{}", out.combined());
}

#[test]
fn second_run_does_not_recompile() {
    let sb = Sandbox::new();
    sb.write_policy(EXAMPLE_POLICY);
    let compiled = |out: &Output| -> String {
        let last = out.stdout.lines().last().expect("result line");
        let v: serde_json::Value = serde_json::from_str(last).expect("json");
        v["compiled"].as_str().expect("compiled").to_string()
    };
    let first = sb.run(&plugin("example"), &["--json"], &[]);
    assert_eq!(first.code, OK, "{}", first.combined());
    assert_eq!(compiled(&first), "cache-miss");
    let second = sb.run(&plugin("example"), &["--json"], &[]);
    assert_eq!(compiled(&second), "cache-hit");
    let cached: Vec<_> = std::fs::read_dir(sb.path("cache"))
        .expect("cache dir")
        .collect();
    assert_eq!(cached.len(), 1);
}

#[test]
fn a_corrupt_cache_entry_is_recompiled() {
    let sb = Sandbox::new();
    sb.write_policy(EXAMPLE_POLICY);
    assert_eq!(sb.run(&plugin("example"), &[], &[]).code, OK);
    for entry in std::fs::read_dir(sb.path("cache")).expect("cache") {
        std::fs::write(entry.expect("entry").path(), b"garbage").expect("corrupt");
    }
    let out = sb.run(&plugin("example"), &["--json"], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(
        out.stdout.contains("\"compiled\":\"cache-miss\""),
        "{}",
        out.stdout
    );
}

#[test]
fn json_output_is_one_event_per_line_ending_with_the_result() {
    let sb = Sandbox::new();
    sb.write_policy(EXAMPLE_POLICY);
    let out = sb.run(&plugin("example"), &["--json"], &[]);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect();
    assert!(events.iter().any(|e| e["event"] == "step"));
    let last = events.last().expect("result");
    assert_eq!(last["event"], "result");
    assert_eq!(last["ok"], true);
    assert_eq!(last["facts"]["status"], "200");

    sb.write_policy("");
    let refused = sb.run(&plugin("example"), &["--json"], &[]);
    let last: serde_json::Value =
        serde_json::from_str(refused.stdout.lines().last().expect("line")).expect("json");
    assert_eq!(last["ok"], false);
    assert_eq!(last["exit_code"], DENIED);
}

#[test]
fn inspect_shows_the_manifest_without_running() {
    let out = run_command({
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_opshost"));
        c.arg("inspect").arg(plugin("example")).arg("--json");
        c
    });
    assert_eq!(out.code, OK, "{}", out.combined());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["name"], "example");
    let grants: Vec<&str> = v["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|r| r["grant"].as_str())
        .collect();
    assert_eq!(grants, ["http=api/health:GET", "fs=work:rw"]);
    assert!(v["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .any(|i| i == "opshost:plugin/fs@0.2.0"));
    assert_eq!(v["sha256"].as_str().map(str::len), Some(64));
}

/// Append a custom section: still a valid component, but other bytes.
fn tampered(original: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    let name = b"extra";
    let payload = b"evil payload";
    bytes.push(0); // custom section id
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_pinned_policy_refuses_a_tampered_plugin() {
    let sb = Sandbox::new();
    let original = std::fs::read(plugin("example")).expect("read");
    sb.write_policy(&format!(
        "[[plugin]]\nvendor = \"opshost\"\nname = \"example\"\nsha256 = \"{}\"\nallow = [\"fs=work:rw\", \"http=api:GET\"]\n",
        sha256_hex(&original)
    ));
    assert_eq!(sb.run(&plugin("example"), &[], &[]).code, OK);
    let copy = sb.path("example-tampered.wasm");
    std::fs::write(&copy, tampered(&original)).expect("write");
    let out = sb.run(&copy, &[], &[]);
    assert_eq!(out.code, DENIED, "{}", out.combined());
    assert!(out.stderr.contains("tampered with"), "{}", out.stderr);
}

fn patched(name: &str, from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(plugin(name)).expect("read");
    let mut count = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from.as_bytes() {
            bytes[i..i + from.len()].copy_from_slice(to.as_bytes());
            count += 1;
        }
        i += 1;
    }
    assert!(count > 0, "{from} not found in {name}");
    bytes
}

#[test]
fn a_plugin_built_for_another_contract_is_refused() {
    let sb = Sandbox::new();
    let path = sb.path("noop-future.wasm");
    std::fs::write(
        &path,
        patched(
            "noop",
            "opshost:plugin/progress@0.2.0",
            "opshost:plugin/progress@0.9.0",
        ),
    )
    .expect("w");
    let out = sb.run(&path, &[], &[]);
    assert_eq!(out.code, DENIED, "{}", out.combined());
    assert!(
        out.stderr.contains("built against opshost:plugin@0.9.0"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_plugin_needing_a_newer_host_is_refused() {
    let sb = Sandbox::new();
    let path = sb.path("noop-new.wasm");
    std::fs::write(
        &path,
        patched("noop", "min_host = \"0.1.0\"", "min_host = \"9.1.0\""),
    )
    .expect("w");
    let out = sb.run(&path, &[], &[]);
    assert_eq!(out.code, DENIED, "{}", out.combined());
    assert!(
        out.stderr.contains("needs opshost 9.1.0 or newer"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_capability_used_but_not_declared_is_refused_before_instantiation() {
    let sb = Sandbox::new();
    sb.write_policy("[[plugin]]\nvendor = \"opshost-testing\"\nname = \"undeclared\"\nallow = [\"fs=work:rw\"]\n");
    let out = sb.run(&plugin("undeclared"), &[], &[]);
    assert_eq!(out.code, DENIED, "{}", out.combined());
    assert!(
        out.stderr
            .contains("imports the fs interface but its manifest requests no fs grant"),
        "{}",
        out.stderr
    );
    assert!(sb.audited("fs", "ok").is_empty());
}

#[test]
fn files_that_are_not_plugins_are_refused_with_a_reason() {
    let sb = Sandbox::new();
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "script.wasm",
            b"#!/bin/sh\nrm -rf /\n",
            "not a valid WebAssembly component",
        ),
        ("core.wasm", b"\0asm\x01\0\0\0", "not an opshost plugin"),
        (
            "truncated.wasm",
            b"\0asm\x0d\0\x01\0\x01",
            "not a valid WebAssembly component",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = sb.path(name);
        std::fs::write(&path, bytes).expect("write");
        let out = sb.run(&path, &[], &[]);
        assert_eq!(out.code, USAGE, "{name}: {}", out.combined());
        assert!(out.stderr.contains(want), "{name}: {}", out.stderr);
    }
    let out = sb.run(&sb.path("missing.wasm"), &[], &[]);
    assert_eq!(out.code, USAGE);
    assert!(out.stderr.contains("cannot read plugin"), "{}", out.stderr);
}

#[test]
fn malformed_policy_config_and_flags_are_usage_errors() {
    let sb = Sandbox::new();
    sb.write_policy(
        "[[plugin]]\nvendor = \"opshost\"\nname = \"example\"\nallow = [\"fs=work:write\"]\n",
    );
    let out = sb.run(&plugin("example"), &[], &[]);
    assert_eq!(out.code, USAGE, "{}", out.combined());
    assert!(
        out.stderr
            .contains("unknown fs verb \"write\": expected ro or rw"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("policy.toml"),
        "names the file: {}",
        out.stderr
    );

    sb.write_policy(EXAMPLE_POLICY);
    let out = sb.run(
        &plugin("example"),
        &["--allow", "net=anything:connect"],
        &[],
    );
    assert_eq!(out.code, USAGE);
    assert!(
        out.stderr.contains("unknown capability \"net\""),
        "{}",
        out.stderr
    );

    std::fs::write(sb.path("config.toml"), "[dir.work]\npth = 'x'\n").expect("config");
    let out = sb.run(&plugin("example"), &[], &[]);
    assert_eq!(out.code, USAGE);
    assert!(out.stderr.contains("unknown field `pth`"), "{}", out.stderr);
}

#[test]
fn a_granted_resource_missing_from_the_config_is_named() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.path("config.toml"),
        format!("[http.api]\nurl = \"{}\"\n", sb.api.url()),
    )
    .expect("config");
    sb.write_policy(EXAMPLE_POLICY);
    let out = sb.run(&plugin("example"), &[], &[]);
    assert_eq!(out.code, USAGE, "{}", out.combined());
    assert!(out.stderr.contains("no [dir.work] table"), "{}", out.stderr);
}

#[test]
fn a_plugin_error_is_exit_code_one_with_its_message() {
    let sb = Sandbox::new();
    let out = sb.run(&plugin("noop"), &[], &["calls", "many"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(
        out.stderr.contains("invalid input: calls takes a number"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_audit_log_never_holds_credentials() {
    let sb = Sandbox::new();
    let with_creds = sb
        .api
        .url()
        .replace("http://", "http://operator:url-password-77@");
    sb.write_config("");
    let text = std::fs::read_to_string(sb.path("config.toml")).expect("config");
    std::fs::write(
        sb.path("config.toml"),
        text.replace(&sb.api.url(), &with_creds),
    )
    .expect("config");
    sb.write_policy(EXAMPLE_POLICY);
    let out = sb.run(&plugin("example"), &[], &["?token=query-secret"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    let audit = sb.audit_text();
    assert!(!audit.is_empty());
    for secret in [
        "url-password-77",
        "db-password-123",
        "host-env-secret-42",
        "query-secret",
    ] {
        assert!(!audit.contains(secret), "audit leaks {secret}");
    }
}

#[test]
fn help_teaches_with_examples_and_exit_codes() {
    let out = run_command({
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_opshost"));
        c.arg("run").arg("--help");
        c
    });
    assert_eq!(out.code, OK);
    for want in [
        "db=NAME:read|write|admin",
        "container=NAME[/SERVICE]",
        "[[plugin]]",
        "--allow",
    ] {
        assert!(out.stdout.contains(want), "run --help lacks {want}");
    }
    let out = run_command({
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_opshost"));
        c.arg("--help");
        c
    });
    assert!(
        out.stdout.contains("Exit codes") && out.stdout.contains("opshost inspect"),
        "{}",
        out.stdout
    );
    let out = run_command(std::process::Command::new(env!("CARGO_BIN_EXE_opshost")));
    assert_eq!(out.code, USAGE);
}

fn opshost(args: &[&str]) -> Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_opshost"));
    c.args(args);
    run_command(c)
}

#[test]
fn signed_plugins_are_granted_by_signer_and_tampering_is_refused() {
    let sb = Sandbox::new();
    let key = sb.path("vendor.key");
    let key_str = key.to_str().expect("utf-8");
    let keygen = opshost(&["keygen", "--out", key_str]);
    assert_eq!(keygen.code, OK, "{}", keygen.combined());
    let public = keygen.stdout.trim().to_string();
    assert!(public.starts_with("ed25519:"), "{public}");
    assert_eq!(
        opshost(&["keygen", "--out", key_str]).code,
        USAGE,
        "never overwrites a key"
    );

    let signed = sb.path("example.wasm");
    std::fs::copy(plugin("example"), &signed).expect("copy");
    let signed_str = signed.to_str().expect("utf-8");
    assert_eq!(opshost(&["sign", signed_str, "--key", key_str]).code, OK);
    let inspect = opshost(&["inspect", signed_str]);
    assert!(
        inspect.stdout.contains(&format!("signed by {public}")),
        "{}",
        inspect.stdout
    );

    sb.write_policy(&format!(
        "[[plugin]]\nvendor = \"opshost\"\nname = \"example\"\nsigner = \"{public}\"\nallow = [\"fs=work:rw\", \"http=api:GET\"]\n"
    ));
    let out = sb.run(&signed, &[], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());

    // The same bytes without the .sig: the signer entry does not apply.
    let unsigned = sb.path("unsigned.wasm");
    std::fs::copy(plugin("example"), &unsigned).expect("copy");
    let out = sb.run(&unsigned, &[], &[]);
    assert_eq!(out.code, DENIED, "{}", out.combined());
    assert!(
        out.stderr.contains("requires a signature by") && out.stderr.contains("unsigned"),
        "{}",
        out.stderr
    );

    // Modified after signing: refused outright, even with one-run grants.
    std::fs::remove_file(sb.path("work/health-report.txt")).expect("first run wrote the report");
    std::fs::write(&signed, tampered(&std::fs::read(&signed).expect("read"))).expect("tamper");
    let out = sb.run(
        &signed,
        &["--allow", "fs=work:rw", "--allow", "http=api:GET"],
        &[],
    );
    assert_eq!(out.code, DENIED, "{}", out.combined());
    assert!(
        out.stderr.contains("signature file does not verify"),
        "{}",
        out.stderr
    );
    assert!(
        !sb.path("work/health-report.txt").exists(),
        "the tampered plugin never ran"
    );

    // Signed by someone else: not the policy's signer.
    let other_key = sb.path("other.key");
    opshost(&["keygen", "--out", other_key.to_str().expect("utf-8")]);
    std::fs::copy(plugin("example"), &signed).expect("copy");
    opshost(&[
        "sign",
        signed_str,
        "--key",
        other_key.to_str().expect("utf-8"),
    ]);
    let out = sb.run(&signed, &[], &[]);
    assert_eq!(out.code, DENIED, "{}", out.combined());
    assert!(
        out.stderr.contains("requires a signature by"),
        "{}",
        out.stderr
    );
}
