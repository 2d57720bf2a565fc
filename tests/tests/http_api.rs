//! The HTTP API through a real server: status codes and exact bodies of decisions and
//! errors, the body size limit, the bearer token (inline and from a file), the module
//! listing, module web resources, and the request id header.

mod support;

use glia_tests::TestGlia;
use serde_json::{json, Value};
use support::{send, Reply, TempFile};

const CREATE_ROOM: &str = "/_glia/v1/callbacks/user_may_create_room";
const INVITE: &str = "/_glia/v1/callbacks/user_may_invite";
const SPAM: &str = "/_glia/v1/callbacks/check_event_for_spam";
const HELLO: &str = "/_synapse/client/demo/hello";

/// A config (JSON is YAML) with these top-level settings and module entries.
fn config(settings: Value, modules: Value) -> String {
    let mut config = settings;
    config["modules"] = modules;
    config.to_string()
}

/// glia with a `demo` module named `gatekeeper`, which denies room creation to @evil:hs.
async fn start_demo(settings: Value) -> TestGlia {
    TestGlia::start(&config(
        settings,
        json!([{"module": "demo", "name": "gatekeeper", "config": {"denied_users": ["@evil:hs"]}}]),
    ))
    .await
}

/// POSTs a JSON body, with a bearer token when given.
async fn post(g: &TestGlia, path: &str, body: &str, token: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth));
    }
    send(
        "POST",
        &format!("{}{path}", g.base_url),
        &headers,
        Some(body.as_bytes()),
    )
    .await
}

/// GETs a path, with a bearer token when given.
async fn get(g: &TestGlia, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    send("GET", &format!("{}{path}", g.base_url), &headers, None).await
}

fn create_room(user: &str) -> String {
    json!({"user_id": user, "room_config": {"preset": "private_chat"}}).to_string()
}

// ----- decisions ---------------------------------------------------------------------------

#[actix_rt::test]
async fn allow_is_exactly_decision_allow() {
    let g = start_demo(json!({})).await;
    let reply = post(&g, CREATE_ROOM, &create_room("@alice:hs"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.assert_json_content_type();
    assert_eq!(reply.text(), r#"{"decision":"allow"}"#);
    g.stop().await;
}

#[actix_rt::test]
async fn deny_carries_errcode_error_fields_and_the_module_name() {
    let g = start_demo(json!({})).await;
    let reply = post(&g, CREATE_ROOM, &create_room("@evil:hs"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.assert_json_content_type();
    assert_eq!(
        reply.json(),
        json!({
            "decision": "deny",
            "errcode": "M_FORBIDDEN",
            "error": "You are not permitted to create rooms",
            "fields": {},
            "module": "gatekeeper",
        })
    );
    g.stop().await;
}

#[actix_rt::test]
async fn a_callback_no_module_registered_allows() {
    let g = start_demo(json!({})).await;
    let body = json!({"inviter": "@a:hs", "invitee": "@b:hs", "room_id": "!r:hs"}).to_string();
    let reply = post(&g, INVITE, &body, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"decision": "allow"}));
    g.stop().await;
}

// ----- request errors ----------------------------------------------------------------------

#[actix_rt::test]
async fn an_unknown_callback_is_404_not_found() {
    let g = start_demo(json!({})).await;
    let reply = post(&g, "/_glia/v1/callbacks/user_may_explode", "{}", None).await;
    let error = reply.assert_matrix_error(404, "M_NOT_FOUND");
    assert!(error.contains("user_may_explode"), "{error}");
    g.stop().await;
}

#[actix_rt::test]
async fn malformed_json_is_400_not_json() {
    let g = start_demo(json!({})).await;
    for body in [r#"{"user_id": "#, "not json at all", ""] {
        let reply = post(&g, CREATE_ROOM, body, None).await;
        let error = reply.assert_matrix_error(400, "M_NOT_JSON");
        assert!(error.starts_with("Content not JSON"), "{body:?}: {error}");
    }
    g.stop().await;
}

#[actix_rt::test]
async fn a_field_of_the_wrong_type_is_400_bad_json_naming_the_field() {
    let g = start_demo(json!({})).await;
    let body = json!({"inviter": 5, "invitee": "@b:hs", "room_id": "!r:hs"}).to_string();
    let error = post(&g, INVITE, &body, None)
        .await
        .assert_matrix_error(400, "M_BAD_JSON");
    assert!(error.contains("inviter"), "{error}");
    assert!(error.contains("user_may_invite"), "{error}");

    let body = json!({"event": {
        "event_id": "$e", "room_id": "!r:hs", "sender": 5, "type": "m.room.message",
        "content": {"body": "hi"}
    }})
    .to_string();
    let error = post(&g, SPAM, &body, None)
        .await
        .assert_matrix_error(400, "M_BAD_JSON");
    assert!(error.contains("event.sender"), "{error}");

    // A body that is JSON but not an object.
    post(&g, INVITE, "[1, 2]", None)
        .await
        .assert_matrix_error(400, "M_BAD_JSON");
    g.stop().await;
}

#[actix_rt::test]
async fn a_missing_field_is_400_bad_json_naming_the_field() {
    let g = start_demo(json!({})).await;
    let body = json!({"inviter": "@a:hs", "invitee": "@b:hs"}).to_string();
    let error = post(&g, INVITE, &body, None)
        .await
        .assert_matrix_error(400, "M_BAD_JSON");
    assert!(error.contains("room_id"), "{error}");

    let body = json!({"event": {"room_id": "!r:hs", "type": "m.room.message"}}).to_string();
    let error = post(&g, SPAM, &body, None)
        .await
        .assert_matrix_error(400, "M_BAD_JSON");
    assert!(error.contains("sender"), "{error}");
    g.stop().await;
}

/// Valid JSON nested deeper than the decoder goes is JSON all the same: 400 `M_BAD_JSON`,
/// not `M_NOT_JSON`.
#[actix_rt::test]
async fn json_nested_too_deep_is_400_bad_json() {
    let g = start_demo(json!({})).await;
    for depth in [200, 100_000] {
        let body = format!(
            r#"{{"user_id": "@a:hs", "room_config": {{"deep": {}{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let error = post(&g, CREATE_ROOM, &body, None)
            .await
            .assert_matrix_error(400, "M_BAD_JSON");
        assert!(error.contains("nested more than 128 levels"), "{error}");
    }
    g.stop().await;
}

#[actix_rt::test]
async fn a_body_over_max_body_size_is_413_too_large() {
    let g = start_demo(json!({"max_body_size": 100})).await;
    // Under the limit: answered.
    let small = create_room("@evil:hs");
    assert!(small.len() <= 100);
    let reply = post(&g, CREATE_ROOM, &small, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["decision"], "deny");

    // Over it, with a Content-Length.
    let big = json!({"user_id": "@alice:hs", "room_config": {"name": "x".repeat(200)}}).to_string();
    let error = post(&g, CREATE_ROOM, &big, None)
        .await
        .assert_matrix_error(413, "M_TOO_LARGE");
    assert!(error.contains("100"), "{error}");

    // Over it, streamed without a Content-Length.
    let chunks = big
        .as_bytes()
        .chunks(30)
        .map(|c| Ok::<_, std::io::Error>(actix_web::web::Bytes::copy_from_slice(c)))
        .collect::<Vec<_>>();
    let mut resp = awc::Client::default()
        .post(format!("{}{CREATE_ROOM}", g.base_url))
        .insert_header(("content-type", "application/json"))
        .send_stream(futures::stream::iter(chunks))
        .await
        .expect("HTTP request");
    let body = resp.body().await.expect("HTTP body");
    assert_eq!(resp.status().as_u16(), 413);
    let body: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(body["errcode"], "M_TOO_LARGE");
    g.stop().await;
}

#[actix_rt::test]
async fn other_methods_on_a_callback_are_405() {
    let g = start_demo(json!({})).await;
    for method in ["GET", "PUT", "DELETE"] {
        let url = format!("{}{CREATE_ROOM}", g.base_url);
        let reply = send(method, &url, &[], None).await;
        reply.assert_matrix_error(405, "M_UNRECOGNIZED");
    }
    g.stop().await;
}

#[actix_rt::test]
async fn an_unknown_path_is_404_unrecognized() {
    let g = start_demo(json!({"auth_token": "s3cret"})).await;
    for path in [
        "/nope",
        "/_glia/v1/other",
        "/_glia/v1/callbacks",
        "/_synapse/client/demo",
        "/_matrix/client/v3/login",
    ] {
        let reply = get(&g, path, Some("s3cret")).await;
        reply.assert_matrix_error(404, "M_UNRECOGNIZED");
        let reply = post(&g, path, "{}", Some("s3cret")).await;
        reply.assert_matrix_error(404, "M_UNRECOGNIZED");
    }
    g.stop().await;
}

// ----- the bearer token --------------------------------------------------------------------

async fn check_token(g: &TestGlia, token: &str) {
    let body = create_room("@alice:hs");
    post(g, CREATE_ROOM, &body, None)
        .await
        .assert_matrix_error(401, "M_MISSING_TOKEN");
    post(g, CREATE_ROOM, &body, Some("wrong"))
        .await
        .assert_matrix_error(403, "M_UNKNOWN_TOKEN");
    post(g, CREATE_ROOM, &body, Some(&format!("{token}x")))
        .await
        .assert_matrix_error(403, "M_UNKNOWN_TOKEN");
    // A header that is not a bearer token is no token.
    let url = format!("{}{CREATE_ROOM}", g.base_url);
    send(
        "POST",
        &url,
        &[("authorization", token)],
        Some(body.as_bytes()),
    )
    .await
    .assert_matrix_error(401, "M_MISSING_TOKEN");

    let reply = post(g, CREATE_ROOM, &body, Some(token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"decision": "allow"}));
    // The scheme is case-insensitive (RFC 7235); the token is not.
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let header = format!("{scheme} {token}");
        let reply = send(
            "POST",
            &url,
            &[("authorization", &header)],
            Some(body.as_bytes()),
        )
        .await;
        assert_eq!(reply.status, 200, "{scheme}: {}", reply.text());
    }
    let header = format!("Bearer {}", token.to_uppercase());
    send(
        "POST",
        &url,
        &[("authorization", &header)],
        Some(body.as_bytes()),
    )
    .await
    .assert_matrix_error(403, "M_UNKNOWN_TOKEN");

    // The token is checked before the callback name and the body.
    post(g, "/_glia/v1/callbacks/user_may_explode", "{", None)
        .await
        .assert_matrix_error(401, "M_MISSING_TOKEN");

    // /health needs no token.
    let reply = get(g, "/health", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.assert_json_content_type();
    assert_eq!(
        reply.json(),
        json!({"status": "ok", "modules": 1, "failed": [], "unserved": [], "bus": "internal"})
    );

    // The module listing does.
    get(g, "/_glia/v1/modules", None)
        .await
        .assert_matrix_error(401, "M_MISSING_TOKEN");
    get(g, "/_glia/v1/modules", Some("wrong"))
        .await
        .assert_matrix_error(403, "M_UNKNOWN_TOKEN");
    let reply = get(g, "/_glia/v1/modules", Some(token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["modules"][0]["name"], "gatekeeper");

    // Module web resources answer without it (they are the module's own API).
    let reply = get(g, &format!("{HELLO}?name=x"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"hello": "x"}));
}

#[actix_rt::test]
async fn auth_token_guards_the_api() {
    let g = start_demo(json!({"auth_token": "s3cret"})).await;
    check_token(&g, "s3cret").await;
    g.stop().await;
}

#[actix_rt::test]
async fn auth_token_file_guards_the_api_the_same_way() {
    let file = TempFile::new("http-token", "from-a-file\n");
    let g = start_demo(json!({"auth_token_file": file.path_str()})).await;
    check_token(&g, "from-a-file").await;
    g.stop().await;
}

#[actix_rt::test]
async fn without_a_token_configured_no_header_is_needed() {
    let g = start_demo(json!({})).await;
    let reply = post(&g, CREATE_ROOM, &create_room("@alice:hs"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // Any header is accepted too.
    let reply = post(&g, CREATE_ROOM, &create_room("@alice:hs"), Some("anything")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = get(&g, "/_glia/v1/modules", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    g.stop().await;
}

// ----- listings and web resources ----------------------------------------------------------

#[actix_rt::test]
async fn the_module_listing_shows_modules_and_plans() {
    let g = TestGlia::start(&config(
        json!({}),
        json!([
            {"module": "demo"},
            {
                "module": "user_restrictions", "name": "rules", "priority": 5,
                "timeout": "250ms", "failure_policy": {"user_may_invite": "allow"},
                "config": {"rules": [{"match": "@guest-.*", "deny": ["invite"]}]}
            },
        ]),
    ))
    .await;
    let reply = get(&g, "/_glia/v1/modules", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.assert_json_content_type();
    let listing = reply.json();

    let modules = listing["modules"].as_array().expect("a modules list");
    assert_eq!(modules.len(), 2);
    let demo = &modules[0];
    assert_eq!(demo["name"], "demo");
    assert_eq!(demo["module"], "demo");
    assert_eq!(demo["index"], 0);
    assert_eq!(demo["priority"], 0);
    assert_eq!(demo["state"], "running");
    assert_eq!(demo["callbacks"], json!(["user_may_create_room"]));
    assert_eq!(demo["web_resources"], json!([HELLO]));
    let rules = &modules[1];
    assert_eq!(rules["name"], "rules");
    assert_eq!(rules["module"], "user_restrictions");
    assert_eq!(rules["index"], 1);
    assert_eq!(rules["priority"], 5);
    assert_eq!(rules["state"], "running");
    assert_eq!(
        rules["callbacks"],
        json!(["user_may_invite", "user_may_create_room"])
    );
    assert_eq!(rules["web_resources"], json!([]));

    let plans = &listing["plans"];
    assert_eq!(
        plans["user_may_invite"],
        json!({
            "reducer": "first_deny",
            "modules": [{"name": "rules", "timeout_ms": 250, "failure_policy": "allow", "invoke": "parallel"}],
        })
    );
    // Higher priority first.
    assert_eq!(
        plans["user_may_create_room"],
        json!({
            "reducer": "first_deny",
            "modules": [
                {"name": "rules", "timeout_ms": 250, "failure_policy": "error", "invoke": "parallel"},
                {"name": "demo", "timeout_ms": 5000, "failure_policy": "error", "invoke": "parallel"},
            ],
        })
    );
    // Only callbacks with modules are listed.
    let mut planned: Vec<&str> = plans
        .as_object()
        .expect("plans by callback")
        .keys()
        .map(String::as_str)
        .collect();
    planned.sort_unstable();
    assert_eq!(planned, ["user_may_create_room", "user_may_invite"]);
    g.stop().await;
}

#[actix_rt::test]
async fn module_web_resources_are_served_on_the_same_port() {
    let g = start_demo(json!({})).await;
    let reply = get(&g, &format!("{HELLO}?name=Alice%20B"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.assert_json_content_type();
    assert_eq!(reply.json(), json!({"hello": "Alice B"}));
    // The module's own errors come through as it wrote them.
    let reply = get(&g, HELLO, None).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["errcode"], "M_MISSING_PARAM");
    let reply = post(&g, HELLO, "{}", None).await;
    assert_eq!(reply.status, 405, "{}", reply.text());
    g.stop().await;
}

// ----- the request id ----------------------------------------------------------------------

#[actix_rt::test]
async fn x_request_id_is_echoed_or_generated() {
    let g = start_demo(json!({})).await;
    let url = format!("{}{CREATE_ROOM}", g.base_url);
    let body = create_room("@alice:hs");
    let json_type = ("content-type", "application/json");

    let reply = send(
        "POST",
        &url,
        &[json_type, ("x-request-id", "req-abc-123")],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-request-id"), Some("req-abc-123"));

    let first = send("POST", &url, &[json_type], Some(body.as_bytes())).await;
    let second = send("POST", &url, &[json_type], Some(body.as_bytes())).await;
    let first = first.header("x-request-id").expect("a generated id");
    let second = second.header("x-request-id").expect("a generated id");
    assert!(!first.is_empty());
    assert_ne!(first, second, "each request gets its own id");

    // An id too long to log is replaced by a generated one.
    let long = "x".repeat(200);
    let reply = send(
        "POST",
        &url,
        &[json_type, ("x-request-id", &long)],
        Some(body.as_bytes()),
    )
    .await;
    let id = reply.header("x-request-id").expect("a generated id");
    assert!(!id.is_empty() && id != long, "{id}");

    // Errors carry it too, so a refused request can be found in the logs.
    let reply = send(
        "POST",
        &url,
        &[json_type, ("x-request-id", "req-bad")],
        Some(b"{"),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.header("x-request-id"), Some("req-bad"));
    g.stop().await;
}
