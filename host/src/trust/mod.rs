//! Image trust: is a container image signed by whom the operator expects?
//! cosign-compatible and offline (no cosign binary, no Rekor or Fulcio
//! calls): signatures are read from the image's registry (cosign's legacy
//! tag `sha256-<hex>.sig`, and cosign 3's Sigstore bundles attached as OCI
//! referrers) and checked against roots and keys the operator configured
//! in `[containers.NAME.signatures]`.

pub mod bundle;
pub mod keyless;
pub mod keys;
pub mod registry;
pub mod simplesigning;
mod verify;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context};
use serde::Deserialize;
use x509_cert::der::Decode;

use keyless::Keyless;
use keys::PublicKey;

/// `[containers.NAME.signatures]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureSettings {
    /// PEM CA certificates: self-signed ones are trusted as Fulcio roots,
    /// the others (intermediates) help build chains.
    #[serde(default)]
    pub fulcio_roots: Vec<PathBuf>,
    /// PEM public keys of the Rekor log.
    #[serde(default)]
    pub rekor_keys: Vec<PathBuf>,
    /// The certificate identity (SAN URI or email), as cosign's
    /// `--certificate-identity-regexp`.
    pub identity_regexp: Option<String>,
    /// The OIDC issuer, as cosign's `--certificate-oidc-issuer`.
    pub issuer: Option<String>,
    /// PEM public keys for key-based signatures (`cosign verify --key`).
    #[serde(default)]
    pub keys: Vec<PathBuf>,
}

impl SignatureSettings {
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in self
            .fulcio_roots
            .iter_mut()
            .chain(&mut self.rekor_keys)
            .chain(&mut self.keys)
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// The checked, loaded form: what a signature must satisfy.
pub struct ImagePolicy {
    pub(crate) keyless: Option<Keyless>,
    /// (where the key came from, the key)
    pub(crate) keys: Vec<(String, PublicKey)>,
}

impl std::fmt::Debug for ImagePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{what}: cannot read {}", path.display()))
}

impl ImagePolicy {
    /// Load and check every file and pattern now, so a broken policy is a
    /// config error at startup, not a refusal in the middle of an upgrade.
    pub fn load(s: &SignatureSettings) -> anyhow::Result<Self> {
        let keyless_parts = [
            !s.fulcio_roots.is_empty(),
            !s.rekor_keys.is_empty(),
            s.identity_regexp.is_some(),
            s.issuer.is_some(),
        ];
        let keyless = if keyless_parts.iter().all(|p| *p) {
            // Self-signed certificates are the roots; others (a Fulcio
            // intermediate, as trusted_root.json's certChain lists it)
            // join the chain the signature brings, which a Sigstore
            // bundle leaves out.
            let (mut roots, mut intermediates) = (Vec::new(), Vec::new());
            for path in &s.fulcio_roots {
                let certs = keys::certificates_from_pem(&read(path, "fulcio_roots")?)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("fulcio_roots: {}", path.display()))?;
                for cert in certs {
                    let parsed = x509_cert::Certificate::from_der(cert.as_ref())
                        .map_err(|e| anyhow::anyhow!("fulcio_roots: {}: {e}", path.display()))?;
                    let tbs = &parsed.tbs_certificate;
                    if tbs.subject != tbs.issuer {
                        intermediates.push(cert);
                        continue;
                    }
                    let anchor = webpki::anchor_from_trusted_cert(&cert)
                        .map_err(|e| anyhow::anyhow!("fulcio_roots: {}: {e}", path.display()))?;
                    roots.push(anchor.to_owned());
                }
            }
            if roots.is_empty() {
                bail!("fulcio_roots holds no self-signed (root) certificate");
            }
            let rekor = s
                .rekor_keys
                .iter()
                .map(|p| key(p, "rekor_keys").map(|(_, k)| k))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let pattern = s.identity_regexp.as_deref().unwrap_or_default();
            let identity = regex::Regex::new(pattern)
                .with_context(|| format!("identity_regexp {pattern:?} is not a valid regex"))?;
            let issuer = s.issuer.clone().unwrap_or_default();
            if issuer.is_empty() {
                bail!("issuer is empty");
            }
            Some(Keyless {
                roots,
                intermediates,
                rekor,
                identity,
                issuer,
            })
        } else if keyless_parts.iter().any(|p| *p) {
            bail!("keyless verification needs fulcio_roots, rekor_keys, identity_regexp and issuer together (some are missing)");
        } else {
            None
        };
        let keys = s
            .keys
            .iter()
            .map(|p| key(p, "keys"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if keyless.is_none() && keys.is_empty() {
            bail!("give keys, or fulcio_roots + rekor_keys + identity_regexp + issuer");
        }
        Ok(Self { keyless, keys })
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(k) = &self.keyless {
            parts.push(format!(
                "keyless: identity {:?}, issuer {:?}",
                k.identity.as_str(),
                k.issuer
            ));
        }
        if !self.keys.is_empty() {
            parts.push(format!("{} key(s)", self.keys.len()));
        }
        parts.join("; ")
    }
}

fn key(path: &Path, what: &str) -> anyhow::Result<(String, PublicKey)> {
    let k = PublicKey::from_pem(&read(path, what)?)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{what}: {}", path.display()))?;
    Ok((path.display().to_string(), k))
}

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
