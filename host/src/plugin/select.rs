//! Choosing a build by name: `opshost run upgrade` looks in the plugin
//! directory, which may hold several builds of several versions (a vendor
//! ships one per release line), and takes the newest build that applies to
//! the deployment and that a run would admit. It says which it took and
//! why it passed over each other build, so the choice can be checked.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::fit::{self, Target, Targets, Verdict, VersionCheck};
use super::PluginFile;
use crate::audit::{AuditLog, Event, PluginRef};
use crate::config::Config;
use crate::output::{Mode as OutputMode, Output};
use crate::policy::{Grant, Policy};
use crate::runtime::{plugin_ref, RunError};

/// Where builds are looked for when neither `--plugin-dir`,
/// `OPSHOST_PLUGIN_DIR` nor the config's `[plugins] dir` says.
pub const DEFAULT_DIR: &str = "/usr/lib/opshost/plugins";

/// The command line names a plugin (`upgrade`), not a file: no such file,
/// no '/' and no `.wasm` suffix.
pub fn is_name(arg: &Path) -> bool {
    let text = arg.to_string_lossy();
    !text.is_empty() && !text.contains('/') && !text.ends_with(".wasm") && !arg.exists()
}

/// The build taken, and why the others were not.
#[derive(Debug)]
pub struct Selection {
    pub plugin: PluginFile,
    /// The deployment's version as read for it (reused by the run).
    pub target: Target,
    /// Taken only because of `--force-version`: no build fits.
    pub forced: bool,
    /// One sentence: what was taken and why.
    pub summary: String,
    /// One line per build passed over.
    pub skipped: Vec<String>,
}

/// One build as judged: its label, version, and a run's verdict on it.
struct Judged {
    label: String,
    version: semver::Version,
    /// `Err`: the refusal, in one line.
    verdict: Result<(), String>,
}

/// Take the first admitted build (builds come newest first) and say why
/// each other one was passed over.
fn choose(judged: &[Judged]) -> (Option<usize>, Vec<String>) {
    let picked = judged.iter().position(|j| j.verdict.is_ok());
    let mut lines = Vec::new();
    for (i, j) in judged.iter().enumerate() {
        if Some(i) == picked {
            continue;
        }
        let why = match (&j.verdict, picked.map(|p| &judged[p])) {
            (Err(why), _) => why.clone(),
            (Ok(()), Some(p)) if p.version == j.version => {
                format!(
                    "fits too; the same version as {}, which sorts first by file name",
                    p.label
                )
            }
            (Ok(()), _) => "fits too, but an older version".to_string(),
        };
        lines.push(format!("{}: {why}", j.label));
    }
    (picked, lines)
}

/// Every `.wasm` in `dir` whose manifest names `name`, newest version
/// first (equal versions by file name), and a line for each `.wasm` that
/// is not a readable plugin.
fn builds(dir: &Path, name: &str) -> anyhow::Result<(Vec<PluginFile>, Vec<String>)> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list the plugin directory {}", dir.display()))?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list the plugin directory {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths {
        match PluginFile::load(&path) {
            Ok(p) if p.manifest.name == name => found.push(p),
            Ok(_) => {}
            Err(e) => unreadable.push(format!("{}: not a plugin: {e:#}", file_name(&path))),
        }
    }
    // Stable: equal versions keep file-name order.
    found.sort_by(|a, b| b.manifest.version.cmp(&a.manifest.version));
    Ok((found, unreadable))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn label(plugin: &PluginFile) -> String {
    format!(
        "{} {} ({})",
        plugin.manifest.name,
        plugin.manifest.version,
        file_name(&plugin.path)
    )
}

/// A refusal in one line: the version mismatch as its short form, the
/// policy's refusal as its first line and the grants it lacks.
fn one_line(plugin: &PluginFile, target: &Target, err: &RunError) -> String {
    if let (RunError::Refused(text), Verdict::Mismatch(m)) =
        (err, fit::judge(&plugin.manifest, target))
    {
        if *text == m.full {
            return m.short;
        }
    }
    let text = err.to_string();
    let first = text.lines().next().unwrap_or_default().trim().to_string();
    let missing: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- "))
        .map(|l| l.split("   (").next().unwrap_or(l).trim())
        .collect();
    if missing.is_empty() {
        first
    } else {
        format!("{first} {}", missing.join(", "))
    }
}

/// Pick the build of `name` in `dir` to run, and audit the choice (or the
/// refusal). `admit` is the run's own admission decision
/// (`runtime::admission`), asked of every build. With `force`, a build
/// that does not fit the deployment is taken only when none fits: the
/// newest the policy admits.
pub async fn pick(
    dir: &Path,
    name: &str,
    targets: &mut Targets<'_>,
    force: bool,
    admit: impl Fn(&PluginFile, &VersionCheck) -> Result<(), RunError>,
    audit: &AuditLog,
) -> Result<Selection, RunError> {
    let (found, unreadable) = builds(dir, name).map_err(RunError::Config)?;
    if found.is_empty() {
        let mut message = format!(
            "no build of plugin \"{name}\" in {}; give the plugin's file path, or the directory with --plugin-dir (or OPSHOST_PLUGIN_DIR, or [plugins] dir in the config)",
            dir.display()
        );
        for line in &unreadable {
            message.push_str(&format!("\n  {line}"));
        }
        return Err(RunError::Config(anyhow::anyhow!(message)));
    }
    let mut judged = Vec::with_capacity(found.len());
    let mut checks = Vec::with_capacity(found.len());
    for plugin in &found {
        let check = targets.check(&plugin.manifest, false).await?;
        let verdict = admit(plugin, &check).map_err(|e| one_line(plugin, &check.target, &e));
        judged.push(Judged {
            label: label(plugin),
            version: plugin.manifest.version.clone(),
            verdict,
        });
        checks.push(check);
    }
    let (mut picked, mut skipped) = choose(&judged);
    let mut forced = false;
    if picked.is_none() && force {
        let forced_pick = found.iter().zip(&checks).position(|(plugin, check)| {
            let forcing = VersionCheck {
                target: check.target.clone(),
                force: true,
            };
            admit(plugin, &forcing).is_ok()
        });
        if let Some(i) = forced_pick {
            forced = true;
            picked = Some(i);
            skipped.retain(|line| !line.starts_with(&format!("{}: ", judged[i].label)));
        }
    }
    skipped.extend(unreadable);
    let Some(index) = picked else {
        let error = RunError::Refused(format!(
            "no build of {name} in {} applies to the deployment and is allowed by the policy:\n  {}\n\
             Add the build for the deployment's version to the directory (and grant it in the policy), \
             or run with --force-version to take the newest build the policy allows.",
            dir.display(),
            skipped.join("\n  ")
        ));
        // No build was taken: the event names the plugin, not a build.
        let mut who = plugin_ref(&found[0]);
        who.version.clear();
        who.sha256.clear();
        record(audit, &who, "refused", &error.to_string()).map_err(RunError::Host)?;
        return Err(error);
    };
    let plugin = found
        .into_iter()
        .nth(index)
        .context("picked build")
        .map_err(RunError::Host)?;
    let target = checks.swap_remove(index).target;
    let fit_words = match &target {
        Target::Any => "applies to every version".to_string(),
        Target::Known(dv) if forced => format!(
            "does NOT apply to deployment {} (AGLedger {}); taken because of --force-version",
            dv.deployment, dv.version
        ),
        Target::Known(dv) => format!(
            "applies to deployment {} (AGLedger {}, read from {})",
            dv.deployment, dv.version, dv.source
        ),
        Target::Unconfigured(_) => "applies to a version that was not checked".to_string(),
        Target::Unreadable { deployment, .. } => format!(
            "was taken with --force-version: the version of deployment {deployment} cannot be read"
        ),
    };
    let summary = format!(
        "picked {} from {}: the newest of {} build{} of {name} that {fit_words}{}",
        label(&plugin),
        dir.display(),
        judged.len(),
        if judged.len() == 1 { "" } else { "s" },
        if forced {
            ""
        } else {
            " and that the policy allows"
        },
    );
    let selection = Selection {
        plugin,
        target,
        forced,
        summary,
        skipped,
    };
    let mut detail = selection.summary.clone();
    for line in &selection.skipped {
        detail.push_str("; passed over ");
        detail.push_str(line);
    }
    record(audit, &plugin_ref(&selection.plugin), "ok", &detail).map_err(RunError::Host)?;
    Ok(selection)
}

/// What `opshost run PLUGIN` was given.
pub struct Wanted<'a> {
    /// A file, or a plugin's name (see [`is_name`]).
    pub arg: &'a Path,
    /// Where builds are picked from by name.
    pub plugin_dir: PathBuf,
    /// `--deployment NAME`.
    pub deployment: Option<&'a str>,
    /// `--force-version`.
    pub force_version: bool,
}

/// The plugin to run and its deployment's version: the file given, or the
/// build picked by name (announced, and audited whether one is picked or
/// none is).
pub async fn resolve(
    wanted: &Wanted<'_>,
    config: &Config,
    policy: &Policy,
    allow: &[Grant],
    output: &Output,
    audit: &AuditLog,
) -> Result<(PluginFile, VersionCheck), RunError> {
    let mut targets = Targets::new(config, wanted.deployment);
    if !is_name(wanted.arg) {
        let plugin = PluginFile::load(wanted.arg).map_err(RunError::Config)?;
        let check = targets
            .check(&plugin.manifest, wanted.force_version)
            .await?;
        return Ok((plugin, check));
    }
    let name = wanted.arg.to_string_lossy();
    let selection = pick(
        &wanted.plugin_dir,
        &name,
        &mut targets,
        wanted.force_version,
        |plugin, check| crate::runtime::admission(plugin, config, policy, allow, check).map(drop),
        audit,
    )
    .await?;
    if output.mode() == OutputMode::Json {
        output.json_event(serde_json::json!({
            "event": "select",
            "picked": selection.plugin.path,
            "version": selection.plugin.manifest.version.to_string(),
            "forced": selection.forced,
            "summary": selection.summary,
            "passed_over": selection.skipped,
        }));
    } else {
        output.info(&selection.summary);
        for line in &selection.skipped {
            output.info(&format!("  passed over {line}"));
        }
    }
    let check = VersionCheck {
        target: selection.target,
        force: wanted.force_version,
    };
    Ok((selection.plugin, check))
}

/// A `run`/`select` event: the build taken and why, or that none was.
fn record(audit: &AuditLog, plugin: &PluginRef, outcome: &str, detail: &str) -> anyhow::Result<()> {
    audit.record(&Event {
        time: crate::audit::now_rfc3339(),
        plugin,
        capability: "run",
        resource: "",
        verb: "select",
        outcome,
        detail: Some(detail),
        duration_us: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(label: &str, version: &str, verdict: Result<(), &str>) -> Judged {
        Judged {
            label: label.into(),
            version: semver::Version::parse(version).expect("v"),
            verdict: verdict.map_err(str::to_string),
        }
    }

    #[test]
    fn the_first_admitted_build_is_taken_and_every_other_is_explained() {
        let list = [
            judged("u 0.5.0 (a)", "0.5.0", Err("not allowed")),
            judged("u 0.4.0 (b)", "0.4.0", Err("applies to >=2")),
            judged("u 0.3.0 (c)", "0.3.0", Ok(())),
            judged("u 0.3.0 (d)", "0.3.0", Ok(())),
            judged("u 0.2.0 (e)", "0.2.0", Ok(())),
        ];
        let (picked, lines) = choose(&list);
        assert_eq!(picked, Some(2));
        assert_eq!(
            lines,
            [
                "u 0.5.0 (a): not allowed",
                "u 0.4.0 (b): applies to >=2",
                "u 0.3.0 (d): fits too; the same version as u 0.3.0 (c), which sorts first by file name",
                "u 0.2.0 (e): fits too, but an older version",
            ]
        );
        let (none, lines) = choose(&list[..2]);
        assert_eq!(none, None);
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn only_bare_names_are_names() {
        assert!(is_name(Path::new("upgrade")));
        assert!(!is_name(Path::new("upgrade.wasm")));
        assert!(!is_name(Path::new("./upgrade")));
        assert!(!is_name(Path::new("plugins/upgrade")));
        assert!(!is_name(Path::new("")));
    }

    #[test]
    fn a_directory_without_builds_says_where_it_looked() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("broken.wasm"), b"not wasm").expect("w");
        let (found, unreadable) = builds(dir.path(), "upgrade").expect("list");
        assert!(found.is_empty());
        assert_eq!(unreadable.len(), 1);
        assert!(
            unreadable[0].starts_with("broken.wasm: not a plugin"),
            "{unreadable:?}"
        );
        assert!(builds(&dir.path().join("missing"), "upgrade").is_err());
    }
}
