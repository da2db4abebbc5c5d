//! container: the containers of a compose project named in the config
//! (`[containers.NAME]`), through the Docker Engine API (bollard). Grant
//! `container=NAME[/SERVICE]:VERBS`, checked on every call (there is no
//! handle to open: each call names the project and service).

mod health;
mod process;
mod recreate;
pub(crate) mod scope;
mod signed;

use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{CreateImageOptionsBuilder, LogsOptionsBuilder};
use bollard::Docker;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use wasmtime::component::Resource;

use super::bindings::opshost::plugin::container::{
    self as wit, ContainerInfo, ExecOptions, RecreateSpec, RunOutput, RunSpec,
};
use super::stream::{ByteSource, Origin, Reader, Writer};
use super::{CapError, RunContext};
use crate::config::ContainersResource;
use crate::policy::ContainerVerb;
use crate::runtime::HostState;
pub use process::Process;
use scope::engine_error;

impl RunContext {
    /// The engine, connected once per run; the API version is negotiated
    /// (the engine may be older than bollard's default).
    pub(crate) async fn docker(&self) -> Result<Docker, CapError> {
        self.docker
            .get_or_try_init(|| async {
                let docker = Docker::connect_with_local_defaults().map_err(|e| {
                    CapError::Failed(format!("cannot reach the Docker Engine: {e}"))
                })?;
                docker
                    .negotiate_version()
                    .await
                    .map_err(|e| CapError::Failed(format!("cannot reach the Docker Engine: {e}")))
            })
            .await
            .cloned()
    }

    /// Check the grant for `verb` on one service, then find its container.
    async fn service(
        &self,
        name: &str,
        service: &str,
        verb: ContainerVerb,
    ) -> Result<(Docker, ContainersResource, ContainerInspectResponse), CapError> {
        let (docker, res) = self.containers(name, Some(service), &[verb]).await?;
        let container = scope::service_container(&docker, &res.project, service).await?;
        Ok((docker, res, container))
    }

    /// Check the grant, then resolve the resource and the engine.
    async fn containers(
        &self,
        name: &str,
        service: Option<&str>,
        verbs: &[ContainerVerb],
    ) -> Result<(Docker, ContainersResource), CapError> {
        for verb in verbs {
            self.grants.container(name, service, *verb)?;
        }
        let resource = self.config.containers.get(name).cloned().ok_or_else(|| {
            CapError::NotFound(format!("the config names no compose project \"{name}\""))
        })?;
        Ok((self.docker().await?, resource))
    }
}

/// Container logs, chunk by chunk.
struct LogSource {
    stream: BoxStream<'static, Result<bollard::container::LogOutput, bollard::errors::Error>>,
    pending: bytes::Bytes,
}

impl ByteSource for LogSource {
    fn read(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<u8>, CapError>> {
        Box::pin(async move {
            if self.pending.is_empty() {
                match self.stream.next().await {
                    Some(item) => {
                        self.pending = item.map_err(|e| engine_error("logs", e))?.into_bytes()
                    }
                    None => return Ok(Vec::new()),
                }
            }
            let n = max.min(self.pending.len());
            Ok(self.pending.split_to(n).to_vec())
        })
    }
}

impl wit::Host for HostState {
    async fn list(&mut self, project: String) -> Result<Vec<ContainerInfo>, CapError> {
        let call = self.run.call("container", &project, "inspect");
        let run = self.run.clone();
        call.finish(
            async {
                let (docker, res) = run
                    .containers(&project, None, &[ContainerVerb::Inspect])
                    .await?;
                Ok(scope::project_containers(&docker, &res.project)
                    .await?
                    .iter()
                    .map(scope::info)
                    .collect())
            }
            .await,
        )
    }

    async fn inspect(
        &mut self,
        project: String,
        service: String,
    ) -> Result<ContainerInfo, CapError> {
        let call = self
            .run
            .call("container", &project, "inspect")
            .detail(&service);
        let run = self.run.clone();
        call.finish(
            async {
                let (docker, res) = run
                    .containers(&project, Some(&service), &[ContainerVerb::Inspect])
                    .await?;
                Ok(scope::info(
                    &scope::service_container(&docker, &res.project, &service).await?,
                ))
            }
            .await,
        )
    }

    async fn environment(
        &mut self,
        project: String,
        service: String,
    ) -> Result<Vec<(String, String)>, CapError> {
        let call = self
            .run
            .call("container", &project, "environment")
            .detail(&service);
        let run = self.run.clone();
        call.finish(
            async {
                let (_, _, c) = run
                    .service(&project, &service, ContainerVerb::Inspect)
                    .await?;
                let env = c.config.and_then(|c| c.env).unwrap_or_default();
                Ok(env
                    .into_iter()
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (kv, String::new()),
                    })
                    .collect())
            }
            .await,
        )
    }

    async fn logs(
        &mut self,
        project: String,
        service: String,
        tail: Option<u32>,
    ) -> Result<Resource<Reader>, CapError> {
        let call = self
            .run
            .call("container", &project, "logs")
            .detail(&service);
        let run = self.run.clone();
        let stream = call.finish(
            async {
                let (docker, _, c) = run.service(&project, &service, ContainerVerb::Logs).await?;
                let tail = tail.map(|t| t.to_string()).unwrap_or_else(|| "all".into());
                let options = LogsOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .tail(&tail)
                    .build();
                Ok(docker.logs(&scope::id(&c)?, Some(options)).boxed())
            }
            .await,
        )?;
        let origin = Origin {
            ctx: self.run.clone(),
            capability: "container",
            resource: project,
            what: format!("logs {service}"),
        };
        Ok(self.table.push(Reader::new(
            LogSource {
                stream,
                pending: bytes::Bytes::new(),
            },
            origin,
        ))?)
    }

    async fn exec(
        &mut self,
        project: String,
        service: String,
        command: Vec<String>,
        options: ExecOptions,
    ) -> Result<Resource<Process>, CapError> {
        let first = command.first().cloned().unwrap_or_default();
        let call = self
            .run
            .call("container", &project, "exec")
            .detail(format!("{service}: {first}"));
        let run = self.run.clone();
        let process = call.finish(
            async {
                if command.is_empty() {
                    return Err(CapError::Invalid("exec needs a command".into()));
                }
                let (docker, _, c) = run.service(&project, &service, ContainerVerb::Exec).await?;
                let spec = process::Spec {
                    command,
                    env: options
                        .env
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect(),
                    user: options.user,
                    workdir: options.workdir,
                    with_stdin: options.with_stdin,
                };
                Process::start(&docker, &scope::id(&c)?, spec).await
            }
            .await,
        )?;
        Ok(self.table.push(process)?)
    }

    async fn stop(
        &mut self,
        project: String,
        service: String,
        timeout_s: Option<u32>,
    ) -> Result<(), CapError> {
        let call = self
            .run
            .call("container", &project, "stop")
            .detail(&service);
        let run = self.run.clone();
        call.finish(
            async {
                let (docker, res) = run
                    .containers(&project, Some(&service), &[ContainerVerb::Stop])
                    .await?;
                // Every replica: "stop the worker" means all of it.
                for c in scope::service_containers(&docker, &res.project, &service).await? {
                    recreate::stop(&docker, &scope::id(&c)?, timeout_s).await?;
                }
                Ok(())
            }
            .await,
        )
    }

    async fn start(&mut self, project: String, service: String) -> Result<(), CapError> {
        let call = self
            .run
            .call("container", &project, "start")
            .detail(&service);
        let run = self.run.clone();
        call.finish(
            async {
                let (docker, res) = run
                    .containers(&project, Some(&service), &[ContainerVerb::Start])
                    .await?;
                for c in scope::service_containers(&docker, &res.project, &service).await? {
                    match docker.start_container(&scope::id(&c)?, None).await {
                        // 304: already running.
                        Err(bollard::errors::Error::DockerResponseServerError {
                            status_code: 304,
                            ..
                        }) => {}
                        other => other.map_err(|e| engine_error("start", e))?,
                    }
                }
                Ok(())
            }
            .await,
        )
    }

    async fn restart(
        &mut self,
        project: String,
        service: String,
        timeout_s: Option<u32>,
    ) -> Result<(), CapError> {
        let call = self
            .run
            .call("container", &project, "restart")
            .detail(&service);
        let run = self.run.clone();
        call.finish(
            async {
                let verbs = [ContainerVerb::Stop, ContainerVerb::Start];
                let (docker, res) = run.containers(&project, Some(&service), &verbs).await?;
                let id =
                    scope::id(&scope::service_container(&docker, &res.project, &service).await?)?;
                recreate::stop(&docker, &id, timeout_s).await?;
                docker
                    .start_container(&id, None)
                    .await
                    .map_err(|e| engine_error("start", e))
            }
            .await,
        )
    }

    async fn pull(&mut self, project: String, image: String) -> Result<String, CapError> {
        let call = self.run.call("container", &project, "pull").detail(&image);
        let run = self.run.clone();
        let pulled = async {
            let (docker, res) = run
                .containers(&project, None, &[ContainerVerb::Pull])
                .await?;
            scope::check_image(&docker, &project, &res, &image).await?;
            signed::before_pull(&run, &project, &res)?;
            let options = CreateImageOptionsBuilder::default()
                .from_image(&image)
                .build();
            let mut progress = docker.create_image(Some(options), None, None);
            while let Some(step) = progress.next().await {
                step.map_err(|e| engine_error(&format!("pull {image}"), e))?;
            }
            let inspected = docker
                .inspect_image(&image)
                .await
                .map_err(|e| engine_error("inspect image", e))?;
            let repo = scope::repository(&image);
            let digests = inspected.repo_digests.unwrap_or_default();
            // A pull by digest returns that digest, even when the image
            // has others from the same repository (it is what gets verified).
            let digest = digests
                .iter()
                .find(|d| **d == image)
                .or_else(|| digests.iter().find(|d| scope::repository(d) == repo))
                .cloned()
                .ok_or_else(|| {
                    CapError::Failed(format!("{image} was pulled but has no digest from {repo}"))
                })?;
            // The host checks the signature, never the plugin.
            let verdict = signed::after_pull(&run, &project, &res, &image, &digest).await?;
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
        project: String,
        service: String,
        spec: RecreateSpec,
    ) -> Result<ContainerInfo, CapError> {
        let call = self
            .run
            .call("container", &project, "recreate")
            .detail(&service);
        let run = self.run.clone();
        call.finish(
            async {
                let (docker, res) = run
                    .containers(&project, Some(&service), &[ContainerVerb::Recreate])
                    .await?;
                recreate::tidy(&docker, &res.project, &service).await?;
                let replicas = scope::service_containers(&docker, &res.project, &service).await?;
                let env = recreate::EnvChange {
                    set: &spec.env_set,
                    unset: &spec.env_unset,
                };
                // Nothing to wait for in a container left stopped.
                let gate = spec
                    .healthy_within_ms
                    .filter(|_| !spec.stopped)
                    .map(|ms| Duration::from_millis(ms.into()));
                // One replica at a time: the others keep serving meanwhile.
                let mut first = None;
                for old in &replicas {
                    let image =
                        scope::image_for(&docker, &run, &project, &res, spec.image.clone(), old)
                            .await?;
                    let new_id =
                        recreate::recreate(&docker, old, image, &env, !spec.stopped).await?;
                    let new = match gate {
                        Some(within) => {
                            health::healthy(
                                &docker,
                                &new_id,
                                &service,
                                within,
                                spec.ready_path.as_deref(),
                            )
                            .await?
                        }
                        None => docker
                            .inspect_container(&new_id, None)
                            .await
                            .map_err(|e| engine_error("inspect", e))?,
                    };
                    first.get_or_insert(scope::info(&new));
                }
                first.ok_or_else(|| {
                    CapError::NotFound(format!("no container for service \"{service}\""))
                })
            }
            .await,
        )
    }

    async fn run(
        &mut self,
        project: String,
        service: String,
        spec: RunSpec,
    ) -> Result<RunOutput, CapError> {
        let call = self.run.call("container", &project, "run").detail(&service);
        let run = self.run.clone();
        call.finish(
            async {
                let (docker, res, base) =
                    run.service(&project, &service, ContainerVerb::Run).await?;
                let image =
                    scope::image_for(&docker, &run, &project, &res, spec.image, &base).await?;
                let one_off = recreate::OneOff {
                    image,
                    command: spec.command,
                    env: recreate::EnvChange {
                        set: &spec.env_set,
                        unset: &[],
                    },
                    timeout: Duration::from_millis(spec.timeout_ms.unwrap_or(600_000).into()),
                };
                let (exit_code, stdout, stderr) =
                    recreate::run_once(&docker, &base, one_off).await?;
                Ok(RunOutput {
                    exit_code,
                    stdout,
                    stderr,
                })
            }
            .await,
        )
    }

    async fn wait_healthy(
        &mut self,
        project: String,
        service: String,
        timeout_ms: u32,
    ) -> Result<ContainerInfo, CapError> {
        let call = self
            .run
            .call("container", &project, "wait-healthy")
            .detail(&service);
        let run = self.run.clone();
        call.finish(
            async {
                let (docker, res) = run
                    .containers(&project, Some(&service), &[ContainerVerb::Inspect])
                    .await?;
                let within = Duration::from_millis(timeout_ms.into());
                let mut first = None;
                for c in scope::service_containers(&docker, &res.project, &service).await? {
                    let id = scope::id(&c)?;
                    first.get_or_insert(
                        health::healthy(&docker, &id, &service, within, None).await?,
                    );
                }
                first.map(|c| scope::info(&c)).ok_or_else(|| {
                    CapError::NotFound(format!("no container for service \"{service}\""))
                })
            }
            .await,
        )
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
