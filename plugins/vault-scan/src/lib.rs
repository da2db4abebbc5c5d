//! vault-scan: walks every mandate's audit-vault hash chain and reports the
//! mandates whose chain is broken. Streams the entries (COPY, ordered by
//! mandate and position) so memory does not grow with the vault; only the
//! list of broken mandates grows. Exit code 6 (attention) when any is broken.
//!
//!   opshost run vault-scan.wasm [--json]

use agledger_ops::vault;
use opshost_sdk::db;
use opshost_sdk::{invalid, progress, Context, Report, Result};

opshost_sdk::manifest! {
    name: "vault-scan",
    vendor: "opshost",
    description: "Checks every mandate's vault hash chain (positions, links, payload hashes, signatures)",
    applies_to: ">=1.0.0, <2.0.0",
    min_host: "0.1.0",
    requests: [
        ("db=agledger:read", "reads vault_entries and vault_signing_keys"),
    ],
}

struct Scan;

impl opshost_sdk::Operation for Scan {
    fn run(args: Vec<String>) -> Result<Report> {
        if let Some(extra) = args.first() {
            return Err(invalid(format!("vault-scan takes no arguments (got {extra:?}); use opshost's --json for machine output")));
        }
        let conn = db::connect("agledger").context("connecting to the database")?;
        let scan = vault::scan(&conn, "scanning vault chains")?;
        let (mandates, entries) = (scan.mandates, scan.entries);
        let report = if scan.broken.is_empty() {
            Report::ok(format!(
                "all {mandates} vault chains are intact ({entries} entries)"
            ))
        } else {
            for b in &scan.broken {
                progress::warn(&format!(
                    "mandate {}: position {}: {}",
                    b["mandate_id"], b["position"], b["reason"]
                ));
            }
            Report::attention(format!(
                "{} of {mandates} vault chains are broken",
                scan.broken.len()
            ))
        };
        Ok(report
            .fact("mandates", mandates)
            .fact("entries", entries)
            .fact("broken", scan.broken.len())
            .fact("signing keys", scan.signing_keys)
            .data(scan.to_json().to_string()))
    }
}

opshost_sdk::plugin!(Scan);
