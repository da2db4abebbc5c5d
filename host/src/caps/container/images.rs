//! What a plugin may pull, recreate with or run: only repositories the
//! operator listed (`[containers.NAME] images`) or, by default, those the
//! deployment already runs; and, with a signature policy, only digests a
//! pull verified in this run (`signed.rs`). Backend-neutral: the backend
//! is asked only what the deployment runs.

use super::backend::ContainerBackend;
use super::signed;
use crate::caps::{CapError, RunContext};
use crate::config::ContainersResource;

/// `registry/path/name` of a reference, without tag or digest.
pub fn repository(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    // A ':' after the last '/' is a tag; one before it is a registry port.
    match no_digest.rfind(':') {
        Some(colon) if colon > no_digest.rfind('/').unwrap_or(0) => &no_digest[..colon],
        _ => no_digest,
    }
}

/// May a plugin use `image` in this deployment (the allow-list)?
pub async fn check(
    backend: &dyn ContainerBackend,
    name: &str,
    resource: &ContainersResource,
    image: &str,
) -> Result<(), CapError> {
    let allowed: Vec<String> = match &resource.images {
        Some(list) => list.clone(),
        None => backend
            .list()
            .await?
            .iter()
            .map(|c| repository(&c.image).to_string())
            .filter(|r| !r.is_empty())
            .collect(),
    };
    if allowed.iter().any(|a| a == repository(image)) {
        Ok(())
    } else {
        Err(CapError::Denied(format!(
            "image {image:?} is not from a repository this project may use ({}); the operator lists them in [containers.{name}] images",
            if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") }
        )))
    }
}

/// A recreate's or one-off run's explicit image: allowed, and (with a
/// signature policy) a digest verified in this run. `None` (the service's
/// current image) needs no check.
pub async fn check_requested(
    run: &RunContext,
    backend: &dyn ContainerBackend,
    name: &str,
    resource: &ContainersResource,
    requested: Option<&str>,
) -> Result<(), CapError> {
    if let Some(image) = requested {
        check(backend, name, resource, image).await?;
        signed::check_use(run, name, resource, image)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_drop_tags_and_digests_not_ports() {
        assert_eq!(
            repository("127.0.0.1:5000/agledger/agledger:1.3.3"),
            "127.0.0.1:5000/agledger/agledger"
        );
        assert_eq!(
            repository("127.0.0.1:5000/agledger/agledger"),
            "127.0.0.1:5000/agledger/agledger"
        );
        assert_eq!(
            repository("agledger/agledger@sha256:abc"),
            "agledger/agledger"
        );
        assert_eq!(repository("busybox:1"), "busybox");
    }
}
