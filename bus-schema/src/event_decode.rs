//! [`Event`]'s decoder, written out rather than derived: the derived one, for the flattened
//! `extra`, buffers every key and value it does not know into serde's generic content and
//! copies it again into JSON values, so the keys an event carries most (hashes, signatures,
//! prev and auth events) were copied twice on every decode. This one matches each key once and
//! reads the others straight into `extra`. It decodes what the derived decoder decoded, to the
//! same value, with the same errors (bus-schema/tests/event_decode.rs compares the two).

use crate::shapes::{Event, JsonObject};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// A top-level key of an event: one of its typed fields, or any other (kept in `extra`).
enum Field {
    EventId,
    RoomId,
    Sender,
    Type,
    StateKey,
    Content,
    OriginServerTs,
    Unsigned,
    RoomVersion,
    InternalMetadata,
    Other(String),
}

impl Field {
    /// The typed field named `name`, if any.
    fn typed(name: &str) -> Option<Field> {
        Some(match name {
            "event_id" => Field::EventId,
            "room_id" => Field::RoomId,
            "sender" => Field::Sender,
            "type" => Field::Type,
            "state_key" => Field::StateKey,
            "content" => Field::Content,
            "origin_server_ts" => Field::OriginServerTs,
            "unsigned" => Field::Unsigned,
            "room_version" => Field::RoomVersion,
            "internal_metadata" => Field::InternalMetadata,
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(FieldVisitor)
    }
}

struct FieldVisitor;

impl Visitor<'_> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field identifier")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
        Ok(Field::typed(name).unwrap_or_else(|| Field::Other(name.to_owned())))
    }

    fn visit_string<E: de::Error>(self, name: String) -> Result<Field, E> {
        Ok(Field::typed(&name).unwrap_or(Field::Other(name)))
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A map, as the derived decoder of a struct with a flattened field asks for (it takes
        // no sequence).
        d.deserialize_map(EventVisitor)
    }
}

struct EventVisitor;

/// The fields seen so far; `None` until a field's key comes.
#[derive(Default)]
struct Seen {
    event_id: Option<Option<String>>,
    room_id: Option<Option<String>>,
    sender: Option<String>,
    event_type: Option<String>,
    state_key: Option<Option<String>>,
    content: Option<JsonObject>,
    origin_server_ts: Option<Option<i64>>,
    unsigned: Option<Option<JsonObject>>,
    room_version: Option<Option<String>>,
    internal_metadata: Option<Option<JsonObject>>,
}

/// Reads the value of field `name` into `slot`; a second `name` is an error, as derived.
fn once<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    slot: &mut Option<T>,
    name: &'static str,
    map: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct Event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        let mut seen = Seen::default();
        let mut extra = JsonObject::new();
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::EventId => once(&mut seen.event_id, "event_id", &mut map)?,
                Field::RoomId => once(&mut seen.room_id, "room_id", &mut map)?,
                Field::Sender => once(&mut seen.sender, "sender", &mut map)?,
                Field::Type => once(&mut seen.event_type, "type", &mut map)?,
                Field::StateKey => once(&mut seen.state_key, "state_key", &mut map)?,
                Field::Content => once(&mut seen.content, "content", &mut map)?,
                Field::OriginServerTs => {
                    once(&mut seen.origin_server_ts, "origin_server_ts", &mut map)?
                }
                Field::Unsigned => once(&mut seen.unsigned, "unsigned", &mut map)?,
                Field::RoomVersion => once(&mut seen.room_version, "room_version", &mut map)?,
                Field::InternalMetadata => {
                    once(&mut seen.internal_metadata, "internal_metadata", &mut map)?
                }
                // A repeated other key keeps its last value, as the derived decoder's did.
                Field::Other(name) => {
                    extra.insert(name, map.next_value::<Value>()?);
                }
            }
        }
        // Missing fields are reported in the struct's order, as derived.
        Ok(Event {
            event_id: seen.event_id.unwrap_or_default(),
            room_id: seen.room_id.unwrap_or_default(),
            sender: seen
                .sender
                .ok_or_else(|| de::Error::missing_field("sender"))?,
            event_type: seen
                .event_type
                .ok_or_else(|| de::Error::missing_field("type"))?,
            state_key: seen.state_key.unwrap_or_default(),
            content: seen.content.unwrap_or_default(),
            origin_server_ts: seen.origin_server_ts.unwrap_or_default(),
            unsigned: seen.unsigned.unwrap_or_default(),
            room_version: seen.room_version.unwrap_or_default(),
            internal_metadata: seen.internal_metadata.unwrap_or_default(),
            extra,
        })
    }
}
