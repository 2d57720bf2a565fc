//! The NATS side of the contract: subjects, queue groups and headers (docs/PROTOCOL.md).

use crate::callbacks::Callback;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Prefix of every module subject.
pub const MODULE_PREFIX: &str = "glia.v1.module";
/// Prefix of the coordinator's callback subjects.
pub const CALLBACK_PREFIX: &str = "glia.v1.callbacks";
/// What coordinators subscribe to for homeserver requests.
pub const CALLBACKS_WILDCARD: &str = "glia.v1.callbacks.*";
/// The queue group coordinators share.
pub const COORDINATOR_QUEUE_GROUP: &str = "glia.v1.coordinator";
/// The last token of a module's describe subject.
pub const DESCRIBE: &str = "describe";
/// The last token of a module's web subject, which carries requests to its web resources.
pub const WEB: &str = "web";
/// Prefix of the subjects workers announce themselves on, one per module.
pub const ANNOUNCE_PREFIX: &str = "glia.v1.workers";
/// What coordinators subscribe to for workers' announcements.
pub const ANNOUNCE_WILDCARD: &str = "glia.v1.workers.*";
/// Prefix of the subjects that reach one worker, not its queue group.
pub const WORKER_PREFIX: &str = "glia.v1.worker";

/// Header names.
pub mod headers {
    /// The request id.
    pub const REQUEST_ID: &str = "Glia-Request-Id";
    /// Milliseconds since the Unix epoch after which nobody waits for the answer.
    pub const DEADLINE: &str = "Glia-Deadline";
    /// W3C trace context: the sender's span.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace context: vendor state, passed on as it came.
    pub const TRACESTATE: &str = "tracestate";
    /// On a coordinator's reply (HTTP or NATS): the id of the decision's record in the
    /// decision log and of its dispatch span (`glia.decision_id`).
    pub const DECISION_ID: &str = "Glia-Decision-Id";
    /// On a coordinator's HTTP callback reply: the generation of its routing when it
    /// answered. A lasting reply (`ExpiryReply::generation`) of another generation is over.
    pub const GENERATION: &str = "Glia-Generation";
}

/// Whether `name` can be a module's subject token: letters, digits, `_` and `-`.
pub fn valid_module_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `glia.v1.module.<module>.<callback>`.
pub fn module_subject(module: &str, callback: Callback) -> String {
    format!("{MODULE_PREFIX}.{module}.{}", callback.name())
}

/// `glia.v1.module.<module>.describe`.
pub fn describe_subject(module: &str) -> String {
    format!("{MODULE_PREFIX}.{module}.{DESCRIBE}")
}

/// `glia.v1.module.<module>.web`: requests to the module's web resources (a
/// [`WebCallRequest`](crate::web::WebCallRequest), answered by a
/// [`WebCallResponse`](crate::web::WebCallResponse)), served by the module's queue group.
pub fn web_subject(module: &str) -> String {
    format!("{MODULE_PREFIX}.{module}.{WEB}")
}

/// `glia.v1.module.<module>.>`: everything a worker hosting `module` answers.
pub fn module_wildcard(module: &str) -> String {
    format!("{MODULE_PREFIX}.{module}.>")
}

/// `glia.v1.module.<module>`: the queue group of a module's workers.
pub fn module_queue_group(module: &str) -> String {
    format!("{MODULE_PREFIX}.{module}")
}

/// `glia.v1.workers.<module>`: where the workers hosting `module` announce themselves.
pub fn announce_subject(module: &str) -> String {
    format!("{ANNOUNCE_PREFIX}.{module}")
}

/// `glia.v1.worker.<worker>.<module>`: the prefix of the subjects that reach `module` on
/// the worker `worker` alone.
pub fn worker_module_prefix(worker: &str, module: &str) -> String {
    format!("{WORKER_PREFIX}.{worker}.{module}")
}

/// `glia.v1.worker.<worker>.<module>.<callback>`: an invocation for that worker alone.
pub fn worker_subject(worker: &str, module: &str, callback: Callback) -> String {
    format!("{WORKER_PREFIX}.{worker}.{module}.{}", callback.name())
}

/// `glia.v1.worker.<worker>.<module>.*`: what the worker subscribes to, outside the queue
/// group.
pub fn worker_wildcard(worker: &str, module: &str) -> String {
    format!("{WORKER_PREFIX}.{worker}.{module}.*")
}

/// `glia.v1.callbacks.<callback>`.
pub fn callback_subject(callback: Callback) -> String {
    format!("{CALLBACK_PREFIX}.{}", callback.name())
}

/// What a module registered, as a worker describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Description {
    /// Callbacks, in registration order (`c<n>` slots).
    pub callbacks: Vec<Callback>,
    /// Auth checkers, in registration order (`a<n>` slots).
    #[serde(default)]
    pub auth_checkers: Vec<AuthCheckerDescription>,
    /// Web resource paths, which glia serves by sending their requests on the module's
    /// `web` subject.
    #[serde(default)]
    pub web_resources: Vec<String>,
    /// Those of `web_resources` that also serve every path below them (Twisted leaves).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub web_resource_subtrees: Vec<String>,
}

/// A worker's announcement on `glia.v1.workers.<module>`: it serves the module on its own
/// subjects (`glia.v1.worker.<worker>.<module>.<callback>`) and is alive. Coordinators route
/// invocations to announced workers they have heard from lately, so a worker that stops
/// announcing (stopped, paused, cut off) stops receiving work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Announcement {
    /// The worker's id: a subject token, unique per worker process.
    pub worker: String,
    /// How often it announces itself, in milliseconds.
    pub interval_ms: u64,
    /// Set once, when it drains: route nothing more to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
}

/// One auth checker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuthCheckerDescription {
    /// The login type.
    pub login_type: String,
    /// The fields the login dict must carry.
    pub fields: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert_eq!(
            module_subject("m-1", Callback::UserMayInvite),
            "glia.v1.module.m-1.user_may_invite"
        );
        assert_eq!(describe_subject("m"), "glia.v1.module.m.describe");
        assert_eq!(web_subject("m"), "glia.v1.module.m.web");
        assert!(Callback::ALL
            .iter()
            .all(|c| c.name() != WEB && c.name() != DESCRIBE));
        assert_eq!(module_wildcard("m"), "glia.v1.module.m.>");
        assert_eq!(module_queue_group("m"), "glia.v1.module.m");
        assert_eq!(
            callback_subject(Callback::IsUserExpired),
            "glia.v1.callbacks.is_user_expired"
        );
        assert_eq!(announce_subject("m"), "glia.v1.workers.m");
        assert_eq!(
            worker_subject("w1", "m", Callback::UserMayInvite),
            "glia.v1.worker.w1.m.user_may_invite"
        );
        assert_eq!(worker_wildcard("w1", "m"), "glia.v1.worker.w1.m.*");
        assert_eq!(worker_module_prefix("w1", "m"), "glia.v1.worker.w1.m");
        assert!(valid_module_token("py_blocklist-2"));
        for bad in ["", "a.b", "a*", "a>", "a b"] {
            assert!(!valid_module_token(bad), "{bad}");
        }
    }
}
