//! The guest side of opshost: what a plugin author uses.
//!
//! ```ignore
//! use opshost_sdk::{fs, progress, Report, Result};
//!
//! opshost_sdk::manifest! {
//!     name: "example",
//!     vendor: "opshost",
//!     description: "Checks the API and writes a report",
//!     applies_to: "*",
//!     min_host: "0.1.0",
//!     requests: [("fs=work:rw", "writes the report")],
//! }
//!
//! struct Example;
//! impl opshost_sdk::Operation for Example {
//!     fn run(args: Vec<String>) -> Result<Report> { … }
//! }
//! opshost_sdk::plugin!(Example);
//! ```

pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "opshost:plugin/operation",
        pub_export_macro: true,
        default_bindings_module: "opshost_sdk::bindings",
        generate_all,
    });
}

pub mod container;
pub mod dotenv;
pub mod io;
pub mod manifest;
pub mod redact;
pub mod report;
pub mod runbook;
pub mod secure;

pub use bindings::opshost::plugin::types::{Error, Outcome};
pub use bindings::opshost::plugin::{crypto, db, fs, http, progress};
pub use bindings::Guest as Operation;
pub use report::Report;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A plugin-side failure with a message (the `failed` case).
pub fn fail(message: impl Into<String>) -> Error {
    Error::Failed(message.into())
}

/// A bad argument from the operator (the `invalid-input` case).
pub fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidInput(message.into())
}

/// Export a type implementing [`Operation`] as the plugin's `run`.
#[macro_export]
macro_rules! plugin {
    ($ty:ident) => {
        $crate::bindings::export!($ty with_types_in $crate::bindings);
    };
}

/// The error as one line for an operator, naming who is to blame.
pub fn describe(e: &Error) -> String {
    match e {
        Error::Denied(m) => format!("denied: {m}"),
        Error::NotFound(m) => format!("not found: {m}"),
        Error::InvalidInput(m) => format!("invalid input: {m}"),
        Error::Failed(m) => m.clone(),
        Error::TimedOut(m) => format!("timed out: {m}"),
        Error::Unsupported(m) => format!("unsupported: {m}"),
    }
}

/// Add context to an error, keeping its case (who is to blame).
pub trait Context<T> {
    fn context(self, what: impl std::fmt::Display) -> Result<T>;
}

impl<T> Context<T> for Result<T> {
    fn context(self, what: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| match e {
            Error::Denied(m) => Error::Denied(format!("{what}: {m}")),
            Error::NotFound(m) => Error::NotFound(format!("{what}: {m}")),
            Error::InvalidInput(m) => Error::InvalidInput(format!("{what}: {m}")),
            Error::Failed(m) => Error::Failed(format!("{what}: {m}")),
            Error::TimedOut(m) => Error::TimedOut(format!("{what}: {m}")),
            Error::Unsupported(m) => Error::Unsupported(format!("{what}: {m}")),
        })
    }
}

/// Simple HTTP calls on a granted base URL.
pub mod web {
    use super::http::{self, Request, Response};
    use super::Result;

    pub fn get(api: &str, path: &str) -> Result<Response> {
        http::send(
            api,
            &Request {
                method: "GET".into(),
                path: path.into(),
                headers: vec![],
                body: None,
                timeout_ms: None,
            },
        )
    }

    pub fn post(
        api: &str,
        path: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<Response> {
        http::send(
            api,
            &Request {
                method: "POST".into(),
                path: path.into(),
                headers,
                body: Some(body),
                timeout_ms: None,
            },
        )
    }
}
