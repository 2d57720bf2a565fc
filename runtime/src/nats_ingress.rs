//! Homeservers calling the coordinator over NATS: `glia.v1.callbacks.<callback>` requests
//! answered as the HTTP API answers them.

use crate::coordinator::Coordinator;
use crate::coordinator::Ingress;
use crate::logging::{LogThrottle, THROTTLE_PERIOD};
use crate::propagation;
use async_nats::{Client, Message};
use futures::StreamExt;
use glia_bus_schema::errcodes::{M_BAD_JSON, M_LIMIT_EXCEEDED, M_NOT_FOUND, M_NOT_JSON};
use glia_bus_schema::subjects::{
    headers, CALLBACKS_WILDCARD, CALLBACK_PREFIX, COORDINATOR_QUEUE_GROUP,
};
use glia_bus_schema::{ArgsError, Callback, CallbackRequest};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Subscribes in the coordinators' queue group and answers until the task is aborted.
/// At most `limit` requests are answered at once: one past it is refused at once with
/// `M_LIMIT_EXCEEDED` (the caller cannot tell a decision from it, so its own failure mode
/// applies), instead of waiting in memory for its deadline. Refusals and replies that cannot
/// be published are logged through a [`LogThrottle`]: a caller looping on a bad request, or
/// a NATS outage, gets one line per kind every few seconds, not one per message.
pub async fn serve(client: Client, coordinator: Arc<Coordinator>, limit: usize) {
    let mut requests = match client
        .queue_subscribe(CALLBACKS_WILDCARD, COORDINATOR_QUEUE_GROUP.to_owned())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to callback requests over NATS");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(limit));
    let throttle = Arc::new(LogThrottle::default());
    while let Some(message) = requests.next().await {
        let Some(reply) = message.reply.clone() else {
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Some(metrics) = coordinator.telemetry().metrics() {
                metrics.ingress_refused();
            }
            let message = format!("glia is answering {limit} callback requests over NATS already");
            refused(&throttle, M_LIMIT_EXCEEDED, &message);
            let body = error(M_LIMIT_EXCEEDED, message);
            if let Err(e) = client.publish(reply, body.into()).await {
                cannot_publish(&throttle, "refuse", &e);
            }
            continue;
        };
        let (client, coordinator, throttle) =
            (client.clone(), coordinator.clone(), throttle.clone());
        actix_rt::spawn(async move {
            let (result, decision_id) = answer(&coordinator, &message).await;
            let body = result.unwrap_or_else(|(errcode, message)| {
                refused(&throttle, errcode, &message);
                error(errcode, message)
            });
            let mut reply_headers = async_nats::HeaderMap::new();
            if let Some(id) = &decision_id {
                reply_headers.insert(headers::DECISION_ID, &**id);
            }
            let _permit = permit; // held until the reply is published
            if let Err(e) = client
                .publish_with_headers(reply, reply_headers, body.into())
                .await
            {
                cannot_publish(&throttle, "answer", &e);
            }
        });
    }
}

/// Logs a refused request (throttled by errcode).
fn refused(throttle: &LogThrottle<&'static str>, errcode: &'static str, message: &str) {
    if let Some(left_out) = throttle.admit(errcode) {
        tracing::warn!(
            reason = %errcode,
            left_out,
            "callback request over NATS refused: {message} (one line per reason every {} s at most)",
            THROTTLE_PERIOD.as_secs()
        );
    }
}

/// Logs a reply that could not be published (throttled by what it was).
fn cannot_publish(
    throttle: &LogThrottle<&'static str>,
    what: &'static str,
    e: &async_nats::PublishError,
) {
    if let Some(left_out) = throttle.admit(what) {
        tracing::warn!(error = %e, left_out, "cannot {what} a callback request over NATS");
    }
}

fn error(errcode: &str, error: String) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "errcode": errcode, "error": error }))
        .unwrap_or_default()
}

/// A refusal: an errcode and a message.
type Refusal = (&'static str, String);

/// The reply body, or why the request was refused; and the decision id when it was
/// dispatched.
async fn answer(
    coordinator: &Coordinator,
    message: &Message,
) -> (Result<Vec<u8>, Refusal>, Option<Arc<str>>) {
    let request = match request(message) {
        Ok(request) => request,
        Err(refusal) => return (Err(refusal), None),
    };
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str())
    };
    let request_id = header(headers::REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(Arc::<str>::from);
    let trace = propagation::extract(header(headers::TRACEPARENT), header(headers::TRACESTATE));
    let meta = coordinator.meta(request_id, trace);
    let decision_id = meta.decision_id.clone();
    let result = coordinator
        .dispatch_via(request, meta, Some(Ingress::Nats))
        .await
        .map(|reply| serde_json::to_vec(&reply).unwrap_or_default())
        .map_err(|e| (e.errcode, e.error));
    (result, Some(decision_id))
}

/// The callback request a message carries.
fn request(message: &Message) -> Result<CallbackRequest, Refusal> {
    let name = message
        .subject
        .strip_prefix(CALLBACK_PREFIX)
        .and_then(|s| s.strip_prefix('.'))
        .unwrap_or_default();
    let Ok(callback) = name.parse::<Callback>() else {
        return Err((M_NOT_FOUND, format!("Unknown callback {name:?}")));
    };
    CallbackRequest::from_json_slice(callback, &message.payload).map_err(|e| match e {
        ArgsError::NotJson(m) => (M_NOT_JSON, format!("Content not JSON: {m}")),
        bad => (
            M_BAD_JSON,
            format!("Invalid arguments for {callback}: {bad}"),
        ),
    })
}
