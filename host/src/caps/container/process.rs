//! An exec as the plugin holds it (the WIT `process` resource): stdout
//! and stderr as separate readers (demultiplexed by a task), stdin as an
//! optional writer, and the exit code. Backend-neutral: it wraps the
//! backend's [`Exec`].

use std::pin::Pin;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::task::JoinHandle;

use super::backend::{Exec, Output};
use crate::caps::stream::{ByteSink, Chunked};
use crate::caps::CapError;

pub struct Process {
    stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    stdout: Option<UnboundedReceiver<Bytes>>,
    stderr: Option<UnboundedReceiver<Bytes>>,
    pump: Option<JoinHandle<Result<(), CapError>>>,
    exit: Option<BoxFuture<'static, Result<i64, CapError>>>,
}

impl Process {
    /// Take over a started exec; without `with_stdin` its stdin is closed
    /// at once, so the command reads end-of-file.
    pub async fn new(exec: Exec, with_stdin: bool) -> Self {
        let Exec {
            stdin,
            mut output,
            exit,
        } = exec;
        let (out_tx, out_rx) = unbounded_channel();
        let (err_tx, err_rx) = unbounded_channel();
        // A reader the plugin never takes still has to be drained, or a
        // chatty command would block: unbounded channels, dropped on close.
        let pump = tokio::spawn(async move {
            while let Some(item) = output.next().await {
                match item? {
                    Output::Stdout(message) => {
                        let _ = out_tx.send(message);
                    }
                    Output::Stderr(message) => {
                        let _ = err_tx.send(message);
                    }
                }
            }
            Ok(())
        });
        let mut process = Self {
            stdin,
            stdout: Some(out_rx),
            stderr: Some(err_rx),
            pump: Some(pump),
            exit: Some(exit),
        };
        if !with_stdin {
            process.close_stdin().await;
        }
        process
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

    pub fn take_stdout(&mut self) -> Result<Chunked, CapError> {
        self.stdout
            .take()
            .map(channel)
            .ok_or_else(|| CapError::Invalid("stdout was already taken".into()))
    }

    pub fn take_stderr(&mut self) -> Result<Chunked, CapError> {
        self.stderr
            .take()
            .map(channel)
            .ok_or_else(|| CapError::Invalid("stderr was already taken".into()))
    }

    /// What waiting needs, moved out so no borrow of the resource table is
    /// held across the wait. Taken once: a second wait is refused.
    pub fn waiter(&mut self) -> Result<Waiter, CapError> {
        let (Some(pump), Some(exit)) = (self.pump.take(), self.exit.take()) else {
            return Err(CapError::Invalid("wait was already called".into()));
        };
        Ok(Waiter {
            stdin: self.stdin.take(),
            pump,
            exit,
        })
    }
}

pub struct Waiter {
    stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pump: JoinHandle<Result<(), CapError>>,
    exit: BoxFuture<'static, Result<i64, CapError>>,
}

impl Waiter {
    /// The exit code, once the command has ended (closes stdin if still open).
    pub async fn wait(mut self) -> Result<i64, CapError> {
        if let Some(mut input) = self.stdin.take() {
            let _ = input.shutdown().await;
        }
        self.pump
            .await
            .map_err(|e| CapError::Failed(format!("exec output: {e}")))??;
        self.exit.await
    }
}

/// An exec's output channel as a stream of chunks.
fn channel(rx: UnboundedReceiver<Bytes>) -> Chunked {
    Chunked::new(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok(chunk), rx))
    }))
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
