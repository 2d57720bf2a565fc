//! What can be seen of a module from outside its thread: state, restarts, crashes, in-flight;
//! and what its instances share across threads.

use glia_module_api::SharedState;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A module's life-cycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleState {
    /// Being built for the first time.
    Starting,
    /// Serving.
    Running,
    /// Crashed; being rebuilt after a backoff. Invocations wait in the stash.
    Restarting,
    /// Past its restart intensity (or its constructor failed): callbacks resolve through the
    /// failure policy until a probe restart succeeds.
    Failed,
    /// Shut down.
    Stopped,
}

impl ModuleState {
    /// Every state, for gauges that show one of them as 1.
    pub const ALL: [ModuleState; 5] = [
        ModuleState::Starting,
        ModuleState::Running,
        ModuleState::Restarting,
        ModuleState::Failed,
        ModuleState::Stopped,
    ];

    /// The snake_case name, as in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleState::Starting => "starting",
            ModuleState::Running => "running",
            ModuleState::Restarting => "restarting",
            ModuleState::Failed => "failed",
            ModuleState::Stopped => "stopped",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => ModuleState::Starting,
            1 => ModuleState::Running,
            2 => ModuleState::Restarting,
            3 => ModuleState::Failed,
            _ => ModuleState::Stopped,
        }
    }
}

/// The last crash.
#[derive(Debug, Clone, Serialize)]
pub struct CrashInfo {
    /// The panic message or error.
    pub reason: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A module's status, shared between its thread and readers elsewhere. Written only on
/// life-cycle changes and per invocation (one atomic add each way).
#[derive(Debug)]
pub struct ModuleStatus {
    state: AtomicU8,
    restarts: AtomicU64,
    crashes: AtomicU64,
    crashed_invocations: AtomicU64,
    in_flight: AtomicUsize,
    last_crash: Mutex<Option<CrashInfo>>,
    recoveries: Mutex<VecDeque<Duration>>,
    /// When the module's thread last showed it is alive, in ms since `EPOCH`.
    heartbeat_ms: AtomicU64,
    /// The state every instance of this run of the entry shares (`ModuleApi::shared`): kept
    /// here because a status lives exactly as long (a kept module keeps it across reloads, a
    /// changed one gets a new status, a blocked thread's replacement reuses it).
    shared: SharedState,
}

/// The reference point of heartbeats.
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Recovery times kept for statistics (the most recent ones).
const RECOVERIES_KEPT: usize = 100_000;

impl Default for ModuleStatus {
    fn default() -> Self {
        ModuleStatus {
            state: AtomicU8::new(ModuleState::Starting as u8),
            restarts: AtomicU64::new(0),
            crashes: AtomicU64::new(0),
            crashed_invocations: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_crash: Mutex::new(None),
            recoveries: Mutex::new(VecDeque::new()),
            heartbeat_ms: AtomicU64::new(now_ms()),
            shared: SharedState::new(),
        }
    }
}

impl ModuleStatus {
    /// A fresh status for the instance that replaces `old`'s on a reload: it starts anew,
    /// but the counts carry over, so a module's crash and restart counters (and the metrics
    /// read from them) keep rising across replacements.
    pub fn continuing(old: &ModuleStatus) -> ModuleStatus {
        let status = ModuleStatus::default();
        status.restarts.store(old.restarts(), Ordering::Relaxed);
        status.crashes.store(old.crashes(), Ordering::Relaxed);
        status
            .crashed_invocations
            .store(old.crashed_invocations(), Ordering::Relaxed);
        *status.last_crash.lock().unwrap_or_else(|e| e.into_inner()) = old.last_crash();
        status
    }

    /// What the module's instances share (see `ModuleApi::shared`).
    pub fn shared(&self) -> &SharedState {
        &self.shared
    }

    /// The current state.
    pub fn state(&self) -> ModuleState {
        ModuleState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, state: ModuleState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Successful restarts so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Crashes so far (each one that took the module down; a second panic of an instance
    /// that is already being replaced is not counted again).
    pub fn crashes(&self) -> u64 {
        self.crashes.load(Ordering::Relaxed)
    }

    /// Invocations that panicked or reported a fatal error (each one, including those of an
    /// instance that was already being replaced).
    pub fn crashed_invocations(&self) -> u64 {
        self.crashed_invocations.load(Ordering::Relaxed)
    }

    pub(crate) fn record_crashed_invocation(&self) {
        self.crashed_invocations.fetch_add(1, Ordering::Relaxed);
    }

    /// Invocations running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The last crash, if any.
    pub fn last_crash(&self) -> Option<CrashInfo> {
        self.last_crash
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Time from each crash to the module serving again (the most recent ones), oldest first.
    pub fn recoveries(&self) -> Vec<Duration> {
        self.recoveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    pub(crate) fn record_crash(&self, reason: &str) {
        self.crashes.fetch_add(1, Ordering::Relaxed);
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        *self.last_crash.lock().unwrap_or_else(|e| e.into_inner()) = Some(CrashInfo {
            reason: reason.to_owned(),
            at_ms,
        });
    }

    pub(crate) fn record_restart(&self, recovery: Option<Duration>) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        if let Some(d) = recovery {
            let mut r = self.recoveries.lock().unwrap_or_else(|e| e.into_inner());
            if r.len() == RECOVERIES_KEPT {
                r.pop_front();
            }
            r.push_back(d);
        }
    }

    /// Records that the module's thread is alive (its watchdog tick ran).
    pub(crate) fn beat(&self) {
        self.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// How long since the module's thread last showed it is alive.
    pub fn since_heartbeat(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed)))
    }

    pub(crate) fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
