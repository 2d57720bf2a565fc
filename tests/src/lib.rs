//! Shared pieces for glia's black-box tests and benchmarks: a scripted module whose answers,
//! delays, failures and gates come from its config, probes that record what modules saw,
//! a harness that starts glia (with its HTTP server) from a YAML string, glia embedded
//! (`glia-embedded-engine`) behind a stand-in for Synapse's thread, `glia` processes
//! started from the binary, fakes of the synapse-http-antispam servers Draupnir and Meowlnir,
//! and the bodies of the fuzz targets.

pub mod antispam_fakes;
pub mod counter;
pub mod cpu;
pub mod crashy;
pub mod embedded;
pub mod fuzzing;
pub mod harness;
pub mod load;
pub mod nats;
pub mod otlp;
pub mod pki;
pub mod probes;
pub mod process;
pub mod scripted;

pub use harness::{registry, TestGlia};
pub use scripted::Scripted;
