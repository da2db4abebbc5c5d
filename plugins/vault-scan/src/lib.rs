//! vault-scan: walks every mandate's audit-vault hash chain and reports the
//! mandates whose chain is broken. Streams the entries (COPY, ordered by
//! mandate and position) so memory does not grow with the vault; only the
//! list of broken mandates grows. Exit code 6 (attention) when any is broken.
//!
//!   opshost run vault-scan.wasm [--json]

mod chain;
mod copy_text;

use std::collections::HashMap;
use std::io::BufReader;

use opshost_sdk::db::{self, Value};
use opshost_sdk::io::ReadStream;
use opshost_sdk::{fail, invalid, progress, Context, Report, Result};
use serde_json::json;

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

const ENTRIES: &str = "COPY (SELECT mandate_id, chain_position, payload, payload_hash, previous_hash, signature, key_id \
     FROM vault_entries ORDER BY mandate_id, chain_position) TO STDOUT";

struct Scan;

/// Record a finished mandate's chain if it broke.
fn finish(mandate: String, walk: chain::Walk, broken: &mut Vec<serde_json::Value>) {
    if let Some(b) = walk.first_break {
        broken.push(json!({ "mandate_id": mandate, "position": b.position, "reason": b.reason }));
    }
}

fn count(conn: &db::Connection, sql: &str) -> Result<u64> {
    let rows = conn.query(sql, &[])?;
    match rows.rows.first().and_then(|r| r.first()) {
        Some(Value::Int(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
        _ => Err(fail(format!("unexpected answer to {sql}"))),
    }
}

impl opshost_sdk::Operation for Scan {
    fn run(args: Vec<String>) -> Result<Report> {
        if let Some(extra) = args.first() {
            return Err(invalid(format!("vault-scan takes no arguments (got {extra:?}); use opshost's --json for machine output")));
        }
        let conn = db::connect("agledger").context("connecting to the database")?;
        let mut keys = HashMap::new();
        for row in conn
            .query("SELECT key_id, public_key FROM vault_signing_keys", &[])
            .context("reading vault_signing_keys")?
            .rows
        {
            if let [Value::Text(id), Value::Text(public)] = row.as_slice() {
                match chain::public_key(public) {
                    Some(key) => {
                        keys.insert(id.clone(), key);
                    }
                    None => progress::warn(&format!(
                        "vault_signing_keys {id}: not a valid ed25519 public key"
                    )),
                }
            }
        }
        let total = count(&conn, "SELECT count(*) FROM vault_entries")?;
        progress::step("scanning vault chains", Some(total));

        let mut input = BufReader::with_capacity(1 << 16, ReadStream::new(conn.copy_out(ENTRIES)?));
        let (mut line, mut fields) = (Vec::new(), Vec::new());
        let mut broken = Vec::new();
        let (mut mandates, mut entries) = (0u64, 0u64);
        let mut current: Option<(String, chain::Walk)> = None;
        while copy_text::next_row(&mut input, &mut line, &mut fields)
            .map_err(|e| fail(format!("reading the vault: {e}")))?
        {
            let [Some(mandate), Some(position), Some(payload), Some(hash), previous, Some(signature), Some(key_id)] =
                fields.as_slice()
            else {
                return Err(fail(
                    "a vault entry has an unexpected shape (NULL in a required column)",
                ));
            };
            let position: i64 = position
                .parse()
                .map_err(|_| fail(format!("chain_position {position:?}")))?;
            if current.as_ref().is_none_or(|(m, _)| m != mandate) {
                if let Some((m, walk)) = current.take() {
                    finish(m, walk, &mut broken);
                }
                mandates += 1;
                current = Some((mandate.clone(), chain::Walk::new()));
            }
            if let Some((_, walk)) = current.as_mut() {
                let entry = chain::Entry {
                    position,
                    payload,
                    payload_hash: hash,
                    previous_hash: previous.as_deref(),
                    signature,
                    key_id,
                };
                walk.check(&entry, &keys);
            }
            entries += 1;
            if entries % 4096 == 0 {
                progress::advance(entries);
            }
        }
        if let Some((m, walk)) = current.take() {
            finish(m, walk, &mut broken);
        }
        progress::advance(entries);

        let data =
            json!({ "scanned_mandates": mandates, "scanned_entries": entries, "broken": broken });
        let report = if broken.is_empty() {
            Report::ok(format!(
                "all {mandates} vault chains are intact ({entries} entries)"
            ))
        } else {
            for b in &broken {
                progress::warn(&format!(
                    "mandate {}: position {}: {}",
                    b["mandate_id"], b["position"], b["reason"]
                ));
            }
            Report::attention(format!(
                "{} of {mandates} vault chains are broken",
                broken.len()
            ))
        };
        Ok(report
            .fact("mandates", mandates)
            .fact("entries", entries)
            .fact("broken", broken.len())
            .fact("signing keys", keys.len())
            .data(data.to_string()))
    }
}

opshost_sdk::plugin!(Scan);
