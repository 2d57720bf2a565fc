//! Why glia could not start.

use crate::coordinator::PlanError;
use crate::host::SpawnError;

/// Why glia could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The bus could not be reached.
    #[error("{0}")]
    Bus(String),
    /// A required module's constructor failed.
    #[error("cannot start {0}")]
    Spawn(#[from] SpawnError),
    /// Two modules hold a single slot, or clash on a login type.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// Telemetry cannot start as configured.
    #[error("{0}")]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    /// A web resource path glia refuses.
    #[error("modules[{index}] ({name}): web resource {path:?}: {reason}")]
    WebPath {
        /// Module index.
        index: usize,
        /// Module name.
        name: String,
        /// The path.
        path: String,
        /// Why it is refused.
        reason: String,
    },
}
