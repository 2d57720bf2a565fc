//! Module instances as actix actors, each on its own thread (arbiter).

mod actor;
mod spawn;

pub use actor::{Invoke, ModuleActor, Slot, WebCall};
pub use spawn::{spawn_module, ModuleInstance, RegistrationSummary, SpawnError};
