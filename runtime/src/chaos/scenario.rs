//! The chaos scenario: its config, its requests, and the answer each request must get.

use glia_bus_schema::requests::UserMayInvite;
use glia_bus_schema::{Callback, CallbackRequest, Decision};
use glia_modules::chaos::{fate, Behaviour, DelaySpec, Fate};
use serde_json::json;
use std::time::Duration;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// Requests to send.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Chance that a chaos module's invocation panics.
    pub panic: f64,
    /// Chance that it hangs.
    pub hang: f64,
    /// Chance that it answers an invalid value.
    pub invalid: f64,
    /// Seeds every chaos module.
    pub seed: u64,
    /// Each module's timeout.
    pub timeout: Duration,
    /// The whole-request deadline.
    pub deadline: Duration,
    /// How long an invocation may hang before its module is restarted.
    pub watchdog: Duration,
}

impl Default for ChaosOptions {
    /// The default scenario: 10,000 requests, 64 at a time, 10% of invocations panicking,
    /// 0.5% hanging, 2% answering garbage.
    fn default() -> Self {
        ChaosOptions {
            requests: 10_000,
            concurrency: 64,
            panic: 0.10,
            hang: 0.005,
            invalid: 0.02,
            seed: 1,
            // Generous, so that on a busy machine no answer depends on timing: only the
            // planned hangs reach them.
            timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
            watchdog: Duration::from_secs(1),
        }
    }
}

/// The modules, in order: (name, failure policy). `restrictions` is a real module.
const MODULES: &[(&str, &str)] = &[
    ("chaos_allow", "allow"),
    ("restrictions", "-"),
    ("chaos_deny", "deny"),
    ("chaos_error", "error"),
];

/// The answer a request must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// `{"decision": "allow"}`.
    Allow,
    /// A deny by this module with this errcode.
    Deny {
        /// The deciding module.
        module: String,
        /// Its errcode.
        errcode: String,
    },
    /// An error caused by this module.
    Error {
        /// The failing module.
        module: String,
    },
}

impl Expected {
    /// Whether `decision` is this answer.
    pub fn matches(&self, decision: &Decision) -> bool {
        match (self, decision) {
            (Expected::Allow, Decision::Allow { .. }) => true,
            (
                Expected::Deny { module, errcode },
                Decision::Deny {
                    module: m,
                    errcode: e,
                    ..
                },
            ) => m == module && e == errcode,
            (Expected::Error { module }, Decision::Error(f)) => &f.module == module,
            _ => false,
        }
    }
}

impl ChaosOptions {
    fn behaviour(&self, invalid: bool) -> Behaviour {
        Behaviour {
            answer: json!("NOT_SPAM"),
            panic: self.panic,
            hang: self.hang,
            invalid: if invalid { self.invalid } else { 0.0 },
            delay: Some(DelaySpec {
                probability: 0.3,
                min_ms: 0,
                max_ms: 2,
            }),
        }
    }

    /// The chaos modules' names.
    pub fn chaos_modules(&self) -> Vec<String> {
        MODULES
            .iter()
            .filter(|(n, _)| n.starts_with("chaos"))
            .map(|(n, _)| n.to_string())
            .collect()
    }

    /// The scenario's config: chaos modules around a real one, restarts generous enough that
    /// no module is ever marked failed (so every answer is computable from the plan).
    pub fn config_yaml(&self) -> String {
        let mut modules = Vec::new();
        for (name, policy) in MODULES {
            let mut entry = if *name == "restrictions" {
                json!({"module": "user_restrictions", "name": name,
                       "config": {"rules": [{"match": "@bad-.*:hs", "deny": ["invite"]}]}})
            } else {
                json!({"module": "chaos", "name": name, "failure_policy": policy,
                       "config": {"seed": self.seed, "callbacks": {"user_may_invite": self.behaviour(*name == "chaos_allow")}}})
            };
            entry["timeout"] = json!(format!("{}ms", self.timeout.as_millis()));
            modules.push(entry);
        }
        json!({
            "deadline": format!("{}ms", self.deadline.as_millis()),
            "defaults": {"restart": {
                "intensity": 1_000_000, "period": "1s", "backoff_min": "1ms", "backoff_max": "20ms",
                "random_factor": 0.2, "stash": 1_000_000,
                "watchdog": format!("{}ms", self.watchdog.as_millis()),
            }},
            "modules": modules,
        })
        .to_string()
    }

    /// Request number `i`: one inviter in ten is refused by the real module.
    pub fn request(&self, i: usize) -> UserMayInvite {
        let inviter = if i % 10 == 3 {
            format!("@bad-{i}:hs")
        } else {
            format!("@user-{i}:hs")
        };
        UserMayInvite {
            inviter,
            invitee: "@target:hs".into(),
            room_id: format!("!room{}:hs", i % 7),
        }
    }

    fn fate_of(&self, i: usize, name: &str) -> Fate {
        let args = CallbackRequest::UserMayInvite(self.request(i)).args_json();
        fate(
            self.seed,
            name,
            Callback::UserMayInvite,
            &args,
            &self.behaviour(name == "chaos_allow"),
        )
    }

    /// For each chaos module: its name, whether request `i` makes it panic, and hang.
    pub fn planned_failures(&self, i: usize) -> Vec<(String, bool, bool)> {
        self.chaos_modules()
            .into_iter()
            .map(|name| {
                let f = self.fate_of(i, &name);
                (name, f == Fate::Panic, f == Fate::Hang)
            })
            .collect()
    }

    /// What request `i` must be answered: Synapse's FirstDeny over the modules' planned
    /// answers, with each failure resolved by its module's policy.
    pub fn expected(&self, i: usize) -> Expected {
        let forbidden = |module: &str| Expected::Deny {
            module: module.into(),
            errcode: "M_FORBIDDEN".into(),
        };
        for (name, policy) in MODULES {
            if *name == "restrictions" {
                if self.request(i).inviter.starts_with("@bad-") {
                    return forbidden(name);
                }
                continue;
            }
            match (self.fate_of(i, name), *policy) {
                (Fate::Answer { .. }, _) => continue,
                // 42 is not a spam-checker answer: user_may_invite denies it (spec §3.1).
                (Fate::Invalid { .. }, _) => return forbidden(name),
                (Fate::Panic | Fate::Hang, "allow") => continue,
                (Fate::Panic | Fate::Hang, "deny") => return forbidden(name),
                (Fate::Panic | Fate::Hang, _) => {
                    return Expected::Error {
                        module: name.to_string(),
                    }
                }
            }
        }
        Expected::Allow
    }
}
