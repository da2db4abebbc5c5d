//! "Found anywhere, redacted everywhere": every secret value a rule found
//! (and every operator literal) is searched for in every file, with the
//! spellings it takes elsewhere: JSON-escaped, URL-encoded, and decoded
//! back when it was found escaped or encoded.
use std::collections::BTreeSet;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use super::{RuleId, Span};

/// Shorter values would redact ordinary words and numbers everywhere.
pub(crate) const MIN_LEARNED: usize = 6;

/// Every spelling of a secret value worth searching for.
pub(crate) fn variants(value: &[u8], into: &mut BTreeSet<Vec<u8>>) {
    let mut add = |v: Vec<u8>| {
        if v.len() >= MIN_LEARNED {
            into.insert(v);
        }
    };
    add(value.to_vec());
    add(json_escape(value, true));
    add(json_escape(value, false));
    add(percent_encode(value, false));
    add(percent_encode(value, true));
    if value.contains(&b'\\') {
        add(json_unescape(value));
    }
    if value.contains(&b'%') {
        add(percent_decode(value));
    }
}

fn json_escape(v: &[u8], slash: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    for &c in v {
        match c {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
            b'/' if slash => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(c),
        }
    }
    out
}

fn json_unescape(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'\\' && i + 1 < v.len() {
            out.push(match v[i + 1] {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                c => c,
            });
            i += 2;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

fn percent_encode(v: &[u8], lower: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    for &c in v {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            out.push(c);
        } else if lower {
            out.extend_from_slice(format!("%{c:02x}").as_bytes());
        } else {
            out.extend_from_slice(format!("%{c:02X}").as_bytes());
        }
    }
    out
}

fn percent_decode(v: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            if let (Some(h), Some(l)) = (hex(v[i + 1]), hex(v[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

const DFA_MAX_VALUES: usize = 2000;

/// A learned value shorter than this is redacted only where it stands as a
/// word of its own: a password `secret` in an example URL must not turn
/// `secrets` into `[REDACTED]s` in every comment. (It has no 16-character
/// piece to leak, and a longer value is redacted wherever it occurs.)
const WHOLE_WORD_BELOW: usize = 12;

/// The literal pass: one automaton over every value (longest match wins).
pub(crate) struct Literals {
    ac: AhoCorasick,
    rules: Vec<RuleId>,
    /// Per pattern: match only at word boundaries.
    whole_word: Vec<bool>,
}

impl Literals {
    /// `values` with their rule; `learned` says which rule marks a value
    /// learned from the files (operator literals match anywhere).
    pub(crate) fn build(values: &[(Vec<u8>, RuleId)], learned: RuleId) -> Option<Literals> {
        if values.is_empty() {
            return None;
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            // A full DFA is the fastest search but its size grows with the
            // patterns' total length times the alphabet: past a few thousand
            // values (a log full of distinct session tokens) let the crate
            // pick its compact NFA so memory stays bounded.
            .kind((values.len() <= DFA_MAX_VALUES).then_some(AhoCorasickKind::DFA))
            .build(values.iter().map(|(v, _)| v))
            .ok()?;
        Some(Literals {
            ac,
            rules: values.iter().map(|(_, r)| *r).collect(),
            whole_word: values
                .iter()
                .map(|(v, r)| *r == learned && v.len() < WHOLE_WORD_BELOW)
                .collect(),
        })
    }

    pub(crate) fn find(&self, text: &[u8], out: &mut Vec<Span>) {
        let word = |i: Option<&u8>| i.is_some_and(u8::is_ascii_alphanumeric);
        for m in self.ac.find_iter(text) {
            if self.whole_word[m.pattern().as_usize()]
                && (word(m.start().checked_sub(1).and_then(|i| text.get(i)))
                    || word(text.get(m.end())))
            {
                continue;
            }
            out.push(Span {
                start: m.start(),
                end: m.end(),
                rule: self.rules[m.pattern().as_usize()],
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        let mut s = BTreeSet::new();
        variants(b"p@ss/w\"rd", &mut s);
        assert!(s.contains(b"p@ss/w\"rd".as_slice()));
        assert!(s.contains(b"p@ss\\/w\\\"rd".as_slice()));
        assert!(s.contains(b"p%40ss%2Fw%22rd".as_slice()));
        let mut d = BTreeSet::new();
        variants(b"p%40ss%3Aword", &mut d);
        assert!(d.contains(b"p@ss:word".as_slice()));
    }
}
