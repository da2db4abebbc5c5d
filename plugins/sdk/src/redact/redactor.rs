//! One bundle's redaction: the learned values, the spans learn() found,
//! the rewrite and the report.
use std::collections::{BTreeSet, HashMap};

use super::{is_archive, is_binary, literal, Redacted, Report, RuleId, RuleSet, Span};

/// One bundle's redaction: remembers every secret value found so far so it
/// is redacted everywhere (two passes: learn over every file, then redact).
pub struct Redactor<'r> {
    rules: &'r RuleSet,
    learned: BTreeSet<Vec<u8>>,
    literals: Option<literal::Literals>,
    /// Learned values changed since `literals` was built.
    stale: bool,
    /// What learn() found per path, so redact() does not search again.
    seen: HashMap<String, Seen>,
    report: Report,
}

/// The rule spans of a learned file, with enough of the file to tell that
/// redact() got the same bytes (its length and both ends).
struct Seen {
    len: usize,
    ends: Vec<u8>,
    spans: Vec<Span>,
}

fn ends(data: &[u8]) -> Vec<u8> {
    let n = data.len();
    let mut v = data[..n.min(256)].to_vec();
    v.extend_from_slice(&data[n.saturating_sub(256)..]);
    v
}

impl<'r> Redactor<'r> {
    pub fn new(rules: &'r RuleSet) -> Self {
        Redactor {
            rules,
            learned: BTreeSet::new(),
            literals: None,
            stale: true,
            seen: HashMap::new(),
            report: Report::default(),
        }
    }

    /// Pass 1: remember the secret values in a file.
    pub fn learn(&mut self, path: &str, data: &[u8]) {
        if is_binary(data) {
            return;
        }
        let spans = self.rules.detect(data);
        self.remember(data, &spans);
        let seen = Seen {
            len: data.len(),
            ends: ends(data),
            spans,
        };
        self.seen.insert(path.to_string(), seen);
    }

    /// Pass 2: the redacted bytes, or Binary.
    pub fn redact(&mut self, path: &str, data: &[u8]) -> Redacted {
        if is_binary(data) || is_archive(data) {
            self.report.binary.push(path.to_string());
            return Redacted::Binary;
        }
        let mut spans = match self.seen.remove(path) {
            Some(s) if s.len == data.len() && s.ends == ends(data) => s.spans,
            _ => self.rules.detect(data),
        };
        // A caller that skipped learn() still gets this file's own values
        // redacted at every place in it.
        self.remember(data, &spans);
        if self.stale {
            self.rebuild_literals();
        }
        if let Some(lit) = &self.literals {
            lit.find(data, &mut spans);
        }
        let merged = merge(spans, |rule| self.rules.is_generic(rule));
        let mut out = Vec::with_capacity(data.len());
        let mut at = 0;
        for s in &merged {
            out.extend_from_slice(&data[at..s.start]);
            let name = self.rules.name(s.rule);
            out.extend_from_slice(b"[REDACTED:");
            out.extend_from_slice(name.as_bytes());
            out.push(b']');
            self.report.record(path, name);
            at = s.end;
        }
        out.extend_from_slice(&data[at..]);
        if merged.is_empty() {
            self.report.files.entry(path.to_string()).or_default();
        }
        Redacted::Text(out)
    }

    /// Per file, rule name -> count (never a secret).
    pub fn report(&self) -> Report {
        self.report.clone()
    }

    fn remember(&mut self, data: &[u8], spans: &[Span]) {
        for s in spans {
            let v = &data[s.start..s.end];
            if v.len() >= literal::MIN_LEARNED && !self.learned.contains(v) {
                literal::variants(v, &mut self.learned);
                self.stale = true;
            }
        }
    }

    fn rebuild_literals(&mut self) {
        let mut values: Vec<(Vec<u8>, RuleId)> = self
            .rules
            .operator_literals
            .iter()
            .map(|v| (v.clone(), self.rules.operator_literal_rule))
            .collect();
        values.extend(
            self.learned
                .iter()
                .map(|v| (v.clone(), self.rules.learned_rule)),
        );
        self.literals = literal::Literals::build(&values, self.rules.learned_rule);
        self.stale = false;
    }
}

pub(super) fn is_marker(v: &[u8]) -> bool {
    v.starts_with(b"[REDACTED:")
        && v.ends_with(b"]")
        && v[10..v.len() - 1]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
}

/// Sort and join overlapping spans (the earliest, then longest, names it).
/// Overlapping spans become one, named after the first (earliest, then
/// longest; on a tie the specific rule, not a generic one such as
/// high entropy: the report should say an operator's rule fired).
pub(super) fn merge(mut spans: Vec<Span>, generic: impl Fn(RuleId) -> bool) -> Vec<Span> {
    spans.sort_unstable_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then(generic(a.rule).cmp(&generic(b.rule)))
            .then(a.rule.cmp(&b.rule))
    });
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans {
        if s.end <= s.start {
            continue;
        }
        match out.last_mut() {
            Some(last) if s.start < last.end => last.end = last.end.max(s.end),
            _ => out.push(s),
        }
    }
    out
}
