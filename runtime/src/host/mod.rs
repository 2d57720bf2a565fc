//! Module instances as supervised actix actors, each on its own thread (arbiter).

mod actor;
mod per_thread;
mod spawn;
mod status;
mod supervised;

pub use actor::{Flush, Invoke, ModuleActor, Slot, Stop, WebCall};
pub use per_thread::PerThread;
pub use spawn::{spawn_module, ModuleInstance, RegistrationSummary, SpawnError};
pub use status::{CrashInfo, ModuleState, ModuleStatus};
pub use supervised::OnRegistered;
