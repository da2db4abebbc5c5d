//! `exec` in a running container: stdout and stderr as separate readers
//! (demultiplexed by a task), stdin as an optional writer, and the exit code.

use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::Docker;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::task::JoinHandle;

use super::super::stream::{ByteSink, ByteSource};
use super::super::CapError;
use super::scope::engine_error;

pub struct Process {
    docker: Docker,
    exec_id: String,
    stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    stdout: Option<UnboundedReceiver<Bytes>>,
    stderr: Option<UnboundedReceiver<Bytes>>,
    pump: Option<JoinHandle<Result<(), String>>>,
}

pub struct Spec {
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub with_stdin: bool,
}

impl Process {
    pub async fn start(docker: &Docker, container_id: &str, spec: Spec) -> Result<Self, CapError> {
        let options = CreateExecOptions {
            cmd: Some(spec.command),
            env: Some(spec.env),
            user: spec.user,
            working_dir: spec.workdir,
            attach_stdin: Some(spec.with_stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = docker
            .create_exec(container_id, options)
            .await
            .map_err(|e| engine_error("exec", e))?;
        let started = docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| engine_error("exec", e))?;
        let StartExecResults::Attached { mut output, input } = started else {
            return Err(CapError::Failed("the engine detached the exec".into()));
        };
        let (out_tx, out_rx) = unbounded_channel();
        let (err_tx, err_rx) = unbounded_channel();
        // A reader the plugin never takes still has to be drained, or a
        // chatty command would block: unbounded channels, dropped on close.
        let pump = tokio::spawn(async move {
            while let Some(item) = output.next().await {
                match item.map_err(|e| e.to_string())? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        let _ = out_tx.send(message);
                    }
                    LogOutput::StdErr { message } => {
                        let _ = err_tx.send(message);
                    }
                    LogOutput::StdIn { .. } => {}
                }
            }
            Ok(())
        });
        let mut process = Self {
            docker: docker.clone(),
            exec_id: created.id,
            stdin: Some(input),
            stdout: Some(out_rx),
            stderr: Some(err_rx),
            pump: Some(pump),
        };
        if !spec.with_stdin {
            process.close_stdin().await;
        }
        Ok(process)
    }

    async fn close_stdin(&mut self) {
        if let Some(mut input) = self.stdin.take() {
            let _ = input.shutdown().await;
        }
    }

    pub fn take_stdin(&mut self) -> Result<StdinSink, CapError> {
        self.stdin.take().map(StdinSink).ok_or_else(|| {
            CapError::Invalid(
                "stdin was already taken, closed, or not requested (with-stdin)".into(),
            )
        })
    }

    pub fn take_stdout(&mut self) -> Result<ChannelSource, CapError> {
        self.stdout
            .take()
            .map(ChannelSource::new)
            .ok_or_else(|| CapError::Invalid("stdout was already taken".into()))
    }

    pub fn take_stderr(&mut self) -> Result<ChannelSource, CapError> {
        self.stderr
            .take()
            .map(ChannelSource::new)
            .ok_or_else(|| CapError::Invalid("stderr was already taken".into()))
    }

    /// What waiting needs, moved out so no borrow of the resource table is
    /// held across the wait. Taken once: a second wait is refused.
    pub fn waiter(&mut self) -> Result<Waiter, CapError> {
        let pump = self
            .pump
            .take()
            .ok_or_else(|| CapError::Invalid("wait was already called".into()))?;
        Ok(Waiter {
            docker: self.docker.clone(),
            exec_id: self.exec_id.clone(),
            stdin: self.stdin.take(),
            pump,
        })
    }
}

pub struct Waiter {
    docker: Docker,
    exec_id: String,
    stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pump: JoinHandle<Result<(), String>>,
}

impl Waiter {
    /// The exit code, once the command has ended (closes stdin if still open).
    pub async fn wait(mut self) -> Result<i64, CapError> {
        if let Some(mut input) = self.stdin.take() {
            let _ = input.shutdown().await;
        }
        {
            let pump = self.pump;
            pump.await
                .map_err(|e| CapError::Failed(format!("exec output: {e}")))?
                .map_err(|e| CapError::Failed(format!("exec output: {e}")))?;
        }
        for _ in 0..100 {
            let inspect = self
                .docker
                .inspect_exec(&self.exec_id)
                .await
                .map_err(|e| engine_error("exec", e))?;
            if inspect.running != Some(true) {
                return inspect
                    .exit_code
                    .ok_or_else(|| CapError::Failed("the exec has no exit code".into()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(CapError::TimedOut(
            "the exec's output ended but it is still running".into(),
        ))
    }
}

pub struct ChannelSource {
    rx: UnboundedReceiver<Bytes>,
    pending: Bytes,
}

impl ChannelSource {
    fn new(rx: UnboundedReceiver<Bytes>) -> Self {
        Self {
            rx,
            pending: Bytes::new(),
        }
    }
}

impl ByteSource for ChannelSource {
    fn read(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<u8>, CapError>> {
        Box::pin(async move {
            if self.pending.is_empty() {
                match self.rx.recv().await {
                    Some(chunk) => self.pending = chunk,
                    None => return Ok(Vec::new()),
                }
            }
            let n = max.min(self.pending.len());
            Ok(self.pending.split_to(n).to_vec())
        })
    }
}

pub struct StdinSink(Pin<Box<dyn AsyncWrite + Send>>);

impl ByteSink for StdinSink {
    fn write(&mut self, data: Vec<u8>) -> BoxFuture<'_, Result<(), CapError>> {
        Box::pin(async move { self.0.write_all(&data).await.map_err(CapError::from) })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<(), CapError>> {
        Box::pin(async move { self.0.shutdown().await.map_err(CapError::from) })
    }
}
