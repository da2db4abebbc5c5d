//! Version fit: does a plugin apply to the deployment it will act on?
//! The manifest's `applies_to` range against the version the host read
//! from the deployment (see `deployment_version`). A plugin written for
//! another release would run that release's steps against this one, so a
//! mismatch refuses before the plugin starts unless the operator forces it.

use std::collections::BTreeMap;

use anyhow::bail;

use super::Manifest;
use crate::config::Config;
use crate::deployment_version::VersionFrom;
use crate::policy::Capability;

/// The deployment's version, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentVersion {
    /// The `[containers.NAME]` the version belongs to.
    pub deployment: String,
    pub version: semver::Version,
    /// e.g. `/srv/agledger/compose/.env AGLEDGER_VERSION`.
    pub source: String,
}

/// What the host knows about the version of the deployment a plugin acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The plugin applies to every version (`applies_to = "*"`): nothing read.
    Any,
    /// No version source is configured for the plugin's deployment: the
    /// sentence that says so.
    Unconfigured(String),
    Known(DeploymentVersion),
    /// The configured source could not be read.
    Unreadable {
        deployment: String,
        source: String,
        error: String,
    },
}

/// What a run needs to know about version fit: the target and `--force-version`.
#[derive(Debug, Clone)]
pub struct VersionCheck {
    pub target: Target,
    pub force: bool,
}

impl VersionCheck {
    /// For callers that act on no deployment (benchmarks, embedding).
    pub fn unchecked() -> Self {
        Self {
            target: Target::Unconfigured("no deployment was named".into()),
            force: false,
        }
    }
}

/// The judgement of one plugin against one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Fits,
    /// Not checked; the warning to show once.
    Unchecked(String),
    /// Does not apply, or cannot be shown to apply.
    Mismatch(Mismatch),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// One line, e.g. `applies to >=1.4.0, deployment agledger runs 1.3.2`.
    pub short: String,
    /// The refusal: both versions, where the version was read, what to do.
    pub full: String,
}

pub fn judge(manifest: &Manifest, target: &Target) -> Verdict {
    let range = &manifest.applies_to;
    if *range == semver::VersionReq::STAR {
        return Verdict::Fits;
    }
    match target {
        Target::Any => Verdict::Fits,
        Target::Unconfigured(why) => Verdict::Unchecked(format!(
            "cannot check that {} applies (AGLedger {range}): {why}",
            manifest.identity()
        )),
        Target::Known(dv) if range.matches(&dv.version) => Verdict::Fits,
        Target::Known(dv) => Verdict::Mismatch(Mismatch {
            short: format!(
                "applies to {range}, deployment {} runs {}",
                dv.deployment, dv.version
            ),
            full: format!(
                "{} applies to AGLedger {range}; deployment {} runs {} (read from {}). \
                 Use the build of {} for {} (`opshost run {}` picks it from the plugin directory), \
                 or run with --force-version if you are sure it fits.",
                manifest.identity(),
                dv.deployment,
                dv.version,
                dv.source,
                manifest.name,
                dv.version,
                manifest.name,
            ),
        }),
        Target::Unreadable {
            deployment,
            source,
            error,
        } => Verdict::Mismatch(Mismatch {
            short: format!("the version of deployment {deployment} cannot be read ({error})"),
            full: format!(
                "cannot check that {} applies (AGLedger {range}) to deployment {deployment}: \
                 reading its version from {source} failed: {error}. Fix the source \
                 ([containers.{deployment}] version_from), or run with --force-version if you are sure it fits.",
                manifest.identity()
            ),
        }),
    }
}

/// The line that says a read version fits, so an operator sees the check
/// happened (nothing when nothing was read).
pub fn confirmation(manifest: &Manifest, target: &Target) -> Option<String> {
    match (judge(manifest, target), target) {
        (Verdict::Fits, Target::Known(dv)) => Some(format!(
            "version fit: {} applies to AGLedger {}; deployment {} runs {} (read from {})",
            manifest.identity(),
            manifest.applies_to,
            dv.deployment,
            dv.version,
            dv.source
        )),
        _ => None,
    }
}

/// Reads deployment versions for plugins, each deployment once per run
/// (pick-by-name judges several builds against the same deployment).
pub struct Targets<'a> {
    config: &'a Config,
    /// `--deployment NAME`.
    chosen: Option<&'a str>,
    read: BTreeMap<String, Target>,
}

impl<'a> Targets<'a> {
    pub fn new(config: &'a Config, chosen: Option<&'a str>) -> Self {
        Self {
            config,
            chosen,
            read: BTreeMap::new(),
        }
    }

    /// The target for this plugin. An error is the operator's: a
    /// `--deployment` naming nothing, or two deployments to choose from.
    pub async fn for_manifest(&mut self, manifest: &Manifest) -> anyhow::Result<Target> {
        if manifest.applies_to == semver::VersionReq::STAR {
            return Ok(Target::Any);
        }
        let (name, from) = match deployment_of(manifest, self.config, self.chosen)? {
            Which::Source(name, from) => (name, from),
            Which::Nothing(why) => return Ok(Target::Unconfigured(why)),
        };
        if let Some(known) = self.read.get(name) {
            return Ok(known.clone());
        }
        let source = from.describe(self.config);
        let target = match from.read(self.config).await {
            Ok(version) => Target::Known(DeploymentVersion {
                deployment: name.to_string(),
                version,
                source,
            }),
            Err(e) => Target::Unreadable {
                deployment: name.to_string(),
                source,
                error: format!("{e:#}"),
            },
        };
        self.read.insert(name.to_string(), target.clone());
        Ok(target)
    }
}

impl Targets<'_> {
    /// The version check for this plugin's run: its target, and whether
    /// `--force-version` was given.
    pub async fn check(
        &mut self,
        manifest: &Manifest,
        force: bool,
    ) -> Result<VersionCheck, crate::runtime::RunError> {
        let target = self
            .for_manifest(manifest)
            .await
            .map_err(crate::runtime::RunError::Config)?;
        Ok(VersionCheck { target, force })
    }
}

enum Which<'c> {
    Source(&'c str, &'c VersionFrom),
    Nothing(String),
}

/// The deployment a plugin acts on: `--deployment`, else the one
/// `[containers.NAME]` with a `version_from` among those its grants reach
/// (a container grant, or a db grant whose `[db.NAME]` runs in a container
/// project).
fn deployment_of<'c>(
    manifest: &Manifest,
    config: &'c Config,
    chosen: Option<&str>,
) -> anyhow::Result<Which<'c>> {
    if let Some(name) = chosen {
        let Some((name, resource)) = config.containers.get_key_value(name) else {
            bail!("--deployment {name}: the config has no [containers.{name}] table");
        };
        let Some(from) = &resource.version_from else {
            bail!("--deployment {name}: [containers.{name}] has no version_from, so its version cannot be read");
        };
        return Ok(Which::Source(name, from));
    }
    let mut reached: Vec<&str> = Vec::new();
    for request in &manifest.requests {
        let grant = &request.grant;
        let project = match grant.capability() {
            Capability::Container => Some(grant.resource()),
            Capability::Db => config
                .db
                .get(grant.resource())
                .and_then(|db| db.container.as_deref()),
            _ => None,
        };
        if let Some(p) = project {
            if !reached.contains(&p) {
                reached.push(p);
            }
        }
    }
    let with_source: Vec<(&'c str, &'c VersionFrom)> = reached
        .iter()
        .filter_map(|p| config.containers.get_key_value(*p))
        .filter_map(|(n, r)| r.version_from.as_ref().map(|f| (n.as_str(), f)))
        .collect();
    match with_source.as_slice() {
        [(name, from)] => Ok(Which::Source(name, from)),
        [] if reached.is_empty() => Ok(Which::Nothing(
            "it is granted no container project (nor a database in one); name the deployment with --deployment NAME".into(),
        )),
        [] => Ok(Which::Nothing(format!(
            "the config gives no version_from for {}",
            reached
                .iter()
                .map(|p| format!("[containers.{p}]"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        many => {
            let names: Vec<&str> = many.iter().map(|(n, _)| *n).collect();
            bail!(
                "{} acts on several deployments with a version_from ({}): say which one it applies to with --deployment NAME",
                manifest.identity(),
                names.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn manifest(applies_to: &str, grants: &[&str]) -> Manifest {
        let mut text = format!(
            "name = 'upgrade'\nvendor = 'v'\nversion = '0.3.0'\napplies_to = '{applies_to}'\nmin_host = '0.1.0'\n"
        );
        for g in grants {
            text.push_str(&format!("[[request]]\ngrant = '{g}'\nreason = 'r'\n"));
        }
        Manifest::parse(&text).expect("manifest")
    }

    fn known(version: &str) -> Target {
        Target::Known(DeploymentVersion {
            deployment: "agledger".into(),
            version: semver::Version::parse(version).expect("v"),
            source: "/srv/.env AGLEDGER_VERSION".into(),
        })
    }

    #[test]
    fn a_range_is_judged_against_the_deployment() {
        let m = manifest(">=1.4.0, <2.0.0", &[]);
        assert_eq!(judge(&m, &known("1.4.2")), Verdict::Fits);
        assert_eq!(
            confirmation(&m, &known("1.4.2")).as_deref(),
            Some("version fit: v/upgrade 0.3.0 applies to AGLedger >=1.4.0, <2.0.0; deployment agledger runs 1.4.2 (read from /srv/.env AGLEDGER_VERSION)")
        );
        assert_eq!(confirmation(&m, &known("1.3.2")), None);
        assert_eq!(confirmation(&m, &Target::Any), None);
        let Verdict::Mismatch(mismatch) = judge(&m, &known("1.3.2")) else {
            panic!("1.3.2 is outside >=1.4.0, <2.0.0");
        };
        assert_eq!(
            mismatch.short,
            "applies to >=1.4.0, <2.0.0, deployment agledger runs 1.3.2"
        );
        for want in [
            "v/upgrade 0.3.0 applies to AGLedger >=1.4.0, <2.0.0",
            "runs 1.3.2 (read from /srv/.env AGLEDGER_VERSION)",
            "--force-version",
        ] {
            assert!(mismatch.full.contains(want), "{want}: {}", mismatch.full);
        }
        // A pre-release is outside a plain range, as semver says.
        assert!(matches!(
            judge(&m, &known("1.5.0-rc.1")),
            Verdict::Mismatch(_)
        ));
        assert!(matches!(
            judge(&m, &Target::Unconfigured("why".into())),
            Verdict::Unchecked(w) if w.contains("cannot check that v/upgrade 0.3.0 applies") && w.ends_with("why")
        ));
        let unreadable = Target::Unreadable {
            deployment: "agledger".into(),
            source: "GET http://x/conformance".into(),
            error: "connection refused".into(),
        };
        assert!(matches!(
            judge(&m, &unreadable),
            Verdict::Mismatch(mm) if mm.full.contains("reading its version from GET http://x/conformance failed: connection refused")
        ));
    }

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("/etc/opshost")).expect("config")
    }

    const TWO: &str = "[http.api]\nurl = 'http://127.0.0.1:9'\n\
        [containers.agledger]\nproject = 'a'\nversion_from = { env_file = 'a.env' }\n\
        [containers.other]\nproject = 'o'\nversion_from = { http = 'api' }\n\
        [containers.bare]\nproject = 'b'\n\
        [db.agledger]\nurl = 'postgres://x@h/d'\ncontainer = 'agledger'\n\
        [db.external]\nurl = 'postgres://x@h/d'\n";

    fn which(m: &Manifest, c: &Config, chosen: Option<&str>) -> Result<String, String> {
        match deployment_of(m, c, chosen) {
            Ok(Which::Source(name, _)) => Ok(name.to_string()),
            Ok(Which::Nothing(why)) => Ok(format!("nothing: {why}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn the_deployment_is_the_one_the_grants_reach() {
        let c = config(TWO);
        let by_db = manifest("^1", &["db=agledger:read", "fs=x:ro"]);
        assert_eq!(which(&by_db, &c, None), Ok("agledger".into()));
        let by_container = manifest("^1", &["container=other:inspect"]);
        assert_eq!(which(&by_container, &c, None), Ok("other".into()));
        let both = manifest("^1", &["container=other:inspect", "db=agledger:read"]);
        let err = which(&both, &c, None).expect_err("ambiguous");
        assert!(
            err.contains("(other, agledger)") && err.contains("--deployment"),
            "{err}"
        );
        assert_eq!(which(&both, &c, Some("other")), Ok("other".into()));
        let bare = manifest("^1", &["container=bare:inspect", "db=external:read"]);
        assert_eq!(
            which(&bare, &c, None),
            Ok("nothing: the config gives no version_from for [containers.bare]".into())
        );
        let none = manifest("^1", &["fs=x:ro"]);
        assert!(which(&none, &c, None)
            .expect("none")
            .contains("granted no container project"));
        assert!(which(&none, &c, Some("nope"))
            .expect_err("unknown")
            .contains("no [containers.nope] table"));
        assert!(which(&none, &c, Some("bare"))
            .expect_err("no source")
            .contains("has no version_from"));
    }

    #[tokio::test]
    async fn a_star_range_reads_nothing_and_reads_are_remembered() {
        // The env file does not exist: a read would fail.
        let c = config(TWO);
        let mut targets = Targets::new(&c, None);
        let star = manifest("*", &["db=agledger:read"]);
        assert_eq!(
            targets.for_manifest(&star).await.expect("star"),
            Target::Any
        );
        let ranged = manifest("^1", &["db=agledger:read"]);
        let Target::Unreadable { source, error, .. } =
            targets.for_manifest(&ranged).await.expect("target")
        else {
            panic!("a.env does not exist");
        };
        assert_eq!(source, "/etc/opshost/a.env AGLEDGER_VERSION");
        assert!(error.contains("cannot read /etc/opshost/a.env"), "{error}");
        assert_eq!(targets.read.len(), 1);
    }
}
