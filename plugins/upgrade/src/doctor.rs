//! Before anything changes, the doctor's checks (agledger-ops' `doctor`,
//! the code doctor.wasm runs). A finding that would break the upgrade and
//! that the upgrade does not put right itself (a transaction-mode pooler,
//! an API that is not ready, a database session that cannot open, a
//! preflight failure other than removed variables or migrations) refuses
//! it; every other finding, and a check that could not look, is a warning.

use agledger_ops::doctor::{self, Settings, Status};
use opshost_sdk::{fail, progress, Result};

pub fn preflight(skip: &[String]) -> Result<()> {
    for name in skip {
        progress::warn(&format!(
            "the doctor's {name} check is SKIPPED (--skip-check {name}): what it would have found can make \
             this upgrade fail half-way"
        ));
    }
    let checks: Vec<_> = doctor::UPGRADE_CHECKS
        .iter()
        .filter(|name| !skip.iter().any(|s| s == *name))
        .filter_map(|name| doctor::find(name))
        .collect();
    let mut blocking = Vec::new();
    for outcome in doctor::run(&checks, &Settings::default()) {
        match &outcome.status {
            Status::Ok => {}
            Status::Findings(found) => {
                for f in found {
                    let text = doctor::explain(outcome.check, f);
                    if f.blocks_upgrade {
                        blocking.push(text);
                    } else {
                        progress::warn(&text);
                    }
                }
            }
            Status::Unchecked(why) => progress::warn(&format!(
                "[{}] the doctor could not check: {why}",
                outcome.check
            )),
        }
    }
    if blocking.is_empty() {
        return Ok(());
    }
    Err(fail(format!(
        "upgrade refused: the doctor found what would make it fail:\n{}\nNothing was changed. Put these right \
         (opshost run doctor.wasm explains every check), then upgrade again; or, if you know better than \
         the check, leave it out with --skip-check NAME",
        blocking.join("\n")
    )))
}
