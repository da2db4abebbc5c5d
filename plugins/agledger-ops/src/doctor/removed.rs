//! removed-variables: variables past releases removed, still set in
//! `compose/.env`.

use super::{Check, Finding, Settings};
use crate::deployment::Env;
use opshost_sdk::Result;

pub const CHECK: Check = Check {
    name: "removed-variables",
    about: "variables removed in past releases (AGLEDGER_LICENSE_MODE, AGLEDGER_RELEASE_DATE) still set in compose/.env",
    run,
};

fn run(_: &Settings) -> Result<Vec<Finding>> {
    let env = Env::open()?;
    Ok(env
        .removed_present()
        .into_iter()
        .map(|key| {
            let value = env.file.get(key).unwrap_or_default();
            let fix = format!(
                "comment the line out in compose/.env (# {key}=...) and recreate the services \
                 (docker compose up -d; a restart does not read .env again). An upgrade comments it out itself"
            );
            if key == "AGLEDGER_LICENSE_MODE" {
                Finding::error(
                    format!("{key} is set: the server refuses to start while it is"),
                    format!("compose/.env sets {key}={value}; it was removed in 0.15.0 (licensing moved into the image)"),
                    fix,
                )
            } else {
                Finding::warning(
                    format!("{key} is set, but the release date is baked into the image now"),
                    format!("compose/.env sets {key}={value}"),
                    fix,
                )
            }
        })
        .collect())
}
