//! preflight: the image's own `preflight` program, in a one-off container
//! of agledger-api's configuration; one finding per FAIL line.

use super::{Check, Finding, Settings};
use crate::deployment::{API, CONTAINERS, REMOVED};
use opshost_sdk::{container, Result};

pub const CHECK: Check = Check {
    name: "preflight",
    about: "the image's preflight (configuration, secrets, database, migrations) in a one-off container",
    run,
};

fn run(_: &Settings) -> Result<Vec<Finding>> {
    let spec = container::RunSpec {
        image: None,
        command: Some(vec!["preflight".into()]),
        env_set: vec![],
        timeout_ms: Some(120_000),
    };
    let out = container::run(CONTAINERS, API, &spec)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut found: Vec<Finding> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FAIL"))
        .map(|line| {
            let line = line.trim();
            let (name, why) = line.split_once(':').unwrap_or((line, ""));
            // An upgrade comments removed variables out and runs the
            // migrations itself: those failures do not stop it.
            let upgrade_fixes = REMOVED.iter().any(|k| line.contains(k))
                || name.contains("removed")
                || name.contains("migration");
            let f = Finding::error(
                format!("preflight: {} fails", name.trim()),
                format!("the image's preflight said: FAIL {line}"),
                format!("put right what it names ({}), recreate the services (docker compose up -d) and run the doctor again", why.trim()),
            );
            if upgrade_fixes { f } else { f.blocking() }
        })
        .collect();
    if out.exit_code != 0 && found.is_empty() {
        found.push(
            Finding::error(
                format!("preflight failed (exit {})", out.exit_code),
                text.trim().chars().take(600).collect::<String>(),
                "read the output above; docker compose logs agledger-api may say more",
            )
            .blocking(),
        );
    }
    Ok(found)
}
