//! Redaction engine for support bundles.
//!
//! Shape (after replicatedhq/troubleshoot `pkg/redact/`): one small
//! interface, [`Detector`], one file per kind of redactor, every redaction
//! recorded per file and rule in a [`Report`] (never the secret):
//!
//! - `keyname`: values of keys named like secrets (.env, JSON, YAML, logfmt)
//! - `url`: passwords in URLs, `Bearer`/`Basic` credentials
//! - `pattern` + `rules`: token shapes (the product's keys, Ed25519 PKCS#8,
//!   JWT, AWS, GitHub, Slack, ... and gitleaks' rule set as data)
//! - `pem`: private key blocks spanning lines
//! - `entropy`: long random strings with no other clue
//! - `literal`: every value found anywhere, redacted everywhere
//!
//! Line rules run only on lines holding one of their keywords (one
//! Aho-Corasick pass finds them), so a log with no secret costs a keyword
//! scan plus the entropy scan, not 250 regexes.
//!
//! Use: build a [`RuleSet`] once, then per bundle a [`Redactor`]: call
//! [`Redactor::learn`] on every file, then [`Redactor::redact`] on every
//! file (a secret met in file 9 is then redacted in file 1 too).
mod binary;
mod entropy;
mod keyname;
mod literal;
mod pattern;
mod pem;
mod redactor;
mod report;
mod rules;
mod ruleset;
mod url;

pub use binary::{is_archive, is_binary};
pub use redactor::Redactor;
pub use report::Report;
#[doc(hidden)]
pub use ruleset::bench_stages;
pub use ruleset::RuleSet;

type RuleId = u16;

/// A secret at `start..end` of the text given to a detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    pub rule: RuleId,
}

/// The one interface every redactor implements: push the secrets in `text`.
pub(crate) trait Detector: Send + Sync {
    fn find(&self, text: &[u8], out: &mut Vec<Span>);
}

/// What [`Redactor::redact`] gives back.
#[derive(Debug, PartialEq, Eq)]
pub enum Redacted {
    Text(Vec<u8>),
    /// Not text: the caller copies it untouched or leaves it out.
    Binary,
}

#[cfg(test)]
mod tests;
