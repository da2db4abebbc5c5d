//! Which product version a deployment runs, read by the host from where the
//! operator's config says, so a plugin's `applies_to` range is checked
//! before the plugin starts (a plugin could not be trusted to check itself).
//!
//! ```toml
//! [containers.agledger]
//! project = "agledger"
//! version_from = { env_file = "/srv/agledger/compose/.env" }   # AGLEDGER_VERSION
//! # or: version_from = { http = "api", path = "/conformance" }  # JSON field "version"
//! ```
//! `version_from` may sit on a `[containers.NAME]` or a `[db.NAME]` table:
//! the resources a plugin is granted name the deployment it acts on.
//! The host knows one thing about the product here: where a version
//! string is. Everything else about versions stays in the plugins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::config::{Config, HttpResource};

pub const DEFAULT_KEY: &str = "AGLEDGER_VERSION";
pub const DEFAULT_PATH: &str = "/conformance";
pub const DEFAULT_FIELD: &str = "version";
/// A version read must not hold a run up: the API either answers at once
/// or the operator should know it does not.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a deployment's version is read. Exactly one of `env_file`
/// (with `key`) or `http` (with `path` and `field`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionFrom {
    /// A compose `.env`, read as compose reads it.
    pub env_file: Option<PathBuf>,
    /// The variable in `env_file` [default: AGLEDGER_VERSION].
    pub key: Option<String>,
    /// An `[http.NAME]` base URL: GET `path` there, with its bearer token.
    pub http: Option<String>,
    /// [default: /conformance]
    pub path: Option<String>,
    /// The top-level JSON string field holding the version [default: version].
    pub field: Option<String>,
}

impl VersionFrom {
    /// Check the table at config load (`at` names it for messages) and
    /// resolve a relative `env_file` against the config's directory.
    pub fn check(
        &mut self,
        at: &str,
        base: &Path,
        http: &BTreeMap<String, HttpResource>,
    ) -> anyhow::Result<()> {
        match (&self.env_file, &self.http) {
            (Some(_), Some(_)) => bail!("{at} version_from: give env_file or http, not both"),
            (None, None) => bail!(
                "{at} version_from: give env_file = \"PATH/.env\" or http = \"NAME\" (an [http.NAME] table)"
            ),
            (Some(env), None) => {
                if self.path.is_some() || self.field.is_some() {
                    bail!("{at} version_from: path and field go with http, not env_file");
                }
                if env.is_relative() {
                    self.env_file = Some(base.join(env));
                }
            }
            (None, Some(name)) => {
                if self.key.is_some() {
                    bail!("{at} version_from: key goes with env_file, not http");
                }
                if !http.contains_key(name) {
                    bail!("{at} version_from: http = \"{name}\" names no [http.{name}] table");
                }
                if let Some(path) = &self.path {
                    if !path.starts_with('/') || path.starts_with("//") {
                        bail!("{at} version_from: path {path:?} must start with a single '/'");
                    }
                }
            }
        }
        Ok(())
    }

    /// Where the version comes from, in words an operator can check by hand.
    pub fn describe(&self, config: &Config) -> String {
        if let Some(env) = &self.env_file {
            return format!("{} {}", env.display(), self.key());
        }
        let name = self.http.as_deref().unwrap_or_default();
        match config.http.get(name) {
            Some(resource) => format!(
                "GET {} (field \"{}\")",
                url_for(&resource.url, self.path()),
                self.field()
            ),
            None => format!("[http.{name}] {}", self.path()),
        }
    }

    fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(DEFAULT_KEY)
    }

    fn path(&self) -> &str {
        self.path.as_deref().unwrap_or(DEFAULT_PATH)
    }

    fn field(&self) -> &str {
        self.field.as_deref().unwrap_or(DEFAULT_FIELD)
    }

    /// Read the version now.
    pub async fn read(&self, config: &Config) -> anyhow::Result<semver::Version> {
        let raw = match (&self.env_file, &self.http) {
            (Some(env), _) => {
                let vars = crate::dotenv::read(env)?;
                vars.get(self.key())
                    .cloned()
                    .with_context(|| format!("{} sets no {}", env.display(), self.key()))?
            }
            (None, Some(name)) => self.read_http(name, config).await?,
            (None, None) => bail!("version_from names no source"),
        };
        parse_version(&raw)
    }

    async fn read_http(&self, name: &str, config: &Config) -> anyhow::Result<String> {
        let resource = config
            .http
            .get(name)
            .with_context(|| format!("the config has no [http.{name}] table"))?;
        let url = url_for(&resource.url, self.path());
        // No redirects (the shared client follows none): the operator named
        // this URL, and a token must not travel anywhere else.
        let mut request = crate::caps::http::client().get(&url).timeout(HTTP_TIMEOUT);
        if let Some(token) = bearer_token(name, resource)? {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("GET {url} failed"))?;
        let status = response.status();
        if !status.is_success() {
            bail!("GET {url} answered {status}");
        }
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("GET {url}: reading the answer"))?;
        let body: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("GET {url} did not answer JSON"))?;
        body.get(self.field())
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .with_context(|| format!("GET {url} answered no string field \"{}\"", self.field()))
    }
}

/// `path` below the base URL (the base's own path kept), as the http
/// capability joins them.
fn url_for(base: &url::Url, path: &str) -> String {
    format!(
        "{}{}{}",
        base.origin().ascii_serialization(),
        base.path().trim_end_matches('/'),
        path
    )
}

/// The operator's token for `[http.NAME]`, as the http capability sends it
/// (one token on one line, read at each use so a rotated key is picked up).
fn bearer_token(name: &str, resource: &HttpResource) -> anyhow::Result<Option<String>> {
    let Some(path) = &resource.bearer_token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read [http.{name}] bearer_token_file {}",
            path.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        bail!(
            "[http.{name}] bearer_token_file {} must hold one token on one line",
            path.display()
        );
    }
    Ok(Some(token.to_string()))
}

/// A release version as deployments write it: `1.4.0` or `v1.4.0`. A
/// moving tag (`latest`) names no version, so nothing can be checked.
pub fn parse_version(raw: &str) -> anyhow::Result<semver::Version> {
    let text = raw.trim();
    let bare = text
        .strip_prefix('v')
        .or_else(|| text.strip_prefix('V'))
        .unwrap_or(text);
    semver::Version::parse(bare).with_context(|| {
        format!("{text:?} is not a release version (MAJOR.MINOR.PATCH); pin the deployment to a release")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_table() -> BTreeMap<String, HttpResource> {
        let mut http = BTreeMap::new();
        http.insert(
            "api".to_string(),
            HttpResource {
                url: "http://127.0.0.1:9/base/".parse().expect("url"),
                bearer_token_file: None,
            },
        );
        http
    }

    fn from(toml_text: &str) -> VersionFrom {
        toml::from_str(toml_text).expect("version_from")
    }

    #[test]
    fn versions_are_release_versions() {
        assert_eq!(
            parse_version(" v1.4.0\n").expect("v"),
            semver::Version::new(1, 4, 0)
        );
        assert_eq!(
            parse_version("1.3.2-rc.1").expect("pre").pre.as_str(),
            "rc.1"
        );
        for bad in ["latest", "", "1.4", "one"] {
            let err = format!("{:#}", parse_version(bad).expect_err(bad));
            assert!(err.contains("not a release version"), "{err}");
        }
    }

    #[test]
    fn sources_are_checked_at_load() {
        let http = http_table();
        let base = Path::new("/etc/opshost");
        let mut env = from("env_file = 'compose/.env'");
        env.check("[containers.a]", base, &http).expect("env");
        assert_eq!(
            env.env_file.as_deref(),
            Some(Path::new("/etc/opshost/compose/.env"))
        );
        from("http = 'api'\npath = '/conformance'")
            .check("[containers.a]", base, &http)
            .expect("http");
        let cases = [
            ("env_file = 'x'\nhttp = 'api'", "not both"),
            ("key = 'V'", "give env_file"),
            ("http = 'nope'", "names no [http.nope] table"),
            ("http = 'api'\npath = 'conformance'", "single '/'"),
            ("http = 'api'\nkey = 'V'", "key goes with env_file"),
            ("env_file = 'x'\nfield = 'v'", "go with http"),
        ];
        for (text, want) in cases {
            let err = format!(
                "{:#}",
                from(text)
                    .check("[containers.a]", base, &http)
                    .expect_err(text)
            );
            assert!(err.contains(want), "{text:?}: {err}");
        }
        assert!(toml::from_str::<VersionFrom>("file = 'x'").is_err());
    }

    #[test]
    fn the_source_is_described_as_read() {
        let config = Config {
            http: http_table(),
            ..Config::default()
        };
        assert_eq!(
            from("http = 'api'").describe(&config),
            "GET http://127.0.0.1:9/base/conformance (field \"version\")"
        );
        assert_eq!(
            from("env_file = '/srv/.env'\nkey = 'V'").describe(&config),
            "/srv/.env V"
        );
    }

    #[tokio::test]
    async fn an_env_file_is_read_as_compose_reads_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let env = dir.path().join(".env");
        std::fs::write(
            &env,
            "# pinned\nexport AGLEDGER_VERSION=\"1.3.2\"  \nOTHER=x\n",
        )
        .expect("w");
        let source = VersionFrom {
            env_file: Some(env.clone()),
            key: None,
            http: None,
            path: None,
            field: None,
        };
        let config = Config::default();
        assert_eq!(
            source.read(&config).await.expect("read"),
            semver::Version::new(1, 3, 2)
        );
        std::fs::write(&env, "OTHER=x\n").expect("w");
        let err = format!("{:#}", source.read(&config).await.expect_err("unset"));
        assert!(err.contains("sets no AGLEDGER_VERSION"), "{err}");
    }
}
