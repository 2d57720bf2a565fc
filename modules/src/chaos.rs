//! `chaos`: a module that misbehaves on purpose, to test supervision and failure policies.
//!
//! For each configured callback it answers a fixed answer, except that some invocations
//! panic, hang, are delayed, or answer an invalid value. Which ones is decided by a seeded
//! hash of the module's name, the callback and the request's arguments — not by arrival
//! order — so a run can be replayed, and a driver can compute in advance what each
//! invocation will do ([`fate`]) and therefore what every decision must be.
//!
//! Config keys:
//! - `seed` (integer, default 0).
//! - `callbacks`: callback name to behaviour:
//!   - `answer` (the raw answer when nothing goes wrong, required),
//!   - `panic`, `hang`, `invalid` (probabilities, default 0; at most 1 together),
//!   - `delay` (`{probability, min_ms, max_ms}`, a uniform delay before answering).
//!
//! ```yaml
//! modules:
//!   - module: chaos
//!     config:
//!       seed: 7
//!       callbacks:
//!         user_may_invite: {answer: NOT_SPAM, panic: 0.1, hang: 0.01, delay: {probability: 0.2, min_ms: 1, max_ms: 5}}
//! ```

use futures::FutureExt;
use glia_bus_schema::{Callback, CallbackRequest, InvocationError, ModuleAnswer};
use glia_module_api::{ConfigError, ConfigPath, ErasedHandler, Module, ModuleApi, ModuleError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// The chaos module.
pub struct Chaos;

/// A uniform delay applied with some probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelaySpec {
    /// Chance of a delay.
    pub probability: f64,
    /// Shortest delay.
    #[serde(default)]
    pub min_ms: u64,
    /// Longest delay.
    pub max_ms: u64,
}

/// What the module does for one callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// The answer when nothing goes wrong.
    pub answer: Value,
    /// Chance of a panic.
    #[serde(default)]
    pub panic: f64,
    /// Chance of never answering.
    #[serde(default)]
    pub hang: f64,
    /// Chance of answering an invalid value.
    #[serde(default)]
    pub invalid: f64,
    /// Delays.
    #[serde(default)]
    pub delay: Option<DelaySpec>,
}

impl Behaviour {
    /// Whether nothing can go wrong: every invocation answers at once, with no roll (the
    /// roll hashes the request's JSON, which costs more than a do-nothing module may).
    pub fn never_fails(&self) -> bool {
        self.panic == 0.0 && self.hang == 0.0 && self.invalid == 0.0 && self.delay.is_none()
    }
}

/// `chaos`'s checked config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosConfig {
    /// Seeds every decision.
    #[serde(default)]
    pub seed: u64,
    /// Behaviour per callback name.
    pub callbacks: BTreeMap<String, Behaviour>,
}

/// What one invocation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Panics.
    Panic,
    /// Never answers.
    Hang,
    /// Answers an invalid value (after the delay, if any).
    Invalid {
        /// Delay first.
        delay_ms: u64,
    },
    /// Answers the configured answer (after the delay, if any).
    Answer {
        /// Delay first.
        delay_ms: u64,
    },
}

/// SplitMix64: a well-mixed 64-bit hash step.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    // FNV-1a over the bytes, then mixed with the seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h ^ mix(seed))
}

fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// What the module instance `name` with `seed` does for `callback` with these arguments
/// (`args` as [`CallbackRequest::args_json`] renders them).
pub fn fate(
    seed: u64,
    name: &str,
    callback: Callback,
    args: &Value,
    behaviour: &Behaviour,
) -> Fate {
    let key = format!("{name}\u{0}{callback}\u{0}{args}");
    let h = hash_bytes(seed, key.as_bytes());
    let roll = unit(h);
    if roll < behaviour.panic {
        return Fate::Panic;
    }
    if roll < behaviour.panic + behaviour.hang {
        return Fate::Hang;
    }
    let delay_ms = match behaviour.delay {
        Some(d) if unit(mix(h ^ 1)) < d.probability => {
            d.min_ms + mix(h ^ 2) % (d.max_ms - d.min_ms + 1)
        }
        _ => 0,
    };
    if roll < behaviour.panic + behaviour.hang + behaviour.invalid {
        Fate::Invalid { delay_ms }
    } else {
        Fate::Answer { delay_ms }
    }
}

/// The message of every planned panic.
pub const PLANNED_PANIC: &str = "chaos: planned panic";

/// Installs a panic hook that keeps quiet about planned panics (the supervisors report
/// them) and hands every other panic to the hook that was installed before.
pub fn quiet_planned_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&PLANNED_PANIC) {
            previous(info);
        }
    }));
}

/// The invalid value the module answers: a number, which no callback's answer is; where the
/// callback's answer type cannot even hold it, the answer is an invalid-answer error.
pub fn invalid_answer(callback: Callback) -> Result<ModuleAnswer, InvocationError> {
    ModuleAnswer::from_json(callback, json!(42)).map_err(|e| InvocationError::InvalidAnswer {
        detail: format!("chaos answered 42: {e}"),
    })
}

fn check(config: &ChaosConfig) -> Result<(), ConfigError> {
    if config.callbacks.is_empty() {
        return Err(ConfigError::at_path(
            ConfigPath::root().key("callbacks"),
            "name at least one callback",
        ));
    }
    for (name, b) in &config.callbacks {
        let at = ConfigPath::root().key("callbacks").key(name);
        let callback: Callback = name
            .parse()
            .map_err(|_| ConfigError::at_path(at.clone(), format!("unknown callback {name:?}")))?;
        if callback == Callback::CheckAuth {
            return Err(ConfigError::at_path(
                at,
                "check_auth needs a login type; chaos does not register auth checkers",
            ));
        }
        ModuleAnswer::from_json(callback, b.answer.clone()).map_err(|e| {
            ConfigError::at_path(
                at.clone().key("answer"),
                format!("not an answer to {name}: {e}"),
            )
        })?;
        for (key, p) in [("panic", b.panic), ("hang", b.hang), ("invalid", b.invalid)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(ConfigError::at_path(
                    at.clone().key(key),
                    "must be a probability between 0 and 1",
                ));
            }
        }
        if b.panic + b.hang + b.invalid > 1.0 {
            return Err(ConfigError::at_path(
                at.clone(),
                "panic + hang + invalid must not exceed 1",
            ));
        }
        if let Some(d) = b.delay {
            if !(0.0..=1.0).contains(&d.probability) {
                return Err(ConfigError::at_path(
                    at.key("delay").key("probability"),
                    "must be a probability between 0 and 1",
                ));
            }
            if d.max_ms < d.min_ms {
                return Err(ConfigError::at_path(
                    at.key("delay").key("max_ms"),
                    "must not be less than min_ms",
                ));
            }
        }
    }
    Ok(())
}

impl Module for Chaos {
    const NAME: &'static str = "chaos";
    type Config = ChaosConfig;

    fn parse_config(config: &Value) -> Result<ChaosConfig, ConfigError> {
        let parsed: ChaosConfig = glia_module_api::from_config(config)?;
        check(&parsed)?;
        Ok(parsed)
    }

    fn new(config: ChaosConfig, api: &mut ModuleApi) -> Result<Self, ModuleError> {
        let name: Rc<str> = api.module_name().into();
        for (callback_name, behaviour) in config.callbacks {
            let callback: Callback = callback_name
                .parse()
                .map_err(|_| ModuleError::failed(format!("unknown callback {callback_name}")))?;
            let answer = ModuleAnswer::from_json(callback, behaviour.answer.clone())
                .map_err(|e| ModuleError::failed(e.to_string()))?;
            let (seed, name, behaviour) = (config.seed, name.clone(), Rc::new(behaviour));
            let handler = ErasedHandler::new(move |request: &CallbackRequest| {
                let fate = if behaviour.never_fails() {
                    Fate::Answer { delay_ms: 0 }
                } else {
                    fate(seed, &name, callback, &request.args_json(), &behaviour)
                };
                let answer = answer.clone();
                async move {
                    let delay_ms = match fate {
                        Fate::Panic => std::panic::panic_any(PLANNED_PANIC),
                        Fate::Hang => futures::future::pending().await,
                        Fate::Invalid { delay_ms } | Fate::Answer { delay_ms } => delay_ms,
                    };
                    if delay_ms > 0 {
                        actix_rt::time::sleep(Duration::from_millis(delay_ms)).await;
                    }
                    match fate {
                        Fate::Invalid { .. } => invalid_answer(callback),
                        _ => Ok(answer),
                    }
                }
                .boxed_local()
            });
            api.register_erased(callback, handler)?;
        }
        Ok(Chaos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::assert_config_error;

    fn behaviour(panic: f64, hang: f64, invalid: f64) -> Behaviour {
        Behaviour {
            answer: json!("NOT_SPAM"),
            panic,
            hang,
            invalid,
            delay: Some(DelaySpec {
                probability: 0.5,
                min_ms: 1,
                max_ms: 3,
            }),
        }
    }

    #[test]
    fn fates_are_deterministic_and_follow_the_probabilities() {
        let b = behaviour(0.1, 0.05, 0.05);
        let mut counts = [0usize; 4];
        for i in 0..20_000 {
            let args =
                json!({"inviter": format!("@u{i}:hs"), "invitee": "@b:hs", "room_id": "!r:hs"});
            let f = fate(7, "c1", Callback::UserMayInvite, &args, &b);
            assert_eq!(
                f,
                fate(7, "c1", Callback::UserMayInvite, &args, &b),
                "replayable"
            );
            counts[match f {
                Fate::Panic => 0,
                Fate::Hang => 1,
                Fate::Invalid { .. } => 2,
                Fate::Answer { delay_ms } => {
                    assert!(delay_ms == 0 || (1..=3).contains(&delay_ms));
                    3
                }
            }] += 1;
        }
        let share = |n: usize| n as f64 / 20_000.0;
        assert!((share(counts[0]) - 0.10).abs() < 0.01, "{counts:?}");
        assert!((share(counts[1]) - 0.05).abs() < 0.01, "{counts:?}");
        assert!((share(counts[2]) - 0.05).abs() < 0.01, "{counts:?}");
        // Another seed or module name gives other fates.
        let args = |i: usize| json!({"inviter": format!("@u{i}:hs")});
        let differ = (0..200)
            .filter(|&i| {
                fate(7, "c1", Callback::UserMayInvite, &args(i), &b)
                    != fate(8, "c1", Callback::UserMayInvite, &args(i), &b)
            })
            .count();
        assert!(differ > 20, "{differ}");
    }

    #[test]
    fn invalid_answers() {
        assert!(matches!(
            invalid_answer(Callback::UserMayInvite),
            Ok(ModuleAnswer::UserMayInvite(
                glia_bus_schema::SpamAnswer::Other(_)
            ))
        ));
        assert!(matches!(
            invalid_answer(Callback::CheckRegistrationForSpam),
            Err(InvocationError::InvalidAnswer { .. })
        ));
    }

    #[test]
    fn config_errors() {
        assert_config_error::<Chaos>(json!({"callbacks": {}}), "callbacks", &["at least one"]);
        assert_config_error::<Chaos>(
            json!({"callbacks": {"nope": {"answer": 1}}}),
            "callbacks.nope",
            &["unknown callback"],
        );
        assert_config_error::<Chaos>(
            json!({"callbacks": {"user_may_invite": {"answer": "NOT_SPAM", "panic": 1.5}}}),
            "callbacks.user_may_invite.panic",
            &["probability"],
        );
        assert_config_error::<Chaos>(
            json!({"callbacks": {"check_registration_for_spam": {"answer": "maybe"}}}),
            "callbacks.check_registration_for_spam.answer",
            &["not an answer"],
        );
        assert_config_error::<Chaos>(
            json!({"callbacks": {"user_may_invite": {"answer": "NOT_SPAM", "panic": 0.6, "hang": 0.6}}}),
            "callbacks.user_may_invite",
            &["must not exceed 1"],
        );
    }
}
