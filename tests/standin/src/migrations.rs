//! Forward-only schema migrations recorded in `_migrations`. Which ones a
//! binary knows depends on its version (migration 3 arrived in 1.3.3), so an
//! older binary meeting a newer schema refuses to run (downgrade refused).

use tokio_postgres::Client;

use crate::config;
use crate::db::{self, pg_err, Purpose};

pub struct Migration {
    pub id: i32,
    pub name: &'static str,
    /// First version that ships this migration.
    pub since: (u64, u64, u64),
    pub sql: &'static str,
}

pub const ALL: &[Migration] = &[
    Migration {
        id: 1,
        name: "initial",
        since: (0, 0, 0),
        sql: "
CREATE TABLE mandates (
    id text PRIMARY KEY,
    title text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE vault_signing_keys (
    key_id text PRIMARY KEY,
    public_key text NOT NULL,
    algorithm text NOT NULL DEFAULT 'ed25519',
    status text NOT NULL DEFAULT 'active',
    activated_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz NULL
);
CREATE TABLE vault_entries (
    mandate_id text NOT NULL REFERENCES mandates(id),
    chain_position bigint NOT NULL,
    payload text NOT NULL,
    payload_hash text NOT NULL,
    previous_hash text NULL,
    signature text NOT NULL,
    key_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mandate_id, chain_position)
);
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    name text NOT NULL,
    role text NOT NULL,
    key_hash text NOT NULL,
    key_plain_for_standin text NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_key_hash_idx ON api_keys (key_hash);
",
    },
    Migration {
        id: 2,
        name: "api_key_last_used",
        since: (0, 0, 0),
        sql: "ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz NULL;",
    },
    Migration {
        id: 3,
        name: "webhooks",
        since: (1, 3, 3),
        sql: "
CREATE TABLE webhooks (
    id serial PRIMARY KEY,
    url text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
",
    },
    // 1.3.5 is the release whose migrations fail half-way: 4 applies, 5
    // fails (in its own transaction), leaving a schema 1.3.2 refuses.
    Migration {
        id: 4,
        name: "mandate_tags",
        since: (1, 3, 5),
        sql: "ALTER TABLE mandates ADD COLUMN tags text[] NOT NULL DEFAULT '{}';",
    },
    Migration {
        id: 5,
        name: "vault_backfill",
        since: (1, 3, 5),
        sql: "
CREATE INDEX vault_entries_key_idx ON vault_entries (key_id);
DO $$ BEGIN RAISE EXCEPTION 'vault_backfill: entry 1 of mandate m-0001 has no signing key'; END $$;
",
    },
];

/// Serialises concurrent migrators (an arbitrary, fixed advisory lock key).
const LOCK_KEY: i64 = 0x4147_4c45_4447;

/// The migrations a binary of `version` knows.
pub fn known(version: &str) -> Vec<&'static Migration> {
    let v = config::version_triple(version);
    ALL.iter().filter(|m| v >= m.since).collect()
}

pub fn known_ids(version: &str) -> Vec<i32> {
    known(version).iter().map(|m| m.id).collect()
}

/// How the database's schema compares with what this binary knows.
pub struct SchemaState {
    pub applied: Vec<i32>,
    pub pending: Vec<i32>,
    /// Applied in the database but unknown to this binary: a newer schema.
    pub unknown: Vec<i32>,
}

impl SchemaState {
    pub fn downgrade_message(&self, version: &str) -> Option<String> {
        if self.unknown.is_empty() {
            return None;
        }
        Some(format!(
            "the database schema is newer than this binary: migration(s) {} are applied but agledger {version} \
             knows only {}; downgrade refused (run the newer version, or restore a backup taken before the upgrade)",
            ids(&self.unknown),
            ids(&known_ids(version)),
        ))
    }
}

pub fn ids(list: &[i32]) -> String {
    list.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Read `_migrations` (absent = nothing applied) without changing anything.
pub async fn inspect(client: &Client, version: &str) -> Result<SchemaState, String> {
    let exists: bool = client
        .query_one("SELECT to_regclass('_migrations') IS NOT NULL", &[])
        .await
        .map_err(|e| format!("cannot inspect the schema: {}", pg_err(&e)))?
        .get(0);
    let applied: Vec<i32> = if exists {
        client
            .query("SELECT id FROM _migrations ORDER BY id", &[])
            .await
            .map_err(|e| format!("cannot read _migrations: {}", pg_err(&e)))?
            .iter()
            .map(|r| r.get::<_, i32>(0))
            .collect()
    } else {
        Vec::new()
    };
    let known = known_ids(version);
    Ok(SchemaState {
        pending: known
            .iter()
            .copied()
            .filter(|id| !applied.contains(id))
            .collect(),
        unknown: applied
            .iter()
            .copied()
            .filter(|id| !known.contains(id))
            .collect(),
        applied,
    })
}

/// The `migrate` role: apply every pending migration, each in its own transaction.
pub async fn run_migrate() -> Result<(), String> {
    config::check_removed_vars()?;
    let version = config::version();
    let mut client = db::connect(Purpose::Migrate).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(|e| format!("cannot take the migration lock: {}", pg_err(&e)))?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS _migrations (
                 id int PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(|e| format!("cannot create _migrations: {}", pg_err(&e)))?;
    let state = inspect(&client, &version).await?;
    if let Some(msg) = state.downgrade_message(&version) {
        return Err(msg);
    }
    let mut applied_now = 0;
    for m in known(&version) {
        if state.applied.contains(&m.id) {
            continue;
        }
        let tx = client
            .transaction()
            .await
            .map_err(|e| format!("cannot begin a transaction: {}", pg_err(&e)))?;
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| format!("migration {} ({}) failed: {}", m.id, m.name, pg_err(&e)))?;
        tx.execute(
            "INSERT INTO _migrations (id, name) VALUES ($1, $2)",
            &[&m.id, &m.name],
        )
        .await
        .map_err(|e| format!("cannot record migration {}: {}", m.id, pg_err(&e)))?;
        tx.commit().await.map_err(|e| {
            format!(
                "cannot commit migration {} ({}): {}",
                m.id,
                m.name,
                pg_err(&e)
            )
        })?;
        println!("migrate: applied {} {}", m.id, m.name);
        applied_now += 1;
    }
    println!(
        "migrate: agledger {version}: {applied_now} applied, schema at [{}]",
        ids(&known_ids(&version))
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_3_arrives_in_1_3_3_and_4_5_in_1_3_5() {
        assert_eq!(known_ids("1.3.2"), vec![1, 2]);
        assert_eq!(known_ids("1.3.3"), vec![1, 2, 3]);
        assert_eq!(known_ids("1.3.4"), vec![1, 2, 3]);
        assert_eq!(known_ids("1.3.5"), vec![1, 2, 3, 4, 5]);
        assert_eq!(known_ids("1.4.0"), vec![1, 2, 3, 4, 5]);
        assert_eq!(known_ids("0.0.0-dev"), vec![1, 2]);
    }

    #[test]
    fn downgrade_is_refused() {
        let s = SchemaState {
            applied: vec![1, 2, 3],
            pending: vec![],
            unknown: vec![3],
        };
        let msg = s.downgrade_message("1.3.2").unwrap();
        assert!(msg.contains("downgrade refused"), "{msg}");
    }
}
