//! `POST /_glia/v1/callbacks/{callback}`: a callback's arguments in, its decision out.

use super::auth::Authorized;
use super::body::{declared_length, read_limited};
use super::errors::{self, MatrixError};
use super::resources;
use super::state::AppState;
use crate::coordinator::Ingress;
use crate::coordinator::{Coordinator, DispatchError};
use crate::propagation;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use glia_bus_schema::errcodes::{M_BAD_JSON, M_NOT_FOUND, M_NOT_JSON};
use glia_bus_schema::subjects::headers::{TRACEPARENT, TRACESTATE};
use glia_bus_schema::{ArgsError, Callback, CallbackRequest, DispatchReply};
use std::sync::Arc;

/// Header carrying the request id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// `Glia-Decision-Id` as HTTP spells header names (lower case), so it needs no parsing.
const DECISION_ID_HEADER: &str = "glia-decision-id";
/// The generation of the routing in force when a callback was answered, which ends the
/// lasting replies of other generations (`ExpiryReply::generation`).
const GENERATION_HEADER: &str = "glia-generation";

/// Where every callback's endpoint is: `{PREFIX}/{callback}`.
pub const PREFIX: &str = "/_glia/v1/callbacks";

/// Every request under [`PREFIX`] (an actix-web scope, matched by a plain prefix compare):
/// `POST {PREFIX}/{callback}` is dispatched and any other method is 405, while a path with
/// no name or more than one segment below the prefix is no endpoint and goes where any
/// unknown path goes, the module web resources. The name is looked up in the schema's fixed
/// table of callbacks; a `{callback}` route would have actix-web's router run a regex on
/// every request (8-17% of a request's CPU with one module).
pub async fn route(
    auth: Result<Authorized, MatrixError>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MatrixError> {
    match named(&req, one_segment) {
        Named::Post(name) => {
            auth?;
            Ok(dispatch(req, name, payload, state).await)
        }
        Named::NotAllowed => Ok(errors::method_not_allowed().await),
        Named::Elsewhere => resources::serve(req, payload, state).await,
    }
}

/// What a request under a scope of POST endpoints named by the path below it asks for.
pub(super) enum Named {
    /// `POST` to the endpoint of this name.
    Post(String),
    /// Another method on an endpoint's path.
    NotAllowed,
    /// A path that names no endpoint.
    Elsewhere,
}

/// Reads the endpoint's name from the path below the scope with `name_in` (without a regex:
/// see [`route`]), then the method.
pub(super) fn named(req: &HttpRequest, name_in: fn(&str) -> Option<&str>) -> Named {
    match name_in(req.match_info().unprocessed()) {
        None => Named::Elsewhere,
        Some(_) if req.method() != Method::POST => Named::NotAllowed,
        Some(name) => Named::Post(name.to_owned()),
    }
}

/// The one segment of `/{name}`, where a `{name}` route would have matched.
fn one_segment(rest: &str) -> Option<&str> {
    rest.strip_prefix('/')
        .filter(|name| !name.is_empty() && !name.contains('/'))
}

/// Decodes the arguments, dispatches (continuing the caller's `traceparent`), and answers
/// the callback's reply type; every answer, errors included, carries the request id, and
/// every dispatched one its decision id.
async fn dispatch(
    req: HttpRequest,
    name: String,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let coordinator = state.glia.coordinator();
    let request_id = request_id(&req, coordinator);
    let mut decision_id = None;
    let result = match decode(&req, name, payload, &state).await {
        Ok(request) => {
            let (result, id) =
                dispatch_traced(&req, coordinator, &request_id, request, Ingress::Http).await;
            decision_id = Some(id);
            result.map_err(MatrixError::from)
        }
        Err(e) => Err(e),
    };
    let mut response = match result {
        Ok(reply) => HttpResponse::Ok().json(reply),
        Err(e) => HttpResponse::from_error(e),
    };
    stamp(&mut response, &request_id, decision_id.as_deref());
    // Read after the dispatch: a lasting reply decided before a reload that is already in
    // force goes out with the new generation beside its own, so it is not kept.
    if let Ok(value) = HeaderValue::from_str(&coordinator.generation()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(GENERATION_HEADER), value);
    }
    response
}

/// The caller's `X-Request-Id` when it is usable (1 to 128 bytes), else a fresh one.
pub(super) fn request_id(req: &HttpRequest, coordinator: &Coordinator) -> Arc<str> {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(Into::into)
        .unwrap_or_else(|| coordinator.next_request_id())
}

/// Dispatches `request`, which came in by `route`, continuing the caller's `traceparent`;
/// returns the result and the dispatch's decision id.
pub(super) async fn dispatch_traced(
    req: &HttpRequest,
    coordinator: &Coordinator,
    request_id: &Arc<str>,
    request: CallbackRequest,
    route: Ingress,
) -> (Result<DispatchReply, DispatchError>, Arc<str>) {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let trace = propagation::extract(header(TRACEPARENT), header(TRACESTATE));
    let meta = coordinator.meta(Some(request_id.clone()), trace);
    let decision_id = meta.decision_id.clone();
    let result = coordinator.dispatch_via(request, meta, Some(route)).await;
    (result, decision_id)
}

/// Puts the request id, and the decision id of a dispatched request, on `response`.
pub(super) fn stamp(response: &mut HttpResponse, request_id: &str, decision_id: Option<&str>) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    if let Some(value) = decision_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert(HeaderName::from_static(DECISION_ID_HEADER), value);
    }
}

async fn decode(
    req: &HttpRequest,
    name: String,
    payload: web::Payload,
    state: &AppState,
) -> Result<CallbackRequest, MatrixError> {
    let callback: Callback = name
        .parse()
        .map_err(|_| MatrixError::new(404, M_NOT_FOUND, format!("Unknown callback {name:?}")))?;
    let body = read_limited(payload, declared_length(req), state.max_body_size).await?;
    CallbackRequest::from_json_slice(callback, &body).map_err(|e| match e {
        ArgsError::NotJson(m) => {
            MatrixError::new(400, M_NOT_JSON, format!("Content not JSON: {m}"))
        }
        bad @ ArgsError::BadField { .. } => MatrixError::new(
            400,
            M_BAD_JSON,
            format!("Invalid arguments for {callback}: {bad}"),
        ),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_decision_id_and_generation_headers_are_the_bus_schemas() {
        assert!(super::DECISION_ID_HEADER
            .eq_ignore_ascii_case(glia_bus_schema::subjects::headers::DECISION_ID));
        assert!(super::GENERATION_HEADER
            .eq_ignore_ascii_case(glia_bus_schema::subjects::headers::GENERATION));
    }
}
