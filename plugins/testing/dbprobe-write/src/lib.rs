//! Test plugin: database operations under a `db=agledger:write` grant.

opshost_sdk::manifest! {
    name: "dbprobe-write",
    vendor: "opshost-testing",
    description: "Database probe with a write grant",
    applies_to: "*",
    min_host: "0.1.0",
    requests: [
        ("db=agledger:write", "the operations under test"),

    ],
}

include!("../../dbprobe-ops.rs");
