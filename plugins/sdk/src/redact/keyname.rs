//! Values of keys whose name says "secret": `*PASSWORD*`, `*SECRET*`,
//! `*TOKEN*`, `*KEY*`, `*SIGNING*`, `*AUTH*`, `*CREDENTIAL*`, `*LICENSE*`
//! (any case) in .env lines (`export`, quotes, commented out), JSON (also
//! escaped JSON inside JSON), YAML, logfmt and HTTP headers.
//!
//! Kept: values that are paths (`*_FILE=/run/secrets/x`), numbers and
//! durations, versions, booleans, `${VAR}` references, empty values, and keys
//! whose last word names a setting rather than a secret (`*_FILE`, `*_PATH`,
//! `*_MODE`, `*_TTL`, `*_ID`, `*_URL`, ...; a password inside a URL is the URL
//! redactor's job). For the weaker words (key, token, auth, signing, license)
//! a plain lowercase word (`AUTH_PROVIDER=oidc`) or an upper-case name with
//! underscores (`"key": "API_KEY_SECRET"`) is a setting too; for password,
//! secret, credential and passphrase it never is.
use std::ops::Range;

use regex::bytes::Regex;

use super::{Detector, RuleId, Span};

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
    re: Regex,
    number: Regex,
    version: Regex,
    env_ref: Regex,
    lower_word: Regex,
    caps_name: Regex,
}

impl KeyName {
    pub(crate) fn new(rule: RuleId) -> Result<KeyName, String> {
        let re = |s: &str| Regex::new(s).map_err(|e| format!("key-name rule: {e}"));
        Ok(KeyName {
            rule,
            re: re(concat!(
                r#"(?i)(?P<key>[a-z0-9_.\-]*(?:passw(?:or)?d|pwd|passphrase|secret|token|key|signing|auth|credential|license|private|cookie)[a-z0-9_.\-]*)"#,
                r#"(?:\\?["'])?[ \t]*(?:=|:|=>)[ \t]*"#,
                r#"(?:\\"(?P<v1>(?:[^"\\]|\\[^"])*)\\"|"(?P<v2>(?:[^"\\]|\\.)*)"|'(?P<v3>[^']*)'"#,
                r#"|(?P<v4>(?:(?:bearer|basic|token|digest)[ \t]+)?[^\s"',;{}\[\]()<>\\]+))"#,
            ))?,
            number: re(r"^-?[0-9]+(?:\.[0-9]+)?(?i:ms|s|m|h|d|w|kb|mb|gb|k|%)?$")?,
            version: re(r"^v?[0-9]+(?:\.[0-9]+)+(?:[-+][0-9A-Za-z.\-]+)?$")?,
            env_ref: re(r"^(?:\$\{?[A-Za-z_][A-Za-z0-9_]*(?::?-[^}]*)?\}?|%[A-Za-z_]+%)$")?,
            lower_word: re(r"^[a-z]+(?:[-_ ][a-z]+)*$")?,
            caps_name: re(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")?,
        })
    }

    fn keep(&self, key: &[u8], value: &[u8]) -> bool {
        let key: String = String::from_utf8_lossy(key)
            .to_ascii_lowercase()
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | '.'))
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
        if self.number.is_match(value)
            || self.version.is_match(value)
            || self.env_ref.is_match(value)
        {
            return true;
        }
        if value.starts_with(b"/")
            || value.starts_with(b"./")
            || value.starts_with(b"../")
            || value.starts_with(b"~/")
            || value.starts_with(b"file:")
        {
            return true;
        }
        let strong = STRONG.iter().any(|s| key.contains(s));
        !strong && (self.lower_word.is_match(value) || self.caps_name.is_match(value))
    }
}

impl Detector for KeyName {
    fn find(&self, text: &[u8], out: &mut Vec<Span>) {
        // find_iter (a DFA) and a split by hand: capture groups would send
        // every match through the slower backtracking engine.
        for m in self.re.find_iter(text) {
            let Some((key, value)) = split(m.as_bytes()) else {
                continue;
            };
            let key = m.start() + key.start..m.start() + key.end;
            let value = m.start() + value.start..m.start() + value.end;
            // `scheme://user:password@host`: the URL redactor's job (the
            // host stays).
            if text[..key.start].ends_with(b"//") {
                continue;
            }
            if value.is_empty() || self.keep(&text[key], &text[value.clone()]) {
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

fn is_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')
}

/// A match `key["]\s*(=|:|=>)\s*value` split into the key's and the value's
/// ranges, quotes (also escaped `\"`) taken off the value.
fn split(t: &[u8]) -> Option<(Range<usize>, Range<usize>)> {
    let key_end = t.iter().position(|&c| !is_key_byte(c))?;
    let mut i = key_end;
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
    let n = v.len();
    let strip = if n >= 4 && v.starts_with(b"\\\"") && v.ends_with(b"\\\"") {
        2
    } else if n >= 2 && ((v[0] == b'"' && v[n - 1] == b'"') || (v[0] == b'\'' && v[n - 1] == b'\''))
    {
        1
    } else {
        0
    };
    Some((0..key_end, i + strip..t.len() - strip))
}
