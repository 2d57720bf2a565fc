//! The checked-in JSON Schema matches the types, describes every callback, and accepts the
//! sample payloads the Rust types accept.
//!
//! `GLIA_UPDATE_SCHEMA=1 cargo test -p glia-bus-schema --test schema_fresh` rewrites the
//! checked-in file instead of failing.

mod common;

use common::{answer_samples, callback, reply_samples, request_samples};
use glia_bus_schema::schema::{contract_schema, contract_schema_text, SCHEMA_PATH};
use glia_bus_schema::Callback;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The command that regenerates the checked-in schema, run from the workspace root.
const REGENERATE: &str =
    "cargo run -p glia-bus-schema --bin glia-schema bus-schema/schema/glia-bus-v1.json";

/// The checked-in schema file.
fn schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_PATH)
}

/// The first line where `a` and `b` differ, for the failure message.
fn first_difference(a: &str, b: &str) -> String {
    let (mut a_lines, mut b_lines) = (a.lines(), b.lines());
    for n in 1.. {
        match (a_lines.next(), b_lines.next()) {
            (None, None) => break,
            (x, y) if x == y => continue,
            (x, y) => {
                return format!(
                    "first difference at line {n}:\n  checked in: {}\n  generated:  {}",
                    x.unwrap_or("<end of file>"),
                    y.unwrap_or("<end of file>")
                )
            }
        }
    }
    "the files differ only in line endings".into()
}

#[test]
fn checked_in_schema_is_fresh() {
    let path = schema_path();
    let generated = contract_schema_text();
    if std::env::var("GLIA_UPDATE_SCHEMA").as_deref() == Ok("1") {
        std::fs::write(&path, &generated)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        eprintln!("GLIA_UPDATE_SCHEMA=1: wrote {}", path.display());
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date with the types in bus-schema/src.\n\
         Regenerate it from the workspace root with:\n\n    {REGENERATE}\n\n\
         (or GLIA_UPDATE_SCHEMA=1 cargo test -p glia-bus-schema --test schema_fresh) and commit the result.\n{}",
        path.display(),
        first_difference(&checked_in, &generated),
    );
}

#[test]
fn the_regeneration_command_writes_the_generated_schema() {
    let exe = env!("CARGO_BIN_EXE_glia-schema");
    let out = std::process::Command::new(exe)
        .output()
        .expect("glia-schema runs");
    assert!(
        out.status.success(),
        "glia-schema failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        contract_schema_text(),
        "stdout"
    );

    let target =
        std::env::temp_dir().join(format!("glia-bus-schema-test-{}.json", std::process::id()));
    let status = std::process::Command::new(exe)
        .arg(&target)
        .status()
        .expect("glia-schema runs");
    assert!(status.success());
    let written = std::fs::read_to_string(&target).unwrap();
    std::fs::remove_file(&target).ok();
    assert_eq!(written, contract_schema_text(), "file argument");
    assert!(
        REGENERATE.ends_with(&format!("bus-schema/{SCHEMA_PATH}")),
        "REGENERATE names the checked-in path"
    );
}

#[test]
fn schema_describes_every_callback() {
    let schema = contract_schema();
    let callbacks = schema["callbacks"]
        .as_object()
        .expect("a `callbacks` object");
    for cb in Callback::ALL {
        let entry = callbacks
            .get(cb.name())
            .unwrap_or_else(|| panic!("no `callbacks` entry for {cb}"));
        for part in ["request", "answer", "reply"] {
            assert!(
                entry.get(part).is_some_and(Value::is_object),
                "{cb}: no `{part}` schema"
            );
        }
        assert_eq!(
            entry["category"],
            json!(cb.category().name()),
            "{cb}: category"
        );
    }
    assert_eq!(
        callbacks.len(),
        Callback::ALL.len(),
        "entries for callbacks that do not exist"
    );
    for envelope in [
        "invocation",
        "invocation_reply",
        "description",
        "announcement",
    ] {
        assert!(
            schema["envelopes"][envelope].is_object(),
            "no `{envelope}` envelope"
        );
    }
}

/// Every `$ref` under `value`, as written.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let schema = contract_schema();
    let mut all = Vec::new();
    refs(&schema, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/$defs/")
            .unwrap_or_else(|| panic!("{r} does not point into $defs"));
        assert!(schema["$defs"].get(name).is_some(), "{r} points at nothing");
    }
}

// ---------------------------------------------------------------------------------------------
// Validation of sample payloads against the schema

/// A validator for the sub-schema at `pointer` (such as `/callbacks/user_may_invite/request`),
/// with the contract's `$defs` beside it.
fn validator(pointer: &str) -> jsonschema::Validator {
    let schema = contract_schema();
    let sub = schema
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no schema at {pointer}"))
        .clone();
    let doc = json!({
        "$schema": schema["$schema"],
        "$defs": schema["$defs"],
        "allOf": [sub],
    });
    jsonschema::validator_for(&doc)
        .unwrap_or_else(|e| panic!("schema at {pointer} is not valid: {e}"))
}

/// Asserts the schema at `pointer` accepts `instance`.
fn assert_valid(validator: &jsonschema::Validator, pointer: &str, instance: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{pointer} refuses {instance}: {errors:#?}"
    );
}

/// Asserts the schema at `pointer` refuses `instance`.
fn assert_invalid(pointer: &str, instance: &Value) {
    assert!(
        !validator(pointer).is_valid(instance),
        "{pointer} accepts {instance}"
    );
}

/// Validates every sample of `samples` against its callback's `part` schema.
fn assert_samples_valid(part: &str, samples: Vec<(&'static str, Vec<Value>)>) {
    for (name, values) in samples {
        let pointer = format!("/callbacks/{}/{part}", callback(name).name());
        let v = validator(&pointer);
        for value in &values {
            assert_valid(&v, &pointer, value);
        }
    }
}

#[test]
fn the_whole_schema_is_a_valid_json_schema() {
    jsonschema::validator_for(&contract_schema()).expect("the contract schema compiles");
}

#[test]
fn sample_requests_are_valid() {
    assert_samples_valid(
        "request",
        request_samples()
            .into_iter()
            .map(|(n, v)| (n, vec![v]))
            .collect(),
    );
}

#[test]
fn sample_answers_are_valid() {
    assert_samples_valid("answer", answer_samples());
}

#[test]
fn sample_replies_are_valid() {
    assert_samples_valid("reply", reply_samples());
}

#[test]
fn sample_envelopes_are_valid() {
    let invocation = validator("/envelopes/invocation");
    for (name, args) in request_samples() {
        let envelope = json!({"request_id": "req-1", "deadline_ms": 1_700_000_000_250_u64, "callback": name, "args": args});
        assert_valid(&invocation, "/envelopes/invocation", &envelope);
    }
    let reply = validator("/envelopes/invocation_reply");
    for (name, answers) in answer_samples() {
        let envelope = json!({"request_id": "req-1", "result": {"answer": {"callback": name, "answer": answers[0]}}});
        assert_valid(&reply, "/envelopes/invocation_reply", &envelope);
    }
    let error =
        json!({"request_id": "req-1", "result": {"error": {"kind": "timeout", "after_ms": 250}}});
    assert_valid(&reply, "/envelopes/invocation_reply", &error);
    let announcement = validator("/envelopes/announcement");
    for sample in [
        json!({"worker": "w1", "interval_ms": 100}),
        json!({"worker": "w1", "interval_ms": 100, "leaving": true}),
    ] {
        assert_valid(&announcement, "/envelopes/announcement", &sample);
    }
}

#[test]
fn the_schema_refuses_what_the_types_refuse() {
    assert_invalid(
        "/callbacks/user_may_invite/request",
        &json!({"inviter": "@a:x", "room_id": "!r:x"}),
    );
    assert_invalid(
        "/callbacks/check_visibility_can_be_modified/request",
        &json!({"room_id": "!r:x", "new_visibility": "unlisted"}),
    );
    assert_invalid(
        "/callbacks/check_registration_for_spam/answer",
        &json!("maybe"),
    );
    assert_invalid("/callbacks/get_interested_users/answer", &json!("all"));
    assert_invalid(
        "/callbacks/user_may_invite/reply",
        &json!({"decision": "maybe"}),
    );
    assert_invalid(
        "/envelopes/invocation",
        &json!({"request_id": "r", "deadline_ms": 1, "callback": "user_may_fly", "args": {}}),
    );
    assert_invalid(
        "/envelopes/invocation_reply",
        &json!({"request_id": "r", "result": {"error": {"kind": "exploded"}}}),
    );
}
