//! A load run: `glia serve` throughput with span export off, to a live OTLP receiver, and to
//! a collector that refuses connections or never answers (gRPC and HTTP), interleaved in
//! rounds in one run; the spans counted as dropped (`glia_spans_dropped_total`), and how
//! long SIGTERM takes with `shutdown_grace: 2s`.
//!
//! Run: `cargo build --release -p glia-runtime --bin glia && cargo bench -p glia-tests
//! --bench dead_collector`. `GLIA_BIN=/path/to/glia` measures another build;
//! `GLIA_BIN_BASELINE=/path/to/glia` measures that build too, each case of each round run
//! with both in turn, and prints the ratios. Under `cargo test` each case runs once,
//! briefly, as a smoke test.

use glia_tests::harness::glia_binary;
use glia_tests::load::{full_run, keep_in_flight, median, post};
use glia_tests::otlp::OtlpReceiver;
use glia_tests::process::GliaProcess;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Requests in flight.
const IN_FLIGHT: usize = 32;

/// Where spans go in one case.
#[derive(Clone, Copy)]
enum Collector {
    Off,
    Live,
    Refusing,
    Silent,
}

/// What one run of one case measured.
struct Run {
    throughput: f64,
    sigterm: f64,
    /// Spans dropped, and spans made (two per answered request).
    dropped: Option<(u64, u64)>,
}

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

/// Runs `glia serve` from `binary` with `traces` for `run` under load, then SIGTERM.
async fn measure(binary: &Path, traces: Value, run: Duration, tag: &str) -> Run {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let body = json!({"user_id": "@evilguy:example.com", "room_config": {}}).to_string();
    let yaml = json!({"shutdown_grace": "2s", "modules": [{"module": "demo"}],
                      "telemetry": {"traces": traces}})
    .to_string();
    let file = std::env::temp_dir().join(format!(
        "glia-dead-collector-{}-{tag}.yaml",
        std::process::id()
    ));
    std::fs::write(&file, &yaml).unwrap();
    let (serve, listen) = GliaProcess::serve_binary(binary, &file, &[], &[], false).await;
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
    let throughput = ok as f64 / start.elapsed().as_secs_f64();
    let made = 2 * (ok + warm.iter().filter(|s| s.ok).count()) as u64;
    let dropped = spans_dropped(&client, &listen).await.map(|d| (d, made));
    let (_, _, took) = serve.terminate_with_log();
    let _ = std::fs::remove_file(&file);
    Run {
        throughput,
        sigterm: took.as_secs_f64(),
        dropped,
    }
}

fn main() {
    let (rounds, run) = if full_run() {
        (5, Duration::from_secs(4))
    } else {
        (1, Duration::from_millis(300))
    };
    let mut builds: Vec<(&str, PathBuf)> = Vec::new();
    if let Some(baseline) = std::env::var_os("GLIA_BIN_BASELINE") {
        builds.push(("baseline", baseline.into()));
    }
    builds.push(("this build", glia_binary()));
    let refusing = format!("http://127.0.0.1:{}", glia_tests::nats::free_port());
    let cases = [
        ("off", Collector::Off, "grpc"),
        ("live receiver, gRPC", Collector::Live, "grpc"),
        ("refusing, gRPC", Collector::Refusing, "grpc"),
        ("never answering, gRPC", Collector::Silent, "grpc"),
        ("refusing, HTTP", Collector::Refusing, "http/protobuf"),
        ("never answering, HTTP", Collector::Silent, "http/protobuf"),
    ];
    // runs[build][case]
    let mut runs: Vec<Vec<Vec<Run>>> = builds
        .iter()
        .map(|_| cases.iter().map(|_| Vec::new()).collect())
        .collect();
    actix_rt::System::new().block_on(async {
        for round in 0..rounds {
            for (c, (_, collector, protocol)) in cases.iter().enumerate() {
                // Each build in turn, the first one alternating between rounds.
                for k in 0..builds.len() {
                    let b = (k + round) % builds.len();
                    // A fresh receiver per run (it keeps every span it is sent), and a fresh
                    // silent collector, which takes connections into its backlog and never
                    // reads them.
                    let receiver = OtlpReceiver::start().expect("the OTLP receiver starts");
                    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                    let silent = format!("http://{}", silent.local_addr().unwrap());
                    let endpoint = match (*collector, *protocol) {
                        (Collector::Live, "grpc") => receiver.grpc_endpoint(),
                        (Collector::Live, _) => receiver.http_endpoint(),
                        (Collector::Refusing, _) => refusing.clone(),
                        (Collector::Silent | Collector::Off, _) => silent,
                    };
                    let traces = match collector {
                        Collector::Off => json!({"exporter": "none"}),
                        _ => {
                            json!({"exporter": "otlp", "protocol": protocol, "endpoint": endpoint})
                        }
                    };
                    let tag = format!("{b}-{c}");
                    runs[b][c].push(measure(&builds[b].1, traces, run, &tag).await);
                }
            }
        }
    });
    println!(
        "glia serve, demo module over HTTP, {IN_FLIGHT} in flight, {rounds} rounds of {} ms per case and build, interleaved; shutdown_grace 2s, exporter timeout 10 s (the default)",
        run.as_millis()
    );
    for (b, (name, path)) in builds.iter().enumerate() {
        println!("{name}: {}", path.display());
        let off = median(&runs[b][0].iter().map(|r| r.throughput).collect::<Vec<_>>());
        for (c, (case, _, _)) in cases.iter().enumerate() {
            let of = |f: fn(&Run) -> f64| median(&runs[b][c].iter().map(f).collect::<Vec<_>>());
            let throughput = of(|r| r.throughput);
            let drops: Vec<String> = runs[b][c]
                .iter()
                .map(|r| match r.dropped {
                    Some((dropped, made)) => format!("{dropped}/{made}"),
                    None => "n/a".into(),
                })
                .collect();
            println!(
                "  {case:<22} {throughput:>7.0} req/s = {:.2} of off;  SIGTERM {:.2} s (max {:.2});  spans dropped/made: {}",
                throughput / off,
                of(|r| r.sigterm),
                runs[b][c].iter().map(|r| r.sigterm).fold(0.0, f64::max),
                drops.join(", ")
            );
        }
    }
    if builds.len() == 2 {
        println!("this build / baseline, medians of the same rounds:");
        for (c, (case, _, _)) in cases.iter().enumerate() {
            let t = |b: usize| median(&runs[b][c].iter().map(|r| r.throughput).collect::<Vec<_>>());
            let s = |b: usize| median(&runs[b][c].iter().map(|r| r.sigterm).collect::<Vec<_>>());
            println!(
                "  {case:<22} throughput {:.2}x, SIGTERM {:.2} s vs {:.2} s",
                t(1) / t(0),
                s(1),
                s(0)
            );
        }
    }
}
