//! Module web resources, served on glia's port at their registered paths; anything else is
//! 404 `M_UNRECOGNIZED`.

use super::body::{declared_length, read_limited};
use super::errors::MatrixError;
use super::state::AppState;
use crate::host::WebCall;
use actix_web::{web, HttpRequest, HttpResponse};
use glia_bus_schema::errcodes::{M_UNKNOWN, M_UNRECOGNIZED};
use glia_module_api::WebRequest;

/// Routes a request to the module that registered its path.
pub async fn serve(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MatrixError> {
    // The route, actor and timeout of one generation: a reload may come meanwhile.
    let Some(target) = state.glia.web_target(req.path()) else {
        return Err(MatrixError::new(
            404,
            M_UNRECOGNIZED,
            "Unrecognized request",
        ));
    };
    let body = read_limited(payload, declared_length(&req), state.max_body_size).await?;
    let request = WebRequest {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        query: req.query_string().to_owned(),
        headers: req
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    };
    let addr = target
        .addr
        .ok_or_else(|| MatrixError::new(503, M_UNKNOWN, "module unavailable"))?;
    // A web resource answers within its module's timeout, like its callbacks.
    let call = addr.send(WebCall {
        slot: target.route.slot,
        request,
    });
    let response = tokio::time::timeout(target.timeout, call)
        .await
        .map_err(|_| {
            MatrixError::new(
                504,
                M_UNKNOWN,
                format!(
                    "module {} did not answer within {} ms",
                    target.name,
                    target.timeout.as_millis()
                ),
            )
        })?
        .map_err(|e| MatrixError::new(503, M_UNKNOWN, format!("module unavailable: {e}")))?;
    let status = actix_web::http::StatusCode::from_u16(response.status)
        .map_err(|_| MatrixError::new(500, M_UNKNOWN, "module answered an invalid HTTP status"))?;
    Ok(HttpResponse::build(status)
        .content_type(response.content_type)
        .body(response.body))
}
