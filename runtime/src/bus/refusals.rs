//! Publications the NATS server refused on permission grounds, for the two routes that are
//! optional: a worker's announcements and a coordinator's sends to a worker's own subjects.
//! A NATS user that may not use them (a deployment whose permissions predate them) turns
//! them off, rather than logging a violation ten times a second or losing invocations.

use async_nats::{Event, ServerError};
use glia_bus_schema::subjects::{ANNOUNCE_PREFIX, WORKER_PREFIX};
use std::sync::atomic::{AtomicBool, Ordering};

/// What the server refused this connection to publish, as far as glia's optional routes go.
#[derive(Debug, Default)]
pub struct Refusals {
    announcing: AtomicBool,
    direct: AtomicBool,
}

impl Refusals {
    /// Takes in one of the connection's events.
    pub fn heard(&self, event: &Event) {
        let Event::ServerError(ServerError::Other(error)) = event else {
            return;
        };
        let refused = |what: &str| {
            error
                .split_once(what)
                .map(|(_, s)| s.trim().trim_matches('"').to_owned())
        };
        let under = |subject: &str, prefix: &str| {
            subject
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.'))
        };
        let refuse = |flag: &AtomicBool, subject: &str, why: &str| {
            if !flag.swap(true, Ordering::AcqRel) {
                tracing::warn!(%subject, "{why} (see docs/nats.md, NATS permissions)");
            }
        };
        if let Some(subject) = refused("Permissions Violation for Publish to") {
            if under(&subject, ANNOUNCE_PREFIX) {
                refuse(&self.announcing, &subject, "this NATS user may not publish the worker's announcements: coordinators reach it through its queue group only");
            }
            if under(&subject, WORKER_PREFIX) {
                refuse(&self.direct, &subject, "this NATS user may not publish to workers' own subjects: invocations go to the queue groups only");
            }
        }
        // A worker that cannot take its own subjects must not announce them.
        if let Some(subject) = refused("Permissions Violation for Subscription to") {
            if under(&subject, WORKER_PREFIX) {
                refuse(&self.announcing, &subject, "this NATS user may not subscribe to the worker's own subjects: it does not announce them, and coordinators reach it through its queue group only");
            }
        }
    }

    /// Whether the server refused a worker's announcement.
    pub fn announcing_refused(&self) -> bool {
        self.announcing.load(Ordering::Acquire)
    }

    /// Whether the server refused a send to a worker's own subject.
    pub fn direct_refused(&self) -> bool {
        self.direct.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(what: &str, subject: &str) -> Event {
        Event::ServerError(ServerError::Other(format!(
            "Permissions Violation for {what} to \"{subject}\""
        )))
    }

    #[test]
    fn only_refusals_of_the_optional_routes_count() {
        let refusals = Refusals::default();
        refusals.heard(&violation("Publish", "glia.v1.module.m.user_may_invite"));
        refusals.heard(&violation("Subscription", "_INBOX.x.*"));
        refusals.heard(&Event::Disconnected);
        assert!(!refusals.announcing_refused() && !refusals.direct_refused());
        refusals.heard(&violation("Publish", "glia.v1.workers.m"));
        assert!(refusals.announcing_refused() && !refusals.direct_refused());
        refusals.heard(&violation(
            "Publish",
            "glia.v1.worker.abc.m.user_may_invite",
        ));
        assert!(refusals.direct_refused());
        let worker = Refusals::default();
        worker.heard(&violation("Subscription", "glia.v1.worker.abc.m.*"));
        assert!(worker.announcing_refused() && !worker.direct_refused());
    }
}
