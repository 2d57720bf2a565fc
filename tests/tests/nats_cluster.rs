//! NATS as users run it: a cluster of three nats-servers on loopback, routed to one another;
//! `glia serve` and `glia worker` processes given all three URLs. Under load, the node a
//! worker is connected to dies and comes back, then the coordinator's node does; at start,
//! the first URL is down. Every request is answered by its deadline, by the module or, for
//! what was in flight on a dead node, by the failure policy; the recovery times are printed.

use futures::StreamExt;
use glia_tests::nats::NatsCluster;
use glia_tests::process::GliaProcess;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;

/// The whole-request deadline.
const DEADLINE: Duration = Duration::from_secs(10);
/// Requests in flight at once.
const IN_FLIGHT: usize = 8;
/// The module's timeout: what an invocation lost with a node waits before its policy.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Answers by the module in a row, after a failure, that count as recovered.
const SETTLED: usize = 200;

/// Who answered one request.
#[derive(Debug, Clone, PartialEq)]
enum By {
    /// The module (demo denies the evil user).
    Module,
    /// The failure policy (allow), for an invocation lost with a node.
    Policy,
    /// Anything else: a failure of glia.
    Wrong(String),
}

/// One request of the load.
#[derive(Debug, Clone)]
struct Record {
    sent: Instant,
    took: Duration,
    by: By,
}

async fn ask(client: &awc::Client, url: &str) -> Record {
    let sent = Instant::now();
    let body = json!({"user_id": "@evilguy:example.com", "room_config": {}}).to_string();
    let by = match client.post(url).send_body(body).await {
        Err(e) => By::Wrong(format!("HTTP error: {e}")),
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let body: Value = resp
                .body()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            if status == 200 && body["decision"] == "deny" && body["module"] == "demo" {
                By::Module
            } else if status == 200 && body == json!({"decision": "allow"}) {
                By::Policy
            } else {
                By::Wrong(format!("{status} {body}"))
            }
        }
    };
    Record {
        sent,
        took: sent.elapsed(),
        by,
    }
}

/// Keeps [`IN_FLIGHT`] requests going until `stop`, recording each.
fn load(
    url: String,
    records: Arc<Mutex<Vec<Record>>>,
    stop: Arc<AtomicBool>,
) -> actix_rt::task::JoinHandle<()> {
    actix_rt::spawn(async move {
        let client = awc::Client::builder().timeout(DEADLINE * 2).finish();
        futures::stream::iter(0..)
            .take_while(|_| futures::future::ready(!stop.load(Ordering::Relaxed)))
            .map(|_| ask(&client, &url))
            .buffer_unordered(IN_FLIGHT)
            .for_each(|record| {
                records.lock().unwrap().push(record);
                futures::future::ready(())
            })
            .await;
    })
}

/// Waits until, of the requests sent after `since`, the last [`SETTLED`] were all answered
/// by the module (60 s at most: past that glia did not recover, which fails the test), and
/// until what was in flight at `since` has been answered, if only by its timeout: the next
/// event's losses are then its own.
async fn settled(records: &Mutex<Vec<Record>>, since: Instant) {
    let until = since + Duration::from_secs(60);
    let quiet = since + TIMEOUT + Duration::from_millis(500);
    loop {
        {
            let records = records.lock().unwrap();
            let mut after: Vec<&Record> = records.iter().filter(|r| r.sent >= since).collect();
            after.sort_by_key(|r| r.sent);
            if after.len() >= SETTLED
                && after[after.len() - SETTLED..]
                    .iter()
                    .all(|r| r.by == By::Module)
                && Instant::now() >= quiet
            {
                return;
            }
        }
        assert!(Instant::now() < until, "glia did not recover within 60 s");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prints what happened after an event at `at` (until the next one, at `until`): the
/// requests the policy answered in that time (lost in flight), and the time until requests
/// sent after the event were all answered by the module again. Returns how many the policy
/// answered.
fn report(what: &str, records: &[Record], at: Instant, until: Instant) -> usize {
    let answered_in = |r: &&Record| r.sent + r.took >= at && r.sent + r.took < until;
    let lost: Vec<&Record> = records
        .iter()
        .filter(answered_in)
        .filter(|r| r.by == By::Policy)
        .collect();
    // Sent after the event and answered before the next (what the next one lost is its own).
    let mut sent: Vec<&Record> = records
        .iter()
        .filter(|r| r.sent >= at && r.sent + r.took < until)
        .collect();
    sent.sort_by_key(|r| r.sent);
    let recovered = match sent.iter().rposition(|r| r.by != By::Module) {
        // The first request sent after the last one the module did not answer.
        Some(i) => sent
            .get(i + 1)
            .map_or(until.duration_since(at), |r| r.sent.duration_since(at)),
        None => Duration::ZERO,
    };
    // When the last invocation lost in flight was resolved by its policy.
    let resolved = lost
        .iter()
        .map(|r| (r.sent + r.took).duration_since(at))
        .max()
        .unwrap_or_default();
    // The slowest answer by the module: how long a request waited while the clients failed
    // over (the coordinator's NATS client holds what it sends until it reconnects).
    let slowest = records
        .iter()
        .filter(answered_in)
        .filter(|r| r.by == By::Module)
        .map(|r| r.took)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{what}: {} requests sent; {} in flight then answered by the failure policy (the last {} ms after it); requests sent after it answered by the module again after {:.1} ms; slowest answer by the module {} ms",
        sent.len(),
        lost.len(),
        resolved.as_millis(),
        recovered.as_secs_f64() * 1e3,
        slowest.as_millis()
    );
    lost.len()
}

#[actix_rt::test]
async fn a_cluster_node_dies_under_load_and_every_request_is_still_answered_by_its_deadline() {
    let mut cluster = NatsCluster::start(3);
    let yaml = json!({
        "bus": {"type": "nats", "url": cluster.urls()},
        "deadline": "10s",
        "shutdown_grace": "1s",
        "modules": [{"module": "demo", "placement": "nats", "timeout": "2s",
                     "failure_policy": "allow", "callbacks": ["user_may_create_room"]}]
    })
    .to_string();
    let config = support::TempFile::new("cluster.yaml", &yaml);

    // The first URL is down when everything starts.
    cluster.members[0].stop();
    let mut workers: Vec<GliaProcess> = (0..3)
        .map(|_| GliaProcess::worker(config.path(), &[], false))
        .collect();
    let (coordinator, listen) = GliaProcess::serve(config.path(), &[], &[], false).await;
    let url = format!("http://{listen}/_glia/v1/callbacks/user_may_create_room");
    let client = awc::Client::default();
    while ask(&client, &url).await.by != By::Module {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let records = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(url.clone(), records.clone(), stop.clone());
    let started = Instant::now();
    settled(&records, started).await;
    let mut events = vec![("the first URL down at start", started)];
    let back = |cluster: &mut NatsCluster, node: usize| {
        cluster.members[node].restart();
        cluster.wait_routed();
    };
    let first_back = Instant::now();
    back(&mut cluster, 0);
    events.push(("that node back", first_back));
    settled(&records, first_back).await;

    // A node with a worker, without the coordinator, and with another worker elsewhere, so
    // that losing it is a worker's loss alone and the others carry on (workers pick their
    // server at random: one may have to try again).
    let name = |p: &GliaProcess| format!("(pid {})", p.pid());
    let workers_node = loop {
        let coordinators = cluster.holding(&name(&coordinator));
        let nodes: Vec<Option<usize>> = workers.iter().map(|w| cluster.holding(&name(w))).collect();
        let found = nodes.iter().flatten().find(|&&node| {
            Some(node) != coordinators && nodes.iter().any(|other| *other != Some(node))
        });
        if let Some(&node) = found {
            break node;
        }
        let mut moved = workers.remove(0);
        moved.kill();
        workers.push(GliaProcess::worker(config.path(), &[], false));
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    };
    let steady = Instant::now();
    events.push(("steady", steady));
    settled(&records, steady).await;

    // A worker's node dies, then comes back; then the coordinator's.
    let coordinators_node = cluster
        .holding(&name(&coordinator))
        .expect("the coordinator is connected");
    for (node, whose) in [
        (workers_node, "a worker's node"),
        (coordinators_node, "the coordinator's node"),
    ] {
        let killed = Instant::now();
        cluster.members[node].stop();
        events.push((whose, killed));
        settled(&records, killed).await;
        let restarted = Instant::now();
        back(&mut cluster, node);
        events.push(("that node back", restarted));
        settled(&records, restarted).await;
    }

    stop.store(true, Ordering::Relaxed);
    running.await.unwrap();
    let records = records.lock().unwrap().clone();
    events.push(("end", Instant::now()));
    let mut lost = Vec::new();
    for pair in events.windows(2) {
        let ((what, at), (_, until)) = (pair[0], pair[1]);
        lost.push((what, report(what, &records, at, until)));
    }
    let wrong: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r.by, By::Wrong(_)))
        .collect();
    assert!(wrong.is_empty(), "{} wrong answers: {wrong:?}", wrong.len());
    let late: Vec<&Record> = records.iter().filter(|r| r.took >= DEADLINE).collect();
    assert!(late.is_empty(), "answered after the deadline: {late:?}");
    // Only invocations in flight on a node when it failed (or its routes changed) go to the
    // policy: a few per failure, never a share of the load.
    for (what, by_policy) in lost {
        assert!(
            by_policy <= 2 * IN_FLIGHT,
            "{what}: {by_policy} requests answered by the failure policy"
        );
    }
    let (_, log, _) = coordinator.terminate_with_log();
    assert!(!log.contains("panicked"), "{log}");
    for worker in workers {
        let (_, log, _) = worker.terminate_with_log();
        assert!(!log.contains("panicked"), "{log}");
    }
}
