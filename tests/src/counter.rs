//! A module whose answers show which instance gave them: on `on_create_room` it appends
//! `{module, label, instance, n}` to `request_content.chain`, where `instance` is unique per
//! built instance in the process and `n` counts that instance's invocations (its state). A
//! reload test reads from the chain whether a module was kept (same instance, `n` goes on),
//! replaced (another instance, the new label) or removed (absent).
//!
//! ```yaml
//! - module: counter
//!   name: c1
//!   config: {label: a, delay_ms: 5}
//! ```

use futures::FutureExt;
use glia_bus_schema::{Callback, CallbackRequest, ModuleAnswer, OnCreateRoomAnswer, RoomContent};
use glia_module_api::{from_config, ConfigError, ErasedHandler, Module, ModuleApi, ModuleError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Instances built so far in this process.
static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// The counter module's config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterConfig {
    /// Shown in each answer: which config the instance was built from.
    #[serde(default)]
    pub label: String,
    /// Wait this long before answering, so that invocations are in flight.
    #[serde(default)]
    pub delay_ms: u64,
}

/// The counter module.
pub struct Counter;

impl Module for Counter {
    const NAME: &'static str = "counter";
    type Config = CounterConfig;

    fn parse_config(config: &Value) -> Result<CounterConfig, ConfigError> {
        from_config(config)
    }

    fn new(config: CounterConfig, api: &mut ModuleApi) -> Result<Self, ModuleError> {
        let instance = INSTANCES.fetch_add(1, Ordering::Relaxed) + 1;
        let module: Rc<str> = api.module_name().into();
        let count = Rc::new(Cell::new(0u64));
        let handler = ErasedHandler::new(move |request: &CallbackRequest| {
            let n = count.get() + 1;
            count.set(n);
            let mut content = match request {
                CallbackRequest::OnCreateRoom(args) => args.request_content.clone(),
                _ => Default::default(),
            };
            let list = content
                .entry("chain".to_owned())
                .or_insert_with(|| json!([]));
            if let Some(items) = list.as_array_mut() {
                items.push(json!({"module": &*module, "label": &config.label, "instance": instance, "n": n}));
            }
            let delay = Duration::from_millis(config.delay_ms);
            async move {
                if !delay.is_zero() {
                    actix_rt::time::sleep(delay).await;
                }
                Ok(ModuleAnswer::OnCreateRoom(OnCreateRoomAnswer::Continue(
                    RoomContent {
                        request_content: Some(content),
                    },
                )))
            }
            .boxed_local()
        });
        api.register_erased(Callback::OnCreateRoom, handler)
            .map_err(|e| ModuleError::failed(e.to_string()))?;
        Ok(Counter)
    }
}
