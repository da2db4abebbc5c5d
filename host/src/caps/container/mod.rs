//! container: the containers of a deployment named in the config
//! (`[containers.NAME]`). Grant `container=NAME[/SERVICE]:VERBS`. `open`
//! resolves the name once (it needs some container grant on it) into a
//! `deployment` handle, as fs opens a `dir` and db a `connection`; each
//! call on the handle passes the gate with the verb it needs.
//!
//! This module is the WIT glue: every call passes the gate (grant, learn,
//! plan), is audited, and is translated to and from the WIT types; the
//! work is done by the deployment's [`backend::ContainerBackend`] (Docker,
//! `docker/`; `backend = "kubernetes"` is designed in
//! docs/kubernetes-backend.md, not built). Image allow-lists and
//! signatures are checked here (`images.rs`, `signed.rs`), whatever the
//! backend.
//!
//! Verbs and what they need:
//! - reads, act in every mode: list, inspect, environment (grant verb
//!   `inspect`), logs (`logs`), wait-healthy (`inspect`);
//! - changes, intercepted in plan mode: stop, start, restart (`stop` and
//!   `start`), pull, recreate, run, and exec (`exec`). Exec is a change: the
//!   command it runs can change anything inside the container, and the host
//!   cannot tell a `cat` from an `rm` (the product's plugins do not use it;
//!   the host's own pg_dump in a bundled database is the db capability's).
//!
//! Plan mode (`opshost run --plan`): a change is recorded, not made, and
//! answered thus (the checks that only read still run, so a plan fails
//! where the run would: the deployment and service exist, the image is
//! allowed, `--require-signed` has a policy):
//! - stop, start, restart: `ok` (the service's containers are left as they are);
//! - pull: the repo digest the image already has here, else the clearly
//!   fake `REPO@sha256:000…0` (audited "planned: not pulled");
//! - recreate: the service's current container, state unchanged (an
//!   explicit image's signature is not checked: the pull that would have
//!   verified it was planned, not made);
//! - run: exit code 0, empty stdout and stderr;
//! - exec: a process whose stdin is discarded, with empty stdout and
//!   stderr, that exits 0.

pub mod backend;
mod docker;
pub(crate) mod images;
mod process;
mod signed;

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Resource;

use super::bindings::opshost::plugin::container::{
    self as wit, ContainerInfo, ExecOptions, RecreateSpec, RunOutput, RunSpec,
};
use super::stream::{Chunked, Origin, Reader, Writer};
use super::{CapError, RunContext};
use crate::caps::HostState;
use crate::config::{ContainerBackendKind, ContainersResource};
use crate::gate::{self, Effect};
use crate::policy::{ContainerVerb, Grant};
use backend::{Container, ContainerBackend, Exec, ExecSpec, ReplaceSpec, RunOnceSpec};
pub use process::Process;

/// A `[containers.NAME]` entry, resolved: its settings and its backend.
#[derive(Clone)]
pub(crate) struct Deployment {
    pub resource: ContainersResource,
    pub backend: Arc<dyn ContainerBackend>,
}

/// An opened deployment: the handle a plugin holds.
pub struct DeploymentHandle {
    name: String,
    deployment: Deployment,
}

impl HostState {
    /// The name and the resolved deployment behind a handle.
    fn opened(
        &self,
        handle: &Resource<DeploymentHandle>,
    ) -> Result<(String, Deployment), CapError> {
        let h = self.table.get(handle)?;
        Ok((h.name.clone(), h.deployment.clone()))
    }
}

impl RunContext {
    /// The deployment the config names `name`, on its backend (the Docker
    /// client is connected once per run).
    pub(crate) async fn deployment(&self, name: &str) -> Result<Deployment, CapError> {
        let resource = gate::configured(&self.config.containers, "compose project", name)?.clone();
        let backend: Arc<dyn ContainerBackend> = match resource.backend {
            ContainerBackendKind::Docker => Arc::new(docker::DockerBackend::new(
                docker::client(&self.docker).await?,
                &resource.project,
            )),
            // The config refuses it when loaded; this is the same answer.
            ContainerBackendKind::Kubernetes => {
                return Err(CapError::Unsupported(format!(
                    "[containers.{name}] backend = \"kubernetes\" is designed (docs/kubernetes-backend.md) but not built"
                )))
            }
        };
        Ok(Deployment { resource, backend })
    }
}

/// The single-verb grant (or verbs, for restart) a call needs.
fn wanted(project: &str, service: Option<&str>, verbs: &[ContainerVerb]) -> Grant {
    Grant::Container {
        resource: project.to_string(),
        service: service.map(str::to_string),
        verbs: verbs.iter().copied().collect(),
    }
}

fn info(c: Container) -> ContainerInfo {
    ContainerInfo {
        id: c.id,
        name: c.name,
        service: c.service,
        image: c.image,
        image_id: c.image_id,
        state: c.state,
        health: c.health,
        exit_code: c.exit_code,
        labels: c.labels,
    }
}

/// What plan mode answers a pull of an image that is not here.
fn fake_digest(image: &str) -> String {
    format!("{}@sha256:{}", images::repository(image), "0".repeat(64))
}

impl wit::HostDeployment for HostState {
    async fn list(
        &mut self,
        handle: Resource<DeploymentHandle>,
    ) -> Result<Vec<ContainerInfo>, CapError> {
        let (project, d) = self.opened(&handle)?;
        let call = self.run.call("container", &project, "inspect").gate(
            &wanted(&project, None, &[ContainerVerb::Inspect]),
            Effect::Reads,
        )?;
        call.finish(async { Ok(d.backend.list().await?.into_iter().map(info).collect()) }.await)
    }

    async fn inspect(
        &mut self,
        handle: Resource<DeploymentHandle>,
        service: String,
    ) -> Result<ContainerInfo, CapError> {
        let (project, d) = self.opened(&handle)?;
        let call = self
            .run
            .call("container", &project, "inspect")
            .detail(&service)
            .gate(
                &wanted(&project, Some(&service), &[ContainerVerb::Inspect]),
                Effect::Reads,
            )?;
        call.finish(async { Ok(info(d.backend.inspect(&service).await?)) }.await)
    }

    async fn environment(
        &mut self,
        handle: Resource<DeploymentHandle>,
        service: String,
    ) -> Result<Vec<(String, String)>, CapError> {
        let (project, d) = self.opened(&handle)?;
        let call = self
            .run
            .call("container", &project, "environment")
            .detail(&service)
            .gate(
                &wanted(&project, Some(&service), &[ContainerVerb::Inspect]),
                Effect::Reads,
            )?;
        call.finish(async { d.backend.environment(&service).await }.await)
    }

    async fn logs(
        &mut self,
        handle: Resource<DeploymentHandle>,
        service: String,
        tail: Option<u32>,
    ) -> Result<Resource<Reader>, CapError> {
        let (project, d) = self.opened(&handle)?;
        let call = self
            .run
            .call("container", &project, "logs")
            .detail(&service)
            .gate(
                &wanted(&project, Some(&service), &[ContainerVerb::Logs]),
                Effect::Reads,
            )?;
        let stream = call.finish(async { d.backend.logs(&service, tail).await }.await)?;
        let origin = Origin {
            ctx: self.run.clone(),
            capability: "container",
            resource: project,
            what: format!("logs {service}"),
        };
        Ok(self.table.push(Reader::new(Chunked::new(stream), origin))?)
    }

    async fn exec(
        &mut self,
        handle: Resource<DeploymentHandle>,
        service: String,
        command: Vec<String>,
        options: ExecOptions,
    ) -> Result<Resource<Process>, CapError> {
        let (project, d) = self.opened(&handle)?;
        let first = command.first().cloned().unwrap_or_default();
        let call = self
            .run
            .call("container", &project, "exec")
            .detail(format!("{service}: {first}"))
            .gate(
                &wanted(&project, Some(&service), &[ContainerVerb::Exec]),
                Effect::Changes,
            )?;
        let simulated = call.simulated();
        let with_stdin = options.with_stdin;
        let exec = call.finish(
            async {
                if command.is_empty() {
                    return Err(CapError::Invalid("exec needs a command".into()));
                }
                if simulated {
                    d.backend.inspect(&service).await?;
                    return Ok(Exec::simulated(with_stdin));
                }
                let spec = ExecSpec {
                    command,
                    env: options.env,
                    user: options.user,
                    workdir: options.workdir,
                    with_stdin,
                };
                d.backend.exec(&service, spec).await
            }
            .await,
        )?;
        let process = Process::new(exec, with_stdin).await;
        Ok(self.table.push(process)?)
    }

    async fn stop(
        &mut self,
        handle: Resource<DeploymentHandle>,
        service: String,
        timeout_s: Option<u32>,
    ) -> Result<(), CapError> {
        let (project, d) = self.opened(&handle)?;
        let call = self
            .run
            .call("container", &project, "stop")
            .detail(&service)
            .gate(
                &wanted(&project, Some(&service), &[ContainerVerb::Stop]),
                Effect::Changes,
            )?;
        let simulated = call.simulated();
        call.finish(
            async {
                if simulated {
                    return d.backend.inspect(&service).await.map(drop);
                }
                d.backend.stop(&service, timeout_s).await
            }
            .await,
        )
    }

    async fn start(
        &mut self,
        handle: Resource<DeploymentHandle>,
        service: String,
    ) -> Result<(), CapError> {
        let (project, d) = self.opened(&handle)?;
        let call = self
            .run
            .call("container", &project, "start")
            .detail(&service)
            .gate(
                &wanted(&project, Some(&service), &[ContainerVerb::Start]),
                Effect::Changes,
            )?;
        let simulated = call.simulated();
        call.finish(
            async {
                if simulated {
                    return d.backend.inspect(&service).await.map(drop);
                }
                d.backend.start(&service).await
            }
            .await,
        )
    }

    async fn restart(
        &mut self,
        handle: Resource<DeploymentHandle>,
        service: String,
        timeout_s: Option<u32>,
    ) -> Result<(), CapError> {
        let (project, d) = self.opened(&handle)?;
        let verbs = [ContainerVerb::Stop, ContainerVerb::Start];
        let call = self
            .run
            .call("container", &project, "restart")
            .detail(&service)
            .gate(&wanted(&project, Some(&service), &verbs), Effect::Changes)?;
        let simulated = call.simulated();
        call.finish(
            async {
                if simulated {
                    return d.backend.inspect(&service).await.map(drop);
                }
                d.backend.restart(&service, timeout_s).await
            }
            .await,
        )
    }

    async fn pull(
        &mut self,
        handle: Resource<DeploymentHandle>,
        image: String,
    ) -> Result<String, CapError> {
        let (project, d) = self.opened(&handle)?;
        let call = self
            .run
            .call("container", &project, "pull")
            .detail(&image)
            .gate(
                &wanted(&project, None, &[ContainerVerb::Pull]),
                Effect::Changes,
            )?;
        let simulated = call.simulated();
        let run = self.run.clone();
        let pulled = async {
            images::check(d.backend.as_ref(), &project, &d.resource, &image).await?;
            signed::before_pull(&run, &project, &d.resource)?;
            if simulated {
                return Ok(match d.backend.local_digest(&image).await? {
                    Some(digest) => (
                        digest.clone(),
                        format!("{image} -> {digest}: planned, the image is here"),
                    ),
                    None => (fake_digest(&image), format!("{image}: planned: not pulled")),
                });
            }
            let digest = d.backend.pull(&image).await?;
            // The host checks the signature, never the plugin.
            let verdict = signed::after_pull(&run, &project, &d.resource, &image, &digest).await?;
            Ok((digest, verdict))
        }
        .await;
        match pulled {
            Ok((digest, verdict)) => call.detail(verdict).finish(Ok(digest)),
            Err(e) => call.finish(Err(e)),
        }
    }

    async fn recreate(
        &mut self,
        handle: Resource<DeploymentHandle>,
        service: String,
        spec: RecreateSpec,
    ) -> Result<ContainerInfo, CapError> {
        let (project, d) = self.opened(&handle)?;
        let call = self
            .run
            .call("container", &project, "recreate")
            .detail(&service)
            .gate(
                &wanted(&project, Some(&service), &[ContainerVerb::Recreate]),
                Effect::Changes,
            )?;
        let simulated = call.simulated();
        let run = self.run.clone();
        call.finish(
            async {
                let backend = d.backend.as_ref();
                if simulated {
                    if let Some(image) = &spec.image {
                        images::check(backend, &project, &d.resource, image).await?;
                    }
                    return Ok(info(backend.inspect(&service).await?));
                }
                let image = spec.image.as_deref();
                images::check_requested(&run, backend, &project, &d.resource, image).await?;
                let replace = ReplaceSpec {
                    image: spec.image,
                    env_set: spec.env_set,
                    env_unset: spec.env_unset,
                    stopped: spec.stopped,
                    healthy_within: spec
                        .healthy_within_ms
                        .map(|ms| Duration::from_millis(ms.into())),
                    ready_path: spec.ready_path,
                };
                Ok(info(backend.replace(&service, replace).await?))
            }
            .await,
        )
    }

    async fn run(
        &mut self,
        handle: Resource<DeploymentHandle>,
        service: String,
        spec: RunSpec,
    ) -> Result<RunOutput, CapError> {
        let (project, d) = self.opened(&handle)?;
        let call = self
            .run
            .call("container", &project, "run")
            .detail(&service)
            .gate(
                &wanted(&project, Some(&service), &[ContainerVerb::Run]),
                Effect::Changes,
            )?;
        let simulated = call.simulated();
        let run = self.run.clone();
        call.finish(
            async {
                let backend = d.backend.as_ref();
                if simulated {
                    if let Some(image) = &spec.image {
                        images::check(backend, &project, &d.resource, image).await?;
                    }
                    backend.inspect(&service).await?;
                    return Ok(RunOutput {
                        exit_code: 0,
                        stdout: Vec::new(),
                        stderr: Vec::new(),
                    });
                }
                let image = spec.image.as_deref();
                images::check_requested(&run, backend, &project, &d.resource, image).await?;
                let once = RunOnceSpec {
                    image: spec.image,
                    command: spec.command,
                    env_set: spec.env_set,
                    timeout: Duration::from_millis(spec.timeout_ms.unwrap_or(600_000).into()),
                };
                let out = backend.run_once(&service, once).await?;
                Ok(RunOutput {
                    exit_code: out.exit_code,
                    stdout: out.stdout,
                    stderr: out.stderr,
                })
            }
            .await,
        )
    }

    async fn wait_healthy(
        &mut self,
        handle: Resource<DeploymentHandle>,
        service: String,
        timeout_ms: u32,
    ) -> Result<ContainerInfo, CapError> {
        let (project, d) = self.opened(&handle)?;
        let call = self
            .run
            .call("container", &project, "wait-healthy")
            .detail(&service)
            .gate(
                &wanted(&project, Some(&service), &[ContainerVerb::Inspect]),
                Effect::Reads,
            )?;
        call.finish(
            async {
                let within = Duration::from_millis(timeout_ms.into());
                Ok(info(d.backend.wait_healthy(&service, within).await?))
            }
            .await,
        )
    }

    async fn name(&mut self, handle: Resource<DeploymentHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&handle)?.name.clone())
    }

    async fn drop(&mut self, handle: Resource<DeploymentHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl wit::Host for HostState {
    async fn open(&mut self, name: String) -> Result<Resource<DeploymentHandle>, CapError> {
        let call = self
            .run
            .call("container", &name, "open")
            .gate_open(&wanted(&name, None, &[ContainerVerb::Inspect]))?;
        let run = self.run.clone();
        let deployment = call.finish(run.deployment(&name).await)?;
        Ok(self.table.push(DeploymentHandle { name, deployment })?)
    }
}

impl HostState {
    /// Audit identity of an exec's streams.
    fn exec_origin(&self, what: &str) -> Origin {
        Origin {
            ctx: self.run.clone(),
            capability: "container",
            resource: String::new(),
            what: what.into(),
        }
    }
}

impl wit::HostProcess for HostState {
    async fn stdin(&mut self, p: Resource<Process>) -> Result<Resource<Writer>, CapError> {
        let sink = self.table.get_mut(&p)?.take_stdin()?;
        let origin = self.exec_origin("exec stdin");
        Ok(self.table.push(Writer::new(sink, origin))?)
    }

    async fn stdout(&mut self, p: Resource<Process>) -> Result<Resource<Reader>, CapError> {
        let source = self.table.get_mut(&p)?.take_stdout()?;
        let origin = self.exec_origin("exec stdout");
        Ok(self.table.push(Reader::new(source, origin))?)
    }

    async fn stderr(&mut self, p: Resource<Process>) -> Result<Resource<Reader>, CapError> {
        let source = self.table.get_mut(&p)?.take_stderr()?;
        let origin = self.exec_origin("exec stderr");
        Ok(self.table.push(Reader::new(source, origin))?)
    }

    async fn wait(&mut self, p: Resource<Process>) -> Result<i64, CapError> {
        let waiter = self.table.get_mut(&p)?.waiter()?;
        let call = self.run.call("container", "", "exec-wait");
        call.finish(waiter.wait().await)
    }

    async fn drop(&mut self, p: Resource<Process>) -> wasmtime::Result<()> {
        self.table.delete(p)?;
        Ok(())
    }
}
