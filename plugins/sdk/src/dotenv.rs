//! `.env` files as docker compose reads them, edited losslessly: every
//! byte that an edit does not name stays as it was (comments, blank lines,
//! quotes, `export`, CRLF). Parsing and editing are `adotenv`'s, in its
//! compose dialect: values are read the way compose reads them (an inline
//! ` # comment` and the spaces around it are not part of the value; quotes
//! are removed), and every edit is re-parsed and verified by the library
//! before it is returned.

use adotenv::{Dialect, Document, Edit, InsertPosition};

use crate::{fail, Result};

/// A parsed `.env`.
pub struct EnvFile {
    text: String,
}

/// One change to a `.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Give every live declaration of the key this value; append
    /// `KEY=value` at the end when there is none (a commented-out
    /// `# KEY=…` is never rewritten).
    Set(String, String),
    /// Comment out every live declaration of the key (its `export` form
    /// too); nothing when there is none.
    CommentOut(String),
    /// Delete every live declaration of the key, its whole line with its
    /// line ending (a secret must not stay behind as a comment); nothing
    /// when there is none. Comments naming the key are left alone.
    Remove(String),
}

impl EnvFile {
    /// Parse `bytes`; a file compose could not read either is an error
    /// naming the line.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| fail(format!("{name} is not UTF-8 text ({e})")))?
            .to_string();
        let (_, diagnostics) = adotenv::parse_with(&text, Dialect::COMPOSE);
        if let Some(d) = diagnostics
            .iter()
            .find(|d| d.severity() == adotenv::Severity::Error)
        {
            return Err(fail(format!("{name} line {}: {}", d.line(), d.message())));
        }
        Ok(Self { text })
    }

    fn document(&self) -> Document<'_> {
        adotenv::parse_with(&self.text, Dialect::COMPOSE).0
    }

    /// The value compose would use (the last declaration wins); `None`
    /// when the key is not declared, `Some("")` when it is empty.
    pub fn get(&self, key: &str) -> Option<String> {
        self.document().get(key).map(str::to_string)
    }

    /// The value, when it is declared and not empty.
    pub fn value(&self, key: &str) -> Option<String> {
        self.get(key).filter(|v| !v.trim().is_empty())
    }

    /// Is the key declared (live, not commented out)?
    pub fn declares(&self, key: &str) -> bool {
        self.document().get_all(key).next().is_some()
    }

    /// The text with `changes` applied, verified by re-parsing; `self` is
    /// unchanged. Applying the same changes twice gives the same text.
    pub fn edited(&self, changes: &[Change]) -> Result<String> {
        let doc = self.document();
        let mut edits = Vec::new();
        for change in changes {
            match change {
                Change::Set(key, value) => {
                    let live: Vec<_> = doc.get_all(key).collect();
                    if live.is_empty() {
                        edits.push(Edit::Insert {
                            key,
                            value: Some(value),
                            position: InsertPosition::End,
                        });
                    }
                    for entry in live {
                        if entry.value() != Some(value.as_str()) {
                            edits.push(Edit::Set {
                                entry: entry.id(),
                                value,
                            });
                        }
                    }
                }
                Change::CommentOut(key) => {
                    for entry in doc.get_all(key) {
                        edits.push(Edit::Comment {
                            item: entry.item_id(),
                        });
                    }
                }
                Change::Remove(key) => {
                    for entry in doc.get_all(key) {
                        edits.push(Edit::Remove {
                            item: entry.item_id(),
                        });
                    }
                }
            }
        }
        if edits.is_empty() {
            return Ok(self.text.clone());
        }
        let verified = doc
            .edit(&edits)
            .map_err(|e| fail(format!("editing the .env file: {e}")))?;
        Ok(verified.into_string())
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(k: &str, v: &str) -> Change {
        Change::Set(k.into(), v.into())
    }

    fn out(k: &str) -> Change {
        Change::CommentOut(k.into())
    }

    #[test]
    fn values_are_read_as_compose_reads_them() {
        let env = EnvFile::parse(
            b"A=1.3.2   # the release\nexport B='x # y'\nC=\"q\"  # c\n# D=commented\nE=\n",
            ".env",
        )
        .unwrap();
        assert_eq!(env.get("A").as_deref(), Some("1.3.2"));
        assert_eq!(env.get("B").as_deref(), Some("x # y"));
        assert_eq!(env.get("C").as_deref(), Some("q"));
        assert_eq!(env.get("D"), None);
        assert_eq!(env.get("E").as_deref(), Some(""));
        assert_eq!(env.value("E"), None);
    }

    #[test]
    fn edits_keep_every_other_byte() {
        let text = "# head\r\nAGLEDGER_VERSION=1.3.2   # pinned by ops\r\n\r\nexport AGLEDGER_LICENSE_MODE=offline\r\nX='keep me'\r\n";
        let env = EnvFile::parse(text.as_bytes(), ".env").unwrap();
        let new = env
            .edited(&[
                set("AGLEDGER_VERSION", "1.3.3"),
                out("AGLEDGER_LICENSE_MODE"),
            ])
            .unwrap();
        assert_eq!(
            new,
            "# head\r\nAGLEDGER_VERSION=1.3.3   # pinned by ops\r\n\r\n# export AGLEDGER_LICENSE_MODE=offline\r\nX='keep me'\r\n"
        );
        // Idempotent.
        let again = EnvFile::parse(new.as_bytes(), ".env").unwrap();
        assert_eq!(
            again
                .edited(&[
                    set("AGLEDGER_VERSION", "1.3.3"),
                    out("AGLEDGER_LICENSE_MODE")
                ])
                .unwrap(),
            new
        );
    }

    #[test]
    fn a_commented_out_key_is_left_and_the_live_one_appended() {
        let text = "# AGLEDGER_IMAGE_PIN=old@sha256:00\nA=1";
        let env = EnvFile::parse(text.as_bytes(), ".env").unwrap();
        let new = env
            .edited(&[set("AGLEDGER_IMAGE_PIN", "r@sha256:ab")])
            .unwrap();
        assert!(new.starts_with("# AGLEDGER_IMAGE_PIN=old@sha256:00\nA=1"));
        let reread = EnvFile::parse(new.as_bytes(), ".env").unwrap();
        assert_eq!(
            reread.get("AGLEDGER_IMAGE_PIN").as_deref(),
            Some("r@sha256:ab")
        );
        assert_eq!(reread.get("A").as_deref(), Some("1"));
    }

    fn remove(k: &str) -> Change {
        Change::Remove(k.into())
    }

    /// A rotation appends a key, then deletes it: every other byte is as
    /// before, whatever the file's style (CRLF, export, quotes, comments).
    #[test]
    fn a_key_set_then_removed_leaves_the_file_as_it_was() {
        for text in [
            "# secrets\nAPI_KEY_SECRET=aa   # rotate me\nX='keep me'\n",
            "export API_KEY_SECRET=\"aa\"\r\n\r\n# K=v\r\nY=1\r\n",
            "API_KEY_SECRET='aa'\n# API_KEY_SECRET_PREVIOUS=old\n",
        ] {
            let env = EnvFile::parse(text.as_bytes(), ".env").unwrap();
            let during = env
                .edited(&[
                    set("API_KEY_SECRET_PREVIOUS", "aa"),
                    set("API_KEY_SECRET", "bb"),
                ])
                .unwrap();
            let mid = EnvFile::parse(during.as_bytes(), ".env").unwrap();
            assert_eq!(mid.get("API_KEY_SECRET").as_deref(), Some("bb"));
            assert_eq!(mid.get("API_KEY_SECRET_PREVIOUS").as_deref(), Some("aa"));
            let after = mid
                .edited(&[
                    remove("API_KEY_SECRET_PREVIOUS"),
                    set("API_KEY_SECRET", "aa"),
                ])
                .unwrap();
            assert_eq!(after, text, "from {during:?}");
            assert!(!after.contains("API_KEY_SECRET_PREVIOUS=aa"));
        }
    }

    #[test]
    fn remove_deletes_every_live_line_and_nothing_else() {
        let text = "A=1\nexport S=x\n# S=old\nS=y  # again\nB=2\n";
        let env = EnvFile::parse(text.as_bytes(), ".env").unwrap();
        assert_eq!(env.edited(&[remove("S")]).unwrap(), "A=1\n# S=old\nB=2\n");
        assert_eq!(env.edited(&[remove("NONE")]).unwrap(), text);
    }

    /// Secrets as the rotations write them (hex, base64 with `+/=`) need
    /// no quotes: compose v1 and v2 and `--env-file` read them alike.
    #[test]
    fn hex_and_base64_values_are_written_bare_and_read_back() {
        let b64 = "MC4CAQAwBQYDK2VwBCIEIP+/a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0==";
        let env = EnvFile::parse(b"A=1\n", ".env").unwrap();
        let new = env
            .edited(&[set("K", b64), set("H", &"ab".repeat(32))])
            .unwrap();
        assert!(new.contains(&format!("\nK={b64}\n")), "{new}");
        let back = EnvFile::parse(new.as_bytes(), ".env").unwrap();
        assert_eq!(back.get("K").as_deref(), Some(b64));
        assert_eq!(back.get("H"), Some("ab".repeat(32)));
    }
}
