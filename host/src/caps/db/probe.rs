//! `probe-session`: does a session to this database behave like one
//! PostgreSQL backend (what pg-boss needs: session advisory locks,
//! LISTEN/NOTIFY), or is a connection pooler in transaction mode between?
//!
//! Done in the host with fixed statements, not by letting the plugin send
//! `pg_advisory_lock` or `LISTEN`: the gate refuses session locks to
//! plugins because a lock that outlives the statement could block the
//! product's own users of it for as long as the plugin likes. Here the
//! key is opshost's own (the two-integer key space, which no bigint key
//! such as pg-boss's shares), taken with the non-blocking `try` form,
//! released and unlistened before the sessions close. Through a
//! transaction pooler the unlock may land on another backend: the lock
//! then stays on a pooled server connection until the pooler recycles it,
//! blocking nobody (no one else uses the key) - the finding it proves.
//!
//! Sessions log in as the URL's own login (the path the product's
//! connections take) WITHOUT startup options: poolers refuse unknown
//! startup parameters (PgBouncer: "unsupported startup parameter:
//! options"), and nothing here needs a setting. Every function call is
//! schema-qualified, so nothing planted in a schema on the search path runs.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

use super::super::bindings::opshost::plugin::db::SessionProbe;
use super::super::CapError;
use super::connect::{self, Target, Tls};

/// opshost's advisory lock key (two int4 halves: "opsh", "doct").
const KEY: (i32, i32) = (0x6f70_7368, 0x646f_6374);
/// How long a NOTIFY may take to arrive on a direct session.
const NOTIFY_WAIT: Duration = Duration::from_millis(1500);
/// The whole probe, connections included.
const PROBE_DEADLINE: Duration = Duration::from_secs(30);

/// A probe session: the client and the notifications its connection hears.
pub(super) struct ProbeSession {
    pub client: Client,
    pub heard: mpsc::UnboundedReceiver<String>,
}

/// Open a session as the URL says (its TLS mode), without startup options.
pub(super) async fn open(target: &Target) -> Result<ProbeSession, CapError> {
    let fail = |e: tokio_postgres::Error| {
        CapError::Failed(format!(
            "cannot connect to the database: {}",
            super::pg_message(&e)
        ))
    };
    let mut config = target.config.clone();
    config.application_name("opshost-probe");
    let (tx, heard) = mpsc::unbounded_channel();
    let client = match &target.tls {
        Tls::Disable => {
            let (client, conn) = config.connect(NoTls).await.map_err(fail)?;
            tokio::spawn(forward(conn, tx));
            client
        }
        tls => {
            let (client, conn) = config
                .connect(connect::connector(tls)?)
                .await
                .map_err(fail)?;
            tokio::spawn(forward(conn, tx));
            client
        }
    };
    Ok(ProbeSession { client, heard })
}

/// Drive the connection, passing on the channels of notifications heard
/// (a spawned connection without this drops them).
async fn forward<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
    tx: mpsc::UnboundedSender<String>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(AsyncMessage::Notification(n)) => {
                let _ = tx.send(n.channel().to_string());
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

/// The first column of the first row of a simple query, as text.
async fn first_value(client: &Client, sql: &str) -> Result<String, CapError> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| CapError::Failed(format!("{sql}: {}", super::pg_message(&e))))?;
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .ok_or_else(|| CapError::Failed(format!("{sql}: no row")))
}

async fn backend_pid(client: &Client) -> Result<i32, CapError> {
    let text = first_value(client, "SELECT pg_catalog.pg_backend_pid()").await?;
    text.parse()
        .map_err(|_| CapError::Failed(format!("pg_backend_pid() returned {text:?}")))
}

pub async fn session(target: &Target) -> Result<SessionProbe, CapError> {
    match tokio::time::timeout(PROBE_DEADLINE, probe(target)).await {
        Ok(result) => result,
        Err(_) => Err(CapError::TimedOut(format!(
            "the session probe did not finish within {} s",
            PROBE_DEADLINE.as_secs()
        ))),
    }
}

async fn probe(target: &Target) -> Result<SessionProbe, CapError> {
    let mut first = open(target).await?;
    let second = open(target).await?;
    let (k1, k2) = KEY;

    let backend_first = backend_pid(&first.client).await?;
    let lock_taken = first_value(
        &first.client,
        &format!("SELECT pg_catalog.pg_try_advisory_lock({k1}, {k2})"),
    )
    .await?
        == "t";
    // One statement: the backend it ran on, and whether that backend holds the lock.
    let later = first_value(
        &first.client,
        &format!(
            "SELECT pg_catalog.pg_backend_pid()::text || ',' || pg_catalog.count(*)::text \
             FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND classid = {k1}::oid \
             AND objid = {k2}::oid AND objsubid = 2 AND granted AND pid = pg_catalog.pg_backend_pid()"
        ),
    )
    .await?;
    let (pid, held) = later.split_once(',').unwrap_or((later.as_str(), "0"));
    let backend_later: i32 = pid
        .parse()
        .map_err(|_| CapError::Failed(format!("unexpected probe answer {later:?}")))?;
    let lock_held_later = lock_taken && held != "0";
    let backend_other_session = backend_pid(&second.client).await?;

    // A channel of this probe's own: two probes at once do not hear each other.
    let channel = format!(
        "opshost_probe_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    );
    first
        .client
        .simple_query(&format!("LISTEN {channel}"))
        .await
        .map_err(|e| CapError::Failed(format!("LISTEN: {}", super::pg_message(&e))))?;
    second
        .client
        .simple_query(&format!("NOTIFY {channel}"))
        .await
        .map_err(|e| CapError::Failed(format!("NOTIFY: {}", super::pg_message(&e))))?;
    let started = tokio::time::Instant::now();
    let mut notify_delivered = false;
    while started.elapsed() < NOTIFY_WAIT && !notify_delivered {
        // A statement makes the connection read what the server sent.
        let _ = first.client.simple_query("SELECT 1").await;
        if let Ok(Some(heard)) =
            tokio::time::timeout(Duration::from_millis(100), first.heard.recv()).await
        {
            notify_delivered = heard == channel;
        }
    }

    // Put everything back (best effort: through a pooler these may run on
    // another backend, which is what the probe found).
    let _ = first.client.simple_query("UNLISTEN *").await;
    if lock_taken {
        let _ = first
            .client
            .simple_query(&format!("SELECT pg_catalog.pg_advisory_unlock({k1}, {k2})"))
            .await;
    }
    Ok(SessionProbe {
        backend_first,
        backend_later,
        backend_other_session,
        lock_taken,
        lock_held_later,
        notify_delivered,
        notify_wait_ms: NOTIFY_WAIT.as_millis() as u32,
    })
}
