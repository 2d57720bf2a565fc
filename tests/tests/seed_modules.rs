//! The seed (built-in) modules end to end: each one started by glia from a config (JSON is
//! YAML) and driven through glia's real HTTP server, as a Synapse operator sees it: the
//! replies of `POST /_glia/v1/callbacks/{callback}`, the modules' web resources, several
//! modules answering the same callback, `GET /_glia/v1/modules`, and the embedded example
//! config. The modules' internals have unit tests of their own; these check what comes out.

use actix_web::{web, App, HttpResponse, HttpServer};
use glia_tests::TestGlia;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

// ----- Configs and calls -------------------------------------------------------------------

/// A config with these module entries.
fn config(modules: Value) -> String {
    json!({ "modules": modules }).to_string()
}

async fn start(modules: Value) -> TestGlia {
    TestGlia::start(&config(modules)).await
}

/// A module entry of type `kind` with `config`.
fn module(kind: &str, config: Value) -> Value {
    json!({ "module": kind, "config": config })
}

/// A module entry of type `kind` named `name`.
fn named(kind: &str, name: &str, config: Value) -> Value {
    json!({ "module": kind, "name": name, "config": config })
}

/// POSTs `args` to the callback endpoint; the reply must be a 200, whose body is returned.
async fn call(g: &TestGlia, callback: &str, args: Value) -> Value {
    let (status, body) = g
        .post(
            &format!("/_glia/v1/callbacks/{callback}"),
            &args.to_string(),
            None,
        )
        .await;
    assert_eq!(status, 200, "{callback} {args} answered {body}");
    body
}

/// GETs `path`; the status and the JSON body.
async fn get(g: &TestGlia, path: &str) -> (u16, Value) {
    g.get(path, None).await
}

// ----- Replies -----------------------------------------------------------------------------

const SPAM: &str = "This message has been rejected as probable spam";
const CREATE_ROOM_DENIED: &str = "You are not permitted to create rooms";
const INVITE_DENIED: &str = "Invites have been disabled on this server";
const EVENT_NOT_ALLOWED: &str = "This event is not allowed in this context";

fn allow() -> Value {
    json!({"decision": "allow"})
}

fn deny(errcode: &str, error: &str, module: &str) -> Value {
    deny_with(errcode, error, json!({}), module)
}

fn deny_with(errcode: &str, error: &str, fields: Value, module: &str) -> Value {
    json!({"decision": "deny", "errcode": errcode, "error": error, "fields": fields, "module": module})
}

/// `message_policy`'s refusal: the configured errcode and the rule in `org.glia.reason`.
fn policy_deny(errcode: &str, reason: &str, module: &str) -> Value {
    deny_with(errcode, SPAM, json!({ "org.glia.reason": reason }), module)
}

fn expiry(expired: bool, module: &str) -> Value {
    json!({"expired": expired, "module": module})
}

// ----- Callback arguments ------------------------------------------------------------------

/// A PDU dict with the usual fields, including some glia does not type (`depth`, `hashes`...).
fn event(sender: &str, event_type: &str, content: Value) -> Value {
    json!({
        "event_id": "$ev1:example.com",
        "room_id": "!room:example.com",
        "sender": sender,
        "type": event_type,
        "content": content,
        "origin_server_ts": 1_700_000_000_000_i64,
        "depth": 12,
        "prev_events": ["$prev:example.com"],
        "auth_events": ["$create:example.com"],
        "hashes": {"sha256": "aGFzaA"},
        "signatures": {"example.com": {"ed25519:a": "c2ln"}},
        "unsigned": {"age": 5},
    })
}

fn message(sender: &str, body: &str) -> Value {
    event(
        sender,
        "m.room.message",
        json!({"msgtype": "m.text", "body": body}),
    )
}

async fn check_spam(g: &TestGlia, event: Value) -> Value {
    call(g, "check_event_for_spam", json!({ "event": event })).await
}

async fn may_create_room(g: &TestGlia, user: &str) -> Value {
    let args = json!({"user_id": user, "room_config": {"preset": "private_chat", "name": "x"}});
    call(g, "user_may_create_room", args).await
}

async fn may_invite(g: &TestGlia, inviter: &str, invitee: &str) -> Value {
    let args = json!({"inviter": inviter, "invitee": invitee, "room_id": "!room:example.com"});
    call(g, "user_may_invite", args).await
}

async fn is_expired(g: &TestGlia, user: &str) -> Value {
    call(g, "is_user_expired", json!({ "user_id": user })).await
}

async fn register(g: &TestGlia, user: &str) -> Value {
    call(g, "on_user_registration", json!({ "user_id": user })).await
}

async fn check_event_allowed(g: &TestGlia, event: &Value) -> Value {
    let create = json!({
        "event_id": "$create:example.com", "room_id": "!room:example.com",
        "sender": "@alice:example.com", "type": "m.room.create", "state_key": "",
        "content": {"creator": "@alice:example.com"},
    });
    let args = json!({ "event": event, "state_events": [create] });
    call(g, "check_event_allowed", args).await
}

/// A full presence state, so it comes back exactly as sent.
fn presence(user: &str, state: &str) -> Value {
    json!({
        "user_id": user,
        "state": state,
        "last_active_ts": 1_700_000_000_000_i64,
        "last_federation_update_ts": 0,
        "last_user_sync_ts": 1_700_000_000_500_i64,
        "status_msg": if state == "online" { Value::Null } else { json!("away") },
        "currently_active": state == "online",
    })
}

async fn users_for_states(g: &TestGlia, states: &[&Value]) -> Value {
    call(
        g,
        "get_users_for_states",
        json!({ "state_updates": states }),
    )
    .await
}

async fn interested_users(g: &TestGlia, user: &str) -> Value {
    call(g, "get_interested_users", json!({ "user_id": user })).await
}

// ----- demo --------------------------------------------------------------------------------

#[actix_rt::test]
async fn demo_denies_evilguy_room_creation_by_default_and_allows_others() {
    // No `config:` at all: the documented default denies @evilguy:example.com.
    let g = start(json!([{"module": "demo"}])).await;
    assert_eq!(
        may_create_room(&g, "@evilguy:example.com").await,
        deny("M_FORBIDDEN", CREATE_ROOM_DENIED, "demo")
    );
    for user in [
        "@alice:example.com",
        "@evilguy:localhost",
        "@EVILGUY:example.com",
    ] {
        assert_eq!(may_create_room(&g, user).await, allow(), "{user}");
    }
    // demo registers nothing else: other callbacks have no module and allow.
    assert_eq!(
        may_invite(&g, "@evilguy:example.com", "@bob:example.com").await,
        allow()
    );
    g.stop().await;
}

#[actix_rt::test]
async fn demo_denied_users_are_configurable_and_the_reply_names_the_entry() {
    let g = start(json!([named(
        "demo",
        "room-guard",
        json!({"denied_users": ["@evilguy:localhost", "@mallory:localhost"]})
    )]))
    .await;
    for user in ["@evilguy:localhost", "@mallory:localhost"] {
        assert_eq!(
            may_create_room(&g, user).await,
            deny("M_FORBIDDEN", CREATE_ROOM_DENIED, "room-guard"),
            "{user}"
        );
    }
    // The default list is replaced, not extended.
    assert_eq!(may_create_room(&g, "@evilguy:example.com").await, allow());
    assert_eq!(may_create_room(&g, "@alice:localhost").await, allow());
    g.stop().await;

    let g = start(json!([module("demo", json!({"denied_users": []}))])).await;
    assert_eq!(may_create_room(&g, "@evilguy:example.com").await, allow());
    g.stop().await;
}

#[actix_rt::test]
async fn demo_hello_resource_greets_by_name() {
    let g = start(json!([module("demo", json!({}))])).await;
    assert_eq!(
        get(&g, "/_synapse/client/demo/hello?name=bob").await,
        (200, json!({"hello": "bob"}))
    );
    assert_eq!(
        get(&g, "/_synapse/client/demo/hello?name=Alice%20B&x=1").await,
        (200, json!({"hello": "Alice B"}))
    );
    assert_eq!(
        get(&g, "/_synapse/client/demo/hello?name=%C3%A9mile+Z").await,
        (200, json!({"hello": "émile Z"}))
    );
    // Like the Synapse docs' demo (a Twisted resource that is not a leaf), the path's
    // sub-paths are not served.
    assert_eq!(
        get(&g, "/_synapse/client/demo/hello/again?name=bob")
            .await
            .0,
        404
    );
    let (status, body) = get(&g, "/_synapse/client/demo/hello").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errcode"], "M_MISSING_PARAM");
    let (status, body) = g
        .post("/_synapse/client/demo/hello?name=bob", "{}", None)
        .await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["errcode"], "M_UNRECOGNIZED");
    // Only the exact registered path is served.
    let (status, body) = get(&g, "/_synapse/client/demo/goodbye?name=bob").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errcode"], "M_UNRECOGNIZED");
    g.stop().await;

    // Without the demo module, nothing serves its path.
    let g = start(json!([])).await;
    assert_eq!(get(&g, "/_synapse/client/demo/hello?name=bob").await.0, 404);
    g.stop().await;
}

// ----- list_spam_checker -------------------------------------------------------------------

fn list_spam_checker() -> Value {
    module(
        "list_spam_checker",
        json!({"evil_users": ["@spammer:example.com", "@troll:example.org"]}),
    )
}

#[actix_rt::test]
async fn list_spam_checker_denies_events_from_listed_senders_only() {
    let g = start(json!([list_spam_checker()])).await;
    let denied = deny("M_FORBIDDEN", SPAM, "list_spam_checker");
    for sender in ["@spammer:example.com", "@troll:example.org"] {
        assert_eq!(
            check_spam(&g, message(sender, "hello")).await,
            denied,
            "{sender}"
        );
    }
    // Any event type from a listed sender.
    let reaction = event(
        "@troll:example.org",
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}}),
    );
    assert_eq!(check_spam(&g, reaction).await, denied);
    // User ids are compared exactly.
    for sender in [
        "@alice:example.com",
        "@spammer:example.org",
        "@SPAMMER:example.com",
    ] {
        assert_eq!(
            check_spam(&g, message(sender, "hello")).await,
            allow(),
            "{sender}"
        );
    }
    g.stop().await;
}

#[actix_rt::test]
async fn list_spam_checker_is_evil_resource_answers_true_or_false() {
    let g = start(json!([list_spam_checker()])).await;
    let path = "/_synapse/client/list_spam_checker/is_evil";
    assert_eq!(
        get(&g, &format!("{path}?user=%40spammer%3Aexample.com")).await,
        (
            200,
            json!({"user": "@spammer:example.com", "is_evil": true})
        )
    );
    assert_eq!(
        get(&g, &format!("{path}?user=@troll:example.org")).await,
        (200, json!({"user": "@troll:example.org", "is_evil": true}))
    );
    assert_eq!(
        get(&g, &format!("{path}?user=@alice:example.com")).await,
        (200, json!({"user": "@alice:example.com", "is_evil": false}))
    );
    let (status, body) = get(&g, path).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errcode"], "M_MISSING_PARAM");
    g.stop().await;
}

// ----- event_censorer ----------------------------------------------------------------------

/// The (path, event) pairs a censor service received.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A censor service on a free loopback port, recording every event it is sent.
///
/// - `/censor`: the event's content with "darn" and "heck" in `body` replaced by `***`;
/// - `/shout`: the content with `body` upper-cased;
/// - `/array`: a JSON list (not a content object);
/// - `/broken`: HTTP 500.
struct CensorService {
    base: String,
    seen: Seen,
    server: actix_web::dev::ServerHandle,
}

impl CensorService {
    async fn start() -> CensorService {
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(record.clone()))
                .default_service(web::to(censor))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind a free port");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        CensorService {
            base: format!("http://{addr}"),
            seen,
            server: handle,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The (path, event) pairs received so far.
    fn seen(&self) -> Vec<(String, Value)> {
        self.seen.lock().unwrap().clone()
    }

    async fn stop(self) {
        self.server.stop(false).await;
    }
}

async fn censor(
    req: actix_web::HttpRequest,
    event: web::Json<Value>,
    seen: web::Data<Seen>,
) -> HttpResponse {
    let event = event.into_inner();
    seen.lock()
        .unwrap()
        .push((req.path().to_owned(), event.clone()));
    let mut content = event["content"].clone();
    let body = content["body"].as_str().map(str::to_owned);
    match req.path() {
        "/censor" => {
            if let Some(body) = body {
                content["body"] = json!(body.replace("darn", "***").replace("heck", "***"));
            }
            HttpResponse::Ok().json(content)
        }
        "/shout" => {
            if let Some(body) = body {
                content["body"] = json!(body.to_uppercase());
            }
            HttpResponse::Ok().json(content)
        }
        "/array" => HttpResponse::Ok().json(json!([content])),
        _ => HttpResponse::InternalServerError().json(json!({"error": "broken"})),
    }
}

/// An http URL on a loopback port where nothing listens.
fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/censor")
}

fn censorer(endpoint: &str) -> Value {
    module("event_censorer", json!({ "endpoint": endpoint }))
}

/// `event` with its content replaced.
fn with_content(event: &Value, content: Value) -> Value {
    let mut replaced = event.clone();
    replaced["content"] = content;
    replaced
}

fn replaced(event: &Value, content: Value, module: &str) -> Value {
    json!({"decision": "allow", "replacement": with_content(event, content), "module": module})
}

/// A `{"decision": "error"}` reply from `module` whose message mentions each of `parts`.
fn assert_error(reply: &Value, module: &str, parts: &[&str]) {
    assert_eq!(reply["decision"], "error", "{reply}");
    assert_eq!(reply["status"], 500, "{reply}");
    assert_eq!(reply["errcode"], "M_UNKNOWN", "{reply}");
    assert_eq!(reply["module"], module, "{reply}");
    let error = reply["error"].as_str().unwrap_or_default();
    for part in parts {
        assert!(error.contains(part), "{part:?} not in {reply}");
    }
}

#[actix_rt::test]
async fn event_censorer_replaces_the_content_with_the_censors_answer() {
    let service = CensorService::start().await;
    let g = start(json!([censorer(&service.url("/censor"))])).await;

    let original = message("@alice:example.com", "well darn it, heck");
    assert_eq!(
        check_event_allowed(&g, &original).await,
        replaced(
            &original,
            json!({"msgtype": "m.text", "body": "well *** it, ***"}),
            "event_censorer"
        )
    );
    // The service got the PDU dict as sent, untyped fields included (not the state).
    assert_eq!(service.seen(), vec![("/censor".to_owned(), original)]);

    // Every event is rewritten, even when the censor changes nothing, and whatever its type.
    let topic = event("@bob:example.com", "m.room.topic", json!({"topic": "heck"}));
    assert_eq!(
        check_event_allowed(&g, &topic).await,
        replaced(&topic, json!({"topic": "heck"}), "event_censorer")
    );
    assert_eq!(service.seen().len(), 2);

    g.stop().await;
    service.stop().await;
}

#[actix_rt::test]
async fn event_censorer_down_fails_the_event_unless_the_failure_policy_says_otherwise() {
    let endpoint = closed_endpoint();
    let event = message("@alice:example.com", "darn");

    // check_event_allowed fails closed by default, as Synapse (v1.47+) does: a 500.
    let g = start(json!([censorer(&endpoint)])).await;
    assert_error(
        &check_event_allowed(&g, &event).await,
        "event_censorer",
        &[&endpoint, "request failed"],
    );
    g.stop().await;

    let with_policy = |policy: Value| json!([{"module": "event_censorer", "failure_policy": policy, "config": {"endpoint": endpoint}}]);
    // `allow`: the event goes through unchanged.
    for policy in [json!("allow"), json!({"check_event_allowed": "allow"})] {
        let g = start(with_policy(policy.clone())).await;
        assert_eq!(
            check_event_allowed(&g, &event).await,
            allow(),
            "policy {policy}"
        );
        g.stop().await;
    }
    // `deny`: refused as a module's deny of check_event_allowed is.
    let g = start(with_policy(json!({"default": "deny"}))).await;
    assert_eq!(
        check_event_allowed(&g, &event).await,
        deny("M_FORBIDDEN", EVENT_NOT_ALLOWED, "event_censorer")
    );
    g.stop().await;
}

#[actix_rt::test]
async fn event_censorer_answers_that_are_not_content_fail_the_event() {
    let service = CensorService::start().await;
    let event = message("@alice:example.com", "hi");

    let g = start(json!([censorer(&service.url("/array"))])).await;
    assert_error(
        &check_event_allowed(&g, &event).await,
        "event_censorer",
        &["/array", "not a JSON object"],
    );
    g.stop().await;

    let g = start(json!([censorer(&service.url("/broken"))])).await;
    assert_error(
        &check_event_allowed(&g, &event).await,
        "event_censorer",
        &["/broken", "HTTP 500"],
    );
    g.stop().await;
    service.stop().await;
}

#[actix_rt::test]
async fn the_first_censor_in_order_makes_the_replacement() {
    let service = CensorService::start().await;
    let event = message("@alice:example.com", "oh heck");
    let censor = |name: &str, endpoint: String, policy: &str| {
        json!({"module": "event_censorer", "name": name, "failure_policy": policy,
               "config": {"endpoint": endpoint}})
    };

    let g = start(json!([
        censor("stars", service.url("/censor"), "error"),
        censor("shout", service.url("/shout"), "error"),
    ]))
    .await;
    assert_eq!(
        check_event_allowed(&g, &event).await,
        replaced(
            &event,
            json!({"msgtype": "m.text", "body": "oh ***"}),
            "stars"
        )
    );
    g.stop().await;

    // The first censor is down and fails open: the second one's replacement is used.
    let g = start(json!([
        censor("down", closed_endpoint(), "allow"),
        censor("shout", service.url("/shout"), "error"),
    ]))
    .await;
    assert_eq!(
        check_event_allowed(&g, &event).await,
        replaced(
            &event,
            json!({"msgtype": "m.text", "body": "OH HECK"}),
            "shout"
        )
    );
    g.stop().await;
    service.stop().await;
}

// ----- custom_presence_router --------------------------------------------------------------

#[actix_rt::test]
async fn custom_presence_router_routes_bob_and_charlie_to_alice() {
    // The documented defaults: Alice gets Bob's and Charlie's presence.
    let g = start(json!([{"module": "custom_presence_router"}])).await;
    let bob = presence("@bob:example.com", "online");
    let charlie = presence("@charlie:example.com", "unavailable");
    let dave = presence("@dave:example.com", "online");

    assert_eq!(
        users_for_states(&g, &[&bob, &dave, &charlie, &bob]).await,
        json!({"users": {"@alice:example.com": [bob, charlie]}})
    );
    assert_eq!(users_for_states(&g, &[&dave]).await, json!({"users": {}}));
    assert_eq!(users_for_states(&g, &[]).await, json!({"users": {}}));

    assert_eq!(
        interested_users(&g, "@alice:example.com").await,
        json!({"users": ["@bob:example.com", "@charlie:example.com"]})
    );
    for user in ["@bob:example.com", "@dave:example.com", "@alice:localhost"] {
        assert_eq!(
            interested_users(&g, user).await,
            json!({"users": []}),
            "{user}"
        );
    }
    g.stop().await;
}

#[actix_rt::test]
async fn presence_routers_answers_are_united() {
    let g = start(json!([
        named(
            "custom_presence_router",
            "to-alice",
            json!({"to_user": "@alice:localhost", "from_users": ["@bob:localhost", "@charlie:localhost"]})
        ),
        named(
            "custom_presence_router",
            "to-alice-and-erin",
            json!({"to_user": "@alice:localhost", "from_users": ["@dave:localhost", "@bob:localhost"]})
        ),
        named(
            "custom_presence_router",
            "to-erin",
            json!({"to_user": "@erin:localhost", "from_users": ["@bob:localhost"]})
        ),
    ]))
    .await;
    let bob = presence("@bob:localhost", "online");
    let dave = presence("@dave:localhost", "offline");
    assert_eq!(
        users_for_states(&g, &[&bob, &dave]).await,
        json!({"users": {
            "@alice:localhost": [bob, dave],
            "@erin:localhost": [bob],
        }})
    );
    assert_eq!(
        interested_users(&g, "@alice:localhost").await,
        json!({"users": ["@bob:localhost", "@charlie:localhost", "@dave:localhost"]})
    );
    assert_eq!(
        interested_users(&g, "@erin:localhost").await,
        json!({"users": ["@bob:localhost"]})
    );
    assert_eq!(
        interested_users(&g, "@bob:localhost").await,
        json!({"users": []})
    );
    g.stop().await;
}

// ----- account_expiry ----------------------------------------------------------------------

/// 2100-01-01, in milliseconds since the epoch.
const FAR_FUTURE_MS: i64 = 4_102_444_800_000;
const REGISTERED_PATH: &str = "/_synapse/client/account_expiry/registered";

/// `reply` without its lifetime, and the lifetime: `valid_until_ms`, and the generation of
/// glia's routing it was decided under, which must be `g`'s.
fn lifetime_of(g: &TestGlia, mut reply: Value) -> (Value, Option<i64>) {
    let fields = reply.as_object_mut().expect("a JSON object");
    let until = fields.remove("valid_until_ms").and_then(|v| v.as_i64());
    let generation = fields.remove("generation");
    let expected = until.map(|_| json!(&*g.glia.coordinator().generation()));
    assert_eq!(generation, expected, "a lifetime comes with its generation");
    (reply, until)
}

/// Whether `until` is about a day from now: what account_expiry says of an answer only a
/// config change can change.
fn about_a_day_from_now(until: Option<i64>) -> bool {
    let day = 24 * 60 * 60 * 1000;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    until.is_some_and(|until| (now + day - 60_000..=now + day).contains(&until))
}

#[actix_rt::test]
async fn account_expiry_answers_from_its_expiry_table() {
    let g = start(json!([module(
        "account_expiry",
        json!({"expiry": {"@expired:localhost": 0, "@future:localhost": FAR_FUTURE_MS}})
    )]))
    .await;
    // A passed time stays passed: that holds as long as the config (said: a day).
    let (expired, until) = lifetime_of(&g, is_expired(&g, "@expired:localhost").await);
    assert_eq!(expired, expiry(true, "account_expiry"));
    assert!(about_a_day_from_now(until), "{until:?}");
    // Not expired yet: that holds until the listed time, which the reply carries, for the
    // generation of glia's routing it was decided under.
    let future = lifetime_of(&g, is_expired(&g, "@future:localhost").await);
    assert_eq!(
        future,
        (expiry(false, "account_expiry"), Some(FAR_FUTURE_MS))
    );
    // No opinion: Synapse then uses its own account validity, or false. Without
    // default_validity_ms nothing lists a user the config does not: that holds a day too.
    let (unlisted, until) = lifetime_of(&g, is_expired(&g, "@unlisted:localhost").await);
    assert_eq!(unlisted, json!({"expired": null}));
    assert!(about_a_day_from_now(until), "{until:?}");
    g.stop().await;
}

#[actix_rt::test]
async fn account_expiry_records_registrations_and_serves_them() {
    let g = start(json!([module(
        "account_expiry",
        json!({"expiry": {"@expired:localhost": 0}, "default_validity_ms": 2_592_000_000_i64})
    )]))
    .await;
    assert_eq!(get(&g, REGISTERED_PATH).await, (200, json!({"users": []})));
    for user in ["@new:localhost", "@other:localhost", "@new:localhost"] {
        assert_eq!(register(&g, user).await, allow(), "{user}");
    }
    assert_eq!(
        get(&g, REGISTERED_PATH).await,
        (
            200,
            json!({"users": ["@new:localhost", "@other:localhost"]})
        )
    );
    // A new user is valid for default_validity_ms (the reply holds until then); a listed
    // user keeps their listed time.
    let (new, until) = lifetime_of(&g, is_expired(&g, "@new:localhost").await);
    let until = until.expect("a lifetime");
    let registered_by = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    assert!(
        until <= registered_by + 2_592_000_000 && until > registered_by + 2_592_000_000 - 60_000
    );
    assert_eq!(new, expiry(false, "account_expiry"));
    assert_eq!(register(&g, "@expired:localhost").await, allow());
    assert_eq!(
        lifetime_of(&g, is_expired(&g, "@expired:localhost").await).0,
        expiry(true, "account_expiry")
    );
    // Not listed, but a registration could list them: for this request only.
    assert_eq!(
        is_expired(&g, "@unlisted:localhost").await,
        json!({"expired": null})
    );
    let (status, body) = g.post(REGISTERED_PATH, "{}", None).await;
    assert_eq!(status, 405, "{body}");
    g.stop().await;

    // Without default_validity_ms a registration gives no opinion on expiry.
    let g = start(json!([{"module": "account_expiry"}])).await;
    assert_eq!(register(&g, "@new:localhost").await, allow());
    assert_eq!(
        get(&g, REGISTERED_PATH).await,
        (200, json!({"users": ["@new:localhost"]}))
    );
    assert_eq!(
        lifetime_of(&g, is_expired(&g, "@new:localhost").await).0,
        json!({"expired": null})
    );
    g.stop().await;
}

#[actix_rt::test]
async fn is_user_expired_takes_the_first_module_with_an_opinion() {
    let g = start(json!([
        named(
            "account_expiry",
            "first",
            json!({"expiry": {"@a:localhost": 0}})
        ),
        named(
            "account_expiry",
            "second",
            json!({"expiry": {"@a:localhost": FAR_FUTURE_MS, "@b:localhost": 0, "@c:localhost": FAR_FUTURE_MS}})
        ),
    ]))
    .await;
    let answer = |user: &'static str| {
        let g = &g;
        async move { lifetime_of(g, is_expired(g, user).await).0 }
    };
    assert_eq!(answer("@a:localhost").await, expiry(true, "first"));
    assert_eq!(answer("@b:localhost").await, expiry(true, "second"));
    assert_eq!(answer("@c:localhost").await, expiry(false, "second"));
    assert_eq!(answer("@d:localhost").await, json!({"expired": null}));
    // Both are told of a registration; the first registered web resource path wins.
    assert_eq!(register(&g, "@e:localhost").await, allow());
    assert_eq!(
        get(&g, REGISTERED_PATH).await,
        (200, json!({"users": ["@e:localhost"]}))
    );
    g.stop().await;
}

// ----- user_restrictions -------------------------------------------------------------------

/// The rules of deploy/glia.example.yaml.
fn example_restrictions() -> Value {
    module(
        "user_restrictions",
        json!({
            "rules": [
                {"match": "@admin:example\\.com", "allow": ["invite", "create_room"]},
                {"match": "@guest-.*:example\\.com", "deny": ["invite", "create_room"]},
            ],
            "default_deny": [],
        }),
    )
}

#[actix_rt::test]
async fn user_restrictions_example_rules() {
    let g = start(json!([example_restrictions()])).await;
    let denied_invite = deny("M_FORBIDDEN", INVITE_DENIED, "user_restrictions");
    let denied_room = deny("M_FORBIDDEN", CREATE_ROOM_DENIED, "user_restrictions");

    assert_eq!(
        may_invite(&g, "@admin:example.com", "@bob:example.com").await,
        allow()
    );
    assert_eq!(may_create_room(&g, "@admin:example.com").await, allow());

    for guest in ["@guest-joe:example.com", "@guest-:example.com"] {
        assert_eq!(
            may_invite(&g, guest, "@bob:example.com").await,
            denied_invite,
            "{guest}"
        );
        assert_eq!(may_create_room(&g, guest).await, denied_room, "{guest}");
    }
    // The match is anchored on the whole user id.
    for user in [
        "@guest-joe:example.com.evil.org",
        "@guest-joe:other.org",
        "@xguest-joe:example.com",
        "@bob:example.com",
    ] {
        assert_eq!(
            may_invite(&g, user, "@bob:example.com").await,
            allow(),
            "{user}"
        );
        assert_eq!(may_create_room(&g, user).await, allow(), "{user}");
    }
    g.stop().await;
}

#[actix_rt::test]
async fn user_restrictions_first_matching_rule_wins_and_allow_overrides_default_deny() {
    let g = start(json!([module(
        "user_restrictions",
        json!({
            "rules": [
                {"match": "@admin-[a-z]+:example\\.com", "allow": ["invite", "create_room"]},
                {"match": "@guest-.*", "deny": ["invite"]},
                {"match": "@guest-vip:.*", "allow": ["invite", "create_room"]},
            ],
            "default_deny": ["create_room"],
        })
    )]))
    .await;
    let denied_invite = deny("M_FORBIDDEN", INVITE_DENIED, "user_restrictions");
    let denied_room = deny("M_FORBIDDEN", CREATE_ROOM_DENIED, "user_restrictions");
    let someone = "@someone:example.com";

    // Rule 1 allows both, over default_deny.
    assert_eq!(
        may_invite(&g, "@admin-ann:example.com", someone).await,
        allow()
    );
    assert_eq!(may_create_room(&g, "@admin-ann:example.com").await, allow());
    // Rule 2 is the first to match and decides invite, though rule 3 would allow it; for
    // create_room rule 2 says nothing and rule 3 allows.
    assert_eq!(
        may_invite(&g, "@guest-vip:example.com", someone).await,
        denied_invite
    );
    assert_eq!(may_create_room(&g, "@guest-vip:example.com").await, allow());
    // Rule 2 decides invite; nothing decides create_room, so default_deny does.
    assert_eq!(
        may_invite(&g, "@guest-joe:example.com", someone).await,
        denied_invite
    );
    assert_eq!(
        may_create_room(&g, "@guest-joe:example.com").await,
        denied_room
    );
    // No rule: invite is allowed, create_room is in default_deny.
    assert_eq!(may_invite(&g, "@bob:example.com", someone).await, allow());
    assert_eq!(may_create_room(&g, "@bob:example.com").await, denied_room);
    // Digits are not [a-z]: rule 1 does not match.
    assert_eq!(
        may_create_room(&g, "@admin-007:example.com").await,
        denied_room
    );
    g.stop().await;
}

#[actix_rt::test]
async fn user_may_invite_checks_the_inviter_not_the_invitee() {
    let g = start(json!([example_restrictions()])).await;
    assert_eq!(
        may_invite(&g, "@guest-joe:example.com", "@admin:example.com").await,
        deny("M_FORBIDDEN", INVITE_DENIED, "user_restrictions")
    );
    assert_eq!(
        may_invite(&g, "@admin:example.com", "@guest-joe:example.com").await,
        allow()
    );
    assert_eq!(
        may_invite(&g, "@bob:example.com", "@guest-joe:example.com").await,
        allow()
    );
    g.stop().await;

    // default_deny alone: nobody may invite, everybody may create rooms.
    let g = start(json!([module(
        "user_restrictions",
        json!({"default_deny": ["invite"]})
    )]))
    .await;
    assert_eq!(
        may_invite(&g, "@admin:example.com", "@bob:example.com").await,
        deny("M_FORBIDDEN", INVITE_DENIED, "user_restrictions")
    );
    assert_eq!(may_create_room(&g, "@admin:example.com").await, allow());
    g.stop().await;
}

// ----- message_policy ----------------------------------------------------------------------

const POLICY_ERRCODE: &str = "ORG_EXAMPLE_POLICY";

fn message_policy() -> Value {
    module(
        "message_policy",
        json!({
            "max_body_length": 40,
            "blocked_patterns": ["free\\s+crypto", "https?://bit\\.ly/"],
            "blocked_keywords": ["buy followers"],
            "blocked_homeservers": ["spam.example.org"],
            "errcode": POLICY_ERRCODE,
        }),
    )
}

#[actix_rt::test]
async fn message_policy_refuses_with_the_configured_errcode_and_the_rules_reason() {
    let g = start(json!([message_policy()])).await;
    let refused = |reason: &str| policy_deny(POLICY_ERRCODE, reason, "message_policy");
    let alice = "@alice:example.com";
    let cases = [
        (message(alice, &"a".repeat(41)), refused("body_too_long")),
        (
            message(alice, "Get FREE \t crypto now"),
            refused("blocked_pattern"),
        ),
        (
            message(alice, "see https://bit.ly/abc"),
            refused("blocked_pattern"),
        ),
        (
            message(alice, "Buy Followers cheap"),
            refused("blocked_keyword"),
        ),
        (
            message("@bot:spam.example.org", "hello"),
            refused("blocked_homeserver"),
        ),
        (
            message("@bot:SPAM.Example.org", "hello"),
            refused("blocked_homeserver"),
        ),
        // The homeserver rule comes first, then length, then patterns, then keywords.
        (
            message(
                "@bot:spam.example.org",
                "free crypto, buy followers, and more text",
            ),
            refused("blocked_homeserver"),
        ),
        (
            message(alice, "free crypto, buy followers, and more text"),
            refused("body_too_long"),
        ),
        (
            message(alice, "free crypto, buy followers"),
            refused("blocked_pattern"),
        ),
        // Allowed: clean, exactly at the limit (in characters, not bytes), near misses.
        (message(alice, "hello there"), allow()),
        (message(alice, &"é".repeat(40)), allow()),
        (
            message(alice, "freecrypto, buy  followers, bit.ly/x"),
            allow(),
        ),
        (message("@bot:notspam.example.org", "hello"), allow()),
        (message("@bot:example.org", "hello"), allow()),
    ];
    for (event, expected) in cases {
        assert_eq!(check_spam(&g, event.clone()).await, expected, "{event}");
    }
    g.stop().await;
}

#[actix_rt::test]
async fn message_policy_skips_body_checks_for_non_message_events() {
    let g = start(json!([message_policy()])).await;
    let alice = "@alice:example.com";
    let bad = "buy followers: free crypto at https://bit.ly/x, a long message";
    for (event_type, content) in [
        ("m.room.topic", json!({"topic": bad, "body": bad})),
        (
            "m.sticker",
            json!({"body": bad, "url": "mxc://example.com/x"}),
        ),
        ("m.reaction", json!({"body": bad})),
    ] {
        assert_eq!(
            check_spam(&g, event(alice, event_type, content)).await,
            allow(),
            "{event_type}"
        );
    }
    // A message without a string body has nothing to check.
    assert_eq!(
        check_spam(&g, event(alice, "m.room.message", json!({"body": 12345}))).await,
        allow()
    );
    // The homeserver rule applies to every event type.
    assert_eq!(
        check_spam(&g, event("@bot:spam.example.org", "m.reaction", json!({}))).await,
        policy_deny(POLICY_ERRCODE, "blocked_homeserver", "message_policy")
    );
    g.stop().await;
}

#[actix_rt::test]
async fn message_policy_errcode_defaults_to_m_forbidden() {
    let g = start(json!([module(
        "message_policy",
        json!({"blocked_keywords": ["viagra"]})
    )]))
    .await;
    assert_eq!(
        check_spam(&g, message("@alice:example.com", "cheap VIAGRA")).await,
        policy_deny("M_FORBIDDEN", "blocked_keyword", "message_policy")
    );
    assert_eq!(
        check_spam(&g, message("@alice:example.com", &"x".repeat(100_000))).await,
        allow()
    );
    g.stop().await;
}

// ----- Several modules ---------------------------------------------------------------------

/// demo denying evilguy, the admin and one guest; user_restrictions as in the example.
fn demo_for_combination() -> Value {
    module(
        "demo",
        json!({"denied_users": [
            "@evilguy:example.com", "@admin:example.com", "@guest-evil:example.com"
        ]}),
    )
}

#[actix_rt::test]
async fn the_first_denying_module_in_config_order_is_named() {
    let denied_by = |module: &str| deny("M_FORBIDDEN", CREATE_ROOM_DENIED, module);

    let g = start(json!([demo_for_combination(), example_restrictions()])).await;
    assert_eq!(
        may_create_room(&g, "@evilguy:example.com").await,
        denied_by("demo")
    );
    assert_eq!(
        may_create_room(&g, "@guest-joe:example.com").await,
        denied_by("user_restrictions")
    );
    // Both deny: the first in config order is named.
    assert_eq!(
        may_create_room(&g, "@guest-evil:example.com").await,
        denied_by("demo")
    );
    // A later module's allow does not undo an earlier deny.
    assert_eq!(
        may_create_room(&g, "@admin:example.com").await,
        denied_by("demo")
    );
    assert_eq!(may_create_room(&g, "@bob:example.com").await, allow());
    // Only user_restrictions answers user_may_invite.
    assert_eq!(
        may_invite(&g, "@evilguy:example.com", "@bob:example.com").await,
        allow()
    );
    g.stop().await;

    // The other order names the other module.
    let g = start(json!([example_restrictions(), demo_for_combination()])).await;
    assert_eq!(
        may_create_room(&g, "@guest-evil:example.com").await,
        denied_by("user_restrictions")
    );
    assert_eq!(
        may_create_room(&g, "@evilguy:example.com").await,
        denied_by("demo")
    );
    g.stop().await;

    // A priority overrides config order.
    let mut restrictions = example_restrictions();
    restrictions["priority"] = json!(10);
    let g = start(json!([demo_for_combination(), restrictions])).await;
    assert_eq!(
        may_create_room(&g, "@guest-evil:example.com").await,
        denied_by("user_restrictions")
    );
    g.stop().await;
}

#[actix_rt::test]
async fn spam_checkers_combine_in_config_order() {
    let spammer_selling = message("@spammer:example.com", "buy followers");

    let g = start(json!([list_spam_checker(), message_policy()])).await;
    assert_eq!(
        check_spam(&g, spammer_selling.clone()).await,
        deny("M_FORBIDDEN", SPAM, "list_spam_checker")
    );
    assert_eq!(
        check_spam(&g, message("@alice:example.com", "buy followers")).await,
        policy_deny(POLICY_ERRCODE, "blocked_keyword", "message_policy")
    );
    assert_eq!(
        check_spam(&g, message("@alice:example.com", "hello")).await,
        allow()
    );
    g.stop().await;

    let g = start(json!([message_policy(), list_spam_checker()])).await;
    assert_eq!(
        check_spam(&g, spammer_selling).await,
        policy_deny(POLICY_ERRCODE, "blocked_keyword", "message_policy")
    );
    g.stop().await;
}

/// The entry of `/_glia/v1/modules` for `name`, its callbacks sorted.
fn listed(listing: &Value, name: &str) -> Value {
    let mut entry = listing["modules"]
        .as_array()
        .expect("a module list")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed in {listing}"))
        .clone();
    let mut callbacks: Vec<String> =
        serde_json::from_value(entry["callbacks"].clone()).expect("callback names");
    callbacks.sort();
    entry["callbacks"] = json!(callbacks);
    entry
}

/// The module names of a callback's plan, in plan order.
fn plan_order(listing: &Value, callback: &str) -> Vec<String> {
    listing["plans"][callback]["modules"]
        .as_array()
        .unwrap_or_else(|| panic!("no plan for {callback} in {listing}"))
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_rt::test]
async fn modules_listing_shows_every_module_with_its_callbacks_and_resources() {
    let g = start(json!([
        demo_for_combination(),
        list_spam_checker(),
        censorer(&closed_endpoint()),
        {"module": "custom_presence_router"},
        {"module": "account_expiry"},
        example_restrictions(),
        message_policy(),
    ]))
    .await;
    let (status, listing) = get(&g, "/_glia/v1/modules").await;
    assert_eq!(status, 200, "{listing}");
    let names: Vec<&str> = listing["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "demo",
            "list_spam_checker",
            "event_censorer",
            "custom_presence_router",
            "account_expiry",
            "user_restrictions",
            "message_policy",
        ]
    );
    let expected = [
        (
            "demo",
            vec!["user_may_create_room"],
            vec!["/_synapse/client/demo/hello"],
        ),
        (
            "list_spam_checker",
            vec!["check_event_for_spam"],
            vec!["/_synapse/client/list_spam_checker/is_evil"],
        ),
        ("event_censorer", vec!["check_event_allowed"], vec![]),
        (
            "custom_presence_router",
            vec!["get_interested_users", "get_users_for_states"],
            vec![],
        ),
        (
            "account_expiry",
            vec!["is_user_expired", "on_user_registration"],
            vec![REGISTERED_PATH],
        ),
        (
            "user_restrictions",
            vec!["user_may_create_room", "user_may_invite"],
            vec![],
        ),
        ("message_policy", vec!["check_event_for_spam"], vec![]),
    ];
    for (index, (name, callbacks, resources)) in expected.into_iter().enumerate() {
        let entry = listed(&listing, name);
        assert_eq!(entry["module"], name, "{entry}");
        assert_eq!(entry["index"], index, "{entry}");
        assert_eq!(entry["state"], "running", "{entry}");
        assert_eq!(entry["callbacks"], json!(callbacks), "{entry}");
        assert_eq!(entry["web_resources"], json!(resources), "{entry}");
    }
    assert_eq!(
        plan_order(&listing, "user_may_create_room"),
        ["demo", "user_restrictions"]
    );
    assert_eq!(
        listing["plans"]["user_may_create_room"]["reducer"],
        "first_deny"
    );
    assert_eq!(
        plan_order(&listing, "check_event_for_spam"),
        ["list_spam_checker", "message_policy"]
    );
    assert_eq!(
        listing["plans"]["is_user_expired"]["reducer"],
        "first_non_none"
    );
    assert_eq!(listing["plans"]["get_interested_users"]["reducer"], "union");
    assert_eq!(
        listing["plans"]["check_event_allowed"]["modules"][0]["failure_policy"],
        "error"
    );
    assert_eq!(
        listing["plans"]["get_users_for_states"]["modules"][0]["failure_policy"],
        "allow"
    );
    let (status, health) = get(&g, "/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["modules"], 7, "{health}");
    g.stop().await;
}

// ----- The embedded example config ---------------------------------------------------------

#[actix_rt::test]
async fn the_embedded_example_config_answers_as_documented() {
    // Its `listen:` is a fixed port; TestGlia binds its own, so that port is not used.
    let g = TestGlia::start(glia_runtime::config::EMBEDDED_CONFIG).await;

    // demo
    assert_eq!(
        may_create_room(&g, "@evilguy:example.com").await,
        deny("M_FORBIDDEN", CREATE_ROOM_DENIED, "demo")
    );
    assert_eq!(
        get(&g, "/_synapse/client/demo/hello?name=bob").await,
        (200, json!({"hello": "bob"}))
    );
    // user_restrictions
    assert_eq!(
        may_create_room(&g, "@guest-joe:example.com").await,
        deny("M_FORBIDDEN", CREATE_ROOM_DENIED, "user_restrictions")
    );
    assert_eq!(
        may_invite(&g, "@guest-joe:example.com", "@bob:example.com").await,
        deny("M_FORBIDDEN", INVITE_DENIED, "user_restrictions")
    );
    assert_eq!(may_create_room(&g, "@admin:example.com").await, allow());
    assert_eq!(may_create_room(&g, "@bob:example.com").await, allow());
    // list_spam_checker, then message_policy
    assert_eq!(
        check_spam(&g, message("@evil:example.com", "buy followers")).await,
        deny("M_FORBIDDEN", SPAM, "list_spam_checker")
    );
    assert_eq!(
        get(
            &g,
            "/_synapse/client/list_spam_checker/is_evil?user=@spammer:example.com"
        )
        .await,
        (
            200,
            json!({"user": "@spammer:example.com", "is_evil": true})
        )
    );
    let refused = |reason: &str| policy_deny("M_FORBIDDEN", reason, "message_policy");
    let alice = "@alice:example.com";
    assert_eq!(
        check_spam(&g, message(alice, "Buy followers here")).await,
        refused("blocked_keyword")
    );
    assert_eq!(
        check_spam(&g, message(alice, "FREE  crypto")).await,
        refused("blocked_pattern")
    );
    assert_eq!(
        check_spam(&g, message(alice, &"x".repeat(10_001))).await,
        refused("body_too_long")
    );
    assert_eq!(
        check_spam(&g, message("@bot:spam.example.org", "hi")).await,
        refused("blocked_homeserver")
    );
    assert_eq!(check_spam(&g, message(alice, "hello")).await, allow());
    // custom_presence_router
    let bob = presence("@bob:example.com", "online");
    assert_eq!(
        users_for_states(&g, &[&bob]).await,
        json!({"users": {"@alice:example.com": [bob]}})
    );
    assert_eq!(
        interested_users(&g, alice).await,
        json!({"users": ["@bob:example.com", "@charlie:example.com"]})
    );
    // account_expiry
    assert_eq!(
        lifetime_of(&g, is_expired(&g, "@expired:example.com").await).0,
        expiry(true, "account_expiry")
    );
    assert_eq!(
        lifetime_of(&g, is_expired(&g, alice).await).0,
        json!({"expired": null})
    );
    // No event_censorer in the embedded default: events pass unchanged.
    assert_eq!(
        check_event_allowed(&g, &message(alice, "darn")).await,
        allow()
    );

    // The listing shows the per-module settings of the example.
    let (status, listing) = get(&g, "/_glia/v1/modules").await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["modules"].as_array().map(Vec::len), Some(6));
    let spam_plan = &listing["plans"]["check_event_for_spam"]["modules"];
    assert_eq!(spam_plan[0]["name"], "list_spam_checker");
    assert_eq!(spam_plan[0]["timeout_ms"], 250);
    assert_eq!(spam_plan[0]["failure_policy"], "error");
    assert_eq!(spam_plan[1]["name"], "message_policy");
    assert_eq!(spam_plan[1]["timeout_ms"], 5000);
    assert_eq!(spam_plan[1]["failure_policy"], "allow");
    g.stop().await;
}
