//! What every handler of the HTTP API can reach.

use super::service::Service;
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
}
