//! The body deadline, as a layer: a request's body must have arrived within `body_timeout` of
//! its head. Every handler that reads a body (callbacks, module web resources, whatever comes
//! next) reads it through this bound, so a client that sends a head and then trickles or
//! stalls cannot hold a connection, its descriptor and its buffers for longer.

use super::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::HttpMessage;
use futures::Stream;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Replaces the request's body stream with one that fails with [`timed_out`] once
/// `body_timeout` has passed since the head arrived.
pub async fn layer(
    state: web::Data<AppState>,
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let payload = req.take_payload();
    if matches!(payload, Payload::None) {
        req.set_payload(payload);
    } else {
        let bounded = Bounded {
            inner: payload,
            deadline: Box::pin(tokio::time::sleep(state.body_timeout)),
            timeout: state.body_timeout,
            expired: false,
        };
        req.set_payload(Payload::Stream {
            payload: Box::pin(bounded),
        });
    }
    next.call(req).await
}

/// Whether a body read failed because the body deadline passed.
pub fn timed_out(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
}

/// A body stream with a deadline.
struct Bounded {
    inner: Payload,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    expired: bool,
}

impl Stream for Bounded {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired = true;
            let message = format!(
                "the request body did not arrive within {} ms",
                self.timeout.as_millis()
            );
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                message,
            )))));
        }
        Poll::Pending
    }
}
