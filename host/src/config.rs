//! The operator's config: what each resource name means on this machine.
//! Plugins see only the names; URLs, credentials and absolute paths stay here.
//!
//! ```toml
//! [db.agledger]
//! url = "postgres://agledger:…@127.0.0.1:5432/agledger"   # or:
//! env_file = "/opt/agledger/compose/.env"                 # DATABASE_URL / POSTGRES_*
//!
//! [dir.backups]
//! path = "/opt/agledger/backup"        # relative paths are resolved from this file
//!
//! [containers.agledger]
//! project = "agledger"                 # com.docker.compose.project label
//! version_from = { env_file = "/opt/agledger/compose/.env" }   # see deployment_version
//!
//! [plugins]
//! dir = "/usr/lib/opshost/plugins"     # where `opshost run NAME` looks
//!
//! [http.api]
//! url = "http://127.0.0.1:3001"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::policy::{Capability, Grant};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub db: BTreeMap<String, DbResource>,
    #[serde(default)]
    pub dir: BTreeMap<String, DirResource>,
    #[serde(default)]
    pub containers: BTreeMap<String, ContainersResource>,
    #[serde(default)]
    pub http: BTreeMap<String, HttpResource>,
    #[serde(default)]
    pub audit: AuditSettings,
    #[serde(default)]
    pub plugins: PluginSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbResource {
    /// A full connection URL.
    pub url: Option<String>,
    /// A compose `.env` to read the connection from instead
    /// (DATABASE_URL, DATABASE_URL_MIGRATE for admin, else POSTGRES_*).
    pub env_file: Option<PathBuf>,
    /// With a bundled database (no DATABASE_URL in the `.env`): where the
    /// postgres container listens.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Bundled mode: the `[containers.NAME]` project whose `service`
    /// (default `postgres`) runs the database. Connections go to that
    /// container (unless `host` is set) and pg_dump/pg_restore run inside it.
    pub container: Option<String>,
    pub service: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirResource {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainersResource {
    /// The compose project name (label `com.docker.compose.project`).
    pub project: String,
    /// Image repositories a plugin may pull, recreate with or run
    /// (e.g. `127.0.0.1:5000/agledger/agledger`). Default: the repositories
    /// the project's containers already use.
    pub images: Option<Vec<String>>,
    /// Who must have signed the images a plugin pulls (cosign-compatible);
    /// see `crate::trust`. Absent: pulls are unverified, with a warning.
    pub signatures: Option<crate::trust::SignatureSettings>,
    /// `signatures`, loaded and checked when the config is parsed.
    #[serde(skip)]
    pub trust: Option<std::sync::Arc<crate::trust::ImagePolicy>>,
    /// Where the deployment's product version is read, so plugins'
    /// `applies_to` ranges are checked before they run.
    pub version_from: Option<crate::deployment_version::VersionFrom>,
    /// What runs the containers: `docker` (the default). `kubernetes` is
    /// designed (docs/kubernetes-backend.md), not built: refused at load.
    #[serde(default)]
    pub backend: ContainerBackendKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerBackendKind {
    #[default]
    Docker,
    Kubernetes,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpResource {
    pub url: url::Url,
    /// A file holding a token the host sends as `Authorization: Bearer`
    /// on every request to this base URL (the product's platform key): the
    /// plugin uses the API without ever holding the key. Read at each
    /// request, so a rotated key needs no restart.
    pub bearer_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    pub path: Option<PathBuf>,
    /// `opshost` (default) or `ocsf` (OCSF API Activity events, for a SIEM).
    #[serde(default)]
    pub format: crate::audit::Format,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// The plugin directory `opshost run NAME` picks a build from.
    pub dir: Option<PathBuf>,
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Self::parse(&text, base)
            .with_context(|| format!("config file {} is not valid", path.display()))
    }

    /// Only the `[audit]` table (path resolved), for `opshost audit`: a
    /// viewer of the log needs no database or image-trust settings to work.
    pub fn load_audit(path: &Path) -> anyhow::Result<AuditSettings> {
        #[derive(Deserialize)]
        struct Only {
            #[serde(default)]
            audit: AuditSettings,
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut only: Only = toml::from_str(&text)
            .with_context(|| format!("config file {} is not valid", path.display()))?;
        if let Some(p) = only.audit.path.as_mut().filter(|p| p.is_relative()) {
            let base = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            *p = std::path::absolute(base.join(&*p))
                .context("cannot resolve the config directory")?;
        }
        Ok(only.audit)
    }

    /// Parse, resolving relative paths against `base` (the config file's directory).
    pub fn parse(text: &str, base: &Path) -> anyhow::Result<Self> {
        let mut config: Config = toml::from_str(text)?;
        let base = std::path::absolute(base).context("cannot resolve the config directory")?;
        for (name, dir) in config.dir.iter_mut() {
            check_name(name)?;
            if dir.path.is_relative() {
                dir.path = base.join(&dir.path);
            }
        }
        for (name, db) in config.db.iter_mut() {
            check_name(name)?;
            match (&db.url, &db.env_file) {
                (Some(_), Some(_)) => bail!("[db.{name}]: give url or env_file, not both"),
                (None, None) => bail!("[db.{name}]: give url or env_file"),
                (None, Some(env)) if env.is_relative() => db.env_file = Some(base.join(env)),
                _ => {}
            }
        }
        for (name, http) in config.http.iter_mut() {
            check_name(name)?;
            if !matches!(http.url.scheme(), "http" | "https") || http.url.host_str().is_none() {
                bail!("[http.{name}]: url must be http(s)://host[:port][/path]");
            }
            if let Some(token) = http.bearer_token_file.as_mut() {
                if token.is_relative() {
                    *token = base.join(&*token);
                }
            }
        }
        for (name, containers) in config.containers.iter_mut() {
            check_name(name)?;
            if containers.backend == ContainerBackendKind::Kubernetes {
                bail!("[containers.{name}] backend = \"kubernetes\" is designed but not built yet (docs/kubernetes-backend.md describes it); use backend = \"docker\" (the default)");
            }
            if let Some(s) = containers.signatures.as_mut() {
                s.resolve_paths(&base);
                let policy = crate::trust::ImagePolicy::load(s)
                    .with_context(|| format!("[containers.{name}.signatures]"))?;
                containers.trust = Some(std::sync::Arc::new(policy));
            }
            if let Some(from) = containers.version_from.as_mut() {
                from.check(&format!("[containers.{name}]"), &base, &config.http)?;
            }
        }
        for (name, db) in &config.db {
            if let Some(c) = &db.container {
                if !config.containers.contains_key(c) {
                    bail!("[db.{name}] container = \"{c}\" names no [containers.{c}] table");
                }
            }
        }
        for p in [config.audit.path.as_mut(), config.plugins.dir.as_mut()]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// Every granted resource must be named in the config: an unknown name
    /// is an operator error, reported before the plugin starts.
    pub fn check_resources(&self, grants: &[Grant]) -> anyhow::Result<()> {
        for grant in grants {
            let name = grant.resource();
            let known = match grant.capability() {
                Capability::Db => self.db.contains_key(name),
                Capability::Fs => self.dir.contains_key(name),
                Capability::Http => self.http.contains_key(name),
                Capability::Container => self.containers.contains_key(name),
            };
            if !known {
                bail!(
                    "grant {grant} names the resource \"{name}\", but the config has no [{}.{name}] table. Add it to the config file (see `opshost run --help`).",
                    grant.capability().config_table()
                );
            }
        }
        Ok(())
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("resource name \"{name}\" must use letters, digits, '-' and '_'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_paths_and_checks_names() {
        let c = Config::parse(
            "[dir.work]\npath = 'data'\n[http.api]\nurl = 'http://127.0.0.1:1'",
            Path::new("/etc/opshost"),
        )
        .expect("config");
        assert_eq!(c.dir["work"].path, Path::new("/etc/opshost/data"));
        assert!(c
            .check_resources(&["fs=work:rw".parse().expect("g")])
            .is_ok());
        let err = c
            .check_resources(&["fs=backups:rw".parse().expect("g")])
            .expect_err("unknown");
        assert!(err.to_string().contains("no [dir.backups] table"), "{err}");
    }

    #[test]
    fn rejects_malformed_configs() {
        let cases = [
            ("[db.a]\n", "give url or env_file"),
            ("[db.a]\nurl='postgres://x'\nenv_file='.env'", "not both"),
            ("[http.api]\nurl='file:///etc/passwd'", "must be http"),
            ("[dir.work]\npth='x'", "unknown field"),
            ("[share.x]\npath='x'", "unknown field"),
            ("[dir.'a b']\npath='x'", "must use letters"),
            (
                "[audit]\nformat='cef'",
                "unknown variant `cef`, expected `opshost` or `ocsf`",
            ),
            (
                "[containers.a]\nproject='a'\nversion_from={http='api'}",
                "names no [http.api] table",
            ),
            (
                "[containers.a]\nproject='a'\nbackend='kubernetes'",
                "designed but not built yet (docs/kubernetes-backend.md",
            ),
            (
                "[containers.a]\nproject='a'\nbackend='nomad'",
                "unknown variant",
            ),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", Config::parse(text, Path::new("/")).expect_err(text));
            assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
        }
    }
}
