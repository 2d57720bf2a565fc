//! A bounded soak: `glia serve` (NATS bus, a local module and one on NATS) and two `glia
//! worker` processes under mixed load — valid and invalid requests, over HTTP and over NATS,
//! and garbage sent straight to the workers — for 10 minutes, sampling each process's
//! resident memory and open file descriptors. Both must stay flat.
//!
//! Run: `cargo build --release -p glia-runtime --bin glia && cargo bench -p glia-tests
//! --bench soak` (10 minutes; `GLIA_SOAK_SECS` changes it; needs nats-server). Under `cargo
//! test` it runs for 5 seconds, as a smoke test.

use glia_bus_schema::subjects::{self, headers};
use glia_bus_schema::Callback;
use glia_tests::load::{full_run, keep_in_flight, post, Sample};
use glia_tests::nats::NatsServer;
use glia_tests::process::GliaProcess;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Requests in flight, over HTTP and over NATS each.
const IN_FLIGHT: usize = 16;

/// One request of the mix: what to send, and whether the answer is the one expected.
enum Ask {
    Http(&'static str, String, fn(u16, &Value) -> bool),
    Nats(String, Vec<u8>, fn(&Value) -> bool),
}

fn event(sender: &str, body: &str) -> Value {
    json!({"event": {"room_id": "!r:hs", "sender": sender, "type": "m.room.message",
                     "content": {"msgtype": "m.text", "body": body}}})
}

/// The `i`th request over HTTP: valid ones (allowed and denied, by a local module and by
/// one on NATS) and invalid ones (not JSON, a missing field, an unknown callback, a body
/// over the limit).
fn http_ask(i: usize) -> Ask {
    match i % 8 {
        0 => Ask::Http(
            "user_may_create_room",
            json!({"user_id": "@evilguy:example.com", "room_config": {}}).to_string(),
            |s, v| s == 200 && v["decision"] == "deny",
        ),
        1 => Ask::Http(
            "user_may_create_room",
            json!({"user_id": format!("@u{i}:example.com"), "room_config": {}}).to_string(),
            |s, v| s == 200 && v["decision"] == "allow",
        ),
        2 => Ask::Http(
            "check_event_for_spam",
            event(&format!("@u{i}:example.com"), "hello").to_string(),
            |s, v| s == 200 && v["decision"] == "allow",
        ),
        3 => Ask::Http(
            "check_event_for_spam",
            event("@u:example.com", "buy cheap pills now").to_string(),
            |s, v| s == 200 && v["decision"] == "deny",
        ),
        4 => Ask::Http("user_may_create_room", "{not json".into(), |s, v| {
            s == 400 && v["errcode"] == "M_NOT_JSON"
        }),
        5 => Ask::Http(
            "user_may_invite",
            json!({"inviter": "@a:hs"}).to_string(),
            |s, v| s == 400 && v["errcode"] == "M_BAD_JSON",
        ),
        6 => Ask::Http("no_such_callback", "{}".into(), |s, v| {
            s == 404 && v["errcode"] == "M_NOT_FOUND"
        }),
        _ => Ask::Http(
            "check_event_for_spam",
            event("@u:example.com", &"x".repeat(80 << 10)).to_string(),
            |s, v| s == 413 && v["errcode"] == "M_TOO_LARGE",
        ),
    }
}

/// The `i`th request over NATS: callbacks asked of the coordinator (valid, not JSON, an
/// unknown callback) and garbage invocations sent to the module's workers.
fn nats_ask(i: usize) -> Ask {
    let callback = |c: Callback| subjects::callback_subject(c);
    match i % 5 {
        0 => Ask::Nats(
            callback(Callback::CheckEventForSpam),
            event("@u:example.com", "buy cheap pills now")
                .to_string()
                .into_bytes(),
            |v| v["decision"] == "deny",
        ),
        1 => Ask::Nats(
            callback(Callback::UserMayCreateRoom),
            json!({"user_id": format!("@u{i}:example.com"), "room_config": {}})
                .to_string()
                .into_bytes(),
            |v| v["decision"] == "allow",
        ),
        2 => Ask::Nats(
            callback(Callback::UserMayInvite),
            b"\xff\xfe".to_vec(),
            |v| v["errcode"] == "M_NOT_JSON",
        ),
        3 => Ask::Nats("glia.v1.callbacks.nope".into(), b"{}".to_vec(), |v| {
            v["errcode"] == "M_NOT_FOUND"
        }),
        _ => Ask::Nats(
            subjects::module_subject("policy", Callback::CheckEventForSpam),
            b"garbage".to_vec(),
            |v| v["result"]["error"]["kind"] == "failed",
        ),
    }
}

/// Sends one request of the mix; whether its answer was the expected one.
async fn send(http: &awc::Client, base: &str, nats: &async_nats::Client, ask: Ask) -> bool {
    match ask {
        Ask::Http(callback, body, ok) => {
            let url = format!("{base}/_glia/v1/callbacks/{callback}");
            match post(http, &url, body).await {
                Some((status, body)) => ok(
                    status,
                    &serde_json::from_slice(&body).unwrap_or(Value::Null),
                ),
                None => false,
            }
        }
        Ask::Nats(subject, body, ok) => {
            let mut h = async_nats::HeaderMap::new();
            h.insert(headers::REQUEST_ID, "soak");
            let request = async_nats::Request::new()
                .payload(body.into())
                .headers(h)
                .timeout(Some(Duration::from_secs(20)));
            match nats.send_request(subject, request).await {
                Ok(reply) => ok(&serde_json::from_slice(&reply.payload).unwrap_or(Value::Null)),
                Err(_) => false,
            }
        }
    }
}

fn main() {
    let length = match std::env::var("GLIA_SOAK_SECS") {
        Ok(secs) => {
            Duration::from_secs(secs.parse().expect("GLIA_SOAK_SECS is a number of seconds"))
        }
        Err(_) if full_run() => Duration::from_secs(600),
        Err(_) => Duration::from_secs(5),
    };
    let every = (length / 20).max(Duration::from_secs(1));
    let nats = NatsServer::start();
    let yaml = json!({
        "bus": {"type": "nats", "url": nats.url()},
        "max_body_size": "64KiB",
        "telemetry": {"decision_log": {"output": "nats", "subject": "soak.decisions"}},
        "modules": [
            {"module": "demo"},
            {"module": "message_policy", "name": "policy", "placement": "nats", "timeout": "5s",
             "config": {"blocked_keywords": ["cheap pills"]}},
        ]
    })
    .to_string();
    let file = std::env::temp_dir().join(format!("glia-soak-{}.yaml", std::process::id()));
    std::fs::write(&file, &yaml).unwrap();
    actix_rt::System::new().block_on(async {
        let workers = [
            GliaProcess::worker(&file, &[], false),
            GliaProcess::worker(&file, &[], false),
        ];
        let (serve, listen) = GliaProcess::serve(&file, &[], &[], false).await;
        let base = format!("http://{listen}");
        let http = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
        let client = async_nats::connect(nats.url()).await.unwrap();
        // The NATS module planned and served.
        let until = Instant::now() + Duration::from_secs(60);
        while !send(&http, &base, &client, http_ask(3)).await {
            assert!(Instant::now() < until, "the workers never answered");
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        let processes: Vec<(&str, &GliaProcess)> = vec![
            ("serve", &serve),
            ("worker 1", &workers[0]),
            ("worker 2", &workers[1]),
        ];
        let start = Instant::now();
        let end = start + length;
        let sample = |at: Duration| {
            let now: Vec<(u64, usize)> = processes
                .iter()
                .map(|(_, p)| (p.rss_kib().unwrap_or(0), p.fds().unwrap_or(0)))
                .collect();
            let row: Vec<String> = now
                .iter()
                .map(|(kib, fds)| format!("{:>7.1} MiB {fds:>4} fds", *kib as f64 / 1024.0))
                .collect();
            println!("{:>6.0} s  {}", at.as_secs_f64(), row.join("   "));
            now
        };
        println!("binary: {}", glia_tests::harness::glia_binary().display());
        println!(
            "soak for {} s: {IN_FLIGHT} HTTP and {IN_FLIGHT} NATS requests in flight, half of them invalid",
            length.as_secs()
        );
        let names: Vec<String> = processes.iter().map(|(n, _)| format!("{n:<22}")).collect();
        println!("{:>8}  {}", "", names.join(" "));
        let http_load = keep_in_flight(IN_FLIGHT, end, |i| send(&http, &base, &client, http_ask(i)));
        let nats_load = keep_in_flight(IN_FLIGHT, end, |i| send(&http, &base, &client, nats_ask(i)));
        let sampler = async {
            let mut samples = vec![sample(Duration::ZERO)];
            while Instant::now() + every <= end {
                actix_rt::time::sleep(every).await;
                samples.push(sample(start.elapsed()));
            }
            samples
        };
        let (over_http, over_nats, samples): (Vec<Sample>, Vec<Sample>, _) =
            futures::join!(http_load, nats_load, sampler);
        actix_rt::time::sleep(Duration::from_secs(2)).await;
        let last = sample(start.elapsed());
        for (kind, samples) in [("HTTP", &over_http), ("NATS", &over_nats)] {
            println!(
                "{kind}: {} requests, {} with the expected answer, {} not",
                samples.len(),
                samples.iter().filter(|s| s.ok).count(),
                samples.iter().filter(|s| !s.ok).count()
            );
        }
        // Against the second sample: the first is taken before any load, when caches and
        // pools are still empty.
        let settled = &samples[samples.len().min(2) - 1];
        for (i, (name, _)) in processes.iter().enumerate() {
            println!(
                "{name}: RSS {:.1} -> {:.1} MiB ({:+.1}%), fds {} -> {}",
                settled[i].0 as f64 / 1024.0,
                last[i].0 as f64 / 1024.0,
                (last[i].0 as f64 / settled[i].0.max(1) as f64 - 1.0) * 100.0,
                settled[i].1,
                last[i].1
            );
        }
        drop(processes);
        drop(serve);
        drop(workers);
    });
    let _ = std::fs::remove_file(&file);
}
