//! container: the containers of a compose project named in the config.
//! This build enforces the grants (`container=NAME[/SERVICE]:VERBS`) and
//! audits every call; the Docker Engine backend is not implemented yet, so
//! granted calls answer `unsupported` rather than pretending to work.

use wasmtime::component::Resource;

use super::bindings::opshost::plugin::container::{
    self as wit, ContainerInfo, ExecOptions, RecreateSpec, RunOutput, RunSpec,
};
use super::stream::{Reader, Writer};
use super::CapError;
use crate::policy::ContainerVerb;
use crate::runtime::HostState;

/// A running exec (none can be started until the backend lands).
pub struct Process;

const NOT_YET: &str =
    "the container capability is granted, but this opshost build has no Docker Engine backend yet";

impl HostState {
    fn container_call<T>(
        &self,
        project: &str,
        service: Option<&str>,
        verbs: &[ContainerVerb],
    ) -> Result<T, CapError> {
        let verb = verbs.first().map(|v| v.as_str()).unwrap_or("inspect");
        let call = self.run.call("container", project, verb);
        let mut result = Err(CapError::Unsupported(NOT_YET.into()));
        for v in verbs {
            if let Err(denied) = self.run.grants.container(project, service, *v) {
                result = Err(denied);
                break;
            }
        }
        call.finish(result)
    }
}

impl wit::Host for HostState {
    async fn list(&mut self, project: String) -> Result<Vec<ContainerInfo>, CapError> {
        self.container_call(&project, None, &[ContainerVerb::Inspect])
    }

    async fn inspect(
        &mut self,
        project: String,
        service: String,
    ) -> Result<ContainerInfo, CapError> {
        self.container_call(&project, Some(&service), &[ContainerVerb::Inspect])
    }

    async fn environment(
        &mut self,
        project: String,
        service: String,
    ) -> Result<Vec<(String, String)>, CapError> {
        self.container_call(&project, Some(&service), &[ContainerVerb::Inspect])
    }

    async fn logs(
        &mut self,
        project: String,
        service: String,
        _tail: Option<u32>,
    ) -> Result<Resource<Reader>, CapError> {
        self.container_call(&project, Some(&service), &[ContainerVerb::Logs])
    }

    async fn exec(
        &mut self,
        project: String,
        service: String,
        _command: Vec<String>,
        _options: ExecOptions,
    ) -> Result<Resource<Process>, CapError> {
        self.container_call(&project, Some(&service), &[ContainerVerb::Exec])
    }

    async fn stop(
        &mut self,
        project: String,
        service: String,
        _timeout_s: Option<u32>,
    ) -> Result<(), CapError> {
        self.container_call(&project, Some(&service), &[ContainerVerb::Stop])
    }

    async fn start(&mut self, project: String, service: String) -> Result<(), CapError> {
        self.container_call(&project, Some(&service), &[ContainerVerb::Start])
    }

    async fn restart(
        &mut self,
        project: String,
        service: String,
        _timeout_s: Option<u32>,
    ) -> Result<(), CapError> {
        self.container_call(
            &project,
            Some(&service),
            &[ContainerVerb::Stop, ContainerVerb::Start],
        )
    }

    async fn pull(&mut self, project: String, _image: String) -> Result<String, CapError> {
        self.container_call(&project, None, &[ContainerVerb::Pull])
    }

    async fn recreate(
        &mut self,
        project: String,
        service: String,
        _spec: RecreateSpec,
    ) -> Result<ContainerInfo, CapError> {
        self.container_call(&project, Some(&service), &[ContainerVerb::Recreate])
    }

    async fn run(
        &mut self,
        project: String,
        service: String,
        _spec: RunSpec,
    ) -> Result<RunOutput, CapError> {
        self.container_call(&project, Some(&service), &[ContainerVerb::Run])
    }

    async fn wait_healthy(
        &mut self,
        project: String,
        service: String,
        _timeout_ms: u32,
    ) -> Result<ContainerInfo, CapError> {
        self.container_call(&project, Some(&service), &[ContainerVerb::Inspect])
    }
}

impl wit::HostProcess for HostState {
    async fn stdin(&mut self, _p: Resource<Process>) -> Result<Resource<Writer>, CapError> {
        Err(CapError::Unsupported(NOT_YET.into()))
    }

    async fn stdout(&mut self, _p: Resource<Process>) -> Result<Resource<Reader>, CapError> {
        Err(CapError::Unsupported(NOT_YET.into()))
    }

    async fn stderr(&mut self, _p: Resource<Process>) -> Result<Resource<Reader>, CapError> {
        Err(CapError::Unsupported(NOT_YET.into()))
    }

    async fn wait(&mut self, _p: Resource<Process>) -> Result<i64, CapError> {
        Err(CapError::Unsupported(NOT_YET.into()))
    }

    async fn drop(&mut self, p: Resource<Process>) -> wasmtime::Result<()> {
        self.table.delete(p)?;
        Ok(())
    }
}
