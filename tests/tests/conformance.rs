//! Conformance: each reducer of spec §3.11 with scripted modules answering in different
//! orders and speeds, priorities, invalid answers, chaining, union, timeouts and failure
//! policies. Ordering is proved with gates (a module cannot answer until the test opens its
//! gate), never with timing.
//!
//! The same suite runs over the NATS bus with `GLIA_TEST_BUS=nats` (tests/run-all does): then
//! every module is placed on NATS and served by an in-process worker, against a real
//! nats-server. With `GLIA_TEST_PLACEMENT=embedded` it runs against the embedded placement:
//! glia started by `glia-embedded-engine`, every dispatch made from a thread standing in for
//! Synapse's, polled there once and finished on glia's thread, as the Python extension does.

use glia_bus_schema::requests::*;
use glia_bus_schema::{CallbackRequest, Decision, DispatchReply, Event};
use glia_runtime::app::StartOptions;
use glia_runtime::worker::Worker;
use glia_runtime::DispatchError;
use glia_tests::embedded::EmbeddedGlia;
use glia_tests::nats::NatsServer;
use glia_tests::probes::{answered, last_args, open_gate, started, until};
use glia_tests::TestGlia;
use serde_json::{json, Value};
use std::future::Future;

/// A config (JSON is YAML) with these module entries.
fn config(modules: Value) -> Value {
    json!({ "modules": modules })
}

/// glia for one test, on the bus `GLIA_TEST_BUS` names (`internal` unless it says `nats`),
/// in the placement `GLIA_TEST_PLACEMENT` names (glia's own process unless it says
/// `embedded`).
struct Launched {
    inner: TestGlia,
    embedded: Option<EmbeddedGlia>,
    _worker: Option<Worker>,
    _nats: Option<NatsServer>,
}

impl std::ops::Deref for Launched {
    type Target = TestGlia;
    fn deref(&self) -> &TestGlia {
        &self.inner
    }
}

impl Launched {
    /// Dispatches `request` as the placement under test does: from the stand-in for
    /// Synapse's thread when embedded, else straight to the coordinator.
    async fn try_dispatch(&self, request: CallbackRequest) -> Result<DispatchReply, DispatchError> {
        match &self.embedded {
            Some(embedded) => embedded.dispatch(request).await,
            None => {
                let coordinator = self.glia.coordinator();
                coordinator.dispatch(request, coordinator.new_meta()).await
            }
        }
    }

    /// [`Launched::try_dispatch`], panicking on a refusal.
    async fn dispatch(&self, request: CallbackRequest) -> DispatchReply {
        self.try_dispatch(request)
            .await
            .unwrap_or_else(|e| panic!("dispatch refused: {e}"))
    }

    /// Dispatches `args` (JSON) to `callback` and returns the reply as JSON.
    async fn dispatch_json(&self, callback: &str, args: Value) -> Value {
        let callback = callback.parse().expect("a callback name");
        let request = CallbackRequest::from_args(callback, args).expect("valid arguments");
        serde_json::to_value(self.dispatch(request).await).expect("replies serialise")
    }
}

/// Starts glia from `config`; over NATS, every module is placed on NATS and served by a
/// worker started first (so the coordinator finds it when it asks). With
/// `GLIA_TEST_INSTANCES=per_thread` every module glia builds runs an instance on each
/// dispatching thread, so its synchronous answers take the path with no thread hop.
async fn try_launch(mut config: Value) -> Result<Launched, String> {
    if let Ok(instances) = std::env::var("GLIA_TEST_INSTANCES") {
        for module in config["modules"].as_array_mut().into_iter().flatten() {
            if module["module"] != "remote" && module.get("instances").is_none() {
                module["instances"] = json!(instances);
            }
        }
    }
    let (nats, worker) = match std::env::var("GLIA_TEST_BUS").as_deref() {
        Ok("nats") => {
            let (nats, worker) = on_nats(&mut config).await;
            (Some(nats), worker)
        }
        _ => (None, None),
    };
    let yaml = config.to_string();
    let (inner, embedded) = match std::env::var("GLIA_TEST_PLACEMENT").as_deref() {
        Ok("embedded") => {
            let config = TestGlia::config(&yaml).unwrap_or_else(|e| panic!("bad test config: {e}"));
            let embedded = EmbeddedGlia::start(config, StartOptions::default()).await?;
            // Its HTTP API (the listing) from this thread; its dispatches go the embedded way.
            (TestGlia::serve(embedded.glia().clone()), Some(embedded))
        }
        _ => (
            TestGlia::try_start(&yaml)
                .await
                .map_err(|e| e.to_string())?,
            None,
        ),
    };
    Ok(Launched {
        inner,
        embedded,
        _worker: worker,
        _nats: nats,
    })
}

/// Places every module of `config` on the NATS bus of a fresh nats-server, served by a
/// worker started here.
async fn on_nats(config: &mut Value) -> (NatsServer, Option<Worker>) {
    let nats = NatsServer::start();
    config["bus"] = json!({"type": "nats", "url": nats.url()});
    for module in config["modules"].as_array_mut().into_iter().flatten() {
        module["placement"] = json!("nats");
    }
    let hosts_any = config["modules"].as_array().is_some_and(|m| !m.is_empty());
    let worker = match hosts_any {
        true => Some(
            Worker::start(&TestGlia::config(&config.to_string()).expect("a valid test config"))
                .await
                .expect("the worker starts"),
        ),
        false => None,
    };
    (nats, worker)
}

async fn launch(config: Value) -> Launched {
    try_launch(config)
        .await
        .unwrap_or_else(|e| panic!("glia did not start: {e}"))
}

/// A scripted module entry.
fn scripted(name: &str, answers: Value) -> Value {
    json!({ "module": "scripted", "name": name, "config": { "probe": name, "answers": answers } })
}

async fn start(modules: Value) -> Launched {
    launch(config(modules)).await
}

fn invite() -> CallbackRequest {
    CallbackRequest::UserMayInvite(UserMayInvite {
        inviter: "@a:hs".into(),
        invitee: "@b:hs".into(),
        room_id: "!r:hs".into(),
    })
}

fn event(sender: &str) -> Event {
    serde_json::from_value(json!({
        "event_id": "$e", "room_id": "!r:hs", "sender": sender, "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "hello"}
    }))
    .unwrap()
}

fn to_json(reply: impl serde::Serialize) -> Value {
    serde_json::to_value(reply).unwrap()
}

fn deny_json(errcode: &str, error: &str, module: &str) -> Value {
    json!({"decision": "deny", "errcode": errcode, "error": error, "fields": {}, "module": module})
}

const INVITE_DENIED: &str = "Invites have been disabled on this server";

fn module_message(error: &str) -> Value {
    json!({"decision": "deny", "errcode": "M_FORBIDDEN", "error": error, "fields": {}, "module": "map", "module_message": true})
}

// ----- FirstDeny: ordered resolution -------------------------------------------------------

#[actix_rt::test]
async fn fast_deny_from_the_first_module_does_not_wait_for_a_slow_second() {
    let g = start(json!([
        scripted(
            "fd1-m1",
            json!({"user_may_invite": {"answer": {"errcode": "M_FORBIDDEN"}}})
        ),
        scripted(
            "fd1-m2",
            json!({"user_may_invite": {"answer": "NOT_SPAM", "gate": "fd1-never"}})
        ),
    ]))
    .await;
    let reply = g.dispatch(invite()).await;
    assert_eq!(
        to_json(reply),
        deny_json("M_FORBIDDEN", INVITE_DENIED, "fd1-m1")
    );
    // The second module was asked (fan-out is parallel) but the answer did not wait for it.
    assert_eq!(answered("fd1-m2"), 0);
}

#[actix_rt::test]
async fn a_later_deny_waits_for_the_earlier_modules_allow() {
    let g = start(json!([
        scripted(
            "fd2-m1",
            json!({"user_may_invite": {"answer": "NOT_SPAM", "gate": "fd2-g1"}})
        ),
        scripted(
            "fd2-m2",
            json!({"user_may_invite": {"answer": {"errcode": "M_LIMIT_EXCEEDED"}}})
        ),
    ]))
    .await;
    let g = std::sync::Arc::new(g);
    let g2 = g.clone();
    let pending = actix_rt::spawn(async move { g2.dispatch(invite()).await });
    until(|| answered("fd2-m2") == 1).await;
    // Module 2 has denied, but module 1 has not answered: nothing is decided yet.
    actix_rt::task::yield_now().await;
    assert!(!pending.is_finished(), "decided before module 1 answered");
    open_gate("fd2-g1", 1);
    let reply = pending.await.unwrap();
    assert_eq!(
        to_json(reply),
        deny_json("M_LIMIT_EXCEEDED", INVITE_DENIED, "fd2-m2")
    );
}

#[actix_rt::test]
async fn the_first_deny_in_order_wins_even_when_a_later_one_is_faster() {
    let g = start(json!([
        scripted(
            "fd3-m1",
            json!({"user_may_invite": {"answer": {"errcode": "M_ONE"}, "gate": "fd3-g1"}})
        ),
        scripted(
            "fd3-m2",
            json!({"user_may_invite": {"answer": {"errcode": "M_TWO"}}})
        ),
    ]))
    .await;
    let g = std::sync::Arc::new(g);
    let g2 = g.clone();
    let pending = actix_rt::spawn(async move { g2.dispatch(invite()).await });
    until(|| answered("fd3-m2") == 1).await;
    open_gate("fd3-g1", 1);
    assert_eq!(
        to_json(pending.await.unwrap()),
        deny_json("M_ONE", INVITE_DENIED, "fd3-m1")
    );
}

/// The longest timeout the config takes (half a million years) bounds nothing: the
/// request's deadline does, for an answer at once and for one that takes a while.
#[actix_rt::test]
async fn the_longest_module_timeout_leaves_the_request_deadline() {
    let mut now = scripted("lt-m1", json!({"user_may_invite": {"answer": "NOT_SPAM"}}));
    let mut later = scripted(
        "lt-m2",
        json!({"user_may_invite": {"answer": "NOT_SPAM", "delay_ms": 20}}),
    );
    now["timeout"] = json!("500000000d");
    later["timeout"] = json!("500000000d");
    let g = start(json!([now, later])).await;
    assert_eq!(
        to_json(g.dispatch(invite()).await),
        json!({"decision": "allow"})
    );
}

#[actix_rt::test]
async fn all_allow_is_allow_and_no_modules_is_allow() {
    let g = start(json!([
        scripted("fd4-m1", json!({"user_may_invite": {"answer": "NOT_SPAM"}})),
        scripted("fd4-m2", json!({"user_may_invite": {"answer": true}})),
    ]))
    .await;
    assert_eq!(
        to_json(g.dispatch(invite()).await),
        json!({"decision": "allow"})
    );
    let empty = start(json!([])).await;
    assert_eq!(
        to_json(empty.dispatch(invite()).await),
        json!({"decision": "allow"})
    );
}

#[actix_rt::test]
async fn priority_overrides_config_order() {
    let g = start(json!([
        scripted("pr-m1", json!({"user_may_invite": {"answer": {"errcode": "M_FIRST_IN_CONFIG"}}})),
        {
            "module": "scripted", "name": "pr-m2", "priority": 10,
            "config": {"answers": {"user_may_invite": {"answer": {"errcode": "M_HIGH_PRIORITY"}}}}
        },
        {
            "module": "scripted", "name": "pr-m3", "priority": -5,
            "config": {"answers": {"user_may_invite": {"answer": {"errcode": "M_LOW"}}}}
        },
    ]))
    .await;
    assert_eq!(
        to_json(g.dispatch(invite()).await),
        deny_json("M_HIGH_PRIORITY", INVITE_DENIED, "pr-m2")
    );
    let plan = g.glia.plan_listing();
    let order: Vec<&str> = plan["user_may_invite"]["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["pr-m2", "pr-m1", "pr-m3"]);
}

/// Counts the wake-ups of the task it is the waker of.
struct WakeCount(std::sync::atomic::AtomicUsize);

impl futures::task::ArcWake for WakeCount {
    fn wake_by_ref(me: &std::sync::Arc<Self>) {
        me.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A dispatch waiting on its modules asks to be polled again only when one answers. A
/// dispatch that woke its own caller while waiting was polled twice for nothing, and callers
/// that poll many futures (actix, `buffer_unordered`) took it for a request to yield and
/// yielded after every two: over NATS that split bursts of invocations into writes of two.
#[actix_rt::test]
async fn a_waiting_dispatch_wakes_its_caller_only_when_a_module_answers() {
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll};
    let g = start(json!([
        scripted(
            "sw-m1",
            json!({"user_may_invite": {"answer": "NOT_SPAM", "gate": "sw-g1"}})
        ),
        scripted(
            "sw-m2",
            json!({"user_may_invite": {"answer": "NOT_SPAM", "gate": "sw-g2"}})
        ),
    ]))
    .await;
    let wakes = std::sync::Arc::new(WakeCount(0.into()));
    let waker = futures::task::waker(wakes.clone());
    let mut dispatch = Box::pin(g.dispatch(invite()));
    // Polled by hand, never because of a wake-up, so the count is only what the dispatch asked.
    let mut poll = || dispatch.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(poll().is_pending());
    until(|| started("sw-m1") == 1 && started("sw-m2") == 1).await;
    for _ in 0..3 {
        assert!(poll().is_pending());
        actix_rt::task::yield_now().await;
    }
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "woken with no answer");
    open_gate("sw-g1", 1);
    open_gate("sw-g2", 1);
    until(|| wakes.0.load(Ordering::SeqCst) > 0).await;
    let reply = loop {
        if let Poll::Ready(reply) = poll() {
            break reply;
        }
        actix_rt::task::yield_now().await;
    };
    assert_eq!(to_json(reply), json!({"decision": "allow"}));
}

// ----- Answer mapping (spec §3.1 normalisation table) --------------------------------------

/// One module answering `answer` to `callback`; the decision as JSON.
async fn single_answer(callback: &str, args: Value, answer: Value) -> Value {
    let g = start(json!([scripted(
        "map",
        json!({ callback: {"answer": answer} })
    )]))
    .await;
    g.dispatch_json(callback, args).await
}

#[actix_rt::test]
async fn check_event_for_spam_answers_map_as_synapse_maps_them() {
    let args = json!({"event": event("@u:hs")});
    let spam = "This message has been rejected as probable spam";
    let cases = [
        (json!("NOT_SPAM"), json!({"decision": "allow"})),
        (json!(false), json!({"decision": "allow"})),
        (json!(true), deny_json("M_FORBIDDEN", spam, "map")),
        (
            json!({"errcode": "M_LIMIT_EXCEEDED"}),
            deny_json("M_LIMIT_EXCEEDED", spam, "map"),
        ),
        (
            json!({"errcode": "M_LIMIT_EXCEEDED", "fields": {"extra": "value"}}),
            json!({"decision": "deny", "errcode": "M_LIMIT_EXCEEDED", "error": spam, "fields": {"extra": "value"}, "module": "map"}),
        ),
        // The deprecated plain string is the client's message: Synapse shows it only when
        // handed the string, so the reply says the message is the module's.
        (json!({"message": "go away"}), module_message("go away")),
        (json!("no spam please"), module_message("no spam please")),
        (json!({"message": "NOT_SPAM"}), json!({"decision": "allow"})),
        (json!(null), deny_json("M_FORBIDDEN", spam, "map")),
        (json!(42), deny_json("M_FORBIDDEN", spam, "map")),
    ];
    for (answer, expected) in cases {
        assert_eq!(
            single_answer("check_event_for_spam", args.clone(), answer.clone()).await,
            expected,
            "answer {answer}"
        );
    }
}

#[actix_rt::test]
async fn user_may_answers_map_with_inverted_booleans_and_none_denies() {
    let args = json!({"inviter": "@a:hs", "invitee": "@b:hs", "room_id": "!r:hs"});
    let cases = [
        (json!("NOT_SPAM"), json!({"decision": "allow"})),
        (json!(true), json!({"decision": "allow"})),
        (json!(false), deny_json("M_FORBIDDEN", INVITE_DENIED, "map")),
        (json!(null), deny_json("M_FORBIDDEN", INVITE_DENIED, "map")),
        (
            json!("M_FORBIDDEN"),
            deny_json("M_FORBIDDEN", INVITE_DENIED, "map"),
        ),
        (
            json!({"errcode": "M_LIMIT_EXCEEDED", "fields": {"retry_after_ms": 5}}),
            json!({"decision": "deny", "errcode": "M_LIMIT_EXCEEDED", "error": INVITE_DENIED, "fields": {"retry_after_ms": 5}, "module": "map"}),
        ),
    ];
    for (answer, expected) in cases {
        assert_eq!(
            single_answer("user_may_invite", args.clone(), answer.clone()).await,
            expected,
            "answer {answer}"
        );
    }
}

#[actix_rt::test]
async fn strict_and_field_dropping_callbacks() {
    let state = json!({"user_id": "@a:hs", "room_id": "!r:hs", "event_type": "m.room.topic", "state_key": "", "content": {}});
    let msg = "You are not permitted to send the state event";
    // user_may_send_state_event: a bare code denies with it; a tuple and booleans are M_FORBIDDEN.
    for (answer, code) in [
        (json!({"errcode": "M_CUSTOM"}), "M_CUSTOM"),
        (json!({"errcode": "M_CUSTOM", "fields": {}}), "M_FORBIDDEN"),
        (json!(true), "M_FORBIDDEN"),
    ] {
        assert_eq!(
            single_answer("user_may_send_state_event", state.clone(), answer).await,
            deny_json(code, msg, "map")
        );
    }
    // check_login_for_spam: only NOT_SPAM allows.
    let login =
        json!({"user_id": "@a:hs", "request_info": [{"user_agent": null, "ip": "127.0.0.1"}]});
    assert_eq!(
        single_answer("check_login_for_spam", login.clone(), json!(true)).await,
        deny_json("M_FORBIDDEN", "Login was blocked by the server", "map")
    );
    assert_eq!(
        single_answer("check_login_for_spam", login, json!("NOT_SPAM")).await,
        json!({"decision": "allow"})
    );
    // check_media_file_for_spam: the tuple's dict is ignored.
    let media = json!({"file_info": {"server_name": null, "file_id": "abc", "url_cache": false, "thumbnail": null}});
    assert_eq!(
        single_answer(
            "check_media_file_for_spam",
            media,
            json!({"errcode": "M_X", "fields": {"a": 1}})
        )
        .await,
        deny_json("M_X", "Bad content", "map")
    );
}

#[actix_rt::test]
async fn truthiness_and_is_false_callbacks() {
    let drop = json!({"event": event("@u:remote")});
    assert_eq!(
        single_answer("should_drop_federated_event", drop.clone(), json!(false)).await,
        json!({"decision": "allow"})
    );
    assert_eq!(
        single_answer("should_drop_federated_event", drop.clone(), json!("")).await,
        json!({"decision": "allow"})
    );
    assert_eq!(
        single_answer("should_drop_federated_event", drop, json!("spam")).await["decision"],
        "deny"
    );
    // Only `false` denies a third-party check; null allows.
    let shutdown = json!({"user_id": null, "room_id": "!r:hs"});
    assert_eq!(
        single_answer("check_can_shutdown_room", shutdown.clone(), json!(null)).await,
        json!({"decision": "allow"})
    );
    assert_eq!(
        single_answer("check_can_shutdown_room", shutdown, json!(false)).await,
        deny_json("M_FORBIDDEN", "Shutdown of this room is forbidden", "map")
    );
    // is_3pid_allowed: a non-bool is treated as allow.
    let tpid = json!({"medium": "email", "address": "a@b.c", "registration": true});
    assert_eq!(
        single_answer("is_3pid_allowed", tpid.clone(), json!("yes")).await,
        json!({"decision": "allow"})
    );
    assert_eq!(
        single_answer("is_3pid_allowed", tpid, json!(false)).await["errcode"],
        "M_THREEPID_DENIED"
    );
}

#[actix_rt::test]
async fn registration_behaviour_first_non_allow_wins() {
    let g = start(json!([
        scripted(
            "reg-m1",
            json!({"check_registration_for_spam": {"answer": "allow"}})
        ),
        scripted(
            "reg-m2",
            json!({"check_registration_for_spam": {"answer": "shadow_ban"}})
        ),
        scripted(
            "reg-m3",
            json!({"check_registration_for_spam": {"answer": "deny"}})
        ),
    ]))
    .await;
    let reply = g
        .dispatch_json("check_registration_for_spam", json!({"username": "x"}))
        .await;
    assert_eq!(
        reply,
        json!({"behaviour": "shadow_ban", "module": "reg-m2"})
    );
}

#[actix_rt::test]
async fn check_event_allowed_replacement_stops_and_false_denies() {
    let replacement = json!({"room_id": "!r:hs", "sender": "@u:hs", "type": "m.room.message", "content": {"body": "***"}});
    let g = start(json!([
        scripted("cea-m1", json!({"check_event_allowed": {"answer": {"allowed": true}}})),
        scripted("cea-m2", json!({"check_event_allowed": {"answer": {"allowed": true, "replacement": replacement}}})),
        scripted("cea-m3", json!({"check_event_allowed": {"answer": {"allowed": false}}})),
    ]))
    .await;
    let args = json!({"event": event("@u:hs"), "state_events": []});
    let reply = g.dispatch_json("check_event_allowed", args.clone()).await;
    assert_eq!(
        reply,
        json!({"decision": "allow", "replacement": replacement, "module": "cea-m2"})
    );

    let g = start(json!([
        scripted("cea2-m1", json!({"check_event_allowed": {"answer": {}}})),
        scripted(
            "cea2-m2",
            json!({"check_event_allowed": {"answer": {"allowed": false}}})
        ),
    ]))
    .await;
    assert_eq!(
        g.dispatch_json("check_event_allowed", args).await,
        deny_json(
            "M_FORBIDDEN",
            "This event is not allowed in this context",
            "cea2-m2"
        )
    );
}

/// Synapse's own wrapper asks the `user_may_invite` modules once every
/// `federated_user_may_invite` module has allowed; through the bridge it asks glia's
/// `user_may_invite` too. So glia answers `federated_user_may_invite` with its own modules
/// only: one fall-through, Synapse's.
#[actix_rt::test]
async fn a_federated_invite_asks_only_its_own_modules() {
    let g = start(json!([
        scripted(
            "fed-m1",
            json!({"federated_user_may_invite": {"answer": "NOT_SPAM"}})
        ),
        scripted("fed-m2", json!({"user_may_invite": {"answer": false}})),
    ]))
    .await;
    let mut invite = event("@remote:other");
    invite.event_type = "m.room.member".into();
    invite.state_key = Some("@local:hs".into());
    let reply = g
        .dispatch_json("federated_user_may_invite", json!({ "event": invite }))
        .await;
    assert_eq!(reply, json!({"decision": "allow"}));
    assert_eq!(started("fed-m1"), 1);
    assert_eq!(
        started("fed-m2"),
        0,
        "user_may_invite is the homeserver's fall-through"
    );

    let g = start(json!([scripted(
        "fed2-m1",
        json!({"federated_user_may_invite": {"answer": {"errcode": "M_FORBIDDEN"}}})
    )]))
    .await;
    assert_eq!(
        g.dispatch_json("federated_user_may_invite", json!({ "event": invite }))
            .await,
        deny_json(
            "M_FORBIDDEN",
            "This user is not permitted to send invites to this server/user",
            "fed2-m1"
        )
    );
}

// ----- FirstNonNone -------------------------------------------------------------------------

#[actix_rt::test]
async fn is_user_expired_takes_the_first_non_none() {
    let g = start(json!([
        scripted("fnn-m1", json!({"is_user_expired": {"answer": null}})),
        scripted("fnn-m2", json!({"is_user_expired": {"answer": true}})),
        scripted("fnn-m3", json!({"is_user_expired": {"answer": false}})),
    ]))
    .await;
    assert_eq!(
        g.dispatch_json("is_user_expired", json!({"user_id": "@u:hs"}))
            .await,
        json!({"expired": true, "module": "fnn-m2"})
    );
    let g = start(json!([scripted(
        "fnn2-m1",
        json!({"is_user_expired": {"answer": null}})
    )]))
    .await;
    assert_eq!(
        g.dispatch_json("is_user_expired", json!({"user_id": "@u:hs"}))
            .await,
        json!({"expired": null})
    );
}

#[actix_rt::test]
async fn an_expiry_reply_holds_until_the_earliest_lifetime_of_the_modules_consulted() {
    let lasting = |expired: Value, until: u64| json!({"is_user_expired": {"answer": {"expired": expired, "valid_until_ms": until}}});
    let user = || json!({"user_id": "@u:hs"});
    // A lasting reply names the generation of the routing it was decided under.
    let of_generation = |g: &Launched, mut reply: Value| {
        let generation = reply
            .as_object_mut()
            .and_then(|r| r.remove("generation"))
            .unwrap_or_else(|| panic!("a lasting reply without its generation: {reply}"));
        assert_eq!(generation, json!(&*g.glia.coordinator().generation()));
        reply
    };
    // m1 has no opinion until 3000, m2 decides until 2000, m3 is never consulted.
    let g = start(json!([
        scripted("life-m1", lasting(Value::Null, 3000)),
        scripted("life-m2", lasting(json!(false), 2000)),
        scripted("life-m3", json!({"is_user_expired": {"answer": true}})),
    ]))
    .await;
    assert_eq!(
        of_generation(&g, g.dispatch_json("is_user_expired", user()).await),
        json!({"expired": false, "module": "life-m2", "valid_until_ms": 2000})
    );
    // A consulted module that gives no lifetime: the reply holds for this request only.
    let g = start(json!([
        scripted("life2-m1", json!({"is_user_expired": {"answer": null}})),
        scripted("life2-m2", lasting(json!(false), 2000)),
    ]))
    .await;
    assert_eq!(
        g.dispatch_json("is_user_expired", user()).await,
        json!({"expired": false, "module": "life2-m2"})
    );
    // Nobody has an opinion, each for a while: that holds until the earliest.
    let g = start(json!([
        scripted("life3-m1", lasting(Value::Null, 900)),
        scripted("life3-m2", lasting(Value::Null, 700)),
    ]))
    .await;
    assert_eq!(
        of_generation(&g, g.dispatch_json("is_user_expired", user()).await),
        json!({"expired": null, "valid_until_ms": 700})
    );
    // A module that failed (policy allow) was skipped: its answer could have decided.
    let g = start(json!([
        {"module": "scripted", "name": "life4-m1", "failure_policy": "allow",
         "config": {"probe": "life4-m1", "answers": {"is_user_expired": {"fail": {"message": "boom"}}}}},
        scripted("life4-m2", lasting(json!(false), 2000)),
    ]))
    .await;
    assert_eq!(
        g.dispatch_json("is_user_expired", user()).await,
        json!({"expired": false, "module": "life4-m2"})
    );
}

#[actix_rt::test]
async fn registration_names_skip_non_strings() {
    let g = start(json!([
        scripted(
            "name-m1",
            json!({"get_username_for_registration": {"answer": 42}})
        ),
        scripted(
            "name-m2",
            json!({"get_username_for_registration": {"answer": "rin-foo"}})
        ),
    ]))
    .await;
    assert_eq!(
        g.dispatch_json(
            "get_username_for_registration",
            json!({"uia_results": {}, "params": {}})
        )
        .await,
        json!({"name": "rin-foo", "module": "name-m2"})
    );
}

#[actix_rt::test]
async fn auth_checkers_by_login_type_see_exactly_their_fields() {
    let g = start(json!([
        {"module": "scripted", "name": "auth-m1", "config": {"probe": "auth-m1", "auth_checkers": {
            "com.example.login": {"fields": ["secret"], "answer": null}}}},
        {"module": "scripted", "name": "auth-m2", "config": {"probe": "auth-m2", "auth_checkers": {
            "com.example.login": {"fields": ["secret"], "answer": {"user_id": "@u:hs"}}}}},
    ]))
    .await;
    let args = json!({"username": "u", "login_type": "com.example.login", "login_dict": {"secret": "s", "other": 1}});
    assert_eq!(
        g.dispatch_json("check_auth", args).await,
        json!({"user_id": "@u:hs", "module": "auth-m2"})
    );
    assert_eq!(
        last_args("auth-m2").unwrap()["login_dict"],
        json!({"secret": "s"})
    );

    let missing = CallbackRequest::from_args(
        "check_auth".parse().unwrap(),
        json!({"username": "u", "login_type": "com.example.login", "login_dict": {}}),
    )
    .unwrap();
    let err = g.try_dispatch(missing).await.unwrap_err();
    assert_eq!((err.status, err.errcode), (400, "M_MISSING_PARAM"));
    assert!(err.error.contains("secret"), "{}", err.error);

    let unknown = json!({"username": "u", "login_type": "m.login.nobody", "login_dict": {}});
    assert_eq!(
        g.dispatch_json("check_auth", unknown).await,
        json!({"user_id": null})
    );
}

/// Synapse accepts one login type registered by two modules with different field lists: a
/// login must carry the later list's fields, those alone are passed, and both modules are
/// asked (its check compares the login type with the earlier list, not the lists).
#[actix_rt::test]
async fn one_login_type_with_two_field_lists_takes_the_later_and_asks_both() {
    let g = start(json!([
        {"module": "scripted", "name": "af-m1", "config": {"probe": "af-m1", "auth_checkers": {"t": {"fields": ["a"], "answer": null}}}},
        {"module": "scripted", "name": "af-m2", "config": {"probe": "af-m2", "auth_checkers": {"t": {"fields": ["b"], "answer": {"user_id": "@u:hs"}}}}},
    ]))
    .await;
    let args = json!({"username": "u", "login_type": "t", "login_dict": {"a": 1, "b": 2}});
    assert_eq!(
        g.dispatch_json("check_auth", args).await,
        json!({"user_id": "@u:hs", "module": "af-m2"})
    );
    assert_eq!(
        last_args("af-m1").unwrap()["login_dict"],
        json!({"b": 2}),
        "asked too, with the later fields"
    );
    assert_eq!(last_args("af-m2").unwrap()["login_dict"], json!({"b": 2}));
    let only_earlier = CallbackRequest::from_args(
        "check_auth".parse().unwrap(),
        json!({"username": "u", "login_type": "t", "login_dict": {"a": 1}}),
    )
    .unwrap();
    let err = g.try_dispatch(only_earlier).await.unwrap_err();
    assert_eq!((err.status, err.errcode), (400, "M_MISSING_PARAM"));
}

/// Synapse's own refusal: the earlier field list names the login type itself.
#[actix_rt::test]
async fn a_login_type_whose_earlier_fields_name_it_refuses_other_fields_at_start() {
    let err = try_launch(config(json!([
        {"module": "scripted", "name": "af-m3", "config": {"auth_checkers": {"t": {"fields": ["t"], "answer": null}}}},
        {"module": "scripted", "name": "af-m4", "config": {"auth_checkers": {"t": {"fields": ["b"], "answer": null}}}},
    ])))
    .await
    .err()
    .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("login type \"t\"") && text.contains("af-m3") && text.contains("af-m4"),
        "{text}"
    );
}

// ----- Union --------------------------------------------------------------------------------

#[actix_rt::test]
async fn presence_router_union_merges_and_all_short_circuits() {
    let state = |user: &str| {
        json!({"user_id": user, "state": "online", "last_active_ts": 1, "last_federation_update_ts": 0,
        "last_user_sync_ts": 0, "status_msg": null, "currently_active": true})
    };
    let g = start(json!([
        scripted("un-m1", json!({
            "get_users_for_states": {"answer": {"@alice:hs": [state("@bob:hs")]}},
            "get_interested_users": {"answer": ["@bob:hs"]}})),
        scripted("un-m2", json!({
            "get_users_for_states": {"answer": {"@alice:hs": [state("@bob:hs"), state("@carol:hs")], "@dave:hs": [state("@bob:hs")]}},
            "get_interested_users": {"answer": ["@carol:hs", "@bob:hs"]}})),
        scripted("un-m3", json!({
            "get_users_for_states": {"panic": "router bug"},
            "get_interested_users": {"panic": "router bug"}})),
    ]))
    .await;
    let reply = g
        .dispatch_json(
            "get_users_for_states",
            json!({"state_updates": [state("@bob:hs"), state("@carol:hs")]}),
        )
        .await;
    assert_eq!(
        reply,
        json!({"users": {"@alice:hs": [state("@bob:hs"), state("@carol:hs")], "@dave:hs": [state("@bob:hs")]}})
    );
    // A crashing router is logged and skipped (spec §3.4).
    assert_eq!(
        g.dispatch_json("get_interested_users", json!({"user_id": "@alice:hs"}))
            .await,
        json!({"users": ["@bob:hs", "@carol:hs"]})
    );

    let g = start(json!([
        scripted(
            "all-m1",
            json!({"get_interested_users": {"answer": "ALL"}, "get_users_for_states": {"answer": {}}})
        ),
        scripted(
            "all-m2",
            json!({"get_interested_users": {"answer": ["@x:hs"], "gate": "all-never"}, "get_users_for_states": {"answer": {}}})
        ),
    ]))
    .await;
    assert_eq!(
        g.dispatch_json("get_interested_users", json!({"user_id": "@a:hs"}))
            .await,
        json!({"users": "ALL"})
    );
    assert_eq!(answered("all-m2"), 0);
}

// ----- RunAll -------------------------------------------------------------------------------

#[actix_rt::test]
async fn notifications_do_not_wait_for_modules_whose_failure_is_ignored() {
    let g = start(json!([
        scripted(
            "ra-m1",
            json!({"on_new_event": {"answer": null, "gate": "ra-never"}})
        ),
        scripted("ra-m2", json!({"on_new_event": {"answer": null}})),
    ]))
    .await;
    let reply = g
        .dispatch_json(
            "on_new_event",
            json!({"event": event("@u:hs"), "state_events": []}),
        )
        .await;
    assert_eq!(reply, json!({"decision": "allow"}));
    until(|| started("ra-m1") == 1 && started("ra-m2") == 1).await;
}

#[actix_rt::test]
async fn account_validity_notifications_propagate_failures() {
    let g = start(json!([
        scripted("ur-m1", json!({"on_user_registration": {"answer": null}})),
        scripted(
            "ur-m2",
            json!({"on_user_registration": {"fail": {"message": "database down"}}})
        ),
    ]))
    .await;
    let reply = g
        .dispatch_json("on_user_registration", json!({"user_id": "@u:hs"}))
        .await;
    assert_eq!(reply["decision"], "error");
    assert_eq!(reply["status"], 500);
    assert_eq!(reply["module"], "ur-m2");
    assert!(reply["error"].as_str().unwrap().contains("database down"));
}

// ----- SingleSlot -----------------------------------------------------------------------------

#[actix_rt::test]
async fn single_slot_callbacks() {
    let renew = json!({"valid": true, "stale": false, "expiry_ts": 123});
    let g = start(json!([scripted(
        "ss-m1",
        json!({"on_legacy_renew": {"answer": renew}})
    )]))
    .await;
    assert_eq!(
        g.dispatch_json("on_legacy_renew", json!({"renewal_token": "t"}))
            .await,
        json!({"value": renew, "module": "ss-m1"})
    );
    let none = start(json!([])).await;
    assert_eq!(
        none.dispatch_json("on_legacy_renew", json!({"renewal_token": "t"}))
            .await,
        json!({"value": null})
    );

    let err = try_launch(config(json!([
        scripted("ss2-m1", json!({"on_legacy_renew": {"answer": renew}})),
        scripted("ss2-m2", json!({"on_legacy_renew": {"answer": renew}})),
    ])))
    .await
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .contains("Tried to register on_legacy_renew twice"),
        "{err}"
    );
}

// ----- Chain ----------------------------------------------------------------------------------

fn create_room() -> Value {
    json!({"requester": {"user_id": "@u:hs"}, "request_content": {"name": "room"}, "is_requester_admin": false})
}

#[actix_rt::test]
async fn on_create_room_chains_edits_in_order() {
    let g = start(json!([
        scripted("ch-m1", json!({"on_create_room": {"append_to": "chain"}})),
        scripted("ch-m2", json!({"on_create_room": {"append_to": "chain"}})),
        scripted("ch-m3", json!({"on_create_room": {"answer": {}}})),
    ]))
    .await;
    let reply = g.dispatch_json("on_create_room", create_room()).await;
    assert_eq!(
        reply,
        json!({"decision": "allow", "request_content": {"name": "room", "chain": ["ch-m1", "ch-m2"]}})
    );
    // Each module saw the previous one's edits.
    assert_eq!(
        last_args("ch-m2").unwrap()["request_content"]["chain"],
        json!(["ch-m1"])
    );
    assert_eq!(
        last_args("ch-m3").unwrap()["request_content"]["chain"],
        json!(["ch-m1", "ch-m2"])
    );
}

#[actix_rt::test]
async fn on_create_room_refusals_and_failures() {
    let g = start(json!([
        scripted("cr-m1", json!({"on_create_room": {"answer": {"deny": {"status": 400, "errcode": "M_BAD_NAME", "error": "no"}}}})),
        scripted("cr-m2", json!({"on_create_room": {"answer": {}}})),
    ]))
    .await;
    assert_eq!(
        g.dispatch_json("on_create_room", create_room()).await,
        json!({"decision": "deny", "errcode": "M_BAD_NAME", "error": "no", "fields": {}, "module": "cr-m1", "status": 400})
    );
    // The chain stopped: the second module never ran.
    assert_eq!(started("cr-m2"), 0);

    // Synapse ignores the return value of a module registered with
    // register_third_party_rules_callbacks: `false` refuses only legacy modules (whose
    // adapter raises, i.e. sends `deny`).
    for ignored in [json!(false), json!(true)] {
        assert_eq!(
            single_answer("on_create_room", create_room(), ignored).await,
            json!({"decision": "allow", "request_content": {"name": "room"}})
        );
    }

    // Any exception denies (the default policy for on_create_room); a SynapseError is sent as is.
    let g = start(json!([scripted(
        "cr2",
        json!({"on_create_room": {"panic": "bug"}})
    )]))
    .await;
    assert_eq!(
        g.dispatch_json("on_create_room", create_room()).await,
        deny_json(
            "M_UNKNOWN",
            "Room creation forbidden with these parameters",
            "cr2"
        )
    );
    let g = start(json!([scripted(
        "cr3",
        json!({"on_create_room": {"fail": {"message": "x",
        "synapse_error": {"status": 400, "errcode": "M_INVALID_PARAM", "error": "bad preset"}}}})
    )]))
    .await;
    assert_eq!(
        g.dispatch_json("on_create_room", create_room()).await,
        json!({"decision": "deny", "errcode": "M_INVALID_PARAM", "error": "bad preset", "fields": {}, "module": "cr3", "status": 400})
    );
}

// ----- Timeouts and failure policies -------------------------------------------------------------

#[actix_rt::test]
async fn a_timeout_resolves_through_each_failure_policy() {
    for (policy, expected) in [
        (json!(null), "error"),
        (json!("allow"), "allow"),
        (json!("deny"), "deny"),
        (
            json!({"default": "allow", "user_may_invite": "deny"}),
            "deny",
        ),
        (json!({"user_may_create_room": "deny"}), "error"),
    ] {
        let mut entry = scripted("to-m1", json!({"user_may_invite": {"hang": true}}));
        entry["timeout"] = json!("30ms");
        if !policy.is_null() {
            entry["failure_policy"] = policy.clone();
        }
        let g = start(json!([entry])).await;
        let reply = to_json(g.dispatch(invite()).await);
        assert_eq!(reply["decision"], expected, "policy {policy}: {reply}");
        match expected {
            "error" => {
                assert_eq!(reply["status"], 500);
                assert_eq!(reply["errcode"], "M_UNKNOWN");
                assert!(
                    reply["error"].as_str().unwrap().contains("timed out"),
                    "{reply}"
                );
            }
            "deny" => assert_eq!(reply, deny_json("M_FORBIDDEN", INVITE_DENIED, "to-m1")),
            _ => {}
        }
    }
}

#[actix_rt::test]
async fn the_request_deadline_bounds_every_module() {
    let g = launch(json!({"deadline": "30ms", "modules": [
        {"module": "scripted", "name": "dl", "timeout": "1h", "config": {"answers": {"user_may_invite": {"hang": true}}}}
    ]}))
    .await;
    let reply = to_json(g.dispatch(invite()).await);
    assert_eq!(reply["decision"], "error");
    assert!(
        reply["error"].as_str().unwrap().contains("timed out"),
        "{reply}"
    );
}

#[actix_rt::test]
async fn defaults_reproduce_synapse_for_crashes() {
    // Spam checker: propagates (500). Third-party yes/no checks: fail open.
    let g = start(json!([scripted("cr-all", json!({
        "user_may_invite": {"panic": "boom"},
        "check_can_deactivate_user": {"panic": "boom"},
        "check_event_allowed": {"fail": {"message": "x", "synapse_error": {"status": 429, "errcode": "M_LIMIT_EXCEEDED", "error": "slow down"}}},
        "is_user_expired": {"fatal": "lost my database"},
    }))]))
    .await;
    let reply = to_json(g.dispatch(invite()).await);
    assert_eq!(
        (reply["decision"].as_str(), reply["status"].as_u64()),
        (Some("error"), Some(500))
    );
    assert!(
        reply["error"].as_str().unwrap().contains("crashed: boom"),
        "{reply}"
    );
    assert_eq!(
        g.dispatch_json(
            "check_can_deactivate_user",
            json!({"user_id": "@u:hs", "by_admin": false})
        )
        .await,
        json!({"decision": "allow"})
    );
    // check_event_allowed: a SynapseError passes through as is.
    assert_eq!(
        g.dispatch_json("check_event_allowed", json!({"event": event("@u:hs")}))
            .await,
        json!({"decision": "error", "status": 429, "errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "module": "cr-all", "synapse_error": true})
    );
    let expired = g
        .dispatch_json("is_user_expired", json!({"user_id": "@u:hs"}))
        .await;
    assert_eq!(expired["decision"], "error");
    assert!(
        expired["error"]
            .as_str()
            .unwrap()
            .contains("lost my database"),
        "{expired}"
    );
}

#[actix_rt::test]
async fn the_in_flight_bound_applies_back_pressure() {
    let mut entry = scripted(
        "bp",
        json!({"user_may_invite": {"answer": "NOT_SPAM", "gate": "bp-g"}}),
    );
    entry["max_in_flight"] = json!(1);
    let g = std::sync::Arc::new(start(json!([entry])).await);
    let (a, b) = (g.clone(), g.clone());
    let first = actix_rt::spawn(async move { a.dispatch(invite()).await });
    let second = actix_rt::spawn(async move { b.dispatch(invite()).await });
    until(|| started("bp") == 1).await;
    for _ in 0..20 {
        actix_rt::task::yield_now().await;
    }
    // The second invocation waits for a permit instead of queueing inside the module.
    assert_eq!(started("bp"), 1);
    open_gate("bp-g", 2);
    assert!(first.await.unwrap().is_allow_reply());
    assert!(second.await.unwrap().is_allow_reply());
    assert_eq!(answered("bp"), 2);
}

trait IsAllow {
    fn is_allow_reply(&self) -> bool;
}

impl IsAllow for glia_bus_schema::DispatchReply {
    fn is_allow_reply(&self) -> bool {
        matches!(
            self,
            glia_bus_schema::DispatchReply::UserMayInvite(Decision::Allow { .. })
        )
    }
}

// ----- Review follow-ups: deny where there is nothing to deny, SynapseError pass-through ----

#[actix_rt::test]
async fn deny_fails_the_request_where_the_callback_has_no_deny_answer() {
    // An auth checker that times out under `deny` must not answer "no user" (Synapse would
    // then try its own password database): the request fails instead.
    let g = start(json!([
        {"module": "scripted", "name": "dn-auth", "timeout": "20ms", "failure_policy": "deny",
         "config": {"auth_checkers": {"m.login.password": {"fields": ["password"], "hang": true}},
                    "answers": {"get_interested_users": {"hang": true}, "get_users_for_states": {"hang": true},
                                "on_legacy_renew": {"hang": true}}}},
    ]))
    .await;
    let auth =
        json!({"username": "u", "login_type": "m.login.password", "login_dict": {"password": "p"}});
    assert_eq!(
        g.dispatch_json("check_auth", auth).await["decision"],
        "error"
    );
    assert_eq!(
        g.dispatch_json("get_interested_users", json!({"user_id": "@a:hs"}))
            .await["decision"],
        "error"
    );
    assert_eq!(
        g.dispatch_json("on_legacy_renew", json!({"renewal_token": "t"}))
            .await["decision"],
        "error"
    );
}

#[actix_rt::test]
async fn synapse_errors_pass_through_only_where_synapse_lets_them() {
    let raise = json!({"fail": {"message": "x", "synapse_error": {"status": 403, "errcode": "M_FORBIDDEN", "error": "no"}}});
    let g = start(json!([scripted(
        "se",
        json!({"is_3pid_allowed": raise, "user_may_invite": raise})
    )]))
    .await;
    let tpid = g
        .dispatch_json(
            "is_3pid_allowed",
            json!({"medium": "email", "address": "a@b.c"}),
        )
        .await;
    assert_eq!(
        (tpid["status"].clone(), tpid["errcode"].clone()),
        (json!(500), json!("M_UNKNOWN")),
        "{tpid}"
    );
    let spam = to_json(g.dispatch(invite()).await);
    assert_eq!(
        (spam["status"].clone(), spam["errcode"].clone()),
        (json!(403), json!("M_FORBIDDEN")),
        "{spam}"
    );
}

// ----- A module's SynapseError: any error status, with its fields ---------------------------

#[actix_rt::test]
async fn synapse_errors_of_any_error_status_pass_with_their_fields() {
    let g = start(json!([scripted(
        "se2",
        json!({
            "user_may_invite": {"fail": {"message": "x", "synapse_error": {"status": 429, "errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "fields": {"retry_after_ms": 1500}}}},
            "user_may_create_room": {"fail": {"message": "x", "synapse_error": {"status": 503, "errcode": "ORG_EXAMPLE_BUSY", "error": "try later", "fields": {"org.example.why": "maintenance"}}}},
            "is_3pid_allowed": {"fail": {"message": "x", "synapse_error": {"status": 503, "errcode": "ORG_EXAMPLE_BUSY", "error": "try later"}}},
        })
    )]))
    .await;
    assert_eq!(
        to_json(g.dispatch(invite()).await),
        json!({"decision": "error", "status": 429, "errcode": "M_LIMIT_EXCEEDED", "error": "slow down",
               "fields": {"retry_after_ms": 1500}, "module": "se2", "synapse_error": true})
    );
    assert_eq!(
        g.dispatch_json(
            "user_may_create_room",
            json!({"user_id": "@u:hs", "room_config": {}})
        )
        .await,
        json!({"decision": "error", "status": 503, "errcode": "ORG_EXAMPLE_BUSY", "error": "try later",
               "fields": {"org.example.why": "maintenance"}, "module": "se2", "synapse_error": true})
    );
    // is_3pid_allowed: Synapse turns every exception into its own 500.
    let tpid = g
        .dispatch_json(
            "is_3pid_allowed",
            json!({"medium": "email", "address": "a@b.c"}),
        )
        .await;
    assert_eq!(
        (&tpid["status"], &tpid["errcode"], tpid.get("synapse_error")),
        (&json!(500), &json!("M_UNKNOWN"), None),
        "{tpid}"
    );
}

#[actix_rt::test]
async fn a_synapse_error_with_a_status_that_is_not_an_error_is_an_invalid_answer() {
    let raise = |status: u16| json!({"fail": {"message": "x", "synapse_error": {"status": status, "errcode": "M_FORBIDDEN", "error": "no"}}});
    let g = start(json!([scripted(
        "se3",
        json!({"user_may_invite": raise(200), "on_create_room": raise(302)})
    )]))
    .await;
    let reply = to_json(g.dispatch(invite()).await);
    assert_eq!(
        (
            &reply["decision"],
            &reply["status"],
            reply.get("synapse_error")
        ),
        (&json!("error"), &json!(500), None),
        "{reply}"
    );
    assert!(
        reply["error"].as_str().unwrap().contains("invalid answer"),
        "{reply}"
    );
    // on_create_room's default policy denies: the module's own "refusal" is not sent.
    assert_eq!(
        g.dispatch_json("on_create_room", create_room()).await,
        deny_json(
            "M_UNKNOWN",
            "Room creation forbidden with these parameters",
            "se3"
        )
    );
}

// ----- invoke: sequential ----------------------------------------------------------------------

fn sequential(name: &str, answers: Value) -> Value {
    let mut entry = scripted(name, answers);
    entry["invoke"] = json!("sequential");
    entry
}

#[actix_rt::test]
async fn a_sequential_module_after_a_deny_is_not_invoked() {
    let g = start(json!([
        scripted("sq1-m1", json!({"user_may_invite": {"answer": false}})),
        sequential("sq1-m2", json!({"user_may_invite": {"answer": "NOT_SPAM"}})),
        scripted("sq1-m3", json!({"user_may_invite": {"answer": "NOT_SPAM"}})),
    ]))
    .await;
    assert_eq!(
        to_json(g.dispatch(invite()).await),
        deny_json("M_FORBIDDEN", INVITE_DENIED, "sq1-m1")
    );
    // As in Synapse, the sequential module was never called; the parallel one was asked at
    // once (its answer ignored).
    assert_eq!(started("sq1-m2"), 0);
    until(|| started("sq1-m3") == 1).await;
}

#[actix_rt::test]
async fn a_sequential_module_is_invoked_once_the_modules_before_it_answered() {
    let g = start(json!([
        scripted(
            "sq2-m1",
            json!({"user_may_invite": {"answer": "NOT_SPAM", "gate": "sq2-g1"}})
        ),
        sequential(
            "sq2-m2",
            json!({"user_may_invite": {"answer": {"errcode": "M_TWO"}}})
        ),
    ]))
    .await;
    let g = std::sync::Arc::new(g);
    let g2 = g.clone();
    let pending = actix_rt::spawn(async move { g2.dispatch(invite()).await });
    until(|| started("sq2-m1") == 1).await;
    open_gate("sq2-g1", 1);
    until(|| started("sq2-m2") == 1).await;
    // Whenever the sequential module starts, the one before it has answered.
    assert_eq!(answered("sq2-m1"), 1);
    assert_eq!(
        to_json(pending.await.unwrap()),
        deny_json("M_TWO", INVITE_DENIED, "sq2-m2")
    );
}

#[actix_rt::test]
async fn a_parallel_module_is_invoked_before_the_modules_before_it_answer() {
    let g = start(json!([
        scripted(
            "sq3-m1",
            json!({"user_may_invite": {"answer": "NOT_SPAM", "gate": "sq3-g1"}})
        ),
        scripted("sq3-m2", json!({"user_may_invite": {"answer": "NOT_SPAM"}})),
    ]))
    .await;
    let g = std::sync::Arc::new(g);
    let g2 = g.clone();
    let pending = actix_rt::spawn(async move { g2.dispatch(invite()).await });
    until(|| started("sq3-m2") == 1).await;
    assert_eq!(answered("sq3-m1"), 0);
    open_gate("sq3-g1", 1);
    assert_eq!(
        to_json(pending.await.unwrap()),
        json!({"decision": "allow"})
    );
}

#[actix_rt::test]
async fn invoke_is_set_per_callback_and_in_the_defaults() {
    let g = launch(json!({
        "defaults": {"invoke": {"user_may_invite": "sequential"}},
        "modules": [
            scripted("sq4-m1", json!({"user_may_invite": {"answer": false}, "user_may_join_room": {"answer": false}})),
            scripted("sq4-m2", json!({"user_may_invite": {"answer": "NOT_SPAM"}, "user_may_join_room": {"answer": "NOT_SPAM"}})),
        ]
    }))
    .await;
    g.dispatch(invite()).await;
    assert_eq!(started("sq4-m2"), 0, "user_may_invite is sequential");
    g.dispatch_json(
        "user_may_join_room",
        json!({"user_id": "@u:hs", "room_id": "!r:hs", "is_invited": false}),
    )
    .await;
    until(|| started("sq4-m2") == 1).await;
    let (_, modules) = g.get("/_glia/v1/modules", None).await;
    let invoke = |callback: &str| {
        modules["plans"][callback]["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["invoke"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(invoke("user_may_invite"), ["sequential", "sequential"]);
    assert_eq!(invoke("user_may_join_room"), ["parallel", "parallel"]);
}

#[actix_rt::test]
async fn a_sequential_notification_after_a_failing_one_is_not_invoked() {
    let g = start(json!([
        scripted(
            "sq5-m1",
            json!({"on_user_registration": {"fail": {"message": "db down"}}})
        ),
        sequential("sq5-m2", json!({"on_user_registration": {"answer": null}})),
    ]))
    .await;
    let reply = g
        .dispatch_json("on_user_registration", json!({"user_id": "@new:hs"}))
        .await;
    assert_eq!(reply["decision"], "error", "{reply}");
    assert_eq!(started("sq5-m2"), 0);
}

// ----- The callbacks of spec §3.6–§3.10 ---------------------------------------------------------

#[actix_rt::test]
async fn media_config_is_the_first_truthy_answer() {
    let g = start(json!([
        scripted(
            "mc-m1",
            json!({"get_media_config_for_user": {"answer": {}}})
        ),
        scripted(
            "mc-m2",
            json!({"get_media_config_for_user": {"answer": null}})
        ),
        scripted(
            "mc-m3",
            json!({"get_media_config_for_user": {"answer": {"m.upload.size": 5}}})
        ),
        scripted(
            "mc-m4",
            json!({"get_media_config_for_user": {"answer": {"m.upload.size": 9}}})
        ),
    ]))
    .await;
    assert_eq!(
        g.dispatch_json("get_media_config_for_user", json!({"user_id": "@u:hs"}))
            .await,
        json!({"value": {"m.upload.size": 5}, "module": "mc-m3"})
    );
    let none = start(json!([scripted(
        "mc2",
        json!({"get_media_config_for_user": {"answer": {}}})
    )]))
    .await;
    assert_eq!(
        none.dispatch_json("get_media_config_for_user", json!({"user_id": "@u:hs"}))
            .await,
        json!({"value": null})
    );
}

#[actix_rt::test]
async fn an_upload_size_is_refused_by_the_first_falsy_answer_none_included() {
    let args = json!({"user_id": "@u:hs", "size": 1000});
    let too_large =
        |module: &str| deny_json("M_TOO_LARGE", "Upload request body is too large", module);
    for (answer, expected) in [
        (json!(true), json!({"decision": "allow"})),
        (json!(false), too_large("map")),
        (json!(null), too_large("map")),
        (json!(0), too_large("map")),
        (json!("yes"), json!({"decision": "allow"})),
    ] {
        assert_eq!(
            single_answer(
                "is_user_allowed_to_upload_media_of_size",
                args.clone(),
                answer.clone()
            )
            .await,
            expected,
            "answer {answer}"
        );
    }
}

#[actix_rt::test]
async fn upload_limits_are_the_first_answer_that_is_not_none_an_empty_list_included() {
    let limit =
        json!({"max_bytes": 10, "time_period_ms": 60000, "info_uri": null, "can_upgrade": false});
    let g = start(json!([
        scripted(
            "ul-m1",
            json!({"get_media_upload_limits_for_user": {"answer": null}})
        ),
        scripted(
            "ul-m2",
            json!({"get_media_upload_limits_for_user": {"answer": []}})
        ),
        scripted(
            "ul-m3",
            json!({"get_media_upload_limits_for_user": {"answer": [limit]}})
        ),
    ]))
    .await;
    assert_eq!(
        g.dispatch_json(
            "get_media_upload_limits_for_user",
            json!({"user_id": "@u:hs"})
        )
        .await,
        json!({"value": [], "module": "ul-m2"})
    );
}

#[actix_rt::test]
async fn a_failing_upload_limit_notification_fails_the_request_as_synapse_lets_it_propagate() {
    let g = start(json!([scripted(
        "ule",
        json!({"on_media_upload_limit_exceeded": {"fail": {"message": "quota db down"}}})
    )]))
    .await;
    let reply = g
        .dispatch_json(
            "on_media_upload_limit_exceeded",
            json!({"user_id": "@u:hs", "limit": {"max_bytes": 10, "time_period_ms": 1000}, "sent_bytes": 5, "attempted_bytes": 10}),
        )
        .await;
    assert_eq!(
        (&reply["decision"], &reply["status"]),
        (&json!("error"), &json!(500)),
        "{reply}"
    );
}

#[actix_rt::test]
async fn a_ratelimit_override_is_the_first_module_that_gives_one() {
    let g = start(json!([
        scripted("rl-m1", json!({"get_ratelimit_override_for_user": {"answer": null}})),
        scripted("rl-m2", json!({"get_ratelimit_override_for_user": {"answer": {"per_second": 0.5, "burst_count": 20}}})),
    ]))
    .await;
    assert_eq!(
        g.dispatch_json(
            "get_ratelimit_override_for_user",
            json!({"user_id": "@u:hs", "limiter_name": "rc_invites.per_room"})
        )
        .await,
        json!({"value": {"per_second": 0.5, "burst_count": 20}, "module": "rl-m2"})
    );
    assert_eq!(
        last_args("rl-m1").unwrap(),
        json!({"user_id": "@u:hs", "limiter_name": "rc_invites.per_room"})
    );
}

#[actix_rt::test]
async fn unsigned_fields_are_merged_in_order_a_later_module_winning() {
    let g = start(json!([
        scripted(
            "uf-m1",
            json!({"add_field_to_unsigned": {"answer": {"a": 1, "shared": "first"}}})
        ),
        scripted("uf-m2", json!({"add_field_to_unsigned": {"answer": {}}})),
        scripted(
            "uf-m3",
            json!({"add_field_to_unsigned": {"answer": {"b": 2, "shared": "third"}}})
        ),
    ]))
    .await;
    assert_eq!(
        g.dispatch_json("add_field_to_unsigned", json!({"event": event("@u:hs")}))
            .await,
        json!({"fields": {"a": 1, "b": 2, "shared": "third"}})
    );
    let failing = start(json!([scripted(
        "uf2",
        json!({"add_field_to_unsigned": {"fail": {"message": "boom"}}})
    )]))
    .await;
    assert_eq!(
        failing
            .dispatch_json("add_field_to_unsigned", json!({"event": event("@u:hs")}))
            .await["decision"],
        "error",
        "an exception propagates"
    );
}

#[actix_rt::test]
async fn the_first_background_update_controller_is_kept_whole_and_later_ones_ignored() {
    let update = json!({"update_name": "u", "database_name": "master"});
    let g = start(json!([
        scripted("bg-m1", json!({"on_update": {"answer": 250}})),
        scripted("bg-m2", json!({"on_update": {"answer": 900}, "default_batch_size": {"answer": 7}, "min_batch_size": {"answer": 3}})),
    ]))
    .await;
    let mut on_update = update.clone();
    on_update["one_shot"] = json!(false);
    assert_eq!(
        g.dispatch_json("on_update", on_update).await,
        json!({"value": 250, "module": "bg-m1"})
    );
    // The second controller is ignored whole, its batch sizes too (Synapse's rule).
    for callback in ["default_batch_size", "min_batch_size"] {
        assert_eq!(
            g.dispatch_json(callback, update.clone()).await,
            json!({"value": null}),
            "{callback}"
        );
    }
    assert_eq!(started("bg-m2"), 0);
}

#[actix_rt::test]
async fn account_data_and_federation_deliveries_are_notifications_whose_failures_are_logged() {
    let g = start(json!([
        scripted(
            "ad-m1",
            json!({
                "on_account_data_updated": {"fail": {"message": "boom"}},
                "on_event_delivered_over_federation": {"fail": {"message": "boom"}},
            })
        ),
        scripted(
            "ad-m2",
            json!({
                "on_account_data_updated": {"answer": null},
                "on_event_delivered_over_federation": {"answer": null},
            })
        ),
    ]))
    .await;
    let data = json!({"user_id": "@u:hs", "room_id": null, "account_data_type": "m.push_rules", "content": {}});
    assert_eq!(
        g.dispatch_json("on_account_data_updated", data.clone())
            .await,
        json!({"decision": "allow"})
    );
    until(|| last_args("ad-m2").is_some()).await;
    assert_eq!(last_args("ad-m2").unwrap(), data);
    let delivery = json!({"delivery": {"server_name": "other", "events": [event("@u:hs")], "method": "/send"}});
    assert_eq!(
        g.dispatch_json("on_event_delivered_over_federation", delivery)
            .await,
        json!({"decision": "allow"})
    );
}
