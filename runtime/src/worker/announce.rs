//! A worker's announcements: every [`ANNOUNCE_INTERVAL`], for each hosted module, "worker
//! `<id>` serves it on its own subjects". Coordinators route to the workers they heard from
//! lately, so a worker that stops announcing — stopped, paused, cut off — stops getting
//! work within a few intervals, although NATS still counts it in the queue group.

use crate::bus::refusals::Refusals;
use async_nats::Client;
use glia_bus_schema::subjects::{self, Announcement};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often a worker announces itself. Coordinators stop routing to a worker they have
/// not heard from for [`crate::bus::roster::STALE_AFTER_INTERVALS`] of its intervals.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(100);

/// Announces `worker` for `modules` until `stop` is set, then announces it is leaving, so
/// coordinators route nothing more to it while it drains. Stops at once, for good, if the
/// server refuses the announcements (`refusals`): coordinators never heard of it then.
pub(super) async fn announce(
    client: Client,
    refusals: Arc<Refusals>,
    worker: String,
    modules: Vec<String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(ANNOUNCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let announcement = |leaving| Announcement {
        worker: worker.clone(),
        interval_ms: ANNOUNCE_INTERVAL.as_millis() as u64,
        leaving,
    };
    let alive = serde_json::to_vec(&announcement(false)).unwrap_or_default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if refusals.announcing_refused() {
            return;
        }
        for module in &modules {
            // While disconnected the client buffers; stale announcements do no harm.
            let _ = client
                .publish(subjects::announce_subject(module), alive.clone().into())
                .await;
        }
    }
    let leaving = serde_json::to_vec(&announcement(true)).unwrap_or_default();
    for module in &modules {
        let _ = client
            .publish(subjects::announce_subject(module), leaving.clone().into())
            .await;
    }
}
