use std::time::SystemTime;

use super::super::{AuditLog, Event, Format, PluginRef};
use super::*;

fn at(text: &str) -> SystemTime {
    humantime::parse_rfc3339(text).expect("time")
}

#[test]
fn times_are_rfc3339_dates_or_ages() {
    let now = at("2026-11-28T18:00:00Z");
    assert_eq!(
        parse_time("1h", now).expect("1h"),
        at("2026-11-28T17:00:00Z")
    );
    assert_eq!(
        parse_time("2d", now).expect("2d"),
        at("2026-11-26T18:00:00Z")
    );
    assert_eq!(
        parse_time("1h 30m", now).expect("1h 30m"),
        at("2026-11-28T16:30:00Z")
    );
    assert_eq!(
        parse_time("2026-11-28T14:05:00Z", now).expect("rfc3339"),
        at("2026-11-28T14:05:00Z")
    );
    assert_eq!(
        parse_time("2026-11-28 14:05", now).expect("weak"),
        at("2026-11-28T14:05:00Z")
    );
    assert_eq!(
        parse_time("2026-11-28", now).expect("date"),
        at("2026-11-28T00:00:00Z")
    );
    for bad in [
        "yesterday",
        "2026-13-01",
        "14:05",
        "2026-11-28T14:05:00+02:00",
    ] {
        let err = parse_time(bad, now).expect_err(bad).to_string();
        assert!(err.contains("neither a time"), "{bad}: {err}");
    }
}

fn record(name: &str, outcome: &str, capability: &str, mode: &str, time: &str) -> Record {
    Record {
        time: time.into(),
        plugin: RecordPlugin {
            vendor: "opshost".into(),
            name: name.into(),
            version: "1.0.0".into(),
            sha256: format!("{:0<64}", if name == "backup" { "beef" } else { "cafe" }),
        },
        mode: mode.into(),
        capability: capability.into(),
        resource: "work".into(),
        verb: "write".into(),
        outcome: outcome.into(),
        detail: None,
        duration_us: 1,
        repeated: None,
    }
}

#[test]
fn filters_match_any_value_of_each_and_all_of_them() {
    let r = record("backup", "denied", "fs", "plan", "2026-11-28T12:00:00.5Z");
    let f = |f: Filter| f.matches(&r);
    assert!(f(Filter::default()));
    for plugin in ["backup", "opshost/backup", "beef0000", "BEEF0000"] {
        assert!(
            f(Filter {
                plugins: vec![plugin.into()],
                ..Default::default()
            }),
            "{plugin}"
        );
    }
    for plugin in ["restore", "other/backup", "beef", "cafe0000"] {
        assert!(
            !f(Filter {
                plugins: vec![plugin.into()],
                ..Default::default()
            }),
            "{plugin}"
        );
    }
    let both = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(f(Filter {
        outcomes: both(&["ok", "denied"]),
        ..Default::default()
    }));
    assert!(!f(Filter {
        outcomes: both(&["ok"]),
        ..Default::default()
    }));
    assert!(f(Filter {
        capabilities: both(&["fs"]),
        modes: both(&["plan"]),
        ..Default::default()
    }));
    assert!(!f(Filter {
        capabilities: both(&["fs"]),
        modes: both(&["run"]),
        ..Default::default()
    }));
    let since = |t| Filter {
        since: Some(at(t)),
        ..Default::default()
    };
    let until = |t| Filter {
        until: Some(at(t)),
        ..Default::default()
    };
    assert!(f(since("2026-11-28T12:00:00Z")));
    assert!(!f(since("2026-11-28T12:00:01Z")));
    assert!(f(until("2026-11-28T12:00:01Z")));
    assert!(!f(until("2026-11-28T11:59:59Z")));
}

fn plugin(name: &str, mode: &'static str) -> PluginRef {
    PluginRef {
        vendor: "opshost".into(),
        name: name.into(),
        version: "1.0.0".into(),
        sha256: "cd".repeat(32),
        mode,
    }
}

/// A log written in both formats (the config changed), with a broken line
/// between them and one cut off at the end.
fn mixed_log(dir: &Path) -> PathBuf {
    let path = dir.join("audit.ndjson");
    let (backup, plan) = (plugin("backup", "run"), plugin("upgrade", "plan"));
    let event = |plugin, capability, verb, outcome| Event {
        time: crate::audit::now_rfc3339(),
        plugin,
        capability,
        resource: "work",
        verb,
        outcome,
        detail: Some("a.txt"),
        duration_us: 7,
    };
    let log = AuditLog::open_as(&path, Format::Opshost).expect("open");
    log.record(&event(&backup, "fs", "write", "ok"))
        .expect("record");
    log.record(&event(&backup, "db", "dump", "denied"))
        .expect("record");
    drop(log);
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str("this is not JSON\n\n{\"time\": 1}\n");
    std::fs::write(&path, text).expect("write");
    let log = AuditLog::open_as(&path, Format::Ocsf).expect("open");
    log.record(&event(&plan, "fs", "write", "planned"))
        .expect("record");
    for _ in 0..4 {
        log.record(&event(&plan, "db", "dump", "denied"))
            .expect("record");
    }
    drop(log);
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str("{\"class_uid\": 6003, \"time\"");
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn scans_both_formats_and_counts_what_is_not_an_event() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = mixed_log(dir.path());
    let all = scan(&path, &Filter::default(), None).expect("scan");
    // Lines: 2 opshost, junk, blank, junk, 3 OCSF (one folded), cut-off.
    assert_eq!(all.events, 5);
    assert_eq!(all.malformed, 3);
    let numbers: Vec<usize> = all.first_malformed.iter().map(|m| m.0).collect();
    assert_eq!(numbers, [3, 5, 9]);
    assert!(
        all.first_malformed[0].1.contains("not JSON"),
        "{:?}",
        all.first_malformed
    );
    assert!(
        all.first_malformed[1].1.contains("not an audit event"),
        "{:?}",
        all.first_malformed
    );
    let lines: Vec<usize> = all.matched.iter().map(|m| m.0).collect();
    assert_eq!(lines, [1, 2, 6, 7, 8]);
    assert_eq!(all.matched[4].1.repeated, Some(3));
    assert_eq!(all.matched[4].1.mode, "plan");

    let denied = Filter {
        outcomes: vec!["denied".into()],
        ..Default::default()
    };
    let s = scan(&path, &denied, None).expect("scan");
    assert_eq!(s.matched.iter().map(|m| m.0).collect::<Vec<_>>(), [2, 7, 8]);
    let s = scan(&path, &denied, Some(1)).expect("scan");
    assert_eq!(s.matched.iter().map(|m| m.0).collect::<Vec<_>>(), [8]);

    let typo = Filter {
        outcomes: vec!["denyed".into()],
        plugins: vec!["restore".into()],
        ..Default::default()
    };
    let s = scan(&path, &typo, None).expect("scan");
    assert!(s.matched.is_empty());
    let hints = s.unmatched(&typo).join("\n");
    assert!(
        hints.contains("outcome \"denyed\" (it has: denied, ok, planned)"),
        "{hints}"
    );
    assert!(
        hints.contains("plugin \"restore\" (it has: opshost/backup, opshost/upgrade)"),
        "{hints}"
    );

    assert!(matches!(
        scan(&dir.path().join("none"), &Filter::default(), None),
        Err(LogError::Missing(_))
    ));
}

#[test]
fn the_table_fits_the_terminal_and_json_keeps_every_fact() {
    let mut r = record("backup", "ok", "fs", "plan", "2026-11-28T12:00:00.123456Z");
    r.detail = Some("x".repeat(300));
    r.repeated = Some(41);
    let rows = [(3, r.clone())];
    let mut out = Vec::new();
    write_table(&mut out, &rows, Some(100)).expect("table");
    let text = String::from_utf8(out).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("TIME (UTC)"), "{text}");
    assert!(lines.iter().all(|l| l.chars().count() <= 100), "{text}");
    assert!(
        lines[1].starts_with("2026-11-28 12:00:00  backup 1.0.0 [plan]"),
        "{text}"
    );
    assert!(
        lines[1].contains("ok (41 more)") && lines[1].ends_with('…'),
        "{text}"
    );
    // Not a terminal: nothing cut.
    let mut out = Vec::new();
    write_table(&mut out, &rows, None).expect("table");
    assert!(String::from_utf8(out)
        .expect("utf8")
        .contains(&"x".repeat(300)));

    let mut out = Vec::new();
    write_json(&mut out, &rows).expect("json");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("one JSON line");
    assert_eq!(v["line"], 3);
    assert_eq!(v["mode"], "plan");
    assert_eq!(v["repeated"], 41);
    assert_eq!(v["plugin"]["sha256"], r.plugin.sha256);
    assert_eq!(v["time"], "2026-11-28T12:00:00.123456Z");
}

#[test]
fn the_config_names_the_log_relative_to_itself() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("opshost.toml");
    // The viewer reads only [audit]: other tables need not be valid here.
    std::fs::write(
        &config,
        "[audit]\npath = 'logs/a.ndjson'\nformat = 'ocsf'\n[db.x]\n",
    )
    .expect("write");
    let l = locate(None, Some(&config)).expect("locate");
    assert_eq!(l.path, dir.path().join("logs/a.ndjson"));
    assert!(l.source.contains("[audit] path in"), "{}", l.source);
    let l = locate(Some("/x.ndjson".into()), Some(&config)).expect("locate");
    assert_eq!(
        (l.path, l.source.as_str()),
        (PathBuf::from("/x.ndjson"), "--log")
    );
    std::fs::write(&config, "[dir.work]\npath = 'w'\n").expect("write");
    assert_eq!(
        locate(None, Some(&config)).expect("locate").path,
        AuditLog::default_path()
    );
}
