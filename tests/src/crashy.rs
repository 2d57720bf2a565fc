//! A module that crashes on request, for supervision tests.
//!
//! `user_may_invite` answers by inviter: `@panic:hs` panics at once, `@panic-later:hs` panics
//! once the gate `<key>-gate` opens, `@fatal:hs` reports a fatal error, `@hang:hs` never
//! answers, `@block:hs` blocks the module's thread for 1.5 s; anyone else is denied with errcode `M_INSTANCE_<n>`, `n` counting the instances
//! built under `key`, so a test sees which instance answered. The constructor fails while
//! fewer than `fail_first_builds` builds were attempted. Dropped instances are recorded.

use crate::probes::wait_gate;
use futures::FutureExt;
use glia_bus_schema::requests::UserMayInvite;
use glia_bus_schema::SpamAnswer;
use glia_module_api::{
    from_config, ConfigError, Handler, Module, ModuleApi, ModuleError, SpamCheckerCallbacks,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// `crashy`'s config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashyConfig {
    /// Names this module's counters.
    pub key: String,
    /// Constructor attempts that fail before one succeeds.
    #[serde(default)]
    pub fail_first_builds: usize,
}

/// The crashy module; one per built instance.
pub struct Crashy {
    key: String,
}

#[derive(Default)]
struct Counters {
    attempts: HashMap<String, usize>,
    built: HashMap<String, usize>,
    dropped: Vec<String>,
}

fn counters() -> std::sync::MutexGuard<'static, Counters> {
    static C: OnceLock<Mutex<Counters>> = OnceLock::new();
    C.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Instances built under `key`.
pub fn built(key: &str) -> usize {
    counters().built.get(key).copied().unwrap_or(0)
}

/// The errcode `g`'s HTTP API answers a `user_may_invite` from `inviter` with (an HTTP
/// worker's thread, where a `per_thread` instance of its own answers).
pub async fn errcode_over_http(g: &crate::TestGlia, inviter: &str) -> String {
    let body = serde_json::json!({"inviter": inviter, "invitee": "@b:hs", "room_id": "!r:hs"});
    let (status, reply) = g
        .post(
            "/_glia/v1/callbacks/user_may_invite",
            &body.to_string(),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    reply["errcode"].as_str().unwrap_or_default().to_owned()
}

/// Keys of dropped instances, in drop order.
pub fn dropped() -> Vec<String> {
    counters().dropped.clone()
}

impl Drop for Crashy {
    fn drop(&mut self) {
        counters().dropped.push(self.key.clone());
    }
}

impl Module for Crashy {
    const NAME: &'static str = "crashy";
    type Config = CrashyConfig;

    fn parse_config(config: &Value) -> Result<CrashyConfig, ConfigError> {
        from_config(config)
    }

    fn new(config: CrashyConfig, api: &mut ModuleApi) -> Result<Self, ModuleError> {
        let instance = {
            let mut c = counters();
            let attempts = c.attempts.entry(config.key.clone()).or_default();
            *attempts += 1;
            if *attempts <= config.fail_first_builds {
                return Err(ModuleError::failed(format!(
                    "build {attempts} fails on purpose"
                )));
            }
            let built = c.built.entry(config.key.clone()).or_default();
            *built += 1;
            *built
        };
        let gate = format!("{}-gate", config.key);
        let counted = api.shared(AtomicU64::default);
        api.register_spam_checker_callbacks(SpamCheckerCallbacks {
            user_may_invite: Some(Handler::new(move |req: &UserMayInvite| {
                let gate = gate.clone();
                match req.inviter.as_str() {
                    "@count:hs" => {
                        let n = counted.fetch_add(1, Ordering::Relaxed) + 1;
                        async move { Ok(SpamAnswer::code(format!("M_COUNT_{n}"))) }.boxed_local()
                    }
                    "@panic:hs" => panic!("crashy: panic on request"),
                    "@panic-later:hs" => async move {
                        wait_gate(&gate).await;
                        panic!("crashy: panic after the gate");
                    }
                    .boxed_local(),
                    "@fatal:hs" => {
                        async { Err(ModuleError::fatal("crashy: fatal on request")) }.boxed_local()
                    }
                    "@hang:hs" => futures::future::pending().boxed_local(),
                    "@block:hs" => {
                        // Blocks the module's thread: no await, so its own watchdog cannot run.
                        std::thread::sleep(std::time::Duration::from_millis(1500));
                        async { Ok(SpamAnswer::NOT_SPAM) }.boxed_local()
                    }
                    _ => async move { Ok(SpamAnswer::code(format!("M_INSTANCE_{instance}"))) }
                        .boxed_local(),
                }
            })),
            ..Default::default()
        });
        Ok(Crashy { key: config.key })
    }
}
