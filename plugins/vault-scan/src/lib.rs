//! vault-scan: walks every mandate's audit-vault hash chain and reports the
//! mandates whose chain is broken. Streams the entries (COPY, ordered by
//! mandate and position) so memory does not grow with the vault; only the
//! list of broken mandates and the checkpoint grow (per mandate, not per
//! entry). Exit code 6 (attention) when any is broken, or when entries a
//! checkpoint had verified changed.
//!
//! Verify once, prove cheaply after: the scan keeps a verified checkpoint
//! in the backup directory (`[dir.backups]`); the next scan proves the
//! entries it covers by a SHA-256 digest and verifies signatures only for
//! newer entries. Without a backup directory in the config the scan
//! verifies everything and says so. `--full` ignores the checkpoint and
//! writes a fresh one.
//!
//!   opshost run vault-scan.wasm [--json] [-- --full]

use agledger_ops::vault::{self, checkpoint};
use opshost_sdk::db;
use opshost_sdk::{describe, fs, invalid, progress, Context, Report, Result};

opshost_sdk::manifest! {
    name: "vault-scan",
    vendor: "opshost",
    description: "Checks every mandate's vault hash chain (positions, links, payload hashes, signatures)",
    applies_to: ">=1.0.0, <2.0.0",
    min_host: "0.1.0",
    requests: [
        ("db=agledger:read", "reads vault_entries and vault_signing_keys"),
        ("fs=backups:rw", "keeps the verified checkpoint (.opshost-vault-checkpoint.json) beside the backups, so the next scan verifies only newer signatures"),
    ],
}

struct Scan;

/// The backup directory, or why there is none (the scan goes on without).
fn backup_dir() -> std::result::Result<fs::Dir, String> {
    fs::open("backups").map_err(|e| describe(&e))
}

impl opshost_sdk::Operation for Scan {
    fn run(args: Vec<String>) -> Result<Report> {
        let mut full = false;
        for arg in &args {
            match arg.as_str() {
                "--full" => full = true,
                other => {
                    return Err(invalid(format!(
                        "vault-scan takes only --full (got {other:?}); use opshost's --json for machine output"
                    )))
                }
            }
        }
        let dir = backup_dir();
        let previous = match &dir {
            Ok(_) if full => None,
            Ok(d) => checkpoint::load(d),
            Err(why) => {
                progress::warn(&format!(
                    "no backup directory to keep a vault checkpoint in ({why}): verifying every signature, \
                     and the next scan will too. Configure [dir.backups] to verify only new entries"
                ));
                None
            }
        };
        let conn = db::connect("agledger").context("connecting to the database")?;
        let scan = vault::scan_with(&conn, "scanning vault chains", previous.as_ref())?;
        let kept = match &dir {
            Ok(d) => match checkpoint::save(d, &scan.checkpoint) {
                Ok(()) => format!("backups/{}", checkpoint::FILE),
                Err(e) => {
                    progress::warn(&format!(
                        "the vault checkpoint was not written: {}",
                        describe(&e)
                    ));
                    "not written".into()
                }
            },
            Err(_) => "none (no backup directory)".into(),
        };
        let (mandates, entries) = (scan.mandates, scan.entries);
        for b in &scan.broken {
            progress::warn(&format!(
                "mandate {}: position {}: {}",
                b["mandate_id"], b["position"], b["reason"]
            ));
        }
        for m in &scan.mismatched {
            progress::warn(&format!(
                "mandate {}: {}; verified in full: {}",
                m["mandate_id"], m["reason"], m["verified_in_full"]
            ));
        }
        let report = if !scan.broken.is_empty() {
            Report::attention(format!(
                "{} of {mandates} vault chains are broken",
                scan.broken.len()
            ))
        } else if !scan.mismatched.is_empty() {
            Report::attention(format!(
                "all {mandates} vault chains verify, but entries of {} mandate(s) changed since the checkpoint \
                 verified them (listed above): an append-only vault's old entries should never change. \
                 After investigating, run with --full to record the vault as it now stands",
                scan.mismatched.len()
            ))
        } else {
            Report::ok(format!(
                "all {mandates} vault chains are intact ({entries} entries)"
            ))
        };
        let how = if full {
            "full (--full)".to_string()
        } else if scan.used_checkpoint {
            format!(
                "checkpoint of {}",
                previous.as_ref().map_or("", |p| p.written_at.as_str())
            )
        } else {
            "full (no checkpoint)".to_string()
        };
        Ok(report
            .fact("mandates", mandates)
            .fact("entries", entries)
            .fact("broken", scan.broken.len())
            .fact("signing keys", scan.signing_keys)
            .fact("verification", how)
            .fact("proven by checkpoint", scan.proven)
            .fact("signatures verified", scan.signatures)
            .fact("checkpoint mismatches", scan.mismatched.len())
            .fact("checkpoint", kept)
            .data(scan.to_json().to_string()))
    }
}

opshost_sdk::plugin!(Scan);
