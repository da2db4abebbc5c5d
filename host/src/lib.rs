//! opshost: runs day-2 operations as sandboxed WebAssembly components,
//! giving each only what the operator's policy grants.

pub mod audit;
pub mod caps;
pub mod config;
pub mod deployment_version;
pub mod dotenv;
pub mod exit;
pub mod gate;
pub mod output;
pub mod plugin;
pub mod policy;
pub mod runtime;
pub mod trust;
