//! A worker's message loop for one subscription of one module: describe requests, dropping
//! expired work, admission (back-pressure), the invocations themselves, and requests for the
//! module's web resources (`web.rs`).

use super::hosted::{Hosted, Serving};
use super::web;
use crate::bus::nats::time_left;
use crate::bus::{Bus, InvocationMeta, Target};
use crate::coordinator::WorkerSpan;
use crate::host::Slot;
use crate::propagation;
use crate::telemetry::Outcome;
use async_nats::{Message, Subject, Subscriber};
use futures::StreamExt;
use glia_bus_schema::subjects::{self, headers, Description};
use glia_bus_schema::{
    CallbackRequest, Invocation, InvocationError, InvocationReply, InvocationResult,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, OwnedSemaphorePermit};

/// Messages taken in a row before the loop lets the connection write the answers so far. A
/// burst of invocations answered in one go would go back in one write, and the coordinator
/// would sit idle until the last of them was answered; passing on every few keeps the
/// coordinator, nats-server and this worker busy at once.
const YIELD_EVERY: usize = 16;

/// Serves `subscription` (whose subjects are `<prefix>.<callback>` and `<prefix>.describe`)
/// until it ends: after a drain, once the messages already routed here have been taken.
/// Each message goes to the module in `slot` when it arrives: a reload that replaces the
/// module swaps it there, and the subscription stays.
pub(super) async fn serve(
    serving: Arc<Serving>,
    slot: Arc<arc_swap::ArcSwap<Hosted>>,
    mut subscription: Subscriber,
    prefix: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut draining = false;
    let mut taken = 0usize;
    loop {
        taken += 1;
        if taken.is_multiple_of(YIELD_EVERY) {
            tokio::task::yield_now().await;
        }
        let message = tokio::select! {
            message = subscription.next() => match message {
                Some(m) => m,
                None => return,
            },
            _ = stop.wait_for(|s| *s), if !draining => {
                draining = true;
                if subscription.drain().await.is_err() {
                    return;
                }
                continue;
            }
        };
        let Some(reply_to) = message.reply.clone() else {
            continue;
        };
        // Held by the invocation's task too: a replaced module stops once none holds it.
        let hosted = slot.load_full();
        let suffix = message
            .subject
            .strip_prefix(prefix.as_str())
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or_default()
            .to_owned();
        if suffix == subjects::DESCRIBE {
            let body = serde_json::to_vec(&hosted.description).unwrap_or_default();
            let _ = serving.client.publish(reply_to, body.into()).await;
            continue;
        }
        // Nobody waits for work past its deadline: drop it without an answer.
        let left = match header(&message, headers::DEADLINE).and_then(|d| d.parse::<u64>().ok()) {
            Some(deadline) => match time_left(deadline) {
                Some(left) => Some(left),
                None => {
                    tracing::debug!(module = %hosted.name, subject = %message.subject, "dropping an invocation past its deadline");
                    continue;
                }
            },
            None => None,
        };
        if suffix == subjects::WEB {
            web::spawn(&serving, hosted, message, reply_to, left);
            continue;
        }
        match hosted.admission.clone().try_acquire_owned() {
            Ok(permit) => {
                serving.in_flight.fetch_add(1, Ordering::AcqRel);
                let (serving, hosted) = (serving.clone(), hosted.clone());
                let mut handled = Box::pin(async move {
                    handle(&serving, &hosted, message, reply_to, suffix, left, permit).await;
                    serving.in_flight.fetch_sub(1, Ordering::AcqRel);
                });
                // An invocation a module answers on this thread (`instances: per_thread`)
                // is done, answer published, by its first poll: no task for it. Anything
                // still running goes on as a task.
                if futures::poll!(handled.as_mut()).is_pending() {
                    actix_rt::spawn(handled);
                }
            }
            // Refused in the loop itself: publishing waits only when the connection's
            // buffer is full, which slows taking messages, as back-pressure should.
            Err(_) => refuse(&serving, &hosted, &message, reply_to, &suffix).await,
        }
    }
}

/// A header's value.
fn header(message: &Message, name: &str) -> Option<String> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
}

/// Answers an invocation the module has no room for with `unavailable`, which the
/// coordinator resolves through the failure policy at once.
async fn refuse(
    serving: &Serving,
    hosted: &Hosted,
    message: &Message,
    reply_to: Subject,
    suffix: &str,
) {
    let (max_in_flight, stash) = hosted.capacity;
    let error = InvocationError::Unavailable {
        reason: format!(
            "module {} on worker {} is at capacity: {} invocations running or waiting (max_in_flight {max_in_flight} + stash {stash})",
            hosted.name,
            hosted.worker,
            max_in_flight.saturating_add(stash)
        ),
    };
    if let (Some(metrics), Ok(callback)) = (serving.telemetry.metrics(), suffix.parse()) {
        metrics.invocation(
            hosted.index,
            &hosted.name,
            callback,
            Outcome::Unavailable,
            None,
        );
    }
    let reply = InvocationReply {
        request_id: header(message, headers::REQUEST_ID).unwrap_or_default(),
        result: InvocationResult::Error(error),
    };
    publish(serving, hosted, reply_to, &reply).await;
}

async fn publish(serving: &Serving, hosted: &Hosted, reply_to: Subject, reply: &InvocationReply) {
    let body = serde_json::to_vec(reply).unwrap_or_default();
    if let Err(e) = serving.client.publish(reply_to, body.into()).await {
        tracing::warn!(module = %hosted.name, error = %e, "cannot send an invocation's answer");
    }
}

/// Runs one admitted invocation and answers it; the permit is released once answered.
async fn handle(
    serving: &Serving,
    hosted: &Hosted,
    message: Message,
    reply_to: Subject,
    suffix: String,
    left: Option<Duration>,
    _permit: OwnedSemaphorePermit,
) {
    let telemetry = &serving.telemetry;
    let request_id = header(&message, headers::REQUEST_ID).unwrap_or_default();
    let started = Instant::now();
    let parent = propagation::extract(
        header(&message, headers::TRACEPARENT).as_deref(),
        header(&message, headers::TRACESTATE).as_deref(),
    );
    let span = WorkerSpan::start(
        telemetry,
        &hosted.name,
        &message.subject,
        suffix.parse().ok(),
        &request_id,
        parent,
    );
    let result = match invocation(hosted, &suffix, &message) {
        Err(e) => InvocationResult::Error(e),
        Ok((request, slot)) => {
            let budget = left.unwrap_or(Duration::from_secs(60));
            let meta = InvocationMeta {
                request_id: request_id.as_str().into(),
                decision_id: Arc::from(""),
                deadline: Instant::now() + budget,
                trace: span.context().clone(),
            };
            let call = hosted.bus.invoke(
                Target {
                    module: hosted.index,
                    slot,
                },
                Arc::new(request),
                &meta,
            );
            match tokio::time::timeout(budget, call).await {
                Ok(Ok(answer)) => InvocationResult::Answer(answer),
                Ok(Err(e)) => InvocationResult::Error(e),
                Err(_) => InvocationResult::Error(InvocationError::Timeout {
                    after_ms: budget.as_millis() as u64,
                }),
            }
        }
    };
    let error = match &result {
        InvocationResult::Error(e) => Some(e),
        InvocationResult::Answer(_) => None,
    };
    if let (Some(metrics), Ok(callback)) = (telemetry.metrics(), suffix.parse()) {
        let outcome = error.map_or(Outcome::Answer, Outcome::of_error);
        metrics.invocation(
            hosted.index,
            &hosted.name,
            callback,
            outcome,
            Some(started.elapsed()),
        );
    }
    span.finish(error);
    publish(
        serving,
        hosted,
        reply_to,
        &InvocationReply { request_id, result },
    )
    .await;
}

/// Decodes and checks an invocation, and picks its handler.
fn invocation(
    hosted: &Hosted,
    suffix: &str,
    message: &Message,
) -> Result<(CallbackRequest, Slot), InvocationError> {
    let malformed = |detail: String| InvocationError::Failed {
        message: format!("malformed invocation for module {}: {detail}", hosted.name),
        synapse_error: None,
    };
    let invocation =
        Invocation::from_json_slice(&message.payload).map_err(|e| malformed(e.to_string()))?;
    let callback = invocation.request.callback();
    if callback.name() != suffix {
        return Err(malformed(format!(
            "the subject names {suffix:?} but the body is {callback}"
        )));
    }
    let slot = handler_slot(&hosted.description, &invocation.request).ok_or_else(|| {
        InvocationError::Unavailable {
            reason: format!("module {} does not handle {callback}", hosted.name),
        }
    })?;
    Ok((invocation.request, slot))
}

/// The module's handler of the request's callback (for an auth checker, of its login type;
/// a module serving one callback twice is served by its first handler over NATS).
fn handler_slot(description: &Description, request: &CallbackRequest) -> Option<Slot> {
    if let CallbackRequest::CheckAuth(args) = request {
        return description
            .auth_checkers
            .iter()
            .position(|a| a.login_type == args.login_type)
            .map(Slot::AuthChecker);
    }
    description
        .callbacks
        .iter()
        .position(|c| *c == request.callback())
        .map(Slot::Callback)
}
