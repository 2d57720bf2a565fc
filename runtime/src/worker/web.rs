//! A worker's answer to a request for one of its module's web resources, which the
//! coordinator sends on `glia.v1.module.<module>.web` when a client asks glia for the page: the
//! module's own handler answers, as it would in `glia serve` (a Rust module's on its thread, a
//! Python module's in its host).

use super::hosted::{Hosted, Serving};
use crate::host::{web_error, WebCall};
use async_nats::{Message, Subject};
use glia_bus_schema::errcodes::{M_BAD_JSON, M_TOO_LARGE, M_UNKNOWN, M_UNRECOGNIZED};
use glia_bus_schema::web::{WebCallRequest, WebCallResponse};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long a web request without a deadline may take (the coordinator always sends one).
const NO_DEADLINE: Duration = Duration::from_secs(60);

/// Serves one web request in a task of its own, counted in flight (a drain waits for it).
/// Web requests are not admitted against the invocations' capacity: a local module's pages
/// are not either.
pub(super) fn spawn(
    serving: &Arc<Serving>,
    hosted: Arc<Hosted>,
    message: Message,
    reply_to: Subject,
    left: Option<Duration>,
) {
    serving.in_flight.fetch_add(1, Ordering::AcqRel);
    let serving = serving.clone();
    actix_rt::spawn(async move {
        serve_web(&serving, &hosted, message, reply_to, left).await;
        serving.in_flight.fetch_sub(1, Ordering::AcqRel);
    });
}

/// Serves one web request and publishes the response on `reply_to`; `left` is the time
/// before its deadline.
async fn serve_web(
    serving: &Serving,
    hosted: &Hosted,
    message: Message,
    reply_to: Subject,
    left: Option<Duration>,
) {
    let response = respond(serving, hosted, &message.payload, left).await;
    let body = encoded(serving, hosted, &response);
    if let Err(e) = serving.client.publish(reply_to, body.into()).await {
        tracing::warn!(module = %hosted.name, error = %e, "cannot send a web response");
    }
}

/// The module's response, or glia's error in the Matrix JSON form a local module's page
/// gets for the same failure.
async fn respond(
    serving: &Serving,
    hosted: &Hosted,
    payload: &[u8],
    left: Option<Duration>,
) -> WebCallResponse {
    let request: WebCallRequest = match serde_json::from_slice(payload) {
        Ok(request) => request,
        Err(e) => {
            let error = format!("malformed web request for module {}: {e}", hosted.name);
            return web_error(400, M_BAD_JSON, &error).into();
        }
    };
    if request.body.0.len() > serving.max_body_size {
        let error = format!(
            "Request body is larger than {} bytes",
            serving.max_body_size
        );
        return web_error(413, M_TOO_LARGE, &error).into();
    }
    let Some(route) = hosted.web.find(&request.path) else {
        return web_error(404, M_UNRECOGNIZED, "Unrecognized request").into();
    };
    let Some(addr) = hosted.bus.addr(hosted.index) else {
        return web_error(503, M_UNKNOWN, "module unavailable").into();
    };
    let budget = left.unwrap_or(NO_DEADLINE);
    let call = addr.send(WebCall {
        slot: route.slot,
        request: request.into(),
    });
    match tokio::time::timeout(budget, call).await {
        Ok(Ok(response)) => response.into(),
        Ok(Err(e)) => web_error(503, M_UNKNOWN, &format!("module unavailable: {e}")).into(),
        Err(_) => {
            let error = format!(
                "module {} did not answer within {} ms",
                hosted.name,
                budget.as_millis()
            );
            web_error(504, M_UNKNOWN, &error).into()
        }
    }
}

/// `response` as JSON; a 502 in its place when it is larger than the NATS server carries (a
/// message it refuses would leave the coordinator waiting for its timeout).
fn encoded(serving: &Serving, hosted: &Hosted, response: &WebCallResponse) -> Vec<u8> {
    let body = serde_json::to_vec(response).unwrap_or_default();
    let max = serving.client.server_info().max_payload;
    if max == 0 || body.len() <= max {
        return body;
    }
    let error = format!(
        "the response of module {} ({} bytes as JSON) is larger than NATS carries (max_payload {max})",
        hosted.name,
        body.len()
    );
    serde_json::to_vec(&WebCallResponse::from(web_error(502, M_UNKNOWN, &error)))
        .unwrap_or_default()
}
