//! Errors as Matrix JSON: `{"errcode": ..., "error": ...}` with a 4xx or 5xx status, both
//! glia's own and, through [`layer`], those actix-web raises itself (an undecodable path,
//! ...).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::HttpResponse;
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
