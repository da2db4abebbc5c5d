//! Finding a deployment's containers: a compose project (and service)
//! named in the config, by the labels compose puts on its containers.
//! Plugins name services, never container ids, so nothing outside the
//! project is reachable.

use std::collections::HashMap;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;

use crate::caps::container::backend::Container;
use crate::caps::CapError;

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
pub const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
const NUMBER_LABEL: &str = "com.docker.compose.container-number";

pub fn engine_error(what: &str, e: bollard::errors::Error) -> CapError {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError {
            status_code: 404,
            message,
        } => CapError::NotFound(format!("{what}: {message}")),
        E::DockerResponseServerError { message, .. } => {
            CapError::Failed(format!("{what}: {message}"))
        }
        other => CapError::Failed(format!("{what}: {other}")),
    }
}

/// The project's long-running containers (not one-off `run` containers),
/// inspected, in service then container-number order.
pub async fn project_containers(
    docker: &Docker,
    project: &str,
) -> Result<Vec<ContainerInspectResponse>, CapError> {
    let filters: HashMap<String, Vec<String>> = HashMap::from([(
        "label".to_string(),
        vec![format!("{PROJECT_LABEL}={project}")],
    )]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let summaries = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| engine_error("listing containers", e))?;
    let mut out = Vec::new();
    for s in summaries {
        let labels = s.labels.unwrap_or_default();
        // Defence in depth: the filter already did this.
        if labels.get(PROJECT_LABEL).map(String::as_str) != Some(project) {
            continue;
        }
        if labels
            .get(ONEOFF_LABEL)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            continue;
        }
        let Some(id) = s.id else { continue };
        match docker.inspect_container(&id, None).await {
            Ok(c) => out.push(c),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => continue,
            Err(e) => return Err(engine_error("inspecting a container", e)),
        }
    }
    let key = |c: &ContainerInspectResponse| {
        let labels = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let number: u32 = labels
            .get(NUMBER_LABEL)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        (
            labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
            number,
        )
    };
    out.sort_by_key(key);
    Ok(out)
}

/// The container of one service (the first, when scaled).
pub async fn service_container(
    docker: &Docker,
    project: &str,
    service: &str,
) -> Result<ContainerInspectResponse, CapError> {
    project_containers(docker, project)
        .await?
        .into_iter()
        .find(|c| label(c, SERVICE_LABEL) == Some(service))
        .ok_or_else(|| {
            CapError::NotFound(format!(
                "no container for service \"{service}\" in compose project \"{project}\""
            ))
        })
}

/// Every container of one service (one per replica when scaled), in
/// container-number order.
pub async fn service_containers(
    docker: &Docker,
    project: &str,
    service: &str,
) -> Result<Vec<ContainerInspectResponse>, CapError> {
    let all: Vec<_> = project_containers(docker, project)
        .await?
        .into_iter()
        .filter(|c| label(c, SERVICE_LABEL) == Some(service))
        .collect();
    if all.is_empty() {
        return Err(CapError::NotFound(format!(
            "no container for service \"{service}\" in compose project \"{project}\""
        )));
    }
    Ok(all)
}

pub fn label<'a>(c: &'a ContainerInspectResponse, key: &str) -> Option<&'a str> {
    c.config
        .as_ref()?
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

pub fn id(c: &ContainerInspectResponse) -> Result<String, CapError> {
    c.id.clone()
        .ok_or_else(|| CapError::Failed("the engine returned a container without an id".into()))
}

pub fn info(c: &ContainerInspectResponse) -> Container {
    let state = c.state.as_ref();
    let health = state
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status)
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty() && s != "none");
    let mut labels: Vec<(String, String)> = c
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.sort();
    Container {
        id: c.id.clone().unwrap_or_default(),
        name: c
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        service: label(c, SERVICE_LABEL).unwrap_or_default().to_string(),
        image: c
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        image_id: c.image.clone().unwrap_or_default(),
        state: state
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        health,
        exit_code: state.and_then(|s| s.exit_code),
        labels,
    }
}
