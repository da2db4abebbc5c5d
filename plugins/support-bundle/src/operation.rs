//! The support-bundle operation: collect, redact everything in two
//! passes, then pack (or, with `--dry-run`, only say what would be packed).
//! It takes no deployment lock: it changes nothing, and a section that
//! fails while another operation moves containers is recorded, not fatal.

use agledger_ops::{clock, deployment, human_bytes};
use opshost_sdk::fs::{self, Dir, MemberSource};
use opshost_sdk::redact::RuleSet;
use opshost_sdk::{fail, invalid, progress, Context, Report, Result};
use serde_json::{json, Value};

use crate::collect::{self, pretty, Collection, SUPPORT};
use crate::rules::OperatorRules;
use crate::{database, redaction};

/// `[dir.bundles]`: where bundles are written.
const BUNDLES: &str = "bundles";
const REPORT_JSON: &str = "redaction-report.json";
const REPORT_TEXT: &str = "redaction-report.txt";

opshost_sdk::manifest! {
    name: "support-bundle",
    vendor: "opshost",
    description: "Collects a support bundle (config, container states and logs, schema, row counts, migrations, versions, API answers, operator-named files), every file redacted, as support-bundle-<ts>.tar.gz with a redaction report",
    applies_to: ">=1.0.0, <2.0.0",
    min_host: "0.1.0",
    requests: [
        ("fs=compose:ro", "reads .env and the compose files (redacted before they are packed)"),
        ("fs=support:ro", "reads files the operator names with --include and the --rules file"),
        ("fs=bundles:rw", "writes support-bundle-<ts>.tar.gz"),
        ("container=agledger:inspect,logs", "container states and the last 1000 log lines of each service"),
        ("db=agledger:read", "schema-only dump, table row counts, migration state, server version and size"),
        ("http=api/health:GET", "records /health"),
        ("http=api/conformance:GET", "records /conformance"),
        ("http=api/status:GET", "records /status"),
        ("http=api/v1/admin/support-bundle:GET", "records the product's own support bundle (the host adds the platform key)"),
    ],
}

struct SupportBundle;

impl opshost_sdk::Operation for SupportBundle {
    fn run(args: Vec<String>) -> Result<Report> {
        let opts = crate::parse(&args).map_err(|e| invalid(format!("{e}\n{}", crate::USAGE)))?;
        if opts.help {
            return Ok(Report::ok(crate::USAGE));
        }
        let input = Input::check(&opts)?;
        let now = clock::now();
        let c = collect_all(&opts, &input, now);

        progress::step("redact", None);
        let mut red = redaction::run(&input.rule_set, c.items, c.left_out, c.problems);
        let root = format!("support-bundle-{}", clock::stamp(now));
        let report_json = pretty(&red.report_json());
        let report_text = red.report_text();
        let mut members: Vec<(String, Vec<u8>)> = std::mem::take(&mut red.members)
            .into_iter()
            .map(|(p, b)| (format!("{root}/{p}"), b))
            .collect();
        members.push((format!("{root}/{REPORT_JSON}"), report_json));
        members.push((
            format!("{root}/{REPORT_TEXT}"),
            report_text.clone().into_bytes(),
        ));

        match &input.out {
            None => Ok(dry_run_report(&members, &red, &report_text)),
            Some(out) => write_bundle(out, &format!("{root}.tar.gz"), members, &red),
        }
    }
}

/// The operator's input, all checked before anything is collected.
struct Input {
    support: Option<Dir>,
    rules: OperatorRules,
    rule_set: RuleSet,
    /// `[dir.bundles]`; none for `--dry-run`, which writes nothing.
    out: Option<Dir>,
}

impl Input {
    fn check(opts: &crate::Options) -> Result<Self> {
        let support = if opts.include.is_empty() && opts.rules.is_none() {
            None
        } else {
            Some(fs::open(SUPPORT).context(format!("opening [dir.{SUPPORT}]"))?)
        };
        let rules = match (&opts.rules, &support) {
            (Some(path), Some(dir)) => {
                let origin = format!("--rules {path}");
                let bytes = dir.read(path).context(&origin)?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| invalid(format!("{origin}: not UTF-8 text")))?;
                OperatorRules::parse(&text, &origin).map_err(invalid)?
            }
            _ => OperatorRules::default(),
        };
        let rule_set = rules.rule_set().map_err(invalid)?;
        if let Some(dir) = &support {
            for path in &opts.include {
                dir.stat(path)
                    .context(format!("--include {path} (a path in [dir.{SUPPORT}])"))?;
            }
        }
        let out = if opts.dry_run {
            None
        } else {
            let dir = fs::open(BUNDLES).context(format!("opening [dir.{BUNDLES}]"))?;
            if !dir.writable() {
                return Err(invalid(format!(
                    "[dir.{BUNDLES}] is granted read-only: grant fs={BUNDLES}:rw, or use --dry-run"
                )));
            }
            Some(dir)
        };
        Ok(Self {
            support,
            rules,
            rule_set,
            out,
        })
    }
}

/// Every section; one that fails is recorded and the others go on.
fn collect_all(opts: &crate::Options, input: &Input, now: i64) -> Collection {
    let mut c = Collection::default();
    c.fact("bundle_time", clock::rfc3339(now));
    c.fact(
        "plugin",
        format!("support-bundle {}", env!("CARGO_PKG_VERSION")),
    );
    c.section("compose", |c| {
        collect::compose(c)?;
        let env = deployment::Env::open()?;
        if let Some(v) = env.file.value(deployment::VERSION_KEY) {
            c.fact("agledger_version_env", v.trim().to_string());
        }
        Ok(())
    });
    c.section("containers", collect::containers);
    c.section("api", collect::api);
    c.section("database", database::collect);
    if let (Some(dir), false) = (&input.support, opts.include.is_empty()) {
        c.section("included", |c| collect::included(c, dir, &opts.include));
    }
    if input.rules.count() > 0 {
        c.fact("operator_rules", input.rules.count());
    }
    let facts = pretty(&Value::Object(c.facts.clone()));
    c.add("system/facts.json", facts);
    let summary = pretty(&c.summary());
    c.add("collection.json", summary);
    c
}

/// Pack the members as `name` (atomic in the host) and report it.
fn write_bundle(
    out: &Dir,
    name: &str,
    members: Vec<(String, Vec<u8>)>,
    red: &redaction::Outcome,
) -> Result<Report> {
    progress::step("pack", None);
    if out.stat(name).is_ok() {
        return Err(fail(format!(
            "{name} exists already in [dir.{BUNDLES}]: run again in a second"
        )));
    }
    let members: Vec<(String, MemberSource)> = members
        .into_iter()
        .map(|(p, b)| (p, MemberSource::Bytes(b)))
        .collect();
    let packed = out
        .pack(name, &members, true)
        .context(format!("packing {name}"))?;
    let size = out.stat(name).map(|e| e.size).unwrap_or_default();
    let problems = &red.problems;
    let mut report = if problems.is_empty() {
        Report::ok(format!("{name}: {} files, redacted", packed.len()))
    } else {
        Report::attention(format!(
            "{name}: {} files, redacted; {} part(s) could not be collected",
            packed.len(),
            problems.len()
        ))
    };
    report = report
        .fact("bundle", name)
        .fact("size", human_bytes(size))
        .fact("redactions", red.redactions())
        .fact("left out", red.left_out.len());
    for (section, error) in problems {
        report = report.fact(format!("not collected: {section}"), error);
    }
    let listed: Vec<Value> = packed
        .iter()
        .map(|m| json!({"name": m.name, "size": m.size, "sha256": m.sha256}))
        .collect();
    Ok(report.data(data(red, listed, json!({"bundle": name, "size": size})).to_string()))
}

/// `--json` data: the members, what was left out, the problems and the
/// redaction report, plus `extra`.
fn data(red: &redaction::Outcome, members: Vec<Value>, extra: Value) -> Value {
    let mut doc = json!({
        "members": members,
        "left_out": red.left_out.iter().map(|(p, w)| json!({"path": p, "why": w})).collect::<Vec<_>>(),
        "problems": red.problems.iter().map(|(s, e)| json!({"section": s, "error": e})).collect::<Vec<_>>(),
        "redaction": red.report_json(),
    });
    if let (Value::Object(map), Value::Object(more)) = (&mut doc, extra) {
        map.extend(more);
    }
    doc
}

/// What `--dry-run` shows: every member with its size, and the report.
fn dry_run_report(
    members: &[(String, Vec<u8>)],
    red: &redaction::Outcome,
    report_text: &str,
) -> Report {
    let mut text = format!(
        "dry run: the bundle would hold {} files (nothing written)\n",
        members.len()
    );
    for (path, bytes) in members {
        text.push_str(&format!(
            "  {path}  ({})\n",
            human_bytes(bytes.len() as u64)
        ));
    }
    text.push_str("redaction report:\n");
    text.push_str(report_text);
    for (section, error) in &red.problems {
        text.push_str(&format!("not collected: {section}: {error}\n"));
    }
    let report = if red.problems.is_empty() {
        Report::ok(text.trim_end())
    } else {
        Report::attention(text.trim_end())
    };
    let listed: Vec<Value> = members
        .iter()
        .map(|(p, b)| json!({"name": p, "size": b.len()}))
        .collect();
    report.data(data(red, listed, json!({"dry_run": true})).to_string())
}

opshost_sdk::plugin!(SupportBundle);
