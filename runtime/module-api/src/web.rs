//! Web resources a module serves (Synapse's `register_web_resource`).

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use glia_bus_schema::shapes::Base64Bytes;
use glia_bus_schema::web::{WebCallRequest, WebCallResponse};
use std::future::Future;
use std::rc::Rc;

/// An HTTP request to a module's web resource.
#[derive(Debug, Clone, Default)]
pub struct WebRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request path.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl WebRequest {
    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            // A query is form-encoded: `+` is a space, `%2B` a plus.
            let decode = |s: &str| percent_decode(&s.replace('+', " "));
            (decode(k) == name).then(|| decode(v))
        })
    }
}

/// `s` with every `%XX` escape decoded (an escape that is not one is kept as it is);
/// invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A module's HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct WebResponse {
    /// HTTP status.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

impl WebResponse {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        WebResponse {
            status,
            content_type: "application/json".into(),
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }
}

/// A request as it travels on the bus (to a worker or a Python host).
impl From<WebRequest> for WebCallRequest {
    fn from(r: WebRequest) -> Self {
        WebCallRequest {
            method: r.method,
            path: r.path,
            query: r.query,
            headers: r.headers,
            body: Base64Bytes(r.body),
        }
    }
}

/// A request that came over the bus, for the module's handler.
impl From<WebCallRequest> for WebRequest {
    fn from(r: WebCallRequest) -> Self {
        WebRequest {
            method: r.method,
            path: r.path,
            query: r.query,
            headers: r.headers,
            body: r.body.0,
        }
    }
}

/// A response as it travels back on the bus.
impl From<WebResponse> for WebCallResponse {
    fn from(r: WebResponse) -> Self {
        WebCallResponse {
            status: r.status,
            content_type: r.content_type,
            body: Base64Bytes(r.body),
        }
    }
}

/// A response that came back over the bus.
impl From<WebCallResponse> for WebResponse {
    fn from(r: WebCallResponse) -> Self {
        WebResponse {
            status: r.status,
            content_type: r.content_type,
            body: r.body.0,
        }
    }
}

/// A web resource's handler; it runs on the module's own thread.
#[derive(Clone)]
pub struct WebHandler(Rc<dyn Fn(WebRequest) -> LocalBoxFuture<'static, WebResponse>>);

impl WebHandler {
    /// An async handler.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(WebRequest) -> Fut + 'static,
        Fut: Future<Output = WebResponse> + 'static,
    {
        WebHandler(Rc::new(move |req| f(req).boxed_local()))
    }

    /// A handler that answers at once.
    pub fn sync<F>(f: F) -> Self
    where
        F: Fn(WebRequest) -> WebResponse + 'static,
    {
        WebHandler(Rc::new(move |req| {
            futures::future::ready(f(req)).boxed_local()
        }))
    }

    /// Calls the handler.
    pub fn call(&self, request: WebRequest) -> LocalBoxFuture<'static, WebResponse> {
        (self.0)(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let req = WebRequest {
            query: "name=Alice%20B&x=1+2&user=%40bob%3Aexample.com&bad=%zz".into(),
            ..Default::default()
        };
        assert_eq!(req.query_param("name").as_deref(), Some("Alice B"));
        assert_eq!(req.query_param("x").as_deref(), Some("1 2"));
        assert_eq!(req.query_param("user").as_deref(), Some("@bob:example.com"));
        assert_eq!(req.query_param("bad").as_deref(), Some("%zz"));
        assert_eq!(req.query_param("missing"), None);
    }
}
