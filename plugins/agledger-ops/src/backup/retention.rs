//! Which backups retention removes: only files named exactly like a backup
//! (`backup-YYYY-MM-DD-HHMMSS.tar.gz`), ordered by the time in the name;
//! the newest `keep` *complete* ones stay, and so do the rollback point and
//! the backup this run just made, whatever their age. A file counts only
//! once it is known complete (read to its end: gzip trailer, tar end); one
//! that is not (truncated, corrupt) is reported, never counted, never
//! removed.

use crate::artifact;

/// A regular file in the backup directory.
pub struct Found {
    pub name: String,
    /// Last modification, seconds since the epoch.
    pub modified: Option<i64>,
    pub size: u64,
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

/// What retention decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Backups to remove, oldest first.
    pub remove: Vec<String>,
    /// Files named like a backup that are not complete ones, with why.
    pub unreadable: Vec<(String, String)>,
}

/// Keep the newest `keep` complete backups (and the protected ones);
/// `complete` says whether a file is one (Err: why not).
pub fn plan(
    files: &[Found],
    keep: usize,
    protected: &[&str],
    mut complete: impl FnMut(&str) -> Result<(), String>,
) -> Plan {
    let mut backups: Vec<(i64, &str)> = files
        .iter()
        .filter_map(|f| artifact::time_of(&f.name).map(|t| (t, f.name.as_str())))
        .collect();
    // Newest first; the name breaks ties so the order is total.
    backups.sort_by(|a, b| b.cmp(a));
    let mut plan = Plan::default();
    let mut kept = 0;
    for (_, name) in backups {
        if let Err(why) = complete(name) {
            plan.unreadable.push((name.to_string(), why));
            continue;
        }
        if kept < keep {
            kept += 1;
        } else if !protected.contains(&name) {
            plan.remove.push(name.to_string());
        }
    }
    plan.remove.reverse();
    plan
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
                size: 0,
            })
            .collect()
    }

    fn to_remove(files: &[Found], keep: usize, protected: &[&str]) -> Vec<String> {
        plan(files, keep, protected, |_| Ok(())).remove
    }

    #[test]
    fn a_truncated_newest_file_is_neither_counted_nor_removed() {
        let files = found(&[
            "backup-2026-01-01-000000.tar.gz",
            "backup-2026-01-02-000000.tar.gz",
            "backup-2026-01-03-000000.tar.gz",
            "backup-2026-01-09-000000.tar.gz",
        ]);
        let p = plan(&files, 2, &[], |name| {
            if name.contains("01-09") {
                Err("truncated".into())
            } else {
                Ok(())
            }
        });
        assert_eq!(p.remove, vec!["backup-2026-01-01-000000.tar.gz"]);
        assert_eq!(
            p.unreadable,
            vec![(
                "backup-2026-01-09-000000.tar.gz".to_string(),
                "truncated".to_string()
            )]
        );
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
        let jan2_noon = crate::clock::parse_stamp("2026-01-02-120000");
        assert_eq!(
            rollback_point(None, jan2_noon, &files).as_deref(),
            Some("backup-2026-01-02-000000.tar.gz")
        );
        assert_eq!(rollback_point(None, None, &files), None);
    }
}
