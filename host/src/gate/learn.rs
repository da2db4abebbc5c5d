//! Learn mode's record: every grant the plugin's calls needed, reduced to
//! the smallest policy that allows exactly those calls, each line with the
//! calls that needed it as evidence.
//!
//! Reduction, per capability: a directory's or database's strongest use
//! (`rw` covers `ro`, `admin` covers `write` and `read`); a compose
//! project's verbs per service (a call on the whole project needs the
//! project-wide line); an API's methods per path, where three or more
//! paths under one parent become that parent prefix (IDs in paths would
//! otherwise make one line per object).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::policy::{ContainerVerb, DbLevel, FsAccess, Grant};

/// Evidence kept per line: the first few distinct calls and a count.
const EVIDENCE_KEPT: usize = 3;

#[derive(Debug, Clone, Default)]
struct Evidence {
    calls: u64,
    examples: Vec<String>,
}

impl Evidence {
    fn add(&mut self, example: String) {
        self.calls += 1;
        if self.examples.len() < EVIDENCE_KEPT && !self.examples.contains(&example) {
            self.examples.push(example);
        }
    }

    fn merge(&mut self, other: &Evidence) {
        self.calls += other.calls;
        for e in &other.examples {
            if self.examples.len() < EVIDENCE_KEPT && !self.examples.contains(e) {
                self.examples.push(e.clone());
            }
        }
    }

    fn describe(&self) -> String {
        let calls = if self.calls == 1 {
            "1 call".to_string()
        } else {
            format!("{} calls", self.calls)
        };
        format!("{calls}: {}", self.examples.join("; "))
    }
}

/// Every narrowest grant a call needed, with its evidence.
#[derive(Debug, Clone, Default)]
pub struct Learned {
    used: BTreeMap<Grant, Evidence>,
}

/// One line of the learned policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub grant: Grant,
    /// Which calls needed it, e.g. `3 calls: open; write x.tar (10 bytes)`.
    pub evidence: String,
}

impl Learned {
    pub(super) fn record(&mut self, wanted: &Grant, evidence: String) {
        self.used.entry(wanted.clone()).or_default().add(evidence);
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// The smallest set of grant lines that allows every recorded call.
    pub fn lines(&self) -> Vec<Line> {
        let mut fs: BTreeMap<String, (FsAccess, Evidence)> = BTreeMap::new();
        let mut db: BTreeMap<String, (DbLevel, Evidence)> = BTreeMap::new();
        type ServiceKey = (String, Option<String>);
        let mut containers: BTreeMap<ServiceKey, (BTreeSet<ContainerVerb>, Evidence)> =
            BTreeMap::new();
        let mut http: BTreeMap<String, BTreeMap<String, (BTreeSet<String>, Evidence)>> =
            BTreeMap::new();
        for (grant, evidence) in &self.used {
            match grant {
                Grant::Fs { resource, access } => {
                    let e = fs
                        .entry(resource.clone())
                        .or_insert((*access, Evidence::default()));
                    e.0 = e.0.max(*access);
                    e.1.merge(evidence);
                }
                Grant::Db { resource, level } => {
                    let e = db
                        .entry(resource.clone())
                        .or_insert((*level, Evidence::default()));
                    e.0 = e.0.max(*level);
                    e.1.merge(evidence);
                }
                Grant::Container {
                    resource,
                    service,
                    verbs,
                } => {
                    let e = containers
                        .entry((resource.clone(), service.clone()))
                        .or_default();
                    e.0.extend(verbs.iter().copied());
                    e.1.merge(evidence);
                }
                Grant::Http {
                    resource,
                    path_prefix,
                    methods,
                } => {
                    let e = http
                        .entry(resource.clone())
                        .or_default()
                        .entry(path_prefix.clone())
                        .or_default();
                    e.0.extend(methods.iter().cloned());
                    e.1.merge(evidence);
                }
            }
        }
        let mut lines = Vec::new();
        for (resource, (level, evidence)) in db {
            lines.push(Line {
                grant: Grant::Db { resource, level },
                evidence: evidence.describe(),
            });
        }
        for (resource, (access, evidence)) in fs {
            lines.push(Line {
                grant: Grant::Fs { resource, access },
                evidence: evidence.describe(),
            });
        }
        lines.extend(container_lines(containers));
        for (resource, paths) in http {
            for (path_prefix, (methods, evidence)) in collapse_paths(paths) {
                lines.push(Line {
                    grant: Grant::Http {
                        resource: resource.clone(),
                        path_prefix,
                        methods,
                    },
                    evidence: evidence.describe(),
                });
            }
        }
        lines
    }

    /// The policy block an operator pastes: `exact = true`, because the
    /// plugin's manifest may request more than this run used.
    pub fn policy_block(&self, vendor: &str, name: &str, sha256: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "[[plugin]]");
        let _ = writeln!(out, "vendor = \"{vendor}\"");
        let _ = writeln!(out, "name = \"{name}\"");
        let _ = writeln!(out, "sha256 = \"{sha256}\"");
        let _ = writeln!(
            out,
            "exact = true   # grant only these, even where the manifest requests more"
        );
        let _ = writeln!(out, "allow = [");
        for line in self.lines() {
            let _ = writeln!(out, "  \"{}\",   # {}", line.grant, line.evidence);
        }
        let _ = writeln!(out, "]");
        out
    }
}

/// Project-wide verbs make the same verbs on one service redundant.
fn container_lines(
    containers: BTreeMap<(String, Option<String>), (BTreeSet<ContainerVerb>, Evidence)>,
) -> Vec<Line> {
    let mut lines = Vec::new();
    for ((resource, service), (verbs, evidence)) in &containers {
        let project_wide = containers
            .get(&(resource.clone(), None))
            .map(|(v, _)| v.clone())
            .unwrap_or_default();
        let verbs: BTreeSet<ContainerVerb> = if service.is_some() {
            verbs.difference(&project_wide).copied().collect()
        } else {
            verbs.clone()
        };
        if verbs.is_empty() {
            continue;
        }
        lines.push(Line {
            grant: Grant::Container {
                resource: resource.clone(),
                service: service.clone(),
                verbs,
            },
            evidence: evidence.describe(),
        });
    }
    lines
}

/// Three or more distinct paths under one parent become the parent.
fn collapse_paths(
    paths: BTreeMap<String, (BTreeSet<String>, Evidence)>,
) -> BTreeMap<String, (BTreeSet<String>, Evidence)> {
    let mut by_parent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in paths.keys() {
        by_parent
            .entry(parent(path))
            .or_default()
            .push(path.clone());
    }
    let mut out: BTreeMap<String, (BTreeSet<String>, Evidence)> = BTreeMap::new();
    for (path, (methods, evidence)) in paths {
        let siblings = by_parent.get(&parent(&path)).map_or(0, Vec::len);
        let key = if siblings >= 3 && parent(&path) != "/" {
            parent(&path)
        } else {
            path
        };
        let e = out.entry(key).or_default();
        e.0.extend(methods);
        e.1.merge(&evidence);
    }
    out
}

fn parent(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((head, _)) => head.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned(uses: &[&str]) -> Learned {
        let mut l = Learned::default();
        for u in uses {
            l.record(&u.parse().expect("grant"), format!("use of {u}"));
        }
        l
    }

    fn texts(l: &Learned) -> Vec<String> {
        l.lines().iter().map(|l| l.grant.to_string()).collect()
    }

    #[test]
    fn strongest_use_per_directory_and_database() {
        let l = learned(&["fs=b:ro", "fs=b:rw", "fs=c:ro", "db=x:read", "db=x:admin"]);
        assert_eq!(texts(&l), ["db=x:admin", "fs=b:rw", "fs=c:ro"]);
    }

    #[test]
    fn container_verbs_per_service_without_project_wide_repeats() {
        let l = learned(&[
            "container=p:inspect",
            "container=p/api:inspect",
            "container=p/api:stop",
            "container=p/api:start",
            "container=p/db:exec",
        ]);
        assert_eq!(
            texts(&l),
            [
                "container=p:inspect",
                "container=p/api:stop,start",
                "container=p/db:exec"
            ]
        );
    }

    #[test]
    fn many_paths_under_one_parent_become_the_parent() {
        let l = learned(&[
            "http=api/health:GET",
            "http=api/v1/m/1:GET",
            "http=api/v1/m/2:GET",
            "http=api/v1/m/3:POST",
            "http=api/v1/auth/me:GET",
        ]);
        assert_eq!(
            texts(&l),
            [
                "http=api/health:GET",
                "http=api/v1/auth/me:GET",
                "http=api/v1/m:GET,POST"
            ]
        );
    }

    #[test]
    fn every_line_allows_what_it_came_from() {
        let uses = [
            "fs=b:ro",
            "db=x:write",
            "container=p/api:recreate",
            "http=api/v1/m/1:GET",
            "http=api/v1/m/2:GET",
            "http=api/v1/m/3:GET",
        ];
        let l = learned(&uses);
        let lines = l.lines();
        for u in uses {
            let g: Grant = u.parse().expect("grant");
            assert!(lines.iter().any(|line| line.grant.covers(&g)), "{u}");
        }
        let block = l.policy_block("v", "n", "abc");
        assert!(block.contains("exact = true"), "{block}");
        assert!(
            block.contains("\"db=x:write\",   # 1 call: use of db=x:write"),
            "{block}"
        );
    }
}
