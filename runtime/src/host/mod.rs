//! Module instances as supervised actix actors, each on its own thread (arbiter).

mod actor;
mod per_thread;
mod registration;
mod spawn;
mod status;
mod supervised;

pub use actor::{web_error, Flush, Invoke, ModuleActor, Stop, WebCall};
pub use per_thread::PerThread;
pub use registration::{RegistrationSummary, Slot, WebPath};
pub use spawn::{spawn_module, ModuleInstance, SpawnError};
pub use status::{CrashInfo, ModuleState, ModuleStatus};
pub use supervised::OnRegistered;
