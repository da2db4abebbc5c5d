//! COPY streams: `COPY … TO STDOUT` read chunk by chunk into a plugin
//! reader, `COPY … FROM STDIN` fed from a plugin writer.

use std::sync::atomic::Ordering;

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};

use super::super::stream::{ByteSink, Chunked};
use super::super::CapError;
use super::error::{pg_error, statement_error};
use super::session::Session;

/// Start a `COPY … TO STDOUT` on the session. On a read-only session
/// outside a transaction it runs in a READ ONLY one that the reader commits
/// at the end (or the next call rolls back, if the reader is dropped early).
pub(super) async fn out(session: Session, sql: &str) -> Result<Chunked, CapError> {
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
    Ok(rows(stream, session))
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

/// Rows of a COPY TO STDOUT, chunk by chunk; at their end the READ ONLY
/// transaction `out` opened is committed.
fn rows(stream: tokio_postgres::CopyOutStream, session: Session) -> Chunked {
    let stream = Box::pin(stream);
    Chunked::new(futures::stream::unfold(
        Some((stream, session)),
        |state| async move {
            let (mut stream, session) = state?;
            match stream.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(|e| pg_error(&session.name, e));
                    Some((chunk, Some((stream, session))))
                }
                None if session.copy_transaction.swap(false, Ordering::SeqCst) => {
                    match session.client.batch_execute("COMMIT").await {
                        Ok(()) => None,
                        Err(e) => Some((Err(pg_error(&session.name, e)), None)),
                    }
                }
                None => None,
            }
        },
    ))
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
