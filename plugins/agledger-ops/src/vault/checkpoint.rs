//! The verified checkpoint: per mandate, the last chain position whose
//! signature a scan verified and a SHA-256 digest over every entry up to
//! it. The vault is append-only and Ed25519 verification is the expensive
//! part, so a later scan recomputes the digest (cheap) for the entries the
//! checkpoint covers and verifies signatures only past it. The digest is
//! always recomputed from the entries being checked, so a checkpoint from
//! another deployment or an older state can only fail to match, which
//! falls back to verifying that mandate in full: it never proves entries
//! it did not see. It is not signed: it is as trustworthy as the backup
//! directory that holds it (the README says so).

use std::collections::HashMap;

use opshost_sdk::fs::Dir;
use opshost_sdk::{describe, fail, progress, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::chain::Entry;

/// The checkpoint in the backup directory, next to the backups.
pub const FILE: &str = ".opshost-vault-checkpoint.json";
/// The checkpoint as a backup archive's member.
pub const MEMBER: &str = "vault-checkpoint.json";
const FORMAT: &str = "opshost-vault-checkpoint/1";

/// How far one mandate was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub through: i64,
    pub digest: [u8; 32],
}

#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    pub written_at: String,
    /// The signing key ids of the vault it was taken over: a checkpoint
    /// sharing none with the vault being checked belongs elsewhere.
    pub key_ids: Vec<String>,
    pub mandates: HashMap<String, Mark>,
}

impl Checkpoint {
    /// Entries the checkpoint covers.
    pub fn entries(&self) -> u64 {
        self.mandates
            .values()
            .map(|m| u64::try_from(m.through).unwrap_or(0))
            .sum()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mandates: serde_json::Map<String, serde_json::Value> = self
            .mandates
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    json!({ "through": m.through, "digest": hex::encode(m.digest) }),
                )
            })
            .collect();
        json!({
            "format": FORMAT,
            "written_at": self.written_at,
            "signing_key_ids": self.key_ids,
            "mandates": mandates,
        })
    }

    pub fn from_json(v: &serde_json::Value) -> std::result::Result<Self, String> {
        if v["format"].as_str() != Some(FORMAT) {
            return Err(format!("format {} is not {FORMAT:?}", v["format"]));
        }
        let mut mandates = HashMap::new();
        for (id, m) in v["mandates"].as_object().ok_or("no mandates")? {
            let through = m["through"]
                .as_i64()
                .ok_or_else(|| format!("mandate {id}: no through"))?;
            let digest = m["digest"]
                .as_str()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| format!("mandate {id}: no SHA-256 digest"))?;
            mandates.insert(id.clone(), Mark { through, digest });
        }
        Ok(Self {
            written_at: v["written_at"].as_str().unwrap_or_default().to_string(),
            key_ids: v["signing_key_ids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            mandates,
        })
    }

    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Self::from_json(&v)
    }
}

/// The checkpoint kept in `dir`, if there is a readable one. An unreadable
/// one is reported and ignored (the scan then verifies everything).
pub fn load(dir: &Dir) -> Option<Checkpoint> {
    let bytes = match dir.read(FILE) {
        Ok(b) => b,
        Err(opshost_sdk::Error::NotFound(_)) => return None,
        Err(e) => {
            progress::warn(&format!(
                "{FILE} cannot be read ({}): verifying every signature",
                describe(&e)
            ));
            return None;
        }
    };
    match Checkpoint::parse(&bytes) {
        Ok(c) => Some(c),
        Err(e) => {
            progress::warn(&format!(
                "{FILE} is not a vault checkpoint ({e}): verifying every signature"
            ));
            None
        }
    }
}

/// Replace the checkpoint in `dir` (the host writes it atomically).
pub fn save(dir: &Dir, checkpoint: &Checkpoint) -> Result<()> {
    let text = serde_json::to_vec(&checkpoint.to_json())
        .map_err(|e| fail(format!("writing the vault checkpoint: {e}")))?;
    dir.write(FILE, &text)
        .map_err(|e| fail(format!("writing {FILE}: {}", describe(&e))))
}

/// The running digest over one mandate's entries, in chain order: each
/// entry's position, payload_hash, previous_hash, signature, key id and
/// the public key it names, length-prefixed so no two entries hash alike.
/// (The payload itself is not in it: every scan still checks that
/// payload_hash is the payload's SHA-256.)
#[derive(Clone, Default)]
pub struct ChainDigest(Sha256);

impl ChainDigest {
    pub fn add(&mut self, e: &Entry<'_>, public_key: Option<&[u8; 32]>) {
        self.0.update(e.position.to_be_bytes());
        let mut field = |bytes: Option<&[u8]>| match bytes {
            Some(b) => {
                self.0.update((b.len() as u64).to_be_bytes());
                self.0.update(b);
            }
            None => self.0.update(u64::MAX.to_be_bytes()),
        };
        field(Some(e.payload_hash.as_bytes()));
        field(e.previous_hash.map(str::as_bytes));
        field(Some(e.signature.as_bytes()));
        field(Some(e.key_id.as_bytes()));
        field(public_key.map(|k| k.as_slice()));
    }

    /// The digest so far (the walk goes on).
    pub fn value(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(position: i64, hash: &'a str, signature: &'a str) -> Entry<'a> {
        Entry {
            position,
            payload: "",
            payload_hash: hash,
            previous_hash: None,
            signature,
            key_id: "k",
        }
    }

    #[test]
    fn any_change_changes_the_digest_and_the_file_round_trips() {
        let digest = |entries: &[Entry<'_>], key: [u8; 32]| {
            let mut d = ChainDigest::default();
            for e in entries {
                d.add(e, Some(&key));
            }
            d.value()
        };
        let base = digest(&[entry(1, "aa", "s1"), entry(2, "bb", "s2")], [1; 32]);
        assert_eq!(
            base,
            digest(&[entry(1, "aa", "s1"), entry(2, "bb", "s2")], [1; 32])
        );
        for other in [
            digest(&[entry(1, "aa", "s1"), entry(2, "bb", "sX")], [1; 32]),
            digest(&[entry(1, "aa", "s1"), entry(2, "bc", "s2")], [1; 32]),
            digest(&[entry(1, "aa", "s1"), entry(3, "bb", "s2")], [1; 32]),
            digest(&[entry(1, "aa", "s1"), entry(2, "bb", "s2")], [2; 32]),
            // Field boundaries are not ambiguous.
            digest(&[entry(1, "aas", "1"), entry(2, "bb", "s2")], [1; 32]),
        ] {
            assert_ne!(base, other);
        }

        let c = Checkpoint {
            written_at: "2026-11-28T00:00:00Z".into(),
            key_ids: vec!["k".into()],
            mandates: HashMap::from([(
                "m".to_string(),
                Mark {
                    through: 2,
                    digest: base,
                },
            )]),
        };
        let back = Checkpoint::from_json(&c.to_json()).expect("parse");
        assert_eq!(back.mandates, c.mandates);
        assert_eq!(back.key_ids, c.key_ids);
        assert_eq!(back.entries(), 2);
        assert!(Checkpoint::parse(b"{\"format\":\"other\"}").is_err());
    }
}
