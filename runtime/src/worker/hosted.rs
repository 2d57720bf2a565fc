//! A hosted module as the worker's serving tasks see it, and what those tasks share.

use crate::bus::InProcessBus;
use crate::http::routes::WebRoutes;
use crate::telemetry::Telemetry;
use async_nats::Client;
use glia_bus_schema::subjects::Description;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// One hosted module, as its serving tasks see it.
pub(super) struct Hosted {
    /// Its index among the hosted modules (the worker's bus and metrics use it).
    pub index: usize,
    /// Its instance name.
    pub name: String,
    /// What it registered, for `describe` and to pick handlers.
    pub description: Description,
    /// Its web resources, to pick the one that answers a web request's path.
    pub web: WebRoutes,
    /// The worker's in-process bus to the module's actor.
    pub bus: Arc<InProcessBus>,
    /// Invocations accepted and not yet answered: at most `max_in_flight` running plus the
    /// module's `restart.stash` waiting. Without a permit an invocation is refused at once,
    /// so a flood costs a reply, not a task and its message held until their deadline.
    pub admission: Arc<Semaphore>,
    /// What `admission` started with, for the refusal's message.
    pub capacity: (usize, usize),
    /// This worker's id, for the refusal's message.
    pub worker: Arc<str>,
}

impl Hosted {
    /// Admission control over `max_in_flight` running and `stash` waiting invocations (at
    /// most what a semaphore can count: a huge configured stash must not panic the worker).
    pub fn admission(max_in_flight: usize, stash: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(
            max_in_flight
                .saturating_add(stash)
                .min(Semaphore::MAX_PERMITS),
        ))
    }
}

/// What every serving task of a worker shares.
pub(super) struct Serving {
    /// The NATS connection.
    pub client: Client,
    /// Spans and metrics.
    pub telemetry: Arc<Telemetry>,
    /// Invocations and web requests being handled, which a drain waits for.
    pub in_flight: Arc<AtomicUsize>,
    /// The largest web request body a module is given (`max_body_size`).
    pub max_body_size: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_running_and_waiting_and_never_overflows() {
        assert_eq!(Hosted::admission(2, 3).available_permits(), 5);
        assert_eq!(
            Hosted::admission(1 << 20, usize::MAX).available_permits(),
            Semaphore::MAX_PERMITS
        );
    }
}
