//! Which backups retention removes: only files named exactly like a backup
//! (`backup-YYYY-MM-DD-HHMMSS.tar.gz`), ordered by the time in the name;
//! the newest `keep` stay, and so do the rollback point and the backup
//! this run just made, whatever their age.

use agledger_ops::artifact;

/// A regular file in the backup directory.
pub struct Found {
    pub name: String,
    /// Last modification, seconds since the epoch.
    pub modified: Option<i64>,
}

/// The backup an upgrade made: the one the marker names, else (for the
/// vendor's scripts) the newest backup made before `.pre-upgrade-version`
/// was written.
pub fn rollback_point(
    marker: Option<&str>,
    pre_upgrade_written: Option<i64>,
    files: &[Found],
) -> Option<String> {
    if let Some(name) = marker.map(str::trim).filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    let written = pre_upgrade_written?;
    files
        .iter()
        .filter_map(|f| artifact::time_of(&f.name).map(|t| (t, &f.name)))
        .filter(|(t, _)| *t <= written)
        .max()
        .map(|(_, name)| name.clone())
}

/// The backups to remove, oldest first.
pub fn to_remove(files: &[Found], keep: usize, protected: &[&str]) -> Vec<String> {
    let mut backups: Vec<(i64, &str)> = files
        .iter()
        .filter_map(|f| artifact::time_of(&f.name).map(|t| (t, f.name.as_str())))
        .collect();
    // Newest first; the name breaks ties so the order is total.
    backups.sort_by(|a, b| b.cmp(a));
    let mut out: Vec<String> = backups
        .iter()
        .skip(keep)
        .filter(|(_, name)| !protected.contains(name))
        .map(|(_, name)| name.to_string())
        .collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(names: &[&str]) -> Vec<Found> {
        names
            .iter()
            .map(|n| Found {
                name: n.to_string(),
                modified: None,
            })
            .collect()
    }

    #[test]
    fn keeps_the_newest_by_name_and_ignores_everything_else() {
        let files = found(&[
            "backup-2026-01-03-000000.tar.gz",
            "backup-2026-01-01-000000.tar.gz",
            "backup-2026-01-02-000000.tar.gz",
            "backup-2026-01-04-000000.tar.gz",
            ".backup-2025-01-01-000000.tar.gz.opshost-9-0.tmp",
            "backup-2025-01-01-000000.tar.gz.partial",
            "my-notes.txt",
            "backup-2025-02-30-000000.tar.gz",
        ]);
        assert_eq!(
            to_remove(&files, 2, &[]),
            vec![
                "backup-2026-01-01-000000.tar.gz",
                "backup-2026-01-02-000000.tar.gz"
            ]
        );
        assert!(to_remove(&files, 7, &[]).is_empty());
        assert_eq!(
            to_remove(&files, 1, &["backup-2026-01-02-000000.tar.gz"]),
            vec![
                "backup-2026-01-01-000000.tar.gz",
                "backup-2026-01-03-000000.tar.gz"
            ]
        );
    }

    #[test]
    fn the_rollback_point_comes_from_the_marker_or_the_vendor_file() {
        let files = found(&[
            "backup-2026-01-01-000000.tar.gz",
            "backup-2026-01-02-000000.tar.gz",
            "backup-2026-01-03-000000.tar.gz",
        ]);
        assert_eq!(
            rollback_point(Some("backup-2026-01-01-000000.tar.gz\n"), None, &files).as_deref(),
            Some("backup-2026-01-01-000000.tar.gz")
        );
        let jan2_noon = agledger_ops::clock::parse_stamp("2026-01-02-120000");
        assert_eq!(
            rollback_point(None, jan2_noon, &files).as_deref(),
            Some("backup-2026-01-02-000000.tar.gz")
        );
        assert_eq!(rollback_point(None, None, &files), None);
    }
}
