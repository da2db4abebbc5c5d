//! A plugin file: its manifest, its digest, and whether this host can run it.

pub mod compat;
pub mod fit;
pub mod manifest;
pub mod select;
pub mod signature;

use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

pub use compat::World;
pub use manifest::Manifest;

/// A plugin read from disk and checked for shape, not yet compiled.
#[derive(Debug, Clone)]
pub struct PluginFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// Lower-case hex SHA-256 of the file: the identity policies pin.
    pub sha256: String,
    pub manifest: Manifest,
    pub world: World,
    /// The detached signature beside the file, checked against its digest.
    pub signature: signature::Status,
}

impl PluginFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read plugin {}", path.display()))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let manifest =
            Manifest::from_wasm(&bytes).with_context(|| format!("plugin {}", path.display()))?;
        let world = World::of(&bytes).with_context(|| format!("plugin {}", path.display()))?;
        let signature = signature::check(path, &sha256);
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            sha256,
            manifest,
            world,
            signature,
        })
    }
}
