//! Where a `[db.NAME]` resource really is, and opening sessions to it.
//! The URL (from the config, or DATABASE_URL / DATABASE_URL_MIGRATE in a
//! compose `.env`) never leaves the host. TLS follows libpq's `sslmode`:
//! disable, prefer (default) and require encrypt without verifying;
//! verify-ca and verify-full verify against `sslrootcert` or the web PKI
//! roots, through rustls.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres::{CancelToken, Client, Config, NoTls};

use super::super::CapError;
use crate::config::DbResource;
use crate::policy::DbLevel;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    Disable,
    /// Encrypt if the server offers it (`prefer`) or insist (`require`),
    /// without verifying the certificate, as libpq does.
    Encrypt {
        required: bool,
    },
    /// Verify the chain (and, for verify-full, the host name).
    Verify {
        root_cert: Option<std::path::PathBuf>,
        host_name: bool,
    },
}

/// A resolved database endpoint.
#[derive(Clone)]
pub struct Target {
    pub config: Config,
    pub tls: Tls,
    /// `sslmode` for the client tools (pg_dump, pg_restore).
    pub sslmode: String,
    /// Server settings for the session (`-c name=value`), after any the
    /// URL gives.
    pub settings: Vec<String>,
    /// A session that runs the plugin's SQL. Every other session is the
    /// host's own, with `search_path` locked to `pg_catalog, pg_temp`: a
    /// function or operator a plugin planted in `public` (or in a schema
    /// named after the login) must never run with the host's login.
    pub for_plugin: bool,
    /// `sslrootcert` of the URL, whatever the sslmode (the doctor's TLS
    /// probe verifies against it even where the session does not).
    pub root_cert: Option<std::path::PathBuf>,
}

impl Target {
    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    /// The same server, another database (maintenance, restore targets).
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut other = self.clone();
        other.config.dbname(dbname);
        other
    }

    /// libpq keyword/value conninfo for the client tools, without the
    /// password (that goes in PGPASSWORD, never on a command line).
    pub fn conninfo(&self) -> String {
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut parts = Vec::new();
        if let Some(tokio_postgres::config::Host::Tcp(h)) = self.config.get_hosts().first() {
            parts.push(format!("host={}", quote(h)));
        }
        if let Some(tokio_postgres::config::Host::Unix(p)) = self.config.get_hosts().first() {
            parts.push(format!("host={}", quote(&p.to_string_lossy())));
        }
        if let Some(port) = self.config.get_ports().first() {
            parts.push(format!("port={port}"));
        }
        if let Some(user) = self.config.get_user() {
            parts.push(format!("user={}", quote(user)));
        }
        parts.push(format!("dbname={}", quote(self.dbname())));
        parts.push(format!("sslmode={}", self.sslmode));
        parts.join(" ")
    }

    /// The same server and database, every statement of the session
    /// bounded by `timeout` (a startup option: SET is not open to plugins).
    pub fn with_statement_timeout(&self, timeout: std::time::Duration) -> Self {
        let mut other = self.clone();
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
        other.settings.push(format!("statement_timeout={ms}"));
        other
            .settings
            .push(format!("idle_in_transaction_session_timeout={ms}"));
        other
    }

    /// The same endpoint, for a session that runs the plugin's SQL.
    pub fn for_plugin(&self) -> Self {
        Self {
            for_plugin: true,
            ..self.clone()
        }
    }

    /// The connection settings the session starts with.
    fn session_config(&self) -> Config {
        let mut config = self.config.clone();
        let mut options: Vec<String> = config
            .get_options()
            .map(str::to_string)
            .into_iter()
            .collect();
        // Strings are parsed as the gate parses them.
        options.push("-c standard_conforming_strings=on".into());
        if !self.for_plugin {
            options.push("-c search_path=pg_catalog,pg_temp".into());
        }
        options.extend(self.settings.iter().map(|s| format!("-c {s}")));
        config.options(options.join(" "));
        config
    }

    /// The same server and database, another login.
    pub fn with_login(&self, user: &str, password: Option<&str>) -> Self {
        let mut other = self.clone();
        other.config.user(user);
        if let Some(p) = password {
            other.config.password(p);
        }
        other
    }

    pub fn password(&self) -> Option<String> {
        self.config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }
}

/// The connection URL for a grant level: admin uses the owner role
/// (DATABASE_URL_MIGRATE) when the `.env` has one.
fn url_for(
    resource: &DbResource,
    level: DbLevel,
    bundled_host: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(url) = &resource.url {
        return Ok(url.clone());
    }
    let Some(env_file) = &resource.env_file else {
        bail!("no url or env_file")
    };
    let vars = crate::dotenv::read(env_file)?;
    let pick = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
    let url = match level {
        DbLevel::Admin => pick("DATABASE_URL_MIGRATE").or_else(|| pick("DATABASE_URL")),
        _ => pick("DATABASE_URL"),
    };
    if let Some(url) = url {
        return Ok(url);
    }
    // Bundled database: POSTGRES_* with the address the operator gives.
    let Some(host) = resource.host.as_deref().or(bundled_host) else {
        bail!(
            "{} has no DATABASE_URL (bundled database): set `host` (and `port`) in the [db] table to where the postgres container listens",
            env_file.display()
        )
    };
    let user = pick("POSTGRES_USER").unwrap_or_else(|| "agledger".into());
    let password = pick("POSTGRES_PASSWORD").unwrap_or_else(|| "agledger".into());
    let db = pick("POSTGRES_DB").unwrap_or_else(|| "agledger".into());
    let mut url = url::Url::parse("postgres://localhost/").context("url")?;
    let _ = url.set_host(Some(host));
    let _ = url.set_port(Some(resource.port.unwrap_or(5432)));
    let _ = url.set_username(&user);
    let _ = url.set_password(Some(&password));
    url.set_path(&db);
    Ok(url.to_string())
}

/// `bundled_host`: the database container's address, when the config says
/// the database runs in a compose project (`container = …`).
pub fn resolve(
    resource: &DbResource,
    level: DbLevel,
    bundled_host: Option<&str>,
) -> anyhow::Result<Target> {
    let raw = url_for(resource, level, bundled_host)?;
    let mut url = url::Url::parse(&raw).context("the database URL is not a URL")?;
    let mut sslmode = "prefer".to_string();
    let mut root_cert = None;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| match k.as_ref() {
            "sslmode" => {
                sslmode = v.into_owned();
                None
            }
            "sslrootcert" => {
                root_cert = Some(std::path::PathBuf::from(v.as_ref()));
                None
            }
            _ => Some((k.into_owned(), v.into_owned())),
        })
        .collect();
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
    let mut config =
        Config::from_str(url.as_str()).context("the database URL is not valid for PostgreSQL")?;
    let tls = match sslmode.as_str() {
        "disable" | "allow" => Tls::Disable,
        "prefer" => Tls::Encrypt { required: false },
        "require" => Tls::Encrypt { required: true },
        "verify-ca" => Tls::Verify {
            root_cert: root_cert.clone(),
            host_name: false,
        },
        "verify-full" => Tls::Verify {
            root_cert: root_cert.clone(),
            host_name: true,
        },
        other => {
            bail!("sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full")
        }
    };
    config.ssl_mode(match tls {
        Tls::Disable => SslMode::Disable,
        Tls::Encrypt { required: false } => SslMode::Prefer,
        _ => SslMode::Require,
    });
    config.application_name("opshost");
    config.connect_timeout(std::time::Duration::from_secs(10));
    Ok(Target {
        config,
        tls,
        sslmode,
        settings: Vec::new(),
        for_plugin: false,
        root_cert,
    })
}

pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// libpq's `require`: encrypted, certificate not checked (handshake
/// signatures still are). The TLS probe wraps it to record the chain.
#[derive(Debug)]
pub(super) struct AcceptAnyCert(pub(super) Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(tls: &Tls) -> anyhow::Result<ClientConfig> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    Ok(match tls {
        // rustls always checks the host name, so verify-ca is as strict as
        // verify-full here: stricter than libpq, never weaker.
        Tls::Verify { root_cert, .. } => {
            let mut roots = RootCertStore::empty();
            match root_cert {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .with_context(|| format!("sslrootcert {}", path.display()))?;
                    for cert in rustls_pemfile_certs(&pem)? {
                        roots.add(cert)?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            .with_no_client_auth(),
    })
}

/// PEM certificates without another dependency: base64 between the markers.
pub(super) fn rustls_pemfile_certs(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("sslrootcert is not PEM")
}

/// The rustls connector for an encrypting `sslmode`: sessions and cancel
/// requests go through the same checks.
pub(super) fn connector(tls: &Tls) -> Result<tokio_postgres_rustls::MakeRustlsConnect, CapError> {
    let config = client_config(tls).map_err(|e| CapError::Failed(format!("TLS setup: {e:#}")))?;
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Open a session; the connection task runs until the client is dropped.
pub async fn connect(target: &Target) -> Result<Client, CapError> {
    let fail = |e: tokio_postgres::Error| {
        CapError::Failed(format!(
            "cannot connect to the database: {}",
            super::pg_message(&e)
        ))
    };
    let session = target.session_config();
    match &target.tls {
        Tls::Disable => {
            let (client, conn) = session.connect(NoTls).await.map_err(fail)?;
            tokio::spawn(conn);
            Ok(client)
        }
        tls => {
            let (client, conn) = session.connect(connector(tls)?).await.map_err(fail)?;
            tokio::spawn(conn);
            Ok(client)
        }
    }
}

/// Ask the server to cancel what the session behind `token` is running.
pub async fn cancel(token: &CancelToken, tls: &Tls) -> Result<(), CapError> {
    let fail = |e: tokio_postgres::Error| {
        CapError::Failed(format!(
            "cannot cancel the query: {}",
            super::pg_message(&e)
        ))
    };
    match tls {
        Tls::Disable => token.cancel_query(NoTls).await.map_err(fail),
        tls => token.cancel_query(connector(tls)?).await.map_err(fail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(url: &str) -> DbResource {
        DbResource {
            url: Some(url.into()),
            env_file: None,
            host: None,
            port: None,
            container: None,
            service: None,
        }
    }

    #[test]
    fn sslmodes_map_to_tls_settings() {
        let t = resolve(
            &res("postgres://u:p@db.example:5433/app?sslmode=require&connect_timeout=5"),
            DbLevel::Read,
            None,
        )
        .expect("resolve");
        assert_eq!(t.tls, Tls::Encrypt { required: true });
        assert_eq!(t.dbname(), "app");
        assert_eq!(
            t.conninfo(),
            "host='db.example' port=5433 user='u' dbname='app' sslmode=require"
        );
        assert_eq!(t.password().as_deref(), Some("p"));
        assert!(matches!(
            resolve(
                &res("postgres://h/d?sslmode=verify-full"),
                DbLevel::Read,
                None
            )
            .expect("r")
            .tls,
            Tls::Verify { .. }
        ));
        assert!(resolve(&res("postgres://h/d?sslmode=bogus"), DbLevel::Read, None).is_err());
    }

    #[test]
    fn env_file_urls_follow_the_level() {
        let dir = tempfile::tempdir().expect("tmp");
        let env = dir.path().join(".env");
        std::fs::write(
            &env,
            "DATABASE_URL=postgres://app:a@h/agledger  # runtime role\nDATABASE_URL_MIGRATE='postgres://owner:o@h/agledger'\n",
        )
        .expect("write");
        let r = DbResource {
            url: None,
            env_file: Some(env.clone()),
            host: None,
            port: None,
            container: None,
            service: None,
        };
        assert_eq!(
            resolve(&r, DbLevel::Read, None)
                .expect("read")
                .config
                .get_user(),
            Some("app")
        );
        assert_eq!(
            resolve(&r, DbLevel::Admin, None)
                .expect("admin")
                .config
                .get_user(),
            Some("owner")
        );
        std::fs::write(&env, "POSTGRES_USER=pg\nPOSTGRES_PASSWORD=secret\n").expect("write");
        assert!(
            resolve(&r, DbLevel::Read, None).is_err(),
            "bundled needs host"
        );
        assert_eq!(
            resolve(&r, DbLevel::Read, Some("172.18.0.5"))
                .expect("bundled")
                .config
                .get_user(),
            Some("pg")
        );
        let r = DbResource {
            host: Some("172.18.0.2".into()),
            ..r
        };
        let t = resolve(&r, DbLevel::Read, None).expect("bundled");
        assert_eq!(t.config.get_user(), Some("pg"));
        assert_eq!(t.dbname(), "agledger");
    }
}
