//! Hostile plugins: every attack must be denied or stopped, with a clear
//! message, a distinct exit code and an audit line.

mod common;

use common::*;

const HOSTILE_POLICY: &str = r#"
[[plugin]]
vendor = "opshost-testing"
name = "hostile"
allow = ["fs=work:ro", "http=api:GET", "db=agledger:read", "container=agledger/api:logs"]
"#;

fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.write_policy(HOSTILE_POLICY);
    sb
}

/// Run an attack; assert it was denied with `message` and audited as such.
fn assert_denied(sb: &Sandbox, args: &[&str], capability: &str, message: &str) {
    let out = sb.run(&plugin("hostile"), &[], args);
    assert_eq!(out.code, DENIED, "{args:?}: {}", out.combined());
    assert!(
        out.stderr.contains(message),
        "{args:?}: want {message:?} in {}",
        out.stderr
    );
    let denied = sb.audited(capability, "denied");
    assert!(
        denied
            .iter()
            .any(|e| e["detail"].as_str().is_some_and(|d| d.contains(message))),
        "{args:?}: no denied audit line with {message:?}: {denied:?}"
    );
}

fn fact<'a>(out: &'a Output, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(key)
                .filter(|rest| rest.starts_with("  "))
                .map(str::trim)
        })
        .unwrap_or_else(|| panic!("no fact {key} in {}", out.stdout))
}

#[test]
fn dot_dot_escape_is_denied() {
    assert_denied(
        &sandbox(),
        &["read", "../outside/secret.txt"],
        "fs",
        "leaves the granted directory",
    );
}

#[test]
fn absolute_path_is_denied() {
    assert_denied(
        &sandbox(),
        &["read", "/etc/passwd"],
        "fs",
        "leaves the granted directory",
    );
}

#[test]
fn symlink_out_of_the_directory_is_denied() {
    let sb = sandbox();
    std::os::unix::fs::symlink(sb.path("outside"), sb.path("work/link-out")).expect("symlink");
    assert_denied(
        &sb,
        &["read", "link-out/secret.txt"],
        "fs",
        "outside the granted directory",
    );
    std::os::unix::fs::symlink("/etc/passwd", sb.path("work/passwd")).expect("symlink");
    assert_denied(
        &sb,
        &["read", "passwd"],
        "fs",
        "outside the granted directory",
    );
}

#[test]
fn a_granted_file_can_be_read() {
    let out = sandbox().run(&plugin("hostile"), &[], &["read", "hello.txt"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(out.stdout.contains("read 5 bytes"));
}

#[test]
fn writing_with_a_read_only_grant_is_denied() {
    let sb = sandbox();
    assert_denied(&sb, &["write-ro"], "fs", "fs=work:rw is not granted");
    assert_denied(&sb, &["create-ro"], "fs", "fs=work:rw is not granted");
    assert!(!sb.path("work/planted.txt").exists());
}

#[test]
fn a_directory_not_granted_is_denied() {
    assert_denied(
        &sandbox(),
        &["other-dir"],
        "fs",
        "fs=secret:ro is not granted",
    );
}

#[test]
fn a_host_not_granted_is_denied_and_never_contacted() {
    let sb = sandbox();
    assert_denied(&sb, &["other-api"], "http", "http=other:GET is not granted");
    assert_eq!(sb.evil.hits(), 0);
}

#[test]
fn a_method_not_granted_is_denied() {
    let sb = sandbox();
    assert_denied(
        &sb,
        &["post"],
        "http",
        "http=api/health:POST is not granted",
    );
    assert_eq!(sb.api.hits(), 0);
}

#[test]
fn a_redirect_to_a_host_not_granted_is_denied_and_not_followed() {
    let sb = sandbox();
    assert_denied(
        &sb,
        &["get", "/redirect-out"],
        "http",
        "redirects are followed only inside the grant",
    );
    assert_eq!(sb.evil.hits(), 0, "the redirect target was contacted");
}

#[test]
fn a_redirect_inside_the_grant_is_followed() {
    let out = sandbox().run(&plugin("hostile"), &[], &["get", "/redirect-in"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert_eq!(fact(&out, "final path"), "/health");
}

#[test]
fn a_redirect_loop_ends_with_a_clear_error() {
    let out = sandbox().run(&plugin("hostile"), &[], &["get", "/redirect-loop"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(
        out.stderr.contains("more than 10 redirects"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_path_trick_cannot_leave_the_base_url() {
    let sb = sandbox();
    for path in ["//127.0.0.1:9/x", "/%2e%2e/x", "http://evil/"] {
        let out = sb.run(&plugin("hostile"), &[], &["get", path]);
        assert_ne!(out.code, OK, "{path}: {}", out.combined());
    }
    assert_eq!(sb.evil.hits(), 0);
}

#[test]
fn a_host_header_is_refused() {
    let out = sandbox().run(&plugin("hostile"), &[], &["host-header"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(
        out.stderr.contains("is set by the host, not the plugin"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_environment_and_arguments_are_empty() {
    let out = sandbox().run(&plugin("hostile"), &[], &["env"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert_eq!(fact(&out, "vars"), "0");
    assert_eq!(fact(&out, "args"), "0");
    assert!(!out.combined().contains("host-env-secret-42"));
}

#[test]
fn sockets_are_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr").to_string();
    let out = sandbox().run(&plugin("hostile"), &[], &["socket", &addr]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(
        fact(&out, "socket").starts_with("refused"),
        "{}",
        out.stdout
    );
    assert!(
        listener.accept().is_err(),
        "the plugin reached the listener"
    );
}

#[test]
fn the_host_filesystem_is_invisible() {
    let out = sandbox().run(&plugin("hostile"), &[], &["ambient-fs"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(fact(&out, "list").starts_with("refused"), "{}", out.stdout);
    assert!(fact(&out, "read").starts_with("refused"), "{}", out.stdout);
}

#[test]
fn an_infinite_loop_is_stopped_at_the_deadline() {
    let sb = sandbox();
    let out = sb.run(&plugin("hostile"), &["--timeout", "2s"], &["loop"]);
    assert_eq!(out.code, LIMIT, "{}", out.combined());
    assert!(
        out.stderr.contains("time limit reached (2s)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--timeout"),
        "says how to raise it: {}",
        out.stderr
    );
    assert_eq!(sb.audited("run", "limit").len(), 1);
}

#[test]
fn a_memory_bomb_is_stopped_at_the_cap() {
    let sb = sandbox();
    let out = sb.run(&plugin("hostile"), &["--memory-mib", "64"], &["memory"]);
    assert_eq!(out.code, LIMIT, "{}", out.combined());
    assert!(
        out.stderr.contains("memory limit reached (64 MiB)"),
        "{}",
        out.stderr
    );
    assert_eq!(sb.audited("run", "limit").len(), 1);
}

#[test]
fn a_log_flood_is_stopped_at_the_cap() {
    for attack in ["flood", "progress-flood"] {
        let sb = sandbox();
        let out = sb.run(&plugin("hostile"), &["--log-kib", "64"], &[attack]);
        assert_eq!(
            out.code,
            LIMIT,
            "{attack}: {}",
            &out.stderr[out.stderr.len().saturating_sub(500)..]
        );
        assert!(
            out.stderr.contains("log output limit reached (64 KiB)"),
            "{attack}"
        );
        assert!(
            out.stderr.len() < 200 << 10,
            "{attack}: output not capped: {} bytes",
            out.stderr.len()
        );
        assert_eq!(sb.audited("run", "limit").len(), 1);
    }
}

#[test]
fn a_panic_shows_its_message() {
    let sb = sandbox();
    let out = sb.run(&plugin("hostile"), &[], &["panic"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(
        out.stderr.contains("hostile plugin panicked on purpose"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("the plugin crashed"), "{}", out.stderr);
    assert_eq!(sb.audited("run", "trap").len(), 1);
}

#[test]
fn db_verbs_beyond_the_grant_are_denied() {
    let sb = sandbox();
    assert_denied(&sb, &["db-admin"], "db", "db=agledger:admin is not granted");
    assert_denied(&sb, &["db-other"], "db", "db=other:read is not granted");
}

#[test]
fn container_verbs_services_and_projects_beyond_the_grant_are_denied() {
    let sb = sandbox();
    assert_denied(
        &sb,
        &["container-exec"],
        "container",
        "container=agledger/api:exec is not granted",
    );
    assert_denied(
        &sb,
        &["container-worker-logs"],
        "container",
        "container=agledger/worker:logs is not granted",
    );
    assert_denied(
        &sb,
        &["container-other-project"],
        "container",
        "container=otherproject:inspect is not granted",
    );
}

#[test]
fn a_granted_db_call_to_an_unreachable_server_fails_clearly() {
    let sb = sandbox();
    let out = sb.run(&plugin("hostile"), &[], &["db-granted"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(
        out.stderr.contains("cannot connect to the database"),
        "{}",
        out.stderr
    );
    assert!(
        !out.combined().contains("db-password-123") && !sb.audit_text().contains("db-password-123")
    );
}

#[test]
fn a_host_call_flood_is_stopped_and_the_audit_log_stays_small() {
    for attack in ["call-flood", "call-flood-alternating"] {
        let sb = sandbox();
        let out = sb.run(
            &plugin("hostile"),
            &["--max-host-calls", "20000"],
            &[attack],
        );
        assert_eq!(out.code, LIMIT, "{attack}: {}", out.combined());
        assert!(
            out.stderr.contains("host call limit reached (20000"),
            "{attack}: {}",
            out.stderr
        );
        let audit = sb.audit();
        // Folding bounds identical calls in a row; the budget bounds the rest.
        let bound = if attack == "call-flood" { 10 } else { 20_010 };
        assert!(audit.len() < bound, "{attack}: {} audit lines", audit.len());
        // Every call is accounted for: a folded line counts its repeats.
        let counted: u64 = audit
            .iter()
            .filter(|e| e["capability"] == "fs" && e["outcome"] != "limit")
            .map(|e| e["repeated"].as_u64().unwrap_or(1))
            .sum();
        // The call that crossed the limit happened, and is audited too.
        assert_eq!(counted, 20_001, "{attack}: open + stats");
        assert!(
            audit.iter().any(|e| e["outcome"] == "limit"),
            "{attack}: the limit is audited"
        );
    }
}

#[test]
fn a_huge_argument_is_reported_as_a_limit() {
    let sb = sandbox();
    let out = sb.run(&plugin("hostile"), &["--memory-mib", "1024"], &["huge-arg"]);
    assert_eq!(out.code, LIMIT, "{}", out.combined());
    assert!(out.stderr.contains("copy limit"), "{}", out.stderr);
}

#[test]
fn confirm_floods_and_huge_names_cannot_flood_the_audit_log() {
    for attack in ["confirm-flood", "big-names"] {
        let sb = sandbox();
        let out = sb.run(
            &plugin("hostile"),
            &["--max-host-calls", "1000", "--memory-mib", "256"],
            &[attack],
        );
        assert_eq!(out.code, LIMIT, "{attack}: {}", out.combined());
        assert!(
            out.stderr.contains("host call limit reached"),
            "{attack}: {}",
            out.stderr
        );
        let size = std::fs::metadata(sb.path("audit.ndjson"))
            .expect("audit")
            .len();
        assert!(
            size < 1 << 20,
            "{attack}: the audit log grew to {size} bytes"
        );
        assert!(
            sb.audit().len() <= 1010,
            "{attack}: {} lines",
            sb.audit().len()
        );
    }
}
