//! Errors as Matrix JSON: `{"errcode": ..., "error": ...}` with a 4xx or 5xx status, both
//! glia's own and, through [`layer`], those actix-web raises itself (an undecodable path,
//! ...).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use glia_bus_schema::errcodes::{M_TOO_LARGE, M_UNKNOWN, M_UNRECOGNIZED};

pub use super::matrix_error::MatrixError;
use super::{antispam_paths, matrix_error};

/// 405 for a known path with the wrong method.
pub async fn method_not_allowed() -> HttpResponse {
    HttpResponse::from_error(MatrixError::new(
        405,
        M_UNRECOGNIZED,
        "Unrecognized request: use POST",
    ))
}

/// `error` answered as the API at `path` answers errors: plain text on the
/// synapse-http-antispam ingress (its module takes a JSON error for a denial), Matrix JSON
/// everywhere else. For answers a layer gives before (or instead of) a handler.
/// The answer carries the error, so the refusal layer counts it.
pub fn response_for(path: &str, error: MatrixError) -> HttpResponse {
    if antispam_paths::serves(path) {
        antispam_paths::cannot_decide(error)
    } else {
        HttpResponse::from_error(error)
    }
}

/// The body of an answer actix-http's HTTP/1 dispatcher gives itself before any of glia's code
/// runs (400 for what its parser refuses, 431 for a head too large, 408 for a head not
/// complete within `header_timeout`), registered with the vendored actix-http's `set_error_body` (see
/// vendor/README.md): glia's own error, in Matrix JSON, or in plain text when the request line
/// read so far names the synapse-http-antispam ingress (its module reads JSON as a deny).
pub fn parser_error_body(
    status: StatusCode,
    detail: &str,
    unparsed: &[u8],
) -> Option<(&'static str, web::Bytes)> {
    let (errcode, what) = match status {
        StatusCode::BAD_REQUEST => (M_UNKNOWN, "Malformed HTTP request"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            M_TOO_LARGE,
            "Request head too large (over 128 KiB, or over 96 headers)",
        ),
        StatusCode::REQUEST_TIMEOUT => {
            (M_UNKNOWN, "Request head not received within header_timeout")
        }
        _ => (M_UNKNOWN, "Internal server error"),
    };
    let error = MatrixError::new(status.as_u16(), errcode, format!("{what}: {detail}"));
    if request_path(unparsed).is_some_and(antispam_paths::serves) {
        return Some((matrix_error::PLAIN_TEXT, error.plain().into()));
    }
    Some(("application/json", error.json().to_string().into()))
}

/// The path of the request line `head` starts with (`POST /path?query HTTP/1.1`), as far as it
/// came.
fn request_path(head: &[u8]) -> Option<&str> {
    let line = head.split(|b| *b == b'\r' || *b == b'\n').next()?;
    let target = std::str::from_utf8(line).ok()?.split(' ').nth(1)?;
    target.split('?').next()
}

/// The layer: an error response actix-web made from one of its own errors (an extractor's,
/// say) becomes Matrix JSON with the same status (on the synapse-http-antispam ingress, its
/// plain text). glia's errors are answered already, and module web resources' answers are the
/// modules' own, so both pass untouched.
pub async fn layer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let response = next.call(req).await?;
    let foreign = response
        .response()
        .error()
        .filter(|e| matrix_error::glias(e).is_none())
        .map(|e| e.to_string());
    let Some(message) = foreign else {
        return Ok(response.map_into_boxed_body());
    };
    let status = response.status();
    let errcode = match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => M_UNRECOGNIZED,
        StatusCode::PAYLOAD_TOO_LARGE => M_TOO_LARGE,
        _ => M_UNKNOWN,
    };
    let (req, _) = response.into_parts();
    let error = MatrixError::new(status.as_u16(), errcode, message);
    let answer = response_for(req.path(), error);
    Ok(ServiceResponse::new(req, answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::middleware::from_fn;
    use actix_web::{test, web, App};

    /// An extractor's refusal (here a query that is not a number) comes out as Matrix JSON
    /// with its status; a handler's own answer, error status or not, is left as it is.
    #[actix_web::test]
    async fn actix_webs_own_errors_become_matrix_json() {
        let app = test::init_service(
            App::new()
                .wrap(from_fn(layer))
                .route(
                    "/number",
                    web::get().to(|n: web::Query<u32>| async move { n.to_string() }),
                )
                .route(
                    "/teapot",
                    web::get().to(|| async { HttpResponse::ImATeapot().body("short and stout") }),
                ),
        )
        .await;
        let response =
            test::call_service(&app, test::TestRequest::get().uri("/number?x").to_request()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(body["errcode"], M_UNKNOWN, "{body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        let response =
            test::call_service(&app, test::TestRequest::get().uri("/teapot").to_request()).await;
        assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
        assert_eq!(test::read_body(response).await, "short and stout");
    }

    /// The parser's own answers are Matrix JSON, in plain text for the ingress.
    #[actix_web::test]
    async fn the_parsers_answers_are_glias_errors() {
        let (content_type, body) =
            parser_error_body(StatusCode::BAD_REQUEST, "Invalid Header provided", b"").unwrap();
        assert_eq!(content_type, "application/json");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errcode"], M_UNKNOWN);
        assert_eq!(
            body["error"],
            "Malformed HTTP request: Invalid Header provided"
        );
        let head = b"POST /_glia/v1/http-antispam//user_may_invite HTTP/1.1\r\nX-Slow: ";
        let (content_type, body) =
            parser_error_body(StatusCode::REQUEST_TIMEOUT, "late", head).unwrap();
        assert_eq!(content_type, matrix_error::PLAIN_TEXT);
        assert!(body.starts_with(b"M_UNKNOWN: Request head not received"));
        let (_, body) = parser_error_body(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too large",
            b"GET /health HTTP/1.1\r\n",
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errcode"], M_TOO_LARGE);
        assert_eq!(request_path(b"GET /a?b HTTP/1.1"), Some("/a"));
        assert_eq!(request_path(b"GET /partial"), Some("/partial"));
        assert_eq!(request_path(b"GET"), None);
    }

    /// On the synapse-http-antispam ingress an error is plain text, which its module reads
    /// as "cannot decide" (a JSON error would be a denial); elsewhere Matrix JSON.
    #[actix_web::test]
    async fn errors_are_answered_as_the_path_s_api_answers_them() {
        let error = MatrixError::new(503, M_UNKNOWN, "glia is shutting down");
        let plain = response_for("/_glia/v1/http-antispam/user_may_invite", error.clone());
        assert_eq!(plain.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = actix_web::body::to_bytes(plain.into_body()).await.unwrap();
        assert_eq!(body, "M_UNKNOWN: glia is shutting down");
        let json = response_for("/_glia/v1/callbacks/user_may_invite", error);
        assert_eq!(json.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = actix_web::body::to_bytes(json.into_body()).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errcode"], M_UNKNOWN);
    }
}
