//! The derived decoder `Event` had before it was written out (bus-schema/src/event_decode.rs):
//! the same declaration, with `Deserialize` derived. The tests compare the two decoders
//! (tests/event_decode.rs) and the bench times them (benches/decode.rs). Included by path, as
//! a module named `derived`, so that its name in error messages is `Event`'s too.

use glia_bus_schema::JsonObject;
use serde::Deserialize;

/// `Event`, decoded as derived.
#[derive(Debug, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub room_id: Option<String>,
    pub sender: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub state_key: Option<String>,
    #[serde(default)]
    pub content: JsonObject,
    #[serde(default)]
    pub origin_server_ts: Option<i64>,
    #[serde(default)]
    pub unsigned: Option<JsonObject>,
    #[serde(default)]
    pub room_version: Option<String>,
    #[serde(default)]
    pub internal_metadata: Option<JsonObject>,
    #[serde(flatten)]
    pub extra: JsonObject,
}
