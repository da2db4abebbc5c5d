//! A minimal HTTP/1.1 server on tokio: one request per connection
//! (`Connection: close`), JSON bodies, graceful SIGTERM. The routes live in
//! `routes.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{self, ApiKeySecrets, Role, VaultKeys};
use crate::db::{self, Purpose};
use crate::{routes, vault};

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;

pub struct AppState {
    pub role: Role,
    pub version: String,
    pub started: Instant,
    pub broken: bool,
    pub shutting_down: AtomicBool,
    pub api_keys: ApiKeySecrets,
    pub vault: VaultKeys,
}

pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    #[allow(dead_code)] // no route reads a body yet; kept so POSTs are read completely
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value; `name` is lower case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: serde_json::Value) -> Response {
        let mut body = serde_json::to_vec(&value).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }

    pub fn text(status: u16, content_type: &'static str, text: String) -> Response {
        Response {
            status,
            content_type,
            body: text.into_bytes(),
        }
    }
}

/// The `serve` and `worker` roles.
pub async fn serve(role: Role) -> Result<(), String> {
    config::check_removed_vars()?;
    let api_keys = config::api_key_secrets()?;
    let vault = config::vault_keys()?;
    db::pg_config(Purpose::App)?; // a malformed DATABASE_URL refuses to start
    let port = config::port(role)?;
    let state = Arc::new(AppState {
        role,
        version: config::version(),
        started: Instant::now(),
        broken: config::is_broken(),
        shutting_down: AtomicBool::new(false),
        api_keys,
        vault,
    });
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|e| format!("cannot listen on 0.0.0.0:{port}: {e}"))?;
    eprintln!(
        "agledger {} {}: listening on 0.0.0.0:{port}{}",
        role.name(),
        state.version,
        if state.broken {
            " (this image is marked broken: /health answers 503)"
        } else {
            ""
        }
    );
    tokio::spawn(register_keys_until_done(state.clone()));

    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => accept(accepted, &state).await,
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }

    // Draining: /health/ready answers 503 for a short grace period, then exit 0.
    state.shutting_down.store(true, Ordering::SeqCst);
    let grace = config::env_nonempty("AGLEDGER_SHUTDOWN_GRACE_MS")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(500);
    eprintln!("agledger {}: shutting down ({grace} ms grace)", role.name());
    let deadline = tokio::time::sleep(Duration::from_millis(grace));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            accepted = listener.accept() => accept(accepted, &state).await,
        }
    }
    eprintln!("agledger {}: stopped", role.name());
    Ok(())
}

async fn accept(
    accepted: std::io::Result<(TcpStream, std::net::SocketAddr)>,
    state: &Arc<AppState>,
) {
    match accepted {
        Ok((stream, _)) => {
            let state = state.clone();
            tokio::spawn(async move { handle_connection(stream, state).await });
        }
        Err(e) => {
            eprintln!("accept failed: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Register the vault signing key(s) once the database and schema are there.
async fn register_keys_until_done(state: Arc<AppState>) {
    let mut last_error = String::new();
    while !state.shutting_down.load(Ordering::SeqCst) {
        let result = match db::connect(Purpose::App).await {
            Ok(client) => {
                vault::register_keys(&client, &state.vault.current, state.vault.previous.as_ref())
                    .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(key_id) => {
                eprintln!("vault signing key {key_id} is active");
                return;
            }
            Err(e) => {
                if e != last_error {
                    eprintln!("vault key registration will be retried: {e}");
                    last_error = e;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn handle_connection(mut stream: TcpStream, state: Arc<AppState>) {
    let (response, head_only) =
        match tokio::time::timeout(Duration::from_secs(10), read_request(&mut stream)).await {
            Err(_) => return,
            Ok(Err(msg)) => (
                Response::json(400, serde_json::json!({ "error": msg })),
                false,
            ),
            Ok(Ok(request)) => (
                routes::handle(&request, &state).await,
                request.method == "HEAD",
            ),
        };
    let _ = write_response(&mut stream, &response, head_only).await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Result<Request, String> {
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err("request head too large".to_string());
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the request was complete".to_string());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| "request head is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split_whitespace();
    let method = request_line.next().ok_or("empty request line")?.to_string();
    let target = request_line.next().ok_or("request line without a target")?;
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length = match headers.iter().find(|(k, _)| k == "content-length") {
        None => 0,
        Some((_, v)) => v
            .parse::<usize>()
            .map_err(|_| "bad Content-Length".to_string())?,
    };
    if length > MAX_BODY {
        return Err("request body too large".to_string());
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the body was complete".to_string());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Request {
        method,
        path,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

async fn write_response(
    stream: &mut TcpStream,
    r: &Response,
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(&r.body).await?;
    }
    stream.flush().await
}
