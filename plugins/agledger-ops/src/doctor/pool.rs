//! pool: connection-pool sizing against `max_connections`. Each api and
//! worker replica opens up to DATABASE_POOL_MAX connections; an upgrade's
//! rolling replace runs one more container of a service for a while, and
//! the migrate container, backups and opshost need a few more.
//!
//! DATABASE_POOL_MAX unset: 10, node-postgres's `Pool` default (`max: 10`),
//! which pg-boss's pool uses when the product passes nothing.

use super::{Check, Finding, Settings};
use crate::deployment::{Env, API, CONTAINERS, WORKER};
use opshost_sdk::db::{self, Value};
use opshost_sdk::{container, fail, Context, Result};

pub const CHECK: Check = Check {
    name: "pool",
    about: "(api + worker replicas) x DATABASE_POOL_MAX + overhead against max_connections",
    run,
};

pub const POOL_MAX_KEY: &str = "DATABASE_POOL_MAX";
pub const DEFAULT_POOL_MAX: i64 = 10;
/// Connections that are not the services': the migrate container,
/// pg_dump, opshost, an operator's psql, monitoring.
pub const OVERHEAD: i64 = 10;

/// The figures, and the sentence that shows them.
pub struct Sizing {
    pub max_connections: i64,
    pub reserved: i64,
    pub api: i64,
    pub worker: i64,
    pub pool_max: i64,
    pub pool_max_source: &'static str,
    pub open_now: i64,
}

impl Sizing {
    pub fn steady(&self) -> i64 {
        (self.api + self.worker) * self.pool_max + OVERHEAD
    }

    /// During a rolling replace: one container more.
    pub fn upgrade_peak(&self) -> i64 {
        self.steady() + self.pool_max
    }

    pub fn usable(&self) -> i64 {
        self.max_connections - self.reserved
    }

    pub fn evidence(&self) -> String {
        format!(
            "max_connections={} ({} reserved for superusers: {} usable), {} api + {} worker replicas x {}={}{} + {} overhead = {}; \
             while an upgrade replaces a container, one more: {}; {} client connections open now",
            self.max_connections,
            self.reserved,
            self.usable(),
            self.api,
            self.worker,
            POOL_MAX_KEY,
            self.pool_max,
            self.pool_max_source,
            OVERHEAD,
            self.steady(),
            self.upgrade_peak(),
            self.open_now
        )
    }

    pub fn findings(&self) -> Vec<Finding> {
        let fix = format!(
            "raise max_connections (a server restart), or lower {POOL_MAX_KEY} in compose/.env (recreate the \
             services), or fewer replicas; keep (replicas + 1) x {POOL_MAX_KEY} + {OVERHEAD} under max_connections minus \
             the reserved ones"
        );
        if self.steady() > self.usable() {
            vec![Finding::error(
                "the services' connection pools can exceed max_connections",
                self.evidence(),
                fix,
            )]
        } else if self.upgrade_peak() > self.usable() {
            vec![Finding::warning(
                "an upgrade's rolling replace can exceed max_connections",
                self.evidence(),
                fix,
            )]
        } else {
            vec![]
        }
    }
}

fn int(v: Option<&Value>) -> Result<i64> {
    match v {
        Some(Value::Int(i)) => Ok(*i),
        other => Err(fail(format!(
            "expected a number from the server, got {other:?}"
        ))),
    }
}

fn run(_: &Settings) -> Result<Vec<Finding>> {
    let env = Env::open()?;
    let (pool_max, source) = match env.file.value(POOL_MAX_KEY) {
        None => (DEFAULT_POOL_MAX, " (unset: node-postgres's default)"),
        Some(text) => match text.trim().parse::<i64>() {
            Ok(n) if n >= 1 => (n, ""),
            _ => {
                return Ok(vec![Finding::error(
                    format!("{POOL_MAX_KEY}={text} is not a pool size"),
                    format!("compose/.env sets {POOL_MAX_KEY}={text}"),
                    format!("set {POOL_MAX_KEY} to a whole number of at least 1 (unset means {DEFAULT_POOL_MAX})"),
                )])
            }
        },
    };
    let running = container::list(CONTAINERS)?;
    let count = |service: &str| {
        running
            .iter()
            .filter(|c| c.service == service && c.state == "running")
            .count() as i64
    };
    let conn = db::connect("agledger").context("connecting to the database")?;
    let rows = conn.query(
        "SELECT current_setting('max_connections')::int8, current_setting('superuser_reserved_connections')::int8, \
         (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int8",
        &[],
    )?;
    let row = rows
        .rows
        .first()
        .ok_or_else(|| fail("no answer to SHOW max_connections"))?;
    let sizing = Sizing {
        max_connections: int(row.first())?,
        reserved: int(row.get(1))?,
        api: count(API),
        worker: count(WORKER),
        pool_max,
        pool_max_source: source,
        open_now: int(row.get(2))?,
    };
    Ok(sizing.findings())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizing(max: i64, api: i64, worker: i64, pool: i64) -> Sizing {
        Sizing {
            max_connections: max,
            reserved: 3,
            api,
            worker,
            pool_max: pool,
            pool_max_source: "",
            open_now: 5,
        }
    }

    #[test]
    fn steady_state_and_upgrade_peak() {
        // 2 x 40 + 10 = 90 fits 97; the upgrade's 130 does not.
        let s = sizing(100, 1, 1, 40);
        assert_eq!((s.steady(), s.upgrade_peak()), (90, 130));
        assert_eq!(s.findings()[0].severity, super::super::Severity::Warning);
        // 3 x 40 + 10 = 130 > 97.
        let s = sizing(100, 2, 1, 40);
        assert_eq!(s.findings()[0].severity, super::super::Severity::Error);
        assert!(s
            .evidence()
            .contains("2 api + 1 worker replicas x DATABASE_POOL_MAX=40 + 10 overhead = 130"));
        assert!(sizing(100, 1, 1, 10).findings().is_empty());
    }
}
