//! The `healthcheck` role, the image's Docker HEALTHCHECK (the image has no
//! shell and no curl): GET http://127.0.0.1:$PORT/health over a plain TCP
//! socket, exit 0 iff the answer is 200. Without $PORT it tries 3000 (api)
//! then 3001 (worker): only one of them listens in a given container.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

pub fn run() -> ExitCode {
    let ports: Vec<u16> =
        match crate::config::env_nonempty("PORT").and_then(|p| p.trim().parse().ok()) {
            Some(p) => vec![p],
            None => vec![3000, 3001],
        };
    let mut last = String::from("no port to try");
    for port in ports {
        match probe(port) {
            Ok((200, body)) => {
                println!("healthy: {body}");
                return ExitCode::SUCCESS;
            }
            Ok((status, body)) => {
                println!("unhealthy: 127.0.0.1:{port}/health answered {status}: {body}");
                return ExitCode::FAILURE;
            }
            Err(e) => last = format!("127.0.0.1:{port}: {e}"),
        }
    }
    println!("unhealthy: {last}");
    ExitCode::FAILURE
}

fn probe(port: u16) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response")
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    Ok((status, body))
}
