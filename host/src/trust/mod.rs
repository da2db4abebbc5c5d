//! Image trust: is a container image signed by whom the operator expects?
//! cosign-compatible and offline (no cosign binary, no Rekor or Fulcio
//! calls): the signature is read from the image's registry (the cosign tag
//! `sha256-<hex>.sig`), and checked against roots and keys the operator
//! configured in `[containers.NAME.signatures]`.

pub mod keyless;
pub mod keys;
pub mod registry;
pub mod simplesigning;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;

use keyless::{Evidence, Keyless};
use keys::PublicKey;
use registry::{DigestRef, Repo};

const SIGNATURE: &str = "dev.cosignproject.cosign/signature";
const CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
const CHAIN: &str = "dev.sigstore.cosign/chain";
const BUNDLE: &str = "dev.sigstore.cosign/bundle";

/// `[containers.NAME.signatures]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureSettings {
    /// PEM CA certificates trusted as Fulcio roots.
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
    keyless: Option<Keyless>,
    keys: Vec<(String, PublicKey)>,
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
            let mut roots = Vec::new();
            for path in &s.fulcio_roots {
                let certs = keys::certificates_from_pem(&read(path, "fulcio_roots")?)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("fulcio_roots: {}", path.display()))?;
                for cert in certs {
                    let anchor = webpki::anchor_from_trusted_cert(&cert)
                        .map_err(|e| anyhow::anyhow!("fulcio_roots: {}: {e}", path.display()))?;
                    roots.push(anchor.to_owned());
                }
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

    /// Fetch and check `reference`'s signatures; `Ok` says which one
    /// verified and by whom.
    pub async fn verify(&self, reference: &str) -> Result<String, Failure> {
        let r = DigestRef::parse(reference).map_err(Failure::Unavailable)?;
        let repo = Repo::new(&r);
        let tag = format!("sha256-{}.sig", r.hex());
        let unavailable = |e: String| {
            Failure::Unavailable(format!("cannot read the signature of {reference}: {e}"))
        };
        let Some(manifest) = repo.manifest(&tag).await.map_err(unavailable)? else {
            let referrers = format!("sha256-{}", r.hex());
            let newer = if repo.has_index(&referrers).await.map_err(unavailable)? {
                format!("; the registry holds referrers at {referrers} (cosign 3 Sigstore bundles?), which opshost does not verify yet: sign with cosign's legacy layout too")
            } else {
                String::new()
            };
            return Err(Failure::Refused(format!(
                "no signature found for {reference} (no cosign signature tag {tag} in {}{newer})",
                repo.describe()
            )));
        };
        let manifest: Manifest = serde_json::from_slice(&manifest).map_err(|e| {
            Failure::Refused(format!(
                "the signature manifest {tag} is not an image manifest: {e}"
            ))
        })?;
        let layers: Vec<&Layer> = manifest
            .layers
            .iter()
            .filter(|l| l.media_type == simplesigning::MEDIA_TYPE)
            .collect();
        if layers.is_empty() {
            return Err(Failure::Refused(format!(
                "no signature found for {reference} ({tag} holds no {} layer)",
                simplesigning::MEDIA_TYPE
            )));
        }
        let mut reasons = Vec::new();
        for layer in &layers {
            match self.check_layer(&repo, layer, &r.digest).await {
                Ok(by) => return Ok(by),
                Err(why) => reasons.push(why),
            }
        }
        // The reason first: audit lines keep the first 256 bytes.
        Err(Failure::Refused(if reasons.len() == 1 {
            format!("{} (signature of {reference})", reasons[0])
        } else {
            format!(
                "none of the {} signatures of {reference} is accepted: {}",
                reasons.len(),
                reasons.join("; ")
            )
        }))
    }

    async fn check_layer(
        &self,
        repo: &Repo,
        layer: &Layer,
        digest: &str,
    ) -> Result<String, String> {
        let payload = repo.blob(&layer.digest).await?;
        simplesigning::check(&payload, digest)?;
        let note = |k: &str| layer.annotations.get(k).map(String::as_str);
        let signature = B64
            .decode(
                note(SIGNATURE)
                    .ok_or("the layer has no signature annotation")?
                    .trim(),
            )
            .map_err(|e| format!("the signature annotation is not base64: {e}"))?;
        for (name, key) in &self.keys {
            if key.verify(&payload, &signature) {
                return Ok(format!("signed with key {name}"));
            }
        }
        match (&self.keyless, note(CERTIFICATE)) {
            (Some(policy), Some(cert)) => keyless::verify(
                policy,
                &Evidence {
                    payload: &payload,
                    signature: &signature,
                    certificate_pem: cert,
                    chain_pem: note(CHAIN),
                    bundle_json: note(BUNDLE),
                },
            )
            .map(|who| format!("keyless {who}")),
            (Some(_), None) if self.keys.is_empty() => Err("the signature was made with a key, not a Fulcio certificate, and no keys are configured".into()),
            _ => Err("the signature does not verify with any configured key (payload tampered, or signed by another key)".into()),
        }
    }
}

fn key(path: &Path, what: &str) -> anyhow::Result<(String, PublicKey)> {
    let k = PublicKey::from_pem(&read(path, what)?)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{what}: {}", path.display()))?;
    Ok((path.display().to_string(), k))
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
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
