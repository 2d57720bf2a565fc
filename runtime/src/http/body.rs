//! Reading a request body under a size limit, answering 413 past it (and 408 past the body
//! deadline, which `body_deadline` puts on the stream).

use super::errors::MatrixError;
use actix_web::web;
use futures::StreamExt;
use glia_bus_schema::errcodes::{M_BAD_JSON, M_TOO_LARGE, M_UNKNOWN};

/// The body, or 413 `M_TOO_LARGE` once it passes `limit` bytes, or 408 `M_UNKNOWN` when it
/// did not arrive within the body deadline.
pub async fn read_limited(
    mut payload: web::Payload,
    declared: Option<usize>,
    limit: usize,
) -> Result<web::Bytes, MatrixError> {
    let too_large = || {
        MatrixError::new(
            413,
            M_TOO_LARGE,
            format!("Request body is larger than {limit} bytes"),
        )
    };
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // Content-Length is the client's claim: reserve no more than a small buffer up front.
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit).min(64 * 1024));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            if super::body_deadline::timed_out(&e) {
                MatrixError::new(408, M_UNKNOWN, e.to_string())
            } else {
                MatrixError::new(400, M_BAD_JSON, format!("cannot read the body: {e}"))
            }
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The `Content-Length` header, when it is a number.
pub fn declared_length(req: &actix_web::HttpRequest) -> Option<usize> {
    req.headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
