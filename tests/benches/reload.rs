//! A load run: throughput of a `glia serve` process while its config is reloaded again and
//! again (`POST /_glia/v1/admin/reload`, what `glia reload` and SIGHUP do), against the
//! throughput before, in the same run; how long each reload took (from the request to its
//! answer, which waits for the retired module to stop); and that every answer was the
//! module's own, none lost or answered by a failure policy. Each reload replaces `demo`
//! (its config alternates between two lists that both deny the asking user) and keeps the
//! three other modules.
//!
//! Run: `cargo build --release -p glia-runtime --bin glia && cargo bench -p glia-tests
//! --bench reload`; `GLIA_BIN=/path/to/glia` measures another build. Under `cargo test` it
//! runs for a few seconds only, as a smoke test.

use glia_tests::load::{denied, full_run, keep_in_flight, median, post, rate_per_window, Sample};
use glia_tests::process::GliaProcess;
use serde_json::json;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Requests in flight.
const IN_FLIGHT: usize = 32;
/// Throughput is counted in windows this wide.
const WINDOW: Duration = Duration::from_millis(250);

/// The config of reload `n`: `demo` denies the asking user and `@v<n>`.
fn config(n: usize) -> String {
    json!({"deadline": "10s", "modules": [
        {"module": "demo", "config": {"denied_users": ["@evilguy:example.com", format!("@v{n}:example.com")]}},
        {"module": "list_spam_checker", "config": {"evil_users": ["@evil:example.com"]}},
        {"module": "user_restrictions", "config": {"rules": [{"match": "@guest-.*", "deny": ["invite"]}]}},
        {"module": "message_policy", "config": {"blocked_keywords": ["buy followers"]}},
    ]})
    .to_string()
}

fn main() {
    // Before, reloading, after, and the time between reloads, in ms.
    let [before, reloading, after, every] = if full_run() {
        [5000, 10_000, 2000, 500]
    } else {
        [500, 1500, 300, 400]
    }
    .map(Duration::from_millis);
    let file = std::env::temp_dir().join(format!("glia-reload-{}.yaml", std::process::id()));
    std::fs::write(&file, config(0)).unwrap();
    actix_rt::System::new().block_on(async {
        let (serve, listen) = GliaProcess::serve(&file, &[], &[], false).await;
        let url = format!("http://{listen}/_glia/v1/callbacks/user_may_create_room");
        let reload_url = format!("http://{listen}/_glia/v1/admin/reload");
        let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
        let body = json!({"user_id": "@evilguy:example.com", "room_config": {}}).to_string();
        // Answered by the module (demo denies), not by a failure policy.
        let by_module = |reply| denied(reply, Some("demo"));
        assert!(by_module(post(&client, &url, body.clone()).await), "demo answers");

        let start = Instant::now();
        let (from, to) = (start + before, start + before + reloading);
        let end = to + after;
        let took: Rc<RefCell<Vec<Duration>>> = Rc::default();
        let reloader = {
            let (client, file, took) = (client.clone(), file.clone(), took.clone());
            actix_rt::spawn(async move {
                actix_rt::time::sleep(from.saturating_duration_since(Instant::now())).await;
                let mut n = 0;
                while Instant::now() + every <= to {
                    n += 1;
                    std::fs::write(&file, config(n)).unwrap();
                    let asked = Instant::now();
                    let (status, answer) = post(&client, &reload_url, String::new())
                        .await
                        .expect("the reload is answered");
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                    let report: serde_json::Value = serde_json::from_slice(&answer).unwrap();
                    assert_eq!(report["replaced"], json!(["demo"]), "{report}");
                    took.borrow_mut().push(asked.elapsed());
                    actix_rt::time::sleep((asked + every).saturating_duration_since(Instant::now()))
                        .await;
                }
            })
        };
        let samples: Vec<Sample> = keep_in_flight(IN_FLIGHT, end, |_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            async move { by_module(post(&client, &url, body).await) }
        })
        .await;
        reloader.await.expect("the reloads ran");
        let rates = |from: Instant, to: Instant| {
            rate_per_window(&samples, from, to, WINDOW, |s| s.ok)
        };
        let baseline = median(&rates(start, from));
        let during = rates(from, to);
        let worst = during.iter().cloned().fold(f64::INFINITY, f64::min);
        let failed = samples.iter().filter(|s| !s.ok).count();
        let mut took: Vec<f64> = took.borrow().iter().map(|d| d.as_secs_f64() * 1e3).collect();
        took.sort_by(f64::total_cmp);
        println!("binary: {}", glia_tests::harness::glia_binary().display());
        println!(
            "4 modules, {IN_FLIGHT} in flight, {} reloads (demo replaced, 3 kept) every {} ms:",
            took.len(),
            every.as_millis()
        );
        println!(
            "  before: median {baseline:.0} answers/s ({} ms windows)",
            WINDOW.as_millis()
        );
        println!(
            "  while reloading: median {:.0}/s = {:.2} of before; worst window {worst:.0}/s = {:.2}",
            median(&during),
            median(&during) / baseline,
            worst / baseline
        );
        println!(
            "  reload answered in: median {:.1} ms, max {:.1} ms",
            median(&took),
            took.last().copied().unwrap_or(0.0)
        );
        println!(
            "  {} answers, {failed} not the module's (lost, failed, or by a failure policy)",
            samples.len()
        );
        assert_eq!(failed, 0, "answers lost or not the module's during reloads");
        assert!(!took.is_empty(), "no reload ran");
        drop(serve);
    });
    let _ = std::fs::remove_file(&file);
}
