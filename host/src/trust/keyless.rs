//! Keyless (Fulcio + Rekor) signatures, checked offline the way `cosign
//! verify --certificate-identity-regexp … --certificate-oidc-issuer …`
//! does: the certificate chains to a trusted Fulcio root at the moment
//! Rekor logged the signature, names the expected identity and OIDC
//! issuer, its key signed the payload, and Rekor's signed entry timestamp
//! (SET) vouches for a log entry of exactly this signature and payload.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use regex::Regex;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use x509_cert::der::asn1::{ObjectIdentifier, Utf8StringRef};
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
use x509_cert::Certificate;

use super::keys::{certificates_from_pem, PublicKey};

const SAN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
/// DER of the codeSigning OID's value, as webpki wants it.
const CODE_SIGNING_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// Fulcio's OIDC issuer extensions: v2 (a DER UTF8String) and the
/// deprecated v1 (the raw string).
const ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
const ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");

/// What a keyless signature must satisfy (from the config).
pub struct Keyless {
    pub roots: Vec<TrustAnchor<'static>>,
    /// Configured intermediates, tried besides the signature's own chain.
    pub intermediates: Vec<CertificateDer<'static>>,
    pub rekor: Vec<PublicKey>,
    pub identity: Regex,
    pub issuer: String,
}

/// The annotations of one keyless signature layer.
pub struct Evidence<'a> {
    pub payload: &'a [u8],
    pub signature: &'a [u8],
    pub certificate_pem: &'a str,
    pub chain_pem: Option<&'a str>,
    pub bundle_json: Option<&'a str>,
}

/// cosign's `dev.sigstore.cosign/bundle` annotation.
#[derive(Deserialize)]
pub struct Bundle {
    #[serde(rename = "SignedEntryTimestamp")]
    pub set: String,
    #[serde(rename = "Payload")]
    pub payload: BundlePayload,
}

#[derive(Deserialize)]
pub struct BundlePayload {
    pub body: String,
    #[serde(rename = "integratedTime")]
    pub integrated_time: i64,
    #[serde(rename = "logIndex")]
    pub log_index: i64,
    #[serde(rename = "logID")]
    pub log_id: String,
}

impl BundlePayload {
    /// The bytes the SET signs: RFC 8785 canonical JSON of the entry
    /// (keys sorted, no spaces; the values here need no escaping rules
    /// beyond JSON's own, which serde_json writes).
    pub fn canonical(&self) -> Result<Vec<u8>, String> {
        let s = |v: &str| serde_json::to_string(v).map_err(|e| e.to_string());
        Ok(format!(
            "{{\"body\":{},\"integratedTime\":{},\"logID\":{},\"logIndex\":{}}}",
            s(&self.body)?,
            self.integrated_time,
            s(&self.log_id)?,
            self.log_index
        )
        .into_bytes())
    }
}

/// A hashedrekord entry (what cosign logs for image signatures; older
/// cosign logged `rekord` entries with the same fields).
#[derive(Deserialize)]
struct RekorEntry {
    kind: String,
    spec: RekorSpec,
}

#[derive(Deserialize)]
struct RekorSpec {
    data: RekorData,
    signature: RekorSignature,
}

#[derive(Deserialize)]
struct RekorData {
    hash: RekorHash,
}

#[derive(Deserialize)]
struct RekorHash {
    algorithm: String,
    value: String,
}

#[derive(Deserialize)]
struct RekorSignature {
    content: String,
    #[serde(rename = "publicKey")]
    public_key: RekorKey,
}

#[derive(Deserialize)]
struct RekorKey {
    content: String,
}

/// Check one keyless signature; on success, the identity it was made by.
pub fn verify(policy: &Keyless, ev: &Evidence<'_>) -> Result<String, String> {
    let leaf_der = certificates_from_pem(ev.certificate_pem.as_bytes())
        .map_err(|e| format!("the signature's certificate is unreadable: {e}"))?
        .remove(0);
    let bundle: Bundle = match ev.bundle_json {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| format!("the Rekor bundle is not readable: {e}"))?,
        None => return Err("the signature has no Rekor bundle (it was not logged in the transparency log, or was made with --tlog-upload=false); a keyless certificate is only trusted with one".into()),
    };
    let when = u64::try_from(bundle.payload.integrated_time)
        .map_err(|_| "the Rekor bundle's integratedTime is negative".to_string())?;

    let intermediates = match ev.chain_pem {
        Some(pem) => certificates_from_pem(pem.as_bytes())
            .map_err(|e| format!("the signature's certificate chain is unreadable: {e}"))?,
        None => Vec::new(),
    };
    let signer = certified(policy, &leaf_der, &intermediates, when)?;
    if !signer.key.verify(ev.payload, ev.signature) {
        return Err(
            "the signature does not verify with the certificate's key (payload tampered?)".into(),
        );
    }
    check_set(&policy.rekor, &bundle)?;
    check_body(&bundle.payload.body, ev, leaf_der.as_ref())?;
    Ok(signer.describe(bundle.payload.log_index))
}

/// A certificate that passed every check but the signature's own.
pub struct Signer {
    pub key: PublicKey,
    pub identity: String,
    pub issuer: String,
}

impl Signer {
    pub fn describe(&self, log_index: i64) -> String {
        format!(
            "{} (Rekor log index {log_index}, issuer {})",
            self.identity, self.issuer
        )
    }
}

/// The leaf (DER) is valid at `when` (Rekor's integratedTime), chains to a
/// configured root through `intermediates`, is for code signing, and names
/// the expected identity and issuer.
pub fn certified(
    policy: &Keyless,
    leaf_der: &CertificateDer<'static>,
    intermediates: &[CertificateDer<'static>],
    when: u64,
) -> Result<Signer, String> {
    let leaf = Certificate::from_der(leaf_der.as_ref())
        .map_err(|e| format!("the signature's certificate is not X.509: {e}"))?;
    within_validity(&leaf, when)?;
    chain(policy, leaf_der, intermediates, when)?;
    let identity = identity(&leaf, &policy.identity)?;
    let issuer = issuer(&leaf)?;
    if issuer != policy.issuer {
        return Err(format!(
            "the certificate's OIDC issuer {issuer:?} is not {:?}",
            policy.issuer
        ));
    }
    let key =
        PublicKey::from_certificate(&leaf).map_err(|e| format!("the certificate's key: {e}"))?;
    Ok(Signer {
        key,
        identity,
        issuer,
    })
}

fn within_validity(leaf: &Certificate, when: u64) -> Result<(), String> {
    let v = &leaf.tbs_certificate.validity;
    let (from, to) = (
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    );
    if when < from || when > to {
        // `when` comes from the registry: no arithmetic that can overflow.
        let at = std::time::UNIX_EPOCH
            .checked_add(std::time::Duration::from_secs(when))
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_else(|| "a time out of range".into());
        return Err(format!(
            "Rekor logged the signature at {at} (unix {when}), outside the certificate's validity ({from}..{to}): the signature was not made while the certificate was valid"
        ));
    }
    Ok(())
}

/// The leaf chains to a configured root at `when`, with codeSigning.
fn chain(
    policy: &Keyless,
    leaf_der: &CertificateDer<'static>,
    intermediates: &[CertificateDer<'static>],
    when: u64,
) -> Result<(), String> {
    let ee = webpki::EndEntityCert::try_from(leaf_der)
        .map_err(|e| format!("the signature's certificate is not usable: {e}"))?;
    let algs = [
        webpki::ring::ECDSA_P256_SHA256,
        webpki::ring::ECDSA_P256_SHA384,
        webpki::ring::ECDSA_P384_SHA256,
        webpki::ring::ECDSA_P384_SHA384,
        webpki::ring::ED25519,
        webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    ];
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(when));
    let intermediates: Vec<CertificateDer<'static>> = intermediates
        .iter()
        .chain(&policy.intermediates)
        .cloned()
        .collect();
    // The leaf's own EKU is checked below; intermediates may omit it.
    ee.verify_for_usage(
        &algs,
        &policy.roots,
        &intermediates,
        time,
        webpki::KeyUsage::required_if_present(CODE_SIGNING_DER),
        None,
        None,
    )
    .map_err(|e| format!("the certificate is not signed by a trusted Fulcio root: {e}"))?;
    Ok(())
}

fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&[u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
}

/// The SAN (URI or email) that matches the identity pattern.
fn identity(leaf: &Certificate, pattern: &Regex) -> Result<String, String> {
    let eku = extension(leaf, EKU)
        .ok_or("the certificate has no extended key usage (codeSigning is required)")?;
    let eku = ExtendedKeyUsage::from_der(eku).map_err(|e| format!("bad EKU extension: {e}"))?;
    if !eku.0.contains(&CODE_SIGNING) {
        return Err("the certificate is not for code signing (no codeSigning EKU)".into());
    }
    let san = extension(leaf, SAN).ok_or("the certificate names no identity (no SAN)")?;
    let san = SubjectAltName::from_der(san).map_err(|e| format!("bad SAN extension: {e}"))?;
    let names: Vec<String> = san
        .0
        .iter()
        .filter_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
            GeneralName::Rfc822Name(e) => Some(e.to_string()),
            _ => None,
        })
        .collect();
    // As cosign: the pattern as given (anchored only if it says so).
    names
        .iter()
        .find(|n| pattern.is_match(n))
        .cloned()
        .ok_or_else(|| {
            format!(
                "the certificate identity {} does not match \"{}\"",
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                },
                pattern.as_str()
            )
        })
}

fn issuer(leaf: &Certificate) -> Result<String, String> {
    if let Some(v2) = extension(leaf, ISSUER_V2) {
        return Utf8StringRef::from_der(v2)
            .map(|s| s.as_str().to_string())
            .map_err(|e| format!("bad OIDC issuer extension: {e}"));
    }
    extension(leaf, ISSUER_V1)
        .map(|v1| String::from_utf8_lossy(v1).into_owned())
        .ok_or_else(|| "the certificate names no OIDC issuer (not a Fulcio certificate?)".into())
}

/// The SET is a configured Rekor key's signature over the entry.
pub fn check_set(rekor: &[PublicKey], bundle: &Bundle) -> Result<(), String> {
    let key = rekor
        .iter()
        .find(|k| k.id() == bundle.payload.log_id)
        .ok_or_else(|| {
            format!(
                "the Rekor entry timestamp is from log {}, which is not a configured rekor key",
                bundle.payload.log_id
            )
        })?;
    let set = B64
        .decode(bundle.set.trim())
        .map_err(|e| format!("the Rekor entry timestamp is not base64: {e}"))?;
    if !key.verify(&bundle.payload.canonical()?, &set) {
        return Err("the Rekor entry timestamp (SET) is invalid: the bundle does not verify with the Rekor key".into());
    }
    Ok(())
}

/// The logged entry is of this signature, payload and certificate.
fn check_body(body_b64: &str, ev: &Evidence<'_>, leaf_der: &[u8]) -> Result<(), String> {
    let body = B64
        .decode(body_b64)
        .map_err(|e| format!("the Rekor entry body is not base64: {e}"))?;
    let entry: RekorEntry = serde_json::from_slice(&body)
        .map_err(|e| format!("the Rekor entry is not a hashedrekord: {e}"))?;
    // cosign before 1.5 logged `rekord` entries: the same fields here.
    if entry.kind != "hashedrekord" && entry.kind != "rekord" {
        return Err(format!(
            "the Rekor entry is a {:?}, not a hashedrekord",
            entry.kind
        ));
    }
    let hash = &entry.spec.data.hash;
    let payload_hash = hex::encode(Sha256::digest(ev.payload));
    if hash.algorithm != "sha256" || !hash.value.eq_ignore_ascii_case(&payload_hash) {
        return Err(format!(
            "the Rekor entry logs payload {}:{}, not this signature's payload (sha256:{payload_hash})",
            hash.algorithm, hash.value
        ));
    }
    let logged_sig = B64
        .decode(entry.spec.signature.content.trim())
        .map_err(|e| format!("the Rekor entry's signature is not base64: {e}"))?;
    if logged_sig != ev.signature {
        return Err("the Rekor entry logs another signature than this one".into());
    }
    let logged_pem = B64
        .decode(entry.spec.signature.public_key.content.trim())
        .map_err(|e| format!("the Rekor entry's certificate is not base64: {e}"))?;
    let logged = certificates_from_pem(&logged_pem)
        .map_err(|e| format!("the Rekor entry's certificate: {e}"))?;
    if logged[0].as_ref() != leaf_der {
        return Err("the Rekor entry logs another certificate than this signature's".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_parse_and_canonicalise_like_rekor() {
        let json = r#"{"SignedEntryTimestamp":"MEUCIQ==","Payload":{"body":"eyJhIjoxfQ==","integratedTime":1700000000,"logIndex":42,"logID":"c0d23d6a"}}"#;
        let b: Bundle = serde_json::from_str(json).expect("bundle");
        assert_eq!(b.payload.log_index, 42);
        assert_eq!(
            String::from_utf8(b.payload.canonical().expect("canonical")).expect("utf8"),
            r#"{"body":"eyJhIjoxfQ==","integratedTime":1700000000,"logID":"c0d23d6a","logIndex":42}"#
        );
        let err = check_set(&[], &b).expect_err("no key");
        assert!(err.contains("not a configured rekor key"), "{err}");
        assert!(serde_json::from_str::<Bundle>(r#"{"Payload":{}}"#).is_err());
    }

    #[test]
    fn an_absurd_integrated_time_is_a_refusal_not_a_panic() {
        // Any certificate will do (`openssl req -x509`): the time is checked first.
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBjTCCATOgAwIBAgIUKejvhNQgNGJklhyJ3NEFWndB0sYwCgYIKoZIzj0EAwIw\nHDEaMBgGA1UEAwwRb3BzaG9zdCB1bml0IHRlc3QwHhcNMjYxMTI4MTMxNjU1WhcN\nMzYxMTI1MTMxNjU1WjAcMRowGAYDVQQDDBFvcHNob3N0IHVuaXQgdGVzdDBZMBMG\nByqGSM49AgEGCCqGSM49AwEHA0IABL5uHAYVjod8LLlIYDGMIkYZJFsE4qUt8/YI\n27Rimzg+qpjjqeq2CXBftXnVIDQBDIv79oNWMSfLHDBoUWMv0OejUzBRMB0GA1Ud\nDgQWBBSERoiQdatc3fEgoWaSiBhSLNXb5DAfBgNVHSMEGDAWgBSERoiQdatc3fEg\noWaSiBhSLNXb5DAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQDY\nM/wXQ3jTFQLWCLpnvz5J1Gqy+upqJ+sC2ZIss9vQ/gIgFByE4po/jkqkaflkjf8y\nAUx59vIcLim303Zh50Hdf/0=\n-----END CERTIFICATE-----\n";
        let der = certificates_from_pem(pem.as_bytes())
            .expect("pem")
            .remove(0);
        let cert = Certificate::from_der(der.as_ref()).expect("cert");
        let err = within_validity(&cert, u64::MAX).expect_err("out of range");
        assert!(err.contains("outside the certificate's validity"), "{err}");
    }

    #[test]
    fn rekor_bodies_must_be_hashedrekord_of_this_payload() {
        let ev = Evidence {
            payload: b"payload",
            signature: b"sig",
            certificate_pem: "",
            chain_pem: None,
            bundle_json: None,
        };
        let hash = hex::encode(Sha256::digest(b"payload"));
        let body = |kind: &str, value: &str| {
            B64.encode(format!(r#"{{"apiVersion":"0.0.1","kind":"{kind}","spec":{{"data":{{"hash":{{"algorithm":"sha256","value":"{value}"}}}},"signature":{{"content":"{}","publicKey":{{"content":""}}}}}}}}"#, B64.encode("sig")))
        };
        let err = check_body(&body("intoto", &hash), &ev, b"").expect_err("kind");
        assert!(err.contains("not a hashedrekord"), "{err}");
        let err = check_body(&body("hashedrekord", "00"), &ev, b"").expect_err("hash");
        assert!(err.contains("not this signature's payload"), "{err}");
        // The right hash and signature get as far as the certificate.
        let err = check_body(&body("hashedrekord", &hash), &ev, b"").expect_err("cert");
        assert!(err.contains("certificate"), "{err}");
    }
}
