//! Module web resources, served on glia's port at their registered paths; anything else is
//! 404 `M_UNRECOGNIZED`. A local module's page comes from its actor; a module placed on NATS
//! gets the request on its `web` subject, and one of its workers answers.

use super::body::{declared_length, read_limited};
use super::errors::MatrixError;
use super::service::WebTarget;
use super::state::AppState;
use crate::bus::nats::WebFailure;
use crate::host::WebCall;
use actix_web::{web, HttpRequest, HttpResponse};
use glia_bus_schema::errcodes::{M_TOO_LARGE, M_UNKNOWN, M_UNRECOGNIZED};
use glia_module_api::{WebRequest, WebResponse};
use std::time::Instant;

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
    // A web resource answers within its module's timeout, like its callbacks.
    let response = tokio::time::timeout(target.timeout, call(&target, request))
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
        })??;
    let status = actix_web::http::StatusCode::from_u16(response.status)
        .map_err(|_| MatrixError::new(500, M_UNKNOWN, "module answered an invalid HTTP status"))?;
    Ok(HttpResponse::build(status)
        .content_type(response.content_type)
        .body(response.body))
}

/// The module's response: from its actor here, or from one of its workers over NATS.
async fn call(target: &WebTarget, request: WebRequest) -> Result<WebResponse, MatrixError> {
    let unavailable =
        |e: String| MatrixError::new(503, M_UNKNOWN, format!("module unavailable: {e}"));
    if let Some(addr) = &target.addr {
        let call = addr.send(WebCall {
            slot: target.route.slot,
            request,
        });
        return call.await.map_err(|e| unavailable(e.to_string()));
    }
    let Some(bus) = &target.nats else {
        return Err(MatrixError::new(503, M_UNKNOWN, "module unavailable"));
    };
    let deadline = Instant::now() + target.timeout;
    match bus.web(target.route.module, &request.into(), deadline).await {
        Ok(response) => Ok(response.into()),
        Err(WebFailure::Unavailable(reason)) => Err(unavailable(reason)),
        Err(WebFailure::TooLarge(size, max)) => Err(MatrixError::new(
            413,
            M_TOO_LARGE,
            format!("the request ({size} bytes as JSON) is larger than NATS carries to the module's workers (max_payload {max})"),
        )),
        Err(WebFailure::Invalid(reason)) => Err(MatrixError::new(502, M_UNKNOWN, reason)),
    }
}
