//! Test and benchmark plugin: does nothing, or makes N trivial host calls
//! (`calls N`), to measure start-up and the cost of one host call.

use opshost_sdk::{invalid, progress, Report, Result};

opshost_sdk::manifest! {
    name: "noop",
    vendor: "opshost-testing",
    description: "Does nothing (start-up benchmark) or N progress calls (host-call benchmark)",
    applies_to: "*",
    min_host: "0.1.0",
    requests: [],
}

struct Noop;

impl opshost_sdk::Operation for Noop {
    fn run(args: Vec<String>) -> Result<Report> {
        match args.as_slice() {
            [] => Ok(Report::ok("nothing done")),
            [cmd, n] if cmd == "calls" => {
                let n: u64 = n
                    .parse()
                    .map_err(|_| invalid(format!("calls takes a number, not {n:?}")))?;
                for i in 0..n {
                    progress::advance(i);
                }
                Ok(Report::ok(format!("{n} host calls")).fact("calls", n))
            }
            other => Err(invalid(format!(
                "unknown arguments {other:?}: use no argument or `calls N`"
            ))),
        }
    }
}

opshost_sdk::plugin!(Noop);
