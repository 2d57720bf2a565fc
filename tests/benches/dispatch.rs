//! Dispatch benchmark: what glia's in-process path costs per callback, against what one
//! actor hop physically costs and what Synapse's own module loop costs.
//!
//! Measured in one run, all through `Coordinator::dispatch` (no HTTP), with scripted modules
//! that all allow (`NOT_SPAM`), each on its own arbiter thread as `Glia::start` places them:
//!
//! - `latency/*`: one request at a time (sequential), `check_event_for_spam` with a realistic
//!   `m.room.message` event, `user_may_create_room` with a small `room_config`, and
//!   `add_field_to_unsigned` (called for every event Synapse serves a client, so its cost is
//!   multiplied by the events of every `/sync` and `/messages`) with the same event, for 1 and
//!   5 modules. Compare with Synapse 1.163.2's in-process cost on this VM
//!   (`check_event_for_spam` 27.6 µs / 142.7 µs, `user_may_create_room` 45 / 216 µs for
//!   1 / 5 modules; ../shared/research/environment.md).
//! - `baseline/*`: a raw actix `Addr::send` round trip to a trivial actor on its own
//!   `Arbiter` (one module hop's physical floor), and the same to 5 actors on 5 arbiters at
//!   once (the floor of a 5-module fan-out). glia's overhead is the ratio to these.
//! - `throughput/*`: 64 dispatches in flight (`join_all`), reported per element.
//! - `stateful/*`: a module with state, `account_expiry` (`is_user_expired` for a listed user
//!   not expired yet), one request at a time and 64 in flight: with `instances: one` (its
//!   state in its one instance's thread) and by its default (`per_thread`, its state shared
//!   by the instances through `ModuleApi::shared`). Compare with `throughput/addr_send`.
//! - `telemetry/*`: the throughput case for `user_may_invite` under four telemetry setups,
//!   for 1 and 5 modules: `off` (no metrics, no spans), `metrics` (the default: metrics, no
//!   spans), `export` (metrics, and every dispatch a new sampled trace exported in batches
//!   over OTLP/gRPC to a real receiver, `glia_tests::otlp::OtlpReceiver`) and `export+log`
//!   (that plus a decision log to a file). Each case gets its own glia (and receiver, and
//!   log file), started just before it and shut down (spans flushed) right after it, so no
//!   case's background export runs during another's. After each case one line on stderr
//!   says how many spans and decision records were made and how many arrived (the batch
//!   processor drops spans rather than block when export falls behind), the peak RSS and
//!   the CPU each thread used. The receiver runs in this process, on the same cores: its
//!   decoding and storing is part of what `export` costs here, as a collector elsewhere's
//!   would not be, and it keeps every span until its case ends (~2 GB RSS at the most).
//!
//! Dispatch is async and actix needs a `System`: everything runs on one `actix_rt::System`
//! via `iter_custom` and `SystemRunner::block_on`. Modules are built once, outside the timed
//! loops; each timed iteration clones a prebuilt request (dispatch takes it by value) and
//! takes a fresh request id and deadline, as every caller of the coordinator does.
//!
//! The latency and throughput groups run each case twice: with modules as configured by
//! default (`N_modules`: one instance each, on its own thread) and with `instances:
//! per_thread` (`N_modules_per_thread`: an instance on the dispatching thread too, so the
//! handlers run there with no thread hop).
//!
//! Run: `cargo bench -p glia-tests --bench dispatch` (`-- telemetry` for that group alone).

#[path = "support/fixtures.rs"]
mod fixtures;

use fixtures::dispatch;

use actix::{Actor, Addr, Context, Handler, Message};
use actix_rt::{Arbiter, System, SystemRunner};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use futures::future::join_all;
use glia_bus_schema::requests::{
    AddFieldToUnsigned, CheckEventForSpam, IsUserExpired, UserMayCreateRoom, UserMayInvite,
};
use glia_bus_schema::{CallbackRequest, DispatchReply, Event, Outcome};
use glia_runtime::Glia;
use glia_tests::cpu::ThreadCpu;
use glia_tests::otlp::OtlpReceiver;
use glia_tests::TestGlia;
use serde_json::{json, Value};
use std::hint::black_box;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A benchmark group measuring wall time.
type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Requests in flight in the throughput group.
const IN_FLIGHT: usize = 64;

/// Module counts compared in every group.
const MODULE_COUNTS: [usize; 2] = [1, 5];

/// A config of `n` scripted modules that allow the benchmarked callbacks, with `instances`.
fn allow_all_config(n: usize, instances: &str) -> String {
    let answers = json!({
        "check_event_for_spam": { "answer": "NOT_SPAM" },
        "user_may_create_room": { "answer": "NOT_SPAM" },
        "add_field_to_unsigned": { "answer": {} },
    });
    fixtures::scripted_config(n, instances, &answers)
}

/// Starts glia with `n` allowing scripted modules (each on its own arbiter), with
/// `instances`.
fn start_glia(system: &SystemRunner, n: usize, instances: &str) -> Glia {
    let config = TestGlia::config(&allow_all_config(n, instances)).expect("bench config loads");
    system.block_on(Glia::start(config)).expect("glia starts")
}

/// The glias every group compares: 1 and 5 modules, each with one instance and per thread,
/// with their labels.
type Glias = [(String, Glia)];

/// A realistic `check_event_for_spam` request: an `m.room.message` with a ~100-char body.
fn spam_request() -> CallbackRequest {
    CallbackRequest::CheckEventForSpam(CheckEventForSpam { event: message() })
}

/// `add_field_to_unsigned` for the same event.
fn unsigned_request() -> CallbackRequest {
    CallbackRequest::AddFieldToUnsigned(AddFieldToUnsigned { event: message() })
}

/// An `m.room.message` with a ~100-char body.
fn message() -> Event {
    serde_json::from_value(fixtures::message_json()).expect("a valid event")
}

/// A `user_may_create_room` request with a small `room_config`.
fn create_room_request() -> CallbackRequest {
    let room_config = json!({
        "preset": "private_chat",
        "name": "Release planning",
        "topic": "Weekly release coordination",
        "visibility": "private",
        "invite": ["@bob:example.com"],
    });
    let serde_json::Value::Object(room_config) = room_config else {
        unreachable!("a JSON object")
    };
    CallbackRequest::UserMayCreateRoom(UserMayCreateRoom {
        user_id: "@alice:example.com".into(),
        room_config,
    })
}

/// Whether a reply is an allow of one of the benchmarked callbacks (no added fields, for
/// `add_field_to_unsigned`).
fn is_allow(reply: &DispatchReply) -> bool {
    match reply {
        DispatchReply::CheckEventForSpam(d)
        | DispatchReply::UserMayCreateRoom(d)
        | DispatchReply::UserMayInvite(d) => d.is_allow(),
        DispatchReply::AddFieldToUnsigned(Outcome::Value(u)) => u.fields.is_empty(),
        _ => false,
    }
}

/// Panics unless `request` is allowed by `glia` (checked once, outside the timed loops).
fn assert_allows(system: &SystemRunner, glia: &Glia, request: &CallbackRequest) {
    let reply = system.block_on(dispatch(glia, request));
    assert!(is_allow(&reply), "expected an allow, got {reply:?}");
}

/// A message for the baseline actor.
struct Ping(u64);

impl Message for Ping {
    type Result = u64;
}

/// The baseline actor: answers at once.
struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

impl Handler<Ping> for Echo {
    type Result = u64;

    fn handle(&mut self, msg: Ping, _: &mut Context<Self>) -> u64 {
        msg.0.wrapping_add(1)
    }
}

/// `n` echo actors, each on its own arbiter (thread), as glia places modules.
fn start_echoes(system: &SystemRunner, n: usize) -> (Vec<Arbiter>, Vec<Addr<Echo>>) {
    system.block_on(async {
        let arbiters: Vec<Arbiter> = (0..n).map(|_| Arbiter::new()).collect();
        let addrs = arbiters
            .iter()
            .map(|a| Echo::start_in_arbiter(&a.handle(), |_| Echo))
            .collect();
        (arbiters, addrs)
    })
}

/// Times `iters` sequential runs of `one` on the system.
fn time_sequential<F, Fut>(system: &SystemRunner, iters: u64, mut one: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
{
    system.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(one().await);
        }
        start.elapsed()
    })
}

/// Sequential latency of both callbacks through the coordinator, 1 and 5 modules.
fn latency(group: &mut Group<'_>, system: &SystemRunner, glias: &Glias) {
    let cases = [
        ("check_event_for_spam", spam_request()),
        ("user_may_create_room", create_room_request()),
        ("add_field_to_unsigned", unsigned_request()),
    ];
    for (callback, request) in &cases {
        for (label, glia) in glias {
            assert_allows(system, glia, request);
            group.bench_function(format!("{callback}/{label}"), |b| {
                b.iter_custom(|iters| time_sequential(system, iters, || dispatch(glia, request)));
            });
        }
    }
}

/// Raw `Addr::send` round trips: to one actor on its own arbiter, and to 5 at once.
fn baseline(group: &mut Group<'_>, system: &SystemRunner, addrs: &[Addr<Echo>]) {
    let one = &addrs[0];
    group.bench_function("addr_send/1_arbiter", |b| {
        b.iter_custom(|iters| {
            time_sequential(system, iters, || async {
                one.send(Ping(black_box(7))).await.expect("echo answers")
            })
        });
    });
    group.bench_function(format!("addr_send/{}_arbiters_fan_out", addrs.len()), |b| {
        b.iter_custom(|iters| {
            time_sequential(system, iters, || {
                join_all(addrs.iter().map(|a| a.send(Ping(black_box(7)))))
            })
        });
    });
}

/// 64 dispatches of `check_event_for_spam` in flight, and 64 raw sends for reference.
fn throughput(group: &mut Group<'_>, system: &SystemRunner, glias: &Glias, echo: &Addr<Echo>) {
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    let request = spam_request();
    for (label, glia) in glias {
        group.bench_function(format!("check_event_for_spam/{label}"), |b| {
            b.iter_custom(|iters| {
                time_sequential(system, iters, || {
                    join_all((0..IN_FLIGHT).map(|_| dispatch(glia, &request)))
                })
            });
        });
    }
    group.bench_function("addr_send/1_arbiter", |b| {
        b.iter_custom(|iters| {
            time_sequential(system, iters, || {
                join_all((0..IN_FLIGHT).map(|i| echo.send(Ping(i as u64))))
            })
        });
    });
}

/// `account_expiry` with `instances: one` and by its default (per thread, shared state),
/// one request at a time and 64 in flight.
fn stateful(group: &mut Group<'_>, system: &SystemRunner) {
    let request = CallbackRequest::IsUserExpired(IsUserExpired {
        user_id: "@carol:example.com".into(),
    });
    for (label, instances) in [("one", json!("one")), ("shared_per_thread", Value::Null)] {
        let mut entry = json!({"module": "account_expiry",
            "config": {"expiry": {"@carol:example.com": 4_102_444_800_000_i64}}});
        if !instances.is_null() {
            entry["instances"] = instances;
        }
        let config = json!({"deadline": "10s", "modules": [entry]}).to_string();
        let config = TestGlia::config(&config).expect("bench config loads");
        let glia = system.block_on(Glia::start(config)).expect("glia starts");
        let reply = system.block_on(dispatch(&glia, &request));
        assert!(
            matches!(&reply, DispatchReply::IsUserExpired(Outcome::Value(r)) if r.expired == Some(false)),
            "expected not expired, got {reply:?}"
        );
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("latency/is_user_expired/{label}"), |b| {
            b.iter_custom(|iters| time_sequential(system, iters, || dispatch(&glia, &request)));
        });
        group.throughput(Throughput::Elements(IN_FLIGHT as u64));
        group.bench_function(format!("throughput/is_user_expired/{label}"), |b| {
            b.iter_custom(|iters| {
                time_sequential(system, iters, || {
                    join_all((0..IN_FLIGHT).map(|_| dispatch(&glia, &request)))
                })
            });
        });
        system.block_on(glia.shutdown(Duration::from_secs(1)));
    }
}

/// The telemetry setups compared in the `telemetry` group.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// No metrics, no spans.
    Off,
    /// The default: metrics, no spans.
    Metrics,
    /// Metrics, and spans exported over OTLP/gRPC in batches.
    Export,
    /// As `Export`, plus a decision log to a file.
    ExportLog,
}

impl Setup {
    const ALL: [Setup; 4] = [Setup::Off, Setup::Metrics, Setup::Export, Setup::ExportLog];

    fn name(self) -> &'static str {
        match self {
            Setup::Off => "off",
            Setup::Metrics => "metrics",
            Setup::Export => "export",
            Setup::ExportLog => "export+log",
        }
    }

    fn exports(self) -> bool {
        matches!(self, Setup::Export | Setup::ExportLog)
    }
}

/// A glia under one telemetry setup, with the receiver and the log file it writes to.
struct Instrumented {
    glia: Glia,
    receiver: Option<OtlpReceiver>,
    log: Option<PathBuf>,
}

/// Starts glia with `n` scripted modules allowing `user_may_invite`, under `setup`.
fn start_instrumented(system: &SystemRunner, setup: Setup, n: usize) -> Instrumented {
    let receiver = setup
        .exports()
        .then(|| OtlpReceiver::start().expect("the OTLP receiver starts"));
    let log = (setup == Setup::ExportLog).then(|| {
        let path = std::env::temp_dir().join(format!(
            "glia-bench-decisions-{}-{n}.jsonl",
            std::process::id()
        ));
        // The log is appended to: start from nothing.
        let _ = std::fs::remove_file(&path);
        path
    });
    // `metrics` is the default config: no `telemetry:` section at all.
    let mut telemetry = serde_json::Map::new();
    if setup == Setup::Off {
        telemetry.insert("metrics".into(), json!({ "enabled": false }));
    }
    if let Some(receiver) = &receiver {
        let traces = json!({
            "exporter": "otlp",
            "protocol": "grpc",
            "endpoint": receiver.grpc_endpoint(),
        });
        telemetry.insert("traces".into(), traces);
    }
    if let Some(path) = &log {
        let decision_log = json!({ "output": "file", "path": path });
        telemetry.insert("decision_log".into(), decision_log);
    }
    let modules: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "module": "scripted",
                "name": format!("bench-m{i}"),
                "config": { "answers": { "user_may_invite": { "answer": "NOT_SPAM" } } },
            })
        })
        .collect();
    let mut yaml = json!({ "modules": modules });
    if !telemetry.is_empty() {
        yaml["telemetry"] = Value::Object(telemetry);
    }
    let config = TestGlia::config(&yaml.to_string()).expect("bench config loads");
    let glia = system.block_on(Glia::start(config)).expect("glia starts");
    // What each setup is meant to record (an `OTEL_*` variable could otherwise change it).
    let telemetry = glia.telemetry();
    assert_eq!(telemetry.metrics().is_some(), setup != Setup::Off);
    assert_eq!(telemetry.tracer().is_some(), setup.exports());
    assert_eq!(telemetry.decisions().is_some(), setup == Setup::ExportLog);
    Instrumented {
        glia,
        receiver,
        log,
    }
}

/// A `user_may_invite` request.
fn invite_request() -> CallbackRequest {
    CallbackRequest::UserMayInvite(UserMayInvite {
        inviter: "@alice:example.com".into(),
        invitee: "@bob:example.org".into(),
        room_id: "!OGEhHVWSdvArJzumhm:matrix.org".into(),
    })
}

/// Lines in the file at `path`, read in chunks (it may be large).
fn count_lines(path: &PathBuf) -> u64 {
    let mut file = std::fs::File::open(path).expect("the decision log exists");
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0;
    loop {
        let read = file.read(&mut buf).expect("the decision log reads");
        if read == 0 {
            return lines;
        }
        lines += buf[..read].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// A counter's value in the Prometheus text `metrics` (0 when absent).
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// This process's peak resident set (`VmHWM`), as Linux reports it.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "?".into())
}

/// CPU seconds used since `before`, by thread name, the busiest first; names under 0.05 s
/// left out.
fn cpu_since(before: &ThreadCpu) -> String {
    let parts: Vec<String> = ThreadCpu::of_self()
        .since(before)
        .iter()
        .filter(|(_, used)| used.as_secs_f64() >= 0.05)
        .map(|(name, used)| format!("{name}={:.1}s", used.as_secs_f64()))
        .collect();
    if parts.is_empty() {
        return "under 0.05 s each".into();
    }
    parts.join(", ")
}

/// Shuts `glia` down (flushing spans and the decision log) and says on stderr what arrived
/// of what `dispatched` dispatches to `n` modules made.
fn finish_instrumented(
    system: &SystemRunner,
    id: &str,
    n: usize,
    dispatched: u64,
    run: Instrumented,
    cpu: &str,
) {
    let Instrumented {
        glia,
        receiver,
        log,
    } = run;
    let dropped_decisions = glia
        .telemetry()
        .metrics()
        .map(|m| counter(&m.render(), "glia_decision_log_dropped_total"));
    system.block_on(glia.shutdown(Duration::from_secs(1)));
    drop(glia);
    let mut report = format!("telemetry/{id}: {dispatched} dispatches");
    if let Some(receiver) = receiver {
        let made = dispatched * (n as u64 + 1);
        let received = receiver.spans().len() as u64;
        let rejected = receiver.rejected();
        assert!(
            rejected.is_empty(),
            "the receiver refused exports: {rejected:?}"
        );
        assert!(received > 0, "no spans reached the receiver");
        report.push_str(&format!(
            "; spans: {made} made, {received} received ({:.1}%)",
            received as f64 * 100.0 / made as f64
        ));
    }
    if let Some(path) = log {
        let lines = count_lines(&path);
        let _ = std::fs::remove_file(&path);
        report.push_str(&format!(
            "; decision records: {lines} written, {} dropped",
            dropped_decisions.unwrap_or(0)
        ));
    }
    eprintln!("{report}; peak RSS {}; CPU by thread: {cpu}", peak_rss());
}

/// 64 `user_may_invite` dispatches in flight under each telemetry setup, 1 and 5 modules.
/// Each case has a glia of its own, started before it and shut down after it.
fn telemetry(group: &mut Group<'_>, system: &SystemRunner) {
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    let request = invite_request();
    for n in MODULE_COUNTS {
        for setup in Setup::ALL {
            let before = ThreadCpu::of_self();
            let run = start_instrumented(system, setup, n);
            let glia = &run.glia;
            assert_allows(system, glia, &request);
            let mut dispatched = 1;
            let id = format!("user_may_invite/{n}_modules/{}", setup.name());
            group.bench_function(&id, |b| {
                b.iter_custom(|iters| {
                    dispatched += iters * IN_FLIGHT as u64;
                    time_sequential(system, iters, || {
                        join_all((0..IN_FLIGHT).map(|_| dispatch(glia, &request)))
                    })
                });
            });
            let cpu = cpu_since(&before);
            finish_instrumented(system, &id, n, dispatched, run, &cpu);
        }
    }
}

/// Builds the system, the glias and the echo actors once, then runs every group.
fn dispatch_benches(c: &mut Criterion) {
    let system = System::new();
    let glias: Vec<(String, Glia)> = ["one", "per_thread"]
        .iter()
        .flat_map(|&instances| MODULE_COUNTS.iter().map(move |&n| (n, instances)))
        .map(|(n, instances)| {
            let label = match instances {
                "one" => format!("{n}_modules"),
                other => format!("{n}_modules_{other}"),
            };
            (label, start_glia(&system, n, instances))
        })
        .collect();
    let (arbiters, echoes) = start_echoes(&system, MODULE_COUNTS[MODULE_COUNTS.len() - 1]);

    let mut group = c.benchmark_group("latency");
    latency(&mut group, &system, &glias);
    group.finish();
    let mut group = c.benchmark_group("baseline");
    baseline(&mut group, &system, &echoes);
    group.finish();
    let mut group = c.benchmark_group("throughput");
    throughput(&mut group, &system, &glias, &echoes[0]);
    group.finish();
    let mut group = c.benchmark_group("stateful");
    stateful(&mut group, &system);
    group.finish();
    let mut group = c.benchmark_group("telemetry");
    telemetry(&mut group, &system);
    group.finish();

    // The glias' modules stop when they are dropped; the echo arbiters are stopped here.
    drop(glias);
    for arbiter in arbiters {
        arbiter.stop();
    }
}

/// Modest measurement settings for a shared 2-core machine.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = benches;
    config = config();
    targets = dispatch_benches
}
criterion_main!(benches);
