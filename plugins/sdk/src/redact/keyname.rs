//! Values of keys whose name says "secret": `*PASSWORD*`, `*SECRET*`,
//! `*TOKEN*`, `*KEY*`, `*SIGNING*`, `*AUTH*`, `*CREDENTIAL*`, `*LICENSE*`
//! (any case) in .env lines (`export`, quotes, commented out), JSON (also
//! escaped JSON inside JSON), YAML, logfmt, HTTP headers and command-line
//! flags (`--password value`).
//!
//! Kept: values that are paths (`*_FILE=/run/secrets/x`), numbers and
//! durations, versions, booleans, `${VAR}` references, empty values, and keys
//! whose last word names a setting rather than a secret (`*_FILE`, `*_PATH`,
//! `*_MODE`, `*_TTL`, `*_ID`, `*_URL`, ...; a password inside a URL is the URL
//! redactor's job). For the weaker words (key, token, auth, signing, license)
//! one or two short lowercase words (`AUTH_PROVIDER=oidc`) or an upper-case name with
//! underscores (`"key": "API_KEY_SECRET"`) is a setting too; for password,
//! secret, credential and passphrase it never is.
use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::bytes::Regex;

use super::{entropy, Detector, RuleId, Span};

#[rustfmt::skip]
pub(crate) const KEYWORDS: &[&str] = &[
    "passw", "pwd", "passphrase", "secret", "token", "key", "signing", "auth", "credential",
    "license", "private", "cookie",
];

#[rustfmt::skip]
const STRONG: &[&str] = &["passw", "pwd", "passphrase", "secret", "credential"];

/// Last word of a key that makes it a setting, compared on the key lowercased
/// with `_ - .` removed (so `keyFile`, `KEY_FILE` and `key-file` agree).
#[rustfmt::skip]
const SETTING_SUFFIXES: &[&str] = &[
    "file", "path", "dir", "mode", "ttl", "timeout", "enabled", "type", "algorithm", "alg", "id",
    "ids", "name", "user", "username", "header", "issuer", "audience", "length", "size", "days",
    "interval", "version", "count", "format", "provider", "endpoint", "host", "port", "url", "uri",
    "expiry", "expires", "expiresat", "expiresin", "scope", "scopes", "method", "strategy",
    "policy", "rotation", "location", "store", "backend",
];

/// Keys that contain a keyword but are not about secrets.
#[rustfmt::skip]
const NOT_SECRET_KEYS: &[&str] = &[
    "author", "authors", "authority", "authorized", "authenticated", "keyboard", "keyspace",
    "keyword", "keywords", "tokens", "keys", "monkey", "donkey", "turkey", "hockey",
    // Helm/Kubernetes: these name a Secret object or a key inside it.
    "existingsecret", "existingsecretkey", "existingsecretpasswordkey", "secretref", "secretkeyref",
    "passwordsecretkey", "usernamesecretkey",
];

pub(crate) struct KeyName {
    rule: RuleId,
    words: AhoCorasick,
    env_ref: Regex,
}

impl KeyName {
    pub(crate) fn new(rule: RuleId) -> Result<KeyName, String> {
        let re = |s: &str| Regex::new(s).map_err(|e| format!("key-name rule: {e}"));
        Ok(KeyName {
            rule,
            words: AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostFirst)
                .kind(Some(AhoCorasickKind::DFA))
                .build(KEYWORDS)
                .map_err(|e| format!("key-name rule: {e}"))?,
            env_ref: re(r"^(?:\$\{?[A-Za-z_][A-Za-z0-9_]*(?::?-[^}]*)?\}?|%[A-Za-z_]+%)$")?,
        })
    }

    fn keep(&self, key: &[u8], value: &[u8]) -> bool {
        let key: String = key
            .iter()
            .filter(|c| !matches!(c, b'_' | b'-' | b'.'))
            .map(|c| c.to_ascii_lowercase() as char)
            .collect();
        if value.is_empty() || value.starts_with(b"[REDACTED") || value == b"|" || value == b">" {
            return true;
        }
        if NOT_SECRET_KEYS.contains(&key.as_str()) {
            return true;
        }
        if SETTING_SUFFIXES.iter().any(|s| key.ends_with(s)) {
            // ...unless the key's last word is itself a keyword (`TOKEN_ID_TOKEN`).
            let last_is_keyword = KEYWORDS.iter().any(|k| key.ends_with(k));
            if !last_is_keyword {
                return true;
            }
        }
        let lower = value.to_ascii_lowercase();
        if matches!(
            lower.as_slice(),
            b"true"
                | b"false"
                | b"yes"
                | b"no"
                | b"on"
                | b"off"
                | b"null"
                | b"none"
                | b"nil"
                | b"enabled"
                | b"disabled"
                | b"required"
                | b"optional"
        ) {
            return true;
        }
        if is_number(value) || is_version(value) {
            return true;
        }
        // The one regex left here, only where its first byte fits.
        if matches!(value[0], b'$' | b'%') && self.env_ref.is_match(value) {
            return true;
        }
        // A path, unless it is random as a whole (base64 may start with '/').
        if (value.starts_with(b"/")
            || value.starts_with(b"./")
            || value.starts_with(b"../")
            || value.starts_with(b"~/")
            || value.starts_with(b"file:"))
            && !entropy::secret_like(value)
        {
            return true;
        }
        let strong = STRONG.iter().any(|s| key.contains(s));
        !strong && (is_short_words(value) || is_caps_name(value))
    }
}

impl Detector for KeyName {
    fn find(&self, text: &[u8], out: &mut Vec<Span>) {
        // Parsed by hand around each keyword (no regex): this runs on every
        // line that says "key", "auth" or "token", which is most of a log.
        let mut done = 0;
        for m in self.words.find_iter(text) {
            if m.start() < done {
                continue;
            }
            let ks = text[..m.start()]
                .iter()
                .rposition(|&c| !is_key_byte(c))
                .map_or(0, |p| p + 1);
            let ke = m.end()
                + text[m.end()..]
                    .iter()
                    .take_while(|&&c| is_key_byte(c))
                    .count();
            done = ke;
            let value = value_after(text, ke).or_else(|| flag_value(text, ks, ke));
            let Some(value) = value else {
                continue;
            };
            done = value.end.max(ke);
            // `scheme://user:password@host`: the URL redactor's job (the
            // host stays).
            if text[..ks].ends_with(b"//") {
                continue;
            }
            if value.is_empty() || self.keep(&text[ks..ke], &text[value.clone()]) {
                continue;
            }
            out.push(Span {
                start: value.start,
                end: value.end,
                rule: self.rule,
            });
        }
    }
}

/// `--password value` / `--api-token value` on a command line (`ps`,
/// `docker inspect` Args): the next word.
fn flag_value(t: &[u8], ks: usize, ke: usize) -> Option<Range<usize>> {
    if !t[ks..].starts_with(b"--") || t.get(ke) != Some(&b' ') {
        return None;
    }
    let len = t[ke + 1..]
        .iter()
        .take_while(|&&c| !is_value_end(c))
        .count();
    (len > 0 && t[ke + 1] != b'-').then_some(ke + 1..ke + 1 + len)
}

/// One or two lowercase words of at most 10 letters (`oidc`, `round-robin`):
/// a setting. Longer or more words may be a passphrase
/// (`correct-horse-battery-staple`).
fn is_short_words(v: &[u8]) -> bool {
    let mut parts = v.split(|c| matches!(c, b'-' | b'_' | b' '));
    let word = |w: &[u8]| (1..=10).contains(&w.len()) && w.iter().all(u8::is_ascii_lowercase);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), None, _) => word(a),
        (Some(a), Some(b), None) => word(a) && word(b),
        _ => false,
    }
}

/// An upper-case name with underscores (`API_KEY_SECRET`): a reference to a
/// key, not a value.
fn is_caps_name(v: &[u8]) -> bool {
    v.first().is_some_and(u8::is_ascii_uppercase)
        && v.contains(&b'_')
        && v.split(|&c| c == b'_').all(|p| {
            !p.is_empty()
                && p.iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        })
}

fn digits(v: &[u8]) -> usize {
    v.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// `-?[0-9]+(\.[0-9]+)?` with an optional unit: `3600`, `1.5`, `30s`, `512MB`, `80%`.
/// By hand, not regex: this runs for most values in a log.
fn is_number(v: &[u8]) -> bool {
    let mut i = usize::from(v.first() == Some(&b'-'));
    let n = digits(&v[i..]);
    if n == 0 {
        return false;
    }
    i += n;
    if v.get(i) == Some(&b'.') {
        let f = digits(&v[i + 1..]);
        if f == 0 {
            return false;
        }
        i += 1 + f;
    }
    let unit = v[i..].to_ascii_lowercase();
    matches!(
        unit.as_slice(),
        b"" | b"ms" | b"s" | b"m" | b"h" | b"d" | b"w" | b"kb" | b"mb" | b"gb" | b"k" | b"%"
    )
}

/// `v?[0-9]+(\.[0-9]+)+([-+][0-9A-Za-z.-]+)?`: `1.3.2`, `v2.0.1-rc.1+build.5`.
fn is_version(v: &[u8]) -> bool {
    let mut i = usize::from(v.first() == Some(&b'v'));
    let n = digits(&v[i..]);
    if n == 0 {
        return false;
    }
    i += n;
    let mut parts = 0;
    while v.get(i) == Some(&b'.') {
        let d = digits(&v[i + 1..]);
        if d == 0 {
            return false;
        }
        i += 1 + d;
        parts += 1;
    }
    if parts == 0 {
        return false;
    }
    match v.get(i) {
        None => true,
        Some(b'-' | b'+') => {
            i + 1 < v.len()
                && v[i + 1..]
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+'))
        }
        Some(_) => false,
    }
}

fn is_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')
}

/// Ends an unquoted value.
fn is_value_end(c: u8) -> bool {
    c.is_ascii_whitespace()
        || matches!(
            c,
            b'"' | b'\''
                | b','
                | b';'
                | b'{'
                | b'}'
                | b'['
                | b']'
                | b'('
                | b')'
                | b'<'
                | b'>'
                | b'\\'
        )
}

/// After a key ending at `i`: `["]\s*(=|:|=>)\s*value`, the value's range
/// without its quotes (`"..."`, `'...'`, escaped `\"...\"` inside JSON), or
/// an unquoted run (with a `Bearer ` / `Basic ` ... scheme in front).
fn value_after(t: &[u8], mut i: usize) -> Option<Range<usize>> {
    if t.get(i) == Some(&b'\\') {
        i += 1;
    }
    if matches!(t.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    while matches!(t.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    if t.get(i..)?.starts_with(b"=>") {
        i += 2;
    } else if matches!(t.get(i), Some(b'=' | b':')) {
        i += 1;
    } else {
        return None;
    }
    while matches!(t.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    let v = t.get(i..)?;
    if v.starts_with(b"\\\"") {
        let end = memchr::memmem::find(&v[2..], b"\\\"")?;
        return Some(i + 2..i + 2 + end);
    }
    match v.first()? {
        b'"' => {
            let mut j = 1;
            while j < v.len() {
                match v[j] {
                    b'\\' => j += 2,
                    b'"' => return Some(i + 1..i + j),
                    _ => j += 1,
                }
            }
            None
        }
        b'\'' => {
            let end = memchr::memchr(b'\'', &v[1..])?;
            Some(i + 1..i + 1 + end)
        }
        _ => {
            for scheme in [&b"bearer"[..], b"basic", b"token", b"digest"] {
                let n = scheme.len();
                if v.len() > n
                    && v[..n].eq_ignore_ascii_case(scheme)
                    && matches!(v[n], b' ' | b'\t')
                {
                    let gap = v[n..]
                        .iter()
                        .take_while(|c| matches!(c, b' ' | b'\t'))
                        .count();
                    if v.get(n + gap).is_some_and(|&c| !is_value_end(c)) {
                        let len = n
                            + gap
                            + v[n + gap..]
                                .iter()
                                .take_while(|&&c| !is_value_end(c))
                                .count();
                        return Some(i..i + len);
                    }
                }
            }
            // `${VAR:-default}` (compose, shells) is one value: a reference
            // the keep-list knows, not `$` followed by another key.
            if v.starts_with(b"${") {
                if let Some(end) = memchr::memchr(b'}', v) {
                    return Some(i..i + end + 1);
                }
            }
            let len = v.iter().take_while(|&&c| !is_value_end(c)).count();
            (len > 0).then_some(i..i + len)
        }
    }
}
