//! The JSON Schema of the whole contract, generated from the types.

use crate::callbacks::callback_schemas;
use crate::envelope::{Invocation, InvocationReply};
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

/// Where the checked-in schema lives, relative to this crate.
pub const SCHEMA_PATH: &str = "schema/glia-bus-v1.json";

/// The whole contract as one JSON Schema document: the envelopes, and per callback its
/// request (`args`), a module's answer and the coordinator's reply, all under `$defs`.
pub fn contract_schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let invocation = generator.subschema_for::<Invocation>();
    let reply = generator.subschema_for::<InvocationReply>();
    let description = generator.subschema_for::<crate::subjects::Description>();
    let announcement = generator.subschema_for::<crate::subjects::Announcement>();
    let web_request = generator.subschema_for::<crate::web::WebCallRequest>();
    let web_response = generator.subschema_for::<crate::web::WebCallResponse>();
    let to_host = generator.subschema_for::<crate::host::ToHost>();
    let from_host = generator.subschema_for::<crate::host::FromHost>();
    let host_check = generator.subschema_for::<crate::host::HostCheck>();
    let host_check_result = generator.subschema_for::<crate::host::HostCheckResult>();
    let mut callbacks = Map::new();
    callback_schemas(&mut generator, &mut callbacks);
    let defs = generator.take_definitions(true);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://glia.invalid/schema/glia-bus-v1.json",
        "title": "glia bus contract v1",
        "description": "Envelopes on the bus, and for each Synapse module callback: its arguments (`request`), one module's answer (`answer`) and the coordinator's reply to the homeserver (`reply`).",
        "envelopes": { "invocation": invocation, "invocation_reply": reply, "description": description, "announcement": announcement, "web_request": web_request, "web_response": web_response },
        "python_host": { "to_host": to_host, "from_host": from_host, "check": host_check, "check_result": host_check_result },
        "callbacks": callbacks,
        "$defs": defs,
    })
}

/// The schema as pretty-printed JSON with a trailing newline, as it is checked in.
pub fn contract_schema_text() -> String {
    let mut text =
        serde_json::to_string_pretty(&contract_schema()).expect("a JSON value always serialises");
    text.push('\n');
    text
}
