//! Chunked byte streams shared by every capability: a `Reader` wraps any
//! source (a file, a response body, a COPY, a log), a `Writer` any sink
//! (an atomic file, a COPY, an exec's stdin). The plugin pulls or pushes
//! chunks; nothing is buffered whole.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream, StreamExt};
use wasmtime::component::Resource;

use super::bindings::opshost::plugin::types::{HostReader, HostWriter};
use super::{CapError, RunContext};
use crate::caps::HostState;

/// The most a single `read` hands over, whatever the plugin asks for.
pub const MAX_CHUNK: usize = 1 << 20;

pub trait ByteSource: Send + 'static {
    /// Up to `max` bytes; empty at the end.
    fn read(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<u8>, CapError>>;
}

pub trait ByteSink: Send + 'static {
    fn write(&mut self, data: Vec<u8>) -> BoxFuture<'_, Result<(), CapError>>;
    /// Make the data durable and visible. Called at most once.
    fn finish(&mut self) -> BoxFuture<'_, Result<(), CapError>>;
}

/// The one reader of every chunked source (a response body, container
/// logs, an exec's output, a COPY): the source yields chunks of any size,
/// the plugin reads them `max` bytes at a time.
pub struct Chunked {
    chunks: BoxStream<'static, Result<Bytes, CapError>>,
    pending: Bytes,
}

impl Chunked {
    pub fn new(chunks: impl Stream<Item = Result<Bytes, CapError>> + Send + 'static) -> Self {
        Self {
            chunks: chunks.boxed(),
            pending: Bytes::new(),
        }
    }
}

impl ByteSource for Chunked {
    fn read(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<u8>, CapError>> {
        Box::pin(async move {
            while self.pending.is_empty() {
                match self.chunks.next().await {
                    Some(chunk) => self.pending = chunk?,
                    None => return Ok(Vec::new()),
                }
            }
            let n = max.min(self.pending.len());
            Ok(self.pending.split_to(n).to_vec())
        })
    }
}

/// A source with nothing in it: plan mode's answer to a stream it did not open.
pub struct Empty;

impl ByteSource for Empty {
    fn read(&mut self, _max: usize) -> BoxFuture<'_, Result<Vec<u8>, CapError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// A sink that keeps nothing: plan mode's answer to creating a file or
/// streaming into something the plan does not change.
pub struct Discard;

impl ByteSink for Discard {
    fn write(&mut self, _data: Vec<u8>) -> BoxFuture<'_, Result<(), CapError>> {
        Box::pin(async { Ok(()) })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<(), CapError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Where a stream came from, for its audit line when it closes.
pub struct Origin {
    pub ctx: Arc<RunContext>,
    pub capability: &'static str,
    pub resource: String,
    pub what: String,
}

pub struct Reader {
    source: Box<dyn ByteSource>,
    origin: Origin,
    bytes: u64,
}

impl Reader {
    pub fn new(source: impl ByteSource, origin: Origin) -> Self {
        Self {
            source: Box::new(source),
            origin,
            bytes: 0,
        }
    }
}

pub struct Writer {
    sink: Box<dyn ByteSink>,
    origin: Origin,
    bytes: u64,
    finished: bool,
}

impl Writer {
    pub fn new(sink: impl ByteSink, origin: Origin) -> Self {
        Self {
            sink: Box::new(sink),
            origin,
            bytes: 0,
            finished: false,
        }
    }
}

impl HostReader for HostState {
    async fn read(&mut self, reader: Resource<Reader>, max: u32) -> Result<Vec<u8>, CapError> {
        let reader = self.table.get_mut(&reader)?;
        let max = usize::try_from(max)
            .unwrap_or(MAX_CHUNK)
            .clamp(1, MAX_CHUNK);
        let chunk = reader.source.read(max).await?;
        reader.bytes += chunk.len() as u64;
        Ok(chunk)
    }

    async fn drop(&mut self, reader: Resource<Reader>) -> wasmtime::Result<()> {
        let reader = self.table.delete(reader)?;
        let o = &reader.origin;
        // One audit line per stream, when it closes, with the bytes moved.
        let _ = o
            .ctx
            .call(o.capability, &o.resource, "read-stream")
            .detail(format!("{} ({} bytes)", o.what, reader.bytes))
            .finish(Ok(()));
        Ok(())
    }
}

impl HostWriter for HostState {
    async fn write(&mut self, writer: Resource<Writer>, data: Vec<u8>) -> Result<(), CapError> {
        let writer = self.table.get_mut(&writer)?;
        if writer.finished {
            return Err(CapError::Invalid("write after finish".into()));
        }
        writer.bytes += data.len() as u64;
        writer.sink.write(data).await
    }

    async fn finish(&mut self, writer: Resource<Writer>) -> Result<(), CapError> {
        let writer = self.table.get_mut(&writer)?;
        if writer.finished {
            return Err(CapError::Invalid("finish called twice".into()));
        }
        writer.finished = true;
        let o = &writer.origin;
        let call = o
            .ctx
            .call(o.capability, &o.resource, "write-stream")
            .detail(format!("{} ({} bytes)", o.what, writer.bytes));
        call.finish(writer.sink.finish().await)
    }

    async fn drop(&mut self, writer: Resource<Writer>) -> wasmtime::Result<()> {
        let writer = self.table.delete(writer)?;
        if !writer.finished {
            let o = &writer.origin;
            let _ = o
                .ctx
                .call(o.capability, &o.resource, "write-stream")
                .detail(format!("{} abandoned after {} bytes", o.what, writer.bytes))
                .finish(Err::<(), _>(CapError::Failed(
                    "dropped without finish".into(),
                )));
        }
        Ok(())
    }
}
