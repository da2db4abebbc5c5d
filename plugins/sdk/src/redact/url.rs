//! Credentials in URLs and HTTP authorization schemes.
use regex::bytes::Regex;

use super::{Detector, RuleId, Span};

/// `scheme://user:password@host`: the password runs to the LAST `@` before
/// the host, so passwords holding `:` or `@` (unencoded) are covered whole.
/// `:\/\/` is the same URL inside JSON.
pub(crate) struct UrlPassword {
    rule: RuleId,
    re: Regex,
}

impl UrlPassword {
    pub(crate) fn new(rule: RuleId) -> Result<UrlPassword, String> {
        Ok(UrlPassword {
            rule,
            re: Regex::new(
                r#"(?i)[a-z][a-z0-9+.\-]*:(?:\\?/){2}[^\s:/@'"\\]*:(?P<pw>[^\s'"]*)@[^\s@/?#'"\\]+"#,
            )
            .map_err(|e| format!("url rule: {e}"))?,
        })
    }
}

impl Detector for UrlPassword {
    fn find(&self, text: &[u8], out: &mut Vec<Span>) {
        for caps in self.re.captures_iter(text) {
            if let Some(pw) = caps.name("pw").filter(|m| !m.is_empty()) {
                out.push(Span {
                    start: pw.start(),
                    end: pw.end(),
                    rule: self.rule,
                });
            }
        }
    }
}

/// `Bearer <token>`, `Basic <base64>`, `Digest <...>` anywhere on a line
/// (the header name may be cut off or be something else: `X-Auth: Bearer`).
/// A value of plain lowercase letters is prose ("bearer authentication").
pub(crate) struct AuthScheme {
    rule: RuleId,
    re: Regex,
}

impl AuthScheme {
    pub(crate) fn new(rule: RuleId) -> Result<AuthScheme, String> {
        Ok(AuthScheme {
            rule,
            re: Regex::new(r"(?i)\b(?:bearer|basic|digest)\s+(?P<v>[A-Za-z0-9._~+/=\-]{8,})")
                .map_err(|e| format!("authorization rule: {e}"))?,
        })
    }
}

impl Detector for AuthScheme {
    fn find(&self, text: &[u8], out: &mut Vec<Span>) {
        for caps in self.re.captures_iter(text) {
            if let Some(v) = caps.name("v") {
                if v.as_bytes().iter().all(u8::is_ascii_lowercase) {
                    continue;
                }
                out.push(Span {
                    start: v.start(),
                    end: v.end(),
                    rule: self.rule,
                });
            }
        }
    }
}
