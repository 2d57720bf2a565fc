//! W3C trace context in and out of headers (HTTP from the homeserver, NATS between glia's
//! processes, the pipe to a Python host), whether or not this process records spans. Below
//! `telemetry` in the layers, so the Python host's pipe (`python`) can send it too.

use glia_bus_schema::subjects::headers::{TRACEPARENT, TRACESTATE};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The longest header value read: a valid `traceparent` is 55 bytes, and `tracestate` is
/// capped at 512 by the W3C specification's advice.
const MAX_HEADER: usize = 512;

struct Pair<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for Pair<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent,
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// The context a caller's `traceparent` (and `tracestate`) name, or an empty context when
/// they are missing or malformed (a bad header starts a new trace rather than failing).
pub fn extract(traceparent: Option<&str>, tracestate: Option<&str>) -> Context {
    let traceparent = traceparent.filter(|v| v.len() <= MAX_HEADER);
    if traceparent.is_none() {
        return Context::new();
    }
    let pair = Pair {
        traceparent,
        tracestate: tracestate.filter(|v| v.len() <= MAX_HEADER),
    };
    TraceContextPropagator::new().extract(&pair)
}

/// What to send on: `traceparent` and, if any, `tracestate`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TraceHeaders {
    /// `00-<trace id>-<span id>-<flags>`.
    pub traceparent: Option<String>,
    /// Vendor state, passed on as it came.
    pub tracestate: Option<String>,
}

impl Injector for TraceHeaders {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

/// The headers that make a receiver's spans children of `cx`'s span; empty when `cx`
/// carries no valid span context.
pub fn inject(cx: &Context) -> TraceHeaders {
    let mut headers = TraceHeaders::default();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(cx, &mut headers);
    }
    headers
}

/// The trace id of `cx`'s span in hex, if it has a valid one.
pub fn trace_id(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = extract(Some(tp), Some("vendor=1"));
        assert_eq!(
            trace_id(&cx).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let out = inject(&cx);
        assert_eq!(out.traceparent.as_deref(), Some(tp));
        assert_eq!(out.tracestate.as_deref(), Some("vendor=1"));
    }

    #[test]
    fn malformed_headers_start_afresh() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        ] {
            let cx = extract(Some(bad), None);
            assert_eq!(trace_id(&cx), None, "{bad:?}");
            assert_eq!(inject(&cx), TraceHeaders::default());
        }
        assert_eq!(inject(&extract(None, None)), TraceHeaders::default());
    }
}
