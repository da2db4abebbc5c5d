//! The backup operation: take the deployment lock, make the backup
//! (`agledger_ops::backup`, shared with the upgrade's pre-upgrade backup),
//! report.

use agledger_ops::human_bytes;
use opshost_sdk::{fs, invalid, Context, Report, Result};
use serde_json::json;

opshost_sdk::manifest! {
    name: "backup",
    vendor: "opshost",
    description: "Backs up the AGLedger database (pg_dump -Fc + vault public keys + manifest) as backup-<ts>.tar.gz, verified, with retention",
    applies_to: ">=1.0.0, <2.0.0",
    min_host: "0.1.0",
    requests: [
        ("db=agledger:admin", "pg_dump of the database (dump needs admin); row counts and vault keys from the same snapshot"),
        ("fs=backups:rw", "writes the archive, removes backups past retention"),
        ("http=api/health:GET", "records the running AGLedger version in the manifest"),
    ],
}

struct Backup;

impl opshost_sdk::Operation for Backup {
    fn run(args: Vec<String>) -> Result<Report> {
        let opts = crate::parse(&args).map_err(|e| invalid(format!("{e}\n{}", crate::USAGE)))?;
        if opts.help {
            return Ok(Report::ok(crate::USAGE));
        }
        let dir = fs::open("backups").context("opening the backup directory")?;
        let _lock = agledger_ops::lock::take(&dir, "backup")?;
        let taken = agledger_ops::backup::take(&dir, &opts.backup)?;
        let (name, made) = (&taken.name, &taken.made);

        let mut report = Report::ok(format!(
            "{name}: {} database dump, verified",
            human_bytes(made.dump_size)
        ))
        .fact("backup", name)
        .fact("archive size", human_bytes(made.archive_size))
        .fact("agledger version", &made.agledger_version)
        .fact("postgresql", &made.server_version)
        .fact("tables", made.tables)
        .fact("kept", opts.backup.keep);
        if opts.backup.rollback_point {
            report = report.fact("rollback point", "yes");
        }
        if !taken.removed.is_empty() {
            report = report.fact("removed", taken.removed.join(", "));
        }
        if !taken.swept.is_empty() {
            report = report.fact("cleaned up", taken.swept.join(", "));
        }
        if !taken.interrupted.is_empty() {
            report = report.fact("left by interrupted backups", taken.interrupted.join(", "));
        }
        Ok(report.data(
            json!({
                "backup": name,
                "archive_size": made.archive_size,
                "manifest": made.manifest,
                "removed": taken.removed,
                "cleaned_up": taken.swept,
                "interrupted_leftovers": taken.interrupted,
            })
            .to_string(),
        ))
    }
}

opshost_sdk::plugin!(Backup);
