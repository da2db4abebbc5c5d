//! health: does the API answer `/health` and `/health/ready`, and do the
//! api and worker containers run and pass their healthcheck?

use super::{Check, Finding, Settings};
use crate::deployment::{API, CONTAINERS, HTTP_API, WORKER};
use opshost_sdk::{container, describe, web, Result};

pub const CHECK: Check = Check {
    name: "health",
    about: "GET /health and /health/ready; agledger-api and -worker containers running and healthy",
    run,
};

/// The name the host gives a replaced container it keeps for an undo.
const PREVIOUS: &str = "_opshost_previous_";

const FIX_READY: &str = "look at the API's log (docker compose logs --tail 100 agledger-api) and at the database it names \
     (DATABASE_URL, or the postgres service): /health/ready is 503 while the database is unreachable";

fn endpoint(path: &str) -> Option<(u16, String)> {
    match web::get(HTTP_API, path) {
        Ok(r) if r.head.status == 200 => None,
        Ok(r) => Some((
            r.head.status,
            String::from_utf8_lossy(&r.body)
                .trim()
                .chars()
                .take(200)
                .collect(),
        )),
        Err(e) => Some((0, describe(&e))),
    }
}

fn run(_: &Settings) -> Result<Vec<Finding>> {
    let mut found = Vec::new();
    let live = endpoint("/health");
    if let Some((status, body)) = &live {
        found.push(
            Finding::error(
                "the API does not answer /health with 200",
                if *status == 0 {
                    format!("GET /health: {body}")
                } else {
                    format!("GET /health answered {status} {body}")
                },
                "start the services (docker compose up -d) and read agledger-api's log: a process that refuses \
                 to start says why (a removed variable, a bad secret)",
            )
            .blocking(),
        );
    }
    if live.is_none() {
        if let Some((status, body)) = endpoint("/health/ready") {
            found.push(
                Finding::error(
                    "the API runs but is not ready",
                    format!("GET /health answered 200; GET /health/ready answered {status} {body}"),
                    FIX_READY,
                )
                .blocking(),
            );
        }
    }
    let containers = container::list(CONTAINERS)?;
    for service in [API, WORKER] {
        // A replaced container kept (stopped) for an undo is not a replica.
        let mine: Vec<_> = containers
            .iter()
            .filter(|c| c.service == service && !c.name.contains(PREVIOUS))
            .collect();
        if mine.is_empty() {
            found.push(
                Finding::error(
                    format!("no {service} container"),
                    format!("the compose project has no container of the service {service}"),
                    "bring the deployment up: docker compose up -d",
                )
                .blocking(),
            );
        }
        for c in mine {
            let health = c.health.as_deref().unwrap_or("none");
            if c.state != "running" || health == "unhealthy" {
                found.push(
                    Finding::error(
                        format!("{} is {} ({health})", c.name, c.state),
                        format!(
                            "container {} of {service}: state {}, health {health}{}",
                            c.name,
                            c.state,
                            c.exit_code.map(|x| format!(", exit code {x}")).unwrap_or_default()
                        ),
                        format!("read its log (docker logs --tail 100 {}) and start it again once the cause is gone", c.name),
                    )
                    .blocking(),
                );
            }
        }
    }
    Ok(found)
}
