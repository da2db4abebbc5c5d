//! Plan mode and learn mode against the AGLedger stand-in (bundled mode:
//! real containers, real databases, real files).
//!
//! - `--plan` of backup, restore, upgrade and rollback changes nothing: the
//!   databases and their contents, the containers and when they started,
//!   every file with its hash are the same before and after; and the plan
//!   names the steps the real run then takes.
//! - `--learn` prints a policy; that policy lets the plugin run again, and
//!   without any one of its lines the run fails naming that line's grant.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::standin::*;
use common::*;
use sha2::{Digest, Sha256};

const MODE: Mode = Mode::Bundled;
fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::write(sb.path("config.toml"), operations_config(MODE)).expect("config");
    std::fs::create_dir_all(sb.path("backups")).expect("backups");
    let mut policy = String::new();
    for name in ["upgrade", "rollback", "restore", "backup"] {
        policy.push_str(&format!(
            "[[plugin]]\nvendor = \"opshost\"\nname = \"{name}\"\nallow = [{OPERATIONS_GRANTS}]\n"
        ));
    }
    sb.write_policy(&policy);
    sb
}

fn run(sb: &Sandbox, name: &str, flags: &[&str], args: &[&str]) -> Output {
    let mut all = vec!["--json", "--timeout", "15m"];
    all.extend_from_slice(flags);
    sb.run(&plugin(name), &all, args)
}

/// Every file below `dir` with the SHA-256 of its contents.
fn hashes(dir: &Path, into: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            hashes(&path, into);
        } else if let Ok(bytes) = std::fs::read(&path) {
            into.insert(
                path.display().to_string(),
                hex::encode(Sha256::digest(&bytes)),
            );
        }
    }
}

/// What a plan must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    databases: Vec<String>,
    contents: String,
    migrations: String,
    started: String,
    images: String,
    files: BTreeMap<String, String>,
}

fn snapshot(sb: &Sandbox) -> Snapshot {
    let mut files = BTreeMap::new();
    hashes(&sb.path("backups"), &mut files);
    hashes(Path::new(&MODE.install()), &mut files);
    Snapshot {
        databases: databases(MODE),
        contents: fingerprint(MODE),
        migrations: sql(
            MODE,
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM _migrations",
        ),
        started: started_at(MODE),
        images: ["agledger-api", "agledger-worker"]
            .iter()
            .map(|s| docker(&["inspect", "-f", "{{.Config.Image}}", &container(MODE, s)]))
            .collect::<Vec<_>>()
            .join(" "),
        files,
    }
}

/// The steps a `--json` run announced, in order.
fn steps(out: &Output) -> Vec<String> {
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "step")
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect()
}

fn plan_steps(out: &Output) -> Vec<String> {
    result_json(out)["plan"]["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Plan `name`, check nothing changed, and return the plan's result.
fn plan_changes_nothing(sb: &Sandbox, name: &str, args: &[&str]) -> Output {
    let before = snapshot(sb);
    let out = run(sb, name, &["--plan"], args);
    let result = result_json(&out);
    assert_eq!(result["mode"], "plan", "{}", out.combined());
    assert!(
        result["plan"]["changes"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "a plan of {name} intercepts changes: {}",
        out.combined()
    );
    assert_eq!(snapshot(sb), before, "the plan of {name} changed something");
    // The audit log says the intercepted calls were planned, not made:
    // every capability the plan intercepted has `planned` lines.
    let changes = result["plan"]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for change in &changes {
        let capability = change["capability"].as_str().unwrap_or_default();
        assert!(
            !sb.audited(capability, "planned").is_empty(),
            "the plan of {name} intercepted a {capability} call the audit log does not say was planned"
        );
    }
    out
}

/// A step's name without the numbers in it (a backup's name is its time).
fn shape(step: &str) -> String {
    let mut out = String::new();
    for c in step.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every step the real run took was in the plan (a plan goes past a step
/// it could not simulate to its end, so it names every runbook step).
fn plan_names_real_steps(plan: &Output, real: &Output, name: &str) {
    let planned: Vec<String> = plan_steps(plan).iter().map(|s| shape(s)).collect();
    // The runbook's steps (`step 2/6: stop the services`), and every step
    // of an operation that has no runbook; what a runbook step announces
    // inside itself may stop early in a plan (it read back a simulated
    // change), and the plan notes that instead.
    let all: Vec<String> = steps(real).iter().map(|s| shape(s)).collect();
    let runbook: Vec<String> = all
        .iter()
        .filter(|s| s.starts_with("step #/#: "))
        .cloned()
        .collect();
    let taken = if runbook.is_empty() { all } else { runbook };
    assert!(
        !taken.is_empty(),
        "{name} announced no steps: {}",
        real.combined()
    );
    let missing: Vec<&String> = taken.iter().filter(|s| !planned.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "the plan of {name} did not name {missing:?}\nplan: {planned:?}\nreal: {taken:?}\n{}",
        plan.combined()
    );
}

#[test]
fn plans_change_nothing_and_name_the_steps_the_real_runs_take() {
    let _lock = deployment_lock();
    let sb = sandbox();

    let plan = plan_changes_nothing(&sb, "backup", &[]);
    let real = run(&sb, "backup", &[], &[]);
    assert_eq!(real.code, OK, "{}", real.combined());
    plan_names_real_steps(&plan, &real, "backup");
    let backup = result_json(&real)["facts"]["backup"]
        .as_str()
        .expect("the backup's name")
        .to_string();

    let plan = plan_changes_nothing(&sb, "restore", &[&backup]);
    let real = run(&sb, "restore", &["--yes"], &[&backup]);
    assert_eq!(real.code, OK, "{}", real.combined());
    plan_names_real_steps(&plan, &real, "restore");

    let plan = plan_changes_nothing(&sb, "upgrade", &["--yes", "--ready-within", "20", "1.3.3"]);
    let real = run(
        &sb,
        "upgrade",
        &[],
        &["--yes", "--ready-within", "20", "1.3.3"],
    );
    assert_eq!(real.code, OK, "{}", real.combined());
    plan_names_real_steps(&plan, &real, "upgrade");

    let plan = plan_changes_nothing(&sb, "rollback", &["--yes", "--ready-within", "20"]);
    let real = run(&sb, "rollback", &[], &["--yes", "--ready-within", "20"]);
    assert_eq!(real.code, OK, "{}", real.combined());
    plan_names_real_steps(&plan, &real, "rollback");
    assert_eq!(health(MODE), 200);
}

/// The learned lines of a `--learn` run, and its policy block.
fn learned(out: &Output) -> (Vec<String>, String) {
    let result = result_json(out);
    let lines = result["learned"]["lines"]
        .as_array()
        .expect("learned lines")
        .iter()
        .filter_map(|l| l["grant"].as_str().map(str::to_string))
        .collect();
    let block = result["learned"]["policy"]
        .as_str()
        .expect("policy block")
        .to_string();
    (lines, block)
}

#[test]
fn a_learned_policy_runs_the_plugin_and_every_line_is_needed() {
    let _lock = deployment_lock();
    let sb = sandbox();
    // No policy at all: learn mode grants what the manifest requests.
    sb.write_policy("");
    let out = run(&sb, "backup", &["--learn"], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());
    let (lines, block) = learned(&out);
    assert!(block.contains("exact = true"), "{block}");
    assert!(
        lines.contains(&"db=agledger:admin".to_string()),
        "a backup dumps the database: {lines:?}"
    );
    assert!(
        lines.contains(&"fs=backups:rw".to_string()),
        "a backup writes its archive: {lines:?}"
    );
    // Learn runs are audited as such.
    assert!(sb.audit_text().contains("\"learn\""), "{}", sb.audit_text());

    sb.write_policy(&block);
    let again = run(&sb, "backup", &[], &[]);
    assert_eq!(
        again.code,
        OK,
        "the learned policy runs it: {}",
        again.combined()
    );

    for line in &lines {
        let without: String = block
            .lines()
            .filter(|l| !l.trim_start().starts_with(&format!("\"{line}\"")))
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(without, block, "{line} is a line of the block");
        sb.write_policy(&without);
        let out = run(&sb, "backup", &[], &[]);
        assert_ne!(out.code, OK, "without {line} the backup must fail");
        // The failure names the grant the line gave (the capability and
        // resource; the verb is the one the first refused call needed).
        let (capability_resource, _) = line.split_once(':').expect("grant text");
        let capability_resource = capability_resource
            .split_once('/')
            .map_or(capability_resource, |(head, _)| head);
        assert!(
            out.combined().contains(capability_resource),
            "without {line} the failure names it: {}",
            out.combined()
        );
        assert!(
            out.combined().contains("is not granted"),
            "{}",
            out.combined()
        );
    }
}
