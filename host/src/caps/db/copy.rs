//! COPY streams: `COPY … TO STDOUT` read chunk by chunk into a plugin
//! reader, `COPY … FROM STDIN` fed from a plugin writer.

use std::sync::atomic::Ordering;

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};

use super::super::stream::{ByteSink, ByteSource};
use super::super::CapError;
use super::error::{pg_error, statement_error};
use super::session::Session;

/// Start a `COPY … TO STDOUT` on the session. On a read-only session
/// outside a transaction it runs in a READ ONLY one that the reader commits
/// at the end (or the next call rolls back, if the reader is dropped early).
pub(super) async fn out(session: Session, sql: &str) -> Result<CopyOut, CapError> {
    session.settle().await?;
    if session.read_only && !session.in_transaction {
        session
            .client
            .batch_execute("START TRANSACTION READ ONLY")
            .await
            .map_err(|e| pg_error(&session.name, e))?;
        session.copy_transaction.store(true, Ordering::SeqCst);
    }
    let stream = session
        .client
        .copy_out(sql)
        .await
        .map_err(|e| statement_error(&session.name, e))?;
    Ok(CopyOut {
        stream: Box::pin(stream),
        pending: bytes::Bytes::new(),
        session,
    })
}

/// Start a `COPY … FROM STDIN` on the session.
pub(super) async fn into(session: &Session, sql: &str) -> Result<CopyIn, CapError> {
    session.settle().await?;
    let sink = session
        .client
        .copy_in::<_, bytes::Bytes>(sql)
        .await
        .map_err(|e| statement_error(&session.name, e))?;
    Ok(CopyIn {
        sink: Box::pin(sink),
        name: session.name.clone(),
    })
}

/// Rows of a COPY TO STDOUT, chunk by chunk.
pub(super) struct CopyOut {
    stream: std::pin::Pin<Box<tokio_postgres::CopyOutStream>>,
    pending: bytes::Bytes,
    session: Session,
}

impl ByteSource for CopyOut {
    fn read(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<u8>, CapError>> {
        Box::pin(async move {
            if self.pending.is_empty() {
                match self.stream.next().await {
                    Some(chunk) => {
                        self.pending = chunk.map_err(|e| pg_error(&self.session.name, e))?
                    }
                    None => {
                        if self.session.copy_transaction.swap(false, Ordering::SeqCst) {
                            let commit = self.session.client.batch_execute("COMMIT").await;
                            commit.map_err(|e| pg_error(&self.session.name, e))?;
                        }
                        return Ok(Vec::new());
                    }
                }
            }
            let n = max.min(self.pending.len());
            Ok(self.pending.split_to(n).to_vec())
        })
    }
}

/// Rows into a COPY FROM STDIN; `finish` completes it.
pub(super) struct CopyIn {
    sink: std::pin::Pin<Box<tokio_postgres::CopyInSink<bytes::Bytes>>>,
    name: String,
}

impl ByteSink for CopyIn {
    fn write(&mut self, data: Vec<u8>) -> BoxFuture<'_, Result<(), CapError>> {
        Box::pin(async move {
            self.sink
                .send(bytes::Bytes::from(data))
                .await
                .map_err(|e| statement_error(&self.name, e))
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<(), CapError>> {
        Box::pin(async move {
            self.sink
                .as_mut()
                .finish()
                .await
                .map(drop)
                .map_err(|e| statement_error(&self.name, e))
        })
    }
}
