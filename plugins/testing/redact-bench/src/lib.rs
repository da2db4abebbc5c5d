//! Benchmark plugin (not a test): the redaction engine inside the sandbox
//! over every file of the granted directory `logs`, timing itself; see
//! tests/bench/redact.sh. Args: `[ROUNDS]` (default 5).
mod bench;

use opshost_sdk::{fail, fs, invalid, Report, Result};

opshost_sdk::manifest! {
    name: "redact-bench",
    vendor: "opshost-testing",
    description: "Times the redaction engine over every file of the logs directory",
    applies_to: "*",
    min_host: "0.1.0",
    requests: [("fs=logs:ro", "reads the log corpus it redacts")],
}

struct RedactBench;

impl opshost_sdk::Operation for RedactBench {
    fn run(args: Vec<String>) -> Result<Report> {
        let rounds =
            match args.first() {
                None => 5,
                Some(r) => r.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    invalid(format!("ROUNDS must be a positive number, not {r:?}"))
                })?,
            };
        let dir = fs::open("logs")?;
        let mut files = Vec::new();
        let mut names: Vec<String> = dir
            .list("")?
            .into_iter()
            .filter(|e| matches!(e.kind, fs::EntryKind::File))
            .map(|e| e.name)
            .collect();
        names.sort();
        for name in names {
            let data = dir.read(&name)?;
            files.push((name, data));
        }
        if std::env::var("REDACT_BENCH_STAGES").is_ok()
            || args.get(1).is_some_and(|a| a == "stages")
        {
            return Ok(Report::ok("stages").data(bench::stages("wasm", &files).map_err(fail)?));
        }
        let f = bench::run(&files, rounds).map_err(fail)?;
        Ok(
            Report::ok(format!("redacted {:.1} MB x{rounds}", f.bytes as f64 / 1e6))
                .data(bench::json("wasm", &f)),
        )
    }
}

opshost_sdk::plugin!(RedactBench);
