//! The audit vault's hash chains, walked in one streaming pass: entries
//! arrive through COPY ordered by mandate and position, so memory holds
//! one mandate's walk at a time (plus the list of broken mandates).

pub mod chain;
pub mod copy_text;

use std::collections::HashMap;
use std::io::BufReader;

use opshost_sdk::db::{self, Value};
use opshost_sdk::io::ReadStream;
use opshost_sdk::{crypto, fail, progress, Context, Result};
use serde_json::json;

const ENTRIES: &str = "COPY (SELECT mandate_id, chain_position, payload, payload_hash, previous_hash, signature, key_id \
     FROM vault_entries ORDER BY mandate_id, chain_position) TO STDOUT";

/// What a scan found.
pub struct Scan {
    pub mandates: u64,
    pub entries: u64,
    pub signing_keys: usize,
    /// `{mandate_id, position, reason}` for each broken chain.
    pub broken: Vec<serde_json::Value>,
}

impl Scan {
    pub fn to_json(&self) -> serde_json::Value {
        json!({ "scanned_mandates": self.mandates, "scanned_entries": self.entries, "broken": self.broken })
    }
}

/// Record a finished mandate's chain if it broke.
fn finish(mandate: String, walk: chain::Walk, broken: &mut Vec<serde_json::Value>) {
    if let Some(b) = walk.first_break {
        broken.push(json!({ "mandate_id": mandate, "position": b.position, "reason": b.reason }));
    }
}

/// A `count(*)`-style single integer.
pub fn count(conn: &db::Connection, sql: &str) -> Result<u64> {
    let rows = conn.query(sql, &[])?;
    match rows.rows.first().and_then(|r| r.first()) {
        Some(Value::Int(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
        _ => Err(fail(format!("unexpected answer to {sql}"))),
    }
}

fn signing_keys(conn: &db::Connection) -> Result<HashMap<String, ed25519_dalek::VerifyingKey>> {
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
    Ok(keys)
}

/// Signatures verified per host call: enough to keep the host's threads
/// busy, small enough to keep the guest's memory flat.
const BATCH: usize = 4096;

/// Signatures waiting for the host, and the first bad one per mandate.
#[derive(Default)]
struct Signatures {
    pending: Vec<(String, chain::Signed)>,
    bad: HashMap<String, (i64, String)>,
}

impl Signatures {
    fn push(&mut self, mandate: &str, job: chain::Signed) {
        self.pending.push((mandate.to_string(), job));
        if self.pending.len() >= BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let checks: Vec<crypto::Ed25519Check> = self
            .pending
            .iter()
            .map(|(_, j)| crypto::Ed25519Check {
                public_key: j.key.to_vec(),
                message: j.message.clone(),
                signature: j.signature.to_vec(),
            })
            .collect();
        let verified = crypto::verify_ed25519(&checks);
        for ((mandate, job), ok) in self.pending.drain(..).zip(verified) {
            if ok {
                continue;
            }
            let earlier = self
                .bad
                .get(&mandate)
                .is_some_and(|(p, _)| *p <= job.position);
            if !earlier {
                self.bad.insert(mandate, (job.position, job.reason()));
            }
        }
    }

    /// Merge into `broken`: a mandate's first break is the earliest of its
    /// chain break and its first bad signature.
    fn merge_into(mut self, broken: &mut Vec<serde_json::Value>) {
        self.flush();
        for b in broken.iter_mut() {
            let Some(mandate) = b["mandate_id"].as_str().map(str::to_string) else {
                continue;
            };
            if let Some((position, reason)) = self.bad.remove(&mandate) {
                if b["position"].as_i64().is_some_and(|p| position < p) {
                    *b = json!({ "mandate_id": mandate, "position": position, "reason": reason });
                }
            }
        }
        for (mandate, (position, reason)) in self.bad {
            broken.push(json!({ "mandate_id": mandate, "position": position, "reason": reason }));
        }
        broken.sort_by(|a, b| a["mandate_id"].as_str().cmp(&b["mandate_id"].as_str()));
    }
}

/// Walk every chain on `conn`'s database, showing progress as `step`.
pub fn scan(conn: &db::Connection, step: &str) -> Result<Scan> {
    let keys = signing_keys(conn)?;
    let total = count(conn, "SELECT count(*) FROM vault_entries")?;
    progress::step(step, Some(total));

    let mut input = BufReader::with_capacity(1 << 16, ReadStream::new(conn.copy_out(ENTRIES)?));
    let (mut line, mut fields) = (Vec::new(), Vec::new());
    let mut broken = Vec::new();
    let (mut mandates, mut entries) = (0u64, 0u64);
    let mut current: Option<(String, chain::Walk)> = None;
    let mut signatures = Signatures::default();
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
        if let Some((mandate, walk)) = current.as_mut() {
            let entry = chain::Entry {
                position,
                payload,
                payload_hash: hash,
                previous_hash: previous.as_deref(),
                signature,
                key_id,
            };
            if let Some(job) = walk.check(&entry, &keys) {
                signatures.push(mandate, job);
            }
        }
        entries += 1;
        if entries % 4096 == 0 {
            progress::advance(entries);
        }
    }
    if let Some((m, walk)) = current.take() {
        finish(m, walk, &mut broken);
    }
    signatures.merge_into(&mut broken);
    progress::advance(entries);
    Ok(Scan {
        mandates,
        entries,
        signing_keys: keys.len(),
        broken,
    })
}
