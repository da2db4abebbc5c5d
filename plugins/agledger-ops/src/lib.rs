//! What opshost's AGLedger operations share: the vault chain check (used by
//! vault-scan and by restore to verify a restored database), the backup
//! artifact's names and manifest, and UTC time without a date library.

pub mod artifact;
pub mod clock;
pub mod lock;
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
