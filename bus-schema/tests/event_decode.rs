//! `Event`'s written-out decoder against the derived one it replaced (`DerivedEvent`,
//! tests/support/derived_event.rs): on every value of the request samples and of the
//! committed fuzz corpus, and on malformed events, both decode the same value or fail with the
//! same error (the same message, and the same field path under `serde_path_to_error`), from
//! JSON text, from a borrowed JSON value and from an owned one.

mod common;

use glia_bus_schema::Event;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt::Debug;
use std::path::Path;

#[path = "support/derived_event.rs"]
mod derived;

use derived::Event as DerivedEvent;

impl From<DerivedEvent> for Event {
    fn from(d: DerivedEvent) -> Event {
        Event {
            event_id: d.event_id,
            room_id: d.room_id,
            sender: d.sender,
            event_type: d.event_type,
            state_key: d.state_key,
            content: d.content,
            origin_server_ts: d.origin_server_ts,
            unsigned: d.unsigned,
            room_version: d.room_version,
            internal_metadata: d.internal_metadata,
            extra: d.extra,
        }
    }
}

/// An event inside a request, so that errors carry a field path.
#[derive(Debug, Deserialize)]
struct Wrapped<E> {
    #[allow(dead_code)] // compared through Debug
    event: E,
}

/// Both decoders' results, the derived one's as an `Event`, errors as their messages.
fn both<E: Debug>(
    new: Result<Event, E>,
    old: Result<DerivedEvent, E>,
) -> (Result<Event, String>, Result<Event, String>) {
    (
        new.map_err(|e| format!("{e:?}")),
        old.map(Event::from).map_err(|e| format!("{e:?}")),
    )
}

/// Both decoders agree on `text` (which need not be JSON) and, when it is JSON, on its value
/// borrowed and owned, and inside a request under `serde_path_to_error`. Returns whether the
/// event decoded.
fn agree_on_text(text: &[u8]) -> bool {
    let (new, old) = both(
        serde_json::from_slice::<Event>(text),
        serde_json::from_slice::<DerivedEvent>(text),
    );
    assert_eq!(new, old, "from text {}", String::from_utf8_lossy(text));
    if let Ok(value) = serde_json::from_slice::<Value>(text) {
        agree_on_value(&value);
    }
    new.is_ok()
}

/// Both decoders agree on `value`, borrowed, owned, and as a request's `event` field.
fn agree_on_value(value: &Value) {
    let (new, old) = both(Event::deserialize(value), DerivedEvent::deserialize(value));
    assert_eq!(new, old, "from the value {value}");
    let (new, old) = both(
        Event::deserialize(value.clone()),
        DerivedEvent::deserialize(value.clone()),
    );
    assert_eq!(new, old, "from the owned value {value}");
    let request = serde_json::to_vec(&json!({ "event": value })).expect("encodes");
    assert_eq!(
        with_path::<Wrapped<Event>>(&request),
        with_path::<Wrapped<DerivedEvent>>(&request),
        "inside a request {value}"
    );
}

/// `text` decoded under `serde_path_to_error`: the error's path and message, or the value.
fn with_path<T: DeserializeOwned + Debug>(text: &[u8]) -> Result<String, (String, String)> {
    let mut de = serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize::<_, T>(&mut de)
        .map(|decoded| format!("{decoded:?}"))
        .map_err(|e| (e.path().to_string(), e.inner().to_string()))
}

/// Every value in `value`, itself included.
fn every_value(value: &Value, out: &mut Vec<Value>) {
    out.push(value.clone());
    match value {
        Value::Array(items) => items.iter().for_each(|v| every_value(v, out)),
        Value::Object(map) => map.values().for_each(|v| every_value(v, out)),
        _ => {}
    }
}

/// Both decoders agree on every value in `value`, as text; how many decoded as events.
fn agree_on_every_value(value: &Value) -> usize {
    let mut values = Vec::new();
    every_value(value, &mut values);
    values
        .iter()
        .map(|v| usize::from(agree_on_text(&serde_json::to_vec(v).expect("encodes"))))
        .sum()
}

#[test]
fn both_decoders_agree_on_every_sample_value() {
    let decoded: usize = common::request_samples()
        .iter()
        .map(|(_, args)| agree_on_every_value(args))
        .sum();
    assert!(decoded >= 20, "only {decoded} sample values are events");
}

#[test]
fn both_decoders_agree_on_the_fuzz_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut decoded = 0;
    for target in ["callback_args", "invocation", "http_antispam"] {
        let dir = root.join(target);
        let inputs = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for {target} at {}: {e}", dir.display()));
        for input in inputs {
            let data = std::fs::read(input.expect("a corpus entry").path()).expect("read");
            // callback_args and http_antispam inputs start with a byte picking the callback.
            for text in [&data[..], data.get(1..).unwrap_or_default()] {
                agree_on_text(text);
                if let Ok(value) = serde_json::from_slice::<Value>(text) {
                    decoded += agree_on_every_value(&value);
                }
            }
        }
    }
    assert!(decoded >= 30, "only {decoded} corpus values are events");
}

#[test]
fn both_decoders_agree_on_malformed_events() {
    let cases: &[&str] = &[
        r#"{}"#,
        r#"{"type": "m.room.message"}"#,
        r#"{"sender": "@a:b"}"#,
        r#"{"sender": "@a:b", "type": "t", "sender": "@c:d"}"#,
        r#"{"sender": "@a:b", "type": "t", "state_key": "", "state_key": "x"}"#,
        r#"{"sender": "@a:b", "type": "t", "depth": 1, "depth": 2, "hashes": {}}"#,
        r#"{"sender": "@a:b", "typ\u0065": "t", "\u0064epth": 3}"#,
        r#"{"sender": 5, "type": "t"}"#,
        r#"{"sender": "@a:b", "type": null}"#,
        r#"{"sender": "@a:b", "type": "t", "content": null}"#,
        r#"{"sender": "@a:b", "type": "t", "content": []}"#,
        r#"{"sender": "@a:b", "type": "t", "event_id": null, "unsigned": null}"#,
        r#"{"sender": "@a:b", "type": "t", "origin_server_ts": 1.5}"#,
        r#"{"sender": "@a:b", "type": "t", "origin_server_ts": 18446744073709551615}"#,
        r#"{"sender": "@a:b", "type": "t", "origin_server_ts": -1}"#,
        r#"{"sender": "@a:b", "type": "t", "internal_metadata": "x"}"#,
        r#"{"sender": "@a:b", "type": "t", "depth": 1e400}"#,
        r#"{"sender": "@a:b", "type": "t", "depth": [1, {"a": }]}"#,
        r#"{"sender": "@a:b", "type": "t""#,
        r#"{"sender": "@a:b", "type": "t"} trailing"#,
        r#"["@a:b", "t"]"#,
        r#""an event""#,
        r#"null"#,
        r#"7"#,
    ];
    for case in cases {
        agree_on_text(case.as_bytes());
    }
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    agree_on_text(format!(r#"{{"sender": "@a:b", "type": "t", "x": {deep}}}"#).as_bytes());
}
