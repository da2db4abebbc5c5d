//! The audit vault's hash chains, walked in one streaming pass: entries
//! arrive through COPY ordered by mandate and position, so memory holds
//! one mandate's walk at a time (plus the list of broken mandates).

pub mod chain;
pub mod checkpoint;
pub mod copy_text;

use std::collections::HashMap;
use std::io::BufReader;

use opshost_sdk::db::{self, Value};
use opshost_sdk::io::ReadStream;
use opshost_sdk::{crypto, fail, progress, Context, Result};
use serde_json::json;

use checkpoint::{ChainDigest, Checkpoint, Mark};

const ENTRIES: &str = "COPY (SELECT mandate_id, chain_position, payload, payload_hash, previous_hash, signature, key_id \
     FROM vault_entries ORDER BY mandate_id, chain_position) TO STDOUT";

/// What a scan found.
pub struct Scan {
    pub mandates: u64,
    pub entries: u64,
    pub signing_keys: usize,
    /// `{mandate_id, position, reason}` for each broken chain.
    pub broken: Vec<serde_json::Value>,
    /// Entries whose signatures a checkpoint's digest proved.
    pub proven: u64,
    /// Signatures verified (Ed25519) in this scan.
    pub signatures: u64,
    /// `{mandate_id, through, reason}` for each mandate whose entries no
    /// longer match the checkpoint (verified in full instead).
    pub mismatched: Vec<serde_json::Value>,
    /// Whether a checkpoint was used at all.
    pub used_checkpoint: bool,
    /// Every intact mandate as this scan verified it: the next checkpoint.
    pub checkpoint: Checkpoint,
}

impl Scan {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "scanned_mandates": self.mandates,
            "scanned_entries": self.entries,
            "broken": self.broken,
            "proven_by_checkpoint": self.proven,
            "signatures_verified": self.signatures,
            "checkpoint_mismatches": self.mismatched,
        })
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
    verified: u64,
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
        self.verified += checks.len() as u64;
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
    fn merge_into(mut self, broken: &mut Vec<serde_json::Value>) -> u64 {
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
        self.verified
    }
}

/// Where a mandate stands against the checkpoint's mark for it.
enum Against {
    Unmarked,
    /// Entries up to the mark are hashed, their signatures left alone,
    /// until the walk reaches the mark's position and compares digests.
    Pending(Mark),
    Proven,
    /// The entries differ from the ones verified: verified in full later.
    Mismatch(Mark, String),
}

struct Mandate {
    id: String,
    walk: chain::Walk,
    digest: ChainDigest,
    against: Against,
    last: i64,
}

/// A mandate to verify again in full: its entries no longer match the
/// checkpoint.
struct Redo {
    id: String,
    last: i64,
    mark: Mark,
    reason: String,
}

/// One pass over rows of vault_entries (the whole vault, or one mandate).
struct Walker<'a> {
    keys: &'a HashMap<String, ed25519_dalek::VerifyingKey>,
    previous: Option<&'a Checkpoint>,
    current: Option<Mandate>,
    signatures: Signatures,
    broken: Vec<serde_json::Value>,
    marks: HashMap<String, Mark>,
    redo: Vec<Redo>,
    proven: u64,
    marked_seen: usize,
    mandates: u64,
    entries: u64,
}

impl<'a> Walker<'a> {
    fn new(
        keys: &'a HashMap<String, ed25519_dalek::VerifyingKey>,
        previous: Option<&'a Checkpoint>,
    ) -> Self {
        Self {
            keys,
            previous,
            current: None,
            signatures: Signatures::default(),
            broken: Vec::new(),
            marks: HashMap::new(),
            redo: Vec::new(),
            proven: 0,
            marked_seen: 0,
            mandates: 0,
            entries: 0,
        }
    }

    fn row(&mut self, fields: &[Option<String>]) -> Result<()> {
        let [Some(mandate), Some(position), Some(payload), Some(hash), previous, Some(signature), Some(key_id)] =
            fields
        else {
            return Err(fail(
                "a vault entry has an unexpected shape (NULL in a required column)",
            ));
        };
        let position: i64 = position
            .parse()
            .map_err(|_| fail(format!("chain_position {position:?}")))?;
        if self.current.as_ref().is_none_or(|m| &m.id != mandate) {
            self.close();
            self.open(mandate);
        }
        self.entry(&chain::Entry {
            position,
            payload,
            payload_hash: hash,
            previous_hash: previous.as_deref(),
            signature,
            key_id,
        });
        self.entries += 1;
        Ok(())
    }

    fn open(&mut self, id: &str) {
        self.mandates += 1;
        let mark = self.previous.and_then(|p| p.mandates.get(id)).copied();
        self.marked_seen += usize::from(mark.is_some());
        self.current = Some(Mandate {
            id: id.to_string(),
            walk: chain::Walk::new(),
            digest: ChainDigest::default(),
            against: mark.map_or(Against::Unmarked, Against::Pending),
            last: 0,
        });
    }

    fn entry(&mut self, e: &chain::Entry<'_>) {
        let Some(m) = self.current.as_mut() else {
            return;
        };
        // Until the mark is reached (or once the mandate is to be verified
        // in full anyway) no signature of it is verified in this pass.
        let job = match m.against {
            Against::Pending(_) | Against::Mismatch(..) => {
                m.walk.check_covered(e, self.keys);
                None
            }
            Against::Unmarked | Against::Proven => m.walk.check(e, self.keys),
        };
        m.digest
            .add(e, self.keys.get(e.key_id).map(|k| k.as_bytes()));
        m.last = e.position;
        match &m.against {
            Against::Pending(mark) if e.position == mark.through => {
                m.against = if m.digest.value() == mark.digest {
                    self.proven += m.walk.entries;
                    Against::Proven
                } else {
                    Against::Mismatch(
                        *mark,
                        format!(
                            "the entries up to position {} differ from the ones the checkpoint verified",
                            mark.through
                        ),
                    )
                };
            }
            Against::Pending(mark) if e.position > mark.through => {
                m.against = Against::Mismatch(
                    *mark,
                    format!(
                        "position {} which the checkpoint verified is gone",
                        mark.through
                    ),
                );
            }
            // Covered by the mark (proven or not once it is reached), or
            // to be verified in full later.
            Against::Pending(_) | Against::Mismatch(..) => {}
            Against::Unmarked | Against::Proven => {
                if let Some(job) = job {
                    self.signatures.push(&m.id, job);
                }
            }
        }
    }

    fn close(&mut self) {
        let Some(m) = self.current.take() else {
            return;
        };
        let redo = match m.against {
            Against::Pending(mark) => Some((
                mark,
                format!(
                    "the chain ends at position {}, before position {} which the checkpoint verified",
                    m.last, mark.through
                ),
            )),
            Against::Mismatch(mark, reason) => Some((mark, reason)),
            Against::Unmarked | Against::Proven => None,
        };
        if let Some((mark, reason)) = redo {
            self.redo.push(Redo {
                id: m.id,
                last: m.last,
                mark,
                reason,
            });
            return;
        }
        if m.walk.first_break.is_none() {
            self.marks.insert(
                m.id.clone(),
                Mark {
                    through: m.last,
                    digest: m.digest.value(),
                },
            );
        }
        finish(m.id, m.walk, &mut self.broken);
    }

    /// Close the last mandate and wait for every signature.
    fn finish(&mut self) -> u64 {
        self.close();
        let signatures = std::mem::take(&mut self.signatures);
        let verified = signatures.merge_into(&mut self.broken);
        for b in &self.broken {
            if let Some(id) = b["mandate_id"].as_str() {
                // A mandate broken past its proven mark keeps the mark.
                match self.previous.and_then(|p| p.mandates.get(id)) {
                    Some(old) => self.marks.insert(id.to_string(), *old),
                    None => self.marks.remove(id),
                };
            }
        }
        verified
    }
}

/// Feed every row `sql` (a COPY … TO STDOUT) yields to `walker`.
fn walk_rows(conn: &db::Connection, sql: &str, walker: &mut Walker<'_>, show: bool) -> Result<()> {
    let mut input = BufReader::with_capacity(1 << 16, ReadStream::new(conn.copy_out(sql)?));
    let (mut line, mut fields) = (Vec::new(), Vec::new());
    while copy_text::next_row(&mut input, &mut line, &mut fields)
        .map_err(|e| fail(format!("reading the vault: {e}")))?
    {
        walker.row(&fields)?;
        if show && walker.entries.is_multiple_of(4096) {
            progress::advance(walker.entries);
        }
    }
    Ok(())
}

/// Whether `checkpoint` was taken over this vault: it must name one of
/// its signing keys. (A foreign one could not prove anything anyway, since
/// digests are recomputed from the entries; this only spares the noise.)
fn belongs(checkpoint: &Checkpoint, keys: &HashMap<String, ed25519_dalek::VerifyingKey>) -> bool {
    let ok = checkpoint.key_ids.iter().any(|k| keys.contains_key(k));
    if !ok {
        progress::warn(
            "the vault checkpoint names none of this vault's signing keys (taken over another deployment?): \
             not used; every signature is verified",
        );
    }
    ok
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Walk every chain on `conn`'s database, showing progress as `step`,
/// verifying every signature.
pub fn scan(conn: &db::Connection, step: &str) -> Result<Scan> {
    scan_with(conn, step, None)
}

/// Walk every chain; entries `previous` covers are proven by digest
/// instead of by signature, and a mandate whose entries no longer match
/// it is verified in full (and listed in `mismatched`).
pub fn scan_with(conn: &db::Connection, step: &str, previous: Option<&Checkpoint>) -> Result<Scan> {
    let keys = signing_keys(conn)?;
    let previous = previous.filter(|p| belongs(p, &keys));
    let total = count(conn, "SELECT count(*) FROM vault_entries")?;
    progress::step(step, Some(total));

    let mut main = Walker::new(&keys, previous);
    walk_rows(conn, ENTRIES, &mut main, true)?;
    let mut signatures = main.finish();
    progress::advance(main.entries);
    let mut broken = std::mem::take(&mut main.broken);
    let mut marks = std::mem::take(&mut main.marks);
    let mut mismatched = Vec::new();
    for redo in std::mem::take(&mut main.redo) {
        let sql = format!(
            "COPY (SELECT mandate_id, chain_position, payload, payload_hash, previous_hash, signature, key_id \
             FROM vault_entries WHERE mandate_id = {} AND chain_position <= {} ORDER BY chain_position) TO STDOUT",
            quote_literal(&redo.id),
            redo.last
        );
        let mut again = Walker::new(&keys, None);
        walk_rows(conn, &sql, &mut again, false)
            .context(format!("verifying mandate {} in full", redo.id))?;
        signatures += again.finish();
        let intact = again.broken.is_empty();
        broken.append(&mut again.broken);
        // The old mark stays, so the finding repeats on every scan until a
        // --full scan records the vault as it now stands.
        marks.insert(redo.id.clone(), redo.mark);
        mismatched.push(json!({
            "mandate_id": redo.id,
            "through": redo.mark.through,
            "reason": redo.reason,
            "verified_in_full": if intact { "intact: the entries were re-signed consistently (a key rotation, or someone holding a signing key)" } else { "broken" },
        }));
    }
    if let Some(p) = previous.filter(|p| main.marked_seen < p.mandates.len()) {
        let seen: std::collections::HashSet<&str> = broken
            .iter()
            .filter_map(|b| b["mandate_id"].as_str())
            .chain(mismatched.iter().filter_map(|m| m["mandate_id"].as_str()))
            .chain(marks.keys().map(String::as_str))
            .collect();
        let mut gone: Vec<(&String, &Mark)> = p
            .mandates
            .iter()
            .filter(|(id, _)| !seen.contains(id.as_str()))
            .collect();
        gone.sort_by(|a, b| a.0.cmp(b.0));
        for (id, mark) in gone {
            marks.insert(id.clone(), *mark);
            mismatched.push(json!({
                "mandate_id": id,
                "through": mark.through,
                "reason": "the mandate's entries are gone from the vault",
                "verified_in_full": "absent",
            }));
        }
    }
    broken.sort_by(|a, b| a["mandate_id"].as_str().cmp(&b["mandate_id"].as_str()));
    let mut key_ids: Vec<String> = keys.keys().cloned().collect();
    key_ids.sort();
    Ok(Scan {
        mandates: main.mandates,
        entries: main.entries,
        signing_keys: keys.len(),
        broken,
        proven: main.proven,
        signatures,
        mismatched,
        used_checkpoint: previous.is_some(),
        checkpoint: Checkpoint {
            written_at: crate::clock::rfc3339(crate::clock::now()),
            key_ids,
            mandates: marks,
        },
    })
}
