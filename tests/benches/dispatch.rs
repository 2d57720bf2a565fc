//! Dispatch benchmark: what glia's in-process path costs per callback, against what one
//! actor hop physically costs and what Synapse's own module loop costs.
//!
//! Measured in one run, all through `Coordinator::dispatch` (no HTTP), with scripted modules
//! that all allow (`NOT_SPAM`), each on its own arbiter thread as `Glia::start` places them:
//!
//! - `latency/*`: one request at a time (sequential), `check_event_for_spam` with a realistic
//!   `m.room.message` event and `user_may_create_room` with a small `room_config`, for 1 and
//!   5 modules. Compare with Synapse 1.163.2's in-process cost on this VM
//!   (`check_event_for_spam` 27.6 µs / 142.7 µs, `user_may_create_room` 45 / 216 µs for
//!   1 / 5 modules; ../shared/research/environment.md).
//! - `baseline/*`: a raw actix `Addr::send` round trip to a trivial actor on its own
//!   `Arbiter` (one module hop's physical floor), and the same to 5 actors on 5 arbiters at
//!   once (the floor of a 5-module fan-out). glia's overhead is the ratio to these.
//! - `throughput/*`: 64 dispatches in flight (`join_all`), reported per element.
//!
//! Dispatch is async and actix needs a `System`: everything runs on one `actix_rt::System`
//! via `iter_custom` and `SystemRunner::block_on`. Modules are built once, outside the timed
//! loops; each timed iteration clones a prebuilt request (dispatch takes it by value) and
//! takes a fresh request id and deadline, as every caller of the coordinator does.
//!
//! Run: `cargo bench -p glia-tests --bench dispatch`.

use actix::{Actor, Addr, Context, Handler, Message};
use actix_rt::{Arbiter, System, SystemRunner};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use futures::future::join_all;
use glia_bus_schema::requests::{CheckEventForSpam, UserMayCreateRoom};
use glia_bus_schema::{CallbackRequest, DispatchReply, Event};
use glia_runtime::Glia;
use glia_tests::TestGlia;
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A benchmark group measuring wall time.
type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Requests in flight in the throughput group.
const IN_FLIGHT: usize = 64;

/// Module counts compared in every group.
const MODULE_COUNTS: [usize; 2] = [1, 5];

/// A config of `n` scripted modules that allow both benchmarked callbacks.
fn allow_all_config(n: usize) -> String {
    let modules: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "module": "scripted",
                "name": format!("bench-m{i}"),
                "config": { "answers": {
                    "check_event_for_spam": { "answer": "NOT_SPAM" },
                    "user_may_create_room": { "answer": "NOT_SPAM" },
                }},
            })
        })
        .collect();
    json!({ "modules": modules }).to_string()
}

/// Starts glia with `n` allowing scripted modules (each on its own arbiter).
fn start_glia(system: &SystemRunner, n: usize) -> Glia {
    let config = TestGlia::config(&allow_all_config(n)).expect("bench config loads");
    system.block_on(Glia::start(config)).expect("glia starts")
}

/// A realistic `check_event_for_spam` request: an `m.room.message` with a ~100-char body.
fn spam_request() -> CallbackRequest {
    let event: Event = serde_json::from_value(json!({
        "event_id": "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg",
        "room_id": "!OGEhHVWSdvArJzumhm:matrix.org",
        "sender": "@alice:example.com",
        "type": "m.room.message",
        "origin_server_ts": 1_764_000_000_000_i64,
        "content": {
            "msgtype": "m.text",
            "body": "Hello everyone, the release notes for this week are up; please review them before Thursday's call.",
        },
    }))
    .expect("a valid event");
    CallbackRequest::CheckEventForSpam(CheckEventForSpam { event })
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

/// Whether a reply is an allow of one of the benchmarked callbacks.
fn is_allow(reply: &DispatchReply) -> bool {
    match reply {
        DispatchReply::CheckEventForSpam(d) | DispatchReply::UserMayCreateRoom(d) => d.is_allow(),
        _ => false,
    }
}

/// One dispatch through the coordinator, as an embedding caller makes it.
async fn dispatch(glia: &Glia, request: &CallbackRequest) -> DispatchReply {
    let coordinator = glia.coordinator();
    coordinator
        .dispatch(request.clone(), coordinator.new_meta())
        .await
        .expect("dispatch accepted")
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
fn latency(group: &mut Group<'_>, system: &SystemRunner, glias: &[(usize, Glia)]) {
    let cases = [
        ("check_event_for_spam", spam_request()),
        ("user_may_create_room", create_room_request()),
    ];
    for (callback, request) in &cases {
        for (n, glia) in glias {
            assert_allows(system, glia, request);
            group.bench_function(format!("{callback}/{n}_modules"), |b| {
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
fn throughput(
    group: &mut Group<'_>,
    system: &SystemRunner,
    glias: &[(usize, Glia)],
    echo: &Addr<Echo>,
) {
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    let request = spam_request();
    for (n, glia) in glias {
        group.bench_function(format!("check_event_for_spam/{n}_modules"), |b| {
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

/// Builds the system, the glias and the echo actors once, then runs every group.
fn dispatch_benches(c: &mut Criterion) {
    let system = System::new();
    let glias: Vec<(usize, Glia)> = MODULE_COUNTS
        .iter()
        .map(|&n| (n, start_glia(&system, n)))
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
