//! tls: will the database's TLS settings work? `sslmode` in DATABASE_URL
//! against what the server offers and the certificate it presents (the
//! host's `probe-tls`: chain against the configured CA, name against the
//! host, expiry, and whether a session as the URL asks opens at all).
//!
//! Two clients read the same URL differently. opshost's own sessions and
//! pg_dump follow libpq: `prefer`/`require` encrypt without verifying.
//! The product's driver, node-postgres (pg-boss's), before v9 treats
//! `prefer`, `require` and `verify-ca` as `verify-full` unless the URL says
//! `uselibpqcompat=true`: a certificate libpq takes may stop the product.

use super::{Check, Finding, Settings};
use crate::clock;
use crate::deployment::Env;
use opshost_sdk::db::{self, TlsProbe};
use opshost_sdk::{describe, Error, Result};

pub const CHECK: Check = Check {
    name: "tls",
    about: "sslmode in DATABASE_URL vs what the server offers; the certificate it presents (chain to the CA, host name, expiry)",
    run,
};

/// Warn this long before a certificate expires.
const EXPIRY_WARNING_S: i64 = 14 * 86_400;

/// `sslmode` and `uselibpqcompat` as DATABASE_URL spells them.
struct UrlTls {
    sslmode: Option<String>,
    libpq_compat: bool,
}

fn url_tls(env: &Env) -> Option<UrlTls> {
    let raw = env.file.value("DATABASE_URL")?;
    let url = url::Url::parse(raw.trim()).ok()?;
    let get = |k: &str| {
        url.query_pairs()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.into_owned())
    };
    Some(UrlTls {
        sslmode: get("sslmode"),
        libpq_compat: get("uselibpqcompat").as_deref() == Some("true"),
    })
}

fn describe_probe(p: &TlsProbe) -> String {
    let mut text = format!(
        "sslmode={} to {}:{}; the server {} TLS",
        p.sslmode,
        p.host,
        p.port,
        if p.offers_tls {
            "offers"
        } else {
            "does not offer"
        }
    );
    if let Some(leaf) = p.chain.first() {
        text.push_str(&format!(
            "; its certificate: subject {}, issuer {}, valid until {}, names [{}]",
            leaf.subject,
            leaf.issuer,
            leaf.not_after,
            leaf.names.join(", ")
        ));
        text.push_str(&format!(
            "; against {}: {}",
            if p.root_cert_configured {
                "the sslrootcert CA"
            } else {
                "the web PKI roots (no sslrootcert)"
            },
            p.chain_error.as_deref().unwrap_or("the chain verifies")
        ));
        if let Some(n) = &p.name_error {
            text.push_str(&format!("; {n}"));
        }
    }
    text
}

/// Seconds since the epoch of an RFC 3339 UTC time as the host writes it.
fn parse_time(text: &str) -> Option<i64> {
    let stamp: String = text
        .trim_end_matches('Z')
        .replacen('T', "-", 1)
        .chars()
        .filter(|c| *c != ':')
        .collect();
    clock::parse_stamp(&stamp)
}

fn fix_for(p: &TlsProbe) -> String {
    if !p.offers_tls {
        return "the server does not offer TLS: turn it on (ssl = on with a certificate), or, only on a network \
                you trust, set sslmode=disable in DATABASE_URL"
            .into();
    }
    let mut fixes = Vec::new();
    if p.chain_error.is_some() {
        let issuer = p
            .chain
            .first()
            .map(|c| c.issuer.as_str())
            .unwrap_or("its CA");
        fixes.push(format!(
            "give the CA that issued the server's certificate ({issuer}) as sslrootcert= in DATABASE_URL \
             (a path the containers and opshost can read)"
        ));
    }
    if p.name_error.is_some() {
        let names = p
            .chain
            .first()
            .map(|c| c.names.join(", "))
            .unwrap_or_default();
        fixes.push(format!(
            "connect by a name the certificate holds ({names}) or reissue it with {} in subjectAltName",
            p.host
        ));
    }
    if fixes.is_empty() {
        fixes.push("check the server's TLS setup and DATABASE_URL's ssl parameters".into());
    }
    fixes.join("; ")
}

fn run(_: &Settings) -> Result<Vec<Finding>> {
    let probe = match db::probe_tls("agledger") {
        Ok(p) => p,
        // A Unix socket: nothing travels over a network.
        Err(Error::Unsupported(_)) => return Ok(vec![]),
        Err(e @ Error::Denied(_)) => return Err(e),
        // The URL does not parse, the server does not answer: every client
        // of this URL (opshost's backups included) fails the same way.
        Err(e) => {
            return Ok(vec![Finding::error(
                "the database cannot be reached as its URL says",
                describe(&e),
                "check DATABASE_URL (host, port, parameters: libpq's pg_dump refuses parameters it does not \
                 know, such as node-postgres' uselibpqcompat) and that the server listens there",
            )
            .blocking()])
        }
    };
    let url = Env::open().ok().and_then(|env| url_tls(&env));
    let seen = describe_probe(&probe);
    let mut found = Vec::new();
    if let Some(why) = &probe.connect_error {
        found.push(
            Finding::error(
                format!("a session with sslmode={} cannot be opened", probe.sslmode),
                format!("{why}; {seen}"),
                fix_for(&probe),
            )
            .blocking(),
        );
    }
    // The product's driver verifies what libpq would not.
    if let Some(UrlTls {
        sslmode: Some(mode),
        libpq_compat: false,
    }) = &url
    {
        let verifies = matches!(
            mode.as_str(),
            "prefer" | "require" | "verify-ca" | "verify-full"
        );
        let refused =
            !probe.offers_tls || probe.chain_error.is_some() || probe.name_error.is_some();
        if verifies && refused && probe.connect_error.is_none() {
            found.push(Finding::warning(
                format!("the product's driver would refuse this server with sslmode={mode}"),
                format!(
                    "node-postgres (pg-boss's driver) before v9 treats sslmode={mode} as verify-full: TLS required, \
                     chain and host name verified; {seen}. opshost's own sessions (libpq's meaning) connect. If \
                     /health/ready answers 200 the running release configures TLS its own way"
                ),
                format!(
                    "{}, and sslmode=verify-full: what both clients then check is the same. (node-postgres' \
                     uselibpqcompat=true or sslmode=no-verify would silence it, but libpq tools such as pg_dump \
                     refuse a URL that holds them)",
                    fix_for(&probe)
                ),
            ));
        }
    }
    if let Some(leaf) = probe.chain.first() {
        if let Some(until) = parse_time(&leaf.not_after) {
            let left = until - clock::now();
            if left <= 0 {
                found.push(Finding::error(
                    "the database server's certificate has expired",
                    format!("not valid after {}; {seen}", leaf.not_after),
                    "renew the server's certificate (and reload PostgreSQL: SELECT pg_reload_conf())",
                ));
            } else if left < EXPIRY_WARNING_S {
                found.push(Finding::warning(
                    format!(
                        "the database server's certificate expires in {} days",
                        left / 86_400
                    ),
                    format!("not valid after {}; {seen}", leaf.not_after),
                    "renew it before then; a verifying client refuses an expired certificate",
                ));
            }
        }
    }
    if probe.offers_tls && found.is_empty() {
        return Ok(found);
    }
    if !probe.offers_tls
        && url
            .as_ref()
            .is_some_and(|u| u.sslmode.as_deref() != Some("disable"))
        && found.is_empty()
    {
        found.push(Finding::warning(
            "connections to the external database are not encrypted",
            seen,
            "turn TLS on at the server and use sslmode=verify-full with sslrootcert=",
        ));
    }
    Ok(found)
}
