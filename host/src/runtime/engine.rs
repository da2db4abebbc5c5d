//! The engine and the compile cache. Compiling a plugin takes ~150 ms;
//! loading a precompiled one ~0.35 ms. The cache key is the plugin's
//! SHA-256 plus the engine's compatibility hash (wasmtime version and every
//! setting that changes code), so a changed plugin or engine never loads
//! stale code.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use crate::plugin::PluginFile;

pub fn new_engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // Component-model async is not used; without it host calls cost ~2x less.
        .concurrency_support(false);
    Ok(Engine::new(&config)?)
}

/// How the plugin's code was obtained this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compiled {
    /// Loaded from the cache: not compiled.
    CacheHit,
    /// Compiled and stored in the cache.
    CacheMiss,
    /// Compiled; no usable cache directory.
    NoCache,
}

pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    /// `$XDG_CACHE_HOME/opshost` (`~/.cache/opshost`) by default.
    pub fn default_dir() -> Option<PathBuf> {
        dirs::cache_dir().map(|d| d.join("opshost"))
    }

    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    pub fn disabled() -> Self {
        Self { dir: None }
    }

    fn key(engine: &Engine, sha256: &str) -> String {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{sha256}-{:016x}.cwasm", hasher.finish())
    }

    pub fn entry_path(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(Self::key(engine, sha256)))
    }

    /// The cache holds native code that will be executed: use it only if
    /// it is a directory of ours that nobody else can write.
    fn usable_dir(&self) -> Option<&Path> {
        let dir = self.dir.as_deref()?;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .ok()?;
        }
        let meta = std::fs::metadata(dir).ok()?;
        let ours = meta.uid() == effective_uid();
        let private = meta.permissions().mode() & 0o022 == 0;
        (meta.is_dir() && ours && private).then_some(dir)
    }

    pub fn load(
        &self,
        engine: &Engine,
        plugin: &PluginFile,
    ) -> anyhow::Result<(Component, Compiled)> {
        let Some(dir) = self.usable_dir() else {
            let component = Component::new(engine, &plugin.bytes).map_err(anyhow::Error::from)?;
            return Ok((component, Compiled::NoCache));
        };
        let path = dir.join(Self::key(engine, &plugin.sha256));
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an
            // engine with the same compatibility hash (it is in the name), in
            // a directory only this user can write (checked above).
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, Compiled::CacheHit)),
                Err(_) => {
                    // Truncated or foreign: recompile over it.
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let code = engine
            .precompile_component(&plugin.bytes)
            .map_err(anyhow::Error::from)?;
        let temp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&temp, &code).with_context(|| format!("cannot write {}", temp.display()))?;
        std::fs::rename(&temp, &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        // SAFETY: the bytes were produced just above by this engine.
        let component =
            unsafe { Component::deserialize(engine, &code) }.map_err(anyhow::Error::from)?;
        Ok((component, Compiled::CacheMiss))
    }
}

/// The effective uid, read from /proc so no libc call is needed.
fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}
