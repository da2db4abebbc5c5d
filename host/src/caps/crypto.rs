//! crypto: Ed25519 verification for plugins that check signatures by the
//! thousand (vault-scan, restore's verification). Natively and spread over
//! the cores, it is many times faster than the same code inside wasm.
//! Pure computation: always linked, no grant, not audited per call.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use super::bindings::opshost::plugin::crypto::{Ed25519Check, Host};
use crate::runtime::HostState;

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

/// Verify on every core: the checks split into one slice per thread.
fn verify_all(checks: &[Ed25519Check]) -> Vec<bool> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || checks.len() < 64 {
        return checks.iter().map(verify).collect();
    }
    let per = checks.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = checks
            .chunks(per)
            .map(|part| scope.spawn(move || part.iter().map(verify).collect::<Vec<_>>()))
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
}
