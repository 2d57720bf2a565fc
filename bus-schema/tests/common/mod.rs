//! Sample wire values shared by the integration tests: for every callback, realistic arguments
//! (keyed by Synapse's argument names), module answers and coordinator replies.
//!
//! Every sample is in canonical form (every optional field the types write is present), so
//! decoding then re-encoding it gives the same JSON back.

#![allow(dead_code)] // each test binary uses a different part of this module

use glia_bus_schema::Callback;
use serde_json::{json, Value};

/// The callback Synapse calls `name`; panics on a typo in a sample table.
pub fn callback(name: &str) -> Callback {
    name.parse()
        .unwrap_or_else(|e| panic!("sample table names an unknown callback: {e}"))
}

/// A room id, a user id and a server used throughout.
pub const ROOM: &str = "!OGEhHVWSdvArJzumhm:example.com";
pub const ALICE: &str = "@alice:example.com";
pub const BOB: &str = "@bob:remote.example.org";

/// A message event in its full PDU form, including fields glia keeps verbatim.
pub fn message_event() -> Value {
    json!({
        "event_id": "$d6c9bMpjcrn7N9aHuZOPyVOgvBdEGsoLlyUmTsSHIA0",
        "room_id": ROOM,
        "sender": ALICE,
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "Hello, world"},
        "origin_server_ts": 1_700_000_000_000_i64,
        "unsigned": {"age": 12},
        "depth": 42,
        "hashes": {"sha256": "hPmc/ZtKWhwvlVnw2OSBGlmTwLcIcLJI2rDwPjLG2Js"},
        "signatures": {"example.com": {"ed25519:a_WbFk": "vq4Kp0bTCKq7ivgaGqRjVkqhZ5BfEGbEGTnBDEmUYhgbvILyDIpdz4w0bvyO2Z/0m6/hVX6sEeV1p1Ttw0FJDg"}},
        "prev_events": ["$Gq3wxCFyd0e1KOpeXhUl5n6mKahvBL-JWVFvKcH-jX4"],
        "auth_events": [
            "$create0ZtKWhwvlVnw2OSBGlmTwLcIcLJI2rDwPjLG2Js",
            "$power1ZtKWhwvlVnw2OSBGlmTwLcIcLJI2rDwPjLG2Js",
            "$member2ZtKWhwvlVnw2OSBGlmTwLcIcLJI2rDwPjLG2Js"
        ]
    })
}

/// A state event of `event_type` at `state_key` in [`ROOM`].
pub fn state_event(event_type: &str, state_key: &str, content: Value) -> Value {
    json!({
        "event_id": format!("${}-{}", event_type.replace('.', "_"), state_key.len()),
        "room_id": ROOM,
        "sender": ALICE,
        "type": event_type,
        "state_key": state_key,
        "content": content,
        "origin_server_ts": 1_699_999_000_000_i64,
        "depth": 1
    })
}

/// Room state as glia carries a `StateMap`: the list of state events.
pub fn state_events() -> Value {
    json!([
        state_event(
            "m.room.create",
            "",
            json!({"creator": ALICE, "room_version": "10"})
        ),
        state_event("m.room.join_rules", "", json!({"join_rule": "invite"})),
        state_event(
            "m.room.power_levels",
            "",
            json!({"users": {ALICE: 100}, "users_default": 0})
        ),
        state_event(
            "m.room.member",
            ALICE,
            json!({"membership": "join", "displayname": "Alice"})
        ),
    ])
}

/// A full `Requester`.
pub fn requester() -> Value {
    json!({
        "user_id": ALICE,
        "access_token_id": 1234,
        "is_guest": false,
        "scope": ["urn:matrix:org.matrix.msc2967.client:api:*"],
        "shadow_banned": false,
        "device_id": "ABCDEFGHIJ",
        "app_service_id": null,
        "authenticated_entity": ALICE
    })
}

/// A full `UserPresenceState`.
pub fn presence(user_id: &str, state: &str) -> Value {
    json!({
        "user_id": user_id,
        "state": state,
        "last_active_ts": 1_700_000_000_000_i64,
        "last_federation_update_ts": 0,
        "last_user_sync_ts": 1_700_000_001_000_i64,
        "status_msg": "in a meeting",
        "currently_active": true
    })
}

/// Request info as Synapse collects it at login and registration.
pub fn request_info() -> Value {
    json!([
        {"user_agent": "Element/1.11.50 (Linux)", "ip": "203.0.113.7"},
        {"user_agent": null, "ip": "2001:db8::1"}
    ])
}

/// Every callback's sample arguments.
pub fn request_samples() -> Vec<(&'static str, Value)> {
    let mut invite = state_event(
        "m.room.member",
        "@carol:example.com",
        json!({"membership": "invite"}),
    );
    invite["sender"] = json!(BOB);
    invite["unsigned"] = json!({"invite_room_state": [
        {"type": "m.room.name", "state_key": "", "sender": BOB, "content": {"name": "Remote room"}},
        {"type": "m.room.join_rules", "state_key": "", "sender": BOB, "content": {"join_rule": "invite"}}
    ]});
    vec![
        ("check_event_for_spam", json!({"event": message_event()})),
        (
            "should_drop_federated_event",
            json!({"event": message_event()}),
        ),
        (
            "user_may_join_room",
            json!({"user_id": ALICE, "room_id": ROOM, "is_invited": true}),
        ),
        (
            "user_may_invite",
            json!({"inviter": ALICE, "invitee": BOB, "room_id": ROOM}),
        ),
        ("federated_user_may_invite", json!({"event": invite})),
        (
            "user_may_send_3pid_invite",
            json!({"inviter": ALICE, "medium": "email", "address": "carol@example.net", "room_id": ROOM}),
        ),
        (
            "user_may_create_room",
            json!({"user_id": ALICE, "room_config": {
                "preset": "private_chat",
                "name": "Planning",
                "invite": [BOB],
                "initial_state": [{"type": "m.room.topic", "state_key": "", "content": {"topic": "Q3"}}]
            }}),
        ),
        (
            "user_may_create_room_alias",
            json!({"user_id": ALICE, "room_alias": "#planning:example.com"}),
        ),
        (
            "user_may_publish_room",
            json!({"user_id": ALICE, "room_id": ROOM}),
        ),
        (
            "user_may_send_state_event",
            json!({
                "user_id": ALICE,
                "room_id": ROOM,
                "event_type": "m.room.topic",
                "state_key": "",
                "content": {"topic": "Buy cheap pills"}
            }),
        ),
        (
            "check_username_for_spam",
            json!({
                "user_profile": {"user_id": BOB, "display_name": "Bob", "avatar_url": "mxc://remote.example.org/abc"},
                "requester_id": ALICE
            }),
        ),
        (
            "check_registration_for_spam",
            json!({
                "email_threepid": {"medium": "email", "address": "dave@example.net", "validated_at": 1_700_000_000_000_i64},
                "username": "dave",
                "request_info": request_info(),
                "auth_provider_id": "oidc-github"
            }),
        ),
        (
            "check_media_file_for_spam",
            json!({"file_info": {
                "server_name": null,
                "file_id": "GCmhgzMPRjqgpODLsNQzVuHZ",
                "url_cache": false,
                "thumbnail": {"width": 320, "height": 240, "method": "scale", "type": "image/png", "length": 48213}
            }, "file": {"content": "iVBORw0KGgo=", "length": 48213, "truncated": true}}),
        ),
        (
            "check_login_for_spam",
            json!({
                "user_id": ALICE,
                "device_id": "ABCDEFGHIJ",
                "initial_display_name": "Alice's laptop",
                "request_info": request_info(),
                "auth_provider_id": null
            }),
        ),
        (
            "check_event_allowed",
            json!({"event": message_event(), "state_events": state_events()}),
        ),
        (
            "on_create_room",
            json!({
                "requester": requester(),
                "request_content": {"preset": "public_chat", "room_alias_name": "planning"},
                "is_requester_admin": false
            }),
        ),
        (
            "check_threepid_can_be_invited",
            json!({"medium": "email", "address": "carol@example.net", "state_events": state_events()}),
        ),
        (
            "check_visibility_can_be_modified",
            json!({"room_id": ROOM, "state_events": state_events(), "new_visibility": "public"}),
        ),
        (
            "on_new_event",
            json!({"event": message_event(), "state_events": state_events()}),
        ),
        (
            "check_can_shutdown_room",
            json!({"user_id": null, "room_id": ROOM}),
        ),
        (
            "check_can_deactivate_user",
            json!({"user_id": BOB, "by_admin": true}),
        ),
        (
            "on_profile_update",
            json!({
                "user_id": ALICE,
                "new_profile": {"avatar_url": "mxc://example.com/xyz", "display_name": "Alice A."},
                "by_admin": false,
                "deactivation": false
            }),
        ),
        (
            "on_user_deactivation_status_changed",
            json!({"user_id": BOB, "deactivated": true, "by_admin": true}),
        ),
        (
            "on_threepid_bind",
            json!({"user_id": ALICE, "medium": "email", "address": "alice@example.net"}),
        ),
        (
            "on_add_user_third_party_identifier",
            json!({"user_id": ALICE, "medium": "msisdn", "address": "447700900123"}),
        ),
        (
            "on_remove_user_third_party_identifier",
            json!({"user_id": ALICE, "medium": "email", "address": "alice@example.net"}),
        ),
        ("is_user_expired", json!({"user_id": ALICE})),
        (
            "on_user_registration",
            json!({"user_id": "@dave:example.com"}),
        ),
        (
            "on_user_login",
            json!({"user_id": ALICE, "auth_provider_type": "m.login.password", "auth_provider_id": null}),
        ),
        ("on_legacy_send_mail", json!({"user_id": ALICE})),
        (
            "on_legacy_renew",
            json!({"renewal_token": "dGhpc2lzYXJlbmV3YWx0b2tlbg"}),
        ),
        (
            "on_legacy_admin_request",
            json!({"request": {"user_id": ALICE, "expiration_ts": 1_735_689_600_000_i64, "enable_renewal_emails": true}}),
        ),
        (
            "get_users_for_states",
            json!({"state_updates": [presence(ALICE, "online"), presence(BOB, "org.matrix.msc3026.busy")]}),
        ),
        ("get_interested_users", json!({"user_id": ALICE})),
        (
            "check_auth",
            json!({"username": "alice", "login_type": "m.login.password", "login_dict": {"password": "hunter2"}}),
        ),
        (
            "check_3pid_auth",
            json!({"medium": "email", "address": "alice@example.net", "password": "hunter2"}),
        ),
        (
            "post_login",
            json!({
                "module": "ldap",
                "handle": "4242.9f86d081884c7d659a2feaa0c55ad015",
                "login_result": {"user_id": ALICE, "access_token": "syt_YWxpY2U_QzKlWpnmJgmRyNWuxaVu_1EPZWz", "home_server": "example.com", "device_id": "ABCDEFGHIJ"}
            }),
        ),
        (
            "on_logged_out",
            json!({"user_id": ALICE, "device_id": "ABCDEFGHIJ", "access_token": "syt_YWxpY2U_QzKlWpnmJgmRyNWuxaVu_1EPZWz"}),
        ),
        (
            "get_username_for_registration",
            json!({
                "uia_results": {"m.login.dummy": true, "m.login.email.identity": {"medium": "email", "address": "dave@example.net", "validated_at": 1_700_000_000_000_i64}},
                "params": {"username": "dave", "initial_device_display_name": "Dave's phone"}
            }),
        ),
        (
            "get_displayname_for_registration",
            json!({
                "uia_results": {"m.login.terms": true, "m.login.registration_token": "abc123"},
                "params": {"username": "erin"}
            }),
        ),
        (
            "is_3pid_allowed",
            json!({"medium": "email", "address": "erin@example.net", "registration": true}),
        ),
        (
            "on_account_data_updated",
            json!({"user_id": ALICE, "room_id": ROOM, "account_data_type": "m.fully_read", "content": {"event_id": "$abc"}}),
        ),
        ("get_media_config_for_user", json!({"user_id": ALICE})),
        (
            "is_user_allowed_to_upload_media_of_size",
            json!({"user_id": ALICE, "size": 1_048_576}),
        ),
        (
            "get_media_upload_limits_for_user",
            json!({"user_id": ALICE}),
        ),
        (
            "on_media_upload_limit_exceeded",
            json!({"user_id": ALICE, "limit": upload_limit(), "sent_bytes": 900, "attempted_bytes": 200}),
        ),
        (
            "get_ratelimit_override_for_user",
            json!({"user_id": ALICE, "limiter_name": "rc_invites.per_room"}),
        ),
        ("add_field_to_unsigned", json!({"event": message_event()})),
        (
            "on_update",
            json!({"update_name": "populate_stats_process_rooms", "database_name": "master", "one_shot": false}),
        ),
        (
            "default_batch_size",
            json!({"update_name": "populate_stats_process_rooms", "database_name": "master"}),
        ),
        (
            "min_batch_size",
            json!({"update_name": "populate_stats_process_rooms", "database_name": "master"}),
        ),
        (
            "on_event_delivered_over_federation",
            json!({"delivery": {"server_name": "remote.example.org", "events": [message_event()], "method": "/send"}}),
        ),
    ]
}

/// A media upload limit with every field.
pub fn upload_limit() -> Value {
    json!({"max_bytes": 1000, "time_period_ms": 86_400_000, "info_uri": "https://example.com/plans", "can_upgrade": true})
}

/// Module answers that every spam-checker callback answering `SpamAnswer` accepts.
pub fn spam_answers() -> Vec<Value> {
    vec![
        json!("NOT_SPAM"),
        json!(true),
        json!(false),
        json!({"errcode": "M_FORBIDDEN"}),
        json!({"errcode": "M_LIMIT_EXCEEDED", "fields": {"extra": "value"}}),
        json!({"message": "Your message looks like spam"}),
        json!(null),
        json!(42),
    ]
}

/// Answers read by truthiness.
fn truthy_answers() -> Vec<Value> {
    vec![
        json!(true),
        json!(false),
        json!(null),
        json!(""),
        json!("drop"),
        json!(0),
        json!([]),
        json!({"x": 1}),
    ]
}

/// Third-party-rules yes/no answers.
fn check_answers() -> Vec<Value> {
    vec![json!(true), json!(false), json!(null), json!("yes")]
}

/// Notification answers, which Synapse ignores.
fn ignored_answers() -> Vec<Value> {
    vec![json!(null), json!({"anything": [1, 2]})]
}

/// Password-auth answers.
fn auth_answers() -> Vec<Value> {
    vec![
        json!({"user_id": ALICE}),
        json!({"user_id": ALICE, "post_login": "9f86d081884c7d659a2feaa0c55ad015"}),
        json!(null),
    ]
}

/// Registration-name answers.
fn name_answers() -> Vec<Value> {
    vec![json!("dave"), json!(null), json!(42)]
}

/// Every callback's sample module answers.
pub fn answer_samples() -> Vec<(&'static str, Vec<Value>)> {
    vec![
        ("check_event_for_spam", spam_answers()),
        ("should_drop_federated_event", truthy_answers()),
        ("user_may_join_room", spam_answers()),
        ("user_may_invite", spam_answers()),
        ("federated_user_may_invite", spam_answers()),
        ("user_may_send_3pid_invite", spam_answers()),
        ("user_may_create_room", spam_answers()),
        ("user_may_create_room_alias", spam_answers()),
        ("user_may_publish_room", spam_answers()),
        ("user_may_send_state_event", spam_answers()),
        ("check_username_for_spam", truthy_answers()),
        (
            "check_registration_for_spam",
            vec![json!("allow"), json!("shadow_ban"), json!("deny")],
        ),
        ("check_media_file_for_spam", spam_answers()),
        ("check_login_for_spam", spam_answers()),
        (
            "check_event_allowed",
            vec![
                json!({}),
                json!({"allowed": true}),
                json!({"allowed": false}),
                json!({"allowed": true, "replacement": {"type": "m.room.message", "room_id": ROOM, "sender": ALICE, "content": {"msgtype": "m.text", "body": "[redacted]"}}}),
            ],
        ),
        (
            "on_create_room",
            vec![
                json!({}),
                json!({"request_content": {"preset": "private_chat", "power_level_content_override": {"events_default": 50}}}),
                json!({"deny": {"status": 403, "errcode": "M_FORBIDDEN", "error": "Room creation is disabled"}}),
                json!(false),
                json!(true),
            ],
        ),
        ("check_threepid_can_be_invited", check_answers()),
        ("check_visibility_can_be_modified", check_answers()),
        ("on_new_event", ignored_answers()),
        ("check_can_shutdown_room", check_answers()),
        ("check_can_deactivate_user", check_answers()),
        ("on_profile_update", ignored_answers()),
        ("on_user_deactivation_status_changed", ignored_answers()),
        ("on_threepid_bind", ignored_answers()),
        ("on_add_user_third_party_identifier", ignored_answers()),
        ("on_remove_user_third_party_identifier", ignored_answers()),
        (
            "is_user_expired",
            vec![
                json!(true),
                json!(false),
                json!(null),
                json!({"expired": false, "valid_until_ms": 1_767_225_600_000_u64}),
                json!({"expired": null, "valid_until_ms": 0}),
            ],
        ),
        ("on_user_registration", ignored_answers()),
        ("on_user_login", ignored_answers()),
        ("on_legacy_send_mail", ignored_answers()),
        (
            "on_legacy_renew",
            vec![json!({"valid": true, "stale": false, "expiry_ts": 1_735_689_600_000_i64})],
        ),
        (
            "on_legacy_admin_request",
            vec![json!(1_735_689_600_000_i64)],
        ),
        (
            "get_users_for_states",
            vec![
                json!({}),
                json!({"@carol:example.com": [presence(ALICE, "online"), presence(BOB, "unavailable")]}),
            ],
        ),
        (
            "get_interested_users",
            vec![json!("ALL"), json!([BOB, "@carol:example.com"]), json!([])],
        ),
        ("check_auth", auth_answers()),
        ("check_3pid_auth", auth_answers()),
        ("post_login", ignored_answers()),
        ("on_logged_out", ignored_answers()),
        ("get_username_for_registration", name_answers()),
        ("get_displayname_for_registration", name_answers()),
        ("is_3pid_allowed", check_answers()),
        ("on_account_data_updated", ignored_answers()),
        (
            "get_media_config_for_user",
            vec![json!({"m.upload.size": 1024}), json!({}), json!(null)],
        ),
        ("is_user_allowed_to_upload_media_of_size", truthy_answers()),
        (
            "get_media_upload_limits_for_user",
            vec![json!([upload_limit()]), json!([]), json!(null)],
        ),
        ("on_media_upload_limit_exceeded", ignored_answers()),
        (
            "get_ratelimit_override_for_user",
            vec![json!({"per_second": 0.1, "burst_count": 10}), json!(null)],
        ),
        (
            "add_field_to_unsigned",
            vec![json!({}), json!({"org.example.label": "green"})],
        ),
        ("on_update", vec![json!(100)]),
        ("default_batch_size", vec![json!(500)]),
        ("min_batch_size", vec![json!(1)]),
        ("on_event_delivered_over_federation", ignored_answers()),
    ]
}

/// A failure as the coordinator reports it, `{"decision": "error", ...}`.
pub fn error_reply() -> Value {
    json!({
        "decision": "error",
        "status": 500,
        "errcode": "M_UNKNOWN",
        "error": "Internal server error",
        "module": "antispam"
    })
}

/// A module's own `SynapseError` as the coordinator passes it on, extra fields included.
pub fn synapse_error_reply() -> Value {
    json!({
        "decision": "error",
        "status": 429,
        "errcode": "M_LIMIT_EXCEEDED",
        "error": "Slow down",
        "fields": {"retry_after_ms": 1500},
        "module": "antispam",
        "synapse_error": true
    })
}

/// A denial with every field.
pub fn deny_reply() -> Value {
    json!({
        "decision": "deny",
        "errcode": "M_LIMIT_EXCEEDED",
        "error": "Too many invites",
        "fields": {"retry_after_ms": 5000},
        "module": "antispam",
        "status": 429
    })
}

/// The replies every `Decision` callback can get.
fn decisions() -> Vec<Value> {
    vec![
        json!({"decision": "allow"}),
        json!({"decision": "deny", "errcode": "M_FORBIDDEN", "error": "Forbidden", "fields": {}, "module": "antispam"}),
        deny_reply(),
        json!({"decision": "deny", "errcode": "M_FORBIDDEN", "error": "No links, please", "fields": {}, "module": "antispam", "module_message": true}),
        error_reply(),
        synapse_error_reply(),
    ]
}

/// `values`, then the `{"decision": "error"}` forms every `Outcome` reply can take.
fn outcomes(mut values: Vec<Value>) -> Vec<Value> {
    values.push(error_reply());
    values.push(synapse_error_reply());
    values
}

fn auth_replies() -> Vec<Value> {
    outcomes(vec![
        json!({"user_id": ALICE, "module": "ldap"}),
        json!({"user_id": ALICE, "module": "ldap", "post_login": "4242.9f86d081884c7d659a2feaa0c55ad015"}),
        json!({"user_id": null}),
    ])
}

fn name_replies() -> Vec<Value> {
    outcomes(vec![
        json!({"name": "dave", "module": "naming"}),
        json!({"name": null}),
    ])
}

/// Every callback's sample coordinator replies.
pub fn reply_samples() -> Vec<(&'static str, Vec<Value>)> {
    let mut samples: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for &cb in Callback::ALL {
        let replies = match cb.name() {
            "check_registration_for_spam" => outcomes(vec![
                json!({"behaviour": "allow"}),
                json!({"behaviour": "shadow_ban", "module": "antispam"}),
                json!({"behaviour": "deny", "module": "antispam"}),
            ]),
            "check_event_allowed" => {
                let mut d = decisions();
                d.push(json!({
                    "decision": "allow",
                    "replacement": {"type": "m.room.message", "room_id": ROOM, "sender": ALICE, "content": {"body": "[redacted]"}},
                    "module": "censor"
                }));
                d
            }
            "on_create_room" => {
                let mut d = decisions();
                d.push(json!({"decision": "allow", "request_content": {"preset": "private_chat"}}));
                d
            }
            "is_user_expired" => outcomes(vec![
                json!({"expired": null}),
                json!({"expired": false, "module": "validity", "valid_until_ms": 1_767_225_600_000_u64}),
                json!({"expired": true, "module": "validity"}),
                json!({"expired": false, "module": "validity"}),
            ]),
            "on_legacy_renew" => outcomes(vec![
                json!({"value": {"valid": true, "stale": false, "expiry_ts": 1_735_689_600_000_i64}, "module": "validity"}),
                json!({"value": null}),
            ]),
            "on_legacy_admin_request" => outcomes(vec![
                json!({"value": 1_735_689_600_000_i64, "module": "validity"}),
                json!({"value": null}),
            ]),
            "get_users_for_states" => outcomes(vec![
                json!({"users": {}}),
                json!({"users": {"@carol:example.com": [presence(ALICE, "online")]}}),
            ]),
            "get_interested_users" => outcomes(vec![
                json!({"users": "ALL"}),
                json!({"users": [BOB, "@carol:example.com"]}),
            ]),
            "on_update" | "default_batch_size" | "min_batch_size" => outcomes(vec![
                json!({"value": 500, "module": "throttle"}),
                json!({"value": null}),
            ]),
            "get_media_config_for_user" => outcomes(vec![
                json!({"value": {"m.upload.size": 1024}, "module": "media"}),
                json!({"value": null}),
            ]),
            "get_media_upload_limits_for_user" => outcomes(vec![
                json!({"value": [upload_limit()], "module": "media"}),
                json!({"value": []}),
                json!({"value": null}),
            ]),
            "get_ratelimit_override_for_user" => outcomes(vec![
                json!({"value": {"per_second": 0.1, "burst_count": 10}, "module": "limits"}),
                json!({"value": null}),
            ]),
            "add_field_to_unsigned" => outcomes(vec![
                json!({"fields": {}}),
                json!({"fields": {"org.example.label": "green"}}),
            ]),
            "check_auth" | "check_3pid_auth" => auth_replies(),
            "get_username_for_registration" | "get_displayname_for_registration" => name_replies(),
            _ => decisions(),
        };
        samples.push((cb.name(), replies));
    }
    samples
}
