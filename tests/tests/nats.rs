//! The NATS bus against a real nats-server: modules served by in-process workers
//! (`glia_runtime::worker::Worker`, as `glia worker` runs it), the ordering and policies of the
//! conformance suite over NATS, no responders, expired deadlines, malformed payloads, a rogue
//! responder, homeservers calling the coordinator over NATS, workers scaling down, and the
//! server restarting under load.

mod support;

use futures::StreamExt;
use glia_bus_schema::requests::UserMayInvite;
use glia_bus_schema::subjects;
use glia_bus_schema::{CallbackRequest, DispatchReply};
use glia_runtime::worker::Worker;
use glia_tests::harness::glia_binary;
use glia_tests::nats::NatsServer;
use glia_tests::probes::{answered, open_gate, until};
use glia_tests::TestGlia;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn invite(inviter: &str) -> CallbackRequest {
    CallbackRequest::UserMayInvite(UserMayInvite {
        inviter: inviter.into(),
        invitee: "@b:hs".into(),
        room_id: "!r:hs".into(),
    })
}

fn decision(reply: DispatchReply) -> Value {
    match reply {
        DispatchReply::UserMayInvite(d) => serde_json::to_value(d).unwrap(),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// A config on the NATS bus at `url` with these module entries.
fn config(url: &str, modules: Value) -> String {
    json!({"bus": {"type": "nats", "url": url}, "deadline": "30s", "modules": modules}).to_string()
}

/// A scripted module placed on NATS.
fn remote_scripted(name: &str, answers: Value) -> Value {
    json!({"module": "scripted", "name": name, "placement": "nats", "timeout": "1h",
           "config": {"probe": name, "answers": answers}})
}

/// Starts a worker for the config's NATS modules, then the coordinator.
async fn start(yaml: &str) -> (Worker, Arc<TestGlia>) {
    let worker = Worker::start(&TestGlia::config(yaml).unwrap())
        .await
        .expect("the worker starts");
    let glia = Arc::new(TestGlia::start(yaml).await);
    (worker, glia)
}

#[actix_rt::test]
async fn ordering_over_nats_matches_the_in_process_bus() {
    let nats = NatsServer::start();
    let yaml = config(
        &nats.url(),
        json!([
            remote_scripted(
                "n1",
                json!({"user_may_invite": {"answer": {"errcode": "M_ONE"}, "gate": "n1-gate"}})
            ),
            remote_scripted(
                "n2",
                json!({"user_may_invite": {"answer": {"errcode": "M_TWO"}}})
            ),
            remote_scripted(
                "n3",
                json!({"user_may_invite": {"answer": "NOT_SPAM", "gate": "n3-never"}})
            ),
        ]),
    );
    let (worker, g) = start(&yaml).await;
    // Module 2 denies at once, but module 1 has not answered: nothing is decided yet.
    let g2 = g.clone();
    let pending = actix_rt::spawn(async move { g2.dispatch(invite("@a:hs")).await });
    until(|| answered("n2") == 1).await;
    actix_rt::task::yield_now().await;
    assert!(!pending.is_finished());
    // Module 1's deny decides, without waiting for module 3.
    open_gate("n1-gate", 1);
    let reply = decision(pending.await.unwrap());
    assert_eq!(
        (reply["errcode"].clone(), reply["module"].clone()),
        (json!("M_ONE"), json!("n1"))
    );
    assert_eq!(answered("n3"), 0);
    worker.shutdown(Duration::from_millis(10)).await;
}

#[actix_rt::test]
async fn answers_map_and_failures_resolve_through_policies_over_nats() {
    let nats = NatsServer::start();
    let yaml = config(
        &nats.url(),
        json!([
            remote_scripted("map", json!({"user_may_invite": {"answer": null}})),
            {"module": "scripted", "name": "slow", "placement": "nats", "timeout": "30ms", "failure_policy": "allow",
             "config": {"answers": {"check_event_for_spam": {"hang": true}, "user_may_invite": {"hang": true}}}},
        ]),
    );
    let (worker, g) = start(&yaml).await;
    // None denies user_may_invite, over NATS as in process.
    let reply = decision(g.dispatch(invite("@a:hs")).await);
    assert_eq!(
        (reply["errcode"].clone(), reply["module"].clone()),
        (json!("M_FORBIDDEN"), json!("map"))
    );
    // A hang times out and its policy (allow) lets the event through.
    let event = json!({"event": {"room_id": "!r:hs", "sender": "@u:hs", "type": "m.room.message", "content": {"body": "x"}}});
    assert_eq!(
        g.dispatch_json("check_event_for_spam", event).await,
        json!({"decision": "allow"})
    );
    worker.shutdown(Duration::from_millis(10)).await;
}

/// `instances: per_thread` on a worker: its message loop's thread runs an instance of its
/// own, supervised there (crashy's answers name the instance that gave them).
#[actix_rt::test]
async fn a_worker_runs_a_per_thread_module_on_its_message_loop() {
    let nats = NatsServer::start();
    let yaml = config(
        &nats.url(),
        json!([{"module": "crashy", "name": "nats-pt", "placement": "nats", "timeout": "1h",
                "instances": "per_thread", "failure_policy": "deny",
                "restart": {"backoff_min": "1ms"}, "config": {"key": "nats-pt"}}]),
    );
    let (worker, g) = start(&yaml).await;
    // The worker's actor built the first instance; its message loop's thread, the second.
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await)["errcode"],
        "M_INSTANCE_2"
    );
    let crashed = decision(g.dispatch(invite("@panic:hs")).await);
    assert_eq!(crashed["errcode"], "M_FORBIDDEN", "{crashed}");
    until(|| glia_tests::crashy::built("nats-pt") == 3).await;
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await)["errcode"],
        "M_INSTANCE_3"
    );
    worker.shutdown(Duration::from_millis(10)).await;
}

#[actix_rt::test]
async fn a_started_worker_is_reachable_at_once() {
    // A coordinator starting right after a worker asks it to describe its module; were the
    // worker's subscription not in place yet, the module would go unplanned.
    let nats = NatsServer::start();
    let yaml = config(
        &nats.url(),
        json!([remote_scripted(
            "ready",
            json!({"user_may_invite": {"answer": "NOT_SPAM"}})
        )]),
    );
    let loaded = TestGlia::config(&yaml).unwrap();
    let other = async_nats::connect(nats.url()).await.unwrap();
    for _ in 0..20 {
        let worker = Worker::start(&loaded).await.unwrap();
        let reply = other
            .request(subjects::describe_subject("ready"), "".into())
            .await;
        assert!(reply.is_ok(), "{reply:?}");
        worker.shutdown(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn a_worker_whose_nats_user_may_only_answer_still_serves() {
    // The least a worker needs: take its module's subjects and publish replies. It cannot
    // ask itself to confirm its subscription; that must not stop it.
    let permissions = support::TempFile::new(
        "nats-permissions.conf",
        r#"authorization { users = [
             {user: worker, password: w, permissions: {publish: ["_INBOX.>"], subscribe: ["glia.v1.module.>"]}}
             {user: coordinator, password: c}
           ] }"#,
    );
    let nats = NatsServer::start_with(&["-c", &permissions.path_str()]);
    let with = |user: &str, password: &str| {
        json!({"bus": {"type": "nats", "url": nats.url(), "user": user, "password": password},
               "modules": [{"module": "scripted", "name": "strict", "placement": "nats", "timeout": "5s",
                            "config": {"answers": {"user_may_invite": {"answer": {"errcode": "M_LIMIT_EXCEEDED"}}}}}]})
        .to_string()
    };
    let worker = Worker::start(&TestGlia::config(&with("worker", "w")).unwrap())
        .await
        .expect("the worker starts");
    let g = TestGlia::start(&with("coordinator", "c")).await;
    // The module's own answer, so it was described, planned and invoked.
    let reply = decision(g.dispatch(invite("@a:hs")).await);
    assert_eq!(reply["errcode"], "M_LIMIT_EXCEEDED", "{reply}");
    worker.shutdown(Duration::from_millis(10)).await;
}

#[actix_rt::test]
async fn no_responders_is_unavailable_at_once_not_a_timeout() {
    let nats = NatsServer::start();
    let yaml = config(
        &nats.url(),
        json!([
            {"module": "remote", "name": "ghost", "placement": "nats", "timeout": "1h",
             "callbacks": ["user_may_invite", "is_user_expired"]},
        ]),
    );
    let g = TestGlia::start(&yaml).await;
    // The module's timeout is an hour: only no-responders can answer this quickly.
    let reply = decision(g.dispatch(invite("@a:hs")).await);
    assert_eq!(reply["decision"], "error");
    assert!(
        reply["error"].as_str().unwrap().contains("no responders"),
        "{reply}"
    );
    let (_, health) = g.get("/health", None).await;
    assert_eq!(health["bus"], "connected");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["unserved"], json!(["ghost"]), "{health}");
}

#[actix_rt::test]
async fn health_says_which_nats_modules_no_worker_serves_until_one_does() {
    let nats = NatsServer::start();
    let mut module = remote_scripted("seen", json!({"user_may_invite": {"answer": "NOT_SPAM"}}));
    module["callbacks"] = json!(["user_may_invite"]);
    let yaml = config(&nats.url(), json!([module]));
    let g = TestGlia::start(&yaml).await;
    let (status, health) = g.get("/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["unserved"], json!(["seen"]), "{health}");
    assert_eq!(health["failed"], json!([]), "{health}");
    let worker = Worker::start(&TestGlia::config(&yaml).unwrap())
        .await
        .expect("the worker starts");
    // The last probe is kept for a second: wait for the next one.
    until_async(|| async { g.get("/health", None).await.1["status"] == "ok" }).await;
    let (_, health) = g.get("/health", None).await;
    assert_eq!(health["unserved"], json!([]), "{health}");
    worker.shutdown(Duration::from_millis(10)).await;
}

#[actix_rt::test]
async fn workers_drop_expired_work_and_answer_malformed_payloads_with_errors() {
    let nats = NatsServer::start();
    let yaml = config(
        &nats.url(),
        json!([remote_scripted(
            "w1",
            json!({"user_may_invite": {"answer": "NOT_SPAM"}})
        )]),
    );
    let worker = Worker::start(&TestGlia::config(&yaml).unwrap())
        .await
        .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let subject = subjects::module_subject("w1", glia_bus_schema::Callback::UserMayInvite);
    let body = json!({"request_id": "r1", "deadline_ms": 1, "callback": "user_may_invite",
                      "args": {"inviter": "@a:hs", "invitee": "@b:hs", "room_id": "!r:hs"}})
    .to_string();

    // Past its deadline: dropped, no answer.
    let mut expired = async_nats::HeaderMap::new();
    expired.insert(subjects::headers::DEADLINE, "1");
    let request = async_nats::Request::new()
        .payload(body.clone().into())
        .headers(expired)
        .timeout(Some(Duration::from_millis(300)));
    let err = client
        .send_request(subject.clone(), request)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::TimedOut);

    // Malformed: a typed error, and the worker keeps serving.
    let reply = client
        .request(subject.clone(), "not json".into())
        .await
        .unwrap();
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["result"]["error"]["kind"], "failed", "{reply}");
    assert!(
        reply["result"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed"),
        "{reply}"
    );
    let reply = client.request(subject.clone(), body.into()).await.unwrap();
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        reply["result"]["answer"],
        json!({"callback": "user_may_invite", "answer": "NOT_SPAM"})
    );

    // Describe.
    let reply = client
        .request(subjects::describe_subject("w1"), "".into())
        .await
        .unwrap();
    let description: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(description["callbacks"], json!(["user_may_invite"]));
    worker.shutdown(Duration::from_millis(10)).await;
}

/// Subscribes to module `name`'s invocations as its workers do, to play the module by hand.
async fn subscribe_as_module(client: &async_nats::Client, name: &str) -> async_nats::Subscriber {
    client
        .queue_subscribe(
            subjects::module_wildcard(name),
            subjects::module_queue_group(name),
        )
        .await
        .unwrap()
}

#[actix_rt::test]
async fn a_rogue_responder_is_an_invalid_answer() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut rogue = subscribe_as_module(&client, "rogue").await;
    let responder = client.clone();
    actix_rt::spawn(async move {
        while let Some(message) = rogue.next().await {
            if let Some(reply) = message.reply {
                let _ = responder
                    .publish(reply, "{\"surprise\": true}".into())
                    .await;
            }
        }
    });
    let yaml = config(
        &nats.url(),
        json!([{"module": "remote", "name": "rogue", "placement": "nats", "timeout": "5s", "callbacks": ["user_may_invite"]}]),
    );
    let g = TestGlia::start(&yaml).await;
    let reply = decision(g.dispatch(invite("@a:hs")).await);
    assert_eq!(reply["decision"], "error");
    assert!(
        reply["error"].as_str().unwrap().contains("invalid answer"),
        "{reply}"
    );
}

#[actix_rt::test]
async fn homeservers_can_call_the_coordinator_over_nats() {
    let nats = NatsServer::start();
    // Decisions are published on NATS too, and their ids come back with the replies.
    let yaml = json!({"bus": {"type": "nats", "url": nats.url()},
        "telemetry": {"decision_log": {"output": "nats", "subject": "test.decisions"}},
        "modules": [{"module": "demo"}]})
    .to_string();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut decisions = client.subscribe("test.decisions").await.unwrap();
    client.flush().await.unwrap();
    let _g = TestGlia::start(&yaml).await;
    let subject = subjects::callback_subject(glia_bus_schema::Callback::UserMayCreateRoom);
    let ask = |user: &str| json!({"user_id": user, "room_config": {}}).to_string();
    // The coordinator may still be subscribing: retry no-responders briefly.
    let mut reply = None;
    for _ in 0..100 {
        match client
            .request(subject.clone(), ask("@evilguy:example.com").into())
            .await
        {
            Ok(r) => {
                reply = Some(r);
                break;
            }
            Err(_) => actix_rt::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let reply = reply.expect("the coordinator answers");
    let decision_id = reply
        .headers
        .as_ref()
        .and_then(|h| h.get(subjects::headers::DECISION_ID))
        .expect("a decision id header")
        .to_string();
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        (reply["decision"].clone(), reply["module"].clone()),
        (json!("deny"), json!("demo"))
    );
    let record: Value = serde_json::from_slice(
        &tokio::time::timeout(Duration::from_secs(30), decisions.next())
            .await
            .expect("a decision record is published")
            .unwrap()
            .payload,
    )
    .unwrap();
    assert_eq!(record["decision_id"], decision_id.as_str());
    assert_eq!(record["callback"], "user_may_create_room");
    assert_eq!(record["result"]["decision"], "deny");
    assert_eq!(record["winner"], "demo");
    assert!(
        record.get("input").is_none(),
        "content is left out: {record}"
    );
    let reply = client
        .request(subject.clone(), ask("@alice:example.com").into())
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&reply.payload).unwrap(),
        json!({"decision": "allow"})
    );
    let reply = client.request(subject, "{".into()).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&reply.payload).unwrap()["errcode"],
        "M_NOT_JSON"
    );
}

#[actix_rt::test]
async fn callback_requests_over_nats_past_the_ingress_bound_are_refused_at_once() {
    let nats = NatsServer::start();
    let yaml = json!({"bus": {"type": "nats", "url": nats.url(), "ingress_max_in_flight": 4},
        "modules": [{"module": "scripted", "name": "held", "timeout": "1h",
            "config": {"probe": "ingress-held", "answers": {"user_may_invite": {"answer": "NOT_SPAM", "gate": "ingress-g1"}}}}]})
    .to_string();
    let g = TestGlia::start(&yaml).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let subject = subjects::callback_subject(glia_bus_schema::Callback::UserMayInvite);
    let body = json!({"inviter": "@a:hs", "invitee": "@b:hs", "room_id": "!r:hs"}).to_string();
    // The coordinator may still be subscribing: wait until a request reaches the module.
    let first = {
        let (client, subject, body) = (client.clone(), subject.clone(), body.clone());
        actix_rt::spawn(async move {
            loop {
                match client.request(subject.clone(), body.clone().into()).await {
                    Ok(reply) => return reply,
                    Err(_) => actix_rt::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
    };
    until(|| glia_tests::probes::started("ingress-held") >= 1).await;
    let held: Vec<_> = (0..3)
        .map(|_| {
            let (client, subject, body) = (client.clone(), subject.clone(), body.clone());
            actix_rt::spawn(async move { client.request(subject, body.into()).await.unwrap() })
        })
        .collect();
    until(|| glia_tests::probes::started("ingress-held") >= 4).await;
    // Four are being answered: the next ones are refused at once, the module never asked.
    for _ in 0..20 {
        let reply = client
            .request(subject.clone(), body.clone().into())
            .await
            .unwrap();
        let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(reply["errcode"], "M_LIMIT_EXCEEDED", "{reply}");
    }
    assert_eq!(glia_tests::probes::started("ingress-held"), 4);
    let mut scrape = awc::Client::default()
        .get(format!("{}/metrics", g.base_url))
        .send()
        .await
        .expect("GET /metrics");
    let metrics = String::from_utf8(scrape.body().await.unwrap().to_vec()).unwrap();
    assert!(
        metrics.contains("glia_nats_ingress_refused_total 20"),
        "{metrics}"
    );
    // Once the held ones are answered, requests are served again.
    open_gate("ingress-g1", 1000);
    for reply in std::iter::once(first.await.unwrap()).chain(
        futures::future::join_all(held)
            .await
            .into_iter()
            .map(Result::unwrap),
    ) {
        let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(reply["decision"], "allow", "{reply}");
    }
    let reply = client.request(subject, body.into()).await.unwrap();
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["decision"], "allow", "{reply}");
}

#[actix_rt::test]
async fn workers_scaling_down_mid_load_lose_no_invocation() {
    let nats = NatsServer::start();
    // A lost invocation would end in this timeout, as an error reply.
    let yaml = config(
        &nats.url(),
        json!([{"module": "scripted", "name": "shared", "placement": "nats", "timeout": "5s",
                "config": {"probe": "shared", "answers": {"user_may_invite": {"answer": "NOT_SPAM", "delay_ms": 1}}}}]),
    );
    let loaded = TestGlia::config(&yaml).unwrap();
    let steady = Worker::start(&loaded).await.unwrap();
    let g = Arc::new(TestGlia::start(&yaml).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (g2, stop2) = (g.clone(), stop.clone());
    let load = actix_rt::spawn(async move {
        futures::stream::iter(0..)
            .take_while(|_| {
                futures::future::ready(!stop2.load(std::sync::atomic::Ordering::Relaxed))
            })
            .map(|i| {
                let g = g2.clone();
                async move { decision(g.dispatch(invite(&format!("@u{i}:hs"))).await) }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
    });
    // Each round a worker joins, takes part of the load, and is scaled down while invocations
    // are on their way to it: draining must let it answer every one it was given.
    for _ in 0..8 {
        let joining = Worker::start(&loaded).await.unwrap();
        let seen = answered("shared");
        until(|| answered("shared") >= seen + 150).await;
        joining.shutdown(Duration::from_secs(5)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let replies = load.await.unwrap();
    let wrong: Vec<_> = replies
        .iter()
        .filter(|r| *r != &json!({"decision": "allow"}))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} invocations failed: {wrong:?}",
        wrong.len(),
        replies.len()
    );
    steady.shutdown(Duration::from_millis(10)).await;
}

#[actix_rt::test]
async fn a_nats_restart_resolves_through_policies_then_service_resumes() {
    let mut nats = NatsServer::start();
    let yaml = config(
        &nats.url(),
        json!([{"module": "scripted", "name": "rs", "placement": "nats", "timeout": "200ms", "failure_policy": "deny",
                "config": {"answers": {"user_may_invite": {"answer": "NOT_SPAM"}}}}]),
    );
    let (worker, g) = start(&yaml).await;
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await),
        json!({"decision": "allow"})
    );
    nats.stop();
    until(|| g.glia.bus_connected() == Some(false)).await;
    assert_eq!(g.get("/health", None).await.1["status"], "degraded");
    // During the outage: the policy, within the module's timeout.
    let reply = decision(g.dispatch(invite("@a:hs")).await);
    assert_eq!(reply["errcode"], "M_FORBIDDEN", "{reply}");
    nats.restart();
    until(|| g.glia.bus_connected() == Some(true)).await;
    // The worker resubscribes on its own; once it has, answers are normal again.
    let mut back = false;
    for _ in 0..200 {
        if decision(g.dispatch(invite("@a:hs")).await) == json!({"decision": "allow"}) {
            back = true;
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(back, "service did not resume after the restart");
    assert_eq!(g.get("/health", None).await.1["status"], "ok");
    worker.shutdown(Duration::from_millis(10)).await;
}

#[actix_rt::test]
async fn an_oversized_invocation_is_refused_clearly_and_nothing_crashes() {
    let nats = NatsServer::start();
    let yaml = config(
        &nats.url(),
        json!([remote_scripted(
            "big",
            json!({"user_may_create_room": {"answer": "NOT_SPAM"}, "user_may_invite": {"answer": "NOT_SPAM"}})
        )]),
    );
    let (worker, g) = start(&yaml).await;
    // nats-server's default max_payload is 1 MiB; glia's HTTP limit is separate.
    let huge = "x".repeat(2 << 20);
    let reply = g
        .dispatch_json(
            "user_may_create_room",
            json!({"user_id": "@a:hs", "room_config": {"name": huge}}),
        )
        .await;
    assert_eq!(reply["decision"], "error", "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("NATS"), "{reply}");
    // The connection and the worker are fine afterwards.
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await),
        json!({"decision": "allow"})
    );
    worker.shutdown(Duration::from_millis(10)).await;
}

#[actix_rt::test]
async fn invocations_carry_the_request_id_deadline_and_trace_context_in_headers() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut module = subscribe_as_module(&client, "hdr").await;
    let (seen_tx, seen_rx) = futures::channel::oneshot::channel();
    let responder = client.clone();
    actix_rt::spawn(async move {
        let message = module.next().await.expect("an invocation");
        let headers = message.headers.clone().expect("headers");
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        let seen = (
            get("Glia-Request-Id"),
            get("Glia-Deadline"),
            get("traceparent"),
        );
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        let reply = json!({"request_id": body["request_id"], "result": {"answer": {"callback": "user_may_invite", "answer": "NOT_SPAM"}}});
        responder
            .publish(message.reply.unwrap(), reply.to_string().into())
            .await
            .unwrap();
        let _ = seen_tx.send(seen);
    });
    let yaml = config(
        &nats.url(),
        json!([{"module": "remote", "name": "hdr", "placement": "nats", "timeout": "5s", "callbacks": ["user_may_invite"]}]),
    );
    let g = TestGlia::start(&yaml).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // With span export off, the caller's context is passed on as it came.
    let coordinator = g.glia.coordinator();
    let meta = coordinator.meta(
        Some("req-42".into()),
        glia_runtime::propagation::extract(Some(traceparent), None),
    );
    let reply = coordinator.dispatch(invite("@a:hs"), meta).await.unwrap();
    assert_eq!(decision(reply), json!({"decision": "allow"}));
    let (request_id, deadline, trace) = seen_rx.await.unwrap();
    assert_eq!(request_id.as_deref(), Some("req-42"));
    assert!(deadline.unwrap().parse::<u64>().unwrap() > 1_700_000_000_000);
    assert_eq!(trace.as_deref(), Some(traceparent));
}

#[actix_rt::test]
async fn token_authentication_is_configurable() {
    let nats = NatsServer::start_with(&["--auth", "s3cret"]);
    let with = |token: Option<&str>| {
        let mut bus = json!({"type": "nats", "url": nats.url(), "connect_timeout": "2s"});
        if let Some(t) = token {
            bus["token"] = json!(t);
        }
        json!({"bus": bus, "modules": [{"module": "remote", "name": "ghost", "placement": "nats",
                                         "callbacks": ["user_may_invite"]}]})
        .to_string()
    };
    let g = TestGlia::start(&with(Some("s3cret"))).await;
    assert_eq!(g.glia.bus_connected(), Some(true));
    let refused = TestGlia::try_start(&with(Some("wrong")))
        .await
        .err()
        .expect("refused");
    assert!(
        refused.to_string().contains("cannot connect to NATS"),
        "{refused}"
    );
}

#[actix_rt::test]
async fn one_of_three_worker_processes_killed_mid_load_leaves_no_request_unanswered() {
    let nats = NatsServer::start();
    let yaml = json!({"bus": {"type": "nats", "url": nats.url()}, "deadline": "10s", "modules": [
        {"module": "demo", "placement": "nats", "timeout": "500ms", "failure_policy": "allow",
         "callbacks": ["user_may_create_room"]}
    ]})
    .to_string();
    let file = std::env::temp_dir().join(format!("glia-kill-{}.yaml", std::process::id()));
    std::fs::write(&file, &yaml).unwrap();
    let spawn = || {
        std::process::Command::new(glia_binary())
            .args(["worker", "--config"])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("glia worker starts")
    };
    // Three workers serve the module; one is killed mid-load.
    let (mut doomed, survivors) = (spawn(), [spawn(), spawn()]);
    let g = Arc::new(TestGlia::start(&yaml).await);
    let ask = |i: usize| {
        let user = if i.is_multiple_of(5) {
            "@evilguy:example.com".to_owned()
        } else {
            format!("@u{i}:example.com")
        };
        CallbackRequest::UserMayCreateRoom(glia_bus_schema::requests::UserMayCreateRoom {
            user_id: user,
            room_config: Default::default(),
        })
    };
    // Wait until the workers answer.
    let mut ready = false;
    for _ in 0..200 {
        if let DispatchReply::UserMayCreateRoom(d) = g.dispatch(ask(1)).await {
            if serde_json::to_value(d).unwrap() == json!({"decision": "allow"}) {
                ready = true;
                break;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "the workers never answered");
    let g2 = g.clone();
    let load = actix_rt::spawn(async move {
        futures::stream::iter(0..400)
            .map(|i| {
                let g = g2.clone();
                async move {
                    let t = std::time::Instant::now();
                    let DispatchReply::UserMayCreateRoom(d) = g.dispatch(ask(i)).await else {
                        panic!("wrong reply")
                    };
                    (i, serde_json::to_value(d).unwrap(), t.elapsed())
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
    });
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    doomed.kill().unwrap();
    let replies = load.await.unwrap();
    let _ = doomed.wait();
    assert_eq!(replies.len(), 400, "every request is answered");
    for (i, reply, took) in &replies {
        // Answered by a worker (demo's decision) or, for what the killed worker held, by the
        // timeout and the failure policy (allow); never later than the deadline.
        let evil = i.is_multiple_of(5);
        let by_demo = if evil {
            reply["decision"] == "deny" && reply["module"] == "demo"
        } else {
            reply == &json!({"decision": "allow"})
        };
        assert!(
            by_demo || reply == &json!({"decision": "allow"}),
            "request {i}: {reply}"
        );
        assert!(*took < Duration::from_secs(10), "request {i} took {took:?}");
    }
    for mut survivor in survivors {
        survivor.kill().unwrap();
        let _ = survivor.wait();
    }
    let _ = std::fs::remove_file(&file);
}

#[actix_rt::test]
async fn a_reply_to_another_request_is_an_invalid_answer() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut confused = subscribe_as_module(&client, "confused").await;
    let responder = client.clone();
    actix_rt::spawn(async move {
        while let Some(message) = confused.next().await {
            let reply = json!({"request_id": "someone-else", "result": {"answer": {"callback": "user_may_invite", "answer": "NOT_SPAM"}}});
            if let Some(to) = message.reply {
                let _ = responder.publish(to, reply.to_string().into()).await;
            }
        }
    });
    let yaml = config(
        &nats.url(),
        json!([{"module": "remote", "name": "confused", "placement": "nats", "timeout": "5s", "callbacks": ["user_may_invite"]}]),
    );
    let g = TestGlia::start(&yaml).await;
    let reply = decision(g.dispatch(invite("@a:hs")).await);
    assert_eq!(reply["decision"], "error", "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.contains("invalid answer") && error.contains("someone-else"),
        "{reply}"
    );
}

#[actix_rt::test]
async fn a_worker_takes_no_more_than_max_in_flight_plus_its_stash_and_refuses_the_rest() {
    let nats = NatsServer::start();
    // Two run, three wait; the module answers only when the gate opens.
    let yaml = config(
        &nats.url(),
        json!([{"module": "scripted", "name": "narrow", "placement": "nats", "timeout": "1h",
                "max_in_flight": 2, "restart": {"stash": 3},
                "config": {"probe": "narrow", "answers": {"user_may_invite": {"answer": "NOT_SPAM", "gate": "narrow-gate"}}}}]),
    );
    let worker = Worker::start(&TestGlia::config(&yaml).unwrap())
        .await
        .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let subject = subjects::module_subject("narrow", glia_bus_schema::Callback::UserMayInvite);
    let deadline = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let ask = |i: usize| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(subjects::headers::REQUEST_ID, format!("r{i}").as_str());
        headers.insert(subjects::headers::DEADLINE, deadline.as_str());
        let body = json!({"request_id": format!("r{i}"), "deadline_ms": 1, "callback": "user_may_invite",
                          "args": {"inviter": "@a:hs", "invitee": "@b:hs", "room_id": "!r:hs"}});
        let request = async_nats::Request::new()
            .payload(body.to_string().into())
            .headers(headers)
            .timeout(None);
        let client = client.clone();
        let subject = subject.clone();
        async move {
            let reply = client.send_request(subject, request).await.unwrap();
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };
    let replies = Arc::new(std::sync::Mutex::new(Vec::new()));
    for i in 0..20 {
        let (replies, asked) = (replies.clone(), ask(i));
        actix_rt::spawn(async move {
            let reply = asked.await;
            replies.lock().unwrap().push(reply);
        });
    }
    // Fifteen are refused at once, with the module still holding the first five.
    until(|| replies.lock().unwrap().len() == 15).await;
    for reply in replies.lock().unwrap().iter() {
        assert_eq!(reply["result"]["error"]["kind"], "unavailable", "{reply}");
        assert!(
            reply["result"]["error"]["reason"]
                .as_str()
                .unwrap()
                .contains("at capacity"),
            "{reply}"
        );
    }
    until(|| glia_tests::probes::started("narrow") == 2).await;
    open_gate("narrow-gate", 5);
    until(|| replies.lock().unwrap().len() == 20).await;
    let held: Vec<Value> = replies.lock().unwrap()[15..].to_vec();
    for reply in &held {
        assert_eq!(
            reply["result"]["answer"],
            json!({"callback": "user_may_invite", "answer": "NOT_SPAM"}),
            "{reply}"
        );
    }
    assert_eq!(answered("narrow"), 5);
    worker.shutdown(Duration::from_millis(10)).await;
}

/// Worker ids announced on `glia.v1.workers.<module>`, once `n` distinct ones have been heard.
async fn announced(client: &async_nats::Client, module: &str, n: usize) -> Vec<String> {
    let mut announcements = client
        .subscribe(subjects::announce_subject(module))
        .await
        .unwrap();
    let mut ids = Vec::new();
    while ids.len() < n {
        let message = announcements.next().await.expect("announcements");
        let announcement: subjects::Announcement =
            serde_json::from_slice(&message.payload).unwrap();
        if !ids.contains(&announcement.worker) {
            ids.push(announcement.worker);
        }
    }
    ids
}

#[actix_rt::test]
async fn a_stopped_worker_soon_gets_no_more_work() {
    // SIGSTOP: connected, subscribed, silent. NATS would keep giving it half of the
    // invocations, each costing the module's timeout; the coordinator routes around it.
    let nats = NatsServer::start();
    let yaml = json!({"bus": {"type": "nats", "url": nats.url()}, "deadline": "10s", "modules": [
        {"module": "demo", "placement": "nats", "timeout": "1s", "failure_policy": "allow",
         "callbacks": ["user_may_create_room"]}
    ]})
    .to_string();
    let file = support::TempFile::new("stopped-worker.yaml", &yaml);
    let workers = [
        glia_tests::process::GliaProcess::worker(file.path(), &[], false),
        glia_tests::process::GliaProcess::worker(file.path(), &[], false),
    ];
    let client = async_nats::connect(nats.url()).await.unwrap();
    announced(&client, "demo", 2).await;
    let g = Arc::new(TestGlia::start(&yaml).await);
    let evil = || {
        CallbackRequest::UserMayCreateRoom(glia_bus_schema::requests::UserMayCreateRoom {
            user_id: "@evilguy:example.com".into(),
            room_config: Default::default(),
        })
    };
    // demo denies the evil user; a timeout resolves through the policy, allow.
    let by_demo = |reply: DispatchReply| match reply {
        DispatchReply::UserMayCreateRoom(d) => {
            serde_json::to_value(d).unwrap()["decision"] == "deny"
        }
        other => panic!("unexpected reply {other:?}"),
    };
    until_async(|| async { by_demo(g.dispatch(evil()).await) }).await;
    workers[0].signal("STOP");
    let replies: Vec<bool> = futures::stream::iter(0..200)
        .map(|_| {
            let g = g.clone();
            async move { by_demo(g.dispatch(evil()).await) }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    workers[0].signal("CONT");
    let timed_out = replies.iter().filter(|by_demo| !**by_demo).count();
    // Without the routing, about half would time out; here only what was in flight to the
    // stopped worker before the coordinator noticed (a few: four are in flight at a time).
    assert!(
        timed_out <= 20,
        "{timed_out} of 200 requests timed out on the stopped worker"
    );
    eprintln!("{timed_out} of 200 requests went to the stopped worker and timed out");
}

/// Waits until `cond` (asked again every 25 ms) holds.
async fn until_async<F: std::future::Future<Output = bool>>(mut cond: impl FnMut() -> F) {
    while !cond().await {
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
}

#[actix_rt::test]
async fn glia_starts_with_a_cluster_whose_first_server_is_down_and_waits_when_none_is_up() {
    let mut nats = NatsServer::start();
    let down = format!("nats://127.0.0.1:{}", glia_tests::nats::free_port());
    let yaml = |url: Value| {
        json!({"bus": {"type": "nats", "url": url}, "deadline": "30s", "modules": [
            remote_scripted("up", json!({"user_may_invite": {"answer": {"errcode": "M_UP"}}}))
        ]})
        .to_string()
    };
    // The first server of the list is down; the worker is given the list as one string.
    let listed = yaml(json!([down, nats.url()]));
    let worker =
        Worker::start(&TestGlia::config(&yaml(json!(format!("{down},{}", nats.url())))).unwrap())
            .await
            .expect("the worker starts");
    let g = TestGlia::start(&listed).await;
    assert_eq!(g.glia.bus_connected(), Some(true));
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await)["errcode"],
        "M_UP"
    );
    worker.shutdown(Duration::from_millis(10)).await;
    g.stop().await;

    // None is up: glia starts anyway, says so, and connects once one is.
    nats.stop();
    let g = TestGlia::start(&listed).await;
    let (_, health) = g.get("/health", None).await;
    assert_eq!(
        (health["status"].as_str(), health["bus"].as_str()),
        (Some("degraded"), Some("disconnected")),
        "{health}"
    );
    // Its remote module cannot describe itself yet, so it is not planned.
    assert_eq!(health["failed"], json!(["up"]), "{health}");
    nats.restart();
    until(|| g.glia.bus_connected() == Some(true)).await;
    let worker = Worker::start(&TestGlia::config(&listed).unwrap())
        .await
        .expect("the worker starts");
    until_async(|| async { decision(g.dispatch(invite("@a:hs")).await)["errcode"] == "M_UP" })
        .await;
    assert_eq!(g.get("/health", None).await.1["status"], "ok");
    worker.shutdown(Duration::from_millis(10)).await;
}

#[actix_rt::test]
async fn permissions_without_the_workers_own_subjects_keep_the_queue_groups() {
    // Permissions written before workers announced themselves: the coordinator may not
    // publish to a worker's own subjects. Invocations keep going to the queue group.
    let permissions = support::TempFile::new(
        "nats-permissions-old.conf",
        r#"authorization { users = [
             {user: worker, password: w, permissions: {publish: ["_INBOX.>", "glia.v1.workers.>"], subscribe: ["glia.v1.module.>", "glia.v1.worker.>"]}}
             {user: coordinator, password: c, permissions: {publish: ["glia.v1.module.>"], subscribe: ["_INBOX.>", "glia.v1.workers.*", "glia.v1.callbacks.*"]}}
           ] }"#,
    );
    let nats = NatsServer::start_with(&["-c", &permissions.path_str()]);
    let with = |user: &str, password: &str| {
        json!({"bus": {"type": "nats", "url": nats.url(), "user": user, "password": password},
               "modules": [{"module": "scripted", "name": "old", "placement": "nats", "timeout": "1s",
                            "failure_policy": "allow", "callbacks": ["user_may_invite"],
                            "config": {"answers": {"user_may_invite": {"answer": {"errcode": "M_OLD"}}}}}]})
        .to_string()
    };
    let worker = Worker::start(&TestGlia::config(&with("worker", "w")).unwrap())
        .await
        .expect("the worker starts");
    let g = TestGlia::start(&with("coordinator", "c")).await;
    // The worker announces itself every 100 ms; the coordinator hears it (give it a few
    // announcements) but may not use its subjects. Not one invocation may be lost on them.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        let reply = decision(g.dispatch(invite("@a:hs")).await);
        assert_eq!(reply["errcode"], "M_OLD", "{reply}");
    }
    worker.shutdown(Duration::from_millis(10)).await;
}

/// A worker told to stop while NATS is gone exits without waiting out its grace: a drain
/// needs the server, and nothing more can arrive. It used to wait all of `shutdown_grace`
/// (a container's stop timeout then killed it).
#[actix_rt::test]
async fn a_worker_stops_without_waiting_out_its_grace_when_nats_is_gone() {
    let mut nats = NatsServer::start();
    let yaml = json!({"bus": {"type": "nats", "url": nats.url()}, "shutdown_grace": "300s",
        "modules": [{"module": "demo", "placement": "nats", "callbacks": ["user_may_create_room"]}]})
    .to_string();
    let file = support::TempFile::new("nats-gone-worker.yaml", &yaml);
    let mut worker = glia_tests::process::GliaProcess::worker(file.path(), &[], false);
    let client = async_nats::connect(nats.url()).await.unwrap();
    announced(&client, "demo", 1).await;
    drop(client);
    nats.stop();
    worker.signal("TERM");
    // A liveness bound, far under the grace it used to wait.
    let bound = std::time::Instant::now() + Duration::from_secs(120);
    while !worker.exited() {
        assert!(
            std::time::Instant::now() < bound,
            "the worker is still stopping:\n{}",
            worker.log()
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        worker.log().contains("glia worker stopped"),
        "{}",
        worker.log()
    );
}
