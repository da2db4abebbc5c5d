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
                r#"(?i)[a-z][a-z0-9+.\-]*:(?:\\?/){2}[^\s:/@'"\\]*:[^\s'"]*@[^\s@/?#'"\\]+"#,
            )
            .map_err(|e| format!("url rule: {e}"))?,
        })
    }
}

impl Detector for UrlPassword {
    fn find(&self, text: &[u8], out: &mut Vec<Span>) {
        // No '@', no credentials: most URLs in logs are skipped unread by the regex.
        if memchr::memchr(b'@', text).is_none() {
            return;
        }
        // find_iter and a split by hand (captures are slower): the password
        // runs from the ':' after the user to the match's last '@'.
        for m in self.re.find_iter(text) {
            let t = m.as_bytes();
            let Some(scheme_end) = t.iter().position(|&c| c == b':') else {
                continue;
            };
            let user = scheme_end
                + 1
                + t[scheme_end + 1..]
                    .iter()
                    .take_while(|&&c| c == b'/' || c == b'\\')
                    .count();
            let (Some(colon), Some(at)) = (
                t[user..].iter().position(|&c| c == b':'),
                t.iter().rposition(|&c| c == b'@'),
            ) else {
                continue;
            };
            let (start, end) = (user + colon + 1, at);
            if start < end {
                out.push(Span {
                    start: m.start() + start,
                    end: m.start() + end,
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
            re: Regex::new(r"(?i)\b(?:bearer|basic|digest)\s+[A-Za-z0-9._~+/=\-]{8,}")
                .map_err(|e| format!("authorization rule: {e}"))?,
        })
    }
}

impl Detector for AuthScheme {
    fn find(&self, text: &[u8], out: &mut Vec<Span>) {
        for m in self.re.find_iter(text) {
            let t = m.as_bytes();
            let v = t
                .iter()
                .position(|c| !c.is_ascii_alphabetic())
                .map_or(t.len(), |scheme| {
                    scheme
                        + t[scheme..]
                            .iter()
                            .take_while(|c| c.is_ascii_whitespace())
                            .count()
                });
            if t[v..].iter().all(u8::is_ascii_lowercase) {
                continue;
            }
            out.push(Span {
                start: m.start() + v,
                end: m.end(),
                rule: self.rule,
            });
        }
    }
}
