//! The watcher of module threads: a module whose thread stays blocked gets a new thread and
//! a fresh instance.

use super::Glia;
use crate::config::Placement;
use crate::host::{spawn_module, ModuleState};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl Glia {
    /// A module's watchdog runs on the module's own thread, so it cannot see that thread
    /// blocked (a handler that never yields). This task, on glia's own thread, watches each
    /// module's heartbeat; a module silent for twice its watchdog (once would mistake a busy
    /// machine for a blocked thread) gets a new thread and a fresh instance, and the blocked
    /// one is abandoned (told to stop when it unblocks).
    /// Invocations queued on it resolve by their callers' timeouts.
    pub(super) fn watch_threads(&self) {
        let shared = self.shared.clone();
        actix_rt::spawn(async move {
            while !shared.stopping.load(Ordering::Acquire) {
                let generation = shared.current.load_full();
                let period = generation
                    .config
                    .modules
                    .iter()
                    .map(|m| m.restart.watchdog)
                    .min()
                    .unwrap_or(Duration::from_secs(1));
                actix_rt::time::sleep((period / 4).max(Duration::from_millis(1))).await;
                // A reload in progress owns the modules; look again at the next tick.
                let Ok(_changing) = shared.changing.try_lock() else {
                    continue;
                };
                let generation = shared.current.load_full();
                for (index, (module, status)) in generation
                    .config
                    .modules
                    .iter()
                    .zip(&generation.statuses)
                    .enumerate()
                {
                    let silent = status.since_heartbeat();
                    if module.placement != Placement::Local
                        || silent < module.restart.watchdog * 2
                        || status.state() == ModuleState::Stopped
                    {
                        continue;
                    }
                    let reason = format!(
                        "its thread has been blocked for {} ms (twice the watchdog of {} ms)",
                        silent.as_millis(),
                        module.restart.watchdog.as_millis()
                    );
                    tracing::error!(module = %module.name, %reason, "module thread blocked; starting a new one");
                    status.record_crash(&reason);
                    status.beat();
                    let since = std::time::Instant::now();
                    match spawn_module(module, status.clone(), Arc::new(|_| {})).await {
                        Ok(fresh) => {
                            generation
                                .bus
                                .replace(index, fresh.addr.clone(), module.max_in_flight);
                            status.record_restart(Some(since.elapsed()));
                            let old = {
                                let mut all =
                                    shared.hosted.lock().unwrap_or_else(|e| e.into_inner());
                                all.get_mut(index)
                                    .and_then(Option::as_mut)
                                    .map(|h| std::mem::replace(&mut h.instance, fresh))
                            };
                            // The blocked thread exits once it unblocks, if it ever does.
                            if let Some(old) = old {
                                old.arbiter.stop();
                            }
                        }
                        Err(e) => {
                            tracing::error!(module = %module.name, error = %e, "cannot replace the blocked module")
                        }
                    }
                }
            }
        });
    }
}
