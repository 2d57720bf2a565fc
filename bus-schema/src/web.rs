//! A request to one of a module's web resources and the module's response, as they travel to
//! a module wherever it runs: over NATS on `glia.v1.module.<module>.web` (docs/PROTOCOL.md),
//! and inside the `web` and `web_reply` frames of a Python host's pipe (`host.rs`).

use crate::shapes::Base64Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An HTTP request to a module's web resource. glia picks the module by the path (spec §2.4);
/// the module picks which of its resources answers, by the same path.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct WebCallRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request path, as the client sent it.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body, at most glia's `max_body_size` bytes.
    pub body: Base64Bytes,
}

/// A module's HTTP response to a [`WebCallRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WebCallResponse {
    /// HTTP status.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body.
    pub body: Base64Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{HostWebRequest, HostWebResponse};
    use serde_json::json;

    #[test]
    fn a_host_frame_is_the_bus_message_with_an_id() {
        let request = json!({"id": 7, "method": "POST", "path": "/p", "query": "a=1",
                             "headers": [["x", "y"]], "body": "aGk="});
        let frame: HostWebRequest = serde_json::from_value(request.clone()).unwrap();
        assert_eq!(frame.request.body, Base64Bytes(b"hi".to_vec()));
        assert_eq!(serde_json::to_value(&frame).unwrap(), request);
        let bus: WebCallRequest = serde_json::from_value(request).unwrap();
        assert_eq!(bus, frame.request);

        let response = json!({"id": 7, "status": 404, "content_type": "text/plain", "body": ""});
        let frame: HostWebResponse = serde_json::from_value(response.clone()).unwrap();
        assert_eq!(frame.response.status, 404);
        assert_eq!(serde_json::to_value(&frame).unwrap(), response);
    }
}
