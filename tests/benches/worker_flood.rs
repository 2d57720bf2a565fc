//! A load run: a `glia worker` process's resident memory while 100,000 invocations flood a
//! slow module (every answer takes 1 s; `max_in_flight` 1024, stash 1000), sent as fast as
//! one NATS client can publish them. A worker that takes every message waits for the
//! module's permits with all of them in memory; one with back-pressure refuses what it
//! cannot run or stash with `unavailable`, at once.
//!
//! Run: `cargo build --release -p glia-runtime --bin glia && cargo bench -p glia-tests
//! --bench worker_flood` (needs nats-server); `GLIA_BIN=/path/to/glia` measures another
//! build. Under `cargo test` it sends 2,000 invocations only, as a smoke test.

use futures::StreamExt;
use glia_bus_schema::subjects::{self, headers};
use glia_bus_schema::Callback;
use glia_tests::load::full_run;
use glia_tests::nats::NatsServer;
use glia_tests::process::GliaProcess;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let n: usize = if full_run() { 100_000 } else { 2_000 };
    let nats = NatsServer::start();
    let yaml = json!({"bus": {"type": "nats", "url": nats.url()}, "modules": [
        {"module": "chaos", "name": "slow", "placement": "nats", "timeout": "60s",
         "config": {"callbacks": {"user_may_invite": {"answer": "NOT_SPAM",
                                                      "delay": {"probability": 1.0, "min_ms": 1000, "max_ms": 1000}}}}}
    ]})
    .to_string();
    let file = std::env::temp_dir().join(format!("glia-flood-{}.yaml", std::process::id()));
    std::fs::write(&file, &yaml).unwrap();
    actix_rt::System::new().block_on(async {
        let mut worker = GliaProcess::worker(&file, &[], false);
        worker.logged("glia worker serving over NATS").await;
        let client = async_nats::ConnectOptions::new()
            .client_capacity(65_536)
            .connect(nats.url())
            .await
            .unwrap();
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(format!("{inbox}.*")).await.unwrap();
        let (answered, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (a, r) = (answered.clone(), refused.clone());
        actix_rt::spawn(async move {
            while let Some(reply) = replies.next().await {
                let reply: Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
                if reply["result"]["answer"].is_object() {
                    a.fetch_add(1, Ordering::Relaxed);
                } else {
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        client.flush().await.unwrap();
        // Resident memory sampled every 50 ms; the peak kept.
        let peak = Arc::new(AtomicU64::new(0));
        let before = worker.rss_kib().unwrap_or(0);
        let sampler = {
            let (peak, pid) = (peak.clone(), worker.pid());
            actix_rt::spawn(async move {
                loop {
                    if let Some(kib) = glia_tests::process::rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    actix_rt::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let deadline = (SystemTime::now() + Duration::from_secs(120))
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            .to_string();
        let subject = subjects::module_subject("slow", Callback::UserMayInvite);
        let started = Instant::now();
        for i in 0..n {
            let mut h = async_nats::HeaderMap::new();
            h.insert(headers::REQUEST_ID, format!("f{i}").as_str());
            h.insert(headers::DEADLINE, deadline.as_str());
            let body = json!({"request_id": format!("f{i}"), "deadline_ms": 0, "callback": "user_may_invite",
                              "args": {"inviter": format!("@u{i}:hs"), "invitee": "@b:hs", "room_id": "!r:hs"}});
            client
                .publish_with_reply_and_headers(
                    subject.clone(),
                    format!("{inbox}.{i}"),
                    h,
                    body.to_string().into(),
                )
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        let sent = started.elapsed();
        // Everything answered: the refusals at once, the rest a second or two later.
        let until = Instant::now() + Duration::from_secs(120);
        while answered.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed) < n
            && Instant::now() < until
        {
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        let all_in = started.elapsed();
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        sampler.abort();
        let after = worker.rss_kib().unwrap_or(0);
        println!("binary: {}", glia_tests::harness::glia_binary().display());
        println!(
            "{n} invocations to a module answering in 1 s (max_in_flight 1024, stash 1000), published in {} ms",
            sent.as_millis()
        );
        println!(
            "  worker RSS: {:.1} MiB before, {:.1} MiB at the peak, {:.1} MiB after",
            before as f64 / 1024.0,
            peak.load(Ordering::Relaxed) as f64 / 1024.0,
            after as f64 / 1024.0
        );
        println!(
            "  {} answered by the module, {} refused (unavailable), {} unanswered; all in after {} ms",
            answered.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            n - answered.load(Ordering::Relaxed) - refused.load(Ordering::Relaxed),
            all_in.as_millis()
        );
        drop(worker);
    });
    let _ = std::fs::remove_file(&file);
}
