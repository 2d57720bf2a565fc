//! Which modules placed on NATS no worker serves, for `/health`. A worker that is not running
//! cannot be told apart from an idle one by waiting: each module's describe subject is asked,
//! and NATS answers "no responders" at once when nobody listens. The answer is kept for a
//! second, so however often `/health` is asked (it needs no token) NATS sees at most one
//! round of probes a second.

use super::Glia;
use crate::config::Placement;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a round of probes is reused.
const KEPT: Duration = Duration::from_secs(1);
/// How long one probe may take before its module counts as served (it may be busy).
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The last round of probes.
#[derive(Default)]
pub struct WorkersSeen {
    last: Mutex<Option<(Instant, Vec<String>)>>,
}

impl Glia {
    /// The modules placed on NATS that no worker serves right now (none on the internal bus).
    pub async fn unserved_modules(&self) -> Vec<String> {
        let Some(client) = &self.nats else {
            return Vec::new();
        };
        if let Some((at, unserved)) = &*self
            .workers_seen
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            if at.elapsed() < KEPT {
                return unserved.clone();
            }
        }
        let config = self.config();
        let names = config
            .modules
            .iter()
            .filter(|m| m.placement == Placement::Nats)
            .map(|m| m.name.clone());
        let probes = names.map(|name| async move {
            let served = crate::bus::nats::served(client, &name, PROBE_TIMEOUT).await;
            (served == Some(false)).then_some(name)
        });
        let unserved: Vec<String> = futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect();
        *self
            .workers_seen
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), unserved.clone()));
        unserved
    }
}
