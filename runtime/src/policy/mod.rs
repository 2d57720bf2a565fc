//! A module's per-callback settings: its failure policy (what a timeout, crash,
//! unavailability or error means for a callback; the defaults reproduce Synapse, spec §1.6
//! and §3.11) and how it is invoked (at once with the others, or only once the modules before
//! it have answered without deciding, as Synapse calls them), and whether its answers are
//! applied at all (`staging`: enforce, audit, rollout).

pub mod staging;

pub use staging::{Mode, ModeTable, Rollout, Subject};

use glia_bus_schema::Callback;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// What a module's failure means for the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailurePolicy {
    /// The module has no opinion: carry on as if it had allowed (Synapse's "log and continue").
    Allow,
    /// The module's failure denies (Synapse's `on_create_room` on any exception).
    Deny,
    /// The request fails, as when Synapse lets the exception propagate (a 500).
    Error,
}

impl FailurePolicy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Allow => "allow",
            FailurePolicy::Deny => "deny",
            FailurePolicy::Error => "error",
        }
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FailurePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow" => Ok(FailurePolicy::Allow),
            "deny" => Ok(FailurePolicy::Deny),
            "error" => Ok(FailurePolicy::Error),
            other => Err(format!(
                "unknown failure policy {other:?}; use allow, deny or error"
            )),
        }
    }
}

/// When a module is invoked for a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invoke {
    /// With every other parallel module, as soon as the dispatch starts: the lowest latency,
    /// and the answer is still Synapse's, but a module after a deciding one is asked too
    /// (its answer is ignored).
    Parallel,
    /// Only once every module before it has answered without deciding, exactly when Synapse
    /// would call it: for modules with side effects (counting, learning, auditing, rate
    /// limiting).
    Sequential,
}

impl Invoke {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Invoke::Parallel => "parallel",
            Invoke::Sequential => "sequential",
        }
    }
}

impl fmt::Display for Invoke {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Invoke {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "parallel" => Ok(Invoke::Parallel),
            "sequential" => Ok(Invoke::Sequential),
            other => Err(format!(
                "unknown invocation mode {other:?}; use parallel or sequential"
            )),
        }
    }
}

macro_rules! deserialize_from_str {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_from_str!(FailurePolicy, Invoke, Mode);

/// A per-callback setting's built-in value, used where the config sets nothing. The failure
/// policy's comes from the rules table (`crate::rules`), which implements it there.
pub trait Builtin: Copy {
    /// The value for `callback`.
    fn builtin(callback: Callback) -> Self;
}

impl Builtin for Invoke {
    /// Parallel: the latency glia exists for; the answer is the same either way.
    fn builtin(_: Callback) -> Self {
        Invoke::Parallel
    }
}

/// Synapse's behaviour when a callback raises (spec §1.6).
pub fn synapse_default(callback: Callback) -> FailurePolicy {
    FailurePolicy::builtin(callback)
}

/// One setting per callback: per-callback values, a default, then the settings it inherits
/// (the top-level `defaults:`), then the built-in value.
#[derive(Debug, Clone)]
pub struct PerCallback<T> {
    per_callback: HashMap<Callback, T>,
    default: Option<T>,
    inherited: Option<Arc<PerCallback<T>>>,
}

impl<T> Default for PerCallback<T> {
    fn default() -> Self {
        PerCallback {
            per_callback: HashMap::new(),
            default: None,
            inherited: None,
        }
    }
}

/// A module's failure policies.
pub type PolicyTable = PerCallback<FailurePolicy>;

/// A module's invocation modes.
pub type InvokeTable = PerCallback<Invoke>;

impl<T: Builtin> PerCallback<T> {
    /// The built-in value for every callback.
    pub fn builtin() -> Self {
        Self::default()
    }

    /// A table whose unset entries fall back to `base`.
    pub fn over(base: PerCallback<T>) -> Self {
        PerCallback {
            inherited: Some(Arc::new(base)),
            ..Self::default()
        }
    }

    /// Sets the value of every callback not set individually.
    pub fn set_default(&mut self, value: T) {
        self.default = Some(value);
    }

    /// Sets one callback's value.
    pub fn set(&mut self, callback: Callback, value: T) {
        self.per_callback.insert(callback, value);
    }

    /// The value for `callback`.
    pub fn for_callback(&self, callback: Callback) -> T {
        self.configured(callback)
            .unwrap_or_else(|| T::builtin(callback))
    }

    fn configured(&self, callback: Callback) -> Option<T> {
        self.per_callback
            .get(&callback)
            .copied()
            .or(self.default)
            .or_else(|| self.inherited.as_ref().and_then(|t| t.configured(callback)))
    }
}
