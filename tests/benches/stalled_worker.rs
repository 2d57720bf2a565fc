//! A load run: throughput while one of three `glia worker` processes is stopped (SIGSTOP:
//! connected, subscribed, silent — as a GC pause or a stuck host), against the throughput
//! before it, in the same run. A `glia serve` process on the NATS bus takes HTTP requests
//! for a module its workers serve (module timeout 1 s, failure policy allow).
//!
//! Run: `cargo build --release -p glia-runtime --bin glia && cargo bench -p glia-tests
//! --bench stalled_worker` (needs nats-server); `GLIA_BIN=/path/to/glia` measures another
//! build. Under `cargo test` it runs for a few seconds only, as a smoke test.

use glia_tests::load::{denied, full_run, keep_in_flight, median, post, rate_per_window, Sample};
use glia_tests::nats::NatsServer;
use glia_tests::process::GliaProcess;
use serde_json::json;
use std::time::{Duration, Instant};

/// Requests in flight.
const IN_FLIGHT: usize = 32;
/// Throughput is counted in windows this wide.
const WINDOW: Duration = Duration::from_millis(250);

fn main() {
    let (before, stopped, after) = if full_run() {
        (
            Duration::from_secs(5),
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
    } else {
        (
            Duration::from_millis(500),
            Duration::from_millis(1500),
            Duration::from_millis(500),
        )
    };
    let nats = NatsServer::start();
    let yaml = json!({"bus": {"type": "nats", "url": nats.url()}, "deadline": "10s", "modules": [
        {"module": "demo", "placement": "nats", "timeout": "1s", "failure_policy": "allow",
         "callbacks": ["user_may_create_room"]}
    ]})
    .to_string();
    let file = std::env::temp_dir().join(format!("glia-stalled-{}.yaml", std::process::id()));
    std::fs::write(&file, &yaml).unwrap();
    actix_rt::System::new().block_on(async {
        let workers: Vec<GliaProcess> = (0..3)
            .map(|_| GliaProcess::worker(&file, &[], false))
            .collect();
        let (serve, listen) = GliaProcess::serve(&file, &[], &[], false).await;
        let url = format!("http://{listen}/_glia/v1/callbacks/user_may_create_room");
        let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
        let body = json!({"user_id": "@evilguy:example.com", "room_config": {}}).to_string();
        // Answered by the module (demo denies), not by the policy.
        let by_module = |reply| denied(reply, None);
        // Every worker up and announced.
        let warm_until = Instant::now() + Duration::from_secs(60);
        while !by_module(post(&client, &url, body.clone()).await) {
            assert!(Instant::now() < warm_until, "the workers never answered");
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        actix_rt::time::sleep(Duration::from_millis(500)).await;

        let start = Instant::now();
        let (stop_at, cont_at) = (start + before, start + before + stopped);
        let end = cont_at + after;
        let stopper = {
            let pid = workers[0].pid();
            std::thread::spawn(move || {
                std::thread::sleep(stop_at.saturating_duration_since(Instant::now()));
                let _ = std::process::Command::new("kill").args(["-STOP", &pid.to_string()]).status();
                std::thread::sleep(cont_at.saturating_duration_since(Instant::now()));
                let _ = std::process::Command::new("kill").args(["-CONT", &pid.to_string()]).status();
            })
        };
        let samples: Vec<Sample> = keep_in_flight(IN_FLIGHT, end, |_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            async move { by_module(post(&client, &url, body).await) }
        })
        .await;
        let _ = stopper.join();
        let rates = |from: Instant, to: Instant| {
            rate_per_window(&samples, from, to, WINDOW, |s| s.ok)
        };
        let baseline = median(&rates(start, stop_at));
        let during = rates(stop_at, cont_at);
        let worst = during.iter().cloned().fold(f64::INFINITY, f64::min);
        let by_policy = samples
            .iter()
            .filter(|s| !s.ok && s.done >= stop_at && s.done < cont_at + Duration::from_secs(2))
            .count();
        let answered_during = samples
            .iter()
            .filter(|s| s.done >= stop_at && s.done < cont_at)
            .count();
        println!(
            "binary: {}",
            glia_tests::harness::glia_binary().display()
        );
        println!(
            "3 workers, {IN_FLIGHT} in flight, one worker stopped for {} ms:",
            stopped.as_millis()
        );
        println!("  before: median {baseline:.0} answers by the module/s ({} ms windows)", WINDOW.as_millis());
        println!(
            "  while stopped: median {:.0}/s = {:.2} of before; worst window {worst:.0}/s = {:.2}",
            median(&during),
            median(&during) / baseline,
            worst / baseline
        );
        println!(
            "  after SIGCONT: median {:.0}/s",
            median(&rates(cont_at, end))
        );
        println!(
            "  {answered_during} answered while stopped; {by_policy} answered by the failure policy (timed out on the stopped worker)"
        );
        println!("  per window while stopped: {during:.0?}");
        drop(serve);
        drop(workers);
    });
    let _ = std::fs::remove_file(&file);
}
