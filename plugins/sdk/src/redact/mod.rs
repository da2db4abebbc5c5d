//! Redaction engine for support bundles (skeleton: API first, engine next).
use std::collections::BTreeMap;

/// The compiled rules, built once per run.
pub struct RuleSet {
    _private: (),
}

impl RuleSet {
    pub fn builtin() -> Result<RuleSet, String> {
        Ok(RuleSet { _private: () })
    }

    /// Operator additions: literal values and named regexes.
    pub fn with_operator_rules(
        self,
        _literals: &[String],
        _regexes: &[(String, String)],
    ) -> Result<RuleSet, String> {
        Ok(self)
    }
}

/// One bundle's redaction.
pub struct Redactor<'r> {
    _rules: &'r RuleSet,
    report: Report,
}

pub enum Redacted {
    Text(Vec<u8>),
    Binary,
}

#[derive(Debug, Default, Clone)]
pub struct Report {
    /// path -> rule name -> count
    pub files: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "files": self.files })
    }
    pub fn to_text(&self) -> String {
        String::new()
    }
}

impl<'r> Redactor<'r> {
    pub fn new(rules: &'r RuleSet) -> Self {
        Redactor {
            _rules: rules,
            report: Report::default(),
        }
    }
    pub fn learn(&mut self, _path: &str, _data: &[u8]) {}
    pub fn redact(&mut self, _path: &str, data: &[u8]) -> Redacted {
        if data.contains(&0) {
            Redacted::Binary
        } else {
            Redacted::Text(data.to_vec())
        }
    }
    pub fn report(&self) -> Report {
        self.report.clone()
    }
}

pub fn is_archive(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b]) || data.starts_with(b"PK\x03\x04")
}
