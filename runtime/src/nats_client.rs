//! What every part that holds a NATS client shares: a flush bounded in time, for shutdown
//! (the bus's connection, the decision log's).

use async_nats::Client;
use std::time::{Duration, Instant};

/// How long shutdown waits for NATS to take what is buffered: a flush waits for the server,
/// and with the server gone it would wait forever.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends what is buffered, unless NATS cannot take it within [`FLUSH_TIMEOUT`] or by
/// `until` (the end of the shutdown grace; a server that is down must not hold the process
/// past it), whichever comes first, though not less than 50 ms.
pub async fn flush(client: &Client, until: Instant) {
    let left = until
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(50), FLUSH_TIMEOUT);
    if tokio::time::timeout(left, client.flush()).await.is_err() {
        tracing::warn!("NATS did not take the last messages in time (is it down?)");
    }
}
