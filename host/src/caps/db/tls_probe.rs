//! `probe-tls`: the database's TLS as a client meets it. PostgreSQL starts
//! TLS inside its own protocol (an SSLRequest, then `S` or `N`), so the
//! host asks, shakes hands while accepting any certificate to record the
//! chain the server presents, and then verifies that chain separately
//! (against the URL's `sslrootcert`, else the web PKI roots) and the leaf
//! against the host name, so that each failure is named on its own. The
//! URL, its password and the CA file's path never reach the plugin.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

use super::super::bindings::opshost::plugin::db::{CertificateFacts, TlsProbe};
use super::super::CapError;
use super::connect::{provider, rustls_pemfile_certs, AcceptAnyCert, Target};

/// SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const TIMEOUT: Duration = Duration::from_secs(10);
const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");

/// Accepts any certificate (as `sslmode=require` does) and keeps the
/// chain it was shown.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    any: AcceptAnyCert,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut chain) = self.chain.lock() {
            chain.push(end_entity.clone().into_owned());
            chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        self.any
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.any.supported_verify_schemes()
    }
}

pub async fn tls(target: &Target) -> Result<TlsProbe, CapError> {
    let (host, port) = match (
        target.config.get_hosts().first(),
        target.config.get_ports().first(),
    ) {
        (Some(tokio_postgres::config::Host::Tcp(h)), port) => {
            (h.clone(), port.copied().unwrap_or(5432))
        }
        _ => {
            return Err(CapError::Unsupported(
                "the database is reached through a Unix socket: there is no TLS to probe".into(),
            ))
        }
    };
    let root_cert = target.root_cert.clone();
    let (h, rc) = (host.clone(), root_cert.clone());
    let (offers_tls, chain_der) = tokio::task::spawn_blocking(move || handshake(&h, port))
        .await
        .map_err(|e| CapError::Failed(format!("the TLS probe stopped: {e}")))??;
    let (chain_error, name_error) = if chain_der.is_empty() {
        (None, None)
    } else {
        verify(&chain_der, &host, rc.as_deref())
    };
    let chain = chain_der.iter().map(|c| facts(c)).collect();
    let connect_error = match super::probe::open(target).await {
        Ok(_) => None,
        Err(e) => Some(match e {
            CapError::Failed(m) => m,
            other => other.to_string(),
        }),
    };
    Ok(TlsProbe {
        sslmode: target.sslmode.clone(),
        host,
        port,
        root_cert_configured: root_cert.is_some(),
        offers_tls,
        chain,
        chain_error,
        name_error,
        connect_error,
    })
}

/// Ask for TLS; when the server says yes, shake hands and keep its chain.
fn handshake(host: &str, port: u16) -> Result<(bool, Vec<CertificateDer<'static>>), CapError> {
    let address = format!("{host}:{port}");
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .map_err(|e| CapError::Failed(format!("cannot resolve {address}: {e}")))?
        .collect::<Vec<_>>();
    let first = addrs
        .first()
        .ok_or_else(|| CapError::Failed(format!("{address} resolves to nothing")))?;
    let mut sock = TcpStream::connect_timeout(first, TIMEOUT)
        .map_err(|e| CapError::Failed(format!("cannot reach {address}: {e}")))?;
    sock.set_read_timeout(Some(TIMEOUT))?;
    sock.set_write_timeout(Some(TIMEOUT))?;
    sock.write_all(&SSL_REQUEST)?;
    let mut answer = [0u8; 1];
    sock.read_exact(&mut answer)
        .map_err(|e| CapError::Failed(format!("{address} did not answer the SSLRequest: {e}")))?;
    match answer[0] {
        b'N' => return Ok((false, Vec::new())),
        b'S' => {}
        other => {
            return Err(CapError::Failed(format!(
                "{address} answered the SSLRequest with {other:#04x}: is it PostgreSQL?"
            )))
        }
    }
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(Vec::new()),
        any: AcceptAnyCert(provider()),
    });
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CapError::Failed(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| CapError::Invalid(format!("host {host:?}: {e}")))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| CapError::Failed(format!("TLS setup: {e}")))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .map_err(|e| CapError::Failed(format!("TLS handshake with {address}: {e}")))?;
    }
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    let chain = recorder.chain.lock().map(|c| c.clone()).unwrap_or_default();
    Ok((true, chain))
}

/// (why the chain does not verify, why the leaf is not for `host`).
fn verify(
    chain: &[CertificateDer<'static>],
    host: &str,
    root_cert: Option<&std::path::Path>,
) -> (Option<String>, Option<String>) {
    let mut roots = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certs = std::fs::read(path)
                .map_err(|e| format!("the CA file (sslrootcert) cannot be read: {e}"))
                .and_then(|pem| rustls_pemfile_certs(&pem).map_err(|e| format!("{e:#}")));
            match certs {
                Ok(certs) => {
                    for c in certs {
                        let _ = roots.add(c);
                    }
                }
                Err(e) => return (Some(e), name_check(&chain[0], host)),
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let verifier =
        match WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build() {
            Ok(v) => v,
            Err(e) => {
                return (
                    Some(format!("no usable CA certificate: {e}")),
                    name_check(&chain[0], host),
                )
            }
        };
    let name = match ServerName::try_from(host.to_string()) {
        Ok(n) => n,
        Err(e) => return (Some(format!("host {host:?}: {e}")), None),
    };
    let chain_error =
        match verifier.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now()) {
            Ok(_) => None,
            // The chain is fine; only the name is wrong (reported below).
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => None,
            Err(e) => Some(e.to_string()),
        };
    (chain_error, name_check(&chain[0], host))
}

/// The leaf names `host` (a DNS name, one `*.` label, or an IP address)?
fn name_check(leaf: &CertificateDer<'_>, host: &str) -> Option<String> {
    let names = facts(leaf).names;
    let host_lc = host.to_ascii_lowercase();
    let matches = names.iter().any(|n| {
        let n = n.to_ascii_lowercase();
        n == host_lc
            || n.strip_prefix("*.").is_some_and(|rest| {
                host_lc
                    .split_once('.')
                    .is_some_and(|(label, tail)| !label.is_empty() && tail == rest)
            })
    });
    if matches {
        None
    } else if names.is_empty() {
        Some(format!(
            "the certificate names no host (no subjectAltName); connecting to {host}"
        ))
    } else {
        Some(format!(
            "the certificate is for {}, not {host}",
            names.join(", ")
        ))
    }
}

fn rfc3339(t: &x509_cert::time::Time) -> String {
    let at = UNIX_EPOCH + t.to_unix_duration();
    humantime::format_rfc3339_seconds(
        at.min(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799)),
    )
    .to_string()
}

fn facts(der: &CertificateDer<'_>) -> CertificateFacts {
    let Ok(cert) = x509_cert::Certificate::from_der(der.as_ref()) else {
        return CertificateFacts {
            subject: "(not a readable X.509 certificate)".into(),
            issuer: String::new(),
            not_before: String::new(),
            not_after: String::new(),
            names: Vec::new(),
        };
    };
    let tbs = &cert.tbs_certificate;
    let mut names = Vec::new();
    for ext in tbs.extensions.iter().flatten() {
        if ext.extn_id != SUBJECT_ALT_NAME {
            continue;
        }
        if let Ok(san) = SubjectAltName::from_der(ext.extn_value.as_bytes()) {
            for n in san.0 {
                match n {
                    GeneralName::DnsName(d) => names.push(d.to_string()),
                    GeneralName::IpAddress(ip) => {
                        let b = ip.as_bytes();
                        if let Ok(v4) = <[u8; 4]>::try_from(b) {
                            names.push(std::net::Ipv4Addr::from(v4).to_string());
                        } else if let Ok(v6) = <[u8; 16]>::try_from(b) {
                            names.push(std::net::Ipv6Addr::from(v6).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    CertificateFacts {
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        not_before: rfc3339(&tbs.validity.not_before),
        not_after: rfc3339(&tbs.validity.not_after),
        names,
    }
}
