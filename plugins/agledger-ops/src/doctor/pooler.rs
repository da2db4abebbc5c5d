//! pooler: is a connection pooler in transaction mode (PgBouncer,
//! pgcat, RDS Proxy pinning off...) between the product and PostgreSQL?
//! pg-boss needs LISTEN/NOTIFY and session advisory locks, and the
//! migrations serialise on an advisory lock: through such a pooler they
//! silently stop working. Found by trying (the host's `probe-session`),
//! not by guessing from a port number.

use super::{Check, Finding, Settings};
use opshost_sdk::db::{self, SessionProbe};
use opshost_sdk::Result;

pub const CHECK: Check = Check {
    name: "pooler",
    about: "a transaction-mode connection pooler in front of the database (tried: backend per session, session advisory lock, LISTEN/NOTIFY)",
    run,
};

/// What the probe's answers show, one sentence each; empty: a session is
/// one backend, as pg-boss needs.
pub fn evidence(p: &SessionProbe) -> Vec<String> {
    let mut seen = Vec::new();
    if p.backend_first != p.backend_later {
        seen.push(format!(
            "pg_backend_pid() changed between two statements of one session ({} then {})",
            p.backend_first, p.backend_later
        ));
    }
    if p.backend_other_session == p.backend_first || p.backend_other_session == p.backend_later {
        seen.push(format!(
            "a second session open at the same time ran on the same backend (pid {})",
            p.backend_other_session
        ));
    }
    if p.lock_taken && !p.lock_held_later {
        seen.push(
            "a session advisory lock the session took was not held by the backend of its next statement".into(),
        );
    }
    if !p.notify_delivered {
        seen.push(format!(
            "a NOTIFY from a second session did not reach the LISTENing session within {} ms",
            p.notify_wait_ms
        ));
    }
    if !seen.is_empty() && !p.lock_taken {
        seen.push("the probe's own advisory lock was already taken (one left on a pooled server connection by an earlier probe)".into());
    }
    seen
}

fn run(_: &Settings) -> Result<Vec<Finding>> {
    let probe = db::probe_session("agledger")?;
    let seen = evidence(&probe);
    if seen.is_empty() {
        return Ok(vec![]);
    }
    Ok(vec![Finding::error(
        "a connection pooler in transaction mode sits in front of the database",
        seen.join("; "),
        "point DATABASE_URL (and DATABASE_URL_MIGRATE) at PostgreSQL itself, or run the pooler in session mode \
         (PgBouncer: pool_mode = session) for AGLedger's connections: pg-boss's LISTEN/NOTIFY and session \
         advisory locks, and the migrations' lock, need one backend per session",
    )
    .blocking()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(first: i32, later: i32, other: i32, held: bool, heard: bool) -> SessionProbe {
        SessionProbe {
            backend_first: first,
            backend_later: later,
            backend_other_session: other,
            lock_taken: true,
            lock_held_later: held,
            notify_delivered: heard,
            notify_wait_ms: 1500,
        }
    }

    #[test]
    fn one_backend_per_session_is_no_evidence() {
        assert!(evidence(&probe(10, 10, 11, true, true)).is_empty());
    }

    #[test]
    fn each_symptom_of_a_transaction_pooler_is_named() {
        // PgBouncer with one idle server connection: the same backend for both sessions.
        let seen = evidence(&probe(10, 10, 10, true, false));
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0].contains("same backend (pid 10)"));
        assert!(seen[1].contains("NOTIFY"));
        // Several server connections: the session moves and loses its lock.
        let seen = evidence(&probe(10, 12, 11, false, false));
        assert!(seen.iter().any(|s| s.contains("10 then 12")), "{seen:?}");
        assert!(seen.iter().any(|s| s.contains("advisory lock")), "{seen:?}");
    }
}
