//! A module's host processes (`processes:`), each invocation sent to the least busy (see
//! [`HostPool::least_busy`]), and
//! their recycling: a host past `max_requests` (plus its jitter) or `max_rss` is replaced
//! without losing an invocation. The new host is started first; once it is ready it takes
//! the old one's place, so new invocations go to it, while the old one finishes what it has
//! in flight (it drains) and is then stopped.

use super::process::{HostProcess, Started, RETIRED};
use crate::config::python::HostLimits;
use glia_bus_schema::host::{HostReady, ToHost};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often an invocation refused by a host that was just recycled is offered again (each
/// time to the host that replaced it).
const RETRIES: usize = 3;
/// How long a replacement that failed to start waits before another is tried.
const RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Why a host was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recycle {
    /// It served `max_requests` (plus its jitter).
    MaxRequests,
    /// Its resident memory passed `max_rss`.
    MaxRss,
}

impl Recycle {
    /// The metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            Recycle::MaxRequests => "max_requests",
            Recycle::MaxRss => "max_rss",
        }
    }
}

/// Recycles so far, by module and reason, for the metrics (read at scrape time).
static RECYCLES: Mutex<BTreeMap<(String, Recycle), u64>> = Mutex::new(BTreeMap::new());

/// Every recycle since glia started: module, reason, count.
pub fn recycles() -> Vec<(String, Recycle, u64)> {
    let counts = RECYCLES.lock().unwrap_or_else(|e| e.into_inner());
    counts
        .iter()
        .map(|((module, reason), n)| (module.clone(), *reason, *n))
        .collect()
}

/// How to start one host of the module.
pub struct Recipe {
    /// The module's instance name.
    pub name: String,
    /// The Python interpreter.
    pub interpreter: String,
    /// The start frame.
    pub start: ToHost,
    /// How long loading the module may take.
    pub startup_timeout: Duration,
}

impl Recipe {
    /// A host with the module loaded, or why there is none.
    pub fn start(&self) -> Result<(Arc<HostProcess>, HostReady), String> {
        let (host, started) = HostProcess::spawn(
            &self.name,
            &self.interpreter,
            &self.start,
            self.startup_timeout,
        )?;
        match started {
            Started::Ready(ready) => Ok((host, ready)),
            Started::Failed(error) => {
                let at = error.path.join(".");
                let at = if at.is_empty() { at } else { format!("{at}: ") };
                Err(format!("{at}{}", error.message))
            }
            Started::Exited(reason) => Err(reason),
        }
    }
}

/// One host's place in the pool, and what it has served since it took it.
struct Slot {
    host: Mutex<Arc<HostProcess>>,
    served: AtomicU64,
    budget: AtomicU64,
    recycling: AtomicBool,
}

/// A module's running hosts.
pub struct HostPool {
    recipe: Recipe,
    limits: HostLimits,
    drain_bound: Duration,
    slots: Vec<Arc<Slot>>,
    stopped: AtomicBool,
}

impl HostPool {
    /// Starts `limits.processes` hosts at once; returns the pool and what the module
    /// registered, or why a host could not load it (the others are stopped).
    pub fn start(
        recipe: Recipe,
        limits: HostLimits,
        drain_bound: Duration,
    ) -> Result<(Arc<HostPool>, HostReady), String> {
        let started: Vec<_> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..limits.process_count())
                .map(|_| scope.spawn(|| recipe.start()))
                .collect();
            starts
                .into_iter()
                .map(|s| {
                    s.join()
                        .unwrap_or_else(|_| Err("a host's start panicked".into()))
                })
                .collect()
        });
        let mut hosts = Vec::new();
        let mut ready = None;
        for result in started {
            let (host, r) = result?;
            tracing::info!(module = %recipe.name, pid = host.pid(), "Python host ready");
            ready.get_or_insert(r);
            hosts.push(host);
        }
        let slots = hosts
            .into_iter()
            .map(|host| {
                Arc::new(Slot {
                    host: Mutex::new(host),
                    served: AtomicU64::new(0),
                    budget: AtomicU64::new(budget(&limits)),
                    recycling: AtomicBool::new(false),
                })
            })
            .collect();
        let pool = HostPool {
            recipe,
            limits,
            drain_bound,
            slots,
            stopped: AtomicBool::new(false),
        };
        Ok((Arc::new(pool), ready.ok_or("no host was started")?))
    }

    /// Sends one frame through `send` to the least busy host and returns its answer; a
    /// frame refused by a host that was just recycled goes to the one that replaced it.
    pub async fn call<T, F, Fut>(self: &Arc<Self>, send: F) -> Result<T, String>
    where
        F: Fn(Arc<HostProcess>) -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        for _ in 0..RETRIES {
            let (slot, host) = self.least_busy();
            let answer = send(host.clone()).await;
            if matches!(&answer, Err(reason) if reason == RETIRED) {
                continue;
            }
            self.served(&slot, &host);
            return answer;
        }
        Err("the module's hosts were recycled while the frame was offered".into())
    }

    /// Sends one frame through `send` to the host `pid` (the one holding what the frame is
    /// for), or fails when no host of the pool has that process id any more.
    pub async fn call_on<T, F, Fut>(&self, pid: u32, send: F) -> Result<T, String>
    where
        F: Fn(Arc<HostProcess>) -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let host = self.slots.iter().find_map(|slot| {
            let host = slot.host.lock().unwrap_or_else(|e| e.into_inner());
            (host.pid() == pid).then(|| host.clone())
        });
        match host {
            Some(host) => send(host).await,
            None => Err(format!(
                "the Python host {pid} that holds it is gone (restarted or recycled)"
            )),
        }
    }

    /// Kills every host (the module instance is gone).
    pub fn stop(&self, why: &str) {
        self.stopped.store(true, Ordering::SeqCst);
        for slot in &self.slots {
            slot.host
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stop(why);
        }
    }

    /// The host a new frame may expect to wait least for (the first of equals): an idle one,
    /// else the one with the fewest frames in flight for the shortest time without an
    /// answer, so that a host blocked in a call is passed over (`Load::expected_wait`).
    fn least_busy(&self) -> (Arc<Slot>, Arc<HostProcess>) {
        let mut best: Option<(u128, &Arc<Slot>, Arc<HostProcess>)> = None;
        for slot in &self.slots {
            let host = slot.host.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let wait = host.load().expected_wait();
            if best.as_ref().is_none_or(|(least, _, _)| wait < *least) {
                best = Some((wait, slot, host));
            }
        }
        let (_, slot, host) = best.expect("a pool has at least one host");
        (slot.clone(), host)
    }

    /// Counts a frame `host` answered, and replaces it when it is past a bound.
    fn served(self: &Arc<Self>, slot: &Arc<Slot>, host: &Arc<HostProcess>) {
        let served = slot.served.fetch_add(1, Ordering::Relaxed) + 1;
        let reason = if served >= slot.budget.load(Ordering::Relaxed) {
            Some(Recycle::MaxRequests)
        } else {
            let max = self.limits.max_rss.map(|b| b.0 as u64);
            match (max, max.and_then(|_| host.rss_bytes())) {
                (Some(max), Some(rss)) if rss > max => Some(Recycle::MaxRss),
                _ => None,
            }
        };
        let current = Arc::ptr_eq(&slot.host.lock().unwrap_or_else(|e| e.into_inner()), host);
        if let Some(reason) = reason {
            if current && !slot.recycling.swap(true, Ordering::SeqCst) {
                let (pool, slot) = (self.clone(), slot.clone());
                let name = format!("glia-py-recycle-{}", self.recipe.name);
                let spawned = std::thread::Builder::new()
                    .name(name)
                    .spawn(move || pool.recycle(&slot, reason));
                if let Err(e) = spawned {
                    tracing::warn!(module = %self.recipe.name, error = %e, "cannot start a thread to recycle the Python host");
                }
            }
        }
    }

    /// Replaces the slot's host with a new one, then drains and stops the old one.
    fn recycle(&self, slot: &Slot, reason: Recycle) {
        let old = slot.host.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (old_pid, served, rss) = (
            old.pid(),
            slot.served.load(Ordering::Relaxed),
            old.rss_bytes(),
        );
        match self.recipe.start() {
            Err(error) => {
                tracing::warn!(module = %self.recipe.name, pid = old_pid, reason = reason.as_str(), %error, "cannot start a Python host to replace one past its bound; the old one keeps serving");
                std::thread::sleep(RETRY_PAUSE);
            }
            Ok((new, _)) if self.stopped.load(Ordering::SeqCst) => {
                new.stop("its module instance was dropped");
            }
            Ok((new, _)) => {
                let new_pid = new.pid();
                *slot.host.lock().unwrap_or_else(|e| e.into_inner()) = new;
                slot.served.store(0, Ordering::Relaxed);
                slot.budget.store(budget(&self.limits), Ordering::Relaxed);
                *RECYCLES
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry((self.recipe.name.clone(), reason))
                    .or_default() += 1;
                tracing::info!(module = %self.recipe.name, reason = reason.as_str(), old_pid, new_pid, served, rss_bytes = rss, "recycling the Python host: a new one serves, the old one drains");
                if !old.retire(self.drain_bound) {
                    tracing::warn!(module = %self.recipe.name, pid = old_pid, "the recycled Python host did not drain within its bound; its invocations still waiting failed");
                }
            }
        }
        slot.recycling.store(false, Ordering::SeqCst);
    }
}

/// How many frames a new host serves before it is replaced: `max_requests` plus a draw of
/// up to `max_requests_jitter`; unbounded without `max_requests`.
fn budget(limits: &HostLimits) -> u64 {
    match limits.max_requests {
        None => u64::MAX,
        Some(max) => max.saturating_add(fastrand::u64(0..=limits.max_requests_jitter.unwrap_or(0))),
    }
}
