//! Test plugin: database operations under a `db=agledger:admin` grant.

opshost_sdk::manifest! {
    name: "dbprobe-admin",
    vendor: "opshost-testing",
    description: "Database probe with a admin grant",
    applies_to: "*",
    min_host: "0.1.0",
    requests: [
        ("db=agledger:admin", "the operations under test"),
        ("fs=backups:rw", "writes and reads dumps"),
    ],
}

include!("../../dbprobe-ops.rs");
