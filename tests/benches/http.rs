//! The HTTP API's requests per second against an actix-web ceiling server, in one run.
//!
//! Five servers in this process, each with the same number of HTTP workers (`glia serve`'s
//! default, one per core; `GLIA_BENCH_HTTP_WORKERS` changes it): glia with 1 and with 5
//! scripted modules allowing `check_event_for_spam`, each with one instance per module (the
//! default) and with `instances: per_thread`, and the ceiling, a bare actix-web app
//! that decodes the same JSON into the same request type and answers glia's reply bytes.
//! A load generator on one thread of its own keeps `CONNECTIONS` keep-alive connections
//! busy (raw HTTP/1.1 over TCP, one request at a time on each), for rounds of `ROUND` per
//! server, interleaved (ceiling, glia 1, glia 5, ..., ceiling, ...) so a noisy neighbour slows
//! all of them alike. It prints each server's median req/s and glia's ratio to the ceiling.
//!
//! Run: `cargo bench -p glia-tests --bench http`. Under `cargo test` it runs one short round
//! of each, as a smoke test.

#[path = "support/fixtures.rs"]
mod fixtures;

use actix_web::{web, App, HttpResponse, HttpServer};
use glia_bus_schema::{Callback, CallbackRequest};
use glia_runtime::{http, Glia};
use glia_tests::load::{full_run, median};
use glia_tests::TestGlia;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Keep-alive connections the load generator holds.
const CONNECTIONS: usize = 32;

/// The callback's path on both servers.
const PATH: &str = "/_glia/v1/callbacks/check_event_for_spam";

/// A `check_event_for_spam` body: an `m.room.message` with a ~100-char body, as the
/// dispatch benchmark sends.
fn body() -> String {
    json!({ "event": fixtures::message_json() }).to_string()
}

/// A config of `n` scripted modules allowing `check_event_for_spam`, with `instances`.
fn config(n: usize, instances: &str) -> String {
    let answers = json!({ "check_event_for_spam": { "answer": "NOT_SPAM" } });
    fixtures::scripted_config(n, instances, &answers)
}

/// The raw request, as a client keeping its connection alive sends it.
fn request_bytes(addr: SocketAddr, body: &str) -> Vec<u8> {
    format!(
        "POST {PATH} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one response from `stream` (a `content-length` body), leaving `buf` holding what
/// came after it; returns its status and body.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u16, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).ok()?;
            let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + length;
            while buf.len() < total {
                read_more(stream, buf).await?;
            }
            let body = buf[end + 4..total].to_vec();
            buf.drain(..total);
            return Some((status, body));
        }
        read_more(stream, buf).await?;
    }
}

/// Appends what the stream has to `buf`; `None` at its end.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await.ok()?;
    (n > 0).then(|| buf.extend_from_slice(&chunk[..n]))
}

/// One request on a fresh connection: glia's reply, which the ceiling answers too.
fn reply_of(addr: SocketAddr, body: &str) -> (u16, Vec<u8>) {
    load_runtime().block_on(async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(&request_bytes(addr, body))
            .await
            .expect("send");
        read_response(&mut stream, &mut Vec::new())
            .await
            .expect("a response")
    })
}

/// The load generator's runtime: one thread.
fn load_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Keeps `CONNECTIONS` connections to `addr` busy for `round`; returns req/s. Panics on any
/// answer other than `expected`.
fn round(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    body: &str,
    expected: &[u8],
    round: Duration,
) -> f64 {
    let request = Arc::new(request_bytes(addr, body));
    let expected = Arc::new(expected.to_vec());
    rt.block_on(async {
        let mut streams = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            streams.push(stream);
        }
        let start = Instant::now();
        let until = start + round;
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|mut stream| {
                let (request, expected) = (request.clone(), expected.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::with_capacity(8192);
                    let mut done = 0u64;
                    while Instant::now() < until {
                        stream.write_all(&request).await.expect("send");
                        let (status, reply) = read_response(&mut stream, &mut buf)
                            .await
                            .expect("a response");
                        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
                        assert_eq!(reply, *expected);
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.expect("a connection's task");
        }
        total as f64 / start.elapsed().as_secs_f64()
    })
}

/// The ceiling: actix-web decoding the same arguments and answering `reply`, with `workers`
/// threads. Returns its address; it runs until the process ends.
fn start_ceiling(workers: usize, reply: Vec<u8>) -> SocketAddr {
    let reply = web::Bytes::from(reply);
    let server = HttpServer::new(move || {
        let reply = reply.clone();
        App::new().route(
            PATH,
            web::post().to(move |body: web::Bytes| {
                let reply = reply.clone();
                async move {
                    let request =
                        CallbackRequest::from_json_slice(Callback::CheckEventForSpam, &body)
                            .expect("valid arguments");
                    std::hint::black_box(request);
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(reply)
                }
            }),
        )
    })
    .workers(workers)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind a loopback port");
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    addr
}

/// Starts glia with `n` modules (with `instances`) and serves it with `workers` HTTP workers.
async fn start_glia(n: usize, instances: &str, workers: usize) -> SocketAddr {
    let config = TestGlia::config(&config(n, instances)).expect("bench config loads");
    let glia = Arc::new(Glia::start(config).await.expect("glia starts"));
    let bound = http::serve(glia, "127.0.0.1:0", Some(workers)).expect("bind a loopback port");
    let addr = bound
        .urls
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    actix_rt::spawn(bound.server);
    addr
}

fn main() {
    let full = full_run();
    let workers: usize = std::env::var("GLIA_BENCH_HTTP_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let (rounds, length) = if full {
        (7, Duration::from_secs(2))
    } else {
        (1, Duration::from_millis(200))
    };
    let body = body();
    // The servers run on this thread's system (and their own workers' threads); the load
    // generator on a thread of its own.
    let system = actix_rt::System::new();
    let glias = system.block_on(async {
        [
            start_glia(1, "one", workers).await,
            start_glia(5, "one", workers).await,
            start_glia(1, "per_thread", workers).await,
            start_glia(5, "per_thread", workers).await,
        ]
    });
    let (status, reply) = reply_of(glias[0], &body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let ceiling = system.block_on(async { start_ceiling(workers, reply.clone()) });
    let targets = [
        ("actix-web ceiling", ceiling),
        ("glia, 1 module", glias[0]),
        ("glia, 5 modules", glias[1]),
        ("glia, 1 per_thread", glias[2]),
        ("glia, 5 per_thread", glias[3]),
    ];
    let load = std::thread::spawn(move || {
        let rt = load_runtime();
        let mut rates = vec![Vec::new(); targets.len()];
        // A warm-up round of each, not counted.
        for (_, addr) in targets {
            round(&rt, addr, &body, &reply, length / 2);
        }
        for _ in 0..rounds {
            for (i, (_, addr)) in targets.iter().enumerate() {
                rates[i].push(round(&rt, *addr, &body, &reply, length));
            }
        }
        rates
    });
    // The servers' system must run while the load does.
    let rates = system.block_on(async move {
        loop {
            if load.is_finished() {
                return load.join().expect("the load generator");
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    });
    println!("HTTP API, {CONNECTIONS} keep-alive connections, {workers} HTTP worker(s), {rounds} interleaved rounds of {length:?}:");
    let ceiling = median(&rates[0]);
    for ((label, _), r) in targets.iter().zip(&rates) {
        let m = median(r);
        println!(
            "{label:<20} median {m:>9.0} req/s   ratio to ceiling {:.2}   rounds {:?}",
            m / ceiling,
            r.iter().map(|x| x.round() as u64).collect::<Vec<_>>()
        );
    }
}
