//! glia patch: the bodies of the answers the HTTP/1 dispatcher gives itself, before any
//! service runs: 400 for a request the parser refuses, 431 for a head too large, 408 for a
//! head not complete in time, 500 for a framing fault. Upstream sends them with no body and
//! offers no way to give one; an application that answers its errors in a format of its own
//! registers a hook here, once per process.

use std::sync::OnceLock;

use bytes::Bytes;
use http::StatusCode;

use crate::{
    body::BoxBody,
    header::{HeaderValue, CONTENT_TYPE},
    Response,
};

/// Makes the body of one of the dispatcher's own answers from its status, what went wrong (the
/// parser's error, or what the dispatcher saw) and the bytes of the request read so far and
/// not yet parsed (the head of the request refused, when its head was being read); returns its
/// content type and bytes, or `None` for no body.
pub type ErrorBody = fn(StatusCode, &str, &[u8]) -> Option<(&'static str, Bytes)>;

static HOOK: OnceLock<ErrorBody> = OnceLock::new();

/// Registers the process's hook; returns false, keeping the first, if one was registered
/// already.
pub fn set_error_body(hook: ErrorBody) -> bool {
    HOOK.set(hook).is_ok()
}

/// The dispatcher's own answer with `status`, and its body from the hook.
pub(crate) fn error_response(
    status: StatusCode,
    detail: &str,
    unparsed: &[u8],
) -> (Response<()>, BoxBody) {
    let mut res = Response::with_body(status, ());
    match HOOK.get().and_then(|hook| hook(status, detail, unparsed)) {
        Some((content_type, body)) => {
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            (res, BoxBody::new(body))
        }
        None => (res, BoxBody::new(())),
    }
}
