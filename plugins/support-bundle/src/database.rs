//! The database's part: a schema-only dump (plain SQL, so it can be
//! redacted: column defaults and comments can hold secrets), exact row
//! counts per table, the migration table, and the server's facts. All
//! with `db=agledger:read`: nothing here needs more.

use opshost_sdk::db::{self, Connection, Value as Cell};
use opshost_sdk::{Context, Result};
use serde_json::{json, Map, Value};

use crate::collect::{pretty, Collection};

/// `[db.agledger]`.
pub const DB: &str = "agledger";

pub fn collect(c: &mut Collection) -> Result<()> {
    let conn = db::connect(DB).context("connecting to [db.agledger]")?;
    c.fact("postgresql_version", conn.server_version()?);
    let size = single(&conn, "SELECT pg_database_size(current_database())")?;
    c.fact("database_size_bytes", size);
    let sessions = single(
        &conn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
    )?;
    c.fact("database_sessions", sessions);

    match db::dump_schema(DB) {
        Ok(sql) => c.add("database/schema.sql", sql),
        Err(e) => c
            .problems
            .push(("schema dump".into(), opshost_sdk::describe(&e))),
    }

    let tables = conn
        .query(
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' \
               AND table_schema NOT IN ('pg_catalog', 'information_schema') \
             ORDER BY 1, 2",
            &[],
        )
        .context("listing tables")?;
    let mut counts = Map::new();
    for row in &tables.rows {
        let (Some(Cell::Text(schema)), Some(Cell::Text(table))) = (row.first(), row.get(1)) else {
            continue;
        };
        let sql = format!("SELECT count(*) FROM {}.{}", ident(schema), ident(table));
        let key = format!("{schema}.{table}");
        match single(&conn, &sql) {
            Ok(n) => counts.insert(key, n),
            Err(e) => counts.insert(key, json!({ "error": opshost_sdk::describe(&e) })),
        };
    }
    c.fact("tables", counts.len());
    c.add("database/row-counts.json", pretty(&Value::Object(counts)));

    // The product's migration table; absent before the first migrate.
    match conn.query(
        "SELECT id, name, applied_at FROM _migrations ORDER BY id",
        &[],
    ) {
        Ok(rows) => {
            let applied: Vec<Value> = rows
                .rows
                .iter()
                .map(|r| {
                    json!({
                        "id": r.first().map(cell).unwrap_or_default(),
                        "name": r.get(1).map(cell).unwrap_or_default(),
                        "applied_at": r.get(2).map(cell).unwrap_or_default(),
                    })
                })
                .collect();
            c.fact("migrations_applied", applied.len());
            c.add("database/migrations.json", pretty(&Value::from(applied)));
        }
        Err(e) => c
            .problems
            .push(("migration state".into(), opshost_sdk::describe(&e))),
    }
    Ok(())
}

/// The one value of a one-row, one-column query.
fn single(conn: &Connection, sql: &str) -> Result<Value> {
    let rows = conn.query(sql, &[]).context(sql)?;
    Ok(rows
        .rows
        .first()
        .and_then(|r| r.first())
        .map(cell)
        .unwrap_or_default())
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn cell(v: &Cell) -> Value {
    match v {
        Cell::Null => Value::Null,
        Cell::Boolean(b) => Value::from(*b),
        Cell::Int(i) => Value::from(*i),
        Cell::Float(f) => Value::from(*f),
        Cell::Text(t) | Cell::Json(t) | Cell::Timestamp(t) => Value::from(t.clone()),
        Cell::Bytes(b) => Value::from(format!("<{} bytes>", b.len())),
    }
}
