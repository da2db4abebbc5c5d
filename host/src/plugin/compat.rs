//! What a component imports, and whether this host can give it that:
//! the opshost contract version, and only interfaces its grants cover.

use anyhow::{bail, Context};
use wasmtime::wasmparser::{ComponentExternalKind, ComponentTypeRef, Parser, Payload};

use crate::policy::{Capability, Grant};

/// The contract this host implements (`wit/` package version).
pub const WIT_PACKAGE: &str = "opshost:plugin";
/// 0.2.0: the container interface became a `deployment` handle (`open`).
pub const WIT_VERSION: semver::Version = semver::Version::new(0, 2, 0);
pub const HOST_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The top-level imports and exports of a component, by name.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

impl World {
    pub fn of(bytes: &[u8]) -> anyhow::Result<Self> {
        let mut world = World::default();
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.context("the file is not a valid WebAssembly component")? {
                Payload::Version { encoding, .. } => {
                    if depth == 0 && encoding != wasmtime::wasmparser::Encoding::Component {
                        bail!("this is a core wasm module, not a component: build the plugin for wasm32-wasip2");
                    }
                    depth += 1;
                }
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(reader) if depth == 1 => {
                    for import in reader {
                        let import = import?;
                        // Type imports (`use types.{error}` at world level) are not capabilities.
                        if matches!(import.ty, ComponentTypeRef::Type(_)) {
                            continue;
                        }
                        world.imports.push(import.name.name.to_string());
                    }
                }
                Payload::ComponentExportSection(reader) if depth == 1 => {
                    for export in reader {
                        let export = export?;
                        if export.kind == ComponentExternalKind::Type {
                            continue;
                        }
                        world.exports.push(export.name.name.to_string());
                    }
                }
                _ => {}
            }
        }
        Ok(world)
    }

    /// The opshost interfaces imported, as (interface name, version).
    fn opshost_imports(&self) -> anyhow::Result<Vec<(&str, semver::Version)>> {
        let prefix = format!("{WIT_PACKAGE}/");
        let mut out = Vec::new();
        for import in &self.imports {
            let Some(rest) = import.strip_prefix(&prefix) else {
                continue;
            };
            let (iface, version) = rest
                .split_once('@')
                .with_context(|| format!("import {import} carries no version"))?;
            let version = semver::Version::parse(version)
                .with_context(|| format!("import {import} has a bad version"))?;
            out.push((iface, version));
        }
        Ok(out)
    }

    /// Refuse a plugin built against another contract, one that imports
    /// something this host does not provide, or one that imports a
    /// capability interface its grants do not cover (it would otherwise be
    /// linked silently or fail obscurely at instantiation).
    pub fn check(&self, granted: &[Grant]) -> anyhow::Result<()> {
        if !self.exports.iter().any(|e| e == "run") {
            bail!("the component does not export `run`: it was not built for the opshost:plugin/operation world");
        }
        for import in &self.imports {
            let known =
                import.starts_with("wasi:") || import.starts_with(&format!("{WIT_PACKAGE}/"));
            if !known {
                bail!("the plugin imports `{import}`, which this host does not provide");
            }
        }
        for (iface, version) in self.opshost_imports()? {
            if !contract_compatible(&version) {
                bail!(
                    "the plugin was built against {WIT_PACKAGE}@{version}; this host (opshost {HOST_VERSION}) provides {WIT_PACKAGE}@{WIT_VERSION}. Use a build of the plugin for this contract, or an opshost that provides {version}"
                );
            }
            let capability = match iface {
                "types" | "progress" | "crypto" => continue,
                "db" => Capability::Db,
                // db's dump/restore name an fs `dir` type, so a db plugin imports fs.
                "fs" if granted.iter().any(|g| g.capability() == Capability::Db) => continue,
                "fs" => Capability::Fs,
                "http" => Capability::Http,
                "container" => Capability::Container,
                other => bail!(
                    "the plugin imports {WIT_PACKAGE}/{other}, which this host does not provide"
                ),
            };
            if !granted.iter().any(|g| g.capability() == capability) {
                bail!(
                    "the plugin imports the {capability} interface but its manifest requests no {capability} grant; a plugin must declare every capability it uses"
                );
            }
        }
        Ok(())
    }
}

/// Semver rules with 0.x: the same minor, and no newer patch than ours.
fn contract_compatible(wanted: &semver::Version) -> bool {
    let ours = WIT_VERSION;
    if ours.major == 0 {
        wanted.major == 0 && wanted.minor == ours.minor && wanted.patch <= ours.patch
    } else {
        wanted.major == ours.major && wanted <= &ours
    }
}

/// The plugin needs a newer host than this one.
pub fn check_min_host(min_host: &semver::Version) -> anyhow::Result<()> {
    let ours = semver::Version::parse(HOST_VERSION).context("host version")?;
    if min_host > &ours {
        bail!("the plugin needs opshost {min_host} or newer; this is opshost {ours}. Upgrade opshost.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_versions() {
        assert!(contract_compatible(&semver::Version::new(0, 2, 0)));
        assert!(!contract_compatible(&semver::Version::new(0, 1, 0)));
        assert!(!contract_compatible(&semver::Version::new(0, 3, 0)));
        assert!(!contract_compatible(&semver::Version::new(0, 2, 1)));
        assert!(!contract_compatible(&semver::Version::new(1, 2, 0)));
    }

    #[test]
    fn undeclared_capability_import_is_refused() {
        let world = World {
            imports: vec![
                "opshost:plugin/fs@0.2.0".into(),
                "wasi:cli/stdout@0.2.6".into(),
            ],
            exports: vec!["run".into()],
        };
        let err = world.check(&[]).expect_err("fs not granted").to_string();
        assert!(err.contains("requests no fs grant"), "{err}");
        assert!(world.check(&["fs=work:ro".parse().expect("grant")]).is_ok());
    }

    #[test]
    fn foreign_imports_and_versions_are_refused() {
        let mut world = World {
            imports: vec!["evil:net/raw@1.0.0".into()],
            exports: vec!["run".into()],
        };
        assert!(world
            .check(&[])
            .expect_err("foreign")
            .to_string()
            .contains("does not provide"));
        world.imports = vec!["opshost:plugin/progress@0.3.0".into()];
        assert!(world
            .check(&[])
            .expect_err("newer")
            .to_string()
            .contains("built against"));
        world.exports.clear();
        assert!(world.check(&[]).is_err());
    }

    #[test]
    fn newer_min_host_is_refused() {
        assert!(check_min_host(&semver::Version::new(0, 0, 1)).is_ok());
        assert!(check_min_host(&semver::Version::new(99, 0, 0)).is_err());
    }
}
