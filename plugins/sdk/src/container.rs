//! The container capability for plugins: the host hands out a
//! `deployment` handle per `[containers.NAME]` (`open`, which needs a
//! container grant on it); these functions open it once per name and call
//! through it, so an operation reads `container::stop("agledger", "api", …)`
//! like the runbook step it replaces.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

pub use crate::bindings::opshost::plugin::container::{
    open, ContainerInfo, Deployment, ExecOptions, Process, RecreateSpec, RunOutput, RunSpec,
};
use crate::bindings::opshost::plugin::types::Reader;
use crate::Error;

type Result<T> = std::result::Result<T, Error>;

thread_local! {
    static OPENED: RefCell<HashMap<String, Rc<Deployment>>> = RefCell::new(HashMap::new());
}

/// The deployment the config names `name`, opened on first use.
pub fn deployment(name: &str) -> Result<Rc<Deployment>> {
    if let Some(d) = OPENED.with(|o| o.borrow().get(name).cloned()) {
        return Ok(d);
    }
    let d = Rc::new(open(name)?);
    OPENED.with(|o| o.borrow_mut().insert(name.to_string(), Rc::clone(&d)));
    Ok(d)
}

/// Every container of the project (verb: inspect).
pub fn list(project: &str) -> Result<Vec<ContainerInfo>> {
    deployment(project)?.list()
}

/// The container of one service (verb: inspect).
pub fn inspect(project: &str, service: &str) -> Result<ContainerInfo> {
    deployment(project)?.inspect(service)
}

/// A service's environment as KEY=VALUE pairs (verb: inspect).
pub fn environment(project: &str, service: &str) -> Result<Vec<(String, String)>> {
    deployment(project)?.environment(service)
}

/// The last `tail` log lines of a service (verb: logs).
pub fn logs(project: &str, service: &str, tail: Option<u32>) -> Result<Reader> {
    deployment(project)?.logs(service, tail)
}

/// Run a command in a service's running container (verb: exec).
pub fn exec(
    project: &str,
    service: &str,
    command: &[String],
    options: &ExecOptions,
) -> Result<Process> {
    deployment(project)?.exec(service, command, options)
}

/// Stop every container of a service (verb: stop).
pub fn stop(project: &str, service: &str, timeout_s: Option<u32>) -> Result<()> {
    deployment(project)?.stop(service, timeout_s)
}

/// Start every container of a service (verb: start).
pub fn start(project: &str, service: &str) -> Result<()> {
    deployment(project)?.start(service)
}

/// Stop, then start (verbs: stop and start).
pub fn restart(project: &str, service: &str, timeout_s: Option<u32>) -> Result<()> {
    deployment(project)?.restart(service, timeout_s)
}

/// Pull an image; its repo digest (verb: pull).
pub fn pull(project: &str, image: &str) -> Result<String> {
    deployment(project)?.pull(image)
}

/// Replace a service's containers (verb: recreate).
pub fn recreate(project: &str, service: &str, spec: &RecreateSpec) -> Result<ContainerInfo> {
    deployment(project)?.recreate(service, spec)
}

/// A one-off container from a service's configuration (verb: run).
pub fn run(project: &str, service: &str, spec: &RunSpec) -> Result<RunOutput> {
    deployment(project)?.run(service, spec)
}

/// Wait until a service's containers are healthy (verb: inspect).
pub fn wait_healthy(project: &str, service: &str, timeout_ms: u32) -> Result<ContainerInfo> {
    deployment(project)?.wait_healthy(service, timeout_ms)
}
