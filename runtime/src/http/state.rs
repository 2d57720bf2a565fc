//! What every handler of the HTTP API can reach.

use super::service::Service;
use crate::logging::LogThrottle;
use std::sync::Arc;
use std::time::Duration;

/// What every handler can reach.
pub struct AppState {
    /// The running glia.
    pub glia: Arc<dyn Service>,
    /// The largest body accepted.
    pub max_body_size: usize,
    /// How long a body may take to arrive.
    pub body_timeout: Duration,
    /// Which refusals (and other lines a client can repeat at will) get a log line.
    pub log_throttle: LogThrottle<LogKind>,
}

/// What a line a client can repeat at will is throttled by: a route, a status and a reason
/// (an errcode), all from fixed sets.
pub type LogKind = (&'static str, u16, &'static str);
