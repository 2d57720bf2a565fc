//! The API a glia module is written against.
//!
//! A module is a Rust type implementing [`Module`]: a `parse_config` step that checks its
//! `config:` block, and a constructor that registers callbacks through a [`ModuleApi`]
//! handle, mirroring Synapse's `register_spam_checker_callbacks(...)` and friends. Each
//! module instance lives on its own actor thread, so handlers and their futures need not be
//! `Send`.

pub mod config_error;
pub mod error;
pub mod handler;
pub mod module;
pub mod registration;
pub mod web;

pub use config_error::{from_config, path_of, ConfigError, ConfigPath, PathSegment};
pub use error::ModuleError;
pub use handler::{ErasedHandler, Handler};
pub use module::{Module, ModuleFactory, ModuleRegistry, ParsedConfig};
pub use registration::{
    AccountValidityCallbacks, AuthChecker, ModuleApi, PasswordAuthProviderCallbacks,
    PresenceRouterCallbacks, RegistrationError, Registrations, SpamCheckerCallbacks,
    ThirdPartyRulesCallbacks,
};
pub use web::{WebHandler, WebRequest, WebResponse};

/// The wire contract, re-exported so a module needs one dependency.
pub use glia_bus_schema as schema;
