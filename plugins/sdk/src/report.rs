//! Building the report an operation returns.

use crate::bindings::opshost::plugin::types::{Outcome, Report as WitReport};

pub type Report = WitReport;

impl WitReport {
    /// A successful report with a one-line summary.
    pub fn ok(summary: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Ok,
            summary: summary.into(),
            facts: Vec::new(),
            data: None,
        }
    }

    /// Completed, but the operator must look at something (exit code 6).
    pub fn attention(summary: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Attention,
            ..Self::ok(summary)
        }
    }

    pub fn fact(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.facts.push((key.into(), value.to_string()));
        self
    }

    /// A JSON document for `--json` consumers.
    pub fn data(mut self, json: impl Into<String>) -> Self {
        self.data = Some(json.into());
        self
    }
}
