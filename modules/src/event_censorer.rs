//! `event_censorer`: lets an HTTP service rewrite the content of every local event.
//!
//! `check_event_allowed` POSTs the event (its PDU dict, as JSON) to `endpoint` and expects a
//! JSON object back: the event's new `content`. It answers `(True, event)` where `event` is the
//! original PDU dict with `content` replaced, so Synapse stores the rewritten event (and later
//! modules are not consulted). If the service cannot be reached, times out, answers a non-2xx
//! status, or answers anything but a JSON object, the callback fails (Synapse answers 500): a
//! censor that is down does not let uncensored events through.
//!
//! Config keys:
//! - `endpoint` (string, required): an `http://` URL. `https://` is refused because glia's
//!   HTTP client is built without TLS; put a local proxy in front of a TLS service.
//! - `timeout_ms` (positive integer, default 5000): how long one call may take, body included.
//!
//! ```yaml
//! modules:
//!   - module: event_censorer
//!     config:
//!       endpoint: "http://127.0.0.1:8089/censor"
//!       timeout_ms: 2000
//! ```

use crate::common;
use glia_bus_schema::answers::CheckEventAllowedAnswer;
use glia_bus_schema::requests::CheckEventAllowed;
use glia_bus_schema::{Event, JsonObject};
use glia_module_api::{
    ConfigError, ConfigPath, Handler, Module, ModuleApi, ModuleError, ThirdPartyRulesCallbacks,
};
use serde::Deserialize;
use serde_json::Value;
use std::cell::OnceCell;
use std::rc::Rc;
use std::time::Duration;

/// The largest censor answer read, in bytes.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The event censorer.
pub struct EventCensorer;

/// `event_censorer`'s checked config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventCensorerConfig {
    /// The censor service's URL.
    pub endpoint: String,
    /// How long one call may take, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5000
}

impl Module for EventCensorer {
    const NAME: &'static str = "event_censorer";
    type Config = EventCensorerConfig;

    fn parse_config(config: &Value) -> Result<EventCensorerConfig, ConfigError> {
        let parsed: EventCensorerConfig = glia_module_api::from_config(config)?;
        common::check_http_url(&parsed.endpoint)
            .map_err(|m| ConfigError::at_path(ConfigPath::root().key("endpoint"), m))?;
        if parsed.timeout_ms == 0 {
            return Err(ConfigError::at("timeout_ms", "must be positive"));
        }
        Ok(parsed)
    }

    fn new(config: EventCensorerConfig, api: &mut ModuleApi) -> Result<Self, ModuleError> {
        let censor = Rc::new(Censor {
            endpoint: config.endpoint,
            timeout: Duration::from_millis(config.timeout_ms),
            client: OnceCell::new(),
        });
        api.register_third_party_rules_callbacks(ThirdPartyRulesCallbacks {
            check_event_allowed: Some(Handler::new(move |args: &CheckEventAllowed| {
                let censor = censor.clone();
                let event = args.event.clone();
                async move { censor.censor(event).await }
            })),
            ..Default::default()
        });
        Ok(EventCensorer)
    }
}

/// One instance's client and settings.
struct Censor {
    endpoint: String,
    timeout: Duration,
    /// Made on first use, on the instance's own thread.
    client: OnceCell<awc::Client>,
}

impl Censor {
    async fn censor(&self, event: Event) -> Result<CheckEventAllowedAnswer, ModuleError> {
        let client = self.client.get_or_init(awc::Client::default);
        let fail = |what: String| {
            ModuleError::failed(format!(
                "event_censorer: censor endpoint {}: {what}",
                self.endpoint
            ))
        };
        let (status, body) = common::post_json(
            client,
            &self.endpoint,
            &[],
            &event,
            self.timeout,
            MAX_ANSWER_BYTES,
        )
        .await
        .map_err(fail)?;
        if !status.is_success() {
            return Err(fail(format!("answered HTTP {status}")));
        }
        let content = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(content)) => content,
            Ok(other) => {
                return Err(fail(format!(
                    "answered {}, not a JSON object (the new content)",
                    common::json_kind(&other)
                )))
            }
            Err(e) => return Err(fail(format!("answered invalid JSON: {e}"))),
        };
        let mut replacement: JsonObject = match serde_json::to_value(&event) {
            Ok(Value::Object(dict)) => dict,
            _ => return Err(fail("the event could not be serialised".into())),
        };
        replacement.insert("content".into(), Value::Object(content));
        tracing::debug!(event_id = ?event.event_id, "event_censorer replaced an event's content");
        Ok(CheckEventAllowedAnswer::replace(replacement))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_config_error, build, call, callbacks, event};
    use actix_web::{web, App, HttpResponse, HttpServer};
    use glia_bus_schema::{Callback, InvocationError};
    use serde_json::json;

    /// A censor service on a free local port: `/censor` stars out "darn" and records the
    /// event id it was sent; the other paths misbehave in one way each.
    async fn start_censor() -> (String, actix_web::dev::ServerHandle) {
        let server = HttpServer::new(|| {
            App::new()
                .route(
                    "/censor",
                    web::post().to(|event: web::Json<Value>| async move {
                        let body = event["content"]["body"].as_str().unwrap_or("");
                        HttpResponse::Ok().json(json!({
                            "msgtype": "m.text",
                            "body": body.replace("darn", "****"),
                            "censored_event": event["event_id"],
                            "depth_seen": event["depth"],
                        }))
                    }),
                )
                .route(
                    "/array",
                    web::post().to(|| async { HttpResponse::Ok().json(json!([1])) }),
                )
                .route(
                    "/garbage",
                    web::post().to(|| async { HttpResponse::Ok().body("{not json") }),
                )
                .route(
                    "/broken",
                    web::post()
                        .to(|| async { HttpResponse::InternalServerError().json(json!({})) }),
                )
                .route(
                    "/slow",
                    web::post().to(|| async {
                        actix_rt::time::sleep(Duration::from_secs(5)).await;
                        HttpResponse::Ok().json(json!({}))
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind a free port");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        (format!("http://{addr}"), handle)
    }

    fn request(body: &str) -> CheckEventAllowed {
        CheckEventAllowed {
            event: event(
                "@alice:example.com",
                "m.room.message",
                json!({"msgtype": "m.text", "body": body}),
            ),
            state_events: Default::default(),
        }
    }

    fn failure(result: Result<CheckEventAllowedAnswer, InvocationError>) -> String {
        match result {
            Err(InvocationError::Failed {
                message,
                synapse_error: None,
            }) => message,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[actix_rt::test]
    async fn replaces_content_with_the_censors_answer() {
        let (base, server) = start_censor().await;
        let regs = build::<EventCensorer>(json!({"endpoint": format!("{base}/censor")}));
        assert_eq!(callbacks(&regs), vec![Callback::CheckEventAllowed]);

        let original = request("well darn it");
        let answer = call(&regs, original.clone()).await.unwrap();
        assert_eq!(answer.allowed, Some(true));
        let replacement = answer.replacement.expect("a replacement event");

        let mut expected = serde_json::to_value(&original.event).unwrap();
        expected["content"] = json!({
            "msgtype": "m.text",
            "body": "well **** it",
            "censored_event": "$event:example.com",
            "depth_seen": 12,
        });
        assert_eq!(Value::Object(replacement), expected);
        server.stop(false).await;
    }

    #[actix_rt::test]
    async fn answers_that_are_not_objects_fail() {
        let (base, server) = start_censor().await;
        let regs = build::<EventCensorer>(json!({"endpoint": format!("{base}/array")}));
        let message = failure(call(&regs, request("x")).await);
        assert!(
            message.contains("not a JSON object") && message.contains("a list"),
            "{message}"
        );

        let regs = build::<EventCensorer>(json!({"endpoint": format!("{base}/garbage")}));
        let message = failure(call(&regs, request("x")).await);
        assert!(message.contains("invalid JSON"), "{message}");
        server.stop(false).await;
    }

    #[actix_rt::test]
    async fn error_statuses_timeouts_and_unreachable_endpoints_fail() {
        let (base, server) = start_censor().await;
        let regs = build::<EventCensorer>(json!({"endpoint": format!("{base}/broken")}));
        let message = failure(call(&regs, request("x")).await);
        assert!(
            message.contains("HTTP 500") && message.contains("/broken"),
            "{message}"
        );

        let regs =
            build::<EventCensorer>(json!({"endpoint": format!("{base}/slow"), "timeout_ms": 100}));
        let message = failure(call(&regs, request("x")).await);
        assert!(message.contains("timed out after 100 ms"), "{message}");

        server.stop(false).await;
        // The port is closed now: nothing listens there.
        let regs = build::<EventCensorer>(json!({"endpoint": format!("{base}/censor")}));
        let message = failure(call(&regs, request("x")).await);
        assert!(message.contains("request failed"), "{message}");
    }

    #[test]
    fn config_errors_name_the_key() {
        assert_config_error::<EventCensorer>(json!({}), "", &["missing field", "endpoint"]);
        assert_config_error::<EventCensorer>(Value::Null, "", &["endpoint"]);
        assert_config_error::<EventCensorer>(
            json!({"endpoint": "not a url"}),
            "endpoint",
            &["not a URL"],
        );
        assert_config_error::<EventCensorer>(
            json!({"endpoint": "/censor"}),
            "endpoint",
            &["absolute"],
        );
        assert_config_error::<EventCensorer>(
            json!({"endpoint": "ftp://example.com/x"}),
            "endpoint",
            &["\"ftp\"", "not http"],
        );
        assert_config_error::<EventCensorer>(
            json!({"endpoint": "https://censor.example.com/x"}),
            "endpoint",
            &["https is not supported"],
        );
        assert_config_error::<EventCensorer>(
            json!({"endpoint": "http://localhost:1/x", "timeout_ms": 0}),
            "timeout_ms",
            &["must be positive"],
        );
        assert_config_error::<EventCensorer>(
            json!({"endpoint": "http://localhost:1/x", "timeout_ms": -5}),
            "timeout_ms",
            &["invalid value"],
        );
        assert_config_error::<EventCensorer>(
            json!({"endpoint": "http://localhost:1/x", "timeout": "5s"}),
            "timeout",
            &["unknown field", "timeout_ms"],
        );
        let ok = EventCensorer::parse_config(&json!({"endpoint": "http://127.0.0.1:8089/censor"}))
            .unwrap();
        assert_eq!(ok.timeout_ms, 5000);
    }
}
