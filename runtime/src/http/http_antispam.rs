//! `POST /_glia/v1/http-antispam/{callback}`: glia as the server synapse-http-antispam points
//! at (`base_url: http://glia:8787/_glia/v1/http-antispam`). The module's bodies become glia's
//! requests (`glia_bus_schema::http_antispam` reads them), the coordinator decides them as it
//! decides any dispatch (route `http_antispam` in the decision log), and the decision is
//! answered as the module reads answers: allow `200 {}`, deny a JSON error.
//!
//! What glia cannot decide (a wrong or missing token, a body it cannot read, a request the
//! coordinator refuses) is answered with a plain-text error: the module takes any JSON error
//! for a deny, and a body that is not JSON for "cannot decide", so the operator's `fail_open`
//! applies, exactly as when glia is down.

pub use super::antispam_paths::SCOPE;
use super::antispam_paths::{callback_name, cannot_decide, unroutable, ROUTE};
use super::auth::Authorized;
use super::body::{declared_length, read_limited};
use super::callbacks::{dispatch_traced, named, request_id, stamp, Named};
use super::errors::MatrixError;
use super::state::AppState;
use crate::coordinator::Ingress;
use crate::logging::THROTTLE_PERIOD;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use glia_bus_schema::errcodes::{M_BAD_JSON, M_NOT_JSON, M_UNKNOWN};
use glia_bus_schema::http_antispam::{self, Answer, Call};
use glia_bus_schema::ArgsError;
use serde_json::json;
use std::sync::Arc;

/// Every request under [`SCOPE`], routed as [`super::callbacks::route`] routes its own: `POST
/// {SCOPE}/{callback}` is served (the module's paths from any `base_url`: see
/// [`callback_name`]) and any other method is 405; a path that names no callback is answered
/// as glia failing to decide, like everything the ingress cannot decide.
pub async fn route(
    auth: Result<Authorized, MatrixError>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match named(&req, callback_name) {
        Named::Post(name) => serve(auth, req, name, payload, state).await,
        Named::NotAllowed => method_not_allowed(),
        Named::Elsewhere => unroutable(),
    }
}

/// Answers one of synapse-http-antispam's POSTs; every answer carries the request id, and a
/// dispatched one its decision id.
async fn serve(
    auth: Result<Authorized, MatrixError>,
    req: HttpRequest,
    name: String,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let request_id = request_id(&req, state.glia.coordinator());
    // What is not decided is logged (throttled) and counted by the refusal layer.
    let (mut response, decision_id) =
        match answer(auth, &req, &name, payload, &state, &request_id).await {
            Ok(answered) => answered,
            Err(e) => (cannot_decide(e), None),
        };
    stamp(&mut response, &request_id, decision_id.as_deref());
    response
}

async fn answer(
    auth: Result<Authorized, MatrixError>,
    req: &HttpRequest,
    name: &str,
    payload: web::Payload,
    state: &AppState,
    request_id: &Arc<str>,
) -> Result<(HttpResponse, Option<Arc<str>>), MatrixError> {
    auth?;
    let body = read_limited(payload, declared_length(req), state.max_body_size).await?;
    let call = http_antispam::decode(name, &body).map_err(|e| match e {
        ArgsError::NotJson(m) => {
            MatrixError::new(400, M_NOT_JSON, format!("Content not JSON: {m}"))
        }
        bad @ ArgsError::BadField { .. } => {
            MatrixError::new(400, M_BAD_JSON, format!("Invalid body for {name}: {bad}"))
        }
    })?;
    let request = match call {
        Call::Ping { id } => {
            if let Some(left_out) = state.log_throttle.admit((ROUTE, 200, "ping")) {
                tracing::info!(request_id = %request_id, left_out, "synapse-http-antispam pinged glia");
            }
            return Ok((
                HttpResponse::Ok().json(json!({"id": id, "status": "ok"})),
                None,
            ));
        }
        Call::Unknown => {
            if let Some(left_out) = state.log_throttle.admit((ROUTE, 200, "unknown_callback")) {
                tracing::warn!(
                    request_id = %request_id,
                    callback = %name,
                    left_out,
                    "synapse-http-antispam forwarded a callback glia does not have; allowed \
                     (remove it from the module's enabled_callbacks; logged at most every {} s)",
                    THROTTLE_PERIOD.as_secs()
                );
            }
            return Ok((allow(), None));
        }
        Call::Callback(request) => *request,
    };
    let coordinator = state.glia.coordinator();
    let (result, decision_id) =
        dispatch_traced(req, coordinator, request_id, request, Ingress::HttpAntispam).await;
    let reply = result.map_err(MatrixError::from)?;
    let decision = reply.decision().ok_or_else(|| {
        MatrixError::new(
            500,
            M_UNKNOWN,
            format!("internal: {} has no yes/no reply", reply.callback()),
        )
    })?;
    let response = match http_antispam::answer(decision) {
        Answer::Allow => allow(),
        Answer::Deny { status, body } => {
            HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN))
                .json(body)
        }
    };
    Ok((response, Some(decision_id)))
}

/// `200 {}`, which the module reads as `NOT_SPAM`.
fn allow() -> HttpResponse {
    HttpResponse::Ok().json(json!({}))
}

/// A wrong method on the ingress path, answered as glia failing to decide.
fn method_not_allowed() -> HttpResponse {
    cannot_decide(MatrixError::new(
        405,
        glia_bus_schema::errcodes::M_UNRECOGNIZED,
        "Unrecognized request: use POST",
    ))
}
