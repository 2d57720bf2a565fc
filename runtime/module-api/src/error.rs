//! What a module's callback or constructor can fail with.

use glia_bus_schema::{InvocationError, SynapseError};

/// A module's failure. `Failed` is an exception in Synapse's terms (the callback's failure
/// policy decides what it means); `Fatal` is a crash: the module asks to be rebuilt.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModuleError {
    /// The callback raised an error.
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
        /// Set when the error is meant for the client as is (Synapse's `SynapseError`).
        synapse_error: Option<SynapseError>,
    },
    /// The module is broken and must be rebuilt from its config.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl ModuleError {
    /// An ordinary error (an exception).
    pub fn failed(message: impl Into<String>) -> Self {
        ModuleError::Failed {
            message: message.into(),
            synapse_error: None,
        }
    }

    /// An error meant for the client as is: status (400 to 599), errcode, message.
    pub fn synapse(status: u16, errcode: impl Into<String>, error: impl Into<String>) -> Self {
        ModuleError::raise(SynapseError::new(status, errcode, error))
    }

    /// Raises `error` to the client as is, extra fields included (Synapse's
    /// `raise SynapseError(status, msg, errcode, additional_fields)`).
    pub fn raise(error: SynapseError) -> Self {
        ModuleError::Failed {
            message: error.error.clone(),
            synapse_error: Some(error),
        }
    }

    /// A crash: the module must be rebuilt.
    pub fn fatal(message: impl Into<String>) -> Self {
        ModuleError::Fatal(message.into())
    }
}

impl From<ModuleError> for InvocationError {
    fn from(e: ModuleError) -> Self {
        match e {
            ModuleError::Failed {
                message,
                synapse_error,
            } => InvocationError::Failed {
                message,
                synapse_error,
            },
            ModuleError::Fatal(reason) => InvocationError::Crashed { reason },
        }
    }
}
