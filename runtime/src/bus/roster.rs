//! The coordinator's view of each remote module's workers, from their announcements
//! (`glia.v1.workers.<module>`): who serves it on its own subjects, when each was last heard
//! from, and how many invocations each has outstanding from this coordinator.
//!
//! NATS gives a queue group's messages to a random member, stalled or not: a worker stopped
//! by SIGSTOP, a GC pause or a stuck host keeps its share until the server drops its
//! connection (minutes, with nats-server's default pings). A stopped process cannot leave the
//! group itself, so the coordinator routes around it: it picks among the workers it heard
//! from within [`STALE_AFTER_INTERVALS`] of their announcement interval the one with fewer
//! invocations outstanding, of two picked at random ("power of two choices"). A worker that
//! stops answering collects outstanding invocations at once and is avoided from then on; one
//! that stops announcing is dropped after a few intervals.

use arc_swap::ArcSwap;
use async_nats::Client;
use futures::StreamExt;
use glia_bus_schema::subjects::{self, Announcement};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A worker not heard from for this many of its announcement intervals gets no more work.
pub const STALE_AFTER_INTERVALS: u64 = 5;

/// A worker not heard from for this long is forgotten altogether.
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// One announced worker of one module.
pub struct Member {
    /// The worker's id.
    pub id: Arc<str>,
    /// `glia.v1.worker.<id>.<module>`: its own subjects' prefix.
    pub prefix: String,
    last_heard_ms: AtomicU64,
    stale_after_ms: AtomicU64,
    refused_until_ms: AtomicU64,
    outstanding: AtomicUsize,
}

/// An invocation counted against a member until it is answered or abandoned.
pub struct Outstanding(Arc<Member>);

impl Outstanding {
    /// The member it went to.
    pub fn member(&self) -> &Arc<Member> {
        &self.0
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The announced workers of every module, by config index.
pub struct Roster {
    epoch: Instant,
    index: HashMap<Arc<str>, usize>,
    modules: Vec<ArcSwap<Vec<Arc<Member>>>>,
}

impl Roster {
    /// An empty roster for the modules named `names` (config order).
    pub fn new(names: &[Arc<str>]) -> Roster {
        Roster {
            epoch: Instant::now(),
            index: names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i))
                .collect(),
            modules: names
                .iter()
                .map(|_| ArcSwap::from_pointee(Vec::new()))
                .collect(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Takes in one announcement on `glia.v1.workers.<module>`.
    pub fn heard(&self, module: &str, announcement: &Announcement) {
        let Some(&index) = self.index.get(module) else {
            return;
        };
        if !subjects::valid_module_token(&announcement.worker) {
            return;
        }
        let members = &self.modules[index];
        let now = self.now_ms();
        if announcement.leaving {
            members.rcu(|list| {
                list.iter()
                    .filter(|m| *m.id != *announcement.worker)
                    .cloned()
                    .collect::<Vec<_>>()
            });
            return;
        }
        let stale_after = announcement.interval_ms.clamp(1, 60_000) * STALE_AFTER_INTERVALS;
        if let Some(member) = members
            .load()
            .iter()
            .find(|m| *m.id == *announcement.worker)
        {
            member.last_heard_ms.store(now, Ordering::Release);
            member.stale_after_ms.store(stale_after, Ordering::Release);
            return;
        }
        let member = Arc::new(Member {
            id: announcement.worker.as_str().into(),
            prefix: subjects::worker_module_prefix(&announcement.worker, module),
            last_heard_ms: AtomicU64::new(now),
            stale_after_ms: AtomicU64::new(stale_after),
            refused_until_ms: AtomicU64::new(0),
            outstanding: AtomicUsize::new(0),
        });
        let forget = FORGET_AFTER.as_millis() as u64;
        members.rcu(|list| {
            let mut fresh: Vec<Arc<Member>> = list
                .iter()
                .filter(|m| {
                    *m.id != *member.id
                        && now.saturating_sub(m.last_heard_ms.load(Ordering::Acquire)) < forget
                })
                .cloned()
                .collect();
            fresh.push(member.clone());
            fresh
        });
    }

    /// Whether `member` may be given work now.
    fn live(&self, member: &Member, now: u64) -> bool {
        now.saturating_sub(member.last_heard_ms.load(Ordering::Acquire))
            <= member.stale_after_ms.load(Ordering::Acquire)
            && member.refused_until_ms.load(Ordering::Acquire) <= now
    }

    /// A worker to send the next invocation of module `index` to, counted as outstanding
    /// until the returned guard drops; `None` when no live worker is known (then the queue
    /// group it is).
    pub fn pick(&self, index: usize) -> Option<Outstanding> {
        let members = self.modules.get(index)?.load();
        let n = members.len();
        if n == 0 {
            return None;
        }
        let now = self.now_ms();
        let live_from = |start: usize, skip: Option<usize>| {
            (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| Some(i) != skip && self.live(&members[i], now))
        };
        let first = live_from(fastrand::usize(..n), None)?;
        let chosen = match live_from(fastrand::usize(..n), Some(first)) {
            Some(second)
                if members[second].outstanding.load(Ordering::Acquire)
                    < members[first].outstanding.load(Ordering::Acquire) =>
            {
                second
            }
            _ => first,
        };
        let member = members[chosen].clone();
        member.outstanding.fetch_add(1, Ordering::AcqRel);
        Some(Outstanding(member))
    }

    /// `member` has no one listening on its subjects (it left or lost its connection).
    pub fn gone(&self, index: usize, member: &Member) {
        if let Some(members) = self.modules.get(index) {
            members.rcu(|list| {
                list.iter()
                    .filter(|m| m.id != member.id)
                    .cloned()
                    .collect::<Vec<_>>()
            });
        }
    }

    /// `member` refused work (at capacity, or its module is failed): give it none until it
    /// next announces itself, so a worker that fails fast does not draw the load.
    pub fn refused(&self, member: &Member) {
        let until =
            self.now_ms() + member.stale_after_ms.load(Ordering::Acquire) / STALE_AFTER_INTERVALS;
        member.refused_until_ms.store(until, Ordering::Release);
    }

    /// Listens to announcements on `client` until the task is aborted. First it publishes
    /// once to a worker subject nobody serves: a server whose permissions refuse them says
    /// so (see `refusals.rs`) before any announcement arrives, so no invocation is sent
    /// where it cannot go.
    pub async fn listen(self: Arc<Self>, client: Client) {
        let probe = format!("{}.probe", subjects::WORKER_PREFIX);
        let _ = client.publish(probe, bytes::Bytes::new()).await;
        let mut announcements = match client.subscribe(subjects::ANNOUNCE_WILDCARD).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen to workers' announcements; invocations go to the queue groups");
                return;
            }
        };
        while let Some(message) = announcements.next().await {
            let Some(module) = message
                .subject
                .strip_prefix(subjects::ANNOUNCE_PREFIX)
                .and_then(|s| s.strip_prefix('.'))
            else {
                continue;
            };
            if let Ok(announcement) = serde_json::from_slice::<Announcement>(&message.payload) {
                self.heard(module, &announcement);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce(worker: &str) -> Announcement {
        Announcement {
            worker: worker.into(),
            interval_ms: 100,
            leaving: false,
        }
    }

    #[test]
    fn picks_announced_workers_and_avoids_the_one_that_does_not_answer() {
        let roster = Roster::new(&["m".into(), "other".into()]);
        assert!(
            roster.pick(0).is_none(),
            "nobody announced: the queue group"
        );
        roster.heard("m", &announce("a"));
        roster.heard("m", &announce("b"));
        roster.heard("nope", &announce("c"));
        roster.heard("m", &announce("not.a.token"));
        assert!(roster.pick(1).is_none());
        // `a` holds invocations it never answers: once ahead, it is never picked over `b`.
        let mut held = Vec::new();
        for _ in 0..50 {
            let picked = roster.pick(0).unwrap();
            if &*picked.member().id == "a" {
                held.push(picked);
            }
        }
        assert!(
            held.len() <= 2,
            "{} invocations went to the stuck worker",
            held.len()
        );
        let refused = roster.pick(0).unwrap();
        roster.refused(refused.member());
        let other = roster.pick(0).unwrap();
        assert_ne!(other.member().id, refused.member().id);
        roster.heard(
            "m",
            &Announcement {
                leaving: true,
                ..announce("a")
            },
        );
        roster.heard(
            "m",
            &Announcement {
                leaving: true,
                ..announce("b")
            },
        );
        assert!(roster.pick(0).is_none(), "both left");
    }

    #[test]
    fn a_worker_that_goes_quiet_gets_nothing() {
        let roster = Roster::new(&["m".into()]);
        roster.heard(
            "m",
            &Announcement {
                interval_ms: 1,
                ..announce("a")
            },
        );
        std::thread::sleep(Duration::from_millis(20));
        assert!(roster.pick(0).is_none());
        roster.heard("m", &announce("a"));
        let picked = roster.pick(0).unwrap();
        roster.gone(0, &picked.member().clone());
        drop(picked);
        assert!(roster.pick(0).is_none());
    }
}
