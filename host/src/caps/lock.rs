//! Exclusive locks on files of granted directories: the deployment lock
//! operations take so that two of them never run on one deployment at
//! once. `flock(2)` (through std's `File::try_lock`): the kernel releases
//! it when the holder's descriptor closes, however the holder ends, so a
//! `kill -9` never leaves a stale lock. The file itself stays; it holds
//! the live holder's identity, rewritten by each new holder.

use std::io::{Read, Seek, Write};
use std::path::Path;

use cap_std::fs::{Dir, OpenOptions};
use serde::{Deserialize, Serialize};
use wasmtime::component::Resource;

use super::bindings::opshost::plugin::fs::{self as wit, LockHolder, LockOutcome};
use super::fs::{checked_path, owner_only, DirHandle};
use super::CapError;
use crate::caps::HostState;
use crate::gate::Effect;

/// A held lock: the open file is the lock.
pub struct Lock {
    path: String,
    /// None in plan mode: the lock was simulated, no lock file touched.
    _file: Option<std::fs::File>,
}

#[derive(Serialize, Deserialize)]
struct Holder {
    operation: String,
    pid: u32,
    since: String,
}

/// Take the lock on `path` in `dir`, or say who holds it.
fn try_lock(
    dir: &Dir,
    path: &Path,
    operation: &str,
) -> std::io::Result<Result<std::fs::File, Holder>> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    owner_only(&mut options);
    let mut file = dir.open_with(path, &options)?.into_std();
    match file.try_lock() {
        Ok(()) => {
            let holder = Holder {
                operation: operation.to_string(),
                pid: std::process::id(),
                since: crate::audit::now_rfc3339(),
            };
            let mut text = serde_json::to_vec(&holder).map_err(std::io::Error::other)?;
            text.push(b'\n');
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(&text)?;
            file.sync_data()?;
            Ok(Ok(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            // The holder writes its identity just after taking the lock: a
            // reader in between sees an empty or an older file.
            Ok(Err(serde_json::from_str(text.trim()).unwrap_or(Holder {
                operation: "unknown (the holder is starting)".into(),
                pid: 0,
                since: String::new(),
            })))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

impl HostState {
    pub(super) async fn take_lock(
        &mut self,
        dir: Resource<DirHandle>,
        path: String,
        operation: String,
    ) -> Result<LockOutcome, CapError> {
        let d = self.table.get(&dir)?;
        let call = self
            .run
            .call("fs", d.name(), "lock")
            .detail(format!("{path} ({operation})"));
        let call = d.pass(call, Effect::Changes)?;
        if call.simulated() {
            call.finish(checked_path(d.name(), &path, false).map(|_| ()))?;
            return Ok(LockOutcome::Acquired(
                self.table.push(Lock { path, _file: None })?,
            ));
        }
        let taken = (|| {
            let p = checked_path(d.name(), &path, false)?;
            try_lock(d.cap_dir(), p, &operation)
                .map_err(|e| CapError::Failed(format!("{path}: {e}")))
        })();
        let outcome = match taken {
            Ok(Ok(file)) => call.finish(Ok(())).map(|()| Ok(file)),
            Ok(Err(holder)) => call.outcome("held").finish(Ok(())).map(|()| Err(holder)),
            Err(e) => call.finish(Err(e)),
        }?;
        Ok(match outcome {
            Ok(file) => LockOutcome::Acquired(self.table.push(Lock {
                path,
                _file: Some(file),
            })?),
            Err(h) => LockOutcome::Held(LockHolder {
                operation: h.operation,
                pid: h.pid,
                since: h.since,
            }),
        })
    }
}

impl wit::HostLock for HostState {
    async fn path(&mut self, lock: Resource<Lock>) -> wasmtime::Result<String> {
        Ok(self.table.get(&lock)?.path.clone())
    }

    async fn drop(&mut self, lock: Resource<Lock>) -> wasmtime::Result<()> {
        self.table.delete(lock)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_told_who_has_it_until_the_first_lets_go() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).expect("dir");
        let first = try_lock(&dir, Path::new(".lock"), "restore")
            .expect("io")
            .ok()
            .expect("free");
        let held = try_lock(&dir, Path::new(".lock"), "backup").expect("io");
        match held {
            Err(h) => {
                assert_eq!(h.operation, "restore");
                assert_eq!(h.pid, std::process::id());
            }
            Ok(_) => panic!("taken twice"),
        }
        drop(first);
        assert!(try_lock(&dir, Path::new(".lock"), "backup")
            .expect("io")
            .is_ok());
    }
}
