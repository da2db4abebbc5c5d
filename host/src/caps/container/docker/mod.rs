//! The Docker backend: a compose project's containers through the Docker
//! Engine API (bollard), found by the labels compose puts on them
//! (`scope.rs`); replaced by create-aside-then-swap (`recreate.rs`), one
//! replica at a time; readiness from the engine's healthcheck or the
//! container's own address (`health.rs`); exec over the attach stream
//! (`exec.rs`). The engine client is connected once per run
//! ([`client`], `RunContext::docker`).

mod exec;
mod health;
mod recreate;
mod scope;

use std::net::IpAddr;
use std::time::Duration;

use bollard::query_parameters::{CreateImageOptionsBuilder, LogsOptionsBuilder};
use bollard::Docker;
use futures::StreamExt;
use tokio::sync::OnceCell;

use super::backend::{
    Answer, Chunks, Container, ContainerBackend, Exec, ExecSpec, ReplaceSpec, RunOnceSpec,
    RunOutput,
};
use super::images::repository;
use crate::caps::CapError;
use scope::engine_error;

/// The engine, connected once per run; the API version is negotiated
/// (the engine may be older than bollard's default).
pub async fn client(cell: &OnceCell<Docker>) -> Result<Docker, CapError> {
    cell.get_or_try_init(|| async {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| CapError::Failed(format!("cannot reach the Docker Engine: {e}")))?;
        docker
            .negotiate_version()
            .await
            .map_err(|e| CapError::Failed(format!("cannot reach the Docker Engine: {e}")))
    })
    .await
    .cloned()
}

/// One compose project on one engine.
pub struct DockerBackend {
    docker: Docker,
    project: String,
}

impl DockerBackend {
    pub fn new(docker: Docker, project: &str) -> Self {
        Self {
            docker,
            project: project.to_string(),
        }
    }

    async fn first(
        &self,
        service: &str,
    ) -> Result<bollard::models::ContainerInspectResponse, CapError> {
        scope::service_container(&self.docker, &self.project, service).await
    }

    async fn replace_all(&self, service: &str, spec: ReplaceSpec) -> Result<Container, CapError> {
        let docker = &self.docker;
        recreate::tidy(docker, &self.project, service).await?;
        let replicas = scope::service_containers(docker, &self.project, service).await?;
        let env = recreate::EnvChange {
            set: &spec.env_set,
            unset: &spec.env_unset,
        };
        // Nothing to wait for in a container left stopped.
        let gate = spec.healthy_within.filter(|_| !spec.stopped);
        // One replica at a time: the others keep serving meanwhile.
        let mut first = None;
        for old in &replicas {
            let image = match &spec.image {
                Some(image) => image.clone(),
                None => current_image(old),
            };
            let new_id = recreate::recreate(docker, old, image, &env, !spec.stopped).await?;
            let new = match gate {
                Some(within) => {
                    health::healthy(docker, &new_id, service, within, spec.ready_path.as_deref())
                        .await?
                }
                None => docker
                    .inspect_container(&new_id, None)
                    .await
                    .map_err(|e| engine_error("inspect", e))?,
            };
            first.get_or_insert(scope::info(&new));
        }
        first.ok_or_else(|| CapError::NotFound(format!("no container for service \"{service}\"")))
    }

    async fn pull_digest(&self, image: &str) -> Result<String, CapError> {
        let options = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut progress = self.docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            step.map_err(|e| engine_error(&format!("pull {image}"), e))?;
        }
        self.digest_here(image).await?.ok_or_else(|| {
            CapError::Failed(format!(
                "{image} was pulled but has no digest from {}",
                repository(image)
            ))
        })
    }

    /// The repo digest of an image the engine has (`None`: not here).
    async fn digest_here(&self, image: &str) -> Result<Option<String>, CapError> {
        let inspected = match self.docker.inspect_image(image).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(engine_error("inspect image", e)),
        };
        let repo = repository(image);
        let digests = inspected.repo_digests.unwrap_or_default();
        // A pull by digest returns that digest, even when the image
        // has others from the same repository (it is what gets verified).
        Ok(digests
            .iter()
            .find(|d| **d == image)
            .or_else(|| digests.iter().find(|d| repository(d) == repo))
            .cloned())
    }
}

fn current_image(c: &bollard::models::ContainerInspectResponse) -> String {
    c.config
        .as_ref()
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

async fn start_one(docker: &Docker, id: &str) -> Result<(), CapError> {
    match docker.start_container(id, None).await {
        // 304: already running.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        other => other.map_err(|e| engine_error("start", e)),
    }
}

impl ContainerBackend for DockerBackend {
    fn kind(&self) -> &'static str {
        "docker"
    }

    fn list(&self) -> Answer<'_, Vec<Container>> {
        Box::pin(async move {
            Ok(scope::project_containers(&self.docker, &self.project)
                .await?
                .iter()
                .map(scope::info)
                .collect())
        })
    }

    fn inspect<'a>(&'a self, service: &'a str) -> Answer<'a, Container> {
        Box::pin(async move { Ok(scope::info(&self.first(service).await?)) })
    }

    fn environment<'a>(&'a self, service: &'a str) -> Answer<'a, Vec<(String, String)>> {
        Box::pin(async move {
            let c = self.first(service).await?;
            let env = c.config.and_then(|c| c.env).unwrap_or_default();
            Ok(env
                .into_iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv, String::new()),
                })
                .collect())
        })
    }

    fn logs<'a>(&'a self, service: &'a str, tail: Option<u32>) -> Answer<'a, Chunks> {
        Box::pin(async move {
            let id = scope::id(&self.first(service).await?)?;
            let tail = tail.map(|t| t.to_string()).unwrap_or_else(|| "all".into());
            let options = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .tail(&tail)
                .build();
            let stream = self
                .docker
                .logs(&id, Some(options))
                .map(|item| {
                    item.map(|frame| frame.into_bytes())
                        .map_err(|e| engine_error("logs", e))
                })
                .boxed();
            Ok(stream)
        })
    }

    fn exec<'a>(&'a self, service: &'a str, spec: ExecSpec) -> Answer<'a, Exec> {
        Box::pin(async move {
            let id = scope::id(&self.first(service).await?)?;
            exec::start(&self.docker, &id, spec).await
        })
    }

    fn stop<'a>(&'a self, service: &'a str, grace_s: Option<u32>) -> Answer<'a, ()> {
        Box::pin(async move {
            // Every replica: "stop the worker" means all of it.
            for c in scope::service_containers(&self.docker, &self.project, service).await? {
                recreate::stop(&self.docker, &scope::id(&c)?, grace_s).await?;
            }
            Ok(())
        })
    }

    fn start<'a>(&'a self, service: &'a str) -> Answer<'a, ()> {
        Box::pin(async move {
            for c in scope::service_containers(&self.docker, &self.project, service).await? {
                start_one(&self.docker, &scope::id(&c)?).await?;
            }
            Ok(())
        })
    }

    fn restart<'a>(&'a self, service: &'a str, grace_s: Option<u32>) -> Answer<'a, ()> {
        Box::pin(async move {
            let id = scope::id(&self.first(service).await?)?;
            recreate::stop(&self.docker, &id, grace_s).await?;
            self.docker
                .start_container(&id, None)
                .await
                .map_err(|e| engine_error("start", e))
        })
    }

    fn pull<'a>(&'a self, image: &'a str) -> Answer<'a, String> {
        Box::pin(self.pull_digest(image))
    }

    fn local_digest<'a>(&'a self, image: &'a str) -> Answer<'a, Option<String>> {
        Box::pin(self.digest_here(image))
    }

    fn replace<'a>(&'a self, service: &'a str, spec: ReplaceSpec) -> Answer<'a, Container> {
        Box::pin(self.replace_all(service, spec))
    }

    fn run_once<'a>(&'a self, service: &'a str, spec: RunOnceSpec) -> Answer<'a, RunOutput> {
        Box::pin(async move {
            let base = self.first(service).await?;
            let one_off = recreate::OneOff {
                image: spec.image.unwrap_or_else(|| current_image(&base)),
                command: spec.command,
                env: recreate::EnvChange {
                    set: &spec.env_set,
                    unset: &[],
                },
                timeout: spec.timeout,
            };
            let (exit_code, stdout, stderr) =
                recreate::run_once(&self.docker, &base, one_off).await?;
            Ok(RunOutput {
                exit_code,
                stdout,
                stderr,
            })
        })
    }

    fn wait_healthy<'a>(&'a self, service: &'a str, within: Duration) -> Answer<'a, Container> {
        Box::pin(async move {
            let mut first = None;
            for c in scope::service_containers(&self.docker, &self.project, service).await? {
                let id = scope::id(&c)?;
                first.get_or_insert(
                    health::healthy(&self.docker, &id, service, within, None).await?,
                );
            }
            first.map(|c| scope::info(&c)).ok_or_else(|| {
                CapError::NotFound(format!("no container for service \"{service}\""))
            })
        })
    }

    fn address<'a>(&'a self, service: &'a str) -> Answer<'a, IpAddr> {
        Box::pin(async move {
            health::ip(&self.first(service).await?).ok_or_else(|| {
                CapError::Failed(format!(
                    "the {service} container has no network address (is it running?)"
                ))
            })
        })
    }
}
