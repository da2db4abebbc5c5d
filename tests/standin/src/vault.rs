//! The audit vault: Ed25519 keys (base64 PKCS#8 DER), signing, the
//! public-key registry (`vault_signing_keys`) and the chain scan.
//!
//! payload_hash = hex(SHA-256(payload)); previous_hash = the previous entry's
//! payload_hash (NULL at position 1); signature = base64(Ed25519 signature
//! over the payload_hash's ASCII hex); key_id = first 16 hex characters of
//! SHA-256(raw 32-byte public key).

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::db::pg_err;

/// A new Ed25519 private key, base64 PKCS#8 DER.
pub fn generate_signing_key() -> Result<String, String> {
    let seed = crate::random_bytes::<32>()?;
    let key = SigningKey::from_bytes(&seed);
    let der = key
        .to_pkcs8_der()
        .map_err(|e| format!("cannot encode the key as PKCS#8: {e}"))?;
    Ok(B64.encode(der.as_bytes()))
}

/// Parse base64 PKCS#8 DER (a PEM block is accepted too).
pub fn parse_signing_key(name: &str, value: &str) -> Result<SigningKey, String> {
    let b64: String = value
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = B64.decode(b64.as_bytes()).map_err(|e| {
        format!("{name} is not base64 ({e}); expected an Ed25519 private key as base64 PKCS#8 DER")
    })?;
    SigningKey::from_pkcs8_der(&der)
        .map_err(|e| format!("{name} is not an Ed25519 PKCS#8 DER private key: {e}"))
}

pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))[..16].to_string()
}

pub fn public_key_b64(key: &VerifyingKey) -> String {
    B64.encode(key.as_bytes())
}

pub fn payload_hash(payload: &str) -> String {
    hex::encode(Sha256::digest(payload.as_bytes()))
}

pub fn sign(key: &SigningKey, payload_hash: &str) -> String {
    let signature: Signature = Signer::sign(key, payload_hash.as_bytes());
    B64.encode(signature.to_bytes())
}

/// Verify a stored signature against a stored base64 raw public key.
pub fn verify(public_key_b64: &str, payload_hash: &str, signature_b64: &str) -> Result<(), String> {
    let raw = B64
        .decode(public_key_b64.trim().as_bytes())
        .map_err(|_| "the stored public key is not base64".to_string())?;
    let raw: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| "the stored public key is not 32 bytes".to_string())?;
    let key = VerifyingKey::from_bytes(&raw)
        .map_err(|e| format!("the stored public key is invalid: {e}"))?;
    let sig = B64
        .decode(signature_b64.trim().as_bytes())
        .map_err(|_| "the signature is not base64".to_string())?;
    let sig: [u8; 64] = sig
        .as_slice()
        .try_into()
        .map_err(|_| "the signature is not 64 bytes".to_string())?;
    let sig = Signature::from_bytes(&sig);
    Verifier::verify(&key, payload_hash.as_bytes(), &sig)
        .map_err(|_| "the signature does not verify".to_string())
}

/// Make the public key of `current` the active row of vault_signing_keys
/// (inserted if missing), keep `previous` as a retired row, retire any other
/// active key. Idempotent; safe to run from several processes at once.
pub async fn register_keys(
    client: &Client,
    current: &SigningKey,
    previous: Option<&SigningKey>,
) -> Result<String, String> {
    let cur = current.verifying_key();
    let cur_id = key_id(&cur);
    client
        .execute(
            "INSERT INTO vault_signing_keys (key_id, public_key, algorithm, status, activated_at) \
             VALUES ($1, $2, 'ed25519', 'active', now()) \
             ON CONFLICT (key_id) DO UPDATE SET status = 'active', retired_at = NULL \
             WHERE vault_signing_keys.status <> 'active'",
            &[&cur_id, &public_key_b64(&cur)],
        )
        .await
        .map_err(|e| format!("cannot register the vault signing key: {}", pg_err(&e)))?;
    if let Some(prev) = previous {
        let p = prev.verifying_key();
        let prev_id = key_id(&p);
        if prev_id != cur_id {
            client
                .execute(
                    "INSERT INTO vault_signing_keys (key_id, public_key, algorithm, status, activated_at, retired_at) \
                     VALUES ($1, $2, 'ed25519', 'retired', now(), now()) ON CONFLICT (key_id) DO NOTHING",
                    &[&prev_id, &public_key_b64(&p)],
                )
                .await
                .map_err(|e| format!("cannot register the previous vault signing key: {}", pg_err(&e)))?;
        }
    }
    client
        .execute(
            "UPDATE vault_signing_keys SET status = 'retired', retired_at = now() \
             WHERE status = 'active' AND key_id <> $1",
            &[&cur_id],
        )
        .await
        .map_err(|e| format!("cannot retire older vault signing keys: {}", pg_err(&e)))?;
    Ok(cur_id)
}

struct Entry {
    position: i64,
    payload: String,
    payload_hash: String,
    previous_hash: Option<String>,
    signature: String,
    key_id: String,
}

/// Check every mandate's chain: positions 1..n in order, previous_hash links,
/// payload_hash = SHA-256(payload), a valid signature by a registered key
/// (active or retired).
pub async fn scan(client: &Client) -> Result<Value, String> {
    let keys: HashMap<String, String> = client
        .query("SELECT key_id, public_key FROM vault_signing_keys", &[])
        .await
        .map_err(|e| format!("cannot read vault_signing_keys: {}", pg_err(&e)))?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    let mandates: Vec<String> = client
        .query("SELECT id FROM mandates ORDER BY id", &[])
        .await
        .map_err(|e| format!("cannot read mandates: {}", pg_err(&e)))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let rows = client
        .query(
            "SELECT mandate_id, chain_position, payload, payload_hash, previous_hash, signature, key_id \
             FROM vault_entries ORDER BY mandate_id, chain_position",
            &[],
        )
        .await
        .map_err(|e| format!("cannot read vault_entries: {}", pg_err(&e)))?;
    let mut chains: HashMap<String, Vec<Entry>> = HashMap::new();
    for r in &rows {
        chains
            .entry(r.get::<_, String>(0))
            .or_default()
            .push(Entry {
                position: r.get(1),
                payload: r.get(2),
                payload_hash: r.get(3),
                previous_hash: r.get(4),
                signature: r.get(5),
                key_id: r.get(6),
            });
    }

    let mut broken = Vec::new();
    let mut broken_mandates = 0usize;
    for mandate in &mandates {
        let Some(chain) = chains.get(mandate) else {
            continue;
        };
        let before = broken.len();
        for (i, e) in chain.iter().enumerate() {
            let reasons = check_entry(i, chain, e, &keys);
            if !reasons.is_empty() {
                broken.push(json!({
                    "mandate_id": mandate,
                    "position": e.position,
                    "reason": reasons.join("; "),
                }));
            }
        }
        if broken.len() > before {
            broken_mandates += 1;
        }
    }
    Ok(json!({
        "scanned_mandates": mandates.len(),
        "scanned_entries": rows.len(),
        "broken_mandates": broken_mandates,
        "broken": broken,
    }))
}

fn check_entry(
    i: usize,
    chain: &[Entry],
    e: &Entry,
    keys: &HashMap<String, String>,
) -> Vec<String> {
    let mut reasons = Vec::new();
    let expected = i as i64 + 1;
    if e.position != expected {
        reasons.push(format!(
            "chain_position {} where {expected} was expected (gap or reordering)",
            e.position
        ));
    }
    if i == 0 {
        if e.previous_hash.is_some() {
            reasons.push("the first entry has a previous_hash (it must be null)".to_string());
        }
    } else {
        let prev = &chain[i - 1];
        if e.previous_hash.as_deref() != Some(prev.payload_hash.as_str()) {
            reasons.push(format!(
                "previous_hash does not match the payload_hash of position {}",
                prev.position
            ));
        }
    }
    if payload_hash(&e.payload) != e.payload_hash {
        reasons
            .push("payload_hash is not the SHA-256 of the payload (payload altered)".to_string());
    }
    match keys.get(&e.key_id) {
        None => reasons.push(format!(
            "signed with key {} which is not in vault_signing_keys",
            e.key_id
        )),
        Some(pk) => {
            if let Err(why) = verify(pk, &e.payload_hash, &e.signature) {
                reasons.push(format!("{why} with key {}", e.key_id));
            }
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip_sign_verify() {
        let b64 = generate_signing_key().unwrap();
        let key = parse_signing_key("K", &b64).unwrap();
        let vk = key.verifying_key();
        assert_eq!(key_id(&vk).len(), 16);
        let h = payload_hash("{\"a\":1}");
        let sig = sign(&key, &h);
        assert!(verify(&public_key_b64(&vk), &h, &sig).is_ok());
        assert!(verify(&public_key_b64(&vk), &payload_hash("x"), &sig).is_err());
        assert!(parse_signing_key("K", "not base64!").is_err());
    }
}
