//! Process-wide probes and gates, shared between test code and module threads.
//!
//! A probe counts a scripted module's invocations and keeps the last arguments it saw; a
//! gate holds a module's answer until the test opens it, which lets a test prove ordering
//! without timing anything.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Semaphore;

#[derive(Default)]
struct ProbeState {
    started: usize,
    answered: usize,
    last_args: Option<Value>,
}

fn probes() -> &'static Mutex<HashMap<String, ProbeState>> {
    static PROBES: OnceLock<Mutex<HashMap<String, ProbeState>>> = OnceLock::new();
    PROBES.get_or_init(Default::default)
}

fn gates() -> &'static Mutex<HashMap<String, Arc<Semaphore>>> {
    static GATES: OnceLock<Mutex<HashMap<String, Arc<Semaphore>>>> = OnceLock::new();
    GATES.get_or_init(Default::default)
}

/// Records that the module with probe `name` started handling `args`.
pub fn record_start(name: &str, args: Value) {
    let mut probes = probes().lock().unwrap();
    let state = probes.entry(name.to_owned()).or_default();
    state.started += 1;
    state.last_args = Some(args);
}

/// Records that it answered.
pub fn record_answer(name: &str) {
    probes()
        .lock()
        .unwrap()
        .entry(name.to_owned())
        .or_default()
        .answered += 1;
}

/// How many invocations the probe saw start.
pub fn started(name: &str) -> usize {
    probes().lock().unwrap().get(name).map_or(0, |s| s.started)
}

/// How many invocations the probe saw answer.
pub fn answered(name: &str) -> usize {
    probes().lock().unwrap().get(name).map_or(0, |s| s.answered)
}

/// The last arguments the probe saw.
pub fn last_args(name: &str) -> Option<Value> {
    probes()
        .lock()
        .unwrap()
        .get(name)
        .and_then(|s| s.last_args.clone())
}

fn gate(name: &str) -> Arc<Semaphore> {
    gates()
        .lock()
        .unwrap()
        .entry(name.to_owned())
        .or_insert_with(|| Arc::new(Semaphore::new(0)))
        .clone()
}

/// Waits until the gate is opened (once per `open`).
pub async fn wait_gate(name: &str) {
    let gate = gate(name);
    gate.acquire()
        .await
        .expect("gates are never closed")
        .forget();
}

/// Lets `n` waiters of the gate through.
pub fn open_gate(name: &str, n: usize) {
    gate(name).add_permits(n);
}

/// Waits (politely, without a deadline of its own) until `cond` holds.
pub async fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}
