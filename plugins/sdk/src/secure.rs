//! Secrets from the host's secure random source (the `crypto` interface):
//! the operating system's CSPRNG, never the guest's own generator, whose
//! seeding a plugin cannot vouch for. The host audits each call by size,
//! never with the bytes; neither must a plugin print or journal them.

use crate::{crypto, Result};

/// `len` secure random bytes (at most 1024).
pub fn random_bytes(len: u32) -> Result<Vec<u8>> {
    crypto::random_bytes(len)
}

/// A secret of `bytes` random bytes as lower-case hex (`2 * bytes`
/// characters): e.g. 32 bytes for a 64-hex HMAC key.
pub fn random_hex(bytes: u32) -> Result<String> {
    use std::fmt::Write;
    let raw = random_bytes(bytes)?;
    let mut hex = String::with_capacity(raw.len() * 2);
    for b in raw {
        let _ = write!(hex, "{b:02x}");
    }
    Ok(hex)
}

/// A new Ed25519 private key as PKCS#8 v1 DER (48 bytes).
pub fn ed25519_pkcs8() -> Result<Vec<u8>> {
    crypto::generate_ed25519()
}
