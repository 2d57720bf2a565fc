//! What the benchmarks send, shared so that each path is measured with the same arguments,
//! and how they dispatch it. Each bench uses some of it.
#![allow(dead_code)]

use glia_bus_schema::{CallbackRequest, DispatchReply};
use glia_runtime::Glia;
use serde_json::{json, Value};

/// One dispatch through the coordinator, as an embedding caller makes it.
pub async fn dispatch(glia: &Glia, request: &CallbackRequest) -> DispatchReply {
    let coordinator = glia.coordinator();
    coordinator
        .dispatch(request.clone(), coordinator.new_meta())
        .await
        .expect("dispatch accepted")
}

/// An `m.room.message` with a ~100-char body, as JSON.
pub fn message_json() -> Value {
    json!({
        "event_id": "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg",
        "room_id": "!OGEhHVWSdvArJzumhm:matrix.org",
        "sender": "@alice:example.com",
        "type": "m.room.message",
        "origin_server_ts": 1_764_000_000_000_i64,
        "content": {
            "msgtype": "m.text",
            "body": "Hello everyone, the release notes for this week are up; please review them before Thursday's call.",
        },
    })
}

/// A config of `n` scripted modules giving `answers` (scripts by callback name), each with
/// `instances` (`one`, the default: on its own thread; `per_thread`: also one on each
/// dispatching thread).
pub fn scripted_config(n: usize, instances: &str, answers: &Value) -> String {
    let modules: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "module": "scripted",
                "name": format!("bench-m{i}"),
                "instances": instances,
                "config": { "answers": answers },
            })
        })
        .collect();
    json!({ "modules": modules }).to_string()
}
