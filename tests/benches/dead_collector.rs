//! A load run: `glia serve` throughput with span export off, to a live OTLP receiver, and to
//! a collector that refuses connections or never answers (gRPC and HTTP), interleaved in
//! rounds in one run; the spans counted as dropped (`glia_spans_dropped_total`), and how
//! long SIGTERM takes with `shutdown_grace: 2s`.
//!
//! Run: `cargo build --release -p glia-runtime --bin glia && cargo bench -p glia-tests
//! --bench dead_collector`; `GLIA_BIN=/path/to/glia` measures another build. Under `cargo
//! test` each case runs once, briefly, as a smoke test.

use glia_tests::load::{full_run, keep_in_flight, median, post};
use glia_tests::otlp::OtlpReceiver;
use glia_tests::process::GliaProcess;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Requests in flight.
const IN_FLIGHT: usize = 32;

/// Sums `glia_spans_dropped_total` over its reasons (`None` if the binary has no such
/// counter).
async fn spans_dropped(client: &awc::Client, listen: &str) -> Option<u64> {
    let mut resp = client
        .get(format!("http://{listen}/metrics"))
        .send()
        .await
        .ok()?;
    let text = String::from_utf8(resp.body().limit(1 << 22).await.ok()?.to_vec()).ok()?;
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("glia_spans_dropped_total{"))
        .collect();
    (!lines.is_empty()).then(|| {
        lines
            .iter()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    })
}

fn main() {
    let (rounds, run) = if full_run() {
        (5, Duration::from_secs(4))
    } else {
        (1, Duration::from_millis(300))
    };
    let receiver = OtlpReceiver::start().expect("the OTLP receiver starts");
    // Takes connections into its backlog and never reads them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", silent.local_addr().unwrap());
    let refusing = format!("http://127.0.0.1:{}", glia_tests::nats::free_port());
    let traces = |protocol: &str, endpoint: &str| json!({"exporter": "otlp", "protocol": protocol, "endpoint": endpoint});
    let cases: Vec<(&str, Value)> = vec![
        ("off", json!({"exporter": "none"})),
        (
            "live receiver, gRPC",
            traces("grpc", &receiver.grpc_endpoint()),
        ),
        ("refusing, gRPC", traces("grpc", &refusing)),
        ("never answering, gRPC", traces("grpc", &silent)),
        ("refusing, HTTP", traces("http/protobuf", &refusing)),
        ("never answering, HTTP", traces("http/protobuf", &silent)),
    ];
    let mut throughput: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut sigterm: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut dropped: BTreeMap<usize, Vec<Option<u64>>> = BTreeMap::new();
    let mut answered: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    actix_rt::System::new().block_on(async {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        let body = json!({"user_id": "@evilguy:example.com", "room_config": {}}).to_string();
        for _ in 0..rounds {
            for (i, (_, traces)) in cases.iter().enumerate() {
                let yaml = json!({"shutdown_grace": "2s", "modules": [{"module": "demo"}],
                                  "telemetry": {"traces": traces}})
                .to_string();
                let file = std::env::temp_dir().join(format!(
                    "glia-dead-collector-{}-{i}.yaml",
                    std::process::id()
                ));
                std::fs::write(&file, &yaml).unwrap();
                let (serve, listen) = GliaProcess::serve(&file, &[], &[], false).await;
                let url = format!("http://{listen}/_glia/v1/callbacks/user_may_create_room");
                let answered_until = |until: Instant| {
                    keep_in_flight(IN_FLIGHT, until, |_| {
                        let (client, url, body) = (client.clone(), url.clone(), body.clone());
                        async move {
                            post(&client, &url, body)
                                .await
                                .is_some_and(|(s, _)| s == 200)
                        }
                    })
                };
                // A moment to warm up, then the measured run.
                let warm = answered_until(Instant::now() + run / 4).await;
                let start = Instant::now();
                let samples = answered_until(start + run).await;
                let ok = samples.iter().filter(|s| s.ok).count();
                throughput
                    .entry(i)
                    .or_default()
                    .push(ok as f64 / start.elapsed().as_secs_f64());
                answered
                    .entry(i)
                    .or_default()
                    .push(ok + warm.iter().filter(|s| s.ok).count());
                dropped
                    .entry(i)
                    .or_default()
                    .push(spans_dropped(&client, &listen).await);
                let (_, _, took) = serve.terminate_with_log();
                sigterm.entry(i).or_default().push(took.as_secs_f64());
                let _ = std::fs::remove_file(&file);
            }
        }
    });
    println!("binary: {}", glia_tests::harness::glia_binary().display());
    println!(
        "glia serve, demo module over HTTP, {IN_FLIGHT} in flight, {rounds} interleaved rounds of {} ms per case; shutdown_grace 2s, exporter timeout 10 s (default)",
        run.as_millis()
    );
    let base = median(&throughput[&0]);
    for (i, (name, _)) in cases.iter().enumerate() {
        let t = median(&throughput[&i]);
        let drops: Vec<String> = dropped[&i]
            .iter()
            .zip(&answered[&i])
            .map(|(d, a)| match d {
                Some(d) => format!("{d}/{}", a * 2),
                None => "n/a".into(),
            })
            .collect();
        println!(
            "  {name:<24} {t:>7.0} req/s (median) = {:.2} of off;  SIGTERM median {:.2} s (all: {:.2?});  spans dropped of made (2 per request) per round: {}",
            t / base,
            median(&sigterm[&i]),
            sigterm[&i],
            drops.join(", ")
        );
    }
}
