//! The backup artifact, as the vendor's script writes it and as opshost's
//! backup adds to it: `backup-YYYY-MM-DD-HHMMSS.tar.gz` (UTC) holding
//! `<stamp>/db.dump` (`pg_dump -Fc`), `<stamp>/vault-public-keys.csv` and,
//! from opshost, `<stamp>/manifest.json` with sizes and SHA-256 sums.

use opshost_sdk::fs::ArchiveMember;
use opshost_sdk::{fail, Result};

use crate::clock;

pub const DUMP: &str = "db.dump";
pub const KEYS_CSV: &str = "vault-public-keys.csv";
pub const MANIFEST: &str = "manifest.json";
/// `format` in the manifest; restore refuses a newer one it cannot read.
pub const MANIFEST_FORMAT: &str = "opshost-backup/1";
/// One line: the backup file an upgrade made, which retention never removes.
pub const ROLLBACK_MARKER: &str = ".opshost-rollback-point";
/// JSON: what the last completed upgrade replaced (versions, pinned
/// digests, its backup), for the rollback operation.
pub const LAST_UPGRADE: &str = ".opshost-last-upgrade.json";
/// Written by the vendor's upgrade script after its pre-upgrade backup.
pub const VENDOR_PRE_UPGRADE: &str = ".pre-upgrade-version";

/// `backup-<stamp>.tar.gz`.
pub fn file_name(stamp: &str) -> String {
    format!("backup-{stamp}.tar.gz")
}

/// The time in a backup's file name, when the name is exactly a backup's.
pub fn time_of(name: &str) -> Option<i64> {
    let stamp = name.strip_prefix("backup-")?.strip_suffix(".tar.gz")?;
    clock::parse_stamp(stamp)
}

/// Where the files sit inside an archive.
pub struct Layout {
    /// The directory the members share (`<stamp>`), or "" for a flat archive.
    pub root: String,
    pub dump: ArchiveMember,
    pub manifest: Option<ArchiveMember>,
    pub keys_csv: Option<ArchiveMember>,
}

impl Layout {
    pub fn path(&self, file: &str) -> String {
        if self.root.is_empty() {
            file.to_string()
        } else {
            format!("{}/{file}", self.root)
        }
    }
}

/// Find the dump (exactly one `db.dump`) and its siblings among `members`.
pub fn locate(members: &[ArchiveMember]) -> Result<Layout> {
    let dumps: Vec<&ArchiveMember> = members
        .iter()
        .filter(|m| m.name == DUMP || m.name.ends_with(&format!("/{DUMP}")))
        .collect();
    let dump = match dumps.as_slice() {
        [one] => (*one).clone(),
        [] => {
            let names: Vec<&str> = members.iter().take(5).map(|m| m.name.as_str()).collect();
            return Err(fail(format!(
                "this is not an AGLedger backup: the archive has no {DUMP} (it holds {})",
                if names.is_empty() {
                    "no files".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
        _ => {
            return Err(fail(format!(
                "the archive holds {} files named {DUMP}: refusing to guess which to restore",
                dumps.len()
            )))
        }
    };
    let root = dump
        .name
        .strip_suffix(DUMP)
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    let sibling = |file: &str| {
        let wanted = if root.is_empty() {
            file.to_string()
        } else {
            format!("{root}/{file}")
        };
        members.iter().find(|m| m.name == wanted).cloned()
    };
    Ok(Layout {
        manifest: sibling(MANIFEST),
        keys_csv: sibling(KEYS_CSV),
        root,
        dump,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> ArchiveMember {
        ArchiveMember {
            name: name.into(),
            size: 1,
            sha256: "00".into(),
        }
    }

    #[test]
    fn names_are_exact() {
        assert!(time_of("backup-2026-11-27-072044.tar.gz").is_some());
        for other in [
            "backup-2026-11-27-072044.tar.gz.tmp",
            ".backup-2026-11-27-072044.tar.gz.opshost-1-0.tmp",
            "backup-latest.tar.gz",
            "mybackup-2026-11-27-072044.tar.gz",
            "backup-2026-11-27-072044.tgz",
        ] {
            assert_eq!(time_of(other), None, "{other}");
        }
        assert_eq!(
            file_name("2026-11-27-072044"),
            "backup-2026-11-27-072044.tar.gz"
        );
    }

    #[test]
    fn finds_the_dump_in_vendor_and_flat_layouts() {
        let l = locate(&[
            member("2026-11-27-072044/vault-public-keys.csv"),
            member("2026-11-27-072044/db.dump"),
        ])
        .expect("vendor");
        assert_eq!(l.root, "2026-11-27-072044");
        assert!(l.keys_csv.is_some() && l.manifest.is_none());
        assert_eq!(l.path(MANIFEST), "2026-11-27-072044/manifest.json");
        assert_eq!(locate(&[member("db.dump")]).expect("flat").root, "");
        assert!(locate(&[member("etc/passwd")]).is_err());
        assert!(locate(&[member("a/db.dump"), member("b/db.dump")]).is_err());
    }
}
