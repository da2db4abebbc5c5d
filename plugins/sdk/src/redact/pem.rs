//! PEM private key blocks, over the whole file: a block spans lines (or sits
//! on one line with `\n` escapes inside JSON). Certificates and public keys
//! are not secrets and stay.
use regex::bytes::Regex;

use super::{Detector, RuleId, Span};

pub(crate) struct Pem {
    rule: RuleId,
    begin: Regex,
    end: Regex,
    /// A cut block (no END line): the base64 body lines after BEGIN.
    body: Regex,
}

impl Pem {
    pub(crate) fn new(rule: RuleId) -> Result<Pem, String> {
        let re = |s: &str| Regex::new(s).map_err(|e| format!("pem rule: {e}"));
        Ok(Pem {
            rule,
            begin: re(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")?,
            end: re(r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")?,
            body: re(r"^(?:(?:\r?\n|\\r?\\n|[ \t])*[A-Za-z0-9+/=:,\\-]{4,})*")?,
        })
    }
}

impl Detector for Pem {
    fn find(&self, text: &[u8], out: &mut Vec<Span>) {
        let mut from = 0;
        while let Some(b) = self.begin.find_at(text, from) {
            let end = match self.end.find_at(text, b.end()) {
                // Not past the next BEGIN: that one is a block of its own.
                Some(e)
                    if self
                        .begin
                        .find_at(text, b.end())
                        .is_none_or(|n| n.start() > e.start()) =>
                {
                    e.end()
                }
                _ => self
                    .body
                    .find(&text[b.end()..])
                    .map_or(b.end(), |m| b.end() + m.end()),
            };
            out.push(Span {
                start: b.start(),
                end,
                rule: self.rule,
            });
            from = end.max(b.end());
        }
    }
}
