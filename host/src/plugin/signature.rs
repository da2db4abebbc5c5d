//! Detached plugin signatures: Ed25519 over the plugin's SHA-256, in a
//! `PLUGIN.wasm.sig` file beside it. A policy entry with a `signer` applies
//! only to a plugin carrying a valid signature by that key, so a vendor can
//! ship new builds without the security team re-pinning digests.
//!
//! Signature file (text): `opshost-signature-v1`, the signer's public key
//! `ed25519:BASE64`, and the signature `BASE64`, one per line.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

const MAGIC: &str = "opshost-signature-v1";
/// What is signed: a fixed context and the plugin digest, so a signature
/// can never be replayed as a signature over something else.
fn message(sha256_hex: &str) -> Vec<u8> {
    format!("{MAGIC}\n{sha256_hex}\n").into_bytes()
}

/// `ed25519:BASE64` of a public key.
pub fn key_text(key: &VerifyingKey) -> String {
    format!("ed25519:{}", B64.encode(key.as_bytes()))
}

pub fn parse_key(text: &str) -> anyhow::Result<VerifyingKey> {
    let b64 = text
        .trim()
        .strip_prefix("ed25519:")
        .with_context(|| format!("signer {text:?} must look like ed25519:BASE64"))?;
    let bytes: [u8; 32] = B64
        .decode(b64)
        .context("the signer key is not base64")?
        .try_into()
        .map_err(|_| anyhow::anyhow!("an ed25519 public key is 32 bytes"))?;
    VerifyingKey::from_bytes(&bytes).context("not a valid ed25519 public key")
}

pub fn signature_path(plugin: &Path) -> PathBuf {
    let mut name = plugin.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// What we know about a plugin's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Unsigned,
    /// Valid, by this key (`ed25519:…`).
    Valid(String),
    /// A signature file that does not verify: the reason.
    Invalid(String),
}

impl Status {
    pub fn describe(&self) -> String {
        match self {
            Self::Unsigned => "unsigned (no .sig file beside the plugin)".into(),
            Self::Valid(key) => format!("signed by {key}"),
            Self::Invalid(why) => format!("INVALID signature: {why}"),
        }
    }
}

/// Check the `.sig` beside `plugin` against its digest.
pub fn check(plugin: &Path, sha256_hex: &str) -> Status {
    let path = signature_path(plugin);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Status::Unsigned,
        Err(e) => return Status::Invalid(format!("cannot read {}: {e}", path.display())),
    };
    match verify_text(&text, sha256_hex) {
        Ok(key) => Status::Valid(key_text(&key)),
        Err(e) => Status::Invalid(format!("{e:#}")),
    }
}

fn verify_text(text: &str, sha256_hex: &str) -> anyhow::Result<VerifyingKey> {
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        bail!("not an opshost signature file");
    }
    let key = parse_key(lines.next().unwrap_or_default())?;
    let sig_bytes: [u8; 64] = B64
        .decode(lines.next().unwrap_or_default().trim())
        .context("the signature is not base64")?
        .try_into()
        .map_err(|_| anyhow::anyhow!("an ed25519 signature is 64 bytes"))?;
    key.verify(&message(sha256_hex), &Signature::from_bytes(&sig_bytes))
        .context("the signature does not match this plugin (modified after signing, or signed for another file)")?;
    Ok(key)
}

/// A new signing key: the secret seed (base64, for a 0600 file) and the
/// public key text for policies.
pub fn generate() -> anyhow::Result<(String, String)> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    Ok((B64.encode(seed), key_text(&key.verifying_key())))
}

pub fn load_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key {}", path.display()))?;
    let seed: [u8; 32] = B64
        .decode(text.trim())
        .context("the key file is not base64")?
        .try_into()
        .map_err(|_| {
            anyhow::anyhow!("the key file must hold a 32-byte ed25519 seed (from opshost keygen)")
        })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The signature file text for a plugin digest.
pub fn sign(key: &SigningKey, sha256_hex: &str) -> String {
    let sig = key.sign(&message(sha256_hex));
    format!(
        "{MAGIC}\n{}\n{}\n",
        key_text(&key.verifying_key()),
        B64.encode(sig.to_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_detect_tampering() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let text = sign(&key, "aa");
        assert_eq!(
            verify_text(&text, "aa").expect("valid").as_bytes(),
            key.verifying_key().as_bytes()
        );
        assert!(verify_text(&text, "ab").is_err(), "another digest");
        let forged = text.replace(
            &key_text(&key.verifying_key()),
            &key_text(&SigningKey::from_bytes(&[8u8; 32]).verifying_key()),
        );
        assert!(verify_text(&forged, "aa").is_err(), "another key");
        assert!(verify_text("garbage", "aa").is_err());
        assert!(parse_key("rsa:abc").is_err());
        assert!(parse_key(&key_text(&key.verifying_key())).is_ok());
    }
}
