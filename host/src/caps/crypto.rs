//! crypto: Ed25519 verification for plugins that check signatures by the
//! thousand (vault-scan, restore's verification). Natively and spread over
//! the cores, it is many times faster than the same code inside wasm.
//! And secrets for rotations: bytes from the OS's CSPRNG (getrandom), and
//! Ed25519 keys made from them, so no secret depends on a guest's RNG.
//! Pure computation: always linked, no grant. Verification is not audited
//! per call; secret-making is, by size only (never the bytes).

use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use super::bindings::opshost::plugin::crypto::{Ed25519Check, Host};
use super::CapError;
use crate::caps::HostState;

/// The most random bytes one call returns: secrets are small; a plugin
/// asking for more is mistaken, not short of entropy.
const MAX_RANDOM: u32 = 1024;

/// RFC 8410 PKCS#8 v1 for Ed25519: SEQUENCE { INTEGER 0, SEQUENCE { OID
/// 1.3.101.112 }, OCTET STRING { OCTET STRING (32 bytes) } }. Everything
/// but the seed is fixed, so the document is this prefix and the seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn random(len: u32) -> Result<Vec<u8>, CapError> {
    if len > MAX_RANDOM {
        return Err(CapError::Invalid(format!(
            "random-bytes: {len} bytes asked, at most {MAX_RANDOM} per call"
        )));
    }
    let mut bytes = vec![0u8; len as usize];
    getrandom::getrandom(&mut bytes).map_err(|e| {
        CapError::Failed(format!(
            "the operating system's secure random source failed: {e}"
        ))
    })?;
    Ok(bytes)
}

fn ed25519_pkcs8() -> Result<Vec<u8>, CapError> {
    let seed = random(32)?;
    // Proves the seed makes a key (any 32 bytes do; this keeps it honest
    // should the encoding ever change).
    let seed_array: [u8; 32] = seed
        .as_slice()
        .try_into()
        .map_err(|_| CapError::Failed("the random source gave a short seed".into()))?;
    let _ = ed25519_dalek::SigningKey::from_bytes(&seed_array);
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    Ok(der)
}

fn verify(check: &Ed25519Check) -> bool {
    let Ok(key) = <[u8; 32]>::try_from(check.public_key.as_slice()) else {
        return false;
    };
    let Ok(signature) = <[u8; 64]>::try_from(check.signature.as_slice()) else {
        return false;
    };
    VerifyingKey::from_bytes(&key).is_ok_and(|k| {
        k.verify(&check.message, &Signature::from_bytes(&signature))
            .is_ok()
    })
}

/// Verify a slice: as one batch (about twice as fast as one by one when all
/// are good, the common case), else one by one to say which failed.
fn verify_slice(checks: &[Ed25519Check]) -> Vec<bool> {
    let parsed: Option<Vec<(VerifyingKey, Signature)>> = checks
        .iter()
        .map(|c| {
            let key = <[u8; 32]>::try_from(c.public_key.as_slice()).ok()?;
            let signature = <[u8; 64]>::try_from(c.signature.as_slice()).ok()?;
            Some((
                VerifyingKey::from_bytes(&key).ok()?,
                Signature::from_bytes(&signature),
            ))
        })
        .collect();
    if let Some(parsed) = parsed {
        let messages: Vec<&[u8]> = checks.iter().map(|c| c.message.as_slice()).collect();
        let (keys, signatures): (Vec<_>, Vec<_>) = parsed.into_iter().unzip();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return vec![true; checks.len()];
        }
    }
    checks.iter().map(verify).collect()
}

/// Verify on every core: the checks split into one slice per thread.
fn verify_all(checks: &[Ed25519Check]) -> Vec<bool> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || checks.len() < 64 {
        return verify_slice(checks);
    }
    let per = checks.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = checks
            .chunks(per)
            .map(|part| scope.spawn(move || verify_slice(part)))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_default())
            .collect()
    })
}

impl Host for HostState {
    async fn verify_ed25519(&mut self, checks: Vec<Ed25519Check>) -> wasmtime::Result<Vec<bool>> {
        let verified = tokio::task::spawn_blocking(move || verify_all(&checks)).await?;
        Ok(verified)
    }

    async fn random_bytes(&mut self, len: u32) -> Result<Vec<u8>, CapError> {
        let call = self
            .run
            .call("crypto", "", "random-bytes")
            .detail(format!("{len} bytes"));
        call.finish(random(len))
    }

    async fn generate_ed25519(&mut self) -> Result<Vec<u8>, CapError> {
        let call = self
            .run
            .call("crypto", "", "generate-ed25519")
            .detail("PKCS#8 v1, 48 bytes");
        call.finish(ed25519_pkcs8())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn verifies_in_order_and_malformed_input_is_false() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let public = key.verifying_key().to_bytes().to_vec();
        let checks: Vec<Ed25519Check> = (0..200u32)
            .map(|i| {
                let message = i.to_string().into_bytes();
                let mut signature = key.sign(&message).to_bytes().to_vec();
                if i % 7 == 0 {
                    signature[0] ^= 1;
                }
                Ed25519Check {
                    public_key: public.clone(),
                    message,
                    signature,
                }
            })
            .collect();
        let got = verify_all(&checks);
        assert_eq!(got.len(), 200);
        for (i, ok) in got.iter().enumerate() {
            assert_eq!(*ok, i % 7 != 0, "check {i}");
        }
        let short = Ed25519Check {
            public_key: vec![1, 2],
            message: vec![],
            signature: vec![],
        };
        assert_eq!(verify_all(&[short]), vec![false]);
    }

    #[test]
    fn random_is_capped_and_differs() {
        assert!(matches!(random(MAX_RANDOM + 1), Err(CapError::Invalid(_))));
        let (a, b) = (random(32).unwrap(), random(32).unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn generated_keys_are_pkcs8_that_dalek_reads() {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let der = ed25519_pkcs8().unwrap();
        assert_eq!(der.len(), 48);
        let key = SigningKey::from_pkcs8_der(&der).expect("PKCS#8 v1");
        assert_eq!(key.to_bytes().as_slice(), &der[16..]);
        assert_ne!(ed25519_pkcs8().unwrap(), der);
    }
}
