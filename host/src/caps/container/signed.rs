//! Image signatures at the container capability's doors: `pull` verifies
//! what it pulled against the project's `[containers.NAME.signatures]`,
//! and `recreate`/`run` accept an explicit image only as a digest that a
//! pull verified in this run. The host decides; a plugin cannot skip it.

use super::super::{CapError, RunContext};
use crate::config::ContainersResource;
use crate::trust::Failure;

/// Is the project's trust policy in force (configured, or `--require-signed`)?
fn enforced(run: &RunContext, res: &ContainersResource) -> bool {
    res.trust.is_some() || run.image_trust.require_signed
}

/// Before pulling: `--require-signed` without a policy refuses outright
/// (there is nothing to verify against).
pub fn before_pull(run: &RunContext, name: &str, res: &ContainersResource) -> Result<(), CapError> {
    if res.trust.is_none() && run.image_trust.require_signed {
        return Err(CapError::Denied(format!(
            "--require-signed: the config gives no signature policy for [containers.{name}] (add [containers.{name}.signatures]), so no image can be verified"
        )));
    }
    Ok(())
}

/// After pulling `image` as `digest_ref` (`repo@sha256:…`): verify it,
/// remember it for this run, and say what was checked (the call's audit
/// detail; the digest and the signer come first, as lines are clipped).
pub async fn after_pull(
    run: &RunContext,
    name: &str,
    res: &ContainersResource,
    image: &str,
    digest_ref: &str,
) -> Result<String, CapError> {
    let Some(policy) = &res.trust else {
        run.output.warn(&format!(
            "!!! IMAGE NOT VERIFIED: {digest_ref} was pulled without checking its signature, because [containers.{name}] has no signatures policy. Anyone who can push to that registry decides what runs here. Configure [containers.{name}.signatures] (or run with --require-signed to refuse unsigned pulls)."
        ));
        return Ok(format!(
            "{image} -> {digest_ref}: UNVERIFIED (no signature policy)"
        ));
    };
    match policy.verify(digest_ref).await {
        Ok(by) => {
            run.image_trust.record(digest_ref);
            Ok(format!("{digest_ref} signature verified: {by}"))
        }
        Err(Failure::Refused(why)) => Err(CapError::Denied(why)),
        Err(Failure::Unavailable(why)) => Err(CapError::Failed(why)),
    }
}

/// A plugin's explicit image for recreate/run: with a policy in force,
/// only a digest reference verified in this run.
pub fn check_use(
    run: &RunContext,
    name: &str,
    res: &ContainersResource,
    image: &str,
) -> Result<(), CapError> {
    if !enforced(run, res) || run.image_trust.is_verified(image) {
        return Ok(());
    }
    Err(CapError::Denied(format!(
        "image {image:?} is not a digest whose signature was verified in this run; [containers.{name}] requires signed images: pull it first and use the repo@sha256:… reference the pull returns"
    )))
}
