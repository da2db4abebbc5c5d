//! Token patterns (gitleaks' rule set, the product's own key shapes, operator
//! regexes): one regex per rule, the secret is a capture group or the match.
use std::sync::OnceLock;

use regex::bytes::Regex;

use super::{entropy, Detector, RuleId, Span};

pub(crate) struct Pattern {
    rule: RuleId,
    source: String,
    /// Compiled on first use: most rules never see their keyword in a bundle,
    /// and compiling ~230 regexes up front costs more than redacting.
    regex: OnceLock<Option<Regex>>,
    /// 0: group 1 when the regex has groups, else the whole match.
    group: usize,
    /// Minimum Shannon entropy (bits per byte) of the secret, 0 = none.
    min_entropy: f32,
}

impl Pattern {
    pub(crate) fn new(rule: RuleId, source: &str, group: usize, min_entropy: f32) -> Pattern {
        Pattern {
            rule,
            source: source.to_string(),
            regex: OnceLock::new(),
            group,
            min_entropy,
        }
    }

    /// Compile now; the error names the rule's regex problem.
    pub(crate) fn compiled(rule: RuleId, source: &str) -> Result<Pattern, String> {
        let re = Regex::new(source).map_err(|e| e.to_string())?;
        let p = Pattern::new(rule, source, 0, 0.0);
        let _ = p.regex.set(Some(re));
        Ok(p)
    }

    pub(crate) fn regex(&self) -> Option<&Regex> {
        self.regex
            .get_or_init(|| {
                regex::bytes::RegexBuilder::new(&self.source)
                    .size_limit(50 << 20)
                    .build()
                    .ok()
            })
            .as_ref()
    }
}

impl Detector for Pattern {
    fn find(&self, text: &[u8], out: &mut Vec<Span>) {
        let Some(re) = self.regex() else { return };
        let group = match self.group {
            0 if re.captures_len() > 1 => 1,
            g => g,
        };
        if group == 0 {
            for m in re.find_iter(text) {
                self.push(text, m.start(), m.end(), out);
            }
            return;
        }
        for caps in re.captures_iter(text) {
            if let Some(m) = caps.get(group) {
                self.push(text, m.start(), m.end(), out);
            }
        }
    }
}

impl Pattern {
    fn push(&self, text: &[u8], start: usize, end: usize, out: &mut Vec<Span>) {
        if end <= start {
            return;
        }
        if self.min_entropy > 0.0 && entropy::shannon(&text[start..end]) < self.min_entropy {
            return;
        }
        out.push(Span {
            start,
            end,
            rule: self.rule,
        });
    }
}
