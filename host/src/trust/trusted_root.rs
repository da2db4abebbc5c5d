//! Sigstore's `trusted_root.json` (what `cosign` gets from Sigstore's TUF
//! repository): the Fulcio certificate chains and the Rekor keys in it.
//! Validity windows (`validFor`) are not applied: every listed authority
//! and log is trusted, as with fulcio_roots and rekor_keys.

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use super::keys::PublicKey;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrustedRoot {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<Tlog>,
    #[serde(default)]
    certificate_authorities: Vec<Authority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tlog {
    base_url: Option<String>,
    public_key: RawKey,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKey {
    raw_bytes: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Authority {
    cert_chain: CertChain,
}

#[derive(Deserialize)]
struct CertChain {
    certificates: Vec<RawKey>,
}

pub struct Loaded {
    pub certificates: Vec<CertificateDer<'static>>,
    pub rekor_keys: Vec<PublicKey>,
}

pub fn load(json: &[u8]) -> anyhow::Result<Loaded> {
    let root: TrustedRoot = serde_json::from_slice(json).context("not a trusted_root.json")?;
    if !root
        .media_type
        .starts_with("application/vnd.dev.sigstore.trustedroot")
    {
        anyhow::bail!(
            "mediaType {:?} is not a Sigstore trusted root",
            root.media_type
        );
    }
    let mut certificates = Vec::new();
    for ca in &root.certificate_authorities {
        for cert in &ca.cert_chain.certificates {
            let der = B64
                .decode(cert.raw_bytes.trim())
                .context("a certificate is not base64")?;
            certificates.push(CertificateDer::from(der));
        }
    }
    let mut rekor_keys = Vec::new();
    for log in &root.tlogs {
        let der = B64
            .decode(log.public_key.raw_bytes.trim())
            .context("a transparency log key is not base64")?;
        let key = PublicKey::from_spki_der(&der).map_err(|e| {
            anyhow::anyhow!(
                "transparency log {}: {e}",
                log.base_url.as_deref().unwrap_or("?")
            )
        })?;
        rekor_keys.push(key);
    }
    Ok(Loaded {
        certificates,
        rekor_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_authorities_and_logs() {
        // A P-256 key (`openssl ec -pubout`), DER in base64.
        let key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE0XLYThjCoetaTzBAiB41b9a5b6OKilIzYz1SB2fDUBr+qSPZhVzzwXGHGE2AF9T00n7CYYhtjFEy/TbeW1Ty6A==";
        let json = format!(
            r#"{{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                "tlogs":[{{"baseUrl":"https://rekor.example","hashAlgorithm":"SHA2_256",
                           "publicKey":{{"rawBytes":"{key}","keyDetails":"PKIX_ECDSA_P256_SHA_256"}},
                           "logId":{{"keyId":"x"}}}}],
                "certificateAuthorities":[{{"certChain":{{"certificates":[{{"rawBytes":"AAEC"}}]}}}}],
                "ctlogs":[],"timestampAuthorities":[]}}"#
        );
        let loaded = load(json.as_bytes()).expect("trusted root");
        assert_eq!(loaded.rekor_keys.len(), 1);
        assert_eq!(loaded.certificates[0].as_ref(), &[0, 1, 2]);
        assert!(load(br#"{"mediaType":"something/else"}"#).is_err());
        assert!(load(b"{}").is_err());
    }
}
