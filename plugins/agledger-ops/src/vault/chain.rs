//! The checks on one mandate's chain, entry by entry, holding only the
//! previous entry's hash: positions run 1, 2, 3…; each previous_hash is the
//! previous entry's payload_hash (NULL at 1); payload_hash is the SHA-256 of
//! the payload; the signature over the payload_hash verifies with the
//! registered key it names.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

pub struct Entry<'a> {
    pub position: i64,
    pub payload: &'a str,
    pub payload_hash: &'a str,
    pub previous_hash: Option<&'a str>,
    pub signature: &'a str,
    pub key_id: &'a str,
}

/// Where a chain first breaks.
#[derive(Debug, Clone, PartialEq)]
pub struct Break {
    pub position: i64,
    pub reason: String,
}

/// The state of the chain being walked.
#[derive(Default)]
pub struct Walk {
    expected: i64,
    previous: Option<String>,
    pub first_break: Option<Break>,
    pub entries: u64,
}

impl Walk {
    pub fn new() -> Self {
        Self {
            expected: 1,
            ..Self::default()
        }
    }

    /// Check everything but the signature, which comes back as a
    /// [`Signed`] to verify (in batches, by the host) when the entry is
    /// otherwise sound and the chain unbroken so far.
    pub fn check(&mut self, e: &Entry<'_>, keys: &HashMap<String, VerifyingKey>) -> Option<Signed> {
        self.step(e, keys, true)
    }

    /// [`Walk::check`] for an entry whose signature a checkpoint's digest
    /// covers: the same chain, payload-hash and key checks, without
    /// decoding the signature for a verification that will not happen.
    pub fn check_covered(&mut self, e: &Entry<'_>, keys: &HashMap<String, VerifyingKey>) {
        self.step(e, keys, false);
    }

    fn step(
        &mut self,
        e: &Entry<'_>,
        keys: &HashMap<String, VerifyingKey>,
        want_signature: bool,
    ) -> Option<Signed> {
        self.entries += 1;
        let mut signed = None;
        if self.first_break.is_none() {
            let found = chain_problem(e, self.expected, self.previous.as_deref())
                .and_then(|()| key_of(e, keys))
                .and_then(|key| {
                    if want_signature {
                        signed_by(e, key).map(Some)
                    } else {
                        Ok(None)
                    }
                });
            match found {
                Err(reason) => {
                    self.first_break = Some(Break {
                        position: e.position,
                        reason,
                    })
                }
                Ok(s) => signed = s,
            }
        }
        self.expected = e.position + 1;
        // Reuse the buffer: this runs once per entry.
        match &mut self.previous {
            Some(p) => {
                p.clear();
                p.push_str(e.payload_hash);
            }
            None => self.previous = Some(e.payload_hash.to_string()),
        }
        signed
    }
}

/// A signature still to verify: over `message` (the payload_hash as ASCII)
/// with `key`.
pub struct Signed {
    pub position: i64,
    pub key: [u8; 32],
    pub key_id: String,
    pub message: Vec<u8>,
    pub signature: [u8; 64],
}

impl Signed {
    pub fn reason(&self) -> String {
        format!("the signature does not verify with key {}", self.key_id)
    }
}

/// Verify in this process (tests; the scan asks the host, which is faster).
pub fn verify_here(jobs: &[Signed]) -> Vec<bool> {
    jobs.iter()
        .map(|j| {
            VerifyingKey::from_bytes(&j.key).is_ok_and(|k| {
                k.verify(&j.message, &Signature::from_bytes(&j.signature))
                    .is_ok()
            })
        })
        .collect()
}

fn chain_problem(e: &Entry<'_>, expected: i64, previous: Option<&str>) -> Result<(), String> {
    if e.position != expected {
        return Err(format!(
            "position {} where {expected} was expected (an entry is missing or duplicated)",
            e.position
        ));
    }
    if e.previous_hash != previous {
        return Err(if expected == 1 {
            "the first entry has a previous_hash".to_string()
        } else {
            format!(
                "previous_hash does not match the payload_hash of position {}",
                expected - 1
            )
        });
    }
    let mut hex = [0u8; 64];
    let encoded = hex::encode_to_slice(Sha256::digest(e.payload.as_bytes()), &mut hex);
    if encoded.is_err() || hex.as_slice() != e.payload_hash.as_bytes() {
        return Err("payload_hash is not the SHA-256 of the payload (payload altered)".into());
    }
    Ok(())
}

fn key_of<'k>(
    e: &Entry<'_>,
    keys: &'k HashMap<String, VerifyingKey>,
) -> Result<&'k VerifyingKey, String> {
    keys.get(e.key_id).ok_or_else(|| {
        format!(
            "signed by key {} which vault_signing_keys does not hold",
            e.key_id
        )
    })
}

fn signed_by(e: &Entry<'_>, key: &VerifyingKey) -> Result<Signed, String> {
    let signature = B64
        .decode(e.signature.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or_else(|| "the signature is not a base64 Ed25519 signature".to_string())?;
    Ok(Signed {
        position: e.position,
        key: key.to_bytes(),
        key_id: e.key_id.to_string(),
        message: e.payload_hash.as_bytes().to_vec(),
        signature,
    })
}

/// A `vault_signing_keys.public_key` (base64 of the raw 32 bytes).
pub fn public_key(b64: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = B64.decode(b64.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn entry<'a>(
        position: i64,
        payload: &'a str,
        hash: &'a str,
        prev: Option<&'a str>,
        sig: &'a str,
    ) -> Entry<'a> {
        Entry {
            position,
            payload,
            payload_hash: hash,
            previous_hash: prev,
            signature: sig,
            key_id: "k",
        }
    }

    #[test]
    fn finds_the_first_break() {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let keys = HashMap::from([("k".to_string(), key.verifying_key())]);
        let h = |p: &str| hex::encode(Sha256::digest(p.as_bytes()));
        let s = |hash: &str| B64.encode(key.sign(hash.as_bytes()).to_bytes());
        let (h1, h2) = (h("one"), h("two"));
        let (s1, s2) = (s(&h1), s(&h2));

        let mut ok = Walk::new();
        ok.check(&entry(1, "one", &h1, None, &s1), &keys);
        ok.check(&entry(2, "two", &h2, Some(&h1), &s2), &keys);
        assert_eq!(ok.first_break, None);

        let mut altered = Walk::new();
        altered.check(&entry(1, "one", &h1, None, &s1), &keys);
        altered.check(&entry(2, "TWO", &h2, Some(&h1), &s2), &keys);
        assert!(altered
            .first_break
            .expect("break")
            .reason
            .contains("payload altered"));

        let mut gap = Walk::new();
        gap.check(&entry(2, "two", &h2, Some(&h1), &s2), &keys);
        assert!(gap
            .first_break
            .expect("break")
            .reason
            .contains("position 2 where 1"));

        let mut forged = Walk::new();
        let job = forged
            .check(&entry(1, "one", &h1, None, &s2), &keys)
            .expect("a signature to verify");
        assert_eq!(forged.first_break, None, "signatures are verified apart");
        assert_eq!(verify_here(&[job]), vec![false]);
        let good = Walk::new().check(&entry(1, "one", &h1, None, &s1), &keys);
        assert_eq!(verify_here(&[good.expect("job")]), vec![true]);

        // Covered by a checkpoint: the signature is not looked at, the
        // chain and the payload hash still are.
        let mut covered = Walk::new();
        covered.check_covered(&entry(1, "one", &h1, None, "not base64"), &keys);
        assert_eq!(covered.first_break, None);
        covered.check_covered(&entry(2, "TWO", &h2, Some(&h1), &s2), &keys);
        assert!(covered
            .first_break
            .expect("break")
            .reason
            .contains("payload altered"));
        let mut unknown = Walk::new();
        let mut e = entry(1, "one", &h1, None, &s1);
        e.key_id = "gone";
        unknown.check_covered(&e, &keys);
        assert!(unknown
            .first_break
            .expect("break")
            .reason
            .contains("does not hold"));
    }
}
