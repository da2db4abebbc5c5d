//! doctor: the troubleshooting runbook as checks (agledger-ops' `doctor`
//! module, the same code the upgrade runs first). Each finding is printed
//! with its evidence and fix; exit 0 when all is well, 6 with findings
//! (or a check that could not look).

mod options;

use agledger_ops::doctor::{self, Outcome, Status};
use opshost_sdk::{invalid, progress, Report, Result};
use serde_json::json;

opshost_sdk::manifest! {
    name: "doctor",
    vendor: "opshost",
    description: "Checks an AGLedger deployment the way the troubleshooting runbook does and explains each finding with its evidence and fix",
    applies_to: ">=1.0.0, <2.0.0",
    min_host: "0.1.0",
    requests: [
        ("db=agledger:read", "max_connections, _migrations; probes the session (pooler) and the server's TLS"),
        ("fs=compose:ro", "reads compose/.env (removed variables, pin, pool size, sslmode)"),
        ("fs=backups:ro", "finds the newest backup"),
        ("container=agledger:inspect,run", "replicas and their health; the image's preflight in a one-off container"),
        ("http=api/health:GET", "/health and /health/ready"),
        ("http=api/conformance:GET", "the migrations the running image knows"),
    ],
}

struct Doctor;

impl opshost_sdk::Operation for Doctor {
    fn run(args: Vec<String>) -> Result<Report> {
        let opts =
            options::parse(&args).map_err(|e| invalid(format!("{e}\n{}", options::usage())))?;
        if opts.help {
            return Ok(Report::ok(options::usage()));
        }
        if opts.list {
            let lines: Vec<String> = doctor::CHECKS
                .iter()
                .map(|c| format!("{:<18} {}", c.name, c.about))
                .collect();
            return Ok(Report::ok(lines.join("\n")));
        }
        let outcomes = doctor::run(&opts.checks, &opts.settings);
        Ok(report(&outcomes))
    }
}

opshost_sdk::plugin!(Doctor);

fn report(outcomes: &[Outcome]) -> Report {
    let mut errors = 0;
    let mut warnings = 0;
    let mut unchecked = 0;
    for o in outcomes {
        match &o.status {
            Status::Ok => {}
            Status::Findings(found) => {
                for f in found {
                    progress::warn(&doctor::explain(o.check, f));
                    match f.severity {
                        doctor::Severity::Error => errors += 1,
                        doctor::Severity::Warning => warnings += 1,
                    }
                }
            }
            Status::Unchecked(why) => {
                progress::warn(&format!("[{}] could not check: {why}", o.check));
                unchecked += 1;
            }
        }
    }
    let blocking = outcomes
        .iter()
        .flat_map(|o| o.findings())
        .filter(|f| f.blocks_upgrade)
        .count();
    let mut report = if errors + warnings + unchecked == 0 {
        Report::ok(format!("all {} checks passed", outcomes.len()))
    } else {
        let mut parts = vec![];
        if errors > 0 {
            parts.push(format!("{errors} error(s)"));
        }
        if warnings > 0 {
            parts.push(format!("{warnings} warning(s)"));
        }
        if unchecked > 0 {
            parts.push(format!("{unchecked} check(s) could not run"));
        }
        Report::attention(format!(
            "{} in {} checks{}",
            parts.join(", "),
            outcomes.len(),
            if blocking > 0 {
                format!("; {blocking} would stop an upgrade")
            } else {
                String::new()
            }
        ))
    };
    for o in outcomes {
        let value = match &o.status {
            Status::Ok => "ok".to_string(),
            Status::Findings(f) => f
                .iter()
                .map(|f| format!("{}: {}", f.severity.as_str(), f.title))
                .collect::<Vec<_>>()
                .join("; "),
            Status::Unchecked(why) => format!("unchecked: {why}"),
        };
        report = report.fact(o.check, value);
    }
    report.data(
        json!({
            "checks": outcomes.iter().map(Outcome::to_json).collect::<Vec<_>>(),
            "errors": errors,
            "warnings": warnings,
            "unchecked": unchecked,
            "blocks_upgrade": blocking,
        })
        .to_string(),
    )
}
