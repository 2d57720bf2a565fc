//! Remote modules played by hand over a real nats-server, saying what a glia module cannot
//! say: registrations Synapse would refuse, a bare `None` from `check_event_allowed`, and
//! `SynapseError`s with any status and extra fields.

use futures::StreamExt;
use glia_bus_schema::subjects;
use glia_tests::nats::NatsServer;
use glia_tests::TestGlia;
use serde_json::{json, Value};

/// A config on the NATS bus at `url` with these module entries.
fn config(url: &str, modules: Value) -> String {
    json!({"bus": {"type": "nats", "url": url}, "modules": modules}).to_string()
}

/// Plays module `name`: answers `describe` with `description` and every invocation with
/// `answer(callback)` (the `result` of its reply).
async fn play_module(
    url: &str,
    name: &str,
    description: Value,
    answer: impl Fn(&str) -> Value + 'static,
) -> async_nats::Client {
    let client = async_nats::connect(url).await.unwrap();
    let mut invocations = client
        .queue_subscribe(
            subjects::module_wildcard(name),
            subjects::module_queue_group(name),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    let responder = client.clone();
    actix_rt::spawn(async move {
        while let Some(message) = invocations.next().await {
            let Some(reply) = message.reply else { continue };
            let callback = message.subject.rsplit('.').next().unwrap_or_default();
            let body = if callback == subjects::DESCRIBE {
                description.clone()
            } else {
                let invocation: Value = serde_json::from_slice(&message.payload).unwrap();
                json!({"request_id": invocation["request_id"], "result": answer(callback)})
            };
            let _ = responder
                .publish(reply, serde_json::to_vec(&body).unwrap().into())
                .await;
        }
    });
    client
}

/// Asserts `reply` fails the request as a module failure (Synapse's own 500, not a
/// `SynapseError` of the module's) for an invalid answer.
fn assert_failed_as_invalid(reply: &Value) {
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
}

#[actix_rt::test]
async fn a_remote_module_registering_half_a_presence_router_is_refused_at_start() {
    let nats = NatsServer::start();
    let _module = play_module(
        &nats.url(),
        "halfrouter",
        json!({"callbacks": ["get_users_for_states"]}),
        |_| json!({"answer": {"callback": "get_users_for_states", "answer": {}}}),
    )
    .await;
    let yaml = config(
        &nats.url(),
        json!([{"module": "remote", "name": "halfrouter", "placement": "nats"}]),
    );
    let err = TestGlia::try_start(&yaml)
        .await
        .err()
        .expect("Synapse refuses half a presence router; so does glia");
    let message = err.to_string();
    assert!(
        message.contains("modules[0] (halfrouter)")
            && message.contains("neither or both of get_users_for_states and get_interested_users"),
        "{message}"
    );
}

#[actix_rt::test]
async fn a_remote_module_not_required_and_refused_is_left_unplanned() {
    let nats = NatsServer::start();
    let _module = play_module(
        &nats.url(),
        "controller",
        json!({"callbacks": ["min_batch_size"]}),
        |_| json!({"answer": {"callback": "min_batch_size", "answer": 1}}),
    )
    .await;
    let yaml = config(
        &nats.url(),
        json!([{"module": "remote", "name": "controller", "placement": "nats", "required": false}]),
    );
    let g = TestGlia::start(&yaml).await;
    assert_eq!(
        g.dispatch_json(
            "min_batch_size",
            json!({"update_name": "u", "database_name": "master"})
        )
        .await,
        json!({"value": null}),
        "the module is not planned"
    );
    let (_, health) = g.get("/health", None).await;
    assert_eq!(health["failed"], json!(["controller"]), "{health}");
}

#[actix_rt::test]
async fn a_bare_none_from_check_event_allowed_fails_the_request_as_in_synapse() {
    let nats = NatsServer::start();
    let _module = play_module(
        &nats.url(),
        "nothing",
        json!({"callbacks": ["check_event_allowed"]}),
        |callback| json!({"answer": {"callback": callback, "answer": null}}),
    )
    .await;
    let yaml = config(
        &nats.url(),
        json!([{"module": "remote", "name": "nothing", "placement": "nats"}]),
    );
    let g = TestGlia::start(&yaml).await;
    let event = json!({"event_id": "$e", "room_id": "!r:hs", "sender": "@u:hs", "type": "m.room.message", "content": {}});
    let reply = g
        .dispatch_json("check_event_allowed", json!({"event": event}))
        .await;
    // Synapse cannot unpack None into (allowed, replacement): ModuleFailedException, a 500.
    assert_failed_as_invalid(&reply);
}

#[actix_rt::test]
async fn remote_synapse_errors_pass_with_any_error_status_and_their_fields() {
    let nats = NatsServer::start();
    let _module = play_module(
        &nats.url(),
        "raiser",
        json!({"callbacks": ["user_may_invite", "user_may_join_room"]}),
        |callback| {
            let status = if callback == "user_may_invite" { 503 } else { 302 };
            json!({"error": {"kind": "failed", "message": "x", "synapse_error":
                {"status": status, "errcode": "ORG_EXAMPLE_BUSY", "error": "try later", "fields": {"retry_after_ms": 900}}}})
        },
    )
    .await;
    let yaml = config(
        &nats.url(),
        json!([{"module": "remote", "name": "raiser", "placement": "nats"}]),
    );
    let g = TestGlia::start(&yaml).await;
    assert_eq!(
        g.dispatch_json(
            "user_may_invite",
            json!({"inviter": "@a:hs", "invitee": "@b:hs", "room_id": "!r:hs"})
        )
        .await,
        json!({"decision": "error", "status": 503, "errcode": "ORG_EXAMPLE_BUSY", "error": "try later",
               "fields": {"retry_after_ms": 900}, "module": "raiser", "synapse_error": true})
    );
    // A "SynapseError" answered 302 is not an error Synapse can send: an invalid answer.
    let reply = g
        .dispatch_json(
            "user_may_join_room",
            json!({"user_id": "@a:hs", "room_id": "!r:hs", "is_invited": false}),
        )
        .await;
    assert_failed_as_invalid(&reply);
}
