//! Database connection settings, read like the product: DATABASE_URL
//! (external database) or POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB
//! (bundled, host POSTGRES_HOST, default "postgres", port 5432), and
//! DATABASE_URL_MIGRATE for DDL when set.
//!
//! Stand-in simplification: no TLS. `ssl*` parameters (sslmode=require,
//! sslrootcert, ...) are dropped from the URL before it is parsed.

use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use crate::config::{env_nonempty, secret};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The application's own connection.
    App,
    /// Migrations: DATABASE_URL_MIGRATE (owner role) when it is set.
    Migrate,
}

pub fn pg_config(purpose: Purpose) -> Result<Config, String> {
    if purpose == Purpose::Migrate {
        if let Some(url) = secret("DATABASE_URL_MIGRATE")? {
            return parse_url("DATABASE_URL_MIGRATE", &url);
        }
    }
    if let Some(url) = secret("DATABASE_URL")? {
        return parse_url("DATABASE_URL", &url);
    }
    let host = env_nonempty("POSTGRES_HOST").unwrap_or_else(|| "postgres".to_string());
    let port = match env_nonempty("POSTGRES_PORT") {
        None => 5432,
        Some(p) => p
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("POSTGRES_PORT={p:?} is not a port number"))?,
    };
    let user = env_nonempty("POSTGRES_USER").unwrap_or_else(|| "agledger".to_string());
    let password = secret("POSTGRES_PASSWORD")?.unwrap_or_else(|| "agledger".to_string());
    let dbname = env_nonempty("POSTGRES_DB").unwrap_or_else(|| "agledger".to_string());
    let mut cfg = Config::new();
    cfg.host(host.trim())
        .port(port)
        .user(user.trim())
        .password(password.as_bytes())
        .dbname(dbname.trim())
        .application_name("agledger-standin")
        .connect_timeout(Duration::from_secs(5));
    Ok(cfg)
}

fn parse_url(name: &str, url: &str) -> Result<Config, String> {
    let mut cfg: Config = strip_tls_params(url.trim())
        .parse()
        .map_err(|e: tokio_postgres::Error| format!("{name} is not a valid PostgreSQL URL: {e}"))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(5));
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("agledger-standin");
    }
    Ok(cfg)
}

/// Drop libpq TLS parameters (`ssl...=`) from a URL or a key=value string.
pub fn strip_tls_params(url: &str) -> String {
    let is_tls = |kv: &str| kv.trim().to_ascii_lowercase().starts_with("ssl");
    if url.contains("://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|kv| !kv.is_empty() && !is_tls(kv))
                    .collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        url.split_whitespace()
            .filter(|kv| !is_tls(kv))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub async fn connect(purpose: Purpose) -> Result<Client, String> {
    let cfg = pg_config(purpose)?;
    let (client, connection) = cfg
        .connect(NoTls)
        .await
        .map_err(|e| format!("cannot connect to the database: {}", pg_err(&e)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A readable message for a tokio-postgres error (server message and SQLSTATE
/// for database errors, the cause chain for the rest).
pub fn pg_err(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            s.push_str(&format!("; {detail}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_params_are_dropped() {
        assert_eq!(
            strip_tls_params(
                "postgres://u:p@h:5432/db?sslmode=require&application_name=x&sslrootcert=/a"
            ),
            "postgres://u:p@h:5432/db?application_name=x"
        );
        assert_eq!(
            strip_tls_params("postgres://u:p@h/db?sslmode=require"),
            "postgres://u:p@h/db"
        );
        assert_eq!(
            strip_tls_params("host=h user=u sslmode=require"),
            "host=h user=u"
        );
        assert!(strip_tls_params("postgres://u:p@h/db?sslmode=require")
            .parse::<Config>()
            .is_ok());
    }
}
