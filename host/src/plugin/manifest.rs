//! The manifest every plugin embeds: who it is, what it applies to, and
//! every grant it requests with a reason. It lives in a custom section
//! (`opshost-manifest`) so the host and `opshost inspect` read it without
//! compiling or running the plugin.

use anyhow::{bail, Context};
use serde::Deserialize;
use wasmtime::wasmparser::{Parser, Payload};

use crate::policy::Grant;

/// Name of the custom section holding the manifest TOML.
pub const SECTION: &str = "opshost-manifest";

#[derive(Debug, Clone)]
pub struct Request {
    pub grant: Grant,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub vendor: String,
    pub version: semver::Version,
    pub description: String,
    /// The product versions (AGLedger releases) this plugin is written for.
    pub applies_to: semver::VersionReq,
    /// The oldest opshost this plugin runs on.
    pub min_host: semver::Version,
    pub requests: Vec<Request>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    vendor: String,
    version: String,
    #[serde(default)]
    description: String,
    applies_to: String,
    min_host: String,
    #[serde(default, rename = "request")]
    requests: Vec<RawRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    grant: String,
    reason: String,
}

impl Manifest {
    /// Find and parse the manifest of a plugin file's bytes.
    pub fn from_wasm(bytes: &[u8]) -> anyhow::Result<Self> {
        let mut found: Option<&[u8]> = None;
        for payload in Parser::new(0).parse_all(bytes) {
            let payload = payload.context("the file is not a valid WebAssembly component")?;
            if let Payload::CustomSection(section) = payload {
                if section.name() == SECTION {
                    if found.is_some() {
                        bail!("the plugin has two `{SECTION}` sections; refusing an ambiguous manifest");
                    }
                    found = Some(section.data());
                }
            }
        }
        let data = found.with_context(|| {
            format!("no `{SECTION}` section: this is not an opshost plugin (declare one with opshost_sdk::manifest!)")
        })?;
        let text = std::str::from_utf8(data).context("the manifest is not UTF-8")?;
        Self::parse(text).context("the plugin's manifest is malformed")
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let raw: RawManifest = toml::from_str(text)?;
        for (field, value) in [("name", &raw.name), ("vendor", &raw.vendor)] {
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                bail!("{field} \"{value}\" must be non-empty letters, digits, '-', '_' or '.'");
            }
        }
        let version = semver::Version::parse(&raw.version)
            .with_context(|| format!("version \"{}\" is not semver", raw.version))?;
        let applies_to = semver::VersionReq::parse(&raw.applies_to)
            .with_context(|| format!("applies_to \"{}\" is not a version range", raw.applies_to))?;
        let min_host = semver::Version::parse(&raw.min_host)
            .with_context(|| format!("min_host \"{}\" is not semver", raw.min_host))?;
        let mut requests = Vec::with_capacity(raw.requests.len());
        for r in raw.requests {
            let grant = r.grant.parse::<Grant>()?;
            if r.reason.trim().is_empty() {
                bail!("request {grant} has no reason: say why the plugin needs it");
            }
            requests.push(Request {
                grant,
                reason: r.reason,
            });
        }
        Ok(Self {
            name: raw.name,
            vendor: raw.vendor,
            version,
            description: raw.description,
            applies_to,
            min_host,
            requests,
        })
    }

    pub fn identity(&self) -> String {
        format!("{}/{} {}", self.vendor, self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "example"
        vendor = "opshost"
        version = "0.1.0"
        applies_to = ">=1.3.0, <2.0.0"
        min_host = "0.1.0"
        [[request]]
        grant = "fs=work:rw"
        reason = "writes the report"
    "#;

    #[test]
    fn parses_a_manifest() {
        let m = Manifest::parse(GOOD).expect("valid");
        assert_eq!(m.identity(), "opshost/example 0.1.0");
        assert_eq!(m.requests[0].grant.to_string(), "fs=work:rw");
    }

    #[test]
    fn rejects_malformed_manifests() {
        let cases = [
            (GOOD.replace("fs=work:rw", "fs=work:all"), "unknown fs verb"),
            (GOOD.replace("writes the report", " "), "has no reason"),
            (
                GOOD.replace("version = \"0.1.0\"", "version = \"one\""),
                "not semver",
            ),
            (
                GOOD.replace(">=1.3.0, <2.0.0", "soon"),
                "not a version range",
            ),
            (GOOD.replace("\"example\"", "\"../x\""), "must be non-empty"),
            (format!("{GOOD}\nextra = 1"), "unknown field"),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", Manifest::parse(&text).expect_err(&text));
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }

    #[test]
    fn a_file_that_is_not_wasm_is_refused() {
        let err = format!(
            "{:#}",
            Manifest::from_wasm(b"#!/bin/sh\nrm -rf /\n").expect_err("not wasm")
        );
        assert!(err.contains("not a valid WebAssembly component"), "{err}");
    }
}
