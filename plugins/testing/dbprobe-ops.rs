// Shared body of the dbprobe-{read,write,admin} test plugins: the same
// operations under three different grants (a plugin gets exactly what its
// manifest requests, so each level needs its own manifest).
//
// Each argument list is one operation; results go in the report's facts and
// its JSON data, so the tests can check them through `opshost run --json`.

use opshost_sdk::db::{self, Value};
use opshost_sdk::io::{ReadStream, WriteStream};
use opshost_sdk::{fail, fs, invalid, Report, Result};
use std::io::{Read, Write};

fn cell(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Boolean(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(f) => (*f).into(),
        Value::Text(s) | Value::Json(s) | Value::Timestamp(s) => s.clone().into(),
        Value::Bytes(b) => format!("bytes:{}", b.len()).into(),
    }
}

fn rows_json(rows: &db::Rows) -> String {
    let list: Vec<serde_json::Value> = rows.rows.iter().map(|r| r.iter().map(cell).collect()).collect();
    let types: Vec<&str> = rows.columns.iter().map(|c| c.type_name.as_str()).collect();
    serde_json::json!({ "rows": list, "types": types }).to_string()
}

struct Probe;

impl opshost_sdk::Operation for Probe {
    fn run(args: Vec<String>) -> Result<Report> {
        let arg = |i: usize| args.get(i).cloned().ok_or_else(|| invalid(format!("missing argument {i}")));
        let op = arg(0)?;
        match op.as_str() {
            "query" => {
                let rows = db::connect("agledger")?.query(&arg(1)?, &[])?;
                Ok(Report::ok(format!("{} rows", rows.rows.len())).data(rows_json(&rows)))
            }
            "execute" => {
                let n = db::connect("agledger")?.execute(&arg(1)?, &[])?;
                Ok(Report::ok("executed").fact("affected", n))
            }
            "params" => {
                let conn = db::connect("agledger")?;
                let rows = conn.query(
                    "SELECT $1::int4 + 1, $2::text, $3::jsonb, $4::timestamptz, $5::bytea, 12345.678::numeric, NULL::int8, true, 2.5::float8, DATE '2026-11-27'",
                    &[
                        Value::Int(41),
                        Value::Text("héllo".into()),
                        Value::Json("{\"a\": [1, 2]}".into()),
                        Value::Timestamp("2026-11-27T10:00:00Z".into()),
                        Value::Bytes(vec![0, 1, 2]),
                    ],
                )?;
                Ok(Report::ok("typed").data(rows_json(&rows)))
            }
            "bad-param" => {
                db::connect("agledger")?.query("SELECT $1::int4", &[Value::Text("nope".into())])?;
                Ok(Report::ok("accepted"))
            }
            "txn-rollback" => {
                let conn = db::connect("agledger")?;
                conn.begin()?;
                conn.execute(&arg(1)?, &[])?;
                conn.rollback()?;
                Ok(Report::ok("rolled back"))
            }
            "txn-escape" => {
                let conn = db::connect("agledger")?;
                conn.begin()?;
                conn.execute("COMMIT", &[])?;
                conn.execute(&arg(1)?, &[])?;
                Ok(Report::ok("escaped"))
            }
            "copy-out" => {
                let reader = db::connect("agledger")?.copy_out(&arg(1)?)?;
                let mut text = String::new();
                ReadStream::new(reader).read_to_string(&mut text).map_err(|e| fail(e.to_string()))?;
                Ok(Report::ok("copied out").fact("bytes", text.len()).data(serde_json::json!({ "text": text }).to_string()))
            }
            "copy-in" => {
                let mut w = WriteStream::new(db::connect("agledger")?.copy_in(&arg(1)?)?);
                w.write_all(arg(2)?.as_bytes()).map_err(|e| fail(e.to_string()))?;
                w.finish()?;
                Ok(Report::ok("copied in"))
            }
            "dump" => {
                let dir = fs::open("backups")?;
                let options = db::DumpOptions { snapshot: None, durable: true };
                let info = db::dump("agledger", &dir, &arg(1)?, &options)?;
                Ok(Report::ok("dumped")
                    .fact("size", info.size)
                    .fact("sha256", info.sha256)
                    .fact("server", info.server_version))
            }
            "contents" => {
                let entries = db::dump_contents(&fs::open("backups")?, &arg(1)?)?;
                Ok(Report::ok("listed").fact("entries", entries.len()))
            }
            "restore" => {
                let into = args.get(2).cloned();
                let jobs = args.get(3).and_then(|j| j.parse().ok());
                let options = db::RestoreOptions { into_database: into, jobs, no_owner: true };
                db::restore("agledger", &fs::open("backups")?, &arg(1)?, &options)?;
                Ok(Report::ok("restored"))
            }
            "create-db" => db::create_database("agledger", &arg(1)?).map(|_| Report::ok("created")),
            "drop-db" => db::drop_database("agledger", &arg(1)?).map(|_| Report::ok("dropped")),
            "rename-db" => db::rename_database("agledger", &arg(1)?, &arg(2)?).map(|_| Report::ok("renamed")),
            "terminate" => {
                let n = db::terminate_sessions("agledger", &arg(1)?)?;
                Ok(Report::ok("terminated").fact("sessions", n))
            }
            "other-db" => db::connect("other").map(|_| Report::ok("connected")),
            other => Err(invalid(format!("unknown operation {other:?}"))),
        }
    }
}

opshost_sdk::plugin!(Probe);
