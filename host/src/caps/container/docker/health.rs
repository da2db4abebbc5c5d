//! Is a container ready? Docker's healthcheck says so at its own interval
//! (15-30 s in real deployments); a caller that knows the product's
//! readiness path may have the host ask the container itself, on its own
//! address, every 100 ms instead.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bollard::models::ContainerInspectResponse;
use bollard::Docker;

use super::scope::{self, engine_error};
use crate::caps::CapError;

/// The container's address on its first network (none while it is not
/// running).
pub fn ip(c: &ContainerInspectResponse) -> Option<IpAddr> {
    c.network_settings
        .as_ref()?
        .networks
        .as_ref()?
        .values()
        .find_map(|n| n.ip_address.as_deref().filter(|ip| !ip.is_empty()))?
        .parse()
        .ok()
}

/// The container's address on its first network and its first exposed
/// TCP port: where the service inside listens.
fn address(c: &ContainerInspectResponse) -> Option<SocketAddr> {
    let ip = ip(c)?;
    let mut ports: Vec<u16> = c
        .config
        .as_ref()?
        .exposed_ports
        .as_ref()?
        .iter()
        .filter_map(|p| p.strip_suffix("/tcp")?.parse().ok())
        .collect();
    ports.sort_unstable();
    Some(SocketAddr::new(ip, *ports.first()?))
}

/// Does `GET path` on the container answer 200 within half a second?
async fn answers(address: SocketAddr, path: &str) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
    else {
        return false;
    };
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    matches!(
        client.get(format!("http://{address}{path}")).send().await,
        Ok(r) if r.status() == reqwest::StatusCode::OK
    )
}

pub fn last_health_log(c: &bollard::models::ContainerInspectResponse) -> String {
    c.state
        .as_ref()
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.log.as_ref())
        .and_then(|l| l.last())
        .map(|r| {
            format!(
                "last health check: exit {} {}",
                r.exit_code.unwrap_or(-1),
                r.output.as_deref().unwrap_or("").trim()
            )
        })
        .unwrap_or_else(|| "no health check has run".into())
}

/// Wait until one container reports healthy (or runs, without a
/// healthcheck); it failing or the time running out is an error naming
/// the service and the last health check.
pub async fn healthy(
    docker: &Docker,
    id: &str,
    service: &str,
    within: Duration,
    ready_path: Option<&str>,
) -> Result<ContainerInspectResponse, CapError> {
    let deadline = Instant::now() + within;
    loop {
        let c = docker
            .inspect_container(id, None)
            .await
            .map_err(|e| engine_error("inspect", e))?;
        let info = scope::info(&c);
        match info.health.as_deref() {
            Some("healthy") => return Ok(c),
            None if info.state == "running" && ready_path.is_none() => return Ok(c),
            _ => {}
        }
        if let (Some(path), "running") = (ready_path, info.state.as_str()) {
            if let Some(address) = address(&c) {
                if answers(address, path).await {
                    return Ok(c);
                }
            }
        }
        if matches!(info.state.as_str(), "exited" | "dead") {
            return Err(CapError::Failed(format!(
                "{service} ({}) is {} (exit code {}); {}",
                info.name,
                info.state,
                info.exit_code.unwrap_or(-1),
                last_health_log(&c)
            )));
        }
        if Instant::now() >= deadline {
            return Err(CapError::TimedOut(format!(
                "{service} ({}) is not healthy after {} ms (state {}, health {}); {}",
                info.name,
                within.as_millis(),
                info.state,
                info.health.as_deref().unwrap_or("none"),
                last_health_log(&c)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
