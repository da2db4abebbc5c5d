//! The policy file: which grants each plugin identity gets.
//!
//! ```toml
//! [[plugin]]
//! vendor = "opshost"
//! name = "example"
//! sha256 = "…"            # optional: pin to this exact build
//! signer = "ed25519:…"    # optional: only builds this key signed
//! allow = ["fs=work:rw", "http=api:GET"]
//! exact = true            # optional: grant only these lines, even where
//!                         # the manifest requests more (`--learn` writes it)
//! ```
//! Identity is vendor + name, optionally pinned by content digest; never a
//! file path, so moving a plugin does not change what it may do.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use super::grant::Grant;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default, rename = "plugin")]
    plugins: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    vendor: String,
    name: String,
    sha256: Option<String>,
    signer: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    exact: bool,
}

/// The grants for one plugin identity.
#[derive(Debug, Clone)]
pub struct PolicyEntry {
    pub vendor: String,
    pub name: String,
    /// Lower-case hex SHA-256 of the plugin file, when pinned.
    pub sha256: Option<String>,
    /// `ed25519:BASE64`: the entry applies only to plugins this key signed.
    pub signer: Option<String>,
    pub grants: Vec<Grant>,
    /// The plugin gets exactly these grants (where its manifest requests
    /// them or more): a request they do not cover is denied at call time
    /// instead of refusing the run. What `opshost run --learn` writes.
    pub exact: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Where it was read from, for messages ("add this to …").
    pub source: Option<PathBuf>,
    pub entries: Vec<PolicyEntry>,
}

impl Policy {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read policy file {}", path.display()))?;
        let mut policy = Self::parse(&text)
            .with_context(|| format!("policy file {} is not valid", path.display()))?;
        policy.source = Some(path.to_path_buf());
        Ok(policy)
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let raw: RawPolicy = toml::from_str(text)?;
        let mut entries = Vec::with_capacity(raw.plugins.len());
        for (index, entry) in raw.plugins.into_iter().enumerate() {
            let at = format!(
                "[[plugin]] #{} ({}/{})",
                index + 1,
                entry.vendor,
                entry.name
            );
            let sha256 = entry
                .sha256
                .map(|d| normalise_digest(&d))
                .transpose()
                .with_context(|| format!("{at}: bad sha256"))?;
            let signer = entry
                .signer
                .map(|k| {
                    crate::plugin::signature::parse_key(&k)
                        .map(|key| crate::plugin::signature::key_text(&key))
                })
                .transpose()
                .with_context(|| format!("{at}: bad signer"))?;
            let grants = entry
                .allow
                .iter()
                .map(|g| g.parse::<Grant>())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{at}: bad allow entry"))?;
            entries.push(PolicyEntry {
                vendor: entry.vendor,
                name: entry.name,
                sha256,
                signer,
                grants,
                exact: entry.exact,
            });
        }
        Ok(Self {
            source: None,
            entries,
        })
    }

    /// Entries for this vendor/name, whatever their pin.
    pub fn entries_for<'a>(
        &'a self,
        vendor: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a PolicyEntry> {
        self.entries
            .iter()
            .filter(move |e| e.vendor == vendor && e.name == name)
    }
}

/// Accepts `abc…`, `sha256:abc…`, any case; returns 64 lower-case hex digits.
pub fn normalise_digest(text: &str) -> anyhow::Result<String> {
    let hex = text
        .trim()
        .strip_prefix("sha256:")
        .unwrap_or(text.trim())
        .to_ascii_lowercase();
    anyhow::ensure!(
        hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "\"{text}\" is not a SHA-256 digest (64 hex digits, optionally prefixed by sha256:)"
    );
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_pins() {
        let p = Policy::parse(
            r#"
            [[plugin]]
            vendor = "opshost"
            name = "example"
            sha256 = "sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            allow = ["fs=work:rw", "http=api:GET"]
            "#,
        )
        .expect("valid policy");
        assert_eq!(p.entries.len(), 1);
        assert_eq!(p.entries[0].grants.len(), 2);
        assert_eq!(p.entries[0].sha256.as_deref(), Some(&"a".repeat(64)[..]));
    }

    #[test]
    fn rejects_malformed_policies_with_context() {
        let cases = [
            (
                "[[plugin]]\nvendor='v'\nname='n'\nallow=['fs=work:write']",
                "unknown fs verb",
            ),
            (
                "[[plugin]]\nvendor='v'\nname='n'\nallow=['fs=work:rw']\nallw=[]",
                "unknown field",
            ),
            ("[[plugin]]\nname='n'", "missing field `vendor`"),
            (
                "[[plugin]]\nvendor='v'\nname='n'\nsha256='xyz'",
                "not a SHA-256",
            ),
            ("[[plugins]]\nvendor='v'", "unknown field"),
            ("[[plugin]\n", "expected"),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", Policy::parse(text).expect_err(text));
            assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
        }
    }
}
