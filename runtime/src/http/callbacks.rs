//! `POST /_glia/v1/callbacks/{callback}`: a callback's arguments in, its decision out.

use super::auth::Authorized;
use super::body::{declared_length, read_limited};
use super::errors::MatrixError;
use super::AppState;
use crate::bus::InvocationMeta;
use actix_web::{web, HttpRequest, HttpResponse};
use glia_bus_schema::errcodes::{M_BAD_JSON, M_NOT_FOUND, M_NOT_JSON};
use glia_bus_schema::{ArgsError, Callback, CallbackRequest};
use std::time::Instant;

/// Header carrying the request id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Decodes the arguments, dispatches, and answers the callback's reply type; every answer,
/// errors included, carries the request id.
pub async fn dispatch(
    _auth: Authorized,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let coordinator = state.glia.coordinator();
    let request_id: std::sync::Arc<str> = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(Into::into)
        .unwrap_or_else(|| coordinator.next_request_id());
    let mut response =
        match answer(&req, path.into_inner(), payload, &state, request_id.clone()).await {
            Ok(reply) => HttpResponse::Ok().json(reply),
            Err(e) => actix_web::ResponseError::error_response(&e),
        };
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(REQUEST_ID_HEADER),
            value,
        );
    }
    response
}

async fn answer(
    req: &HttpRequest,
    name: String,
    payload: web::Payload,
    state: &AppState,
    request_id: std::sync::Arc<str>,
) -> Result<glia_bus_schema::DispatchReply, MatrixError> {
    let callback: Callback = name
        .parse()
        .map_err(|_| MatrixError::new(404, M_NOT_FOUND, format!("Unknown callback {name:?}")))?;
    let body = read_limited(payload, declared_length(req), state.max_body_size).await?;
    let request = CallbackRequest::from_json_slice(callback, &body).map_err(|e| match e {
        ArgsError::NotJson(m) => {
            MatrixError::new(400, M_NOT_JSON, format!("Content not JSON: {m}"))
        }
        bad @ ArgsError::BadField { .. } => MatrixError::new(
            400,
            M_BAD_JSON,
            format!("Invalid arguments for {callback}: {bad}"),
        ),
    })?;
    let coordinator = state.glia.coordinator();
    let meta = InvocationMeta {
        request_id,
        deadline: Instant::now() + coordinator.deadline(),
        traceparent: req
            .headers()
            .get(glia_bus_schema::subjects::headers::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128)
            .map(Into::into),
    };
    Ok(coordinator.dispatch(request, meta).await?)
}
