//! The example operation: asks the API for its health and writes a small
//! report into the work directory. It shows the three capabilities an
//! operation uses most (http, fs, progress) in one short run.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use opshost_sdk::io::WriteStream;
use opshost_sdk::{fail, fs, progress, web, Context, Report, Result};

opshost_sdk::manifest! {
    name: "example",
    vendor: "opshost",
    description: "Checks the API's /health and writes health-report.txt into the work directory",
    applies_to: "*",
    min_host: "0.1.0",
    requests: [
        ("http=api/health:GET", "reads the service's health endpoint"),
        ("fs=work:rw", "writes health-report.txt"),
    ],
}

struct Example;

const REPORT: &str = "health-report.txt";

impl opshost_sdk::Operation for Example {
    fn run(args: Vec<String>) -> Result<Report> {
        progress::step("asking the API for its health", None);
        let resp = web::get("api", "/health").context("GET /health")?;
        let status = resp.head.status;
        let body = String::from_utf8_lossy(&resp.body).into_owned();
        progress::info(&format!("GET /health answered {status}"));

        progress::step("writing the report", None);
        let dir = fs::open("work").context("opening the work directory")?;
        let checked_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut out = WriteStream::new(dir.create(REPORT)?);
        let text = format!(
            "checked-at-unix: {checked_at}\nstatus: {status}\nbody: {}\nnote: {}\n",
            body.trim(),
            args.join(" ")
        );
        out.write_all(text.as_bytes())
            .map_err(|e| fail(format!("writing {REPORT}: {e}")))?;
        out.finish().context(REPORT)?;
        let files = dir.list("")?.len();

        let report = if status == 200 {
            Report::ok("the API is healthy")
        } else {
            Report::attention("the API is not healthy")
        };
        Ok(report
            .fact("status", status)
            .fact("report", format!("work/{REPORT} ({} bytes)", text.len()))
            .fact("files in work", files))
    }
}

opshost_sdk::plugin!(Example);
