//! The record of backups known complete, so that retention reads each
//! backup in full once, not at every run.

use opshost_sdk::fs::Dir;
use opshost_sdk::{describe, progress};
use serde_json::json;

use super::retention::Found;

/// Backups known complete (read to the end once), by name with the size
/// and modification time they had then: a later truncation or rewrite
/// changes those, and the file is read again. Kept in the backup directory
/// so that each backup is read in full once, not at every run.
pub struct Verified {
    known: serde_json::Map<String, serde_json::Value>,
}

const VERIFIED_FILE: &str = ".opshost-verified-backups.json";

impl Verified {
    pub fn load(dir: &Dir) -> Self {
        let known = dir
            .read(VERIFIED_FILE)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        Self { known }
    }

    pub fn stamp(files: &[Found], name: &str) -> Option<serde_json::Value> {
        files
            .iter()
            .find(|f| f.name == name)
            .map(|f| json!({ "size": f.size, "modified": f.modified }))
    }

    /// The backup this run made and read back is complete.
    pub fn record(&mut self, files: &[Found], name: &str) {
        if let Some(stamp) = Self::stamp(files, name) {
            self.known.insert(name.to_string(), stamp);
        }
    }

    pub fn check(
        &mut self,
        dir: &Dir,
        files: &[Found],
        name: &str,
    ) -> std::result::Result<(), String> {
        let stamp = Self::stamp(files, name);
        if stamp.is_some() && self.known.get(name) == stamp.as_ref() {
            return Ok(());
        }
        progress::step(&format!("checking {name} is a complete backup"), None);
        match dir.archive_members(name) {
            Ok(_) => {
                self.record(files, name);
                Ok(())
            }
            Err(e) => {
                self.known.remove(name);
                Err(describe(&e))
            }
        }
    }

    pub fn save(mut self, dir: &Dir, files: &[Found]) {
        self.known
            .retain(|name, _| files.iter().any(|f| &f.name == name));
        let text = serde_json::Value::Object(self.known).to_string();
        if let Err(e) = dir.write(VERIFIED_FILE, text.as_bytes()) {
            progress::warn(&format!(
                "could not record verified backups: {}",
                describe(&e)
            ));
        }
    }
}
