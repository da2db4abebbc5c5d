//! What opshost's AGLedger operations share: the vault chain check (used by
//! vault-scan and by restore to verify a restored database), the backup
//! artifact's names and manifest, and UTC time without a date library.

pub mod artifact;
pub mod backup;
pub mod clock;
pub mod deployment;
pub mod doctor;
pub mod lock;
pub mod release;
pub mod restore;
pub mod vault;

/// Remove a staging directory and the files in it, best effort: what is
/// left is found and reported by the next run.
pub fn remove_tree(dir: &opshost_sdk::fs::Dir, path: &str) {
    if let Ok(entries) = dir.list(path) {
        for e in entries {
            let _ = dir.remove(&e.name);
        }
    }
    let _ = dir.remove(path);
}

/// SHA-256 of `data`, hex, as the manifest records it.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// A size for people: `1.4 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
