//! Long high-entropy strings with no other clue (a random token pasted into
//! a log). Runs over the whole file with a byte table, so it costs one pass.
//!
//! Kept on purpose: hexadecimal strings (image digests `sha256:<hex>`, git
//! SHAs, container ids, hashes; hex with dashes: UUIDs). A hex secret such
//! as API_KEY_SECRET is caught by its key name and then everywhere by the
//! learned-literal pass. Also kept: tokens without upper case, lower case and
//! digits together (words, identifiers, paths), and tokens whose entropy is
//! under 75% of the most their length allows (repetitive names). Random
//! letters and digits fall under 81% about once in a thousand tokens (the
//! corpus test met one at 85%), under 75% practically never; the price is
//! that some CamelCase names with digits are redacted too.
use super::{Detector, RuleId, Span};

/// Shorter tokens are too often words or ids to judge by entropy.
pub(crate) const MIN_LEN: usize = 24;

const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        // '=' only as trailing padding (below): inside a token it is the
        // `KEY=value` separator, and the key name must stay.
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'_' | b'-');
        b += 1;
    }
    t
}
static TOKEN: [bool; 256] = token_table();

pub(crate) struct Entropy {
    pub(crate) rule: RuleId,
}

impl Detector for Entropy {
    fn find(&self, text: &[u8], out: &mut Vec<Span>) {
        // A run of MIN_LEN token bytes holds one of every MIN_LEN-th byte, so
        // only those are looked at; a token byte there is grown into its run.
        // Log text is mostly short words: most of it is never read.
        let n = text.len();
        let mut p = MIN_LEN - 1;
        let mut done = 0;
        while p < n {
            if !TOKEN[text[p] as usize] {
                p += MIN_LEN;
                continue;
            }
            // Iterators, not indexing: no bounds check per byte (it shows in wasm).
            let start = text[done..p]
                .iter()
                .rposition(|&c| !TOKEN[c as usize])
                .map_or(done, |i| done + i + 1);
            let mut end = text[p..]
                .iter()
                .position(|&c| !TOKEN[c as usize])
                .map_or(n, |i| p + i);
            let mut pad = 0;
            while pad < 2 && end < n && text[end] == b'=' {
                end += 1;
                pad += 1;
            }
            if end - start >= MIN_LEN {
                self.token(text, start, end, out);
            }
            done = end;
            // A run starting at `end` or later reaches end + MIN_LEN - 1.
            p = end + MIN_LEN - 1;
        }
    }
}

impl Entropy {
    fn token(&self, text: &[u8], start: usize, end: usize, out: &mut Vec<Span>) {
        let t = &text[start..end];
        // Random as a whole (base64 may start with '/'): redacted whole.
        if secret_like(t) {
            out.push(Span {
                start,
                end,
                rule: self.rule,
            });
            return;
        }
        // A path: judge each segment (a hex directory name is kept, a key
        // file name made of random characters is not).
        if t[0] == b'/' || t.windows(2).any(|w| w == b"//") {
            let mut s = start;
            for seg in t.split(|&c| c == b'/') {
                if seg.len() >= MIN_LEN && secret_like(seg) {
                    out.push(Span {
                        start: s,
                        end: s + seg.len(),
                        rule: self.rule,
                    });
                }
                s += seg.len() + 1;
            }
        }
    }
}

/// Does this token look like a random secret? (See the module comment.)
pub(crate) fn secret_like(t: &[u8]) -> bool {
    let core = trim(t);
    if core.len() < MIN_LEN {
        return false;
    }
    if core.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-') {
        return false;
    }
    let upper = core.iter().any(u8::is_ascii_uppercase);
    let lower = core.iter().any(u8::is_ascii_lowercase);
    let digit = core.iter().any(u8::is_ascii_digit);
    if !(upper && lower && digit) {
        return false;
    }
    let most = (core.len().min(64) as f32).log2();
    shannon(core) >= 0.75 * most
}

fn trim(t: &[u8]) -> &[u8] {
    let pad = |c: &u8| matches!(c, b'=' | b'-' | b'_' | b'/');
    let start = t.iter().position(|c| !pad(c)).unwrap_or(t.len());
    let end = t.iter().rposition(|c| !pad(c)).map_or(start, |e| e + 1);
    &t[start..end]
}

/// Shannon entropy in bits per byte.
pub(crate) fn shannon(t: &[u8]) -> f32 {
    if t.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &c in t {
        counts[c as usize] += 1;
    }
    let n = t.len() as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}
