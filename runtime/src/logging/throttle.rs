//! Log lines about what can happen by the thousand (a refused request, a reply that cannot be
//! published): at most one line per kind of event per period, saying how many of that kind
//! were left out since the line before. A client that floods glia with bad requests cannot
//! flood its log (one without a token once made it write 77,865 lines in 5 s); the metrics
//! still count every one.

use std::collections::hash_map::{Entry, HashMap};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a line about the same kind of event is written at most.
pub const PERIOD: Duration = Duration::from_secs(10);

/// Decides which events of each kind get a log line.
#[derive(Debug)]
pub struct LogThrottle<K> {
    period: Duration,
    kinds: Mutex<HashMap<K, Window>>,
}

/// One kind's last line and what came since.
#[derive(Debug)]
struct Window {
    logged: Instant,
    left_out: u64,
}

impl<K: Eq + Hash> Default for LogThrottle<K> {
    fn default() -> Self {
        LogThrottle::new(PERIOD)
    }
}

impl<K: Eq + Hash> LogThrottle<K> {
    /// At most one line per kind every `period`.
    pub fn new(period: Duration) -> Self {
        LogThrottle {
            period,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to write a line about an event of kind `kind` now: `Some(left_out)`, how many
    /// events of that kind were not logged since its last line, or `None`, and this one is
    /// left out. Each kind is remembered, so kinds must be few (a route and an errcode, never
    /// a path or a user).
    pub fn admit(&self, kind: K) -> Option<u64> {
        self.admit_at(kind, Instant::now())
    }

    fn admit_at(&self, kind: K, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let window = match kinds.entry(kind) {
            Entry::Vacant(first) => {
                first.insert(Window {
                    logged: now,
                    left_out: 0,
                });
                return Some(0);
            }
            Entry::Occupied(seen) => seen.into_mut(),
        };
        if now.saturating_duration_since(window.logged) < self.period {
            window.left_out += 1;
            return None;
        }
        window.logged = now;
        Some(std::mem::take(&mut window.left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_and_period_saying_how_many_were_left_out() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(throttle.admit_at("token", at(0)), Some(0));
        assert_eq!(throttle.admit_at("json", at(0)), Some(0), "kinds apart");
        for s in 0..10 {
            assert_eq!(throttle.admit_at("token", at(s)), None);
        }
        assert_eq!(throttle.admit_at("token", at(10)), Some(10));
        assert_eq!(throttle.admit_at("token", at(11)), None);
        assert_eq!(throttle.admit_at("token", at(25)), Some(1));
        assert_eq!(throttle.admit_at("json", at(25)), Some(0));
    }
}
