//! The seam between the container capability and what runs the
//! containers. A backend is one deployment (a `[containers.NAME]` entry):
//! it finds that deployment's containers by its own labels and acts on
//! them by service name, never by an id a plugin chose. Grants, plan mode,
//! audit, image allow-lists and signatures stay in the capability (the
//! gate and `images.rs`/`signed.rs`), so every backend gets them the same.
//!
//! Docker (`docker/`) is the one built; `docs/kubernetes-backend.md`
//! maps each verb below onto Kubernetes objects for the next one.

use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::io::AsyncWrite;

use crate::caps::CapError;

/// A backend call's answer, boxed so `dyn ContainerBackend` works.
pub type Answer<'a, T> = BoxFuture<'a, Result<T, CapError>>;

/// A byte stream from a container (logs), chunk by chunk.
pub type Chunks = BoxStream<'static, Result<Bytes, CapError>>;

/// One container (a replica of a service) as the capability reports it,
/// whatever runs it.
#[derive(Debug, Clone, Default)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub service: String,
    /// The reference it was created from (tag or digest).
    pub image: String,
    /// The local image id it runs.
    pub image_id: String,
    /// created, running, restarting, exited, …
    pub state: String,
    /// healthy, unhealthy, starting; `None` without a healthcheck.
    pub health: Option<String>,
    pub exit_code: Option<i64>,
    /// Sorted by key.
    pub labels: Vec<(String, String)>,
}

/// A command to run inside a service's running container.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub with_stdin: bool,
}

/// One frame of an exec's output.
#[derive(Debug)]
pub enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// A started exec: write `stdin` (when asked for), read `output` to its
/// end, then await `exit` for the exit code.
pub struct Exec {
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub output: BoxStream<'static, Result<Output, CapError>>,
    /// Lazy: polled only once the output has ended.
    pub exit: BoxFuture<'static, Result<i64, CapError>>,
}

impl Exec {
    /// An exec that ran nothing: no output, exit code 0, stdin discarded
    /// (plan mode's answer to an exec).
    pub fn simulated(with_stdin: bool) -> Self {
        let stdin: Option<Pin<Box<dyn AsyncWrite + Send>>> =
            with_stdin.then(|| Box::pin(tokio::io::sink()) as _);
        Self {
            stdin,
            output: Box::pin(futures::stream::empty()),
            exit: Box::pin(async { Ok(0) }),
        }
    }
}

/// Replace a service's containers with ones of another image and/or
/// environment, everything else kept. With several replicas: one at a
/// time, each healthy (when `healthy_within` is set) before the next.
#[derive(Debug, Clone, Default)]
pub struct ReplaceSpec {
    /// Already checked against the allow-list and signature policy;
    /// `None` keeps each replica's current image.
    pub image: Option<String>,
    pub env_set: Vec<(String, String)>,
    pub env_unset: Vec<String>,
    /// Leave the new containers created but stopped.
    pub stopped: bool,
    /// The health gate per replica (ignored when `stopped`).
    pub healthy_within: Option<Duration>,
    /// With the gate: a path the host GETs on the new container itself
    /// (200 = ready) instead of waiting for the engine's healthcheck.
    pub ready_path: Option<String>,
}

/// A one-off container configured like a service's, removed afterwards.
#[derive(Debug, Clone, Default)]
pub struct RunOnceSpec {
    /// Already checked; `None` runs the service's current image.
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub env_set: Vec<(String, String)>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    pub exit_code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// One deployment's containers. Verbs that name a service act on every
/// replica (stop, start, replace, wait healthy) or on the first one
/// (inspect, environment, logs, exec, restart, run once, address), as the
/// WIT interface documents; a service without containers is `NotFound`.
pub trait ContainerBackend: Send + Sync {
    /// `docker`, `kubernetes`: for messages.
    fn kind(&self) -> &'static str;

    /// The deployment's long-running containers (not one-off runs), in
    /// service then replica order.
    fn list(&self) -> Answer<'_, Vec<Container>>;

    /// The first container of a service.
    fn inspect<'a>(&'a self, service: &'a str) -> Answer<'a, Container>;

    /// The first container's environment as KEY, VALUE.
    fn environment<'a>(&'a self, service: &'a str) -> Answer<'a, Vec<(String, String)>>;

    /// The last `tail` lines (all when `None`), stdout and stderr merged.
    fn logs<'a>(&'a self, service: &'a str, tail: Option<u32>) -> Answer<'a, Chunks>;

    /// Start a command in the service's first running container.
    fn exec<'a>(&'a self, service: &'a str, spec: ExecSpec) -> Answer<'a, Exec>;

    /// Stop every replica, each with `grace` seconds before it is killed.
    fn stop<'a>(&'a self, service: &'a str, grace_s: Option<u32>) -> Answer<'a, ()>;

    /// Start every replica; running ones are left alone.
    fn start<'a>(&'a self, service: &'a str) -> Answer<'a, ()>;

    /// Stop then start the service's first container.
    fn restart<'a>(&'a self, service: &'a str, grace_s: Option<u32>) -> Answer<'a, ()>;

    /// Fetch an image (already allowed); its repo digest `repo@sha256:…`.
    fn pull<'a>(&'a self, image: &'a str) -> Answer<'a, String>;

    /// The repo digest an image already has here, without fetching
    /// anything (plan mode's answer to a pull); `None` if it is not here.
    fn local_digest<'a>(&'a self, image: &'a str) -> Answer<'a, Option<String>>;

    /// Replace the service's containers (see [`ReplaceSpec`]); the first
    /// new container.
    fn replace<'a>(&'a self, service: &'a str, spec: ReplaceSpec) -> Answer<'a, Container>;

    /// Run a one-off container from the service's configuration.
    fn run_once<'a>(&'a self, service: &'a str, spec: RunOnceSpec) -> Answer<'a, RunOutput>;

    /// Wait until every replica reports healthy (or runs, without a
    /// healthcheck); the first one. A failed or timed-out wait names the
    /// service and its last health check.
    fn wait_healthy<'a>(&'a self, service: &'a str, within: Duration) -> Answer<'a, Container>;

    /// Where the service's first container can be reached from the host
    /// (the database of a bundled deployment, a readiness path).
    fn address<'a>(&'a self, service: &'a str) -> Answer<'a, IpAddr>;
}
