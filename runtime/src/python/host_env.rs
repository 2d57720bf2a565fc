//! Where a Python host sends its spans: the standard `OTEL_*` variables glia sets in each
//! host's environment. This process's telemetry (a layer above) decides them once at start
//! ([`export_traces_with`]); every host started afterwards gets them, so its span for a
//! callback goes to the collector glia's own spans go to.

use std::process::Command;
use std::sync::RwLock;

/// A variable to set (`Some`) or to remove (`None`) in a host's environment.
pub type HostVar = (&'static str, Option<String>);

static HOST_ENV: RwLock<Vec<HostVar>> = RwLock::new(Vec::new());

/// Sets the variables every Python host started from now on gets (replacing earlier ones).
pub fn export_traces_with(vars: Vec<HostVar>) {
    *HOST_ENV.write().unwrap_or_else(|e| e.into_inner()) = vars;
}

/// Puts the variables into `command`'s environment; without any, the host inherits glia's.
pub(super) fn apply(command: &mut Command) {
    for (name, value) in HOST_ENV.read().unwrap_or_else(|e| e.into_inner()).iter() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
}
