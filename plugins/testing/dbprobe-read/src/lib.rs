//! Test plugin: database operations under a `db=agledger:read` grant.

opshost_sdk::manifest! {
    name: "dbprobe-read",
    vendor: "opshost-testing",
    description: "Database probe with a read grant",
    applies_to: "*",
    min_host: "0.1.0",
    requests: [
        ("db=agledger:read", "the operations under test"),

    ],
}

include!("../../dbprobe-ops.rs");
