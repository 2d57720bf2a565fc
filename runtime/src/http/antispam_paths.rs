//! Where the synapse-http-antispam ingress is served, and how it answers what it cannot
//! decide: in plain text, which the module reads as "cannot decide" (any JSON error is a
//! deny to it). The error layer asks here, for answers it gives before any handler.

use super::matrix_error::MatrixError;
use actix_web::HttpResponse;

/// Where the ingress is served; `{callback}` follows.
pub const PREFIX: &str = "/_glia/v1/http-antispam/";

/// The ingress's scope: [`PREFIX`] without its final slash.
pub const SCOPE: &str = "/_glia/v1/http-antispam";

/// Whether the ingress serves `path` (so its errors are answered as [`cannot_decide`] does).
pub fn serves(path: &str) -> bool {
    path.starts_with(PREFIX)
}

/// The error as plain text (`M_UNKNOWN_TOKEN: ...`), with its status: not JSON, so the module
/// applies its `fail_open` instead of denying.
pub fn cannot_decide(e: &MatrixError) -> HttpResponse {
    let status = actix_web::ResponseError::status_code(e);
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(format!("{}: {}", e.errcode, e.error))
}
