//! CPU time by thread, read from `/proc`, so a benchmark can say where a run's CPU went
//! (which of its own threads, and other processes such as nats-server).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The CPU time each thread of one process has used so far, with the thread's name.
#[derive(Clone, Debug, Default)]
pub struct ThreadCpu {
    /// Thread id to (name, CPU time).
    threads: HashMap<u64, (String, Duration)>,
}

impl ThreadCpu {
    /// The threads of this process.
    pub fn of_self() -> ThreadCpu {
        Self::read("/proc/self/task")
    }

    /// The threads of process `pid` (none, if it has ended).
    pub fn of(pid: u32) -> ThreadCpu {
        Self::read(&format!("/proc/{pid}/task"))
    }

    fn read(tasks: &str) -> ThreadCpu {
        let mut threads = HashMap::new();
        let Ok(entries) = std::fs::read_dir(tasks) else {
            return ThreadCpu { threads };
        };
        for task in entries.flatten() {
            let Ok(tid) = task.file_name().to_string_lossy().parse::<u64>() else {
                continue;
            };
            // `schedstat`'s first field is the time on a CPU in nanoseconds: `stat`'s
            // utime/stime count 10 ms ticks, too coarse for a run of a second.
            let read = |file: &str| std::fs::read_to_string(task.path().join(file)).ok();
            let (Some(name), Some(schedstat)) = (read("comm"), read("schedstat")) else {
                continue;
            };
            let Some(ns) = schedstat
                .split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
            else {
                continue;
            };
            threads.insert(tid, (name.trim().to_owned(), Duration::from_nanos(ns)));
        }
        ThreadCpu { threads }
    }

    /// The CPU time used since `before` (an earlier reading of the same process), summed by
    /// thread name, the busiest first.
    pub fn since(&self, before: &ThreadCpu) -> Vec<(String, Duration)> {
        let mut by_name = BTreeMap::<String, Duration>::new();
        for (tid, (name, used)) in &self.threads {
            let earlier = before.threads.get(tid).map_or(Duration::ZERO, |(_, t)| *t);
            *by_name.entry(name.clone()).or_default() += used.saturating_sub(earlier);
        }
        let mut busiest: Vec<_> = by_name.into_iter().collect();
        busiest.sort_by_key(|(_, used)| std::cmp::Reverse(*used));
        busiest
    }

    /// The total CPU time used since `before`.
    pub fn total_since(&self, before: &ThreadCpu) -> Duration {
        self.since(before).iter().map(|(_, used)| *used).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_is_counted_under_its_name() {
        let before = ThreadCpu::of_self();
        std::thread::Builder::new()
            .name("cpu-test-spin".into())
            .spawn(|| {
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < Duration::from_millis(30) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                // Read while the thread still exists: an ended thread leaves `/proc`.
                ThreadCpu::of_self()
            })
            .unwrap()
            .join()
            .unwrap()
            .since(&before)
            .iter()
            .find(|(name, used)| name == "cpu-test-spin" && *used > Duration::ZERO)
            .expect("the spinning thread's CPU time");
    }
}
