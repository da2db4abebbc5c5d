//! Exit codes. Each says who must act: the operator (usage, denied), the
//! plugin's author (failed, crashed), or whoever runs the host.

use crate::caps::WitError;
use crate::runtime::RunError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The operation succeeded.
    Ok = 0,
    /// The plugin ran and failed, or crashed.
    PluginFailed = 1,
    /// Bad command line, config or policy file.
    Usage = 2,
    /// Refused: the policy does not grant what the plugin needs (before or
    /// while running), or the plugin does not fit (the deployment's version
    /// outside its applies_to, an opshost older than its min_host, another
    /// contract, a signature that does not verify).
    Denied = 3,
    /// The host or a backend failed (cannot read the plugin, compile, audit).
    Host = 4,
    /// The plugin was stopped by a limit (time, memory, log output).
    Limit = 5,
    /// The operation completed but found problems to look at.
    Attention = 6,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn of(err: &RunError) -> Self {
        match err {
            RunError::Config(_) => Self::Usage,
            RunError::Refused(_) => Self::Denied,
            RunError::Plugin(WitError::Denied(_)) => Self::Denied,
            RunError::Plugin(_) | RunError::Crashed(_) => Self::PluginFailed,
            RunError::Limit(_) => Self::Limit,
            RunError::Host(_) => Self::Host,
        }
    }
}
