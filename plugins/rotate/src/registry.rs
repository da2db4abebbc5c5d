//! The vault's side of a signing key rotation: key ids as the product
//! computes them, the key registry (`vault_signing_keys`) the server fills
//! when it starts, and the checks that prove a rotation: the new key is
//! the active row, the old one still registered, entries written since
//! carry the new key, and a vault scan breaks no chain that was whole.

use agledger_ops::vault;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use opshost_sdk::db::{self, Value};
use opshost_sdk::{fail, progress, Context, Result};
use sha2::{Digest, Sha256};

use crate::signing_key::SigningKey;

/// `key_id` of a base64 PKCS#8 DER Ed25519 private key (a PEM block is
/// accepted too, as the product accepts it).
pub fn key_id(private_b64: &str, name: &str) -> Result<String> {
    let b64: String = private_b64
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = B64
        .decode(b64.as_bytes())
        .map_err(|_| fail(format!("{name} in compose/.env is not base64 (expected an Ed25519 private key, base64 PKCS#8 DER)")))?;
    let key = ed25519_dalek::SigningKey::from_pkcs8_der(&der).map_err(|_| {
        fail(format!(
            "{name} in compose/.env is not an Ed25519 PKCS#8 private key"
        ))
    })?;
    Ok(public_key_id(key.verifying_key().as_bytes()))
}

/// The product's key id: the first 16 hex characters of SHA-256(raw public key).
pub fn public_key_id(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))[..16].to_string()
}

pub fn connect() -> Result<db::Connection> {
    db::connect("agledger").context("connecting to the database")
}

/// The database's clock, as text.
pub fn db_now(conn: &db::Connection) -> Result<String> {
    let rows = conn.query("SELECT now()::text", &[])?;
    match rows.rows.first().and_then(|r| r.first()) {
        Some(Value::Text(t)) => Ok(t.clone()),
        _ => Err(fail("the database did not say what time it is")),
    }
}

pub fn active_keys(conn: &db::Connection) -> Result<Vec<String>> {
    let rows = conn
        .query(
            "SELECT key_id FROM vault_signing_keys WHERE status = 'active' ORDER BY key_id",
            &[],
        )
        .context("reading vault_signing_keys")?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| match r.first() {
            Some(Value::Text(id)) => Some(id.clone()),
            _ => None,
        })
        .collect())
}

/// The server registers its key once it has started: wait for `key_id`
/// to be the only active one.
pub fn wait_active(conn: &db::Connection, key_id: &str, within_s: u64) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        let active = active_keys(conn)?;
        if active == [key_id.to_string()] {
            progress::info(&format!("vault_signing_keys: {key_id} is the active key"));
            return Ok(());
        }
        if start.elapsed().as_secs() >= within_s {
            return Err(fail(format!(
                "vault_signing_keys: the active key is {active:?}, not {key_id}, {within_s} s after the services \
                 were recreated"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// test: the new key active, the old one registered, new entries signed
/// with the new key, and no chain broken that was not before.
pub fn check(s: &SigningKey) -> Result<()> {
    let conn = connect()?;
    wait_active(&conn, &s.to_key_id, s.ready_within_s)?;
    let old = vault::count(
        &conn,
        &format!(
            "SELECT count(*) FROM vault_signing_keys WHERE key_id = '{}'",
            hex_only(&s.from_key_id)?
        ),
    )?;
    if old != 1 {
        return Err(fail(format!(
            "the previous key {} is not in vault_signing_keys: entries it signed could not be verified",
            s.from_key_id
        )));
    }
    if !s.since.is_empty() {
        let rows = conn.query(
            "SELECT count(*), count(*) FILTER (WHERE key_id <> $1) FROM vault_entries \
             WHERE created_at >= $2::text::timestamptz",
            &[
                Value::Text(s.to_key_id.clone()),
                Value::Text(s.since.clone()),
            ],
        )?;
        if let Some([Value::Int(written), Value::Int(other)]) = rows.rows.first().map(Vec::as_slice)
        {
            if *other > 0 {
                return Err(fail(format!(
                    "{other} of the {written} vault entries written since the services got the new key are not \
                     signed with it ({})",
                    s.to_key_id
                )));
            }
            progress::info(&format!(
                "{written} vault entries written since the recreate, all signed with {}",
                s.to_key_id
            ));
        }
    }
    let scan = vault::scan(&conn, "vault scan after the rotation")?;
    let broken = scan.broken.len() as u64;
    if broken > s.broken_before {
        return Err(fail(format!(
            "the vault scan finds {broken} broken chain(s), {} before the rotation: {}",
            s.broken_before,
            serde_json::to_string(&scan.broken).unwrap_or_default()
        )));
    }
    progress::info(&format!(
        "vault scan: {} entries of {} mandates checked, {broken} chain(s) broken ({} before)",
        scan.entries, scan.mandates, s.broken_before
    ));
    Ok(())
}

/// A key id goes into SQL text: it must be what it claims (hex).
fn hex_only(id: &str) -> Result<&str> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(fail(format!("{id:?} is not a key id")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stand-in's 48-byte PKCS#8 v1 of the seed [7; 32], and its id as
    /// the product computes it.
    #[test]
    fn key_ids_are_the_products() {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&[7u8; 32]);
        let b64 = B64.encode(&der);
        let public = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let expected = public_key_id(public.as_bytes());
        assert_eq!(key_id(&b64, "K").unwrap(), expected);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----");
        assert_eq!(key_id(&pem, "K").unwrap(), expected);
        assert!(key_id("not base64!", "K").is_err());
        assert!(key_id(&B64.encode([1u8; 10]), "K").is_err());
        assert_eq!(expected.len(), 16);
    }
}
