//! Supervision: crashes resolve their invocation through the failure policy at once, the
//! module is rebuilt with fresh state (but for what its instances share), what arrives meanwhile is stashed and answered by the
//! new instance (or by the policy when the stash is full), intensity marks a module failed
//! until a probe succeeds, the watchdog restarts hung modules, and shutdown answers every
//! request in flight. Ordering is proved with gates and states, never with timing.

use glia_bus_schema::requests::UserMayInvite;
use glia_bus_schema::{CallbackRequest, Decision, DispatchReply};
use glia_runtime::host::ModuleState;
use glia_tests::probes::{open_gate, until};
use glia_tests::{crashy, TestGlia};
use serde_json::{json, Value};
use std::sync::Arc;

fn invite(inviter: &str) -> CallbackRequest {
    CallbackRequest::UserMayInvite(UserMayInvite {
        inviter: inviter.into(),
        invitee: "@b:hs".into(),
        room_id: "!r:hs".into(),
    })
}

/// One crashy module named `key`, with these extra entry keys (restart, failure_policy, ...).
async fn crashy_glia(key: &str, extra: Value) -> Arc<TestGlia> {
    let mut entry =
        json!({"module": "crashy", "name": key, "timeout": "1h", "config": {"key": key}});
    if let (Some(e), Some(x)) = (entry.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            if k == "config" {
                e["config"]
                    .as_object_mut()
                    .unwrap()
                    .extend(v.as_object().unwrap().clone());
            } else {
                e.insert(k.clone(), v.clone());
            }
        }
    }
    Arc::new(TestGlia::start(&json!({"deadline": "30s", "modules": [entry]}).to_string()).await)
}

fn decision(reply: DispatchReply) -> Value {
    match reply {
        DispatchReply::UserMayInvite(d) => serde_json::to_value(d).unwrap(),
        other => panic!("unexpected reply {other:?}"),
    }
}

fn state(g: &TestGlia, name: &str) -> ModuleState {
    g.glia.status_of(name).unwrap().state()
}

#[actix_rt::test]
async fn a_panic_resolves_at_once_and_the_module_is_rebuilt_with_fresh_state() {
    let g = crashy_glia(
        "sv1",
        json!({"failure_policy": "deny", "restart": {"backoff_min": "1ms"}}),
    )
    .await;
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await)["errcode"],
        "M_INSTANCE_1"
    );
    // The module's timeout is an hour: the answer can only come from the crash.
    let crashed = decision(g.dispatch(invite("@panic:hs")).await);
    assert_eq!(
        crashed,
        json!({"decision": "deny", "errcode": "M_FORBIDDEN",
        "error": "Invites have been disabled on this server", "fields": {}, "module": "sv1"})
    );
    until(|| state(&g, "sv1") == ModuleState::Running && crashy::built("sv1") == 2).await;
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await)["errcode"],
        "M_INSTANCE_2"
    );
    let status = g.glia.status_of("sv1").unwrap();
    assert_eq!((status.crashes(), status.restarts()), (1, 1));
    assert!(status
        .last_crash()
        .unwrap()
        .reason
        .contains("panic on request"));

    // A fatal error the module reports is a crash too; with policy `error` it fails the request.
    let g = crashy_glia("sv1b", json!({"restart": {"backoff_min": "1ms"}})).await;
    let failed = decision(g.dispatch(invite("@fatal:hs")).await);
    assert_eq!(failed["decision"], "error");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("crashed: crashy: fatal on request"),
        "{failed}"
    );
    until(|| crashy::built("sv1b") == 2).await;
}

/// `instances: per_thread`: each dispatching thread gets an instance of its own, built there
/// on first use, and supervised as the actor's is: a panic is a crash the failure policy
/// resolves at once, and the instance is rebuilt. Crashy's answers name the instance.
#[actix_rt::test]
async fn a_per_thread_instance_answers_on_the_callers_thread_and_is_supervised() {
    let g = crashy_glia(
        "sv-pt",
        json!({"instances": "per_thread", "failure_policy": "deny",
               "restart": {"backoff_min": "1ms"}}),
    )
    .await;
    // The actor's instance is the first; this thread's, the second.
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await)["errcode"],
        "M_INSTANCE_2"
    );
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await)["errcode"],
        "M_INSTANCE_2"
    );
    let crashed = decision(g.dispatch(invite("@panic:hs")).await);
    assert_eq!(crashed["errcode"], "M_FORBIDDEN", "{crashed}");
    until(|| state(&g, "sv-pt") == ModuleState::Running && crashy::built("sv-pt") == 3).await;
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await)["errcode"],
        "M_INSTANCE_3"
    );
    let status = g.glia.status_of("sv-pt").unwrap();
    assert_eq!((status.crashes(), status.restarts()), (1, 1));
    // The HTTP worker's thread builds one of its own.
    assert_eq!(crashy::errcode_over_http(&g, "@a:hs").await, "M_INSTANCE_4");
}

/// State a module keeps through `ModuleApi::shared` is one for all its `per_thread`
/// instances, whichever thread they run on, and outlives an instance rebuilt after a crash.
#[actix_rt::test]
async fn per_thread_instances_share_the_entrys_state_across_threads_and_rebuilds() {
    let g = crashy_glia(
        "sv-shared",
        json!({"instances": "per_thread", "failure_policy": "deny",
               "restart": {"backoff_min": "1ms"}}),
    )
    .await;
    let count = |reply: DispatchReply| decision(reply)["errcode"].clone();
    assert_eq!(count(g.dispatch(invite("@count:hs")).await), "M_COUNT_1");
    // The HTTP worker's thread runs an instance of its own, on the same state.
    assert_eq!(
        crashy::errcode_over_http(&g, "@count:hs").await,
        "M_COUNT_2"
    );
    let built = crashy::built("sv-shared");
    decision(g.dispatch(invite("@panic:hs")).await);
    until(|| state(&g, "sv-shared") == ModuleState::Running && crashy::built("sv-shared") > built)
        .await;
    assert_eq!(count(g.dispatch(invite("@count:hs")).await), "M_COUNT_3");
    // A module of the same type under another entry has state of its own.
    let other = crashy_glia("sv-shared-other", json!({"instances": "per_thread"})).await;
    assert_eq!(
        count(other.dispatch(invite("@count:hs")).await),
        "M_COUNT_1"
    );
}

#[actix_rt::test]
async fn invocations_arriving_during_the_restart_are_answered_by_the_new_instance() {
    // A long backoff keeps the module restarting while the test sends more work.
    let g = crashy_glia(
        "sv2",
        json!({"failure_policy": "deny", "restart": {"backoff_min": "300ms", "backoff_max": "300ms", "random_factor": 0}}),
    )
    .await;
    let g1 = g.clone();
    let crashing = actix_rt::spawn(async move { g1.dispatch(invite("@panic-later:hs")).await });
    until(|| g.glia.status_of("sv2").unwrap().in_flight() == 1).await;
    open_gate("sv2-gate", 1);
    // The crashed invocation resolves through its policy.
    assert_eq!(decision(crashing.await.unwrap())["errcode"], "M_FORBIDDEN");
    assert_eq!(state(&g, "sv2"), ModuleState::Restarting);
    // Queued behind the crash: stashed, then delivered to the new instance.
    let queued: Vec<_> = (0..3)
        .map(|_| {
            let g = g.clone();
            actix_rt::spawn(async move { g.dispatch(invite("@a:hs")).await })
        })
        .collect();
    for q in queued {
        assert_eq!(decision(q.await.unwrap())["errcode"], "M_INSTANCE_2");
    }
    assert_eq!(crashy::built("sv2"), 2);
}

#[actix_rt::test]
async fn stash_overflow_is_answered_by_the_failure_policy_not_dropped() {
    let g = crashy_glia(
        "sv3",
        json!({"failure_policy": "deny", "restart": {"stash": 2, "backoff_min": "300ms", "backoff_max": "300ms", "random_factor": 0}}),
    )
    .await;
    decision(g.dispatch(invite("@panic:hs")).await);
    assert_eq!(state(&g, "sv3"), ModuleState::Restarting);
    let sent: Vec<_> = (0..5)
        .map(|_| {
            let g = g.clone();
            actix_rt::spawn(async move { g.dispatch(invite("@a:hs")).await })
        })
        .collect();
    let mut codes = Vec::new();
    for s in sent {
        codes.push(
            decision(s.await.unwrap())["errcode"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    codes.sort();
    assert_eq!(
        codes,
        [
            "M_FORBIDDEN",
            "M_FORBIDDEN",
            "M_FORBIDDEN",
            "M_INSTANCE_2",
            "M_INSTANCE_2"
        ]
    );
}

#[actix_rt::test]
async fn past_its_intensity_a_module_fails_then_a_probe_brings_it_back() {
    let g = crashy_glia(
        "sv4",
        json!({"failure_policy": "deny", "restart": {"intensity": 1, "period": "1h", "backoff_min": "1ms", "cooldown": "300ms"}}),
    )
    .await;
    decision(g.dispatch(invite("@panic:hs")).await);
    until(|| state(&g, "sv4") == ModuleState::Running).await;
    // The second crash within the period is one more than the intensity allows.
    decision(g.dispatch(invite("@panic:hs")).await);
    assert_eq!(state(&g, "sv4"), ModuleState::Failed);
    // Failed: resolved through the policy at once, without reaching the module.
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await)["errcode"],
        "M_FORBIDDEN"
    );
    let (status, health) = g.get("/health", None).await;
    assert_eq!(
        (status, health["status"].clone(), health["failed"].clone()),
        (200, json!("degraded"), json!(["sv4"]))
    );
    let (_, modules) = g.get("/_glia/v1/modules", None).await;
    let m = &modules["modules"][0];
    assert_eq!(
        (
            m["state"].clone(),
            m["crashes"].clone(),
            m["restarts"].clone()
        ),
        (json!("failed"), json!(2), json!(1))
    );
    assert!(m["last_crash"]["reason"]
        .as_str()
        .unwrap()
        .contains("panic"));
    assert!(m["last_crash"]["at_ms"].as_u64().unwrap() > 0);
    // The probe after the cool-down returns it to service.
    until(|| state(&g, "sv4") == ModuleState::Running).await;
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await)["errcode"],
        "M_INSTANCE_3"
    );
    assert_eq!(g.get("/health", None).await.1["status"], "ok");
}

#[actix_rt::test]
async fn a_module_hanging_past_the_watchdog_is_restarted() {
    let g = crashy_glia(
        "sv5",
        json!({"timeout": "50ms", "failure_policy": "deny", "restart": {"watchdog": "200ms", "backoff_min": "1ms"}}),
    )
    .await;
    // The caller's timeout answers first...
    assert_eq!(
        decision(g.dispatch(invite("@hang:hs")).await)["errcode"],
        "M_FORBIDDEN"
    );
    // ...and the watchdog restarts the module that is still stuck.
    until(|| crashy::built("sv5") == 2 && state(&g, "sv5") == ModuleState::Running).await;
    let status = g.glia.status_of("sv5").unwrap();
    assert!(status.last_crash().unwrap().reason.contains("watchdog"));
    until(|| status.in_flight() == 0).await;
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await)["errcode"],
        "M_INSTANCE_2"
    );
}

#[actix_rt::test]
async fn a_failing_constructor_refuses_start_or_is_probed_per_required() {
    let err = TestGlia::try_start(
        &json!({"modules": [{"module": "crashy", "name": "sv6", "config": {"key": "sv6", "fail_first_builds": 1}}]}).to_string(),
    )
    .await
    .err()
    .expect("required modules refuse to start");
    assert_eq!(
        err.to_string(),
        "cannot start modules[0] (sv6): constructor failed: build 1 fails on purpose"
    );

    let g = crashy_glia(
        "sv7",
        json!({"required": false, "failure_policy": "deny", "restart": {"cooldown": "200ms"}, "config": {"fail_first_builds": 1}}),
    )
    .await;
    assert_eq!(state(&g, "sv7"), ModuleState::Failed);
    assert_eq!(g.get("/health", None).await.1["status"], "degraded");
    // Not planned yet: nothing registered user_may_invite.
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await),
        json!({"decision": "allow"})
    );
    // The probe builds it; it registers and joins the plans.
    until(|| state(&g, "sv7") == ModuleState::Running).await;
    until(|| g.glia.plan_listing().get("user_may_invite").is_some()).await;
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await)["errcode"],
        "M_INSTANCE_1"
    );
}

#[actix_rt::test]
async fn shutdown_answers_every_request_in_flight_and_stops_modules_in_reverse_order() {
    let g = Arc::new(
        TestGlia::start(
            &json!({"deadline": "1h", "modules": [
                {"module": "crashy", "name": "sd1", "timeout": "1h", "failure_policy": "deny", "config": {"key": "sd1"}},
                {"module": "crashy", "name": "sd2", "timeout": "1h", "config": {"key": "sd2"}},
            ]})
            .to_string(),
        )
        .await,
    );
    let in_flight: Vec<_> = (0..20)
        .map(|_| {
            let g = g.clone();
            actix_rt::spawn(async move { g.dispatch(invite("@hang:hs")).await })
        })
        .collect();
    until(|| g.glia.coordinator().active() == 20).await;
    g.glia.shutdown(std::time::Duration::from_millis(50)).await;
    for request in in_flight {
        let answer = decision(request.await.unwrap());
        // sd1's policy denies; the request is answered, not dropped.
        assert_eq!(answer["errcode"], "M_FORBIDDEN", "{answer}");
    }
    for name in ["sd1", "sd2"] {
        assert_eq!(state(&g, name), ModuleState::Stopped);
    }
    let dropped = crashy::dropped();
    let pos = |k: &str| dropped.iter().position(|d| d == k).unwrap();
    assert!(pos("sd2") < pos("sd1"), "{dropped:?}");
    // After shutdown, new requests resolve at once too.
    assert!(matches!(
        g.dispatch(invite("@a:hs")).await,
        DispatchReply::UserMayInvite(Decision::Deny { .. })
    ));
}

#[actix_rt::test]
async fn chaos_ten_thousand_requests_ten_percent_panicking() {
    glia_modules::chaos::quiet_planned_panics();
    let options = glia_runtime::chaos::ChaosOptions::default();
    assert_eq!((options.requests, options.panic), (10_000, 0.10));
    let report = glia_runtime::chaos::run(&options)
        .await
        .expect("the scenario runs");
    assert!(report.ok(), "{report}");
    assert_eq!(report.answered, 10_000);
    for m in &report.modules {
        assert!(m.planned_panics > 500 && m.planned_hangs > 10, "{report}");
        assert_eq!(m.crashed_invocations, m.planned_panics, "{report}");
        assert_eq!(m.crashes, m.restarts, "{report}");
    }
}

#[actix_rt::test]
async fn hangs_left_on_a_replaced_instance_are_aborted_too() {
    let g = crashy_glia(
        "sv8",
        json!({"timeout": "20ms", "failure_policy": "allow", "restart": {"watchdog": "200ms", "backoff_min": "1ms"}}),
    )
    .await;
    decision(g.dispatch(invite("@hang:hs")).await);
    // A crash replaces the instance while the hang is still running on the old one.
    decision(g.dispatch(invite("@panic:hs")).await);
    let status = g.glia.status_of("sv8").unwrap();
    until(|| status.restarts() == 1).await;
    // The old instance's hang holds a permit and counts as in flight until the watchdog.
    until(|| status.in_flight() == 0).await;
    assert_eq!(
        status.crashes(),
        1,
        "an old instance's hang does not restart the new one"
    );
}

#[actix_rt::test]
async fn a_module_whose_thread_blocks_gets_a_new_thread() {
    let g = crashy_glia(
        "sv9",
        json!({"timeout": "100ms", "failure_policy": "allow", "restart": {"watchdog": "300ms"}}),
    )
    .await;
    // The blocked invocation is answered by the caller's timeout...
    assert_eq!(
        decision(g.dispatch(invite("@block:hs")).await),
        json!({"decision": "allow"})
    );
    // ...and the blocked thread is replaced while it is still blocked.
    let status = g.glia.status_of("sv9").unwrap();
    until(|| status.restarts() == 1).await;
    assert!(status.last_crash().unwrap().reason.contains("blocked"));
    assert_eq!(
        decision(g.dispatch(invite("@a:hs")).await)["errcode"],
        "M_INSTANCE_2"
    );
}
