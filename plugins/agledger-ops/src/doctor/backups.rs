//! backups: the newest `backup-YYYY-MM-DD-HHMMSS.tar.gz` (the time in the
//! name, UTC) against the recovery point objective the operator sets
//! (`--rpo`, default 24 h).

use super::{Check, Finding, Settings};
use crate::{artifact, clock};
use opshost_sdk::{fs, Context, Result};

pub const CHECK: Check = Check {
    name: "backups",
    about: "the newest backup-*.tar.gz older than the RPO (--rpo, default 24h)",
    run,
};

/// `90061` -> `1d 1h`, `86400` -> `1d`, `1800` -> `30m`.
pub fn human_age(secs: i64) -> String {
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .take(2)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() {
        format!("{secs}s")
    } else {
        text.join(" ")
    }
}

fn run(settings: &Settings) -> Result<Vec<Finding>> {
    let dir = fs::open("backups").context("opening the backup directory")?;
    let newest = dir
        .list("")?
        .into_iter()
        .filter_map(|e| artifact::time_of(&e.name).map(|t| (t, e.name, e.size)))
        .max();
    let rpo = human_age(settings.rpo_s);
    let fix = format!(
        "take a backup now (opshost run backup.wasm) and schedule one at least every {rpo} (cron or a systemd timer)"
    );
    let Some((at, name, size)) = newest else {
        return Ok(vec![Finding::error(
            "there is no backup",
            "the backup directory holds no backup-YYYY-MM-DD-HHMMSS.tar.gz",
            fix,
        )]);
    };
    let age = clock::now() - at;
    if age <= settings.rpo_s {
        return Ok(vec![]);
    }
    Ok(vec![Finding::error(
        format!("the newest backup is older than the RPO ({rpo})"),
        format!(
            "{name} ({}) was taken {} ago, at {}; the RPO is {rpo}",
            crate::human_bytes(size),
            human_age(age),
            clock::rfc3339(at)
        ),
        fix,
    )])
}
