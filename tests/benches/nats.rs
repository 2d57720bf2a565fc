//! Dispatch over NATS against a raw async-nats request-reply round trip, in one run, for 1,
//! 2 and 3 workers (each on a thread and actix system of its own, as a `glia worker` process
//! runs), with the module's default one instance and with `instances: per_thread`: latency
//! percentiles (sequential) and throughput (64 in flight), each with its ratio to the raw
//! round trip (p50 as a multiple of raw, throughput as a share).
//!
//! Run: `cargo bench -p glia-tests --bench nats` (needs nats-server). Under `cargo test` it
//! runs a few requests of each case only, as a smoke test.

use futures::StreamExt;
use glia_bus_schema::requests::UserMayInvite;
use glia_bus_schema::CallbackRequest;
use glia_runtime::config::GliaConfig;
use glia_runtime::worker::Worker;
use glia_runtime::Glia;
use glia_tests::nats::NatsServer;
use glia_tests::TestGlia;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests in flight in the throughput runs.
const IN_FLIGHT: usize = 64;

/// The `q`-quantile of sorted latencies.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// What [`measure`] found: the median latency and the throughput.
#[derive(Clone, Copy)]
struct Measured {
    p50: Duration,
    per_sec: f64,
}

/// Runs `one` `n` times in a row and `n` times `IN_FLIGHT` at a time; prints a row, with
/// its ratios to `raw` if given.
async fn measure<F, Fut>(label: &str, n: usize, raw: Option<Measured>, one: F) -> Measured
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        one(i).await;
        latencies.push(t.elapsed());
    }
    latencies.sort_unstable();
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(&one)
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    let throughput = n as f64 / t.elapsed().as_secs_f64();
    let p50 = quantile(&latencies, 0.5);
    let ratios = raw.map_or(String::new(), |raw| {
        format!(
            "   p50 {:.2}x raw, throughput {:.2} of raw",
            p50.as_secs_f64() / raw.p50.as_secs_f64(),
            throughput / raw.per_sec
        )
    });
    println!(
        "{label:<42} p50 {:>8.1} µs   p99 {:>8.1} µs   {:>8.0} req/s ({IN_FLIGHT} in flight){ratios}",
        p50.as_secs_f64() * 1e6,
        quantile(&latencies, 0.99).as_secs_f64() * 1e6,
        throughput
    );
    Measured {
        p50,
        per_sec: throughput,
    }
}

/// A worker on a thread of its own, with its own actix system, as a `glia worker` process
/// runs one: its message loop does not share the coordinator's thread.
struct WorkerThread {
    stop: futures::channel::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl WorkerThread {
    /// Starts a worker for `config`'s NATS modules and waits until it serves.
    fn start(config: &GliaConfig) -> WorkerThread {
        let config = config.clone();
        let (ready, started) = std::sync::mpsc::channel();
        let (stop, stopped) = futures::channel::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let worker = Worker::start(&config).await.expect("the worker starts");
                ready.send(()).expect("the bench waits");
                let _ = stopped.await;
                worker.shutdown(Duration::from_millis(10)).await;
            });
        });
        started.recv().expect("the worker started");
        WorkerThread { stop, thread }
    }

    /// Stops the worker and waits for its thread.
    fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().expect("the worker's thread");
    }
}

fn invite(i: usize) -> CallbackRequest {
    CallbackRequest::UserMayInvite(UserMayInvite {
        inviter: format!("@u{i}:hs"),
        invitee: "@b:hs".into(),
        room_id: "!r:hs".into(),
    })
}

fn main() {
    let n = if glia_tests::load::full_run() {
        5_000
    } else {
        20
    };
    let nats = NatsServer::start();
    let system = actix_rt::System::new();
    system.block_on(async {
        // The floor: a raw request-reply to a responder that echoes.
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let mut echo = client
            .queue_subscribe("bench.echo", "bench".into())
            .await
            .unwrap();
        let responder = client.clone();
        actix_rt::spawn(async move {
            while let Some(m) = echo.next().await {
                if let Some(reply) = m.reply {
                    let _ = responder.publish(reply, m.payload).await;
                }
            }
        });
        let payload = serde_json::to_vec(
            &json!({"inviter": "@u:hs", "invitee": "@b:hs", "room_id": "!r:hs"}),
        )
        .unwrap();
        let raw = measure("raw async-nats request-reply", n, None, |_| {
            let (client, payload) = (client.clone(), payload.clone());
            async move {
                client
                    .request("bench.echo", payload.into())
                    .await
                    .expect("echo");
            }
        })
        .await;

        for instances in ["one", "per_thread"] {
            let yaml = json!({"bus": {"type": "nats", "url": nats.url()}, "modules": [
                {"module": "scripted", "name": format!("bench-{instances}"), "placement": "nats",
                 "instances": instances,
                 "config": {"answers": {"user_may_invite": {"answer": "NOT_SPAM"}}}}
            ]})
            .to_string();
            let config = TestGlia::config(&yaml).unwrap();
            let mut workers = vec![WorkerThread::start(&config)];
            let glia = Arc::new(Glia::start(config.clone()).await.unwrap());
            for count in [1, 2, 3] {
                while workers.len() < count {
                    workers.push(WorkerThread::start(&config));
                }
                measure(
                    &format!("glia, {count} worker(s), instances: {instances}"),
                    n,
                    Some(raw),
                    |i| {
                        let glia = glia.clone();
                        async move {
                            let c = glia.coordinator();
                            c.dispatch(invite(i), c.new_meta()).await.expect("dispatch");
                        }
                    },
                )
                .await;
            }
            for w in workers {
                w.stop();
            }
            glia.shutdown(Duration::from_millis(10)).await;
        }
    });
}
