//! image-pin: a stale AGLEDGER_IMAGE_PIN. The pin wins over the tag, so a
//! pin left from an earlier release makes an edited AGLEDGER_VERSION do
//! nothing, and a pin that is not the image running means the next
//! recreate changes the release.

use super::{Check, Finding, Settings};
use crate::deployment::{self as dep, Env, API, CONTAINERS, PIN_KEY, VERSION_KEY};
use opshost_sdk::{container, Result};

pub const CHECK: Check = Check {
    name: "image-pin",
    about: "AGLEDGER_IMAGE_PIN naming an image other than the one running, or of another version than AGLEDGER_VERSION",
    run,
};

/// `repo@sha256:<64 hex>`?
fn is_digest_ref(pin: &str) -> bool {
    pin.split_once("@sha256:").is_some_and(|(repo, hex)| {
        !repo.is_empty() && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn run(_: &Settings) -> Result<Vec<Finding>> {
    let env = Env::open()?;
    let Some(pin) = env.file.value(PIN_KEY).map(|p| p.trim().to_string()) else {
        return Ok(vec![]);
    };
    let version = env.file.value(VERSION_KEY).map(|v| v.trim().to_string());
    if !is_digest_ref(&pin) {
        return Ok(assess(&pin, version.as_deref(), "", ""));
    }
    let running = container::inspect(CONTAINERS, API)?.image;
    // The version only matters when the pin is what runs.
    let reported = if running == pin {
        dep::health_version()?
    } else {
        String::new()
    };
    Ok(assess(&pin, version.as_deref(), &running, &reported))
}

/// The findings for a pin, given `AGLEDGER_VERSION`, the image agledger-api
/// runs and the version it reports.
fn assess(pin: &str, version: Option<&str>, running: &str, reported: &str) -> Vec<Finding> {
    let fix_pin = format!(
        "let an upgrade or rollback write the pin (opshost run upgrade.wasm -- VERSION), or comment {PIN_KEY} out \
         to run the tag {VERSION_KEY} names"
    );
    if !is_digest_ref(pin) {
        return vec![Finding::error(
            format!("{PIN_KEY} is not an image digest reference"),
            format!("compose/.env sets {PIN_KEY}={pin}; expected REPOSITORY@sha256:<64 hex>"),
            fix_pin,
        )];
    }
    if running == pin {
        return match version {
            Some(v) if v != "latest" && v != reported => vec![Finding::error(
                format!("{PIN_KEY} is stale: it runs {reported} while {VERSION_KEY}={v}"),
                format!(
                    "agledger-api runs the pinned image {pin}, which reports version {reported} (/health); \
                     compose/.env says {VERSION_KEY}={v}, but the pin wins over the tag"
                ),
                fix_pin,
            )],
            _ => vec![],
        };
    }
    // Whether that digest is the image the tag named cannot be told from
    // here (the container records the reference it was created from), so
    // this is a warning: the next recreate may change the release.
    vec![Finding::warning(
        format!("{PIN_KEY} is not the image reference agledger-api was created from"),
        format!(
            "compose/.env pins {pin}; agledger-api runs {running}{}: the next recreate (docker compose up -d) \
             runs the pinned image, which is another release unless that digest is what the tag named",
            version.map(|v| format!(" ({VERSION_KEY}={v})")).unwrap_or_default()
        ),
        format!(
            "recreate the services so that they run the pin (docker compose up -d), after checking that the pin is \
             the release you want; or {fix_pin}"
        ),
    )]
}

#[cfg(test)]
mod tests {
    #[test]
    fn digest_references() {
        let hex = "a".repeat(64);
        assert!(super::is_digest_ref(&format!(
            "127.0.0.1:5000/agledger/agledger@sha256:{hex}"
        )));
        assert!(!super::is_digest_ref("agledger/agledger:1.3.2"));
        assert!(!super::is_digest_ref("@sha256:00"));
    }

    #[test]
    fn a_pin_that_runs_another_version_than_the_tag_says_is_stale() {
        let pin = format!("r/agledger@sha256:{}", "b".repeat(64));
        let stale = super::assess(&pin, Some("1.3.3"), &pin, "1.3.2");
        assert_eq!(stale.len(), 1);
        assert!(stale[0]
            .title
            .contains("stale: it runs 1.3.2 while AGLEDGER_VERSION=1.3.3"));
        assert!(super::assess(&pin, Some("1.3.2"), &pin, "1.3.2").is_empty());
        assert!(super::assess(&pin, Some("latest"), &pin, "1.3.2").is_empty());
        let other = super::assess(&pin, Some("1.3.2"), "r/agledger:1.3.2", "");
        assert!(other[0]
            .title
            .contains("not the image reference agledger-api was created from"));
        assert_eq!(other[0].severity, super::super::Severity::Warning);
    }
}
