//! Modules served over NATS that have not described themselves yet (no worker was up): asked
//! again until they answer, and planned then.

use super::topology::{describe_remote, Described, Generation, REMOTE_RETRY};
use super::Glia;
use crate::config::Placement;
use crate::host::{ModuleState, ModuleStatus};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Glia {
    /// Keeps asking for the description of `generation`'s remote modules that have not given
    /// one (no worker was up yet), and plans them when they do, until a reload replaces it.
    pub(super) fn watch_remote_modules(&self, generation: &Arc<Generation>) {
        let Some(client) = self.nats.clone() else {
            return;
        };
        let pending: Vec<(usize, String, Arc<ModuleStatus>)> = generation
            .config
            .modules
            .iter()
            .enumerate()
            .filter(|(_, m)| m.placement == Placement::Nats && m.callbacks.is_none())
            .map(|(i, m)| (i, m.name.clone(), generation.statuses[i].clone()))
            .collect();
        if pending.is_empty() {
            return;
        }
        let (topology, shared) = (generation.topology.clone(), self.shared.clone());
        actix_rt::spawn(async move {
            let mut pending = pending;
            let live = || {
                !shared.stopping.load(Ordering::Acquire)
                    && !topology.retired.load(Ordering::Acquire)
            };
            while live() && !pending.is_empty() {
                actix_rt::time::sleep(REMOTE_RETRY).await;
                let mut refused = Vec::new();
                for (i, (index, name, status)) in pending.iter().enumerate() {
                    if status.state() != ModuleState::Running {
                        if let Described::Refused(_) =
                            describe_remote(&client, &topology, *index, name, status).await
                        {
                            refused.push(i);
                        }
                    }
                }
                // A module that registers what Synapse refuses is asked no more: fix it and
                // reload.
                for i in refused.into_iter().rev() {
                    pending.remove(i);
                }
            }
        });
    }
}
