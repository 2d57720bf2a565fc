//! Dispatch over NATS against a raw async-nats request-reply round trip, interleaved in
//! one run, for 1, 2 and 3 workers (each on a thread and actix system of its own, as a
//! `glia worker` process runs), with one instance of the module and with `instances:
//! per_thread`: the median latency (sequential) and throughput (64 in flight), each with its
//! ratio to the raw round trip measured in the same rounds (p50 as a multiple of raw,
//! throughput as a share).
//!
//! Each case runs `ROUNDS` rounds; a round measures raw request-reply, then the case. The
//! ratios are of the medians over the rounds: raw request-reply itself moves by half between
//! minutes on these shared machines, so a case is only compared with raw measured beside it.
//! Besides glia, two diagnostic rows: raw request-reply to a responder on a thread and
//! connection of its own (the topology glia has: is a second connection the cost?) and raw
//! requests straight to a glia worker, no coordinator (the worker's part of the cost). Last,
//! a module with state (`account_expiry`'s `is_user_expired`, 1 worker) with one instance
//! and by its default (an instance per thread, its state shared through `ModuleApi::shared`).
//!
//! Run: `cargo bench -p glia-tests --bench nats` (needs nats-server); `-- <text>` runs only
//! the cases whose label contains it. Under `cargo test` it runs a few requests of each case
//! only, as a smoke test.

use futures::future::BoxFuture;
use futures::StreamExt;
use glia_bus_schema::requests::{IsUserExpired, UserMayInvite};
use glia_bus_schema::{CallbackRequest, DispatchReply, Outcome};
use glia_runtime::config::GliaConfig;
use glia_runtime::worker::Worker;
use glia_runtime::Glia;
use glia_tests::cpu::ThreadCpu;
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

/// Rounds of each case, each beside a raw round.
const ROUNDS: usize = 5;

/// One round's results: the median latency, the throughput, and the CPU time per request
/// of the throughput run by where it was spent.
#[derive(Clone)]
struct Measured {
    p50: Duration,
    per_sec: f64,
    cpu: Vec<(String, Duration)>,
}

/// Where the CPU time of a run went: nats-server, and each of this process's threads by
/// name (the bench's own thread, which also runs the coordinator, as `bench`).
fn cpu_reading(nats_pid: u32) -> (ThreadCpu, ThreadCpu) {
    (ThreadCpu::of(nats_pid), ThreadCpu::of_self())
}

/// The CPU time per request since `before`, by where it was spent.
fn cpu_per_request(
    before: &(ThreadCpu, ThreadCpu),
    nats_pid: u32,
    n: usize,
) -> Vec<(String, Duration)> {
    let (nats, own) = cpu_reading(nats_pid);
    let process = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    let mut spent = vec![("nats-server".to_owned(), nats.total_since(&before.0))];
    for (name, used) in own.since(&before.1) {
        let name = if name == process.trim() {
            "bench".to_owned()
        } else {
            name
        };
        spent.push((name, used));
    }
    spent
        .into_iter()
        .map(|(name, used)| (name, used / n as u32))
        .collect()
}

/// Runs `one` `n` times in a row and `n` times `IN_FLIGHT` at a time.
async fn measure<F, Fut>(n: usize, nats_pid: u32, one: F) -> Measured
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
    let before = cpu_reading(nats_pid);
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(&one)
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    let per_sec = n as f64 / t.elapsed().as_secs_f64();
    Measured {
        p50: quantile(&latencies, 0.5),
        per_sec,
        cpu: cpu_per_request(&before, nats_pid, n),
    }
}

/// The median CPU time per request of each place over `rounds`, in µs, the busiest first;
/// places under 0.3 µs are left out.
fn cpu_medians(rounds: &[Measured]) -> String {
    let mut names: Vec<&str> = rounds
        .iter()
        .flat_map(|m| m.cpu.iter().map(|(name, _)| name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut medians: Vec<(&str, f64)> = names
        .into_iter()
        .map(|name| {
            let of = |m: &Measured| {
                m.cpu
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0.0, |(_, used)| used.as_secs_f64() * 1e6)
            };
            (name, median(rounds.iter().map(of).collect()))
        })
        .filter(|(_, us)| *us >= 0.3)
        .collect();
    medians.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = medians.iter().map(|(_, us)| us).sum();
    let parts: Vec<String> = medians
        .iter()
        .map(|(name, us)| format!("{name} {us:.1}"))
        .collect();
    format!("{total:.1} µs ({})", parts.join(", "))
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Whether the case `label` runs: every case, or those whose label contains the bench's
/// first plain argument (`cargo bench --bench nats -- per_thread`), e.g. to profile one.
fn selected(label: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_none_or(|filter| label.contains(&filter))
}

/// Measures `case` in `ROUNDS` rounds, each after a round of `raw`, and prints the medians
/// and the ratios of the medians.
async fn versus_raw<R, RF, C, CF>(label: &str, n: usize, nats_pid: u32, raw: R, case: C)
where
    R: Fn(usize) -> RF,
    RF: Future<Output = ()>,
    C: Fn(usize) -> CF,
    CF: Future<Output = ()>,
{
    if !selected(label) {
        return;
    }
    let (mut raws, mut cases) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        raws.push(measure(n, nats_pid, &raw).await);
        cases.push(measure(n, nats_pid, &case).await);
    }
    let p50 = |m: &[Measured]| median(m.iter().map(|m| m.p50.as_secs_f64() * 1e6).collect());
    let per_sec = |m: &[Measured]| median(m.iter().map(|m| m.per_sec).collect());
    let (raw_p50, raw_per_sec) = (p50(&raws), per_sec(&raws));
    let (case_p50, case_per_sec) = (p50(&cases), per_sec(&cases));
    println!(
        "{label:<44} p50 {case_p50:>6.1} µs ({:.2}x raw's {raw_p50:.1})   {case_per_sec:>7.0} req/s at {IN_FLIGHT} in flight ({:.2} of raw's {raw_per_sec:.0})",
        case_p50 / raw_p50,
        case_per_sec / raw_per_sec,
    );
    println!(
        "{:<44} CPU per request: {}; raw: {}",
        "",
        cpu_medians(&cases),
        cpu_medians(&raws)
    );
}

/// A service on a thread (named, so a profile tells its samples apart) and an actix system
/// of its own, as a separate process would run it: it does not share the bench's thread.
struct ServiceThread {
    stop: futures::channel::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// Tells [`ServiceThread::start`] the service is ready.
type Ready = std::sync::mpsc::Sender<()>;

/// Ends when the service is to stop.
type Stopped = futures::channel::oneshot::Receiver<()>;

impl ServiceThread {
    /// Runs `service` on a new thread and returns once it says it is ready.
    fn start<F, Fut>(name: &str, service: F) -> ServiceThread
    where
        F: FnOnce(Ready, Stopped) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let (ready, started) = std::sync::mpsc::channel();
        let (stop, stopped) = futures::channel::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || actix_rt::System::new().block_on(service(ready, stopped)))
            .expect("a thread");
        started.recv().expect("the service started");
        ServiceThread { stop, thread }
    }

    /// A glia worker for `config`'s NATS modules, as `glia worker` runs one.
    fn worker(config: &GliaConfig) -> ServiceThread {
        let config = config.clone();
        ServiceThread::start("glia-worker", |ready, stopped| async move {
            let worker = Worker::start(&config).await.expect("the worker starts");
            ready.send(()).expect("the bench waits");
            let _ = stopped.await;
            worker.shutdown(Duration::from_millis(10)).await;
        })
    }

    /// A raw responder on a NATS connection of its own, answering `subject` with each
    /// request's payload.
    fn echo(url: &str, subject: &'static str) -> ServiceThread {
        let url = url.to_owned();
        ServiceThread::start("raw-echo", move |ready, stopped| async move {
            let client = async_nats::connect(url).await.expect("connect");
            let mut echo = client.subscribe(subject).await.expect("subscribe");
            client.flush().await.expect("flush");
            ready.send(()).expect("the bench waits");
            let serve = async {
                while let Some(m) = echo.next().await {
                    if let Some(reply) = m.reply {
                        let _ = client.publish(reply, m.payload).await;
                    }
                }
            };
            futures::pin_mut!(serve);
            futures::future::select(serve, stopped).await;
        })
    }

    /// Stops the service and waits for its thread.
    fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().expect("the service's thread");
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
    let nats_pid = nats.pid().expect("nats-server runs");
    let system = actix_rt::System::new();
    system.block_on(async {
        // The floor: a raw request-reply to a responder that echoes, on this connection.
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
        let raw = |subject: &'static str| {
            let (client, payload) = (client.clone(), payload.clone());
            move |_| {
                let (client, payload) = (client.clone(), payload.clone());
                async move {
                    client.request(subject, payload.into()).await.expect("echo");
                }
            }
        };
        let other = ServiceThread::echo(&nats.url(), "bench.echo2");
        versus_raw(
            "raw, responder on its own thread+connection",
            n,
            nats_pid,
            raw("bench.echo"),
            raw("bench.echo2"),
        )
        .await;
        other.stop();

        for instances in ["one", "per_thread"] {
            let name = format!("bench-{instances}");
            let yaml = json!({"bus": {"type": "nats", "url": nats.url()}, "modules": [
                {"module": "scripted", "name": name, "placement": "nats",
                 "instances": instances,
                 "config": {"answers": {"user_may_invite": {"answer": "NOT_SPAM"}}}}
            ]})
            .to_string();
            let config = TestGlia::config(&yaml).unwrap();
            let mut workers = vec![ServiceThread::worker(&config)];
            let glia = Arc::new(Glia::start(config.clone()).await.unwrap());
            versus_raw(
                &format!("raw requests to 1 glia worker, {instances}"),
                n,
                nats_pid,
                raw("bench.echo"),
                to_worker(&client, &name),
            )
            .await;
            for count in [1, 2, 3] {
                while workers.len() < count {
                    workers.push(ServiceThread::worker(&config));
                }
                versus_raw(
                    &format!("glia, {count} worker(s), instances: {instances}"),
                    n,
                    nats_pid,
                    raw("bench.echo"),
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

        // A module with state: one instance, or its default (per thread, state shared).
        for (label, instances) in [("one", json!("one")), ("shared per_thread", json!(null))] {
            let mut entry = json!({"module": "account_expiry", "name": "bench-expiry",
                "placement": "nats",
                "config": {"expiry": {"@carol:hs": 4_102_444_800_000_i64}}});
            if !instances.is_null() {
                entry["instances"] = instances;
            }
            let yaml =
                json!({"bus": {"type": "nats", "url": nats.url()}, "modules": [entry]}).to_string();
            let config = TestGlia::config(&yaml).unwrap();
            let worker = ServiceThread::worker(&config);
            let glia = Arc::new(Glia::start(config).await.unwrap());
            let expired = CallbackRequest::IsUserExpired(IsUserExpired {
                user_id: "@carol:hs".into(),
            });
            versus_raw(
                &format!("glia, 1 worker, stateful account_expiry, {label}"),
                n,
                nats_pid,
                raw("bench.echo"),
                |_| {
                    let (glia, request) = (glia.clone(), expired.clone());
                    async move {
                        let c = glia.coordinator();
                        let reply = c.dispatch(request, c.new_meta()).await.expect("dispatch");
                        assert!(
                            matches!(&reply, DispatchReply::IsUserExpired(Outcome::Value(r)) if r.expired == Some(false)),
                            "{reply:?}"
                        );
                    }
                },
            )
            .await;
            worker.stop();
            glia.shutdown(Duration::from_millis(10)).await;
        }
    });
}

/// Raw requests carrying a glia invocation straight to `module`'s queue group: a worker's
/// part of the cost, with no coordinator.
fn to_worker(
    client: &async_nats::Client,
    module: &str,
) -> impl Fn(usize) -> BoxFuture<'static, ()> {
    let subject =
        glia_bus_schema::subjects::module_subject(module, glia_bus_schema::Callback::UserMayInvite);
    let far = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let invocation = serde_json::to_vec(&json!({
        "request_id": "bench-1", "deadline_ms": far, "callback": "user_may_invite",
        "args": {"inviter": "@u1:hs", "invitee": "@b:hs", "room_id": "!r:hs"},
    }))
    .unwrap();
    let client = client.clone();
    move |_| {
        let (client, subject, payload) = (client.clone(), subject.clone(), invocation.clone());
        Box::pin(async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Glia-Request-Id", "bench-1");
            headers.insert("Glia-Deadline", far.to_string().as_str());
            let request = async_nats::Request::new()
                .payload(payload.into())
                .headers(headers)
                .timeout(None);
            let reply = client.send_request(subject, request).await.expect("answer");
            assert!(
                reply
                    .payload
                    .starts_with(b"{\"request_id\":\"bench-1\",\"result\":{\"answer\""),
                "{reply:?}"
            );
        })
    }
}
