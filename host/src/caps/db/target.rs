//! Where a `[db.NAME]` database is, and where its client tools run: on the
//! host, or (bundled mode) inside the database service's container, found
//! through the container backend (`caps::container::backend`).

use super::super::{CapError, RunContext};
use super::connect::{resolve, Target};
use super::tools;
use crate::gate;
use crate::policy::DbLevel;

impl RunContext {
    /// The resource's endpoint for a session at `level`, and the runner of
    /// its client tools (pg_dump, pg_restore).
    pub(super) async fn db_target(
        &self,
        name: &str,
        level: DbLevel,
    ) -> Result<(Target, tools::Runner), CapError> {
        let resource = gate::configured(&self.config.db, "database", name)?;
        let (bundled_host, runner) = match &resource.container {
            None => (None, tools::Runner::Host),
            // Through the container backend: the service's address, and
            // exec inside its container for the client tools.
            Some(containers) => {
                let deployment = self.deployment(containers).await?;
                let service = resource.service.as_deref().unwrap_or("postgres");
                let ip = deployment.backend.address(service).await?;
                (
                    Some(ip.to_string()),
                    tools::Runner::Container {
                        backend: deployment.backend,
                        service: service.to_string(),
                    },
                )
            }
        };
        let target = resolve(resource, level, bundled_host.as_deref())
            .map_err(|e| CapError::Failed(format!("[db.{name}]: {e:#}")))?;
        Ok((target, runner))
    }
}
