//! Image trust: is a container image signed by whom the operator expects?
//! cosign-compatible and offline (no cosign binary, no Rekor or Fulcio
//! calls): signatures are read from the image's registry (cosign's legacy
//! tag `sha256-<hex>.sig`, and cosign 3's Sigstore bundles attached as OCI
//! referrers) and checked against roots and keys the operator configured
//! in `[containers.NAME.signatures]`.

pub mod bundle;
pub mod keyless;
pub mod keys;
mod policy;
pub mod registry;
pub mod simplesigning;
mod trusted_root;
mod verify;

pub use policy::{ImagePolicy, SignatureSettings};

use std::collections::BTreeSet;
use std::sync::Mutex;

/// Why an image is not trusted.
#[derive(Debug)]
pub enum Failure {
    /// The signatures say no (or there are none): the operator's policy refuses.
    Refused(String),
    /// The signatures could not be read (registry unreachable, HTTP errors).
    Unavailable(String),
}

/// A run's image trust state: the digests verified in this run, and
/// whether `--require-signed` was given.
#[derive(Debug, Default)]
pub struct RunTrust {
    pub require_signed: bool,
    verified: Mutex<BTreeSet<String>>,
}

impl RunTrust {
    pub fn new(require_signed: bool) -> Self {
        Self {
            require_signed,
            verified: Default::default(),
        }
    }

    pub fn record(&self, reference: &str) {
        if let Ok(mut v) = self.verified.lock() {
            v.insert(reference.to_string());
        }
    }

    pub fn is_verified(&self, reference: &str) -> bool {
        self.verified
            .lock()
            .map(|v| v.contains(reference))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_load_relative_to_the_config_and_check_their_parts() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A real P-256 key (`openssl ec -pubout`).
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE0XLYThjCoetaTzBAiB41b9a5b6OK\nilIzYz1SB2fDUBr+qSPZhVzzwXGHGE2AF9T00n7CYYhtjFEy/TbeW1Ty6A==\n-----END PUBLIC KEY-----\n";
        std::fs::write(dir.path().join("cosign.pub"), pem).expect("key");
        let config = crate::config::Config::parse(
            "[containers.a]\nproject = 'a'\n[containers.a.signatures]\nkeys = ['cosign.pub']\n",
            dir.path(),
        )
        .expect("config");
        let a = &config.containers["a"];
        assert_eq!(
            a.signatures.as_ref().expect("settings").keys[0],
            dir.path().join("cosign.pub")
        );
        assert_eq!(a.trust.as_ref().expect("policy").describe(), "1 key(s)");
        let err = ImagePolicy::load(&SignatureSettings {
            keys: vec![dir.path().join("cosign.pub")],
            identity_regexp: Some("x".into()),
            ..Default::default()
        })
        .expect_err("half keyless");
        assert!(err.to_string().contains("together"), "{err}");
        let err = ImagePolicy::load(&SignatureSettings {
            fulcio_roots: vec![dir.path().join("cosign.pub")],
            rekor_keys: vec![dir.path().join("cosign.pub")],
            identity_regexp: Some("x".into()),
            issuer: Some("i".into()),
            ..Default::default()
        })
        .expect_err("a key is no CA certificate");
        assert!(format!("{err:#}").contains("no PEM CERTIFICATE"), "{err:#}");
    }

    #[test]
    fn run_trust_remembers_exact_references() {
        let t = RunTrust::new(false);
        t.record("r@sha256:aa");
        assert!(t.is_verified("r@sha256:aa"));
        assert!(!t.is_verified("r:1.0") && !t.is_verified("other@sha256:aa"));
    }
}
