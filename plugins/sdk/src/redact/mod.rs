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
use std::collections::{BTreeSet, HashMap};

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};

mod binary;
mod entropy;
mod keyname;
mod literal;
mod pattern;
mod pem;
mod report;
mod rules;
mod url;

pub use binary::{is_archive, is_binary};
pub use report::Report;

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

/// The compiled rules, built once per run.
pub struct RuleSet {
    names: Vec<String>,
    /// Run on a line when one of their keywords is on it.
    line: Vec<Box<dyn Detector>>,
    keywords: AhoCorasick,
    /// keyword pattern index -> indices into `line`.
    keyword_rules: Vec<Vec<u16>>,
    longest_keyword: usize,
    /// Run over the whole file.
    whole: Vec<Box<dyn Detector>>,
    operator_literals: Vec<Vec<u8>>,
    learned_rule: RuleId,
    operator_literal_rule: RuleId,
}

impl RuleSet {
    pub fn builtin() -> Result<RuleSet, String> {
        let mut b = Builder::default();
        let r = b.name("key-name");
        b.line(Box::new(keyname::KeyName::new(r)?), keyname::KEYWORDS);
        let r = b.name("url-password");
        b.line(Box::new(url::UrlPassword::new(r)?), &["://", ":\\/\\/"]);
        let r = b.name("authorization");
        b.line(
            Box::new(url::AuthScheme::new(r)?),
            &["bearer", "basic", "digest"],
        );
        for (name, keywords, regex) in rules::OWN {
            let r = b.name(name);
            let kw: Vec<&str> = keywords.split(',').collect();
            b.line(Box::new(pattern::Pattern::new(r, regex, 0, 0.0)), &kw);
        }
        for rule in rules::gitleaks()? {
            let r = b.name(rule.name);
            let p = pattern::Pattern::new(r, rule.regex, rule.group, rule.min_entropy);
            b.line(Box::new(p), &rule.keywords);
        }
        let r = b.name("private-key-block");
        b.whole.push(Box::new(pem::Pem::new(r)?));
        let r = b.name("high-entropy");
        b.whole.push(Box::new(entropy::Entropy { rule: r }));
        let learned = b.name("seen-elsewhere");
        let operator = b.name("operator-literal");
        b.finish(learned, operator)
    }

    /// Operator additions: literal values (redacted wherever they appear) and
    /// named regexes (group 1 when the regex has one, else the whole match).
    pub fn with_operator_rules(
        mut self,
        literals: &[String],
        regexes: &[(String, String)],
    ) -> Result<RuleSet, String> {
        for lit in literals {
            if lit.trim().len() < 4 {
                return Err(format!(
                    "redaction literal {:?} is shorter than 4 characters: it would redact ordinary text everywhere; give the whole secret",
                    lit
                ));
            }
            self.operator_literals.push(lit.as_bytes().to_vec());
        }
        for (name, regex) in regexes {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "redaction rule name {name:?}: use letters, digits, '-' and '_' (it appears in the report)"
                ));
            }
            let id = RuleId::try_from(self.names.len())
                .map_err(|_| "too many redaction rules".to_string())?;
            self.names.push(name.clone());
            let p = pattern::Pattern::compiled(id, regex)
                .map_err(|e| format!("redaction rule {name:?}: the regex does not compile: {e}"))?;
            self.whole.push(Box::new(p));
        }
        Ok(self)
    }

    /// Every rule name a report may hold.
    pub fn rule_names(&self) -> &[String] {
        &self.names
    }

    fn name(&self, id: RuleId) -> &str {
        self.names
            .get(id as usize)
            .map_or("unknown", String::as_str)
    }

    /// Every secret span the rules find in `data` (no literal pass).
    fn detect(&self, data: &[u8]) -> Vec<Span> {
        let mut spans = Vec::new();
        for d in &self.whole {
            d.find(data, &mut spans);
        }
        // The first keyword of a line by a plain (non-overlapping) search,
        // then every keyword of that line by an overlapping one from a
        // little before it: overlapping search costs about twice as much,
        // and most of a log is lines without any keyword.
        let n = data.len();
        let mut pos = 0;
        let mut todo: Vec<u16> = Vec::new();
        while pos < n {
            let Some(m) = self.keywords.find(Input::new(data).span(pos..n)) else {
                break;
            };
            let s = memchr::memrchr(b'\n', &data[..m.start()]).map_or(0, |i| i + 1);
            let e = memchr::memchr(b'\n', &data[m.start()..]).map_or(n, |i| m.start() + i);
            // Every other keyword ends at or after this one's end (the plain
            // search reports the earliest end), so it starts no earlier than:
            let from = m.end().saturating_sub(self.longest_keyword).max(s);
            for k in self
                .keywords
                .find_overlapping_iter(Input::new(data).span(from..e))
            {
                todo.extend_from_slice(&self.keyword_rules[k.pattern().as_usize()]);
            }
            self.run_line(data, s, e, &mut todo, &mut spans);
            pos = e + 1;
        }
        // A marker from an earlier redaction is not a secret (redacting
        // twice changes nothing, and a marker is never learned).
        spans.retain(|s| !is_marker(&data[s.start..s.end]));
        spans
    }

    fn run_line(
        &self,
        data: &[u8],
        s: usize,
        e: usize,
        todo: &mut Vec<u16>,
        spans: &mut Vec<Span>,
    ) {
        todo.sort_unstable();
        todo.dedup();
        let first = spans.len();
        for &d in todo.iter() {
            self.line[d as usize].find(&data[s..e], spans);
        }
        for span in &mut spans[first..] {
            span.start += s;
            span.end += s;
        }
        todo.clear();
    }
}

#[derive(Default)]
struct Builder {
    names: Vec<String>,
    line: Vec<Box<dyn Detector>>,
    keywords: Vec<(String, u16)>,
    whole: Vec<Box<dyn Detector>>,
}

impl Builder {
    fn name(&mut self, name: &str) -> RuleId {
        // Several rules may share a name (two regexes for one kind of key).
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i as RuleId;
        }
        self.names.push(name.to_string());
        (self.names.len() - 1) as RuleId
    }

    fn line(&mut self, d: Box<dyn Detector>, keywords: &[&str]) {
        let idx = self.line.len() as u16;
        self.line.push(d);
        for k in keywords {
            self.keywords.push((k.to_ascii_lowercase(), idx));
        }
    }

    fn finish(
        self,
        learned_rule: RuleId,
        operator_literal_rule: RuleId,
    ) -> Result<RuleSet, String> {
        let mut words: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<u16>> = Vec::new();
        for (k, idx) in self.keywords {
            match words.iter().position(|w| *w == k) {
                Some(i) => keyword_rules[i].push(idx),
                None => {
                    words.push(k);
                    keyword_rules.push(vec![idx]);
                }
            }
        }
        let keywords = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            // A full DFA: every byte of every file goes through it.
            .kind(Some(AhoCorasickKind::DFA))
            .build(&words)
            .map_err(|e| format!("cannot build the keyword automaton: {e}"))?;
        let longest_keyword = words.iter().map(String::len).max().unwrap_or(0);
        Ok(RuleSet {
            longest_keyword,
            names: self.names,
            line: self.line,
            keywords,
            keyword_rules,
            whole: self.whole,
            operator_literals: Vec::new(),
            learned_rule,
            operator_literal_rule,
        })
    }
}

/// What [`Redactor::redact`] gives back.
#[derive(Debug, PartialEq, Eq)]
pub enum Redacted {
    Text(Vec<u8>),
    /// Not text: the caller copies it untouched or leaves it out.
    Binary,
}

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
        let merged = merge(spans);
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
        self.literals = literal::Literals::build(&values);
        self.stale = false;
    }
}

fn is_marker(v: &[u8]) -> bool {
    v.starts_with(b"[REDACTED:")
        && v.ends_with(b"]")
        && v[10..v.len() - 1]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
}

/// Sort and join overlapping spans (the earliest, then longest, names it).
fn merge(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
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

#[cfg(test)]
mod tests;

/// Seconds spent by each stage of [`RuleSet`]'s search over `data` (for
/// the redact-bench plugin, to compare stages inside and outside wasm).
#[doc(hidden)]
pub fn bench_stages(rules: &RuleSet, data: &[u8]) -> Vec<(&'static str, f64)> {
    let time = |f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    let mut n = 0;
    let keywords = time(&mut || n = rules.keywords.find_overlapping_iter(data).count());
    let mut v = Vec::new();
    let whole = time(&mut || {
        for d in &rules.whole {
            d.find(data, &mut v);
        }
    });
    let detect = time(&mut || v = rules.detect(data));
    vec![
        ("keywords", keywords),
        ("whole-file", whole),
        ("line-rules", detect - keywords - whole),
        ("detect", detect),
    ]
}
