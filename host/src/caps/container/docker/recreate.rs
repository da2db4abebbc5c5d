//! Replacing a service's container (new image and/or environment, all else
//! kept) and running one-off containers from a service's configuration.
//! A recreate that fails part-way puts the previous container back.

use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, NetworkConnectRequest,
    NetworkingConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;

use super::scope::{engine_error, id, ONEOFF_LABEL};
use crate::caps::CapError;

/// Output kept from a one-off container, per stream.
const MAX_OUTPUT: usize = 16 << 20;

pub struct EnvChange<'a> {
    pub set: &'a [(String, String)],
    pub unset: &'a [String],
}

fn apply_env(current: Vec<String>, change: &EnvChange<'_>) -> Vec<String> {
    let mut env: Vec<String> = current
        .into_iter()
        .filter(|kv| {
            let key = kv.split('=').next().unwrap_or_default();
            !change.unset.iter().any(|u| u == key) && !change.set.iter().any(|(k, _)| k == key)
        })
        .collect();
    env.extend(change.set.iter().map(|(k, v)| format!("{k}={v}")));
    env
}

/// Endpoint settings worth carrying to a new container (aliases, links,
/// static addresses); runtime fields (ids, assigned IPs) are dropped.
fn portable_endpoint(e: &EndpointSettings, old_id: &str) -> EndpointSettings {
    let aliases = e.aliases.as_ref().map(|a| {
        a.iter()
            .filter(|alias| !old_id.starts_with(alias.as_str()))
            .cloned()
            .collect::<Vec<_>>()
    });
    EndpointSettings {
        aliases,
        links: e.links.clone(),
        ipam_config: e.ipam_config.clone(),
        driver_opts: e.driver_opts.clone(),
        ..Default::default()
    }
}

/// A network name and how the container is attached to it.
type Endpoint = (String, EndpointSettings);

/// The primary network (network_mode) and the others to connect after create
/// (engines before API 1.44 take one network at create time).
fn networks(c: &ContainerInspectResponse) -> (Option<Endpoint>, Vec<Endpoint>) {
    let old_id = c.id.clone().unwrap_or_default();
    let mode = c
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    let mut primary = None;
    let mut others = Vec::new();
    for (net, settings) in c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default()
    {
        let portable = portable_endpoint(&settings, &old_id);
        if net == mode {
            primary = Some((net, portable));
        } else {
            others.push((net, portable));
        }
    }
    (primary, others)
}

/// A create body that reproduces `c`, with another image and environment.
fn body_like(c: &ContainerInspectResponse, image: String, env: Vec<String>) -> ContainerCreateBody {
    let cfg = c.config.clone().unwrap_or_default();
    let id = c.id.clone().unwrap_or_default();
    // Docker sets the hostname to the short id unless one was configured.
    let hostname = cfg.hostname.filter(|h| !id.starts_with(h.as_str()));
    let (primary, _) = networks(c);
    ContainerCreateBody {
        hostname,
        domainname: cfg.domainname,
        user: cfg.user,
        exposed_ports: cfg.exposed_ports,
        tty: cfg.tty,
        open_stdin: cfg.open_stdin,
        stdin_once: cfg.stdin_once,
        env: Some(env),
        cmd: cfg.cmd,
        healthcheck: cfg.healthcheck,
        image: Some(image),
        volumes: cfg.volumes,
        working_dir: cfg.working_dir,
        entrypoint: cfg.entrypoint,
        labels: cfg.labels,
        stop_signal: cfg.stop_signal,
        stop_timeout: cfg.stop_timeout,
        host_config: c.host_config.clone(),
        networking_config: primary.map(|(net, settings)| NetworkingConfig {
            endpoints_config: Some([(net, settings)].into_iter().collect()),
        }),
        ..Default::default()
    }
}

/// Create a container and attach its extra networks; not started.
async fn create_attached(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
    extra_networks: &[Endpoint],
    created: &mut Option<String>,
) -> Result<String, CapError> {
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    let response = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| engine_error("create", e))?;
    *created = Some(response.id.clone());
    for (net, settings) in extra_networks {
        let request = NetworkConnectRequest {
            container: response.id.clone(),
            endpoint_config: Some(settings.clone()),
        };
        docker
            .connect_network(net, request)
            .await
            .map_err(|e| engine_error(&format!("connect to {net}"), e))?;
    }
    Ok(response.id)
}

async fn start(docker: &Docker, id: &str) -> Result<(), CapError> {
    docker
        .start_container(id, None)
        .await
        .map_err(|e| engine_error("start", e))
}

async fn remove(docker: &Docker, id: &str) -> Result<(), CapError> {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    docker
        .remove_container(id, Some(options))
        .await
        .map_err(|e| engine_error("remove", e))
}

pub async fn stop(docker: &Docker, id: &str, timeout_s: Option<u32>) -> Result<(), CapError> {
    let mut options = StopContainerOptionsBuilder::default();
    if let Some(t) = timeout_s {
        options = options.t(i32::try_from(t).unwrap_or(i32::MAX));
    }
    match docker.stop_container(id, Some(options.build())).await {
        // 304: already stopped.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        other => other.map_err(|e| engine_error("stop", e)),
    }
}

/// Put a service back in shape after a recreate that was killed half-way
/// (the host process died): a new container that never took the
/// service's name is removed; the previous one, if it was renamed aside
/// and nothing took its name, gets its name back, else it is removed.
pub async fn tidy(docker: &Docker, project: &str, service: &str) -> Result<(), CapError> {
    let all = super::scope::project_containers(docker, project).await?;
    let of_service: Vec<_> = all
        .iter()
        .filter(|c| super::scope::label(c, super::scope::SERVICE_LABEL) == Some(service))
        .collect();
    let name_of = |c: &ContainerInspectResponse| {
        c.name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string()
    };
    for c in &of_service {
        let name = name_of(c);
        let Some(cid) = c.id.as_deref() else { continue };
        if name.contains("_opshost_next_") {
            remove(docker, cid).await?;
        } else if let Some((base, _)) = name.split_once("_opshost_previous_") {
            // This replica's own name taken (by the new container): the
            // previous one is done with; else it gets its name back.
            if of_service.iter().any(|c| name_of(c) == base) {
                remove(docker, cid).await?;
            } else {
                let options = RenameContainerOptionsBuilder::default().name(base).build();
                docker
                    .rename_container(cid, options)
                    .await
                    .map_err(|e| engine_error("rename the previous container back", e))?;
                let _ = docker.start_container(cid, None).await;
            }
        }
    }
    Ok(())
}

/// Replace `old` with a container of `image` and the changed environment.
/// `start: false` leaves the new container created, named and stopped.
pub async fn recreate(
    docker: &Docker,
    old: &ContainerInspectResponse,
    image: String,
    env: &EnvChange<'_>,
    start_it: bool,
) -> Result<String, CapError> {
    let old_id = id(old)?;
    let name = old
        .name
        .clone()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let was_running = old.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    let env = apply_env(
        old.config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default(),
        env,
    );
    let body = body_like(old, image, env);
    let (_, extra) = networks(old);
    let stop_timeout = old
        .config
        .as_ref()
        .and_then(|c| c.stop_timeout)
        .and_then(|t| u32::try_from(t).ok());

    // The new container exists (image there, configuration accepted,
    // networks attached) before the old one stops: the service is away only
    // from the old process's exit to the new one's start.
    let short = &old_id[..old_id.len().min(12)];
    let mut created = None;
    let new_id = match create_attached(
        docker,
        &format!("{name}_opshost_next_{short}"),
        body,
        &extra,
        &mut created,
    )
    .await
    {
        Ok(id) => id,
        Err(e) => {
            if let Some(id) = &created {
                let _ = remove(docker, id).await;
            }
            return Err(e);
        }
    };
    if let Err(e) = stop(docker, &old_id, stop_timeout).await {
        let _ = remove(docker, &new_id).await;
        return Err(e);
    }
    let aside = format!("{name}_opshost_previous_{short}");
    let rename = |to: &str| RenameContainerOptionsBuilder::default().name(to).build();
    if let Err(e) = docker.rename_container(&old_id, rename(&aside)).await {
        let _ = remove(docker, &new_id).await;
        if was_running {
            let _ = docker.start_container(&old_id, None).await;
        }
        return Err(engine_error("rename the current container aside", e));
    }
    let switched: Result<(), CapError> = async {
        docker
            .rename_container(&new_id, rename(&name))
            .await
            .map_err(|e| engine_error("rename the new container", e))?;
        if start_it {
            start(docker, &new_id).await?;
        }
        Ok(())
    }
    .await;
    match switched {
        Ok(()) => {
            remove(docker, &old_id).await?;
            Ok(new_id)
        }
        Err(e) => {
            // Put the previous container back as it was.
            let _ = remove(docker, &new_id).await;
            let restored = docker
                .rename_container(&old_id, rename(&name))
                .await
                .is_ok()
                && (!was_running || docker.start_container(&old_id, None).await.is_ok());
            let state = if restored {
                "the previous container was put back".to_string()
            } else {
                format!("the previous container could not be put back: it is {aside} ({old_id})")
            };
            Err(CapError::Failed(format!(
                "recreating {name} failed ({e}); {state}"
            )))
        }
    }
}

pub struct OneOff<'a> {
    pub image: String,
    pub command: Option<Vec<String>>,
    pub env: EnvChange<'a>,
    pub timeout: Duration,
}

/// Run a one-off container configured like `base`, wait for it, collect its
/// output, remove it. Published ports and the restart policy are dropped.
pub async fn run_once(
    docker: &Docker,
    base: &ContainerInspectResponse,
    spec: OneOff<'_>,
) -> Result<(i64, Vec<u8>, Vec<u8>), CapError> {
    let env = apply_env(
        base.config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default(),
        &spec.env,
    );
    let mut body = body_like(base, spec.image, env);
    body.hostname = None;
    if let Some(cmd) = spec.command {
        body.cmd = Some(cmd);
    }
    if let Some(labels) = body.labels.as_mut() {
        labels.insert(ONEOFF_LABEL.to_string(), "True".to_string());
    }
    if let Some(h) = body.host_config.as_mut() {
        h.port_bindings = None;
        h.publish_all_ports = None;
        h.restart_policy = Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        });
        h.auto_remove = Some(false);
    }
    // Aliases would make the one-off answer for the service: drop them.
    if let Some(n) = body
        .networking_config
        .as_mut()
        .and_then(|n| n.endpoints_config.as_mut())
    {
        for e in n.values_mut() {
            e.aliases = None;
        }
    }
    let base_name = base
        .name
        .clone()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let name = format!(
        "{base_name}_opshost_run_{}_{}",
        std::process::id(),
        rand_suffix()
    );
    let mut created = None;
    let started = match create_attached(docker, &name, body, &[], &mut created).await {
        Ok(id) => start(docker, &id).await,
        Err(e) => Err(e),
    };
    let Some(id) = created else {
        return Err(started
            .err()
            .unwrap_or_else(|| CapError::Failed("not created".into())));
    };
    let result = async {
        started?;
        let code = wait(docker, &id, spec.timeout).await?;
        let (out, err) = output(docker, &id).await?;
        Ok((code, out, err))
    }
    .await;
    let _ = remove(docker, &id).await;
    result
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:08x}")
}

async fn wait(docker: &Docker, id: &str, timeout: Duration) -> Result<i64, CapError> {
    let mut stream = docker.wait_container(id, None);
    match tokio::time::timeout(timeout, stream.next()).await {
        Err(_) => Err(CapError::TimedOut(format!(
            "the one-off container did not exit within {timeout:?}"
        ))),
        Ok(Some(Ok(r))) => Ok(r.status_code),
        Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => Ok(code),
        Ok(Some(Err(e))) => Err(engine_error("wait", e)),
        Ok(None) => Err(CapError::Failed(
            "the engine ended the wait without a status".into(),
        )),
    }
}

async fn output(docker: &Docker, id: &str) -> Result<(Vec<u8>, Vec<u8>), CapError> {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .build();
    let mut stream = docker.logs(id, Some(options));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(item) = stream.next().await {
        match item.map_err(|e| engine_error("logs", e))? {
            bollard::container::LogOutput::StdErr { message } if err.len() < MAX_OUTPUT => {
                err.extend_from_slice(&message)
            }
            bollard::container::LogOutput::StdOut { message } if out.len() < MAX_OUTPUT => {
                out.extend_from_slice(&message)
            }
            _ => {}
        }
    }
    Ok((out, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_changes_replace_add_and_remove() {
        let env = apply_env(
            vec!["A=1".into(), "B=2".into(), "C=3".into()],
            &EnvChange {
                set: &[("B".into(), "20".into()), ("D".into(), "4".into())],
                unset: &["C".into()],
            },
        );
        assert_eq!(env, ["A=1", "B=20", "D=4"]);
    }
}
