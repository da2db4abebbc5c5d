//! API keys: stored as hex(HMAC-SHA256(API_KEY_SECRET, key)). While
//! API_KEY_SECRET_PREVIOUS is set (a rotation) a key hashed with either
//! secret authenticates. `rehash-api-keys` recomputes every stored hash with
//! the current secret.
//!
//! Stand-in simplification: the product cannot recover plaintext keys; the
//! stand-in keeps each key it created in the clearly named column
//! `key_plain_for_standin`, used by `rehash-api-keys` only (never by
//! authentication).

use hmac::{Hmac, Mac};
use tokio_postgres::{Client, Transaction};

use crate::config::{self, ApiKeySecrets};
use crate::db::{self, pg_err, Purpose};

type HmacSha256 = Hmac<sha2::Sha256>;

pub fn hash(secret: &[u8], key: &str) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(key.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A new API key: `agl_` + 48 hex characters.
pub fn new_key() -> Result<String, String> {
    Ok(format!("agl_{}", hex::encode(crate::random_bytes::<24>()?)))
}

pub struct Identity {
    pub id: String,
    pub name: String,
    pub role: String,
}

/// Look a presented key up by its hash under the current and, during a
/// rotation, the previous secret. Records last_used_at (best effort).
pub async fn authenticate(
    client: &Client,
    secrets: &ApiKeySecrets,
    key: &str,
) -> Result<Option<Identity>, String> {
    let current = hash(&secrets.current, key);
    let previous = match &secrets.previous {
        Some(p) => hash(p, key),
        None => current.clone(),
    };
    let row = client
        .query_opt(
            "SELECT id, name, role FROM api_keys WHERE key_hash = $1 OR key_hash = $2 ORDER BY id LIMIT 1",
            &[&current, &previous],
        )
        .await
        .map_err(|e| format!("cannot look the api key up: {}", pg_err(&e)))?;
    let Some(row) = row else { return Ok(None) };
    let identity = Identity {
        id: row.get(0),
        name: row.get(1),
        role: row.get(2),
    };
    let _ = client
        .execute(
            "UPDATE api_keys SET last_used_at = now() WHERE id = $1",
            &[&identity.id],
        )
        .await;
    Ok(Some(identity))
}

/// Insert a key the stand-in created (inside the caller's transaction); returns its id.
pub async fn insert(
    tx: &Transaction<'_>,
    secrets: &ApiKeySecrets,
    name: &str,
    role: &str,
    key: &str,
) -> Result<String, String> {
    let id = format!("key_{}", hex::encode(crate::random_bytes::<8>()?));
    tx.execute(
        "INSERT INTO api_keys (id, name, role, key_hash, key_plain_for_standin) VALUES ($1, $2, $3, $4, $5)",
        &[&id, &name, &role, &hash(&secrets.current, key), &key],
    )
    .await
    .map_err(|e| format!("cannot insert api key {name}: {}", pg_err(&e)))?;
    Ok(id)
}

/// The `rehash-api-keys` role.
pub async fn rehash_command() -> Result<(), String> {
    config::check_removed_vars()?;
    let secrets = config::api_key_secrets()?;
    let mut client = db::connect(Purpose::App).await?;
    let rows = client
        .query(
            "SELECT id, key_plain_for_standin FROM api_keys ORDER BY id",
            &[],
        )
        .await
        .map_err(|e| format!("cannot read api_keys: {}", pg_err(&e)))?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| format!("cannot begin a transaction: {}", pg_err(&e)))?;
    let (mut rehashed, mut current, mut skipped) = (0u64, 0u64, Vec::new());
    for row in &rows {
        let id: String = row.get(0);
        let plain: Option<String> = row.get(1);
        let Some(plain) = plain else {
            skipped.push(id);
            continue;
        };
        let new_hash = hash(&secrets.current, &plain);
        let n = tx
            .execute(
                "UPDATE api_keys SET key_hash = $1 WHERE id = $2 AND key_hash <> $1",
                &[&new_hash, &id],
            )
            .await
            .map_err(|e| format!("cannot rehash api key {id}: {}", pg_err(&e)))?;
        if n == 1 {
            rehashed += 1;
        } else {
            current += 1;
        }
    }
    tx.commit()
        .await
        .map_err(|e| format!("cannot commit the rehash: {}", pg_err(&e)))?;
    println!(
        "rehash-api-keys: {rehashed} rehashed, {current} already current, {} skipped",
        skipped.len()
    );
    if !skipped.is_empty() {
        eprintln!(
            "rehash-api-keys: skipped (created outside the stand-in, no stored plaintext): {}",
            skipped.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_known_answer() {
        // RFC 4231 test case 2.
        assert_eq!(
            hash(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn keys_look_right() {
        let k = new_key().unwrap();
        assert!(k.starts_with("agl_") && k.len() == 52, "{k}");
    }
}
