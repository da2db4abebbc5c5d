//! Public keys as cosign and Sigstore use them (PEM `PUBLIC KEY`, i.e.
//! SubjectPublicKeyInfo), and verification of the signatures they make:
//! ECDSA P-256 or P-384 over SHA-256 (cosign's default hash for both), and
//! Ed25519. Verification is ring's, as rustls uses.

use ring::signature::{self, UnparsedPublicKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use sha2::{Digest, Sha256};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::spki::SubjectPublicKeyInfoOwned;

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

#[derive(Clone, PartialEq, Eq)]
pub enum Algorithm {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

/// A verifying key, with the SHA-256 of its SubjectPublicKeyInfo (how
/// Rekor names its log: the `logID`).
#[derive(Clone)]
pub struct PublicKey {
    algorithm: Algorithm,
    /// The raw key: an uncompressed EC point or 32 Ed25519 bytes.
    raw: Vec<u8>,
    spki_sha256: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} key {}", self.kind(), &self.spki_sha256[..16])
    }
}

impl PublicKey {
    pub fn from_spki_der(der: &[u8]) -> Result<Self, String> {
        let spki = SubjectPublicKeyInfoOwned::from_der(der)
            .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
        let algorithm = match spki.algorithm.oid {
            EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
                match curve {
                    Some(P256) => Algorithm::EcdsaP256,
                    Some(P384) => Algorithm::EcdsaP384,
                    other => {
                        return Err(format!(
                            "EC curve {} is not supported (P-256, P-384)",
                            other.map(|o| o.to_string()).unwrap_or("?".into())
                        ))
                    }
                }
            }
            ED25519 => Algorithm::Ed25519,
            other => {
                return Err(format!(
                    "key algorithm {other} is not supported (ECDSA P-256/P-384, Ed25519)"
                ))
            }
        };
        let raw = spki
            .subject_public_key
            .as_bytes()
            .ok_or("the key's bit string is not whole bytes")?
            .to_vec();
        // Re-encode: the digest is over the canonical DER, as Rekor computes it.
        let canonical = spki
            .to_der()
            .map_err(|e| format!("cannot encode the key: {e}"))?;
        Ok(Self {
            algorithm,
            raw,
            spki_sha256: hex::encode(Sha256::digest(&canonical)),
        })
    }

    /// A PEM `PUBLIC KEY` (cosign.pub, rekor.pub).
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| format!("no PEM PUBLIC KEY block: {e}"))?;
        Self::from_spki_der(der.as_ref())
    }

    /// The subject key of a DER certificate.
    pub fn from_certificate(cert: &x509_cert::Certificate) -> Result<Self, String> {
        let der = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| format!("cannot encode the certificate's key: {e}"))?;
        Self::from_spki_der(&der)
    }

    pub fn kind(&self) -> &'static str {
        match self.algorithm {
            Algorithm::EcdsaP256 => "ECDSA P-256",
            Algorithm::EcdsaP384 => "ECDSA P-384",
            Algorithm::Ed25519 => "Ed25519",
        }
    }

    /// Hex SHA-256 of the key's DER SubjectPublicKeyInfo.
    pub fn id(&self) -> &str {
        &self.spki_sha256
    }

    /// Does `sig` (ASN.1 DER for ECDSA) sign `message`?
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match self.algorithm {
            Algorithm::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
            Algorithm::EcdsaP384 => &signature::ECDSA_P384_SHA256_ASN1,
            Algorithm::Ed25519 => &signature::ED25519,
        };
        UnparsedPublicKey::new(alg, &self.raw)
            .verify(message, sig)
            .is_ok()
    }
}

/// Every `CERTIFICATE` block of a PEM text, in order.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM CERTIFICATE block".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    // `openssl ecparam -name prime256v1 -genkey | openssl ec -pubout`
    const P256_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE0XLYThjCoetaTzBAiB41b9a5b6OK
ilIzYz1SB2fDUBr+qSPZhVzzwXGHGE2AF9T00n7CYYhtjFEy/TbeW1Ty6A==
-----END PUBLIC KEY-----";

    #[test]
    fn parses_pem_keys_and_refuses_other_things() {
        let key = PublicKey::from_pem(P256_PEM.as_bytes()).expect("key");
        assert_eq!(key.kind(), "ECDSA P-256");
        assert_eq!(key.id().len(), 64);
        assert!(!key.verify(b"x", b"not a signature"));
        assert!(PublicKey::from_pem(b"hello").is_err());
        assert!(certificates_from_pem(P256_PEM.as_bytes()).is_err());
    }
}
