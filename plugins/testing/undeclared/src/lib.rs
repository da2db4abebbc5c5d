//! Hostile test plugin: uses the fs interface without requesting any fs
//! grant in its manifest. The host must refuse it before instantiation.

use opshost_sdk::{fs, Report, Result};

opshost_sdk::manifest! {
    name: "undeclared",
    vendor: "opshost-testing",
    description: "Imports fs without declaring it",
    applies_to: "*",
    min_host: "0.1.0",
    requests: [],
}

struct Undeclared;

impl opshost_sdk::Operation for Undeclared {
    fn run(_args: Vec<String>) -> Result<Report> {
        let dir = fs::open("work")?;
        Ok(Report::ok(format!("opened {}", dir.name())))
    }
}

opshost_sdk::plugin!(Undeclared);
