//! Restart policy arithmetic, in OTP's and Akka's terms: restart intensity (at most N restarts
//! in a period), exponential backoff with jitter, and the cool-down before a failed module's
//! probe restart. Pure functions and small state, so they are table-tested.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a module is restarted after a crash.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartPolicy {
    /// At most this many restarts...
    pub intensity: u32,
    /// ...within this period; one more marks the module failed.
    pub period: Duration,
    /// Delay before the first restart of a burst.
    pub backoff_min: Duration,
    /// Largest delay before a restart (before jitter).
    pub backoff_max: Duration,
    /// Jitter: the delay is multiplied by `1 + random[0, 1) * random_factor`.
    pub random_factor: f64,
    /// Invocations held while the module restarts; more are answered through the failure policy.
    pub stash: usize,
    /// An invocation running longer than this is a hang: the module is restarted.
    pub watchdog: Duration,
    /// How long a failed module waits before a probe restart.
    pub cooldown: Duration,
}

impl Default for RestartPolicy {
    /// OTP allows 1 restart in 5 s by default and advises bursts such as 5 in 30 s; glia's
    /// modules crash per invocation rather than per process, so the default is a burst of 10 in
    /// 10 s (Akka's example), with Akka-style backoff from 10 ms to 5 s and 20% jitter.
    fn default() -> Self {
        RestartPolicy {
            intensity: 10,
            period: Duration::from_secs(10),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_secs(5),
            random_factor: 0.2,
            stash: 1000,
            watchdog: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Akka's `calculateDelay`: `min(max, min * 2^restarts) * (1 + rnd * random_factor)`, with
/// `restarts` counted from 0 for the first restart of a burst (a burst ends when an instance
/// answers an invocation or runs for `backoff_min` without crashing, after Akka's
/// `resetBackoffAfter`); jitter is applied after the cap.
pub fn backoff_delay(policy: &RestartPolicy, restarts: u32, rnd: f64) -> Duration {
    let base = if restarts >= 30 {
        policy.backoff_max
    } else {
        policy
            .backoff_min
            .saturating_mul(1u32 << restarts)
            .min(policy.backoff_max)
    };
    base.mul_f64(1.0 + rnd.clamp(0.0, 1.0) * policy.random_factor)
}

/// The restarts of the current period, to enforce the intensity.
#[derive(Debug, Clone, Default)]
pub struct IntensityWindow {
    restarts: VecDeque<Instant>,
}

impl IntensityWindow {
    /// Records a crash at `now`: `true` if a restart is allowed, `false` if it would be one
    /// more than `intensity` within `period` (the module is then marked failed).
    pub fn allow_restart(&mut self, policy: &RestartPolicy, now: Instant) -> bool {
        while let Some(&oldest) = self.restarts.front() {
            if now.saturating_duration_since(oldest) >= policy.period {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        if self.restarts.len() as u32 >= policy.intensity {
            return false;
        }
        self.restarts.push_back(now);
        true
    }

    /// Restarts in the current period.
    pub fn recent(&self) -> u32 {
        self.restarts.len() as u32
    }

    /// Forgets every restart (after a successful probe).
    pub fn reset(&mut self) {
        self.restarts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min_ms: u64, max_ms: u64) -> RestartPolicy {
        RestartPolicy {
            backoff_min: Duration::from_millis(min_ms),
            backoff_max: Duration::from_millis(max_ms),
            random_factor: 0.0,
            ..RestartPolicy::default()
        }
    }

    #[test]
    fn backoff_delays_with_zero_jitter() {
        // As Akka's BackoffSupervisorSpec tests calculateDelay with randomFactor 0.
        let minutes = |m: u64| Duration::from_secs(60 * m);
        let p = RestartPolicy {
            backoff_min: minutes(5),
            backoff_max: minutes(10),
            random_factor: 0.0,
            ..RestartPolicy::default()
        };
        let table = [
            (0, minutes(5)),
            (1, minutes(10)),
            (2, minutes(10)),
            (29, minutes(10)),
            (u32::MAX, minutes(10)),
        ];
        for (restarts, expected) in table {
            assert_eq!(
                backoff_delay(&p, restarts, 0.7),
                expected,
                "restarts {restarts}"
            );
        }
        let p = policy(10, 1_000);
        let table = [
            (0, 10),
            (1, 20),
            (2, 40),
            (3, 80),
            (6, 640),
            (7, 1_000),
            (40, 1_000),
        ];
        for (restarts, ms) in table {
            assert_eq!(
                backoff_delay(&p, restarts, 0.5),
                Duration::from_millis(ms),
                "restarts {restarts}"
            );
        }
    }

    #[test]
    fn jitter_is_applied_after_the_cap() {
        let p = RestartPolicy {
            random_factor: 0.2,
            ..policy(100, 100)
        };
        assert_eq!(backoff_delay(&p, 3, 0.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(&p, 3, 1.0), Duration::from_millis(120));
        assert_eq!(backoff_delay(&p, 3, 0.5), Duration::from_millis(110));
    }

    #[test]
    fn intensity_window() {
        let p = RestartPolicy {
            intensity: 3,
            period: Duration::from_secs(10),
            ..RestartPolicy::default()
        };
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = IntensityWindow::default();
        // (time, allowed, restarts in window after it)
        let table = [
            (0, true, 1),
            (1, true, 2),
            (2, true, 3),
            (3, false, 3),
            (9, false, 3),
            (10, true, 3),
            (11, true, 3),
            (12, true, 3),
            (12, false, 3),
            (30, true, 1),
        ];
        for (t, allowed, recent) in table {
            assert_eq!(w.allow_restart(&p, at(t)), allowed, "at {t}s");
            assert_eq!(w.recent(), recent, "at {t}s");
        }
        w.reset();
        assert_eq!(w.recent(), 0);
        let zero = RestartPolicy { intensity: 0, ..p };
        assert!(
            !IntensityWindow::default().allow_restart(&zero, t0),
            "intensity 0 never restarts"
        );
    }
}
