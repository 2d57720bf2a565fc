//! Homeservers calling the coordinator over NATS: `glia.v1.callbacks.<callback>` requests
//! answered as the HTTP API answers them.

use crate::bus::InvocationMeta;
use crate::coordinator::Coordinator;
use async_nats::{Client, Message};
use futures::StreamExt;
use glia_bus_schema::errcodes::{M_BAD_JSON, M_NOT_FOUND, M_NOT_JSON};
use glia_bus_schema::subjects::{
    headers, CALLBACKS_WILDCARD, CALLBACK_PREFIX, COORDINATOR_QUEUE_GROUP,
};
use glia_bus_schema::{ArgsError, Callback, CallbackRequest};
use std::sync::Arc;
use std::time::Instant;

/// Subscribes in the coordinators' queue group and answers until the task is aborted.
pub async fn serve(client: Client, coordinator: Arc<Coordinator>) {
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
    while let Some(message) = requests.next().await {
        let (client, coordinator) = (client.clone(), coordinator.clone());
        actix_rt::spawn(async move {
            let Some(reply) = message.reply.clone() else {
                return;
            };
            let body = answer(&coordinator, &message).await;
            if let Err(e) = client.publish(reply, body.into()).await {
                tracing::warn!(error = %e, "cannot answer a callback request over NATS");
            }
        });
    }
}

fn error(errcode: &str, error: String) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "errcode": errcode, "error": error }))
        .unwrap_or_default()
}

async fn answer(coordinator: &Coordinator, message: &Message) -> Vec<u8> {
    let name = message
        .subject
        .strip_prefix(CALLBACK_PREFIX)
        .and_then(|s| s.strip_prefix('.'))
        .unwrap_or_default();
    let Ok(callback) = name.parse::<Callback>() else {
        return error(M_NOT_FOUND, format!("Unknown callback {name:?}"));
    };
    let request = match CallbackRequest::from_json_slice(callback, &message.payload) {
        Ok(r) => r,
        Err(ArgsError::NotJson(m)) => return error(M_NOT_JSON, format!("Content not JSON: {m}")),
        Err(bad) => {
            return error(
                M_BAD_JSON,
                format!("Invalid arguments for {callback}: {bad}"),
            )
        }
    };
    let request_id = message
        .headers
        .as_ref()
        .and_then(|h| h.get(headers::REQUEST_ID))
        .map(|v| v.as_str())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(Arc::<str>::from)
        .unwrap_or_else(|| coordinator.next_request_id());
    let meta = InvocationMeta {
        request_id,
        deadline: Instant::now() + coordinator.deadline(),
        traceparent: message
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::TRACEPARENT))
            .map(|v| Arc::<str>::from(v.as_str())),
    };
    match coordinator.dispatch(request, meta).await {
        Ok(reply) => serde_json::to_vec(&reply).unwrap_or_default(),
        Err(e) => error(e.errcode, e.error),
    }
}
