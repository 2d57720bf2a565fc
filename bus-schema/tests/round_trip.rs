//! Every callback's request, module answer and coordinator reply decode from their wire form
//! and encode back to exactly the same JSON; the envelopes do too; malformed input is refused.

mod common;

use common::{
    answer_samples, callback, reply_samples, request_samples, spam_answers, ALICE, BOB, ROOM,
};
use glia_bus_schema::{
    requests, AllUsers, ArgsError, Callback, CallbackArgs, CallbackRequest, CheckAnswer, Decision,
    DispatchReply, ErrorKind, ErrorTag, FailedOutcome, Failure, InterestedUsers, Invocation,
    InvocationError, InvocationReply, InvocationResult, ModuleAnswer, NameAnswer,
    OnCreateRoomAnswer, Outcome, RoomContent, SpamAnswer, SpamCode, SpamMessage, SynapseError,
    UnknownCallback,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fmt::Debug;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Encodes `value` to JSON.
fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("contract types always serialise")
}

/// Decodes `json` as `T`, encodes it again, and checks both that the JSON is unchanged and that
/// decoding the re-encoded JSON gives the same value.
fn assert_round_trip<T>(json: Value) -> T
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let decoded: T = serde_json::from_value(json.clone()).unwrap_or_else(|e| {
        panic!(
            "{json} does not decode as {}: {e}",
            std::any::type_name::<T>()
        )
    });
    let encoded = to_json(&decoded);
    assert_eq!(
        encoded,
        json,
        "{} re-encodes differently",
        std::any::type_name::<T>()
    );
    let again: T = serde_json::from_value(encoded).expect("re-encoded JSON decodes");
    assert_eq!(again, decoded);
    decoded
}

/// Decodes `args` as `name`'s request and checks it encodes back to `args`, untagged and tagged.
fn assert_request_round_trips(name: &str, args: &Value) -> CallbackRequest {
    let cb = callback(name);
    let request = CallbackRequest::from_args(cb, args.clone())
        .unwrap_or_else(|e| panic!("{name}: sample arguments do not decode: {e}"));
    assert_eq!(request.callback(), cb, "{name}");
    assert_eq!(
        &request.args_json(),
        args,
        "{name}: arguments re-encode differently"
    );

    let from_bytes = CallbackRequest::from_args_slice(cb, &serde_json::to_vec(args).unwrap())
        .unwrap_or_else(|e| panic!("{name}: sample bytes do not decode: {e}"));
    assert_eq!(
        from_bytes, request,
        "{name}: from_args_slice differs from from_args"
    );

    let tagged = assert_round_trip::<CallbackRequest>(json!({"callback": name, "args": args}));
    assert_eq!(tagged, request, "{name}: tagged form decodes differently");
    request
}

/// Decodes `answer` as one module's answer to `name` and checks it encodes back to `answer`.
fn assert_answer_round_trips(name: &str, answer: &Value) -> ModuleAnswer {
    let cb = callback(name);
    let decoded = ModuleAnswer::from_json(cb, answer.clone())
        .unwrap_or_else(|e| panic!("{name}: answer {answer} does not decode: {e}"));
    assert_eq!(decoded.callback(), cb, "{name}");
    let tagged = json!({"callback": name, "answer": answer});
    assert_eq!(
        to_json(&decoded),
        tagged,
        "{name}: answer {answer} re-encodes differently"
    );
    assert_eq!(assert_round_trip::<ModuleAnswer>(tagged), decoded);
    decoded
}

/// Decodes `reply` as the coordinator's reply to `name` and checks it encodes back to `reply`.
fn assert_reply_round_trips(name: &str, reply: &Value) -> DispatchReply {
    let cb = callback(name);
    let decoded = DispatchReply::from_json(cb, reply.clone())
        .unwrap_or_else(|e| panic!("{name}: reply {reply} does not decode: {e}"));
    assert_eq!(decoded.callback(), cb, "{name}");
    assert_eq!(
        &to_json(&decoded),
        reply,
        "{name}: reply re-encodes differently"
    );
    decoded
}

/// Asserts that `names` holds each callback of `Callback::ALL` exactly once, and nothing else.
fn assert_covers_every_callback<'a>(table: &str, names: impl IntoIterator<Item = &'a str>) {
    let mut seen = BTreeSet::new();
    for name in names {
        let cb = callback(name);
        assert!(seen.insert(cb), "{table}: {name} appears twice");
    }
    let missing: Vec<_> = Callback::ALL
        .iter()
        .filter(|cb| !seen.contains(cb))
        .map(|cb| cb.name())
        .collect();
    assert!(missing.is_empty(), "{table} has no sample for {missing:?}");
}

/// `name`'s sample arguments.
fn request_sample(name: &str) -> Value {
    request_samples()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, args)| args)
        .unwrap_or_else(|| panic!("no sample for {name}"))
}

/// The spam-checker answer `json` decodes to, for a callback answering `SpamAnswer`.
fn spam_answer(json: Value) -> SpamAnswer {
    match ModuleAnswer::from_json(Callback::UserMayInvite, json).expect("a SpamAnswer") {
        ModuleAnswer::UserMayInvite(answer) => answer,
        other => panic!("decoded to another callback: {other:?}"),
    }
}

/// The `on_create_room` answer `json` decodes to, or the decoding error.
fn on_create_room_answer(json: Value) -> Result<OnCreateRoomAnswer, serde_json::Error> {
    serde_json::from_value(json)
}

/// A failure as modules and the coordinator report it.
fn failure() -> Failure {
    Failure {
        status: 500,
        errcode: "M_UNKNOWN".into(),
        error: "Internal server error".into(),
        fields: Default::default(),
        module: "antispam".into(),
        synapse_error: false,
    }
}

/// The error text of decoding `args` as `cb`'s request (which must fail).
fn request_error(cb: Callback, args: Value) -> String {
    let bytes = serde_json::to_vec(&args).unwrap();
    let from_value = CallbackRequest::from_args(cb, args)
        .expect_err("malformed arguments must not decode")
        .to_string();
    let from_slice = CallbackRequest::from_args_slice(cb, &bytes)
        .expect_err("malformed argument bytes must not decode")
        .to_string();
    assert!(
        from_slice.starts_with(&from_value),
        "from_args_slice and from_args disagree: {from_slice:?} vs {from_value:?}"
    );
    from_value
}

// ---------------------------------------------------------------------------------------------
// The callback table

#[test]
fn callback_names_parse_display_and_serialise_as_synapse_names() {
    let mut names = BTreeSet::new();
    for (i, &cb) in Callback::ALL.iter().enumerate() {
        assert!(names.insert(cb.name()), "{} listed twice", cb.name());
        assert_eq!(cb.index(), i, "{cb}: index is not its position in ALL");
        assert_eq!(cb.name().parse::<Callback>(), Ok(cb));
        assert_eq!(cb.to_string(), cb.name());
        assert_eq!(to_json(&cb), json!(cb.name()));
        assert_eq!(
            serde_json::from_value::<Callback>(json!(cb.name())).unwrap(),
            cb
        );
    }
}

#[test]
fn unknown_callback_names_are_refused() {
    assert_eq!(
        "user_may_fly".parse::<Callback>(),
        Err(UnknownCallback("user_may_fly".into()))
    );
    // Names are exact: no case folding, no removed callbacks.
    assert!("User_May_Invite".parse::<Callback>().is_err());
    assert!("user_may_create_room_with_invites"
        .parse::<Callback>()
        .is_err());
    let err = "user_may_fly".parse::<Callback>().unwrap_err();
    assert!(err.to_string().contains("user_may_fly"), "{err}");

    assert!(serde_json::from_value::<Callback>(json!("user_may_fly")).is_err());
    assert!(serde_json::from_value::<CallbackRequest>(
        json!({"callback": "user_may_fly", "args": {}})
    )
    .is_err());
}

// ---------------------------------------------------------------------------------------------
// Requests

#[test]
fn request_samples_cover_every_callback() {
    assert_covers_every_callback("request_samples", request_samples().iter().map(|(n, _)| *n));
}

#[test]
fn every_request_round_trips() {
    for (name, args) in request_samples() {
        assert_request_round_trips(name, &args);
    }
}

#[test]
fn typed_requests_convert_to_and_from_the_tagged_enum() {
    let args = request_sample("user_may_invite");
    let request = CallbackRequest::from_args(Callback::UserMayInvite, args).unwrap();
    let typed = requests::UserMayInvite::from_request(&request).expect("a user_may_invite request");
    assert_eq!(
        (
            typed.inviter.as_str(),
            typed.invitee.as_str(),
            typed.room_id.as_str()
        ),
        (ALICE, BOB, ROOM)
    );
    assert_eq!(
        <requests::UserMayInvite as CallbackArgs>::CALLBACK,
        Callback::UserMayInvite
    );
    assert!(requests::UserMayJoinRoom::from_request(&request).is_none());
    assert_eq!(typed.clone().into_request(), request);
}

#[test]
fn typed_fields_of_a_request_are_read_as_synapse_passes_them() {
    let request = assert_request_round_trips(
        "check_event_allowed",
        &request_sample("check_event_allowed"),
    );
    let CallbackRequest::CheckEventAllowed(r) = request else {
        panic!("wrong variant")
    };
    assert_eq!(r.event.event_type, "m.room.message");
    assert_eq!(r.event.body(), Some("Hello, world"));
    assert_eq!(r.event.sender_server(), Some("example.com"));
    assert_eq!(
        r.event.extra["depth"],
        json!(42),
        "unknown PDU fields are kept verbatim"
    );
    let create = r
        .state_events
        .get("m.room.create", "")
        .expect("the create event, keyed (type, \"\")");
    assert_eq!(create.content["room_version"], json!("10"));
    assert_eq!(
        r.state_events
            .get("m.room.member", ALICE)
            .and_then(|e| e.membership()),
        Some("join")
    );
    assert!(r.state_events.get("m.room.member", BOB).is_none());

    let CallbackRequest::UserMayCreateRoomAlias(r) = assert_request_round_trips(
        "user_may_create_room_alias",
        &request_sample("user_may_create_room_alias"),
    ) else {
        panic!("wrong variant")
    };
    assert_eq!(
        (r.room_alias.localpart(), r.room_alias.domain()),
        ("planning", "example.com")
    );
}

#[test]
fn optional_arguments_default_as_synapse_defaults_them() {
    let cases = [
        (
            "user_may_join_room",
            json!({"user_id": ALICE, "room_id": ROOM}),
            json!({"user_id": ALICE, "room_id": ROOM, "is_invited": false}),
        ),
        (
            "user_may_create_room",
            json!({"user_id": ALICE}),
            json!({"user_id": ALICE, "room_config": {}}),
        ),
        (
            "check_can_shutdown_room",
            json!({"room_id": ROOM}),
            json!({"user_id": null, "room_id": ROOM}),
        ),
        (
            "check_registration_for_spam",
            json!({}),
            json!({"email_threepid": null, "username": null, "request_info": [], "auth_provider_id": null}),
        ),
        (
            "check_event_for_spam",
            json!({"event": {"room_id": ROOM, "sender": ALICE, "type": "m.room.message"}}),
            json!({"event": {"room_id": ROOM, "sender": ALICE, "type": "m.room.message", "content": {}}}),
        ),
    ];
    for (name, sparse, canonical) in cases {
        let request = CallbackRequest::from_args(callback(name), sparse.clone())
            .unwrap_or_else(|e| panic!("{name}: {sparse} does not decode: {e}"));
        assert_eq!(request.args_json(), canonical, "{name}");
    }
}

#[test]
fn an_empty_state_key_is_kept_and_a_missing_one_stays_missing() {
    let mut args = request_sample("check_event_for_spam");
    args["event"]["state_key"] = json!("");
    let CallbackRequest::CheckEventForSpam(r) =
        assert_request_round_trips("check_event_for_spam", &args)
    else {
        panic!("wrong variant")
    };
    assert_eq!(r.event.state_key.as_deref(), Some(""));

    let args = request_sample("check_event_for_spam");
    let r = CallbackRequest::from_args(Callback::CheckEventForSpam, args).unwrap();
    assert!(r.args_json()["event"].get("state_key").is_none());
}

// ---------------------------------------------------------------------------------------------
// Malformed requests

#[test]
fn a_missing_required_argument_is_named_in_the_error() {
    let cases = [
        ("user_may_invite", "invitee"),
        ("user_may_send_3pid_invite", "address"),
        ("check_visibility_can_be_modified", "new_visibility"),
        ("on_logged_out", "access_token"),
        ("on_legacy_renew", "renewal_token"),
    ];
    for (name, field) in cases {
        let mut args = request_sample(name);
        args.as_object_mut()
            .unwrap()
            .remove(field)
            .expect("the sample has the field");
        let err = request_error(callback(name), args);
        assert!(
            err.contains(&format!("`{field}`")),
            "{name}: error {err:?} does not name {field}"
        );
    }

    // A field missing inside a nested shape is named too.
    let mut args = request_sample("check_event_for_spam");
    args["event"].as_object_mut().unwrap().remove("sender");
    let err = request_error(Callback::CheckEventForSpam, args);
    assert!(err.contains("`sender`"), "{err}");
}

#[test]
fn a_bad_room_alias_is_refused() {
    for bad in ["foo", "#foo", "#foo:", "planning:example.com"] {
        let err = request_error(
            Callback::UserMayCreateRoomAlias,
            json!({"user_id": ALICE, "room_alias": bad}),
        );
        assert!(err.contains("room alias"), "{bad}: {err}");
        assert!(
            err.contains(bad),
            "{bad}: the error should quote the alias: {err}"
        );
    }
}

/// The error of decoding `args` with `from_json_slice` (which must fail).
fn json_slice_error(cb: Callback, args: &[u8]) -> ArgsError {
    CallbackRequest::from_json_slice(cb, args).expect_err("malformed arguments must not decode")
}

#[test]
fn from_json_slice_names_the_path_of_the_bad_field() {
    for (name, args) in request_samples() {
        let bytes = serde_json::to_vec(&args).unwrap();
        let decoded = CallbackRequest::from_json_slice(callback(name), &bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            decoded,
            CallbackRequest::from_args(callback(name), args).unwrap(),
            "{name}"
        );
    }

    let bad_type = br#"{"inviter": 1, "invitee": "@bob:x", "room_id": "!r:x"}"#;
    let err = json_slice_error(Callback::UserMayInvite, bad_type);
    assert!(
        matches!(&err, ArgsError::BadField { path, .. } if path == "inviter"),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("field `inviter`: invalid type"),
        "{err}"
    );

    let mut args = request_sample("check_event_for_spam");
    args["event"]["content"] = json!("not an object");
    let err = json_slice_error(
        Callback::CheckEventForSpam,
        &serde_json::to_vec(&args).unwrap(),
    );
    assert!(
        matches!(&err, ArgsError::BadField { path, .. } if path == "event.content"),
        "{err:?}"
    );

    let err = json_slice_error(
        Callback::UserMayInvite,
        br#"{"inviter": "@a:x", "room_id": "!r:x"}"#,
    );
    assert!(matches!(&err, ArgsError::BadField { .. }), "{err:?}");
    assert!(err.to_string().contains("`invitee`"), "{err}");

    let err = json_slice_error(
        Callback::UserMayCreateRoomAlias,
        br#"{"user_id": "@a:x", "room_alias": "foo"}"#,
    );
    assert!(
        matches!(&err, ArgsError::BadField { path, .. } if path == "room_alias"),
        "{err:?}"
    );

    let trailing = br#"{"inviter": "@a:x", "invitee": "@b:x", "room_id": "!r:x"} trailing"#;
    for not_json in [&br#"{"inviter": "#[..], b"user_may_invite", trailing] {
        let err = json_slice_error(Callback::UserMayInvite, not_json);
        assert!(
            matches!(err, ArgsError::NotJson(_)),
            "{:?}: {err:?}",
            String::from_utf8_lossy(not_json)
        );
    }
}

/// Valid JSON nested deeper than the decoder recurses is JSON, just not arguments glia
/// takes: a bad field (`M_BAD_JSON` over HTTP), not "not JSON". Invalid JSON stays not JSON.
#[test]
fn deep_nesting_is_bad_json_not_not_json() {
    use glia_bus_schema::callbacks::MAX_DEPTH;
    let deep = |depth: usize| {
        format!(
            r#"{{"event": {{"content": {{"deep": {}{}}}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    // Within the limit the event decodes (its other fields are missing: a bad field anyway).
    for depth in [MAX_DEPTH + 1, 10 * MAX_DEPTH, 100_000] {
        let err = json_slice_error(Callback::CheckEventForSpam, deep(depth).as_bytes());
        match &err {
            ArgsError::BadField { path, message } => {
                assert_eq!(path, "", "{err}");
                assert_eq!(
                    message,
                    &format!("nested more than {MAX_DEPTH} levels deep")
                );
            }
            other => panic!("depth {depth}: {other:?}"),
        }
    }
    let shallow = json_slice_error(Callback::CheckEventForSpam, deep(3).as_bytes());
    assert!(
        !shallow.to_string().contains("nested"),
        "a shallow body is judged on its fields: {shallow}"
    );
    let err = json_slice_error(
        Callback::CheckEventForSpam,
        br#"{"event": {"content": {"deep": [[[[ nope"#,
    );
    assert!(matches!(err, ArgsError::NotJson(_)), "{err:?}");
}

#[test]
fn arguments_of_the_wrong_type_are_refused() {
    let cases = [
        (
            "user_may_join_room",
            json!({"user_id": ALICE, "room_id": ROOM, "is_invited": "yes"}),
        ),
        (
            "check_visibility_can_be_modified",
            json!({"room_id": ROOM, "new_visibility": "unlisted"}),
        ),
        (
            "get_users_for_states",
            json!({"state_updates": [{"user_id": ALICE, "state": "away"}]}),
        ),
        ("user_may_invite", json!(ALICE)),
        ("is_user_expired", json!(null)),
    ];
    for (name, args) in cases {
        request_error(callback(name), args);
    }
}

// ---------------------------------------------------------------------------------------------
// Module answers

#[test]
fn answer_samples_cover_every_callback() {
    let samples = answer_samples();
    assert_covers_every_callback("answer_samples", samples.iter().map(|(n, _)| *n));
    for (name, answers) in &samples {
        assert!(!answers.is_empty(), "{name} has an empty answer list");
    }
}

#[test]
fn every_answer_round_trips() {
    for (name, answers) in answer_samples() {
        for answer in &answers {
            assert_answer_round_trips(name, answer);
        }
    }
}

#[test]
fn spam_answer_wire_forms_decode_to_their_variants() {
    let decoded: Vec<SpamAnswer> = spam_answers().into_iter().map(spam_answer).collect();
    let mut fields = serde_json::Map::new();
    fields.insert("extra".into(), json!("value"));
    let expected = vec![
        SpamAnswer::NOT_SPAM,
        SpamAnswer::Bool(true),
        SpamAnswer::Bool(false),
        SpamAnswer::code("M_FORBIDDEN"),
        SpamAnswer::code_with_fields("M_LIMIT_EXCEEDED", fields.clone()),
        SpamAnswer::Message(SpamMessage {
            message: "Your message looks like spam".into(),
        }),
        SpamAnswer::Other(Value::Null),
        SpamAnswer::Other(json!(42)),
    ];
    assert_eq!(decoded, expected);
    assert_eq!(
        decoded[4],
        SpamAnswer::Code(SpamCode {
            errcode: "M_LIMIT_EXCEEDED".into(),
            fields: Some(fields)
        })
    );

    // Only the exact sentinel is NOT_SPAM: other strings are not a verdict of their own.
    assert_eq!(
        spam_answer(json!("not_spam")),
        SpamAnswer::Other(json!("not_spam"))
    );
    assert_eq!(
        spam_answer(json!("spam!")),
        SpamAnswer::Other(json!("spam!"))
    );
    // An object that is neither form is `Other`, kept as is.
    assert_eq!(
        spam_answer(json!({"verdict": "spam"})),
        SpamAnswer::Other(json!({"verdict": "spam"}))
    );

    // The constructors encode to the documented wire forms.
    assert_eq!(to_json(&SpamAnswer::NOT_SPAM), json!("NOT_SPAM"));
    assert_eq!(
        to_json(&SpamAnswer::code("M_FORBIDDEN")),
        json!({"errcode": "M_FORBIDDEN"})
    );
}

#[test]
fn on_create_room_answer_wire_forms_decode_to_their_variants() {
    assert_eq!(
        on_create_room_answer(json!({})).unwrap(),
        OnCreateRoomAnswer::Continue(RoomContent {
            request_content: None
        })
    );
    assert_eq!(
        on_create_room_answer(json!(null)).unwrap(),
        OnCreateRoomAnswer::Unchanged
    );
    let edited = json!({"preset": "private_chat"});
    assert_eq!(
        on_create_room_answer(json!({"request_content": edited})).unwrap(),
        OnCreateRoomAnswer::Continue(RoomContent {
            request_content: Some(edited.as_object().unwrap().clone())
        })
    );
    assert_eq!(
        on_create_room_answer(
            json!({"deny": {"status": 400, "errcode": "M_INVALID_PARAM", "error": "no"}})
        )
        .unwrap(),
        OnCreateRoomAnswer::Deny {
            deny: SynapseError::new(400, "M_INVALID_PARAM", "no")
        }
    );
    // A SynapseError without status or errcode gets Synapse's defaults (403 M_UNKNOWN).
    assert_eq!(
        on_create_room_answer(json!({"deny": {"error": "Room creation forbidden"}})).unwrap(),
        OnCreateRoomAnswer::Deny {
            deny: SynapseError::new(403, "M_UNKNOWN", "Room creation forbidden")
        }
    );
    // A return value Synapse ignores.
    assert_eq!(
        on_create_room_answer(json!(false)).unwrap(),
        OnCreateRoomAnswer::Bool(false)
    );
    assert_eq!(
        on_create_room_answer(json!(true)).unwrap(),
        OnCreateRoomAnswer::Bool(true)
    );
    // A SynapseError with extra fields; a status outside 400-599 is not a refusal.
    assert_eq!(
        on_create_room_answer(json!({"deny": {"status": 429, "errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "fields": {"retry_after_ms": 500}}})).unwrap(),
        OnCreateRoomAnswer::Deny {
            deny: SynapseError::new(429, "M_LIMIT_EXCEEDED", "slow down")
                .with_fields(json!({"retry_after_ms": 500}).as_object().unwrap().clone())
        }
    );
    for status in [200, 302, 399, 600] {
        let decoded = on_create_room_answer(json!({"deny": {"status": status, "error": "x"}}));
        assert!(
            !matches!(decoded, Ok(OnCreateRoomAnswer::Deny { .. })),
            "status {status} decodes as {decoded:?}"
        );
    }
    assert!(on_create_room_answer(json!("deny")).is_err());
    assert!(on_create_room_answer(json!({"request_content": "not an object"})).is_err());
}

/// Synapse refuses room creation whenever `on_create_room` raises; a `deny` the coordinator
/// cannot read must not turn into "carry on".
#[test]
fn a_malformed_on_create_room_deny_is_not_continue() {
    for malformed in [
        json!({"deny": {"errcode": "M_FORBIDDEN"}}),
        json!({"deny": "no"}),
    ] {
        let decoded = on_create_room_answer(malformed.clone());
        assert!(
            !matches!(
                decoded,
                Ok(OnCreateRoomAnswer::Continue(_) | OnCreateRoomAnswer::Unchanged)
            ),
            "{malformed} decodes as {decoded:?}"
        );
    }
}

#[test]
fn other_answer_forms_decode_to_their_variants() {
    let interested = |json: Value| serde_json::from_value::<InterestedUsers>(json).unwrap();
    assert_eq!(
        interested(json!("ALL")),
        InterestedUsers::All(AllUsers::All)
    );
    assert_eq!(
        interested(json!([BOB])),
        InterestedUsers::Users(vec![BOB.into()])
    );
    assert!(
        serde_json::from_value::<InterestedUsers>(json!("all")).is_err(),
        "the sentinel is exact"
    );

    let check = |json: Value| serde_json::from_value::<CheckAnswer>(json).unwrap();
    assert!(check(json!(false)).is_false());
    assert!(!check(json!(true)).is_false());
    assert!(!check(json!(null)).is_false(), "only false denies");
    assert!(!check(json!(0)).is_false(), "only false denies");

    let name = |json: Value| serde_json::from_value::<NameAnswer>(json).unwrap();
    assert_eq!(name(json!("dave")), NameAnswer::Name(Some("dave".into())));
    assert_eq!(name(json!(null)), NameAnswer::Name(None));
    assert_eq!(name(json!(42)), NameAnswer::Other(json!(42)));

    let truthy =
        |json: Value| ModuleAnswer::from_json(Callback::ShouldDropFederatedEvent, json).unwrap();
    for (value, expected) in [
        (json!(""), false),
        (json!("x"), true),
        (json!(0), false),
        (json!(0.5), true),
        (json!({}), false),
    ] {
        let ModuleAnswer::ShouldDropFederatedEvent(answer) = truthy(value.clone()) else {
            panic!("wrong variant")
        };
        assert_eq!(answer.is_truthy(), expected, "truthiness of {value}");
    }
}

#[test]
fn answers_of_the_wrong_shape_are_refused() {
    let cases = [
        ("check_registration_for_spam", json!("maybe")),
        ("is_user_expired", json!("yes")),
        ("is_user_expired", json!({"expired": false})),
        (
            "is_user_expired",
            json!({"expired": false, "valid_until_ms": -1}),
        ),
        (
            "is_user_expired",
            json!({"expired": false, "valid_until_ms": 1, "cache": true}),
        ),
        ("get_interested_users", json!({"users": [BOB]})),
        ("on_legacy_renew", json!({"valid": true, "stale": false})),
        ("check_auth", json!(ALICE)),
        ("check_event_allowed", json!(false)),
    ];
    for (name, answer) in cases {
        assert!(
            ModuleAnswer::from_json(callback(name), answer.clone()).is_err(),
            "{name}: {answer} decoded"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Coordinator replies

#[test]
fn reply_samples_cover_every_callback() {
    let samples = reply_samples();
    assert_covers_every_callback("reply_samples", samples.iter().map(|(n, _)| *n));
    for (name, replies) in &samples {
        assert!(!replies.is_empty(), "{name} has an empty reply list");
    }
}

#[test]
fn every_reply_round_trips() {
    for (name, replies) in reply_samples() {
        for reply in &replies {
            assert_reply_round_trips(name, reply);
        }
    }
}

#[test]
fn decision_wire_forms() {
    assert_eq!(to_json(&Decision::ALLOW), json!({"decision": "allow"}));
    assert_eq!(
        assert_round_trip::<Decision>(json!({"decision": "allow"})),
        Decision::ALLOW
    );
    assert!(Decision::ALLOW.is_allow());

    let deny = assert_round_trip::<Decision>(common::deny_reply());
    let Decision::Deny {
        errcode,
        status,
        fields,
        ..
    } = &deny
    else {
        panic!("not a deny: {deny:?}")
    };
    assert_eq!((errcode.as_str(), *status), ("M_LIMIT_EXCEEDED", Some(429)));
    assert_eq!(fields["retry_after_ms"], json!(5000));
    assert!(!deny.is_allow());

    // `fields` may be left out; it is written back as an empty object.
    let minimal = json!({"decision": "deny", "errcode": "M_FORBIDDEN", "error": "Forbidden", "module": "antispam"});
    let decoded: Decision = serde_json::from_value(minimal).unwrap();
    assert_eq!(to_json(&decoded)["fields"], json!({}));

    let error = assert_round_trip::<Decision>(common::error_reply());
    assert_eq!(error, Decision::Error(failure()));
    assert!(!error.is_allow());

    assert!(serde_json::from_value::<Decision>(json!({"decision": "maybe"})).is_err());
    assert!(serde_json::from_value::<Decision>(
        json!({"decision": "deny", "errcode": "M_FORBIDDEN"})
    )
    .is_err());
}

#[test]
fn outcome_tells_a_value_from_an_error() {
    type Expiry = Outcome<glia_bus_schema::ExpiryReply>;
    let value = assert_round_trip::<Expiry>(json!({"expired": true, "module": "validity"}));
    assert!(
        matches!(
            value,
            Outcome::Value(glia_bus_schema::ExpiryReply {
                expired: Some(true),
                ..
            })
        ),
        "{value:?}"
    );

    let failed = assert_round_trip::<Expiry>(common::error_reply());
    assert_eq!(failed, Expiry::from(failure()));
    assert_eq!(
        failed,
        Outcome::Failed(FailedOutcome {
            decision: ErrorTag::Error,
            failure: failure()
        })
    );

    let interested = assert_round_trip::<Outcome<glia_bus_schema::InterestedUsersReply>>(
        json!({"users": "ALL"}),
    );
    assert!(
        matches!(interested, Outcome::Value(ref r) if r.users == InterestedUsers::All(AllUsers::All))
    );
}

// ---------------------------------------------------------------------------------------------
// Envelopes

#[test]
fn invocation_serialises_flat_and_round_trips() {
    let request =
        CallbackRequest::from_args(Callback::UserMayInvite, request_sample("user_may_invite"))
            .unwrap();
    let invocation = Invocation {
        request_id: "req-0001".into(),
        deadline_ms: 1_700_000_000_250,
        request,
    };
    let json = to_json(&invocation);
    assert_eq!(
        json,
        json!({
            "request_id": "req-0001",
            "deadline_ms": 1_700_000_000_250_u64,
            "callback": "user_may_invite",
            "args": {"inviter": ALICE, "invitee": BOB, "room_id": ROOM}
        })
    );
    assert_eq!(assert_round_trip::<Invocation>(json), invocation);
}

#[test]
fn a_host_invoke_frame_carries_the_trace_context_only_when_there_is_one() {
    use glia_bus_schema::host::ToHost;
    let invocation = json!({"request_id": "py-7", "deadline_ms": 1_700_000_000_250_u64, "callback": "user_may_invite", "args": request_sample("user_may_invite")});
    // A frame from a glia that sends no trace context (or records no span) still decodes.
    let untraced =
        assert_round_trip::<ToHost>(json!({"invoke": {"id": 7, "invocation": invocation}}));
    let ToHost::Invoke(frame) = untraced else {
        panic!("not an invoke frame")
    };
    assert_eq!((frame.traceparent, frame.tracestate), (None, None));
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = assert_round_trip::<ToHost>(json!({"invoke": {
        "id": 8, "invocation": invocation, "traceparent": traceparent, "tracestate": "vendor=1"
    }}));
    let ToHost::Invoke(frame) = traced else {
        panic!("not an invoke frame")
    };
    assert_eq!(frame.traceparent.as_deref(), Some(traceparent));
    assert_eq!(frame.tracestate.as_deref(), Some("vendor=1"));
}

#[test]
fn every_request_round_trips_inside_an_invocation() {
    for (name, args) in request_samples() {
        let json = json!({"request_id": format!("req-{name}"), "deadline_ms": 1_700_000_000_250_u64, "callback": name, "args": args});
        let invocation = assert_round_trip::<Invocation>(json);
        assert_eq!(invocation.request.callback(), callback(name));
    }
}

#[test]
fn invocation_reply_with_an_answer_round_trips() {
    for (name, answers) in answer_samples() {
        let answer = &answers[0];
        let json = json!({"request_id": "req-0001", "result": {"answer": {"callback": name, "answer": answer}}});
        let reply = assert_round_trip::<InvocationReply>(json);
        let InvocationResult::Answer(decoded) = reply.result else {
            panic!("{name}: not an answer")
        };
        assert_eq!(
            decoded,
            ModuleAnswer::from_json(callback(name), answer.clone()).unwrap()
        );
    }
}

#[test]
fn invocation_reply_with_each_error_kind_round_trips() {
    let cases = [
        (
            json!({"kind": "timeout", "after_ms": 250}),
            ErrorKind::Timeout,
        ),
        (
            json!({"kind": "crashed", "reason": "panicked at 'index out of bounds'"}),
            ErrorKind::Crashed,
        ),
        (
            json!({"kind": "unavailable", "reason": "no responders on glia.v1.antispam"}),
            ErrorKind::Unavailable,
        ),
        (
            json!({"kind": "invalid_answer", "detail": "expected NOT_SPAM, a bool or an errcode"}),
            ErrorKind::InvalidAnswer,
        ),
        (
            json!({"kind": "failed", "message": "database is locked"}),
            ErrorKind::Failed,
        ),
        (
            json!({"kind": "failed", "message": "Not allowed", "synapse_error": {"status": 403, "errcode": "M_FORBIDDEN", "error": "Not allowed"}}),
            ErrorKind::Failed,
        ),
    ];
    for (error, kind) in cases {
        let reply = assert_round_trip::<InvocationReply>(
            json!({"request_id": "req-0002", "result": {"error": error}}),
        );
        let InvocationResult::Error(e) = reply.result else {
            panic!("{error}: not an error")
        };
        assert_eq!(e.kind(), kind, "{error}");
        assert_eq!(assert_round_trip::<InvocationError>(error.clone()), e);
    }
    assert!(serde_json::from_value::<InvocationError>(json!({"kind": "exploded"})).is_err());
}
