//! Load for benchmarks and load runs: requests kept in flight over HTTP or NATS for a while,
//! each one's completion recorded, and the arithmetic the reports use (throughput per
//! window, medians).

use futures::StreamExt;
use std::future::Future;
use std::time::{Duration, Instant};

/// One request's outcome.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was answered.
    pub done: Instant,
    /// How long it took.
    pub took: Duration,
    /// Whether the answer was the one expected.
    pub ok: bool,
}

/// Runs `one(i)` for i = 0, 1, ... with `in_flight` at a time until `until`, recording each.
pub async fn keep_in_flight<F, Fut>(in_flight: usize, until: Instant, one: F) -> Vec<Sample>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = bool>,
{
    futures::stream::iter(0..)
        .take_while(|_| futures::future::ready(Instant::now() < until))
        .map(|i| {
            let request = one(i);
            async move {
                let sent = Instant::now();
                let ok = request.await;
                Sample {
                    done: Instant::now(),
                    took: sent.elapsed(),
                    ok,
                }
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await
}

/// POSTs `body` to `url` with `client`; the status and the body.
pub async fn post(client: &awc::Client, url: &str, body: String) -> Option<(u16, Vec<u8>)> {
    let mut resp = client
        .post(url)
        .insert_header(("content-type", "application/json"))
        .send_body(body)
        .await
        .ok()?;
    let bytes = resp.body().limit(1 << 20).await.ok()?;
    Some((resp.status().as_u16(), bytes.to_vec()))
}

/// Whether `reply` (from [`post`]) is a 200 deny, by `module` when given: the module's own
/// answer to a user it denies, not a failure policy's allow or an error.
pub fn denied(reply: Option<(u16, Vec<u8>)>, module: Option<&str>) -> bool {
    reply.is_some_and(|(status, body)| {
        status == 200
            && serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| v["decision"] == "deny" && module.is_none_or(|m| v["module"] == m))
    })
}

/// Answers per second in consecutive windows of `width` from `start` to `end`, counting
/// the samples for which `count` holds.
pub fn rate_per_window(
    samples: &[Sample],
    start: Instant,
    end: Instant,
    width: Duration,
    count: impl Fn(&Sample) -> bool,
) -> Vec<f64> {
    // In whole nanoseconds: 0.3 s / 0.1 s in floating point is 2.999...
    let width_ns = width.as_nanos().max(1);
    let windows = (end.saturating_duration_since(start).as_nanos() / width_ns) as usize;
    let mut counts = vec![0usize; windows];
    for s in samples.iter().filter(|s| count(s)) {
        if s.done < start {
            continue;
        }
        let i = (s.done.duration_since(start).as_nanos() / width_ns) as usize;
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
        }
    }
    counts
        .into_iter()
        .map(|c| c as f64 / width.as_secs_f64())
        .collect()
}

/// The median (0 for none).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Whether this benchmark binary runs under `cargo bench` (full length) rather than
/// `cargo test` (a few seconds, as a smoke test).
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_medians() {
        let start = Instant::now();
        let at = |ms| Sample {
            done: start + Duration::from_millis(ms),
            took: Duration::ZERO,
            ok: true,
        };
        let samples = [at(10), at(20), at(150), at(260), at(900)];
        let rates = rate_per_window(
            &samples,
            start,
            start + Duration::from_millis(300),
            Duration::from_millis(100),
            |_| true,
        );
        assert_eq!(rates, [20.0, 10.0, 10.0]);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
