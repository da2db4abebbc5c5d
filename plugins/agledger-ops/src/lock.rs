//! The deployment lock: one operation that changes a deployment at a time.
//! It is a `flock` the host takes on a file of the backup directory (every
//! operation on the deployment has that directory): the kernel releases it
//! when the holder ends, however it ends, so a killed run never blocks the
//! next one, and a journal found while holding the lock was left by a run
//! that is gone.

use opshost_sdk::fs::{Dir, Lock, LockOutcome};
use opshost_sdk::{fail, Context, Result};

pub const FILE: &str = ".opshost-deployment.lock";

/// Take the lock for `operation`, or fail at once naming its holder.
pub fn take(dir: &Dir, operation: &str) -> Result<Lock> {
    match dir
        .lock(FILE, operation)
        .context("taking the deployment lock")?
    {
        LockOutcome::Acquired(lock) => Ok(lock),
        LockOutcome::Held(holder) => Err(fail(format!(
            "another operation is running on this deployment: {} (opshost process {}, since {}). \
             One operation at a time: wait for it to end, then run this again. Nothing was changed",
            holder.operation,
            holder.pid,
            if holder.since.is_empty() {
                "just now"
            } else {
                &holder.since
            }
        ))),
    }
}

/// A short random suffix for names that must be unique even when two runs
/// start in the same second (WASI random, through std's hasher seeds).
pub fn unique_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    format!("{:06x}", h.finish() & 0xff_ffff)
}
