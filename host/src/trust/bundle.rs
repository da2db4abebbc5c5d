//! Sigstore bundles, the layout `cosign sign` uses from cosign 3 on: an
//! OCI referrer of the image holding a bundle whose DSSE envelope wraps an
//! in-toto statement (predicate `https://sigstore.dev/cosign/sign/v1`)
//! naming the image digest, with the signing certificate (or a key hint)
//! and the Rekor entry (kind `dsse`, with its SET). The same checks as the
//! legacy layout, over the DSSE pre-authentication encoding.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::keyless::{self, Keyless};
use super::keys::{certificates_from_pem, PublicKey};

/// Media types (and artifact types) of Sigstore bundles start with this.
pub const MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
const IN_TOTO: &str = "application/vnd.in-toto+json";
const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    verification_material: Material,
    dsse_envelope: Option<Envelope>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Material {
    /// v0.3: the leaf only.
    certificate: Option<Raw>,
    /// v0.1/v0.2: the leaf, then intermediates.
    x509_certificate_chain: Option<Chain>,
    #[serde(default)]
    tlog_entries: Vec<TlogEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct Chain {
    certificates: Vec<Raw>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlogEntry {
    log_index: String,
    log_id: LogId,
    kind_version: KindVersion,
    integrated_time: String,
    inclusion_promise: Option<Promise>,
    canonicalized_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogId {
    key_id: String,
}

#[derive(Deserialize)]
struct KindVersion {
    kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Promise {
    signed_entry_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<DsseSignature>,
}

#[derive(Deserialize)]
struct DsseSignature {
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(default)]
    subject: Vec<Subject>,
    predicate_type: String,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: BTreeMap<String, String>,
}

/// A Rekor `dsse` entry body (the fields that bind it to this envelope).
#[derive(Deserialize)]
struct DsseEntry {
    kind: String,
    spec: DsseSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DsseSpec {
    payload_hash: Hash,
    signatures: Vec<EntrySignature>,
}

#[derive(Deserialize)]
struct Hash {
    algorithm: String,
    value: String,
}

#[derive(Deserialize)]
struct EntrySignature {
    signature: String,
    verifier: String,
}

/// DSSE's pre-authentication encoding: what the signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn b64(what: &str, text: &str) -> Result<Vec<u8>, String> {
    B64.decode(text.trim())
        .map_err(|e| format!("the bundle's {what} is not base64: {e}"))
}

/// Check one bundle (JSON) for `digest` (`sha256:<hex>`) against the
/// configured keys and keyless policy; `Ok` says who signed.
pub fn verify(
    keyless: Option<&Keyless>,
    keys: &[(String, PublicKey)],
    json: &[u8],
    digest: &str,
) -> Result<String, String> {
    let bundle: Bundle = serde_json::from_slice(json)
        .map_err(|e| format!("the Sigstore bundle is not readable: {e}"))?;
    let envelope = bundle.dsse_envelope.ok_or(
        "the Sigstore bundle holds no DSSE envelope (a message signature is what `cosign sign-blob` makes, not an image signature)",
    )?;
    if envelope.payload_type != IN_TOTO {
        return Err(format!(
            "the bundle's payload type is {:?}, not {IN_TOTO}",
            envelope.payload_type
        ));
    }
    let payload = b64("payload", &envelope.payload)?;
    check_statement(&payload, digest)?;
    let signed = pae(&envelope.payload_type, &payload);
    let signature = b64(
        "signature",
        &envelope
            .signatures
            .first()
            .ok_or("the bundle's envelope has no signature")?
            .sig,
    )?;
    for (name, key) in keys {
        if key.verify(&signed, &signature) {
            return Ok(format!("signed with key {name} (Sigstore bundle)"));
        }
    }
    let material = &bundle.verification_material;
    let mut certs = match (&material.certificate, &material.x509_certificate_chain) {
        (Some(leaf), _) => vec![leaf],
        (None, Some(chain)) => chain.certificates.iter().collect(),
        (None, None) => Vec::new(),
    }
    .into_iter()
    .map(|c| b64("certificate", &c.raw_bytes).map(CertificateDer::from))
    .collect::<Result<Vec<_>, _>>()?;
    let Some(policy) = keyless else {
        return Err("the signature does not verify with any configured key (statement tampered, or signed by another key)".into());
    };
    if certs.is_empty() {
        return Err("the bundle was made with a key, not a Fulcio certificate, and no configured key verifies it".into());
    }
    let leaf = certs.remove(0);
    let entry = material
        .tlog_entries
        .first()
        .ok_or("the bundle has no Rekor entry; a keyless certificate is only trusted with one")?;
    let when: u64 = entry
        .integrated_time
        .parse()
        .map_err(|_| "the Rekor entry's integratedTime is not a number".to_string())?;
    let signer = keyless::certified(policy, &leaf, &certs, when)?;
    if !signer.key.verify(&signed, &signature) {
        return Err(
            "the signature does not verify with the certificate's key (statement tampered?)".into(),
        );
    }
    let set = entry.inclusion_promise.as_ref().ok_or(
        "the Rekor entry has no signed entry timestamp (a Rekor v2 entry?); opshost verifies Rekor entries offline by their SET only",
    )?;
    let log_index: i64 = entry
        .log_index
        .parse()
        .map_err(|_| "the Rekor entry's logIndex is not a number".to_string())?;
    let legacy = keyless::Bundle {
        set: set.signed_entry_timestamp.clone(),
        payload: keyless::BundlePayload {
            body: entry.canonicalized_body.clone(),
            integrated_time: i64::try_from(when).unwrap_or(i64::MAX),
            log_index,
            log_id: hex::encode(b64("log id", &entry.log_id.key_id)?),
        },
    };
    keyless::check_set(&policy.rekor, &legacy)?;
    if entry.kind_version.kind != "dsse" {
        return Err(format!(
            "the Rekor entry is a {:?}, not a dsse entry",
            entry.kind_version.kind
        ));
    }
    check_entry(
        &entry.canonicalized_body,
        &payload,
        &signature,
        leaf.as_ref(),
    )?;
    Ok(format!(
        "keyless (Sigstore bundle) {}",
        signer.describe(log_index)
    ))
}

/// The statement is a cosign image signature of exactly `digest`.
fn check_statement(payload: &[u8], digest: &str) -> Result<(), String> {
    let statement: Statement = serde_json::from_slice(payload)
        .map_err(|e| format!("the signed statement is not an in-toto statement: {e}"))?;
    if statement.predicate_type != SIGN_PREDICATE {
        return Err(format!(
            "the signed statement is a {:?}, not an image signature ({SIGN_PREDICATE})",
            statement.predicate_type
        ));
    }
    let want = digest.strip_prefix("sha256:").unwrap_or(digest);
    let named: Vec<String> = statement
        .subject
        .iter()
        .filter_map(|s| s.digest.get("sha256"))
        .map(|h| format!("sha256:{h}"))
        .collect();
    if !named.iter().any(|n| n[7..].eq_ignore_ascii_case(want)) {
        return Err(format!(
            "the signed statement names image {}, not {digest} (a signature copied from another image?)",
            if named.is_empty() { "(none)".into() } else { named.join(", ") }
        ));
    }
    Ok(())
}

/// The logged `dsse` entry is of this payload, signature and certificate.
fn check_entry(
    body: &str,
    payload: &[u8],
    signature: &[u8],
    leaf_der: &[u8],
) -> Result<(), String> {
    let entry: DsseEntry = serde_json::from_slice(&b64("Rekor entry", body)?)
        .map_err(|e| format!("the Rekor entry is not a dsse entry: {e}"))?;
    if entry.kind != "dsse" {
        return Err(format!(
            "the Rekor entry is a {:?}, not a dsse entry",
            entry.kind
        ));
    }
    let hash = &entry.spec.payload_hash;
    let want = hex::encode(Sha256::digest(payload));
    if hash.algorithm != "sha256" || !hash.value.eq_ignore_ascii_case(&want) {
        return Err(format!(
            "the Rekor entry logs payload {}:{}, not this bundle's (sha256:{want})",
            hash.algorithm, hash.value
        ));
    }
    for logged in &entry.spec.signatures {
        let same_sig = B64
            .decode(logged.signature.trim())
            .is_ok_and(|s| s == signature);
        let same_cert = B64
            .decode(logged.verifier.trim())
            .ok()
            .and_then(|pem| certificates_from_pem(&pem).ok())
            .is_some_and(|c| c[0].as_ref() == leaf_der);
        if same_sig && same_cert {
            return Ok(());
        }
    }
    Err("the Rekor entry logs another signature or certificate than this bundle's".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(
            pae("application/vnd.in-toto+json", b"{}"),
            b"DSSEv1 28 application/vnd.in-toto+json 2 {}".to_vec()
        );
    }

    #[test]
    fn statements_must_sign_this_image() {
        let h = "ab".repeat(32);
        let ok = format!(
            r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"r","digest":{{"sha256":"{h}"}}}}],"predicateType":"{SIGN_PREDICATE}","predicate":{{}}}}"#
        );
        assert!(check_statement(ok.as_bytes(), &format!("sha256:{h}")).is_ok());
        let err = check_statement(ok.as_bytes(), "sha256:00").expect_err("other image");
        assert!(err.contains("names image sha256:abab"), "{err}");
        let slsa = ok.replace(SIGN_PREDICATE, "https://slsa.dev/provenance/v1");
        let err = check_statement(slsa.as_bytes(), &format!("sha256:{h}")).expect_err("slsa");
        assert!(err.contains("not an image signature"), "{err}");
    }

    #[test]
    fn message_signatures_and_junk_are_refused() {
        let err = verify(
            None,
            &[],
            br#"{"verificationMaterial":{},"messageSignature":{}}"#,
            "sha256:00",
        )
        .expect_err("blob bundle");
        assert!(err.contains("no DSSE envelope"), "{err}");
        assert!(verify(None, &[], b"[]", "sha256:00").is_err());
    }
}
