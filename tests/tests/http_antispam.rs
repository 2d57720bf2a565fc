//! synapse-http-antispam, both ways, through real HTTP servers: glia's ingress answering the
//! module's POSTs as the module reads answers, and the `http_antispam` module asking fakes of
//! Meowlnir and Draupnir (`glia_tests::antispam_fakes`) beside glia's own modules.

mod support;

use glia_tests::antispam_fakes::{Draupnir, Fake, Meowlnir, RunningFake};
use glia_tests::{probes, TestGlia};
use serde_json::{json, Value};
use support::{decision_records, send, Reply, TempFile};

const INGRESS: &str = "/_glia/v1/http-antispam";
const TOKEN: &str = "antispam-token";

/// POSTs `body` to the ingress for `callback`, as synapse-http-antispam does.
async fn ingress(g: &TestGlia, callback: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send(
        "POST",
        &format!("{}{INGRESS}/{callback}", g.base_url),
        &all,
        Some(body.as_bytes()),
    )
    .await
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// The ingress answered `status` with a JSON body; returns it.
fn answered(reply: &Reply, status: u16) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text());
    reply.assert_json_content_type();
    reply.json()
}

/// The ingress could not decide: a plain-text error the module does not read as a deny.
fn undecided(reply: &Reply, status: u16, errcode: &str) -> String {
    assert_eq!(reply.status, status, "{}", reply.text());
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(
        serde_json::from_slice::<Value>(&reply.body).is_err(),
        "a JSON body would be a deny: {}",
        reply.text()
    );
    let text = reply.text();
    assert!(text.starts_with(&format!("{errcode}: ")), "{text}");
    text
}

/// A `scripted` module entry answering each callback as `answers` says.
fn scripted(name: &str, probe: Option<&str>, answers: Value) -> Value {
    json!({"module": "scripted", "name": name, "config": {"probe": probe, "answers": answers}})
}

/// An `http_antispam` module entry for `base_url`.
fn antispam(name: &str, base_url: &str, entry: Value, config: Value) -> Value {
    let mut module = json!({"module": "http_antispam", "name": name});
    module
        .as_object_mut()
        .unwrap()
        .extend(entry.as_object().unwrap().clone());
    let mut settings = json!({"base_url": base_url});
    settings
        .as_object_mut()
        .unwrap()
        .extend(config.as_object().unwrap().clone());
    module["config"] = settings;
    module
}

/// An `http_antispam` entry asking the server at `base_url`, with `token`, about invites.
fn asks_invites(name: &str, base_url: &str, token: &str, entry: Value) -> Value {
    antispam(
        name,
        base_url,
        entry,
        json!({"authorization": token, "enabled_callbacks": ["user_may_invite"]}),
    )
}

async fn start(settings: Value, modules: Vec<Value>) -> TestGlia {
    let mut config = settings;
    config["modules"] = Value::Array(modules);
    TestGlia::start(&config.to_string()).await
}

fn invite(inviter: &str) -> String {
    json!({"inviter": inviter, "invitee": "@bob:hs", "room_id": "!room:hs"}).to_string()
}

// ----- the ingress ------------------------------------------------------------------------

#[actix_rt::test]
async fn the_ingress_answers_decisions_as_the_module_reads_them() {
    let g = start(
        json!({}),
        vec![scripted(
            "gate",
            None,
            json!({
                "user_may_invite": {"answer": {"errcode": "ORG_X", "fields": {"org.x": 1}}},
                "check_event_for_spam": {"answer": {"message": "go away"}},
                "user_may_join_room": {"answer": "NOT_SPAM"},
            }),
        )],
    )
    .await;
    let denied = answered(
        &ingress(&g, "user_may_invite", &invite("@a:hs"), &[]).await,
        403,
    );
    assert_eq!(
        denied,
        json!({"errcode": "ORG_X", "error": "Invites have been disabled on this server", "org.x": 1})
    );
    let event = json!({"event": {"event_id": "$e", "room_id": "!r:hs", "sender": "@a:hs",
        "type": "m.room.message", "content": {"body": "x"}, "origin_server_ts": 1, "unsigned": {}}});
    let denied = answered(
        &ingress(&g, "check_event_for_spam", &event.to_string(), &[]).await,
        403,
    );
    // The module's plain-string answer is the client's message, as in Synapse.
    assert_eq!(
        denied,
        json!({"errcode": "M_FORBIDDEN", "error": "go away"})
    );
    let join = json!({"user": "@a:hs", "room": "!r:hs", "is_invited": false}).to_string();
    let allowed = ingress(&g, "user_may_join_room", &join, &[]).await;
    assert_eq!((allowed.status, allowed.text()), (200, "{}".to_owned()));
    // No glia module serves user_may_publish_room: allowed.
    let publish = json!({"user_id": "@a:hs", "room_id": "!r:hs"}).to_string();
    let reply = ingress(&g, "user_may_publish_room", &publish, &[]).await;
    assert_eq!((reply.status, reply.text()), (200, "{}".to_owned()));
    // The ping, and a callback glia does not have (maunium's fork), unread.
    let pong = answered(&ingress(&g, "ping", r#"{"id":"AbCdEfGh"}"#, &[]).await, 200);
    assert_eq!(pong, json!({"id": "AbCdEfGh", "status": "ok"}));
    let reply = ingress(&g, "accept_make_join", "whatever", &[]).await;
    assert_eq!((reply.status, reply.text()), (200, "{}".to_owned()));
    g.stop().await;
}

#[actix_rt::test]
async fn the_ingress_reads_the_modules_spellings_pairs_and_client_events() {
    let g = start(
        json!({}),
        vec![scripted(
            "seen",
            Some("ingress-seen"),
            json!({
                "user_may_join_room": {"answer": "NOT_SPAM"},
                "check_login_for_spam": {"answer": "NOT_SPAM"},
                "check_event_for_spam": {"answer": "NOT_SPAM"},
            }),
        )],
    )
    .await;
    for body in [
        json!({"user": "@a:hs", "room": "!r:hs", "is_invited": true}),
        json!({"user_id": "@a:hs", "room_id": "!r:hs", "is_invited": true}),
    ] {
        let reply = ingress(&g, "user_may_join_room", &body.to_string(), &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let seen = probes::last_args("ingress-seen").unwrap();
        assert_eq!(
            (&seen["user_id"], &seen["room_id"], &seen["is_invited"]),
            (&json!("@a:hs"), &json!("!r:hs"), &json!(true))
        );
    }
    let login = json!({"user_id": "@a:hs", "device_id": null, "initial_display_name": null,
        "request_info": [["curl/8", "10.0.0.1"]], "auth_provider_id": null});
    let reply = ingress(&g, "check_login_for_spam", &login.to_string(), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        probes::last_args("ingress-seen").unwrap()["request_info"],
        json!([{"user_agent": "curl/8", "ip": "10.0.0.1"}])
    );
    // The client format: no hashes, signatures, depth, auth or prev events.
    let event = json!({"event": {"event_id": "$e", "room_id": "!r:hs", "sender": "@a:hs",
        "type": "m.room.message", "content": {"body": "hi"}, "origin_server_ts": 5,
        "unsigned": {"age_ts": 5}}});
    let reply = ingress(&g, "check_event_for_spam", &event.to_string(), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        probes::last_args("ingress-seen").unwrap()["event"],
        event["event"]
    );
    g.stop().await;
}

#[actix_rt::test]
async fn what_glia_cannot_decide_is_answered_in_plain_text_so_fail_open_applies() {
    let g = start(
        json!({"auth_token": TOKEN, "max_body_size": "1KiB"}),
        vec![scripted(
            "gate",
            None,
            json!({"user_may_invite": {"answer": "NOT_SPAM"}}),
        )],
    )
    .await;
    let auth = bearer();
    let with_token = [("authorization", auth.as_str())];
    let reply = ingress(&g, "user_may_invite", &invite("@a:hs"), &with_token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let wrong = ingress(
        &g,
        "user_may_invite",
        &invite("@a:hs"),
        &[
            ("authorization", "Bearer nope"),
            ("x-request-id", "req-wrong"),
        ],
    )
    .await;
    undecided(&wrong, 403, "M_UNKNOWN_TOKEN");
    assert_eq!(wrong.header("x-request-id"), Some("req-wrong"));
    let missing = ingress(&g, "user_may_invite", &invite("@a:hs"), &[]).await;
    undecided(&missing, 401, "M_MISSING_TOKEN");
    // Even the ping: a module pointed at glia with the wrong token keeps retrying it.
    undecided(
        &ingress(&g, "ping", r#"{"id":"x"}"#, &[]).await,
        401,
        "M_MISSING_TOKEN",
    );

    let not_json = ingress(&g, "user_may_invite", "{", &with_token).await;
    undecided(&not_json, 400, "M_NOT_JSON");
    let bad = ingress(&g, "user_may_invite", r#"{"inviter": 5}"#, &with_token).await;
    let text = undecided(&bad, 400, "M_BAD_JSON");
    assert!(text.contains("inviter"), "{text}");
    let huge = format!(r#"{{"inviter": "{}"}}"#, "x".repeat(2048));
    undecided(
        &ingress(&g, "user_may_invite", &huge, &with_token).await,
        413,
        "M_TOO_LARGE",
    );
    let get = send(
        "GET",
        &format!("{}{INGRESS}/user_may_invite", g.base_url),
        &with_token,
        None,
    )
    .await;
    undecided(&get, 405, "M_UNRECOGNIZED");
    g.stop().await;
}

/// The module posts to `{base_url}/{callback}` whatever `base_url` is: one ending in `/` (or
/// `/.`) adds an empty (or `.`) segment before the name. Those paths reach the callback; a path
/// the ingress cannot route is answered in plain text, so the module's `fail_open` applies (a
/// JSON 404 would deny every message and invite).
#[actix_rt::test]
async fn every_path_the_module_can_build_reaches_the_callback_and_others_fail_open() {
    let g = start(
        json!({}),
        vec![scripted(
            "gate",
            None,
            json!({"user_may_invite": {"answer": {"errcode": "ORG_X"}}}),
        )],
    )
    .await;
    let post = |path: String| {
        let url = format!("{}{INGRESS}{path}", g.base_url);
        async move {
            let headers = [("content-type", "application/json")];
            send("POST", &url, &headers, Some(invite("@a:hs").as_bytes())).await
        }
    };
    for path in [
        "/user_may_invite",
        "//user_may_invite",
        "///user_may_invite",
        "/./user_may_invite",
        "/.//./user_may_invite",
        "/user_may_invite/",
        "//user_may_invite//",
    ] {
        let denied = post(path.to_owned()).await;
        assert_eq!(answered(&denied, 403)["errcode"], "ORG_X", "{path}");
    }
    let pong = post("//ping".to_owned()).await;
    assert_eq!(answered(&pong, 200)["status"], "ok");
    for path in [
        "",
        "/",
        "//",
        "/./",
        "/a/../user_may_invite",
        "/../user_may_invite",
        "/%2E%2E/user_may_invite",
        "/..",
        "/x/user_may_invite",
        "/user_may_invite/x",
        "/user%2Fmay_invite",
        "/User_May_Invite",
        "?x=1/user_may_invite",
    ] {
        let reply = post(path.to_owned()).await;
        let text = undecided(&reply, 404, "M_UNRECOGNIZED");
        assert!(text.contains("synapse-http-antispam"), "{path}: {text}");
        let get = send("GET", &format!("{}{INGRESS}{path}", g.base_url), &[], None).await;
        undecided(&get, 404, "M_UNRECOGNIZED");
    }
    g.stop().await;
}

#[actix_rt::test]
async fn failures_glia_decides_reach_the_module_as_denies() {
    let g = start(
        json!({}),
        vec![scripted(
            "raising",
            None,
            json!({
                "user_may_invite": {"fail": {"message": "slow down", "synapse_error":
                    {"status": 429, "errcode": "M_LIMIT_EXCEEDED", "error": "Slow down",
                     "fields": {"retry_after_ms": 1500}}}},
                "user_may_create_room": {"fail": {"message": "database down"}},
            }),
        )],
    )
    .await;
    let raised = answered(
        &ingress(&g, "user_may_invite", &invite("@a:hs"), &[]).await,
        429,
    );
    assert_eq!(
        raised,
        json!({"errcode": "M_LIMIT_EXCEEDED", "error": "Slow down", "retry_after_ms": 1500})
    );
    // Under failure policy `error` (Synapse's default), a module's failure fails the request:
    // the client is told what Synapse tells it, the details stay in glia's log.
    let create = json!({"user_id": "@a:hs"}).to_string();
    let failed = answered(
        &ingress(&g, "user_may_create_room", &create, &[]).await,
        500,
    );
    assert_eq!(
        failed,
        json!({"errcode": "M_UNKNOWN", "error": "Internal server error"})
    );
    g.stop().await;
}

#[actix_rt::test]
async fn ingress_decisions_are_recorded_under_their_own_route() {
    let path = TempFile::unused_path("antispam-decisions.jsonl");
    let g = start(
        json!({"telemetry": {"decision_log": {"output": "file", "path": path}}}),
        vec![scripted(
            "gate",
            None,
            json!({"user_may_invite": {"answer": "NOT_SPAM"}}),
        )],
    )
    .await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let reply = ingress(
        &g,
        "user_may_invite",
        &invite("@a:hs"),
        &[
            ("x-request-id", "req-antispam"),
            ("traceparent", &traceparent),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    let decision_id = reply.header("glia-decision-id").unwrap().to_owned();
    let (status, _) = g
        .post(
            "/_glia/v1/callbacks/user_may_invite",
            &invite("@a:hs"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let log = decision_records(&path, 2).await;
    assert_eq!(log[0]["route"], "http_antispam");
    assert_eq!(log[0]["request_id"], "req-antispam");
    assert_eq!(log[0]["decision_id"], decision_id);
    assert_eq!(log[0]["trace_id"], trace, "the caller's trace continues");
    assert_eq!(log[0]["modules"][0]["module"], "gate");
    assert_eq!(log[1]["route"], "http");
    g.stop().await;
}

// ----- the module, against the fakes --------------------------------------------------------

fn meowlnir(banned_users: &[&str]) -> Fake {
    Fake::Meowlnir(Meowlnir {
        secret: Some("meow".into()),
        server_name: "hs".into(),
        management_rooms: vec!["!mgmt:hs".into()],
        filter_local_invites: true,
        banned_users: banned_users.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

fn draupnir(blocked: &[&str], stuck_on: &[&str]) -> Fake {
    Fake::Draupnir(Draupnir {
        authorization: "draupnir".into(),
        block_invitations_from: Some(blocked.iter().map(|s| s.to_string()).collect()),
        refuse_events_from: Some(Vec::new()),
        stuck_on: stuck_on.iter().map(|s| s.to_string()).collect(),
    })
}

/// The reply to `user_may_invite` from `inviter`, through the coordinator.
async fn invited(g: &TestGlia, inviter: &str) -> Value {
    g.dispatch_json(
        "user_may_invite",
        json!({"inviter": inviter, "invitee": "@bob:hs", "room_id": "!room:hs"}),
    )
    .await
}

/// The decision log records a moderation tool's deny as the client reads it: the tool's own
/// `error`, which Synapse writes over the callback's default message.
#[actix_rt::test]
async fn the_decision_log_records_the_message_the_client_is_told() {
    let drau = RunningFake::start(draupnir(&["@drau:hs"], &[])).unwrap();
    let path = TempFile::unused_path("antispam-deny-text.jsonl");
    let g = start(
        json!({"telemetry": {"decision_log": {"output": "file", "path": path, "include_content": true}}}),
        vec![asks_invites("draupnir", &drau.base_url, "draupnir", json!({}))],
    )
    .await;
    let denied = invited(&g, "@drau:hs").await;
    let told = "You are not allowed to send invitations to this homeserver";
    assert_eq!(denied["error"], told, "{denied}");
    let log = decision_records(&path, 1).await;
    assert_eq!(log[0]["result"]["decision"], "deny", "{}", log[0]);
    assert_eq!(log[0]["result"]["reply"]["error"], told, "{}", log[0]);
    g.stop().await;
}

#[actix_rt::test]
async fn denies_are_read_by_errcode_and_the_first_in_config_order_wins() {
    let meow = RunningFake::start(meowlnir(&["@both:hs", "@meow:hs"])).unwrap();
    let drau = RunningFake::start(draupnir(&["@both:hs", "@drau:hs"], &[])).unwrap();
    let g = start(
        json!({}),
        vec![
            asks_invites("meowlnir", &meow.base_url, "meow", json!({})),
            asks_invites("draupnir", &drau.base_url, "draupnir", json!({})),
        ],
    )
    .await;
    // Meowlnir denies with 403, Draupnir with 400: both are denies, with the server's message.
    let both = invited(&g, "@both:hs").await;
    assert_eq!(both["decision"], "deny", "{both}");
    assert_eq!(both["module"], "meowlnir");
    assert_eq!(both["errcode"], "M_FORBIDDEN");
    assert_eq!(
        both["fields"],
        json!({"error": "You're not allowed to send invites"})
    );
    // The reply's message is what the client reads: Synapse writes the fields over it.
    assert_eq!(
        both["error"], "You're not allowed to send invites",
        "{both}"
    );
    let drau_only = invited(&g, "@drau:hs").await;
    assert_eq!(drau_only["module"], "draupnir", "{drau_only}");
    assert_eq!(
        drau_only["fields"]["error"],
        "You are not allowed to send invitations to this homeserver"
    );
    assert_eq!(invited(&g, "@meow:hs").await["module"], "meowlnir");
    assert_eq!(invited(&g, "@alice:hs").await, json!({"decision": "allow"}));

    // Each server got the module's body and its own token.
    let sent = meow.requests_for("user_may_invite");
    let last = sent.last().unwrap();
    assert_eq!(last.path, "/_meowlnir/antispam/!mgmt:hs/user_may_invite");
    assert_eq!(last.authorization.as_deref(), Some("Bearer meow"));
    assert_eq!(
        last.body,
        r#"{"invitee":"@bob:hs","inviter":"@alice:hs","room_id":"!room:hs"}"#
    );
    let last = drau.requests_for("user_may_invite").pop().unwrap();
    assert_eq!(last.path, "/api/1/spam_check/user_may_invite");
    assert_eq!(last.authorization.as_deref(), Some("Bearer draupnir"));
    g.stop().await;
    meow.stop().await;
    drau.stop().await;
}

#[actix_rt::test]
async fn what_a_server_fails_at_goes_through_the_failure_policy() {
    let meow = RunningFake::start(meowlnir(&[])).unwrap();
    let drau = RunningFake::start(draupnir(&[], &[])).unwrap();
    let wrong_room = format!("{}/_meowlnir/antispam/!other:hs", meow.root);
    let closed = {
        // A port nothing listens on any more.
        let gone = RunningFake::start(Fake::Nothing).unwrap();
        let url = gone.base_url.clone();
        gone.stop().await;
        url
    };
    let allow = json!({"failure_policy": {"default": "allow"}});
    let invite = |extra: Value| {
        let mut config = json!({"enabled_callbacks": ["user_may_invite"]});
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        config
    };
    let cases = [
        // Meowlnir: 404 M_NOT_FOUND for a management room it does not know.
        (
            "wrong-room",
            wrong_room.as_str(),
            invite(json!({"authorization": "meow"})),
            "404 M_NOT_FOUND",
        ),
        // Meowlnir: 401 M_UNKNOWN_TOKEN.
        (
            "meow-token",
            meow.base_url.as_str(),
            invite(json!({"authorization": "nope"})),
            "401 M_UNKNOWN_TOKEN",
        ),
        // Draupnir: 401 "Missing access token", not JSON.
        (
            "drau-token",
            drau.base_url.as_str(),
            invite(json!({"authorization": "nope"})),
            "answered 401 with a body that is not a JSON object",
        ),
        // Draupnir has no user_may_create_room route: Express's HTML 404.
        (
            "drau-route",
            drau.base_url.as_str(),
            json!({"authorization": "draupnir", "enabled_callbacks": ["user_may_create_room"]}),
            "answered 404 with a body that is not a JSON object",
        ),
        (
            "refused",
            closed.as_str(),
            invite(json!({})),
            "request failed",
        ),
    ];
    let modules = cases
        .iter()
        .map(|(name, url, config, _)| antispam(name, url, allow.clone(), config.clone()))
        .collect();
    let path = TempFile::unused_path("antispam-failures.jsonl");
    let g = start(
        json!({"telemetry": {"decision_log": {"output": "file", "path": path, "include_content": true}}}),
        modules,
    )
    .await;
    assert_eq!(invited(&g, "@alice:hs").await, json!({"decision": "allow"}));
    let created = g
        .dispatch_json("user_may_create_room", json!({"user_id": "@alice:hs"}))
        .await;
    assert_eq!(created, json!({"decision": "allow"}));
    let log = decision_records(&path, 2).await;
    let parts: Vec<&Value> = log
        .iter()
        .flat_map(|r| r["modules"].as_array().unwrap())
        .collect();
    for (name, _, _, why) in &cases {
        let part = parts
            .iter()
            .find(|p| p["module"] == *name)
            .unwrap_or_else(|| panic!("{name} is not in {log:?}"));
        assert_eq!(part["outcome"], "failed", "{part}");
        assert_eq!(part["policy"], "allow", "{part}");
        let error = part["error"].as_str().unwrap();
        assert!(error.contains(why), "{name}: {error}");
    }
    g.stop().await;

    // Under the default policy (Synapse's: the exception propagates) the request fails.
    let g = start(
        json!({}),
        vec![antispam(
            "wrong-room",
            &wrong_room,
            json!({}),
            invite(json!({"authorization": "meow"})),
        )],
    )
    .await;
    let failed = invited(&g, "@alice:hs").await;
    assert_eq!(failed["decision"], "error", "{failed}");
    assert_eq!(failed["module"], "wrong-room");
    g.stop().await;
    meow.stop().await;
    drau.stop().await;
}

#[actix_rt::test]
async fn unknown_callbacks_and_watched_ones_are_allowed_at_once_by_meowlnir() {
    let meow = RunningFake::start(meowlnir(&["@meow:hs"])).unwrap();
    let g = start(
        json!({}),
        vec![antispam(
            "meowlnir",
            &meow.base_url,
            json!({}),
            json!({"authorization": "meow",
                   "enabled_callbacks": ["user_may_create_room", "user_may_join_room"]}),
        )],
    )
    .await;
    // "Don't reject unknown callbacks, just ignore them."
    let created = g
        .dispatch_json("user_may_create_room", json!({"user_id": "@meow:hs"}))
        .await;
    assert_eq!(created, json!({"decision": "allow"}));
    let joined = g
        .dispatch_json(
            "user_may_join_room",
            json!({"user_id": "@meow:hs", "room_id": "!r:hs", "is_invited": true}),
        )
        .await;
    assert_eq!(joined, json!({"decision": "allow"}));
    assert_eq!(
        meow.requests_for("user_may_join_room")[0].json(),
        json!({"user": "@meow:hs", "room": "!r:hs", "is_invited": true})
    );
    g.stop().await;
    meow.stop().await;
}

#[actix_rt::test]
async fn a_hanging_server_is_cut_off_by_its_timeout_and_its_policy_applies() {
    let drau = RunningFake::start(draupnir(&[], &["@slow:hs"])).unwrap();
    let g = start(
        json!({}),
        vec![asks_invites(
            "draupnir",
            &drau.base_url,
            "draupnir",
            json!({"timeout": "200ms", "failure_policy": {"user_may_invite": "deny"}}),
        )],
    )
    .await;
    let denied = invited(&g, "@slow:hs").await;
    assert_eq!(denied["decision"], "deny", "{denied}");
    assert_eq!(denied["module"], "draupnir");
    assert_eq!(denied["error"], "Invites have been disabled on this server");
    assert_eq!(invited(&g, "@alice:hs").await, json!({"decision": "allow"}));
    g.stop().await;
    drau.stop().await;
}

#[actix_rt::test]
async fn background_callbacks_are_allowed_at_once_and_posted_anyway() {
    // Draupnir's blocking handler never settles for @slow:hs: a call that waited for it would
    // fail (policy `error`), so an allow proves the answer did not wait.
    let drau = RunningFake::start(Fake::Draupnir(Draupnir {
        authorization: "draupnir".into(),
        refuse_events_from: Some(vec!["@slow:hs".into()]),
        stuck_on: vec!["@slow:hs".into()],
        ..Default::default()
    }))
    .unwrap();
    let g = start(
        json!({}),
        vec![antispam(
            "draupnir",
            &drau.base_url,
            json!({"timeout": "1s"}),
            json!({"authorization": "draupnir", "enabled_callbacks": ["check_event_for_spam"],
                   "async": {"check_event_for_spam": true}}),
        )],
    )
    .await;
    let event = json!({"event_id": "$e", "room_id": "!r:hs", "sender": "@slow:hs",
        "type": "m.room.message", "content": {"body": "hi"}, "depth": 3, "hashes": {}});
    let reply = g
        .dispatch_json("check_event_for_spam", json!({"event": event}))
        .await;
    assert_eq!(reply, json!({"decision": "allow"}));
    let posted = wait_for(&drau, "check_event_for_spam").await;
    assert_eq!(
        posted.json(),
        json!({"event": {"event_id": "$e", "room_id": "!r:hs", "sender": "@slow:hs",
            "type": "m.room.message", "content": {"body": "hi"}}})
    );
    g.stop().await;
    drau.stop().await;
}

/// The first request `fake` got for `callback`, once it has one.
async fn wait_for(fake: &RunningFake, callback: &str) -> glia_tests::antispam_fakes::Recorded {
    for _ in 0..400 {
        if let Some(first) = fake.requests_for(callback).into_iter().next() {
            return first;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{callback} never reached the fake: {:?}", fake.requests())
}

#[actix_rt::test]
async fn do_ping_pings_the_server_when_the_module_starts() {
    let meow = RunningFake::start(meowlnir(&[])).unwrap();
    let g = start(
        json!({}),
        vec![antispam(
            "meowlnir",
            &meow.base_url,
            json!({}),
            json!({"authorization": "meow", "enabled_callbacks": ["user_may_invite"], "do_ping": true}),
        )],
    )
    .await;
    let ping = wait_for(&meow, "ping").await;
    let id = ping.json()["id"].as_str().unwrap().to_owned();
    assert!(
        id.len() == 8 && id.chars().all(|c| c.is_ascii_alphabetic()),
        "{id}"
    );
    assert_eq!(ping.authorization.as_deref(), Some("Bearer meow"));
    g.stop().await;
    meow.stop().await;
}

#[actix_rt::test]
async fn through_the_ingress_and_the_module_the_servers_get_the_modules_bytes() {
    let nothing = RunningFake::start(Fake::Nothing).unwrap();
    let callbacks: Vec<&str> = glia_bus_schema::http_antispam::CALLBACKS
        .iter()
        .map(|c| c.name())
        .collect();
    let g = start(
        json!({}),
        vec![antispam(
            "relay",
            &nothing.base_url,
            json!({}),
            json!({"enabled_callbacks": callbacks}),
        )],
    )
    .await;
    // Canonical JSON, as synapse-http-antispam sends it (sorted keys, no spaces).
    let bodies = [
        (
            "user_may_join_room",
            r#"{"is_invited":false,"room":"!r:hs","user":"@a:hs"}"#,
        ),
        (
            "user_may_invite",
            r#"{"invitee":"@b:hs","inviter":"@a:hs","room_id":"!r:hs"}"#,
        ),
        (
            "user_may_send_3pid_invite",
            r#"{"address":"a@b.c","inviter":"@a:hs","medium":"email","room_id":"!r:hs"}"#,
        ),
        ("user_may_create_room", r#"{"user_id":"@a:hs"}"#),
        (
            "user_may_create_room_alias",
            r##"{"room_alias":"#x:hs","user_id":"@a:hs"}"##,
        ),
        (
            "user_may_publish_room",
            r#"{"room_id":"!r:hs","user_id":"@a:hs"}"#,
        ),
        (
            "check_username_for_spam",
            r#"{"requester_id":"@b:hs","user_profile":{"avatar_url":null,"display_name":"Ä","user_id":"@a:hs"}}"#,
        ),
        (
            "check_login_for_spam",
            r#"{"auth_provider_id":null,"device_id":"D","initial_display_name":null,"request_info":[["curl/8","10.0.0.1"],[null,"::1"]],"user_id":"@a:hs"}"#,
        ),
        (
            "check_event_for_spam",
            r#"{"event":{"content":{"body":"hi","msgtype":"m.text"},"event_id":"$e","origin_server_ts":5,"room_id":"!r:hs","sender":"@a:hs","type":"m.room.message","unsigned":{"age_ts":5}}}"#,
        ),
        (
            "federated_user_may_invite",
            r#"{"event":{"content":{"membership":"invite"},"event_id":"$i","room_id":"!r:hs","sender":"@a:remote","state_key":"@b:hs","type":"m.room.member","unsigned":{"invite_room_state":[{"sender":"@c:remote","type":"m.room.create"}]}}}"#,
        ),
    ];
    for (callback, body) in bodies {
        let reply = ingress(&g, callback, body, &[]).await;
        assert_eq!(
            (reply.status, reply.text()),
            (200, "{}".to_owned()),
            "{callback}"
        );
        let got = nothing.requests_for(callback).pop().unwrap();
        assert_eq!(got.body, body, "{callback}");
    }
    g.stop().await;
    nothing.stop().await;
}
