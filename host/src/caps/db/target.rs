//! Where a `[db.NAME]` database is, and where its client tools run: on the
//! host, or (bundled mode) inside the project's database container, found
//! by its compose service.

use super::super::container::scope;
use super::super::{CapError, RunContext};
use super::connect::{resolve, Target};
use super::tools;
use crate::policy::DbLevel;

impl RunContext {
    /// The resource's endpoint for a session at `level`, and the runner of
    /// its client tools (pg_dump, pg_restore).
    pub(super) async fn db_target(
        &self,
        name: &str,
        level: DbLevel,
    ) -> Result<(Target, tools::Runner), CapError> {
        let resource = self.config.db.get(name).ok_or_else(|| {
            CapError::NotFound(format!("the config names no database \"{name}\""))
        })?;
        let (bundled_host, runner) = match &resource.container {
            None => (None, tools::Runner::Host),
            Some(containers) => {
                let project = &self
                    .config
                    .containers
                    .get(containers)
                    .ok_or_else(|| {
                        CapError::NotFound(format!(
                            "the config names no compose project \"{containers}\""
                        ))
                    })?
                    .project;
                let service = resource.service.as_deref().unwrap_or("postgres");
                let docker = self.docker().await?;
                let c = scope::service_container(&docker, project, service).await?;
                let ip = c
                    .network_settings
                    .as_ref()
                    .and_then(|n| n.networks.as_ref())
                    .and_then(|n| {
                        n.values()
                            .find_map(|e| e.ip_address.clone().filter(|ip| !ip.is_empty()))
                    })
                    .ok_or_else(|| {
                        CapError::Failed(format!(
                            "the {service} container has no network address (is it running?)"
                        ))
                    })?;
                (
                    Some(ip),
                    tools::Runner::Container {
                        docker,
                        id: scope::id(&c)?,
                    },
                )
            }
        };
        let target = resolve(resource, level, bundled_host.as_deref())
            .map_err(|e| CapError::Failed(format!("[db.{name}]: {e:#}")))?;
        Ok((target, runner))
    }
}
