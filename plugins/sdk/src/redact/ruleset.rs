//! The compiled rules: which detector runs where, and the search that
//! finds every rule's spans in a file.
use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};

use super::redactor::is_marker;
use super::{entropy, keyname, pattern, pem, rules, url, Detector, RuleId, Span};

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
    pub(super) operator_literals: Vec<Vec<u8>>,
    pub(super) learned_rule: RuleId,
    pub(super) operator_literal_rule: RuleId,
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

    /// The catch-all rules (high entropy, a value seen elsewhere), which
    /// give way to a rule that names what it found.
    pub(super) fn is_generic(&self, id: RuleId) -> bool {
        id == self.learned_rule || self.name(id) == "high-entropy"
    }

    pub(super) fn name(&self, id: RuleId) -> &str {
        self.names
            .get(id as usize)
            .map_or("unknown", String::as_str)
    }

    /// Every secret span the rules find in `data` (no literal pass).
    pub(super) fn detect(&self, data: &[u8]) -> Vec<Span> {
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
    let mut each = Vec::new();
    for d in &rules.whole {
        each.push(time(&mut || d.find(data, &mut v)));
    }
    let whole: f64 = each.iter().sum();
    let detect = time(&mut || v = rules.detect(data));
    vec![
        ("keywords", keywords),
        ("whole-file", whole),
        ("pem", each.first().copied().unwrap_or(0.0)),
        ("entropy", each.get(1).copied().unwrap_or(0.0)),
        ("line-rules", detect - keywords - whole),
        ("detect", detect),
    ]
}
