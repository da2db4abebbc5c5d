//! What every capability sees of a run: its resource table (the handles
//! given to the plugin) and the run's shared context (grants through the
//! gate, config, audit, output). The runtime composes it into the store
//! beside WASI and the limiter; capabilities never reach the runtime.

use std::sync::Arc;

use wasmtime::component::ResourceTable;

use super::RunContext;

pub struct HostState {
    pub(crate) table: ResourceTable,
    pub(crate) run: Arc<RunContext>,
}

impl HostState {
    pub fn new(run: Arc<RunContext>) -> Self {
        Self {
            table: ResourceTable::new(),
            run,
        }
    }
}
