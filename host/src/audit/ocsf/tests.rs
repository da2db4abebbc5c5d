use serde_json::Value;

use super::super::{AuditLog, Event, Format, PluginRef, OUTCOMES};
use super::*;

// The schema's requirements as data (see its header for the schema files
// and version they come from).
#[path = "../../../../tests/ocsf_check.rs"]
mod ocsf_check;

fn plugin(mode: &'static str) -> PluginRef {
    PluginRef {
        vendor: "opshost".into(),
        name: "backup".into(),
        version: "1.2.0".into(),
        sha256: "ab".repeat(32),
        mode,
    }
}

/// Events of every outcome and activity kind, lifecycle events with no
/// resource, and a run of repeats that is folded.
fn write_every_kind(log: &AuditLog, plugin: &PluginRef) {
    let event = |capability, resource, verb, outcome, detail| Event {
        time: crate::audit::now_rfc3339(),
        plugin,
        capability,
        resource,
        verb,
        outcome,
        detail,
        duration_us: 1500,
    };
    log.record(&event("run", "", "start", "ok", Some("fs=work:rw")))
        .expect("record");
    for (i, outcome) in OUTCOMES.iter().enumerate() {
        let (cap, resource, verb, detail) = [
            ("fs", "work", "write", Some("a.txt (3 bytes)")),
            ("db", "agledger", "execute", Some("InsertStmt")),
            ("http", "api", "send", Some("DELETE /v1/x")),
            ("container", "agledger", "stop", Some("api")),
            ("fs", "backups", "lock", None),
        ][i % 5];
        log.record(&event(cap, resource, verb, outcome, detail))
            .expect("record");
    }
    for _ in 0..3 {
        log.record(&event("fs", "work", "stat", "ok", Some("a.txt")))
            .expect("record");
    }
    log.record(&event("run", "", "end", "ok", Some("done")))
        .expect("record");
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn every_line_a_real_log_writes_has_the_required_fields() {
    for mode in crate::audit::MODES {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("audit.ndjson");
        let log = AuditLog::open_as(&path, Format::Ocsf).expect("open");
        write_every_kind(&log, &plugin(mode));
        drop(log);
        let lines = lines(&path);
        // start, one per outcome, the first stat, its 2 repeats, end.
        assert_eq!(lines.len(), 1 + OUTCOMES.len() + 2 + 1);
        for line in &lines {
            let problems = ocsf_check::problems(line);
            assert!(problems.is_empty(), "{problems:?} in {line}");
            assert_eq!(line["unmapped"]["mode"], mode);
        }
        let folded = &lines[lines.len() - 2];
        assert_eq!(folded["count"], 2, "{folded}");
        assert!(folded["start_time"].as_u64() <= folded["end_time"].as_u64());
        assert_eq!(folded["unmapped"]["duration_us"], 3000);
    }
}

#[test]
fn the_checker_rejects_what_the_schema_rejects() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("audit.ndjson");
    let log = AuditLog::open_as(&path, Format::Ocsf).expect("open");
    write_every_kind(&log, &plugin("run"));
    drop(log);
    let good = lines(&path).remove(1);
    let broken = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        ocsf_check::problems(&v)
    };
    for name in ocsf_check::REQUIRED {
        let p = broken(&|v| {
            v.as_object_mut().expect("object").remove(*name);
        });
        assert!(p.iter().any(|p| p.contains(name)), "{name}: {p:?}");
    }
    assert!(!broken(&|v| v["type_uid"] = 600399.into()).is_empty());
    assert!(!broken(&|v| v["status_id"] = 7.into()).is_empty());
    assert!(!broken(&|v| v["actor"] = serde_json::json!({})).is_empty());
    assert!(!broken(&|v| v["src_endpoint"] = serde_json::json!({"port": 1})).is_empty());
    assert!(!broken(&|v| v["metadata"]["profiles"] = serde_json::json!([])).is_empty());
    assert!(!broken(&|v| v["time"] = "2026-11-28T00:00:00Z".into()).is_empty());
}

#[test]
fn ocsf_lines_carry_the_same_facts_as_opshost_lines() {
    let dir = tempfile::tempdir().expect("tmp");
    let (native, ocsf) = (dir.path().join("n.ndjson"), dir.path().join("o.ndjson"));
    let p = plugin("plan");
    for (path, format) in [(&native, Format::Opshost), (&ocsf, Format::Ocsf)] {
        let log = AuditLog::open_as(path, format).expect("open");
        write_every_kind(&log, &p);
    }
    let read = |path: &std::path::Path| -> Vec<crate::audit::view::Record> {
        std::fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(|l| crate::audit::view::Record::parse(l).expect("record"))
            .collect()
    };
    let (native, ocsf) = (read(&native), read(&ocsf));
    assert_eq!(native.len(), ocsf.len());
    for (n, o) in native.iter().zip(&ocsf) {
        // The two logs were written moments apart: times differ.
        assert_eq!(
            (&n.plugin, &n.mode, &n.capability),
            (&o.plugin, &o.mode, &o.capability)
        );
        assert_eq!(
            (&n.resource, &n.verb, &n.outcome),
            (&o.resource, &o.verb, &o.outcome)
        );
        assert_eq!(
            (&n.detail, n.duration_us, n.repeated),
            (&o.detail, o.duration_us, o.repeated)
        );
        assert_eq!(n.mode, "plan");
    }
}

#[test]
fn every_outcome_has_a_status_severity_and_decision() {
    // (outcome, status_id, severity_id, blocked)
    let expected = [
        ("ok", 1, 1, false),
        ("held", 1, 1, false),
        ("planned", 99, 1, false),
        ("denied", 2, 3, true),
        ("refused", 2, 3, true),
        ("not-found", 2, 2, false),
        ("invalid-input", 2, 2, false),
        ("failed", 2, 2, false),
        ("uncertain", 0, 3, false),
        ("timed-out", 2, 2, false),
        ("unsupported", 2, 2, false),
        ("limit", 2, 3, true),
        ("trap", 2, 2, false),
    ];
    let listed: Vec<&str> = expected.iter().map(|e| e.0).collect();
    assert_eq!(listed, OUTCOMES, "a new outcome needs its OCSF mapping");
    for (outcome, id, severity, blocked) in expected {
        let s = status(outcome);
        assert_eq!(
            (s.id, s.severity, s.blocked),
            (id, severity, blocked),
            "{outcome}"
        );
    }
    assert_eq!(status("something-new").id, 99);
}

#[test]
fn verbs_map_to_activities() {
    use Activity::*;
    let cases = [
        ("http", "send", Some("GET /health"), Read),
        ("http", "send-streaming", Some("HEAD /x"), Read),
        ("http", "send", Some("POST /v1/keys"), Create),
        ("http", "send", Some("PATCH /v1/keys/1"), Update),
        ("http", "send", Some("DELETE /v1/keys/1"), Delete),
        ("http", "send", Some("TRACE /"), Other),
        ("db", "query", Some("SelectStmt"), Read),
        ("db", "query", Some("refused"), Read),
        ("db", "execute", Some("InsertStmt"), Create),
        ("db", "execute", Some("CreateStmt"), Create),
        ("db", "execute", Some("UpdateStmt"), Update),
        ("db", "execute", Some("AlterTableStmt"), Update),
        ("db", "execute", Some("DeleteStmt"), Delete),
        ("db", "execute", Some("TruncateStmt"), Delete),
        ("db", "execute", None, Update),
        ("db", "dump", None, Read),
        ("db", "restore", None, Update),
        ("db", "create-database", None, Create),
        ("db", "drop-database", None, Delete),
        ("db", "begin", None, Other),
        ("fs", "read", None, Read),
        ("fs", "write", None, Update),
        ("fs", "create", None, Create),
        ("fs", "remove", None, Delete),
        ("fs", "lock", None, Update),
        ("container", "inspect", None, Read),
        ("container", "pull", None, Create),
        ("container", "start", None, Update),
        ("container", "exec", None, Other),
        ("run", "start", None, Other),
        ("run", "end", None, Other),
        ("progress", "confirm", None, Other),
        ("fs", "a-verb-from-the-future", None, Other),
    ];
    for (cap, verb, detail, want) in cases {
        assert_eq!(activity(cap, verb, detail), want, "{cap} {verb} {detail:?}");
    }
}

#[test]
fn an_event_maps_field_by_field() {
    let p = plugin("learn");
    let e = Event {
        time: "2026-11-28T18:30:45.123456Z".into(),
        plugin: &p,
        capability: "db",
        resource: "agledger",
        verb: "execute",
        outcome: "denied",
        detail: Some("DeleteStmt"),
        duration_us: 2500,
    };
    let origin = Origin {
        hostname: Some("ops-1".into()),
    };
    let v = event(&e, None, &origin);
    assert_eq!(v["time"], 1_795_890_645_123u64);
    assert_eq!(
        v["metadata"]["original_time"],
        "2026-11-28T18:30:45.123456Z"
    );
    assert_eq!(
        (v["activity_id"].as_u64(), v["type_uid"].as_u64()),
        (Some(4), Some(600304))
    );
    assert_eq!(v["activity_name"], "Delete");
    assert_eq!(
        (v["status_id"].as_u64(), v["status_code"].as_str()),
        (Some(2), Some("denied"))
    );
    assert_eq!(v["status_detail"], "DeleteStmt");
    assert_eq!(
        (v["action"].as_str(), v["disposition"].as_str()),
        (Some("Denied"), Some("Blocked"))
    );
    assert_eq!(v["actor"]["app_name"], "opshost/backup 1.2.0");
    assert_eq!(v["actor"]["app_uid"], "ab".repeat(32));
    assert_eq!(v["api"]["operation"], "execute");
    assert_eq!(v["api"]["service"]["name"], "db");
    assert_eq!(v["resources"][0]["name"], "agledger");
    assert_eq!(v["resources"][0]["type"], "database");
    assert_eq!(v["src_endpoint"]["hostname"], "ops-1");
    assert_eq!(v["duration"], 2);
    assert_eq!(v["unmapped"]["duration_us"], 2500);
    assert_eq!(v["unmapped"]["mode"], "learn");
    assert!(v.get("count").is_none());
    // An unknown verb keeps its name as the activity.
    let other = event(
        &Event {
            verb: "exec",
            capability: "container",
            ..e.clone()
        },
        None,
        &Origin::default(),
    );
    assert_eq!(
        (
            other["activity_id"].as_u64(),
            other["activity_name"].as_str()
        ),
        (Some(99), Some("exec"))
    );
    assert!(ocsf_check::problems(&other).is_empty(), "{other}");
}
