//! `[containers.NAME.signatures]`: what the operator writes, and the
//! checked form it loads into (every file read, every PEM parsed, the
//! regex compiled) when the config is loaded, so a broken policy is a
//! config error at startup, never a refusal in the middle of an upgrade.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use x509_cert::der::Decode;

use super::keyless::Keyless;
use super::keys::{self, PublicKey};
use super::trusted_root;

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
    /// A Sigstore `trusted_root.json`: its certificate authorities and
    /// transparency logs count as fulcio_roots and rekor_keys.
    pub trusted_root: Option<PathBuf>,
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
            .chain(&mut self.trusted_root)
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

fn key(path: &Path, what: &str) -> anyhow::Result<(String, PublicKey)> {
    let k = PublicKey::from_pem(&read(path, what)?)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{what}: {}", path.display()))?;
    Ok((path.display().to_string(), k))
}

impl ImagePolicy {
    pub fn load(s: &SignatureSettings) -> anyhow::Result<Self> {
        let has_roots = !s.fulcio_roots.is_empty() || s.trusted_root.is_some();
        let has_rekor = !s.rekor_keys.is_empty() || s.trusted_root.is_some();
        let parts = [
            has_roots,
            has_rekor,
            s.identity_regexp.is_some(),
            s.issuer.is_some(),
        ];
        let keyless = if parts.iter().all(|p| *p) {
            Some(keyless(s)?)
        } else if parts.iter().any(|p| *p) {
            bail!("keyless verification needs fulcio_roots, rekor_keys, identity_regexp and issuer together (or trusted_root for the first two); some are missing");
        } else {
            None
        };
        let keys = s
            .keys
            .iter()
            .map(|p| key(p, "keys"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if keyless.is_none() && keys.is_empty() {
            bail!("give keys, or fulcio_roots + rekor_keys (or trusted_root) + identity_regexp + issuer");
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

fn keyless(s: &SignatureSettings) -> anyhow::Result<Keyless> {
    let mut certs: Vec<(String, CertificateDer<'static>)> = Vec::new();
    let mut rekor = Vec::new();
    for path in &s.fulcio_roots {
        let found = keys::certificates_from_pem(&read(path, "fulcio_roots")?)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("fulcio_roots: {}", path.display()))?;
        let source = format!("fulcio_roots: {}", path.display());
        certs.extend(found.into_iter().map(|c| (source.clone(), c)));
    }
    for path in &s.rekor_keys {
        rekor.push(key(path, "rekor_keys")?.1);
    }
    if let Some(path) = &s.trusted_root {
        let root = trusted_root::load(&read(path, "trusted_root")?)
            .with_context(|| format!("trusted_root: {}", path.display()))?;
        let source = format!("trusted_root: {}", path.display());
        certs.extend(root.certificates.into_iter().map(|c| (source.clone(), c)));
        rekor.extend(root.rekor_keys);
    }
    // Self-signed certificates are the roots; the others (a Fulcio
    // intermediate, as trusted_root.json's certChain lists it) join the
    // chain a signature brings, which a Sigstore bundle leaves out.
    let (mut roots, mut intermediates) = (Vec::new(), Vec::new());
    for (source, cert) in certs {
        let parsed = x509_cert::Certificate::from_der(cert.as_ref())
            .map_err(|e| anyhow::anyhow!("{source}: not a certificate: {e}"))?;
        let tbs = &parsed.tbs_certificate;
        if tbs.subject != tbs.issuer {
            intermediates.push(cert);
            continue;
        }
        let anchor = webpki::anchor_from_trusted_cert(&cert)
            .map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
        roots.push(anchor.to_owned());
    }
    if roots.is_empty() {
        bail!("fulcio_roots / trusted_root hold no self-signed (root) certificate");
    }
    if rekor.is_empty() {
        bail!("rekor_keys / trusted_root hold no Rekor key");
    }
    let pattern = s.identity_regexp.as_deref().unwrap_or_default();
    let identity = regex::Regex::new(pattern)
        .with_context(|| format!("identity_regexp {pattern:?} is not a valid regex"))?;
    let issuer = s.issuer.clone().unwrap_or_default();
    if issuer.is_empty() {
        bail!("issuer is empty");
    }
    Ok(Keyless {
        roots,
        intermediates,
        rekor,
        identity,
        issuer,
    })
}
