//! Test helpers: build a module as the runtime would, then call what it registered.

use futures::executor::block_on;
use glia_bus_schema::{Callback, CallbackArgs, Event, InvocationError};
use glia_module_api::{ConfigError, ErasedHandler, Module, ModuleApi, Registrations, WebRequest};
use serde_json::Value;

/// Parses `config` and builds `M`, returning what it registered.
pub(crate) fn build<M: Module>(config: Value) -> Registrations {
    let parsed =
        M::parse_config(&config).unwrap_or_else(|e| panic!("{} rejected its config: {e}", M::NAME));
    let mut api = ModuleApi::new(M::NAME);
    M::new(parsed, &mut api).unwrap_or_else(|e| panic!("{} failed to build: {e}", M::NAME));
    api.into_registrations()
}

/// The error `M::parse_config` gives for `config` (panics if it accepts it).
pub(crate) fn config_error<M: Module>(config: Value) -> ConfigError {
    match M::parse_config(&config) {
        Ok(_) => panic!("{} accepted {config}", M::NAME),
        Err(e) => e,
    }
}

/// Asserts that `config` is refused at `path` with a message containing each of `needles`.
pub(crate) fn assert_config_error<M: Module>(config: Value, path: &str, needles: &[&str]) {
    let err = config_error::<M>(config);
    assert_eq!(err.path.to_string(), path, "wrong path in {err:?}");
    for needle in needles {
        assert!(
            err.message.contains(needle),
            "{:?} does not mention {needle:?}",
            err.message
        );
    }
}

/// The callbacks registered, in order.
pub(crate) fn callbacks(regs: &Registrations) -> Vec<Callback> {
    regs.callbacks.iter().map(|(c, _)| *c).collect()
}

fn handler<R: CallbackArgs>(regs: &Registrations) -> &ErasedHandler {
    regs.callbacks
        .iter()
        .find(|(c, _)| *c == R::CALLBACK)
        .map(|(_, h)| h)
        .unwrap_or_else(|| panic!("{} is not registered", R::CALLBACK))
}

/// Calls the handler registered for `R` with `args`.
pub(crate) async fn call<R: CallbackArgs>(
    regs: &Registrations,
    args: R,
) -> Result<R::Answer, InvocationError> {
    let answer = handler::<R>(regs).call(&args.into_request()).await?;
    Ok(R::unwrap_answer(answer)
        .unwrap_or_else(|other| panic!("{} answered {other:?}", R::CALLBACK)))
}

/// `call`, for handlers that need no runtime.
pub(crate) fn call_now<R: CallbackArgs>(
    regs: &Registrations,
    args: R,
) -> Result<R::Answer, InvocationError> {
    block_on(call(regs, args))
}

/// Sends `method path?query` to the web resource registered at `path`: status and JSON body.
pub(crate) fn web(regs: &Registrations, method: &str, path: &str, query: &str) -> (u16, Value) {
    let resource = regs
        .web_resources
        .iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("no web resource at {path}"));
    let response = block_on(resource.handler.call(WebRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        ..Default::default()
    }));
    assert_eq!(response.content_type, "application/json");
    let body = serde_json::from_slice(&response.body).expect("the body is JSON");
    (response.status, body)
}

/// An event of `event_type` from `sender` with `content`.
pub(crate) fn event(sender: &str, event_type: &str, content: Value) -> Event {
    serde_json::from_value(serde_json::json!({
        "event_id": "$event:example.com",
        "room_id": "!room:example.com",
        "sender": sender,
        "type": event_type,
        "content": content,
        "origin_server_ts": 1_700_000_000_000_i64,
        "depth": 12,
        "prev_events": ["$prev:example.com"],
    }))
    .expect("a valid event")
}
