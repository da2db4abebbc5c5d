//! Finding an image's signatures in its registry and trying each against
//! the policy: cosign's legacy layout (tag `sha256-<hex>.sig`, simple-signing
//! layers with annotations) and Sigstore bundles attached as OCI referrers
//! (cosign 3). One accepted signature is enough, as with cosign.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;

use super::keyless::{self, Evidence};
use super::registry::{DigestRef, Repo};
use super::{bundle, simplesigning, Failure, ImagePolicy};

const SIGNATURE: &str = "dev.cosignproject.cosign/signature";
const CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
const CHAIN: &str = "dev.sigstore.cosign/chain";
const BUNDLE: &str = "dev.sigstore.cosign/bundle";
/// Signatures tried per image: each costs registry requests, and a registry
/// could list thousands.
const MAX_TRIED: usize = 16;

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Descriptor>,
    subject: Option<Descriptor>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl ImagePolicy {
    /// Fetch and check `reference`'s signatures; `Ok` says which one
    /// verified and by whom.
    pub async fn verify(&self, reference: &str) -> Result<String, Failure> {
        let r = DigestRef::parse(reference).map_err(Failure::Unavailable)?;
        let repo = Repo::new(&r);
        let unavailable = |e: String| {
            Failure::Unavailable(format!("cannot read the signatures of {reference}: {e}"))
        };
        let tag = format!("sha256-{}.sig", r.hex());
        let legacy = repo.manifest(&tag).await.map_err(unavailable)?;
        let referrers = repo.referrers(&r.digest).await.map_err(unavailable)?;
        if legacy.is_none() && referrers.is_none() {
            return Err(Failure::Refused(format!(
                "no signature found for {reference} (no cosign signature tag {tag} and no Sigstore bundle referrers in {})",
                repo.describe()
            )));
        }
        let mut tried = 0;
        let mut reasons = Vec::new();
        if let Some(manifest) = legacy {
            let manifest: Manifest = serde_json::from_slice(&manifest).map_err(|e| {
                Failure::Refused(format!("the signature manifest {tag} is unreadable: {e}"))
            })?;
            for layer in manifest
                .layers
                .iter()
                .filter(|l| l.media_type == simplesigning::MEDIA_TYPE)
                .take(MAX_TRIED)
            {
                tried += 1;
                match self.check_layer(&repo, layer, &r.digest).await {
                    Ok(by) => return Ok(by),
                    Err(why) => reasons.push(why),
                }
            }
        }
        if let Some(index) = referrers {
            let index: Index = serde_json::from_slice(&index).map_err(|e| {
                Failure::Refused(format!(
                    "the referrers index of {reference} is unreadable: {e}"
                ))
            })?;
            for referrer in index
                .manifests
                .iter()
                .filter(|m| {
                    m.artifact_type
                        .as_deref()
                        .is_some_and(|t| t.starts_with(bundle::MEDIA_TYPE_PREFIX))
                })
                .take(MAX_TRIED.saturating_sub(tried))
            {
                tried += 1;
                match self.check_referrer(&repo, referrer, &r.digest).await {
                    Ok(by) => return Ok(by),
                    Err(why) => reasons.push(why),
                }
            }
        }
        // The reason first: audit lines keep the first 256 bytes.
        Err(Failure::Refused(match reasons.len() {
            0 => format!(
                "no signature found for {reference} ({tried} signature manifests, none with a cosign signature or a Sigstore bundle)"
            ),
            1 => format!("{} (signature of {reference})", reasons[0]),
            n => format!(
                "none of the {n} signatures of {reference} is accepted: {}",
                reasons.join("; ")
            ),
        }))
    }

    /// One simple-signing layer of the legacy layout.
    async fn check_layer(
        &self,
        repo: &Repo,
        layer: &Descriptor,
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

    /// One Sigstore bundle referrer (its manifest, then its bundle layer).
    async fn check_referrer(
        &self,
        repo: &Repo,
        referrer: &Descriptor,
        digest: &str,
    ) -> Result<String, String> {
        let manifest: Manifest = serde_json::from_slice(
            &repo.manifest_by_digest(&referrer.digest).await?,
        )
        .map_err(|e| format!("the bundle manifest {} is unreadable: {e}", referrer.digest))?;
        if let Some(subject) = &manifest.subject {
            if subject.digest != digest {
                return Err(format!(
                    "the bundle manifest {} is attached to {}, not to this image",
                    referrer.digest, subject.digest
                ));
            }
        }
        let layer = manifest
            .layers
            .iter()
            .find(|l| l.media_type.starts_with(bundle::MEDIA_TYPE_PREFIX))
            .ok_or_else(|| {
                format!(
                    "the bundle manifest {} has no bundle layer",
                    referrer.digest
                )
            })?;
        let json = repo.blob(&layer.digest).await?;
        bundle::verify(self.keyless.as_ref(), &self.keys, &json, digest)
    }
}
