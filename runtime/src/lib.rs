//! glia: a module runtime for Matrix homeservers.
//!
//! Runs Synapse-style policy modules as supervised actors, fans each homeserver callback out
//! to them over a bus, and answers with the decision Synapse's own module system would reach,
//! plus per-module timeouts and failure policies.

pub mod app;
pub mod bus;
pub mod chaos;
pub mod config;
pub mod coordinator;
pub mod host;
pub mod http;
pub mod logging;
pub mod nats_client;
pub mod nats_ingress;
pub mod policy;
pub mod propagation;
pub mod python;
pub mod replay;
pub mod rules;
pub mod supervision;
pub mod telemetry;
pub mod worker;

pub use app::{Glia, StartError};
pub use coordinator::{Coordinator, DispatchError};
