//! The endpoints. Each request opens its own short database connection (the
//! stand-in's traffic is tiny, and a restored or restarted database is picked
//! up without any pool to reset).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::apikeys::{self, Identity};
use crate::db::{self, pg_err, Purpose};
use crate::http::{AppState, Request, Response};
use crate::{config, migrations, vault};

pub async fn handle(req: &Request, st: &AppState) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET" | "HEAD", "/health") => health(st),
        ("GET" | "HEAD", "/health/ready") => ready(st).await,
        ("GET", "/conformance") => conformance(st),
        ("GET", "/status") => status(st).await,
        ("GET", "/metrics") => metrics(st).await,
        ("GET", "/v1/auth/me") => auth_me(req, st).await,
        ("POST", "/v1/admin/vault/scan") => vault_scan(req, st).await,
        ("GET", "/v1/admin/support-bundle") => support_bundle(req, st).await,
        (
            _,
            "/health"
            | "/health/ready"
            | "/conformance"
            | "/status"
            | "/metrics"
            | "/v1/auth/me"
            | "/v1/admin/vault/scan"
            | "/v1/admin/support-bundle",
        ) => Response::json(
            405,
            json!({ "error": format!("method {} not allowed", req.method) }),
        ),
        _ => Response::json(404, json!({ "error": "not found", "path": req.path })),
    }
}

async fn connect() -> Result<Client, String> {
    match tokio::time::timeout(Duration::from_secs(5), db::connect(Purpose::App)).await {
        Ok(result) => result,
        Err(_) => Err("timed out connecting to the database".to_string()),
    }
}

fn unavailable(msg: String) -> Response {
    Response::json(
        503,
        json!({ "error": "database unavailable", "detail": msg }),
    )
}

fn health(st: &AppState) -> Response {
    if st.broken {
        return Response::json(503, json!({ "status": "broken", "version": st.version }));
    }
    Response::json(200, json!({ "status": "ok", "version": st.version }))
}

async fn ready(st: &AppState) -> Response {
    if st.broken {
        return Response::json(503, json!({ "status": "broken", "version": st.version }));
    }
    if st.shutting_down.load(Ordering::SeqCst) {
        return Response::json(
            503,
            json!({ "status": "shutting_down", "version": st.version }),
        );
    }
    let check = async {
        let client = connect().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| pg_err(&e))?;
        Ok::<(), String>(())
    };
    match check.await {
        Ok(()) => Response::json(
            200,
            json!({ "status": "ready", "version": st.version, "database": "ok" }),
        ),
        Err(e) => Response::json(
            503,
            json!({ "status": "not_ready", "version": st.version, "database": "unreachable", "detail": e }),
        ),
    }
}

fn conformance(st: &AppState) -> Response {
    Response::json(
        200,
        json!({
            "product": "agledger",
            "implementation": "agledger-standin",
            "version": st.version,
            "migrations": migrations::known_ids(&st.version),
            "vault": "ed25519",
            "api_key_hash": "hmac-sha256",
        }),
    )
}

async fn counts(client: &Client) -> Result<(i64, i64, i64, i64), String> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM mandates), (SELECT count(*) FROM vault_entries), \
                    (SELECT count(*) FROM api_keys), (SELECT count(*) FROM vault_signing_keys)",
            &[],
        )
        .await
        .map_err(|e| pg_err(&e))?;
    Ok((row.get(0), row.get(1), row.get(2), row.get(3)))
}

async fn status(st: &AppState) -> Response {
    let mut body = json!({
        "version": st.version,
        "role": st.role.name(),
        "uptime_s": st.started.elapsed().as_secs(),
        "mandates": Value::Null,
        "database": "ok",
    });
    let result = async {
        let client = connect().await?;
        let (mandates, ..) = counts(&client).await?;
        let schema = migrations::inspect(&client, &st.version).await?;
        Ok::<_, String>((mandates, schema.applied))
    };
    match result.await {
        Ok((mandates, applied)) => {
            body["mandates"] = json!(mandates);
            body["migrations_applied"] = json!(applied);
        }
        Err(e) => {
            body["database"] = json!("unreachable");
            body["detail"] = json!(e);
        }
    }
    Response::json(200, body)
}

async fn metrics(st: &AppState) -> Response {
    let counted = async {
        let client = connect().await?;
        counts(&client).await
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    gauge("agledger_up", "1 while the process runs.", "1".to_string());
    gauge(
        "agledger_uptime_seconds",
        "Seconds since the process started.",
        st.started.elapsed().as_secs().to_string(),
    );
    match counted.await {
        Ok((mandates, entries, keys, _)) => {
            gauge(
                "agledger_database_up",
                "1 when the database answered.",
                "1".to_string(),
            );
            gauge(
                "agledger_mandates_total",
                "Mandates in the database.",
                mandates.to_string(),
            );
            gauge(
                "agledger_vault_entries_total",
                "Vault entries in the database.",
                entries.to_string(),
            );
            gauge(
                "agledger_api_keys_total",
                "API keys in the database.",
                keys.to_string(),
            );
        }
        Err(_) => gauge(
            "agledger_database_up",
            "1 when the database answered.",
            "0".to_string(),
        ),
    }
    out.push_str(&format!(
        "# HELP agledger_build_info Version and role.\n# TYPE agledger_build_info gauge\n\
         agledger_build_info{{version=\"{}\",role=\"{}\"}} 1\n",
        st.version,
        st.role.name()
    ));
    Response::text(200, "text/plain; version=0.0.4; charset=utf-8", out)
}

/// The bearer key's identity, or the error response to send.
async fn authenticate(req: &Request, st: &AppState) -> Result<(Client, Identity), Response> {
    let unauthorized = |msg: &str| Response::json(401, json!({ "error": msg }));
    let header = req
        .header("authorization")
        .ok_or_else(|| unauthorized("missing Authorization header"))?;
    let key = match header.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() => {
            key.trim()
        }
        _ => return Err(unauthorized("expected Authorization: Bearer <api key>")),
    };
    let client = connect().await.map_err(unavailable)?;
    match apikeys::authenticate(&client, &st.api_keys, key).await {
        Ok(Some(identity)) => Ok((client, identity)),
        Ok(None) => Err(unauthorized("invalid api key")),
        Err(e) => Err(unavailable(e)),
    }
}

async fn authenticate_platform(req: &Request, st: &AppState) -> Result<Client, Response> {
    let (client, identity) = authenticate(req, st).await?;
    if identity.role != "platform" {
        return Err(Response::json(
            403,
            json!({ "error": "this endpoint needs an api key with role platform", "role": identity.role }),
        ));
    }
    Ok(client)
}

async fn auth_me(req: &Request, st: &AppState) -> Response {
    match authenticate(req, st).await {
        Ok((_, id)) => Response::json(
            200,
            json!({ "id": id.id, "name": id.name, "role": id.role }),
        ),
        Err(response) => response,
    }
}

async fn vault_scan(req: &Request, st: &AppState) -> Response {
    let client = match authenticate_platform(req, st).await {
        Ok(client) => client,
        Err(response) => return response,
    };
    match vault::scan(&client).await {
        Ok(report) => Response::json(200, report),
        Err(e) => Response::json(500, json!({ "error": e })),
    }
}

async fn support_bundle(req: &Request, st: &AppState) -> Response {
    let client = match authenticate_platform(req, st).await {
        Ok(client) => client,
        Err(response) => return response,
    };
    let migrations = match client
        .query(
            "SELECT id, name, applied_at::text FROM _migrations ORDER BY id",
            &[],
        )
        .await
    {
        Ok(rows) => {
            let list: Vec<Value> = rows
                .iter()
                .map(|r| {
                    let (id, name, applied_at): (i32, String, String) =
                        (r.get(0), r.get(1), r.get(2));
                    json!({ "id": id, "name": name, "applied_at": applied_at })
                })
                .collect();
            Value::Array(list)
        }
        Err(e) => json!({ "error": pg_err(&e) }),
    };
    let counts = match counts(&client).await {
        Ok((mandates, entries, keys, signing_keys)) => json!({
            "mandates": mandates,
            "vault_entries": entries,
            "api_keys": keys,
            "vault_signing_keys": signing_keys,
        }),
        Err(e) => json!({ "error": e }),
    };
    Response::json(
        200,
        json!({
            "version": st.version,
            "role": st.role.name(),
            "uptime_s": st.started.elapsed().as_secs(),
            "config_keys": config::config_key_names(),
            "migrations": { "known": migrations::known_ids(&st.version), "applied": migrations },
            "counts": counts,
        }),
    )
}
