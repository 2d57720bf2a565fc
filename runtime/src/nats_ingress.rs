//! Homeservers calling the coordinator over NATS: `glia.v1.callbacks.<callback>` requests
//! answered as the HTTP API answers them.

use crate::coordinator::Coordinator;
use crate::coordinator::Ingress;
use crate::telemetry::propagation;
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
/// applies), instead of waiting in memory for its deadline.
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
    while let Some(message) = requests.next().await {
        let Some(reply) = message.reply.clone() else {
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Some(metrics) = coordinator.telemetry().metrics() {
                metrics.ingress_refused();
            }
            let body = error(
                M_LIMIT_EXCEEDED,
                format!("glia is answering {limit} callback requests over NATS already"),
            );
            if let Err(e) = client.publish(reply, body.into()).await {
                tracing::warn!(error = %e, "cannot refuse a callback request over NATS");
            }
            continue;
        };
        let (client, coordinator) = (client.clone(), coordinator.clone());
        actix_rt::spawn(async move {
            let (body, decision_id) = answer(&coordinator, &message).await;
            let _permit = permit; // held until the reply is published
            let mut reply_headers = async_nats::HeaderMap::new();
            if let Some(id) = &decision_id {
                reply_headers.insert(headers::DECISION_ID, &**id);
            }
            if let Err(e) = client
                .publish_with_headers(reply, reply_headers, body.into())
                .await
            {
                tracing::warn!(error = %e, "cannot answer a callback request over NATS");
            }
        });
    }
}

fn error(errcode: &str, error: String) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "errcode": errcode, "error": error }))
        .unwrap_or_default()
}

/// The reply body, and the decision id when the request was dispatched.
async fn answer(coordinator: &Coordinator, message: &Message) -> (Vec<u8>, Option<Arc<str>>) {
    let name = message
        .subject
        .strip_prefix(CALLBACK_PREFIX)
        .and_then(|s| s.strip_prefix('.'))
        .unwrap_or_default();
    let Ok(callback) = name.parse::<Callback>() else {
        return (
            error(M_NOT_FOUND, format!("Unknown callback {name:?}")),
            None,
        );
    };
    let request = match CallbackRequest::from_json_slice(callback, &message.payload) {
        Ok(r) => r,
        Err(ArgsError::NotJson(m)) => {
            return (error(M_NOT_JSON, format!("Content not JSON: {m}")), None)
        }
        Err(bad) => {
            let message = format!("Invalid arguments for {callback}: {bad}");
            return (error(M_BAD_JSON, message), None);
        }
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
    let body = match coordinator
        .dispatch_via(request, meta, Some(Ingress::Nats))
        .await
    {
        Ok(reply) => serde_json::to_vec(&reply).unwrap_or_default(),
        Err(e) => error(e.errcode, e.error),
    };
    (body, Some(decision_id))
}
