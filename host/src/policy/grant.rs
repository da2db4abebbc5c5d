//! The grant grammar: `db=NAME:read`, `fs=NAME:rw`, `http=NAME[/PREFIX]:GET,POST`,
//! `container=NAME[/SERVICE]:exec,logs`. One parser serves the policy file,
//! the manifest and `--allow`, so all three mean exactly the same thing.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// The capabilities a grant can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    Db,
    Container,
    Http,
    Fs,
}

impl Capability {
    pub const ALL: [Capability; 4] = [Self::Db, Self::Container, Self::Http, Self::Fs];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Db => "db",
            Self::Container => "container",
            Self::Http => "http",
            Self::Fs => "fs",
        }
    }

    /// The config table that names resources of this capability.
    pub fn config_table(self) -> &'static str {
        match self {
            Self::Db => "db",
            Self::Container => "containers",
            Self::Http => "http",
            Self::Fs => "dir",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// db levels are ordered: each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DbLevel {
    Read,
    Write,
    Admin,
}

impl DbLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

/// `ro` is included in `rw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FsAccess {
    Ro,
    Rw,
}

impl FsAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ro => "ro",
            Self::Rw => "rw",
        }
    }
}

/// Container verbs are independent of each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContainerVerb {
    Inspect,
    Logs,
    Exec,
    Stop,
    Start,
    Pull,
    Recreate,
    Run,
}

impl ContainerVerb {
    pub const ALL: [ContainerVerb; 8] = [
        Self::Inspect,
        Self::Logs,
        Self::Exec,
        Self::Stop,
        Self::Start,
        Self::Pull,
        Self::Recreate,
        Self::Run,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inspect => "inspect",
            Self::Logs => "logs",
            Self::Exec => "exec",
            Self::Stop => "stop",
            Self::Start => "start",
            Self::Pull => "pull",
            Self::Recreate => "recreate",
            Self::Run => "run",
        }
    }
}

pub const HTTP_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// One permission. `Display` prints the canonical grant text, which is what
/// error messages tell an operator to add.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grant {
    Db {
        resource: String,
        level: DbLevel,
    },
    Fs {
        resource: String,
        access: FsAccess,
    },
    Http {
        resource: String,
        /// Always starts with `/`; `/` alone means the whole base URL.
        path_prefix: String,
        methods: BTreeSet<String>,
    },
    Container {
        resource: String,
        /// `None`: every service of the project.
        service: Option<String>,
        verbs: BTreeSet<ContainerVerb>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid grant \"{text}\": {reason}")]
pub struct GrantError {
    pub text: String,
    pub reason: String,
}

impl Grant {
    pub fn capability(&self) -> Capability {
        match self {
            Self::Db { .. } => Capability::Db,
            Self::Fs { .. } => Capability::Fs,
            Self::Http { .. } => Capability::Http,
            Self::Container { .. } => Capability::Container,
        }
    }

    pub fn resource(&self) -> &str {
        match self {
            Self::Db { resource, .. }
            | Self::Fs { resource, .. }
            | Self::Http { resource, .. }
            | Self::Container { resource, .. } => resource,
        }
    }

    /// True when this grant allows everything `wanted` asks for.
    pub fn covers(&self, wanted: &Grant) -> bool {
        match (self, wanted) {
            (
                Self::Db {
                    resource: a,
                    level: la,
                },
                Self::Db {
                    resource: b,
                    level: lb,
                },
            ) => a == b && la >= lb,
            (
                Self::Fs {
                    resource: a,
                    access: xa,
                },
                Self::Fs {
                    resource: b,
                    access: xb,
                },
            ) => a == b && xa >= xb,
            (
                Self::Http {
                    resource: a,
                    path_prefix: pa,
                    methods: ma,
                },
                Self::Http {
                    resource: b,
                    path_prefix: pb,
                    methods: mb,
                },
            ) => a == b && path_within(pb, pa) && mb.is_subset(ma),
            (
                Self::Container {
                    resource: a,
                    service: sa,
                    verbs: va,
                },
                Self::Container {
                    resource: b,
                    service: sb,
                    verbs: vb,
                },
            ) => {
                a == b
                    && match (sa, sb) {
                        (None, _) => true,
                        (Some(x), Some(y)) => x == y,
                        (Some(_), None) => false,
                    }
                    && vb.is_subset(va)
            }
            _ => false,
        }
    }

    /// A grant written with `*` (every verb or method): allowed, but the
    /// host warns, because it silently includes verbs added later.
    pub fn is_wildcard(&self) -> bool {
        match self {
            Self::Http { methods, .. } => methods.len() == HTTP_METHODS.len(),
            Self::Container { verbs, .. } => verbs.len() == ContainerVerb::ALL.len(),
            _ => false,
        }
    }
}

/// `path` lies at or below `prefix`, segment-wise (`/v1` covers `/v1/x`, not `/v10`).
pub fn path_within(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return path.starts_with('/');
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'))
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Db { resource, level } => write!(f, "db={resource}:{}", level.as_str()),
            Self::Fs { resource, access } => write!(f, "fs={resource}:{}", access.as_str()),
            Self::Http {
                resource,
                path_prefix,
                methods,
            } => {
                let prefix = if path_prefix == "/" {
                    ""
                } else {
                    path_prefix.as_str()
                };
                let methods: Vec<&str> = methods.iter().map(String::as_str).collect();
                write!(f, "http={resource}{prefix}:{}", methods.join(","))
            }
            Self::Container {
                resource,
                service,
                verbs,
            } => {
                let target = match service {
                    Some(s) => format!("{resource}/{s}"),
                    None => resource.clone(),
                };
                let verbs: Vec<&str> = verbs.iter().map(|v| v.as_str()).collect();
                write!(f, "container={target}:{}", verbs.join(","))
            }
        }
    }
}

impl FromStr for Grant {
    type Err = GrantError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| GrantError {
            text: text.to_string(),
            reason,
        };
        let trimmed = text.trim();
        let (cap, rest) = trimmed
            .split_once('=')
            .ok_or_else(|| fail("expected CAPABILITY=RESOURCE:VERBS, e.g. fs=backups:rw".into()))?;
        let (target, verbs) = rest.rsplit_once(':').ok_or_else(|| {
            fail(format!(
                "missing \":VERB\" after \"{rest}\", e.g. {cap}={rest}:{}",
                example_verb(cap)
            ))
        })?;
        if verbs.trim().is_empty() {
            return Err(fail(format!(
                "no verb after ':', e.g. {cap}={target}:{}",
                example_verb(cap)
            )));
        }
        match cap {
            "db" => {
                let resource = resource_name(target).map_err(fail)?;
                let level = match verbs {
                    "read" => DbLevel::Read,
                    "write" => DbLevel::Write,
                    "admin" => DbLevel::Admin,
                    other => {
                        return Err(fail(format!(
                            "unknown db verb \"{other}\": expected read, write or admin (one level; each includes the ones before it)"
                        )))
                    }
                };
                Ok(Self::Db { resource, level })
            }
            "fs" => {
                let resource = resource_name(target).map_err(fail)?;
                let access = match verbs {
                    "ro" => FsAccess::Ro,
                    "rw" => FsAccess::Rw,
                    other => {
                        return Err(fail(format!(
                            "unknown fs verb \"{other}\": expected ro or rw"
                        )))
                    }
                };
                Ok(Self::Fs { resource, access })
            }
            "http" => {
                let (name, prefix) = match target.split_once('/') {
                    Some((name, path)) => (name, format!("/{path}")),
                    None => (target, "/".to_string()),
                };
                let resource = resource_name(name).map_err(fail)?;
                check_path_prefix(&prefix).map_err(fail)?;
                let methods = parse_list(
                    verbs,
                    |m| {
                        let upper = m.to_ascii_uppercase();
                        HTTP_METHODS
                            .contains(&upper.as_str())
                            .then_some(upper)
                            .ok_or_else(|| {
                                format!(
                                    "unknown HTTP method \"{m}\": expected {} or *",
                                    HTTP_METHODS.join(", ")
                                )
                            })
                    },
                    || HTTP_METHODS.iter().map(|m| m.to_string()).collect(),
                )
                .map_err(fail)?;
                Ok(Self::Http {
                    resource,
                    path_prefix: prefix,
                    methods,
                })
            }
            "container" => {
                let (name, service) = match target.split_once('/') {
                    Some((name, service)) => (name, Some(service)),
                    None => (target, None),
                };
                let resource = resource_name(name).map_err(fail)?;
                let service = match service {
                    Some("*") => {
                        return Err(fail(format!(
                            "\"*\" is not a service: write \"container={name}:VERBS\" to grant every service"
                        )))
                    }
                    Some(s) => Some(resource_name(s).map_err(|e| fail(format!("service: {e}")))?),
                    None => None,
                };
                let verbs = parse_list(
                    verbs,
                    |v| {
                        ContainerVerb::ALL
                            .into_iter()
                            .find(|known| known.as_str() == v)
                            .ok_or_else(|| {
                                let all: Vec<&str> =
                                    ContainerVerb::ALL.iter().map(|v| v.as_str()).collect();
                                format!(
                                    "unknown container verb \"{v}\": expected {} or *",
                                    all.join(", ")
                                )
                            })
                    },
                    || ContainerVerb::ALL.into_iter().collect(),
                )
                .map_err(fail)?;
                Ok(Self::Container {
                    resource,
                    service,
                    verbs,
                })
            }
            other => Err(fail(format!(
                "unknown capability \"{other}\": expected db, container, http or fs"
            ))),
        }
    }
}

fn example_verb(cap: &str) -> &'static str {
    match cap {
        "db" => "read",
        "fs" => "ro",
        "http" => "GET",
        _ => "inspect",
    }
}

/// Resource names are config keys: letters, digits, `-` and `_`.
fn resource_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("the resource name is empty".into());
    }
    if name == "*" {
        return Err("\"*\" is not a resource: name each resource you grant".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "\"{name}\" has '{bad}': resource names use letters, digits, '-' and '_'"
        ));
    }
    Ok(name.to_string())
}

fn check_path_prefix(prefix: &str) -> Result<(), String> {
    if prefix.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(format!(
            "path prefix \"{prefix}\" has a '.' or '..' segment"
        ));
    }
    if prefix.contains("//") || prefix.contains('*') || prefix.contains('?') || prefix.contains('%')
    {
        return Err(format!(
            "path prefix \"{prefix}\" must be a plain path (no '//', '*', '?' or '%')"
        ));
    }
    Ok(())
}

/// A comma list of verbs; `*` alone means all of them (and is warned about).
fn parse_list<T: Ord>(
    text: &str,
    one: impl Fn(&str) -> Result<T, String>,
    all: impl Fn() -> BTreeSet<T>,
) -> Result<BTreeSet<T>, String> {
    if text == "*" {
        return Ok(all());
    }
    let mut set = BTreeSet::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("empty verb in \"{text}\""));
        }
        if item == "*" {
            return Err("\"*\" must stand alone, not in a list".into());
        }
        set.insert(one(item)?);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Grant {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn reason(s: &str) -> String {
        match s.parse::<Grant>() {
            Ok(g) => panic!("{s} parsed as {g:?}"),
            Err(e) => e.reason,
        }
    }

    #[test]
    fn canonical_forms_round_trip() {
        for text in [
            "db=agledger:read",
            "db=agledger:admin",
            "fs=backups:rw",
            "fs=compose:ro",
            "http=api:GET",
            "http=api/v1/admin:GET,POST",
            "container=agledger:inspect,logs",
            "container=agledger/postgres:exec",
        ] {
            assert_eq!(parse(text).to_string(), text);
        }
    }

    #[test]
    fn verbs_are_normalised() {
        assert_eq!(parse("http=api:post,get").to_string(), "http=api:GET,POST");
        assert_eq!(
            parse("container=a:logs,inspect,logs").to_string(),
            "container=a:inspect,logs"
        );
    }

    #[test]
    fn malformed_forms_are_rejected_with_a_reason() {
        let cases = [
            ("", "expected CAPABILITY=RESOURCE:VERBS"),
            ("db", "expected CAPABILITY=RESOURCE:VERBS"),
            ("db=agledger", "missing \":VERB\""),
            ("db=agledger:", "no verb"),
            ("db=:read", "resource name is empty"),
            ("db=agledger:drop", "unknown db verb \"drop\""),
            ("db=agledger:read,write", "unknown db verb"),
            ("dbx=agledger:read", "unknown capability \"dbx\""),
            ("net=host:connect", "unknown capability"),
            ("fs=backups:wo", "unknown fs verb"),
            ("fs=*:rw", "is not a resource"),
            ("fs=../etc:ro", "resource names use"),
            ("fs=back ups:ro", "resource names use"),
            ("http=api:FETCH", "unknown HTTP method"),
            ("http=api:GET,", "empty verb"),
            ("http=api:GET,*", "must stand alone"),
            ("http=api/../admin:GET", "'..' segment"),
            ("http=api//x:GET", "plain path"),
            ("http=api/v1*:GET", "plain path"),
            ("container=agledger:destroy", "unknown container verb"),
            ("container=agledger/*:exec", "is not a service"),
            ("container=agledger/a b:exec", "service"),
        ];
        for (text, want) in cases {
            let got = reason(text);
            assert!(
                got.contains(want),
                "{text:?}: reason {got:?} lacks {want:?}"
            );
        }
    }

    #[test]
    fn star_is_spelled_out_and_flagged() {
        let g = parse("container=agledger:*");
        assert!(g.is_wildcard());
        assert!(!parse("container=agledger:exec").is_wildcard());
        assert!(parse("http=api:*").is_wildcard());
    }

    #[test]
    fn coverage_follows_levels_services_and_prefixes() {
        assert!(parse("db=a:admin").covers(&parse("db=a:read")));
        assert!(!parse("db=a:read").covers(&parse("db=a:write")));
        assert!(!parse("db=a:admin").covers(&parse("db=b:read")));
        assert!(parse("fs=d:rw").covers(&parse("fs=d:ro")));
        assert!(!parse("fs=d:ro").covers(&parse("fs=d:rw")));
        assert!(parse("container=p:exec,logs").covers(&parse("container=p/api:exec")));
        assert!(!parse("container=p/api:exec").covers(&parse("container=p:exec")));
        assert!(!parse("container=p/api:exec").covers(&parse("container=p/worker:exec")));
        assert!(!parse("container=p:logs").covers(&parse("container=p:exec")));
        assert!(parse("http=api:GET,POST").covers(&parse("http=api/health:GET")));
        assert!(parse("http=api/v1:GET").covers(&parse("http=api/v1/admin:GET")));
        assert!(!parse("http=api/v1:GET").covers(&parse("http=api/v10:GET")));
        assert!(!parse("http=api/v1:GET").covers(&parse("http=api:GET")));
        assert!(!parse("http=api:GET").covers(&parse("http=api:POST")));
        assert!(!parse("fs=a:rw").covers(&parse("db=a:read")));
    }

    #[test]
    fn path_within_is_segment_wise() {
        assert!(path_within("/health", "/"));
        assert!(path_within("/v1/x", "/v1"));
        assert!(path_within("/v1?x=1", "/v1"));
        assert!(!path_within("/v10", "/v1"));
        assert!(!path_within("health", "/"));
    }
}
