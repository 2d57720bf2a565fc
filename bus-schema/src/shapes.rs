//! The data shapes that cross the boundary (spec §4), with Synapse's field names.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// A JSON object, as Synapse passes dicts (room config, request content, login dicts).
pub type JsonObject = Map<String, Value>;

/// A Matrix event in its PDU form (Synapse's `EventBase.get_dict()`).
///
/// The fields modules read most are typed; everything else (hashes, signatures, prev_events,
/// auth_events, depth, ...) is kept verbatim in `extra` so an event round-trips unchanged.
// Its decoder is written out (`event_decode`): a derived one copies `extra` twice.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Event {
    /// The event id; absent only for events not yet hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The room the event belongs to; absent from the PDU of a room-version-12 create event
    /// (its room id is derived from its event id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// The full user id of the sender.
    pub sender: String,
    /// The event type, such as `m.room.message`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Present only on state events (an empty string is a valid state key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_key: Option<String>,
    /// The event content.
    #[serde(default)]
    pub content: JsonObject,
    /// Milliseconds since the epoch, as set by the origin server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_server_ts: Option<i64>,
    /// Unsigned data; for `federated_user_may_invite` it carries `invite_room_state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsigned: Option<JsonObject>,
    /// Not a PDU key: the version of the event's room (`"10"`), which the bridge sends so that
    /// a Python host can rebuild Synapse's own event object (`make_event_from_dict`). Never
    /// part of a replacement event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_version: Option<String>,
    /// Not a PDU key: the flags of Synapse's internal metadata that are set (`outlier`,
    /// `soft_failed`, `txn_id`, `token_id`, `device_id`, ...), which modules read from
    /// `event.internal_metadata`. Never part of a replacement event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_metadata: Option<JsonObject>,
    /// Any other top-level PDU field, kept as is.
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl Event {
    /// The keys an event carries beside the PDU's own (`room_version`, `internal_metadata`):
    /// never part of a replacement event, nor of what is sent on as the event itself.
    pub const META_KEYS: [&'static str; 2] = ["room_version", "internal_metadata"];

    /// The server name part of the sender (`example.com` for `@alice:example.com`).
    pub fn sender_server(&self) -> Option<&str> {
        server_name(&self.sender)
    }

    /// `content.body` when it is a string (message events).
    pub fn body(&self) -> Option<&str> {
        self.content.get("body").and_then(Value::as_str)
    }

    /// `content.membership` when the event is a membership event.
    pub fn membership(&self) -> Option<&str> {
        self.content.get("membership").and_then(Value::as_str)
    }
}

/// The server name of a Matrix identifier (`@user:server`, `#alias:server`, `!room:server`).
pub fn server_name(id: &str) -> Option<&str> {
    id.split_once(':').map(|(_, server)| server)
}

/// Room state, Synapse's `StateMap[EventBase]`: keyed by `(type, state_key)`.
///
/// On the wire it is the list of state events; each event's own `type` and `state_key` are its
/// key, so nothing is written twice.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct StateMap(pub Vec<Event>);

impl StateMap {
    /// The state event at `(event_type, state_key)`, as `state_events[(type, key)]` in Synapse.
    pub fn get(&self, event_type: &str, state_key: &str) -> Option<&Event> {
        self.0
            .iter()
            .find(|e| e.event_type == event_type && e.state_key.as_deref() == Some(state_key))
    }
}

/// A user's presence state (Synapse's `UserPresenceState`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct UserPresenceState {
    /// Whose presence this is.
    pub user_id: String,
    /// The presence value.
    pub state: Presence,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub last_active_ts: i64,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub last_federation_update_ts: i64,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub last_user_sync_ts: i64,
    /// Free-text status, if any.
    #[serde(default)]
    pub status_msg: Option<String>,
    /// Whether the user is currently active.
    #[serde(default)]
    pub currently_active: bool,
}

/// The presence values Synapse knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Presence {
    /// Online.
    #[serde(rename = "online")]
    Online,
    /// Idle.
    #[serde(rename = "unavailable")]
    Unavailable,
    /// Offline.
    #[serde(rename = "offline")]
    Offline,
    /// MSC3026 busy.
    #[serde(rename = "org.matrix.msc3026.busy")]
    Busy,
}

/// Who made a request (Synapse's `Requester`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Requester {
    /// The user id (`Requester.user.to_string()`).
    pub user_id: String,
    /// The access token's id, if the request carried one.
    #[serde(default)]
    pub access_token_id: Option<i64>,
    /// Whether the user is a guest.
    #[serde(default)]
    pub is_guest: bool,
    /// The token's scopes.
    #[serde(default)]
    pub scope: Vec<String>,
    /// Whether the user is shadow-banned.
    #[serde(default)]
    pub shadow_banned: bool,
    /// The device id, if known.
    #[serde(default)]
    pub device_id: Option<String>,
    /// The application service acting, if any.
    #[serde(default)]
    pub app_service_id: Option<String>,
    /// Differs from `user_id` when an admin or the server acts as that user.
    #[serde(default)]
    pub authenticated_entity: Option<String>,
}

/// What `check_registration_for_spam` decides (Synapse's `RegistrationBehaviour`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationBehaviour {
    /// Register normally.
    Allow,
    /// Register, but shadow-banned.
    ShadowBan,
    /// Refuse (Synapse answers 429 "Rate limited").
    Deny,
}

/// A room alias, `#localpart:domain`, checked when it is parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String")]
pub struct RoomAlias {
    localpart: String,
    domain: String,
}

impl RoomAlias {
    /// The part between `#` and `:`.
    pub fn localpart(&self) -> &str {
        &self.localpart
    }
    /// The server name.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl FromStr for RoomAlias {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix('#')
            .ok_or_else(|| format!("room alias {s:?} must start with '#'"))?;
        match rest.split_once(':') {
            Some((local, domain)) if !domain.is_empty() => Ok(RoomAlias {
                localpart: local.to_owned(),
                domain: domain.to_owned(),
            }),
            _ => Err(format!("room alias {s:?} must look like #localpart:domain")),
        }
    }
}

impl TryFrom<String> for RoomAlias {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<RoomAlias> for String {
    fn from(a: RoomAlias) -> String {
        a.to_string()
    }
}

impl fmt::Display for RoomAlias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}:{}", self.localpart, self.domain)
    }
}

/// What is known about a stored media file (Synapse's `FileInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileInfo {
    /// `None` for local media.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Equals the media id for local files.
    pub file_id: String,
    /// Whether this is a URL-preview file.
    #[serde(default)]
    pub url_cache: bool,
    /// Set when the file is a thumbnail.
    #[serde(default)]
    pub thumbnail: Option<ThumbnailInfo>,
}

/// Thumbnail details of a media file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThumbnailInfo {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// `crop` or `scale`.
    pub method: String,
    /// MIME type.
    #[serde(rename = "type")]
    pub media_type: String,
    /// Bytes.
    pub length: u64,
}

/// A user-directory search result (Synapse's `UserProfile`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserProfile {
    /// The user id.
    pub user_id: String,
    /// May be absent.
    #[serde(default)]
    pub display_name: Option<String>,
    /// May be absent.
    #[serde(default)]
    pub avatar_url: Option<String>,
}

/// A global profile after an update (Synapse's `ProfileInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProfileInfo {
    /// May be absent.
    #[serde(default)]
    pub avatar_url: Option<String>,
    /// May be absent.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// One `(user_agent, ip)` pair seen during a registration or login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestInfo {
    /// The client's user agent, when it sent one.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// The client's address.
    pub ip: String,
}

/// A room's directory visibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Listed in the public room directory.
    Public,
    /// Not listed.
    Private,
}

/// A media file's content as `check_media_file_for_spam` sees it: at most the sender's limit of
/// bytes from the start of the file, base64-encoded on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MediaFile {
    /// The bytes sent, from the start of the file.
    pub content: Base64Bytes,
    /// The whole file's length in bytes.
    pub length: u64,
    /// Whether `content` stops before the end of the file (the sender's limit was reached).
    #[serde(default)]
    pub truncated: bool,
}

/// Bytes, carried in JSON as standard base64 with padding.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Base64Bytes(pub Vec<u8>);

impl fmt::Debug for Base64Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Base64Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Base64Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Base64Bytes)
            .map_err(|e| serde::de::Error::custom(format!("not base64: {e}")))
    }
}

impl JsonSchema for Base64Bytes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Base64Bytes".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "contentEncoding": "base64",
            "description": "Bytes as standard base64 with padding."
        })
    }
}

/// A limit on how much a user may upload in a period (Synapse's `MediaUploadLimit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MediaUploadLimit {
    /// Bytes allowed in the period.
    pub max_bytes: u64,
    /// The period, in milliseconds.
    pub time_period_ms: u64,
    /// Where the client's `M_USER_LIMIT_EXCEEDED` error points; Synapse's own page when absent.
    #[serde(default)]
    pub info_uri: Option<String>,
    /// Whether the user can raise the limit (returned in the error).
    #[serde(default)]
    pub can_upgrade: bool,
}

/// A ratelimit for one user and limiter (Synapse's `RatelimitOverride`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RatelimitOverride {
    /// Actions per second; `0.0` disables the ratelimit.
    pub per_second: f64,
    /// Actions allowed in a burst.
    pub burst_count: u64,
}

/// A delivery of events to another server (Synapse's `FederationEventDeliveryEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FederationDelivery {
    /// The server the events went to.
    pub server_name: String,
    /// The events (one batch; a request may be reported in several).
    pub events: Vec<Event>,
    /// How they went: `/send`, `/backfill`, `/get_missing_events`, `/event`, `/event_auth`,
    /// `/state` or `/send_join` (more may come).
    pub method: String,
}
