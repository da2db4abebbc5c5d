//! The decision: what a plugin asked for, intersected with what the policy
//! grants it. Anything requested and not granted stops the run before the
//! plugin is instantiated, with the exact lines to add.

use std::fmt::Write as _;

use super::file::Policy;
use super::grant::Grant;
use crate::plugin::manifest::{Manifest, Request};
use crate::plugin::signature::Status;

/// A request the policy does not cover.
#[derive(Debug, Clone)]
pub struct Missing {
    pub grant: Grant,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Decision {
    /// What the plugin will get: exactly what it requested (never more, even
    /// when the policy grants more).
    pub granted: Vec<Grant>,
    pub missing: Vec<Missing>,
    /// Policy entries for this plugin that did not apply, and why (a pin to
    /// another digest usually means the plugin was rebuilt or tampered with).
    pub notes: Vec<String>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.missing.is_empty()
    }

    /// The refusal an operator reads: which grants are missing and the exact
    /// policy lines (or flags) that would grant them.
    pub fn refusal(&self, manifest: &Manifest, sha256: &str, policy: &Policy) -> String {
        let mut out = String::new();
        let count = self.missing.len();
        let _ = writeln!(
            out,
            "{}/{} {} requests {count} grant{} the policy does not give:",
            manifest.vendor,
            manifest.name,
            manifest.version,
            if count == 1 { "" } else { "s" }
        );
        for m in &self.missing {
            let _ = writeln!(out, "  - {}   ({})", m.grant, m.reason);
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let place = match &policy.source {
            Some(p) => format!("the policy file {}", p.display()),
            None => "a policy file (--policy FILE)".to_string(),
        };
        let _ = writeln!(out, "\nTo grant them, add to {place}:\n");
        let _ = writeln!(out, "  [[plugin]]");
        let _ = writeln!(out, "  vendor = \"{}\"", manifest.vendor);
        let _ = writeln!(out, "  name = \"{}\"", manifest.name);
        let _ = writeln!(
            out,
            "  sha256 = \"{sha256}\"   # pins this exact build; optional"
        );
        let _ = writeln!(out, "  allow = [");
        for g in &self.granted {
            let _ = writeln!(out, "    \"{g}\",");
        }
        for m in &self.missing {
            let _ = writeln!(out, "    \"{}\",   # {}", m.grant, m.reason);
        }
        let _ = writeln!(out, "  ]");
        let flags: Vec<String> = self
            .missing
            .iter()
            .map(|m| format!("--allow {}", m.grant))
            .collect();
        let _ = write!(out, "\nor grant them for one run: {}", flags.join(" "));
        out
    }
}

/// Compare the manifest's requests with the grants that apply to this exact
/// plugin (policy entries for its vendor/name whose pin, if any, matches its
/// digest) plus the one-run `--allow` grants.
pub fn decide(
    manifest: &Manifest,
    sha256: &str,
    signature: &Status,
    policy: &Policy,
    allow: &[Grant],
) -> Decision {
    let mut notes = Vec::new();
    let mut exact = false;
    let mut applicable: Vec<&Grant> = allow.iter().collect();
    for entry in policy.entries_for(&manifest.vendor, &manifest.name) {
        if let Some(signer) = &entry.signer {
            if signature != &Status::Valid(signer.clone()) {
                notes.push(format!(
                    "a policy entry for {}/{} requires a signature by {signer}; this plugin is {}; that entry does not apply",
                    entry.vendor,
                    entry.name,
                    signature.describe()
                ));
                continue;
            }
        }
        match &entry.sha256 {
            Some(pin) if pin != sha256 => notes.push(format!(
                "a policy entry for {}/{} is pinned to sha256 {}…, but this plugin is {}… (rebuilt, a new version, or tampered with); that entry does not apply",
                entry.vendor,
                entry.name,
                &pin[..12.min(pin.len())],
                &sha256[..12.min(sha256.len())]
            )),
            _ => {
                exact |= entry.exact;
                applicable.extend(entry.grants.iter());
            }
        }
    }
    if exact {
        return decide_exact(manifest, applicable, notes);
    }
    let mut granted = Vec::new();
    let mut missing = Vec::new();
    for Request { grant, reason } in &manifest.requests {
        if applicable.iter().any(|g| g.covers(grant)) {
            granted.push(grant.clone());
        } else {
            missing.push(Missing {
                grant: grant.clone(),
                reason: reason.clone(),
            });
        }
    }
    Decision {
        granted,
        missing,
        notes,
    }
}

/// An `exact` policy entry: the plugin gets the policy's lines that its
/// manifest requests (a line narrower than a request is granted as
/// written), and nothing is refused up front: a call beyond the lines is
/// denied by the gate, naming the grant it needed.
fn decide_exact(manifest: &Manifest, applicable: Vec<&Grant>, mut notes: Vec<String>) -> Decision {
    let mut granted: Vec<Grant> = Vec::new();
    for grant in applicable {
        let requested = manifest.requests.iter().any(|r| r.grant.covers(grant));
        if !requested {
            notes.push(format!(
                "{grant} is in the policy but the plugin does not request it; not granted"
            ));
        } else if !granted.contains(grant) {
            granted.push(grant.clone());
        }
    }
    Decision {
        granted,
        missing: Vec::new(),
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(requests: &[&str]) -> Manifest {
        Manifest {
            name: "example".into(),
            vendor: "opshost".into(),
            version: semver::Version::new(0, 1, 0),
            description: String::new(),
            applies_to: semver::VersionReq::STAR,
            min_host: semver::Version::new(0, 1, 0),
            requests: requests
                .iter()
                .map(|r| Request {
                    grant: r.parse().expect("grant"),
                    reason: format!("needs {r}"),
                })
                .collect(),
        }
    }

    const DIGEST: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn an_exact_entry_grants_its_lines_within_the_requests() {
        let policy = Policy::parse(
            "[[plugin]]\nvendor='opshost'\nname='example'\nexact=true\nallow=['container=p/api:stop','fs=work:ro','db=a:read']",
        )
        .expect("policy");
        let d = decide(
            &manifest(&["container=p:stop,start", "fs=work:rw"]),
            DIGEST,
            &Status::Unsigned,
            &policy,
            &[],
        );
        assert!(d.allowed());
        let granted: Vec<String> = d.granted.iter().map(ToString::to_string).collect();
        assert_eq!(granted, ["container=p/api:stop", "fs=work:ro"]);
        assert!(
            d.notes[0].contains("db=a:read is in the policy but the plugin does not request it")
        );
    }

    #[test]
    fn grants_only_what_was_requested() {
        let policy = Policy::parse(
            "[[plugin]]\nvendor='opshost'\nname='example'\nallow=['fs=work:rw','db=a:admin']",
        )
        .expect("policy");
        let d = decide(
            &manifest(&["fs=work:ro"]),
            DIGEST,
            &Status::Unsigned,
            &policy,
            &[],
        );
        assert!(d.allowed());
        assert_eq!(
            d.granted,
            vec!["fs=work:ro".parse::<Grant>().expect("grant")]
        );
    }

    #[test]
    fn missing_grant_is_named_with_the_line_to_add() {
        let policy =
            Policy::parse("[[plugin]]\nvendor='opshost'\nname='example'\nallow=['fs=work:ro']")
                .expect("policy");
        let m = manifest(&["fs=work:rw", "http=api:GET"]);
        let d = decide(
            &m,
            DIGEST,
            &Status::Unsigned,
            &policy,
            &["http=api:GET".parse().expect("grant")],
        );
        assert!(!d.allowed());
        assert_eq!(d.missing.len(), 1);
        let msg = d.refusal(&m, DIGEST, &policy);
        assert!(
            msg.contains("\"fs=work:rw\",   # needs fs=work:rw"),
            "{msg}"
        );
        assert!(msg.contains("--allow fs=work:rw"), "{msg}");
    }

    #[test]
    fn entry_pinned_to_another_digest_does_not_apply() {
        let policy = Policy::parse(&format!(
            "[[plugin]]\nvendor='opshost'\nname='example'\nsha256='{}'\nallow=['fs=work:rw']",
            "b".repeat(64)
        ))
        .expect("policy");
        let d = decide(
            &manifest(&["fs=work:rw"]),
            DIGEST,
            &Status::Unsigned,
            &policy,
            &[],
        );
        assert!(!d.allowed());
        assert!(d.notes[0].contains("tampered"), "{:?}", d.notes);
    }

    #[test]
    fn a_signer_entry_applies_only_to_that_signers_builds() {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let key = crate::plugin::signature::key_text(&signing.verifying_key());
        let policy = Policy::parse(&format!(
            "[[plugin]]\nvendor='opshost'\nname='example'\nsigner='{key}'\nallow=['fs=work:rw']"
        ))
        .expect("policy");
        let m = manifest(&["fs=work:rw"]);
        assert!(decide(&m, DIGEST, &Status::Valid(key.clone()), &policy, &[]).allowed());
        let unsigned = decide(&m, DIGEST, &Status::Unsigned, &policy, &[]);
        assert!(!unsigned.allowed());
        assert!(
            unsigned.notes[0].contains("requires a signature"),
            "{:?}",
            unsigned.notes
        );
        assert!(!decide(
            &m,
            DIGEST,
            &Status::Valid("ed25519:other".into()),
            &policy,
            &[]
        )
        .allowed());
    }

    #[test]
    fn other_plugins_entries_do_not_apply() {
        let policy =
            Policy::parse("[[plugin]]\nvendor='opshost'\nname='other'\nallow=['fs=work:rw']")
                .expect("policy");
        assert!(!decide(
            &manifest(&["fs=work:rw"]),
            DIGEST,
            &Status::Unsigned,
            &policy,
            &[]
        )
        .allowed());
    }
}
