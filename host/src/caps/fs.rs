//! fs: directories named in the config, opened through cap-std so that no
//! path (`..`, absolute, a symlink leading out) can leave them. Grant:
//! `fs=NAME:ro|rw`: `open` needs `ro`; every call on the handle passes the
//! gate (reads need `ro`, changes `rw`).
//!
//! Plan mode (`opshost run --plan`) answers changes without making them:
//! write, rename, remove, mkdir: ok; create: a writer that discards what it
//! is given; pack: the member list with each source's size and the SHA-256
//! of nothing (e3b0c442…), no archive written; extract: the member named,
//! size 0, nothing written; lock: acquired, no lock file touched.
//!
//! What plugins create is owner-only whatever the umask: files 0600 (a
//! backup is a full copy of the database), directories 0700. A file that
//! replaces an existing one keeps that file's mode and owner.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, File};
use futures::future::BoxFuture;
use wasmtime::component::Resource;

use super::archive;
use super::bindings::opshost::plugin::fs::{
    self as wit, ArchiveMember, Entry, EntryKind, MemberSource,
};
use super::stream::{ByteSink, ByteSource, Discard, Origin, Reader, Writer};
use super::{Call, CapError, Grant};
use crate::caps::HostState;
use crate::gate::{self, Effect};
use crate::policy::FsAccess;

/// An open, granted directory.
pub struct DirHandle {
    name: String,
    dir: Dir,
    access: FsAccess,
}

impl DirHandle {
    /// Open a configured directory for the host itself (e.g. db dump targets).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An owned copy of the handle, for host work that outlives a borrow
    /// of the resource table (e.g. across an await).
    pub fn duplicate(&self) -> Result<DirHandle, CapError> {
        Ok(DirHandle {
            name: self.name.clone(),
            dir: self.dir.try_clone()?,
            access: self.access,
        })
    }

    pub fn cap_dir(&self) -> &Dir {
        &self.dir
    }

    /// The grant a call on this directory needs: `ro` to read, `rw` to change.
    pub(crate) fn grant(&self, effect: Effect) -> Grant {
        Grant::Fs {
            resource: self.name.clone(),
            access: match effect {
                Effect::Reads => FsAccess::Ro,
                Effect::Changes => FsAccess::Rw,
            },
        }
    }

    /// Pass `call` through the gate for a read or a change of this directory.
    pub(crate) fn pass(&self, call: Call, effect: Effect) -> Result<Call, CapError> {
        call.gate(&self.grant(effect), effect)
    }
}

/// A plugin path, checked before it reaches the OS: relative, no `..`, no
/// NUL. cap-std then refuses symlinks that lead out of the directory.
pub fn checked_path<'a>(dir: &str, path: &'a str, allow_root: bool) -> Result<&'a Path, CapError> {
    let p = Path::new(path);
    if path.contains('\0') {
        return Err(CapError::Invalid(format!("path {path:?} contains NUL")));
    }
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(CapError::Denied(format!(
            "path {path:?} leaves the granted directory \"{dir}\": paths are relative, without '..'"
        )));
    }
    let is_root = p.components().all(|c| c == Component::CurDir);
    if is_root && !allow_root {
        return Err(CapError::Invalid(format!(
            "path {path:?} names the directory itself, not a file in it"
        )));
    }
    Ok(if is_root { Path::new(".") } else { p })
}

/// Map an OS error on `path` to the plugin-facing error, keeping the path.
fn io_error(path: &str, e: std::io::Error) -> CapError {
    match CapError::from(e) {
        CapError::Denied(m) => CapError::Denied(format!(
            "{path}: {m} (outside the granted directory or not permitted)"
        )),
        CapError::NotFound(_) => CapError::NotFound(format!("{path}: no such file or directory")),
        CapError::Failed(m) => CapError::Failed(format!("{path}: {m}")),
        other => other,
    }
}

fn entry(name: String, meta: &cap_std::fs::Metadata) -> Entry {
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Directory
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    };
    let modified_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.into_std().duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mode = {
        use cap_std::fs::PermissionsExt;
        meta.permissions().mode() & 0o7777
    };
    Entry {
        name,
        kind,
        size: meta.len(),
        modified_ms,
        mode,
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `.NAME.opshost-PID-N.tmp` beside the target: same directory, so the
/// final rename is atomic; dot-prefixed and suffixed so no tool mistakes it
/// for a finished file.
fn temp_name(target: &Path) -> PathBuf {
    let file = target
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{file}.opshost-{}-{n}.tmp", std::process::id()))
}

/// A file being written atomically: temp file, fsync, rename. Dropped
/// without `finish`, the temp file is removed and the target untouched.
pub struct AtomicFile {
    dir: Dir,
    temp: PathBuf,
    target: PathBuf,
    file: Option<File>,
}

/// New files: readable and writable by their owner only.
pub fn owner_only(options: &mut cap_std::fs::OpenOptions) {
    use cap_std::fs::OpenOptionsExt;
    options.mode(0o600);
}

impl AtomicFile {
    pub fn create(dir: &Dir, target: &Path) -> std::io::Result<Self> {
        use cap_std::fs::PermissionsExt;
        let dir = dir.try_clone()?;
        let temp = temp_name(target);
        let mut options = cap_std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        owner_only(&mut options);
        let file = dir.open_with(&temp, &options)?;
        // The umask may have taken bits away, never added: set exactly.
        // A replaced file keeps its mode and its owner (the host often runs
        // as root; `.env` belongs to the operator's account).
        let (mode, owner) = match dir.metadata(target) {
            Ok(existing) if existing.is_file() => {
                use cap_std::fs::MetadataExt;
                let mode = existing.permissions().mode() & 0o7777;
                (mode, Some((existing.uid(), existing.gid())))
            }
            _ => (0o600, None),
        };
        if let Some((uid, gid)) = owner {
            let handle = file.try_clone()?.into_std();
            let _ = std::os::unix::fs::fchown(&handle, Some(uid), Some(gid));
        }
        file.set_permissions(cap_std::fs::Permissions::from_mode(mode))?;
        Ok(Self {
            dir,
            temp,
            target: target.to_path_buf(),
            file: Some(file),
        })
    }

    pub fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.write_all(data),
            None => Err(std::io::Error::other("file already finished")),
        }
    }

    /// A descriptor on the temp file, for a child process to write into.
    pub fn std_handle(&self) -> std::io::Result<std::fs::File> {
        match &self.file {
            Some(f) => Ok(f.try_clone()?.into_std()),
            None => Err(std::io::Error::other("file already finished")),
        }
    }

    /// A fresh read descriptor on the temp file, at its start.
    pub fn std_handle_from_start(&self) -> std::io::Result<std::fs::File> {
        Ok(self.dir.open(&self.temp)?.into_std())
    }

    pub fn commit(&mut self) -> std::io::Result<()> {
        self.finish(true)
    }

    /// Rename without fsync: for an intermediate file the next step reads
    /// back and makes durable in another form.
    pub fn commit_unsynced(&mut self) -> std::io::Result<()> {
        self.finish(false)
    }

    fn finish(&mut self, sync: bool) -> std::io::Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| std::io::Error::other("file already finished"))?;
        if sync {
            file.sync_all()?;
        }
        drop(file);
        self.dir.rename(&self.temp, &self.dir, &self.target)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = self.dir.remove_file(&self.temp);
        }
    }
}

impl ByteSink for AtomicFile {
    fn write(&mut self, data: Vec<u8>) -> BoxFuture<'_, Result<(), CapError>> {
        Box::pin(async move { self.write_all(&data).map_err(CapError::from) })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<(), CapError>> {
        Box::pin(async move { self.commit().map_err(CapError::from) })
    }
}

struct FileSource(File);

impl ByteSource for FileSource {
    fn read(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<u8>, CapError>> {
        Box::pin(async move {
            let mut buf = vec![0u8; max];
            let n = self.0.read(&mut buf)?;
            buf.truncate(n);
            Ok(buf)
        })
    }
}

impl wit::Host for HostState {
    async fn open(&mut self, name: String) -> Result<Resource<DirHandle>, CapError> {
        let wanted = Grant::Fs {
            resource: name.clone(),
            access: FsAccess::Ro,
        };
        let call = self
            .run
            .call("fs", &name, "open")
            .gate(&wanted, Effect::Reads)?;
        let opened = (|| {
            let access = self.run.grants.fs(&name).unwrap_or(FsAccess::Ro);
            let path = &gate::configured(&self.run.config.dir, "directory", &name)?.path;
            let dir = Dir::open_ambient_dir(path, ambient_authority()).map_err(|e| {
                CapError::Failed(format!("directory \"{name}\" cannot be opened: {e}"))
            })?;
            Ok(DirHandle {
                name: name.clone(),
                dir,
                access,
            })
        })();
        let handle = call.finish(opened)?;
        Ok(self.table.push(handle)?)
    }
}

impl wit::HostDir for HostState {
    async fn name(&mut self, dir: Resource<DirHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&dir)?.name.clone())
    }

    async fn writable(&mut self, dir: Resource<DirHandle>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&dir)?.access == FsAccess::Rw)
    }

    async fn read(&mut self, dir: Resource<DirHandle>, path: String) -> Result<Vec<u8>, CapError> {
        let d = self.table.get(&dir)?;
        let call = d.pass(
            self.run.call("fs", &d.name, "read").detail(&path),
            Effect::Reads,
        )?;
        call.finish(
            checked_path(&d.name, &path, false)
                .and_then(|p| d.dir.read(p).map_err(|e| io_error(&path, e))),
        )
    }

    async fn write(
        &mut self,
        dir: Resource<DirHandle>,
        path: String,
        data: Vec<u8>,
    ) -> Result<(), CapError> {
        let d = self.table.get(&dir)?;
        let call = self
            .run
            .call("fs", &d.name, "write")
            .detail(format!("{path} ({} bytes)", data.len()));
        let call = d.pass(call, Effect::Changes)?;
        if call.simulated() {
            return call.finish(checked_path(&d.name, &path, false).map(|_| ()));
        }
        call.finish((|| {
            let p = checked_path(&d.name, &path, false)?;
            let mut file = AtomicFile::create(&d.dir, p).map_err(|e| io_error(&path, e))?;
            file.write_all(&data).map_err(|e| io_error(&path, e))?;
            file.commit().map_err(|e| io_error(&path, e))
        })())
    }

    async fn list(
        &mut self,
        dir: Resource<DirHandle>,
        path: String,
    ) -> Result<Vec<Entry>, CapError> {
        let d = self.table.get(&dir)?;
        let call = d.pass(
            self.run.call("fs", &d.name, "list").detail(&path),
            Effect::Reads,
        )?;
        call.finish((|| {
            let p = checked_path(&d.name, if path.is_empty() { "." } else { &path }, true)?;
            let mut out = Vec::new();
            for item in d.dir.read_dir(p).map_err(|e| io_error(&path, e))? {
                let item = item.map_err(|e| io_error(&path, e))?;
                let meta = item.metadata().map_err(|e| io_error(&path, e))?;
                let name = p
                    .join(item.file_name())
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .to_string();
                out.push(entry(name, &meta));
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })())
    }

    async fn stat(&mut self, dir: Resource<DirHandle>, path: String) -> Result<Entry, CapError> {
        let d = self.table.get(&dir)?;
        let call = d.pass(
            self.run.call("fs", &d.name, "stat").detail(&path),
            Effect::Reads,
        )?;
        call.finish(checked_path(&d.name, &path, true).and_then(|p| {
            let meta = d.dir.symlink_metadata(p).map_err(|e| io_error(&path, e))?;
            Ok(entry(path.clone(), &meta))
        }))
    }

    async fn rename(
        &mut self,
        dir: Resource<DirHandle>,
        from: String,
        to: String,
    ) -> Result<(), CapError> {
        let d = self.table.get(&dir)?;
        let call = self
            .run
            .call("fs", &d.name, "rename")
            .detail(format!("{from} -> {to}"));
        let call = d.pass(call, Effect::Changes)?;
        let simulated = call.simulated();
        call.finish((|| {
            let a = checked_path(&d.name, &from, false)?;
            let b = checked_path(&d.name, &to, false)?;
            if simulated {
                return Ok(());
            }
            d.dir.rename(a, &d.dir, b).map_err(|e| io_error(&from, e))
        })())
    }

    async fn remove(&mut self, dir: Resource<DirHandle>, path: String) -> Result<(), CapError> {
        let d = self.table.get(&dir)?;
        let call = d.pass(
            self.run.call("fs", &d.name, "remove").detail(&path),
            Effect::Changes,
        )?;
        let simulated = call.simulated();
        call.finish((|| {
            let p = checked_path(&d.name, &path, false)?;
            if simulated {
                return Ok(());
            }
            let meta = d.dir.symlink_metadata(p).map_err(|e| io_error(&path, e))?;
            if meta.is_dir() {
                d.dir.remove_dir(p).map_err(|e| io_error(&path, e))
            } else {
                d.dir.remove_file(p).map_err(|e| io_error(&path, e))
            }
        })())
    }

    async fn mkdir(&mut self, dir: Resource<DirHandle>, path: String) -> Result<(), CapError> {
        let d = self.table.get(&dir)?;
        let call = d.pass(
            self.run.call("fs", &d.name, "mkdir").detail(&path),
            Effect::Changes,
        )?;
        let simulated = call.simulated();
        call.finish((|| {
            let p = checked_path(&d.name, &path, false)?;
            if simulated {
                return Ok(());
            }
            let mut builder = cap_std::fs::DirBuilder::new();
            {
                use cap_std::fs::DirBuilderExt;
                builder.recursive(true).mode(0o700);
            }
            d.dir
                .create_dir_with(p, &builder)
                .map_err(|e| io_error(&path, e))
        })())
    }

    async fn open_read(
        &mut self,
        dir: Resource<DirHandle>,
        path: String,
    ) -> Result<Resource<Reader>, CapError> {
        let d = self.table.get(&dir)?;
        let name = d.name.clone();
        let call = d.pass(
            self.run.call("fs", &name, "open-read").detail(&path),
            Effect::Reads,
        )?;
        let file = call.finish(
            checked_path(&name, &path, false)
                .and_then(|p| d.dir.open(p).map_err(|e| io_error(&path, e))),
        )?;
        let origin = Origin {
            ctx: self.run.clone(),
            capability: "fs",
            resource: name,
            what: path,
        };
        Ok(self.table.push(Reader::new(FileSource(file), origin))?)
    }

    async fn create(
        &mut self,
        dir: Resource<DirHandle>,
        path: String,
    ) -> Result<Resource<Writer>, CapError> {
        let d = self.table.get(&dir)?;
        let name = d.name.clone();
        let call = d.pass(
            self.run.call("fs", &name, "create").detail(&path),
            Effect::Changes,
        )?;
        let origin = Origin {
            ctx: self.run.clone(),
            capability: "fs",
            resource: name.clone(),
            what: path.clone(),
        };
        if call.simulated() {
            call.finish(checked_path(&name, &path, false))?;
            return Ok(self.table.push(Writer::new(Discard, origin))?);
        }
        let file = call.finish((|| {
            let p = checked_path(&name, &path, false)?;
            AtomicFile::create(&d.dir, p).map_err(|e| io_error(&path, e))
        })())?;
        Ok(self.table.push(Writer::new(file, origin))?)
    }

    async fn pack(
        &mut self,
        dir: Resource<DirHandle>,
        path: String,
        members: Vec<(String, MemberSource)>,
        compress: bool,
    ) -> Result<Vec<ArchiveMember>, CapError> {
        let d = self.table.get(&dir)?;
        let call = self
            .run
            .call("fs", &d.name, "pack")
            .detail(format!("{path} ({} members)", members.len()));
        let call = d.pass(call, Effect::Changes)?;
        if call.simulated() {
            let planned = planned_members(d, &path, members);
            return call.finish(planned);
        }
        let prepared = (|| {
            let target = checked_path(&d.name, &path, false)?.to_path_buf();
            let mut sources = Vec::with_capacity(members.len());
            for (name, source) in members {
                let source = match source {
                    MemberSource::File(p) => {
                        archive::Source::File(checked_path(&d.name, &p, false)?.to_path_buf())
                    }
                    MemberSource::Bytes(b) => archive::Source::Bytes(b),
                };
                sources.push((name, source));
            }
            Ok((d.duplicate()?, target, sources))
        })();
        let (owned, target, sources) = match prepared {
            Ok(ready) => ready,
            Err(e) => return call.finish(Err(e)),
        };
        let output = self.run.output.clone();
        let packed = blocking(move || {
            archive::pack(owned.cap_dir(), &target, sources, compress, &|n| {
                output.advance(n)
            })
        })
        .await;
        call.finish(packed.map_err(|e| e.context(&path)).map(to_wit_members))
    }

    async fn archive_members(
        &mut self,
        dir: Resource<DirHandle>,
        path: String,
    ) -> Result<Vec<ArchiveMember>, CapError> {
        let d = self.table.get(&dir)?;
        let call = d.pass(
            self.run
                .call("fs", &d.name, "archive-members")
                .detail(&path),
            Effect::Reads,
        )?;
        let opened = checked_path(&d.name, &path, false)
            .and_then(|p| d.dir.open(p).map_err(|e| io_error(&path, e)));
        let file = match opened {
            Ok(f) => f.into_std(),
            Err(e) => return call.finish(Err(e)),
        };
        let output = self.run.output.clone();
        let listed = blocking(move || archive::members_of(file, &|n| output.advance(n))).await;
        call.finish(listed.map_err(|e| e.context(&path)).map(to_wit_members))
    }

    async fn extract(
        &mut self,
        dir: Resource<DirHandle>,
        archive_path: String,
        member: String,
        target: String,
    ) -> Result<ArchiveMember, CapError> {
        let d = self.table.get(&dir)?;
        let call = self
            .run
            .call("fs", &d.name, "extract")
            .detail(format!("{archive_path}: {member} -> {target}"));
        let call = d.pass(call, Effect::Changes)?;
        if call.simulated() {
            return call.finish(Ok(ArchiveMember {
                name: member,
                size: 0,
                sha256: EMPTY_SHA256.to_string(),
            }));
        }
        let prepared = (|| {
            let source = checked_path(&d.name, &archive_path, false)?;
            let file = d.dir.open(source).map_err(|e| io_error(&archive_path, e))?;
            let target = checked_path(&d.name, &target, false)?.to_path_buf();
            Ok((d.duplicate()?, file.into_std(), target))
        })();
        let (owned, file, target) = match prepared {
            Ok(ready) => ready,
            Err(e) => return call.finish(Err(e)),
        };
        let output = self.run.output.clone();
        let extracted = blocking(move || {
            archive::extract(owned.cap_dir(), file, &member, &target, &|n| {
                output.advance(n)
            })
        })
        .await;
        call.finish(
            extracted
                .map_err(|e| e.context(&archive_path))
                .map(to_wit_member),
        )
    }

    async fn lock(
        &mut self,
        dir: Resource<DirHandle>,
        path: String,
        operation: String,
    ) -> Result<wit::LockOutcome, CapError> {
        self.take_lock(dir, path, operation).await
    }

    async fn drop(&mut self, dir: Resource<DirHandle>) -> wasmtime::Result<()> {
        self.table.delete(dir)?;
        Ok(())
    }
}

/// SHA-256 of no bytes: what plan mode reports for content it did not write.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Plan mode's answer to `pack`: the members, sized from their sources
/// (0 for a file a simulated step did not create), no archive written.
fn planned_members(
    d: &DirHandle,
    path: &str,
    members: Vec<(String, MemberSource)>,
) -> Result<Vec<ArchiveMember>, CapError> {
    checked_path(&d.name, path, false)?;
    members
        .into_iter()
        .map(|(name, source)| {
            let size = match source {
                MemberSource::Bytes(b) => b.len() as u64,
                MemberSource::File(p) => {
                    let p = checked_path(&d.name, &p, false)?;
                    d.dir.metadata(p).map(|m| m.len()).unwrap_or(0)
                }
            };
            Ok(ArchiveMember {
                name,
                size,
                sha256: EMPTY_SHA256.to_string(),
            })
        })
        .collect()
}

/// Run blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CapError> + Send + 'static,
) -> Result<T, CapError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CapError::Failed(format!("archive work stopped: {e}")))?
}

fn to_wit_member(m: archive::Member) -> ArchiveMember {
    ArchiveMember {
        name: m.name,
        size: m.size,
        sha256: m.sha256,
    }
}

fn to_wit_members(members: Vec<archive::Member>) -> Vec<ArchiveMember> {
    members.into_iter().map(to_wit_member).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_before_the_os_sees_them() {
        assert!(checked_path("d", "a/b.txt", false).is_ok());
        assert!(matches!(
            checked_path("d", "../x", false),
            Err(CapError::Denied(_))
        ));
        assert!(matches!(
            checked_path("d", "a/../../x", false),
            Err(CapError::Denied(_))
        ));
        assert!(matches!(
            checked_path("d", "/etc/passwd", false),
            Err(CapError::Denied(_))
        ));
        assert!(matches!(
            checked_path("d", "a\0b", false),
            Err(CapError::Invalid(_))
        ));
        assert!(matches!(
            checked_path("d", ".", false),
            Err(CapError::Invalid(_))
        ));
        assert!(checked_path("d", ".", true).is_ok());
    }
}
