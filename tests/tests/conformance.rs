//! Conformance: each reducer of spec §3.11 with scripted modules answering in different
//! orders and speeds, priorities, invalid answers, chaining, union, timeouts and failure
//! policies. Ordering is proved with gates (a module cannot answer until the test opens its
//! gate), never with timing.
//!
//! The same suite runs over the NATS bus with `GLIA_TEST_BUS=nats` (tests/run-all does): then
//! every module is placed on NATS and served by an in-process worker, against a real
//! nats-server.

use glia_bus_schema::requests::*;
use glia_bus_schema::{CallbackRequest, Decision, Event};
use glia_runtime::worker::Worker;
use glia_runtime::StartError;
use glia_tests::nats::NatsServer;
use glia_tests::probes::{answered, last_args, open_gate, started, until};
use glia_tests::TestGlia;
use serde_json::{json, Value};

/// A config (JSON is YAML) with these module entries.
fn config(modules: Value) -> Value {
    json!({ "modules": modules })
}

/// glia for one test, on the bus `GLIA_TEST_BUS` names (`internal` unless it says `nats`).
struct Launched {
    inner: TestGlia,
    _worker: Option<Worker>,
    _nats: Option<NatsServer>,
}

impl std::ops::Deref for Launched {
    type Target = TestGlia;
    fn deref(&self) -> &TestGlia {
        &self.inner
    }
}

/// Starts glia from `config`; over NATS, every module is placed on NATS and served by a
/// worker started first (so the coordinator finds it when it asks).
async fn try_launch(mut config: Value) -> Result<Launched, StartError> {
    if std::env::var("GLIA_TEST_BUS").as_deref() != Ok("nats") {
        let inner = TestGlia::try_start(&config.to_string()).await?;
        return Ok(Launched {
            inner,
            _worker: None,
            _nats: None,
        });
    }
    let nats = NatsServer::start();
    config["bus"] = json!({"type": "nats", "url": nats.url()});
    for module in config["modules"].as_array_mut().into_iter().flatten() {
        module["placement"] = json!("nats");
    }
    let yaml = config.to_string();
    let hosts_any = config["modules"].as_array().is_some_and(|m| !m.is_empty());
    let worker = match hosts_any {
        true => Some(
            Worker::start(&TestGlia::config(&yaml).expect("a valid test config"))
                .await
                .expect("the worker starts"),
        ),
        false => None,
    };
    let inner = TestGlia::try_start(&yaml).await?;
    Ok(Launched {
        inner,
        _worker: worker,
        _nats: Some(nats),
    })
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
        (
            json!({"message": "go away"}),
            deny_json("M_FORBIDDEN", "go away", "map"),
        ),
        (
            json!("no spam please"),
            deny_json("M_FORBIDDEN", "no spam please", "map"),
        ),
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

#[actix_rt::test]
async fn federated_invite_falls_through_to_user_may_invite() {
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
    assert_eq!(
        reply,
        deny_json(
            "M_FORBIDDEN",
            "This user is not permitted to send invites to this server/user",
            "fed-m2"
        )
    );
    assert_eq!(
        last_args("fed-m2").unwrap(),
        json!({"inviter": "@remote:other", "invitee": "@local:hs", "room_id": "!r:hs"})
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
    let err = g
        .glia
        .coordinator()
        .dispatch(missing, g.glia.coordinator().new_meta())
        .await
        .unwrap_err();
    assert_eq!((err.status, err.errcode), (400, "M_MISSING_PARAM"));
    assert!(err.error.contains("secret"), "{}", err.error);

    let unknown = json!({"username": "u", "login_type": "m.login.nobody", "login_dict": {}});
    assert_eq!(
        g.dispatch_json("check_auth", unknown).await,
        json!({"user_id": null})
    );
}

#[actix_rt::test]
async fn one_login_type_with_two_field_lists_is_refused_at_start() {
    let err = try_launch(config(json!([
        {"module": "scripted", "name": "af-m1", "config": {"auth_checkers": {"t": {"fields": ["a"], "answer": null}}}},
        {"module": "scripted", "name": "af-m2", "config": {"auth_checkers": {"t": {"fields": ["b"], "answer": null}}}},
    ])))
    .await
    .err()
    .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("login type \"t\"") && text.contains("af-m1") && text.contains("af-m2"),
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
        scripted("all-m1", json!({"get_interested_users": {"answer": "ALL"}})),
        scripted(
            "all-m2",
            json!({"get_interested_users": {"answer": ["@x:hs"], "gate": "all-never"}})
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

    let legacy = single_answer("on_create_room", create_room(), json!(false)).await;
    assert_eq!(
        legacy,
        deny_json(
            "M_UNKNOWN",
            "Room creation forbidden with these parameters",
            "map"
        )
    );

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
        json!({"decision": "error", "status": 429, "errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "module": "cr-all"})
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
                    "answers": {"get_interested_users": {"hang": true}, "on_legacy_renew": {"hang": true}}}},
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

#[actix_rt::test]
async fn a_federated_invite_without_an_invitee_is_refused() {
    let g = start(json!([scripted(
        "fi",
        json!({"federated_user_may_invite": {"answer": "NOT_SPAM"}})
    )]))
    .await;
    let request = CallbackRequest::from_args(
        "federated_user_may_invite".parse().unwrap(),
        json!({"event": event("@remote:other")}),
    )
    .unwrap();
    let err = g
        .glia
        .coordinator()
        .dispatch(request, g.glia.coordinator().new_meta())
        .await
        .unwrap_err();
    assert_eq!((err.status, err.errcode), (400, "M_BAD_JSON"));
    assert!(err.error.contains("event.state_key"), "{}", err.error);
}
