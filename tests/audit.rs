//! The audit log for security teams, through the real CLI: real plugin
//! runs write OCSF API Activity events (each checked against the schema's
//! required fields), and `opshost audit` filters that log.

mod common;
mod ocsf_check;

use common::*;
use serde_json::Value;

const POLICY: &str = r#"
[[plugin]]
vendor = "opshost"
name = "example"
allow = ["fs=work:rw", "http=api:GET"]

[[plugin]]
vendor = "opshost-testing"
name = "hostile"
allow = ["fs=work:ro", "http=api:GET", "db=agledger:read", "container=agledger/api:logs"]
"#;

/// `opshost audit ARGS` with the sandbox's config (whose [audit] path
/// names the log the runs wrote).
fn audit(sb: &Sandbox, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_opshost"));
    cmd.arg("audit")
        .arg("--config")
        .arg(sb.path("config.toml"))
        .args(args)
        .env_remove("OPSHOST_AUDIT_LOG");
    run_command(cmd)
}

/// `opshost audit --json ARGS`: the events it printed.
fn audit_json(sb: &Sandbox, args: &[&str]) -> Vec<Value> {
    let out = audit(sb, &[&["--json"], args].concat());
    assert_eq!(out.code, OK, "{args:?}: {}", out.combined());
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn field<'a>(events: &'a [Value], name: &str) -> Vec<&'a str> {
    events
        .iter()
        .map(|e| e[name].as_str().unwrap_or("?"))
        .collect()
}

#[test]
fn ocsf_runs_are_valid_and_the_viewer_filters_them() {
    let sb = Sandbox::new();
    sb.write_config("[audit]\npath = \"audit.ndjson\"\nformat = \"ocsf\"\n");
    sb.write_policy(POLICY);

    // 1. A successful run.
    let out = sb.run(&plugin("example"), &[], &["first"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // 2. A call the policy does not allow, stopped while running.
    let out = sb.run(&plugin("hostile"), &[], &["read", "../outside/secret.txt"]);
    assert_eq!(out.code, DENIED, "{}", out.combined());
    // 3. A run refused before it starts (a grant missing from the policy).
    sb.write_policy(
        "[[plugin]]\nvendor = \"opshost\"\nname = \"example\"\nallow = [\"fs=work:rw\"]\n",
    );
    let out = sb.run(&plugin("example"), &[], &[]);
    assert_eq!(out.code, DENIED, "{}", out.combined());

    // Every line is an OCSF 1.8.0 API Activity event.
    let lines = sb.audit();
    assert!(lines.len() >= 8, "{lines:?}");
    for line in &lines {
        let problems = ocsf_check::problems(line);
        assert!(problems.is_empty(), "{problems:?} in {line}");
    }
    let outcomes: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["status_code"].as_str())
        .collect();
    for want in ["ok", "denied", "refused"] {
        assert!(outcomes.contains(&want), "{want} not in {outcomes:?}");
    }
    let denied = lines
        .iter()
        .find(|l| l["status_code"] == "denied")
        .expect("a denied line");
    assert_eq!(denied["status_id"], 2);
    assert_eq!(denied["action_id"], 2);
    assert_eq!(denied["api"]["service"]["name"], "fs");
    assert_eq!(denied["resources"][0]["name"], "work");
    assert_eq!(denied["unmapped"]["plugin"]["name"], "hostile");
    let write = lines
        .iter()
        .find(|l| l["api"]["operation"] == "write-stream")
        .expect("the report's write");
    assert_eq!(
        (write["activity_id"].as_u64(), write["status_id"].as_u64()),
        (Some(3), Some(1))
    );

    // The viewer reads the log the config names.
    let all = audit_json(&sb, &[]);
    assert_eq!(all.len(), lines.len());
    assert!(all.iter().all(|e| e["mode"] == "run"));

    let hostile = audit_json(&sb, &["--plugin", "opshost-testing/hostile"]);
    assert!(!hostile.is_empty());
    assert!(hostile.iter().all(|e| e["plugin"]["name"] == "hostile"));
    let example = audit_json(&sb, &["--plugin", "example"]);
    assert_eq!(hostile.len() + example.len(), all.len());

    let denied = audit_json(&sb, &["--outcome", "denied"]);
    assert_eq!(field(&denied, "outcome"), ["denied"]);
    assert_eq!(
        denied[0]["detail"]
            .as_str()
            .map(|d| d.contains("leaves the granted directory")),
        Some(true)
    );
    let stopped = audit_json(&sb, &["--outcome", "denied,refused"]);
    assert_eq!(stopped.len(), 2, "{stopped:?}");

    let fs = audit_json(&sb, &["--capability", "fs"]);
    assert!(!fs.is_empty());
    assert!(fs.iter().all(|e| e["capability"] == "fs"));
    let fs_example = audit_json(&sb, &["--capability", "fs", "--plugin", "example"]);
    assert!(fs_example.iter().any(|e| e["verb"] == "write-stream"));
    assert!(fs_example.len() < fs.len());

    // --since/--until split the log at the moment between the runs.
    let after = audit_json(&sb, &["--since", &between]);
    let before = audit_json(&sb, &["--until", &between]);
    assert_eq!(after.len() + before.len(), all.len());
    assert!(before.iter().all(|e| e["plugin"]["name"] == "example"));
    assert!(after.iter().any(|e| e["plugin"]["name"] == "hostile"));
    assert_eq!(audit_json(&sb, &["--since", "1h"]).len(), all.len());
    assert!(audit_json(&sb, &["--until", "1h"]).is_empty());
    assert_eq!(audit_json(&sb, &["--last", "2"]), all[all.len() - 2..]);

    // The table: a header, one row per event, no JSON.
    let table = audit(&sb, &["--outcome", "denied"]);
    assert_eq!(table.code, OK, "{}", table.combined());
    let rows: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(rows.len(), 2, "{}", table.stdout);
    assert!(
        rows[0].starts_with("TIME (UTC)") && rows[0].contains("OUTCOME"),
        "{}",
        table.stdout
    );
    assert!(
        rows[1].contains("hostile") && rows[1].contains("denied"),
        "{}",
        table.stdout
    );
    assert!(
        table.stderr.contains(&format!("1 of {} events", all.len())),
        "{}",
        table.stderr
    );

    // A typo matches nothing and says what the log has.
    let typo = audit(&sb, &["--outcome", "denyed"]);
    assert_eq!(typo.code, OK, "{}", typo.combined());
    assert!(typo.stdout.is_empty());
    assert!(
        typo.stderr
            .contains("no event in the log has outcome \"denyed\""),
        "{}",
        typo.stderr
    );
    let bad = audit(&sb, &["--since", "last tuesday"]);
    assert_eq!(bad.code, USAGE, "{}", bad.combined());
    assert!(bad.stderr.contains("--since"), "{}", bad.stderr);

    // A line that is not an event is skipped, named, and makes exit 6.
    let mut text = sb.audit_text();
    text.push_str("{\"edited\": true}\n");
    std::fs::write(sb.path("audit.ndjson"), text).expect("append");
    let edited = audit(&sb, &["--json"]);
    assert_eq!(edited.code, ATTENTION, "{}", edited.combined());
    assert_eq!(edited.stdout.lines().count(), all.len());
    assert!(
        edited
            .stderr
            .contains(&format!("line {}: not an audit event", all.len() + 1)),
        "{}",
        edited.stderr
    );
}

#[test]
fn a_missing_log_is_a_clear_usage_error() {
    let sb = Sandbox::new();
    let out = audit(
        &sb,
        &["--log", sb.path("nothing.ndjson").to_str().expect("utf8")],
    );
    assert_eq!(out.code, USAGE, "{}", out.combined());
    assert!(
        out.stderr.contains("there is no audit log at"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("[log from --log]"), "{}", out.stderr);
}

#[test]
fn opshost_format_logs_read_the_same_and_plan_runs_say_so() {
    // The default format, a run and a plan run: the viewer shows both.
    let sb = Sandbox::new();
    sb.write_config("[audit]\npath = \"audit.ndjson\"\n");
    sb.write_policy(POLICY);
    let out = sb.run(&plugin("example"), &[], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());
    let ran = sb.audit();
    // Lines of ordinary runs are as before modes existed.
    assert!(ran
        .iter()
        .all(|l| l.get("class_uid").is_none() && l["plugin"].get("mode").is_none()));
    let out = sb.run(&plugin("example"), &["--plan"], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());
    let all = sb.audit();
    let planned = &all[ran.len()..];
    assert!(!planned.is_empty());
    assert!(
        planned.iter().all(|l| l["plugin"]["mode"] == "plan"),
        "{planned:?}"
    );
    assert!(
        planned.iter().any(|l| l["outcome"] == "planned"),
        "{planned:?}"
    );

    let events = audit_json(&sb, &["--plugin", "opshost/example", "--mode", "run"]);
    assert_eq!(events.len(), ran.len());
    assert_eq!(field(&events, "verb").first(), Some(&"start"));
    let plan = audit_json(&sb, &["--mode", "plan"]);
    assert_eq!(plan.len(), planned.len());
    let changes = audit_json(&sb, &["--outcome", "planned"]);
    assert!(
        changes
            .iter()
            .all(|e| e["mode"] == "plan" && e["capability"] == "fs"),
        "{changes:?}"
    );
}
