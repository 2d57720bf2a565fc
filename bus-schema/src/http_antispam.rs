//! synapse-http-antispam's protocol (PyPI `synapse-http-antispam` 0.5.1), both ways: the bodies
//! the module POSTs to `{base_url}/{callback}`, and how it reads the answers.
//!
//! glia's ingress reads these bodies as glia requests and answers the way the module reads
//! answers; the `http_antispam` module writes the same bodies to a server that speaks the
//! protocol (Draupnir, Meowlnir) and reads its answers. Both directions live here, so one
//! place knows the protocol. What the module does (by reading `synapse_http_antispam.py`
//! 0.5.1):
//!
//! - it POSTs canonical JSON with `Authorization: Bearer <authorization>` when configured;
//! - a 2xx answer whose body is JSON is `NOT_SPAM`; a 2xx that is not JSON is a failure;
//! - a non-2xx whose body is a JSON object is a deny: `(Codes(errcode), body minus errcode)`,
//!   or `(Codes.FORBIDDEN, body)` when the errcode is missing or unknown to Synapse. The status
//!   is not read: the client always gets Synapse's 403, with the body's `error` as message;
//! - a non-2xx that is not JSON, a refused connection or a timeout (Synapse's client: 60 s)
//!   is "cannot decide": `NOT_SPAM` when the callback is in its `fail_open` (by default only
//!   `check_event_for_spam`), else `(M_UNKNOWN, {"error": "Unexpected response from antispam
//!   server"})` or `"Failed to connect to antispam server"`.

use crate::answers::SpamCode;
use crate::callbacks::{ArgsError, Callback, CallbackRequest};
use crate::errcodes::{M_FORBIDDEN, M_UNKNOWN};
use crate::replies::{Decision, Failure};
use crate::shapes::{Event, JsonObject};
use serde_json::{json, Value};

/// The callbacks the module forwards that Synapse (and glia) have. It also forwards
/// `accept_make_join`, a callback of maunium's Synapse fork only.
pub const CALLBACKS: &[Callback] = &[
    Callback::UserMayJoinRoom,
    Callback::UserMayInvite,
    Callback::UserMaySend3pidInvite,
    Callback::UserMayCreateRoom,
    Callback::UserMayCreateRoomAlias,
    Callback::UserMayPublishRoom,
    Callback::CheckUsernameForSpam,
    Callback::CheckLoginForSpam,
    Callback::CheckEventForSpam,
    Callback::FederatedUserMayInvite,
];

/// The path of the module's start-up ping (`do_ping`): `{"id": <8 letters>}` in, the same
/// `id` and `"status": "ok"` out.
pub const PING: &str = "ping";

/// The keys `format_event_for_client_v2` removes from an event's PDU dict: the module sends
/// events in that client format (with `event_id`).
pub const FEDERATION_KEYS: [&str; 7] = [
    "auth_events",
    "prev_events",
    "hashes",
    "signatures",
    "depth",
    "origin",
    "prev_state",
];

/// What a POST to `{base_url}/{name}` asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// The start-up ping: answer `{"id": id, "status": "ok"}`.
    Ping {
        /// The id to echo.
        id: Value,
    },
    /// A callback glia dispatches (boxed: requests are large, pings small).
    Callback(Box<CallbackRequest>),
    /// A name glia has no callback for (`accept_make_join`, or one a later module version
    /// adds): allowed unread, as Meowlnir answers callbacks it does not know.
    Unknown,
}

/// Reads a POST to `{base_url}/{name}`. Both spellings seen in the wild are accepted:
/// `user`/`room` (the module since 0.2) and `user_id`/`room_id` (0.1, Continuwuity's Draupnir
/// client) for `user_may_join_room`, and `request_info` as `[user_agent, ip]` pairs (the
/// module's tuples) or as objects. Events may be in the client format.
pub fn decode(name: &str, body: &[u8]) -> Result<Call, ArgsError> {
    let callback = name.parse::<Callback>().ok();
    if name != PING && !callback.is_some_and(|c| CALLBACKS.contains(&c)) {
        return Ok(Call::Unknown);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ArgsError::NotJson(e.to_string()))?;
    match callback {
        Some(callback) => CallbackRequest::from_json_value(callback, normalise(callback, value))
            .map(|request| Call::Callback(Box::new(request))),
        None => Ok(Call::Ping {
            id: value.get("id").cloned().unwrap_or(Value::Null),
        }),
    }
}

/// Renames the module's field names to glia's and turns `request_info` pairs into objects.
fn normalise(callback: Callback, mut args: Value) -> Value {
    let Some(fields) = args.as_object_mut() else {
        return args;
    };
    match callback {
        Callback::UserMayJoinRoom => {
            for (theirs, ours) in [("user", "user_id"), ("room", "room_id")] {
                if !fields.contains_key(ours) {
                    if let Some(value) = fields.remove(theirs) {
                        fields.insert(ours.to_owned(), value);
                    }
                }
            }
        }
        Callback::CheckLoginForSpam => {
            if let Some(Value::Array(infos)) = fields.get_mut("request_info") {
                for info in infos {
                    if let Value::Array(pair) = info {
                        if let [user_agent, ip] = pair.as_slice() {
                            *info = json!({"user_agent": user_agent, "ip": ip});
                        }
                    }
                }
            }
        }
        _ => {}
    }
    args
}

/// The body the module POSTs for `request`; `None` for a callback it does not forward.
pub fn body(request: &CallbackRequest) -> Option<Value> {
    use CallbackRequest as R;
    Some(match request {
        R::UserMayJoinRoom(r) => {
            json!({"user": r.user_id, "room": r.room_id, "is_invited": r.is_invited})
        }
        R::UserMayInvite(r) => {
            json!({"inviter": r.inviter, "invitee": r.invitee, "room_id": r.room_id})
        }
        R::UserMaySend3pidInvite(r) => json!({
            "inviter": r.inviter, "medium": r.medium, "address": r.address, "room_id": r.room_id,
        }),
        R::UserMayCreateRoom(r) => json!({"user_id": r.user_id}),
        R::UserMayCreateRoomAlias(r) => {
            json!({"user_id": r.user_id, "room_alias": r.room_alias.to_string()})
        }
        R::UserMayPublishRoom(r) => json!({"user_id": r.user_id, "room_id": r.room_id}),
        R::CheckUsernameForSpam(r) => {
            json!({"user_profile": r.user_profile, "requester_id": r.requester_id})
        }
        R::CheckLoginForSpam(r) => json!({
            "user_id": r.user_id,
            "device_id": r.device_id,
            "initial_display_name": r.initial_display_name,
            "request_info": r.request_info.iter().map(|i| json!([i.user_agent, i.ip])).collect::<Vec<_>>(),
            "auth_provider_id": r.auth_provider_id,
        }),
        R::CheckEventForSpam(r) => json!({"event": client_event(&r.event)}),
        R::FederatedUserMayInvite(r) => json!({"event": client_event(&r.event)}),
        _ => return None,
    })
}

/// `event` as the module sends it: `format_event_for_client_v2` of its PDU dict (which keeps
/// `event_id`, as the module sets it).
pub fn client_event(event: &Event) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut value {
        for key in FEDERATION_KEYS {
            fields.remove(key);
        }
    }
    value
}

/// How glia answers the module for a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `200 {}`: the module returns `NOT_SPAM`.
    Allow,
    /// A JSON object with a non-2xx status, which the module returns as a deny; the client
    /// sees Synapse's 403 with this `errcode`, `error` and extra fields.
    Deny {
        /// The HTTP status (the module ignores it; logs and proxies see it).
        status: u16,
        /// `errcode`, `error`, then the extra fields (which win, as in Synapse's `cs_error`).
        body: JsonObject,
    },
}

/// What the module is answered for `decision`. A module's own `SynapseError` and a failure
/// glia decided fails the request (policy `error`) are denies too: the module has no way to
/// raise, and "cannot decide" would hand glia's decision to the module's `fail_open`.
pub fn answer(decision: &Decision) -> Answer {
    match decision {
        Decision::Allow { .. } => Answer::Allow,
        Decision::Deny {
            errcode,
            error,
            fields,
            status,
            ..
        } => Answer::Deny {
            status: status.filter(|s| (400..600).contains(s)).unwrap_or(403),
            body: error_body(errcode, error, fields),
        },
        Decision::Error(Failure {
            synapse_error: true,
            status,
            errcode,
            error,
            fields,
            ..
        }) => Answer::Deny {
            status: *status,
            body: error_body(errcode, error, fields),
        },
        // What Synapse tells the client when a module raises: the details stay in glia's log.
        Decision::Error(_) => Answer::Deny {
            status: 500,
            body: error_body(M_UNKNOWN, "Internal server error", &JsonObject::new()),
        },
    }
}

fn error_body(errcode: &str, error: &str, fields: &JsonObject) -> JsonObject {
    let mut body = JsonObject::new();
    body.insert("errcode".into(), errcode.into());
    body.insert("error".into(), error.into());
    body.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    body
}

/// What a server's answer means.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// `NOT_SPAM`.
    Allow,
    /// A deny with this errcode and the rest of the body as extra fields.
    Deny(SpamCode),
    /// No decision, and why: for the module's failure policy.
    Failure(String),
}

/// Reads a server's answer as the module reads it, except that what the module would take
/// for a deny although it is the server failing (an errcode in `failures`, such as Meowlnir's
/// `M_NOT_FOUND` for an unknown management room) and what the module cannot read at all (a
/// body that is not JSON, or a JSON error that is not an object, on which the module raises)
/// are failures.
pub fn verdict(status: u16, body: &[u8], failures: &[String]) -> Verdict {
    let parsed = serde_json::from_slice::<Value>(body);
    if (200..300).contains(&status) {
        return match parsed {
            Ok(_) => Verdict::Allow,
            Err(_) => Verdict::Failure(format!(
                "answered {status} with a body that is not JSON: {}",
                excerpt(body)
            )),
        };
    }
    let mut fields = match parsed {
        Ok(Value::Object(fields)) => fields,
        Ok(_) | Err(_) => {
            return Verdict::Failure(format!(
                "answered {status} with a body that is not a JSON object: {}",
                excerpt(body)
            ))
        }
    };
    let errcode = match fields.get("errcode") {
        Some(Value::String(code)) => code.clone(),
        // The module denies with M_FORBIDDEN and the whole body when the errcode is missing or
        // not one of Synapse's.
        _ => {
            return Verdict::Deny(SpamCode {
                errcode: M_FORBIDDEN.to_owned(),
                fields: Some(fields),
            })
        }
    };
    if failures.contains(&errcode) {
        let error = fields.get("error").and_then(Value::as_str).unwrap_or("");
        return Verdict::Failure(format!("answered {status} {errcode}: {error}"));
    }
    fields.remove("errcode");
    Verdict::Deny(SpamCode {
        errcode,
        fields: Some(fields),
    })
}

/// The start of a body, for messages.
fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let more = if body.len() > MAX { "..." } else { "" };
    format!("{:?}{more}", text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::{CheckLoginForSpam, UserMayJoinRoom};
    use crate::shapes::RequestInfo;

    fn call(name: &str, body: Value) -> Call {
        decode(name, body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn both_spellings_of_user_may_join_room_read_the_same() {
        let expected = Call::Callback(Box::new(CallbackRequest::UserMayJoinRoom(
            UserMayJoinRoom {
                user_id: "@a:hs".into(),
                room_id: "!r:hs".into(),
                is_invited: true,
            },
        )));
        let module = json!({"user": "@a:hs", "room": "!r:hs", "is_invited": true});
        let ruwuma = json!({"user_id": "@a:hs", "room_id": "!r:hs", "is_invited": true});
        assert_eq!(call("user_may_join_room", module), expected);
        assert_eq!(call("user_may_join_room", ruwuma), expected);
    }

    #[test]
    fn request_info_pairs_become_objects() {
        let body = json!({
            "user_id": "@a:hs", "device_id": null, "initial_display_name": null,
            "request_info": [["curl", "10.0.0.1"], [null, "::1"], {"user_agent": "x", "ip": "1.2.3.4"}],
            "auth_provider_id": null,
        });
        let Call::Callback(request) = call("check_login_for_spam", body) else {
            panic!("not a callback");
        };
        let CallbackRequest::CheckLoginForSpam(CheckLoginForSpam { request_info, .. }) = *request
        else {
            panic!("not check_login_for_spam");
        };
        let ip = |user_agent: Option<&str>, ip: &str| RequestInfo {
            user_agent: user_agent.map(Into::into),
            ip: ip.into(),
        };
        assert_eq!(
            request_info,
            [
                ip(Some("curl"), "10.0.0.1"),
                ip(None, "::1"),
                ip(Some("x"), "1.2.3.4")
            ]
        );
    }

    #[test]
    fn ping_echoes_and_unknown_names_are_not_read() {
        assert_eq!(
            call("ping", json!({"id": "AbCdEfGh"})),
            Call::Ping {
                id: json!("AbCdEfGh")
            }
        );
        assert_eq!(
            decode("accept_make_join", b"not json").unwrap(),
            Call::Unknown
        );
        // A glia callback the module never forwards is unknown to the protocol.
        assert_eq!(decode("on_new_event", b"{}").unwrap(), Call::Unknown);
        assert!(matches!(
            decode("user_may_invite", b"{"),
            Err(ArgsError::NotJson(_))
        ));
        let Err(ArgsError::BadField { path, .. }) = decode(
            "user_may_invite",
            br#"{"inviter": 1, "invitee": "@b:hs", "room_id": "!r"}"#,
        ) else {
            panic!("a bad field is named");
        };
        assert_eq!(path, "inviter");
    }

    #[test]
    fn bodies_are_the_modules_and_read_back_as_the_same_requests() {
        let samples = [
            (
                "user_may_join_room",
                json!({"user": "@a:hs", "room": "!r:hs", "is_invited": false}),
            ),
            (
                "user_may_invite",
                json!({"inviter": "@a:hs", "invitee": "@b:hs", "room_id": "!r:hs"}),
            ),
            (
                "user_may_send_3pid_invite",
                json!({"inviter": "@a:hs", "medium": "email", "address": "a@b.c", "room_id": "!r:hs"}),
            ),
            ("user_may_create_room", json!({"user_id": "@a:hs"})),
            (
                "user_may_create_room_alias",
                json!({"user_id": "@a:hs", "room_alias": "#x:hs"}),
            ),
            (
                "user_may_publish_room",
                json!({"user_id": "@a:hs", "room_id": "!r:hs"}),
            ),
            (
                "check_username_for_spam",
                json!({"user_profile": {"user_id": "@a:hs", "display_name": "A", "avatar_url": null}, "requester_id": "@b:hs"}),
            ),
            (
                "check_login_for_spam",
                json!({"user_id": "@a:hs", "device_id": "D", "initial_display_name": null, "request_info": [["ua", "10.0.0.1"]], "auth_provider_id": null}),
            ),
            (
                "check_event_for_spam",
                json!({"event": {"event_id": "$e", "room_id": "!r:hs", "sender": "@a:hs", "type": "m.room.message", "content": {"body": "hi"}, "origin_server_ts": 5, "unsigned": {"age_ts": 5}}}),
            ),
            (
                "federated_user_may_invite",
                json!({"event": {"event_id": "$i", "room_id": "!r:hs", "sender": "@a:remote", "type": "m.room.member", "state_key": "@b:hs", "content": {"membership": "invite"}, "unsigned": {"invite_room_state": []}}}),
            ),
        ];
        assert_eq!(samples.len(), CALLBACKS.len());
        for (name, sample) in samples {
            let Call::Callback(request) = call(name, sample.clone()) else {
                panic!("{name} is a callback");
            };
            assert_eq!(request.callback().name(), name);
            assert_eq!(body(&request), Some(sample), "{name}");
        }
    }

    #[test]
    fn events_are_sent_in_the_client_format() {
        let pdu = json!({
            "event_id": "$e", "room_id": "!r:hs", "sender": "@a:hs", "type": "m.room.message",
            "content": {"body": "hi"}, "auth_events": ["$a"], "prev_events": ["$p"],
            "hashes": {"sha256": "x"}, "signatures": {"hs": {}}, "depth": 7, "origin": "hs",
            "prev_state": [], "origin_server_ts": 5, "unsigned": {"age_ts": 5}, "redacts": "$q",
        });
        let event: Event = serde_json::from_value(pdu).unwrap();
        assert_eq!(
            client_event(&event),
            json!({
                "event_id": "$e", "room_id": "!r:hs", "sender": "@a:hs", "type": "m.room.message",
                "content": {"body": "hi"}, "origin_server_ts": 5, "unsigned": {"age_ts": 5},
                "redacts": "$q",
            })
        );
    }

    fn deny(errcode: &str, fields: Value) -> Verdict {
        Verdict::Deny(SpamCode {
            errcode: errcode.into(),
            fields: serde_json::from_value(fields).unwrap(),
        })
    }

    #[test]
    fn answers_are_read_by_errcode_not_status() {
        let failures = ["M_NOT_FOUND".to_owned(), "M_INVALID_PARAM".to_owned()];
        let read = |status, body: &str| verdict(status, body.as_bytes(), &failures);
        assert_eq!(read(200, "{}"), Verdict::Allow);
        assert_eq!(read(204, "[]"), Verdict::Allow);
        // Meowlnir denies with 403, Draupnir with 400: both are denies.
        let meowlnir = r#"{"errcode":"M_FORBIDDEN","error":"You're not allowed to send invites"}"#;
        assert_eq!(
            read(403, meowlnir),
            deny(
                "M_FORBIDDEN",
                json!({"error": "You're not allowed to send invites"})
            )
        );
        let draupnir = r#"{"errcode":"M_FORBIDDEN","error":"no."}"#;
        assert_eq!(
            read(400, draupnir),
            deny("M_FORBIDDEN", json!({"error": "no."}))
        );
        // No errcode (or not a string): M_FORBIDDEN with the whole body, as the module does.
        assert_eq!(
            read(418, r#"{"error":"x","errcode":5}"#),
            deny("M_FORBIDDEN", json!({"error": "x", "errcode": 5}))
        );
        for (status, body, why) in [
            (
                404,
                r#"{"errcode":"M_NOT_FOUND","error":"policy list not found"}"#,
                "404 M_NOT_FOUND: policy list not found",
            ),
            (
                400,
                r#"{"errcode":"M_INVALID_PARAM","error":"bad"}"#,
                "400 M_INVALID_PARAM",
            ),
            (
                401,
                "Missing access token",
                "not a JSON object: \"Missing access token\"",
            ),
            (500, "[1]", "not a JSON object"),
            (200, "<html>", "200 with a body that is not JSON"),
        ] {
            match read(status, body) {
                Verdict::Failure(message) => assert!(message.contains(why), "{message}"),
                other => panic!("{status} {body}: {other:?}"),
            }
        }
    }

    #[test]
    fn decisions_are_answered_as_the_module_reads_them() {
        assert_eq!(answer(&Decision::ALLOW), Answer::Allow);
        let mut fields = JsonObject::new();
        fields.insert("org.x".into(), json!(1));
        let denied = Decision::Deny {
            errcode: "ORG_X".into(),
            error: "no".into(),
            fields: fields.clone(),
            module: "m".into(),
            status: None,
            module_message: false,
        };
        assert_eq!(
            answer(&denied),
            Answer::Deny {
                status: 403,
                body: serde_json::from_value(
                    json!({"errcode": "ORG_X", "error": "no", "org.x": 1})
                )
                .unwrap()
            }
        );
        let raised = Decision::Error(Failure {
            status: 429,
            errcode: "M_LIMIT_EXCEEDED".into(),
            error: "slow down".into(),
            fields,
            module: "m".into(),
            synapse_error: true,
        });
        let Answer::Deny { status, body } = answer(&raised) else {
            panic!("a SynapseError denies");
        };
        assert_eq!(
            (status, &body["errcode"], &body["org.x"]),
            (429, &json!("M_LIMIT_EXCEEDED"), &json!(1))
        );
        let failed = Decision::Error(Failure {
            status: 500,
            errcode: M_UNKNOWN.into(),
            error: "module m timed out".into(),
            fields: JsonObject::new(),
            module: "m".into(),
            synapse_error: false,
        });
        let Answer::Deny { status, body } = answer(&failed) else {
            panic!("a failure decided by policy denies");
        };
        assert_eq!(status, 500);
        assert_eq!(
            Value::Object(body),
            json!({"errcode": "M_UNKNOWN", "error": "Internal server error"})
        );
        // What the module reads back as a deny is what glia sent.
        let Answer::Deny { status, body } = answer(&denied) else {
            unreachable!()
        };
        assert_eq!(
            verdict(status, Value::Object(body).to_string().as_bytes(), &[]),
            deny("ORG_X", json!({"error": "no", "org.x": 1}))
        );
    }
}
