//! Failure policies: what a module's timeout, crash, unavailability or error means for a
//! callback. The defaults reproduce Synapse (spec §1.6 and §3.11).

use glia_bus_schema::Callback;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
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

impl std::str::FromStr for FailurePolicy {
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

impl<'de> Deserialize<'de> for FailurePolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Synapse's behaviour when a callback raises (spec §1.6).
pub fn synapse_default(callback: Callback) -> FailurePolicy {
    use Callback::*;
    match callback {
        // Third-party yes/no checks fail open; notifications, presence routers and auth
        // checkers log and continue.
        CheckThreepidCanBeInvited
        | CheckVisibilityCanBeModified
        | CheckCanShutdownRoom
        | CheckCanDeactivateUser
        | OnNewEvent
        | OnProfileUpdate
        | OnUserDeactivationStatusChanged
        | OnThreepidBind
        | OnAddUserThirdPartyIdentifier
        | OnRemoveUserThirdPartyIdentifier
        | GetUsersForStates
        | GetInterestedUsers
        | CheckAuth
        | Check3pidAuth
        | OnLoggedOut => FailurePolicy::Allow,
        // Any exception in on_create_room denies the room creation.
        OnCreateRoom => FailurePolicy::Deny,
        // Spam checkers, check_event_allowed (v1.47+), account validity, registration names
        // and is_3pid_allowed propagate: a 500.
        _ => FailurePolicy::Error,
    }
}

/// A module's failure policies: per-callback settings, a default, then the settings it
/// inherits (the top-level `defaults:`), then Synapse's behaviour.
#[derive(Debug, Clone, Default)]
pub struct PolicyTable {
    per_callback: HashMap<Callback, FailurePolicy>,
    default: Option<FailurePolicy>,
    inherited: Option<Arc<PolicyTable>>,
}

impl PolicyTable {
    /// Synapse's behaviour for every callback.
    pub fn builtin() -> Self {
        Self::default()
    }

    /// A table whose unset entries fall back to `base`.
    pub fn over(base: PolicyTable) -> Self {
        PolicyTable {
            inherited: Some(Arc::new(base)),
            ..Self::default()
        }
    }

    /// Sets the policy of every callback not set individually.
    pub fn set_default(&mut self, policy: FailurePolicy) {
        self.default = Some(policy);
    }

    /// Sets one callback's policy.
    pub fn set(&mut self, callback: Callback, policy: FailurePolicy) {
        self.per_callback.insert(callback, policy);
    }

    /// The policy for `callback`.
    pub fn for_callback(&self, callback: Callback) -> FailurePolicy {
        self.per_callback
            .get(&callback)
            .copied()
            .or(self.default)
            .or_else(|| self.inherited.as_ref().map(|t| t.for_callback(callback)))
            .unwrap_or_else(|| synapse_default(callback))
    }
}
