//! Guest stdout/stderr: split into lines and sent to the operator's output
//! (a guest panic message arrives here), charged to the log budget. Past
//! the budget, writes fail, which stops a flooding guest.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::limits::LogBudget;
use crate::output::Output;

/// Longest line kept whole; longer ones are split.
const MAX_LINE: usize = 8 << 10;

#[derive(Clone)]
pub struct GuestOutput {
    stream: &'static str,
    output: Arc<Output>,
    budget: Arc<LogBudget>,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    pub fn new(stream: &'static str, output: Arc<Output>, budget: Arc<LogBudget>) -> Self {
        Self {
            stream,
            output,
            budget,
            pending: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        self.output
            .guest_line(self.stream, text.trim_end_matches('\r'));
    }

    fn accept(&self, data: &[u8]) -> io::Result<()> {
        if !self.budget.charge(data.len()) {
            return Err(io::Error::new(
                io::ErrorKind::QuotaExceeded,
                self.budget.exceeded_message(),
            ));
        }
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| io::Error::other("log buffer poisoned"))?;
        pending.extend_from_slice(data);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            self.emit(&line[..line.len() - 1]);
        }
        if pending.len() > MAX_LINE {
            let line: Vec<u8> = pending.drain(..).collect();
            self.emit(&line);
        }
        Ok(())
    }

    /// Emit a last line that had no newline (called when the run ends).
    pub fn flush_partial(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            if !pending.is_empty() {
                let line: Vec<u8> = pending.drain(..).collect();
                drop(pending);
                self.emit(&line);
            }
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.accept(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
