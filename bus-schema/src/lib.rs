//! The glia wire contract.
//!
//! One typed request, one typed module answer and one typed coordinator reply per Synapse
//! module callback, the envelopes that carry them, and the JSON Schema generated from the
//! types. The runtime and every module import this crate; a module in another language
//! speaks the JSON described by `schema/glia-bus-v1.json`.

pub mod answers;
pub mod callbacks;
pub mod envelope;
pub mod errcodes;
mod event_decode;
pub mod host;
pub mod http_antispam;
pub mod replies;
pub mod requests;
pub mod schema;
pub mod shapes;
pub mod subjects;
pub mod web;

pub use answers::*;
pub use callbacks::{
    ArgsError, Callback, CallbackArgs, CallbackRequest, Category, DispatchReply, ModuleAnswer,
    UnknownCallback,
};
pub use envelope::{ErrorKind, Invocation, InvocationError, InvocationReply, InvocationResult};
pub use replies::*;
pub use shapes::*;

/// The version segment of bus subjects and HTTP paths.
pub const PROTOCOL_VERSION: &str = "v1";
