//! The embedded placement without Python: glia's coordinator and modules started from a
//! config on glia's own threads (`engine`), and each dispatch polled once on the calling
//! thread, then finished on glia's thread if it still waits (`caller`). The Python
//! extension `glia-embedded` drives it from Synapse's thread; the conformance suite drives
//! it from a thread standing in for Synapse's (`GLIA_TEST_PLACEMENT=embedded`).

pub mod caller;
pub mod engine;

pub use caller::{drive, finish_on_glia, first_poll, First, Outcome, Waiting};
pub use engine::{load, loader, Engine};
