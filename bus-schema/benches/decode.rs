//! What decoding an event costs: the message event of the request samples (its full PDU form,
//! as the bridge sends it) decoded with `Event`'s written-out decoder and with the derived one
//! it replaced (tests/support/derived_event.rs), from JSON text (as `glia serve`'s HTTP API
//! and a NATS worker decode it) and from a JSON value; and `check_event_for_spam`'s whole
//! request from text, as the HTTP API decodes it.
//!
//! Run: `cargo bench -p glia-bus-schema --bench decode`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/support/derived_event.rs"]
#[allow(dead_code)] // decoded here, never read
mod derived;

use criterion::{criterion_group, criterion_main, Criterion};
use glia_bus_schema::{Callback, CallbackRequest, Event};
use serde::Deserialize;
use std::hint::black_box;

fn decode(c: &mut Criterion) {
    let value = common::message_event();
    let text = serde_json::to_vec(&value).expect("encodes");
    let args = serde_json::to_vec(&serde_json::json!({ "event": value })).expect("encodes");
    let mut group = c.benchmark_group("event");
    group.bench_function("text/written", |b| {
        b.iter(|| serde_json::from_slice::<Event>(black_box(&text)).expect("decodes"))
    });
    group.bench_function("text/derived", |b| {
        b.iter(|| serde_json::from_slice::<derived::Event>(black_box(&text)).expect("decodes"))
    });
    group.bench_function("value/written", |b| {
        b.iter(|| Event::deserialize(black_box(&value)).expect("decodes"))
    });
    group.bench_function("value/derived", |b| {
        b.iter(|| derived::Event::deserialize(black_box(&value)).expect("decodes"))
    });
    group.finish();
    c.bench_function("request/check_event_for_spam/text", |b| {
        b.iter(|| {
            CallbackRequest::from_json_slice(Callback::CheckEventForSpam, black_box(&args))
                .expect("decodes")
        })
    });
}

criterion_group!(benches, decode);
criterion_main!(benches);
