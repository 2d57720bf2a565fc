//! The frames between glia and a Python host it runs as a child process
//! (`deploy/python-host/`, `glia_python_host child`), and the config check it asks a host for.
//!
//! A child host serves one unmodified Synapse module over its standard input and output, one
//! JSON frame per line. glia writes [`ToHost::Start`] first, then [`ToHost::Invoke`] and
//! [`ToHost::Web`] frames; the host answers [`FromHost::Ready`] (what the module registered)
//! or [`FromHost::Failed`] (it could not load it), then one [`FromHost::Reply`] per invoke and
//! one [`FromHost::WebReply`] per web request, matched by `id`, in any order. The invocation
//! and its reply, and the web request and its response, are the bus's own messages: the wire
//! contract is the same whether the module is reached over this pipe or over NATS.

use crate::envelope::{Invocation, InvocationReply};
use crate::subjects::Description;
use crate::web::{WebCallRequest, WebCallResponse};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A frame glia writes to a child host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToHost {
    /// The first frame: which module to load and how.
    Start(HostStart),
    /// One invocation of the module.
    Invoke(HostInvoke),
    /// One request to one of the module's web resources.
    Web(HostWebRequest),
}

/// Which module a child host loads, with what config, for which homeserver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostStart {
    /// The module's instance name in glia (for the host's log).
    pub name: String,
    /// The module's class as a dotted path, as in Synapse's `modules:` (`pkg.Class`).
    pub module: String,
    /// The module's `config:` block, given to its `parse_config`.
    pub config: Value,
    /// What the module's `ModuleApi` says of the homeserver.
    pub homeserver: HomeserverSettings,
}

/// The homeserver a hosted module believes it runs in (glia's `python:` settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HomeserverSettings {
    /// `ModuleApi.server_name`.
    pub server_name: String,
    /// `ModuleApi.public_baseurl` (default `https://<server_name>/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_baseurl: Option<String>,
    /// `ModuleApi.worker_name` (none: the main process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_name: Option<String>,
    /// `ModuleApi.email_app_name` (default `Matrix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_app_name: Option<String>,
    /// The bridge's `ModuleApi` channel, through which the module's data calls reach Synapse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_api: Option<ModuleApiChannel>,
}

/// Where the bridge answers `ModuleApi` calls, and the secret it wants.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModuleApiChannel {
    /// The bridge's listener, e.g. `http://127.0.0.1:8788`.
    pub url: String,
    /// The shared secret, sent as a bearer token.
    pub secret: String,
}

impl std::fmt::Debug for ModuleApiChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleApiChannel")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// One invocation, with the pipe's own id for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostInvoke {
    /// Unique among the frames in flight on this pipe; the reply carries it.
    pub id: u64,
    /// The invocation, as on the bus.
    pub invocation: Invocation,
    /// The W3C `traceparent` of the span glia invokes the module under (the coordinator's
    /// or the worker's), so the host's span for the callback joins glia's trace; absent
    /// when glia records no span. Over NATS it travels as the header of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The W3C `tracestate` that goes with `traceparent`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// One request to a module's web resource, with the pipe's own id for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostWebRequest {
    /// Unique among the frames in flight on this pipe; the reply carries it.
    pub id: u64,
    /// The request, as on the bus.
    #[serde(flatten)]
    pub request: WebCallRequest,
}

/// A frame a child host writes to glia.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FromHost {
    /// The module is loaded and registered this.
    Ready(HostReady),
    /// The module could not be loaded; the host exits.
    Failed(HostLoadError),
    /// The reply to an invoke frame.
    Reply(HostReply),
    /// The response to a web frame.
    WebReply(HostWebResponse),
}

/// What the loaded module registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostReady {
    /// Its callbacks, auth checkers and web resource paths.
    pub description: Description,
    /// The web resource paths that also serve every path below them (Twisted leaves).
    #[serde(default)]
    pub subtrees: Vec<String>,
}

/// Why a module cannot be loaded or its config is refused: where in its entry (`module` for
/// an import error, `config` and the module's own `ConfigError` path for a refused config,
/// nothing for a constructor that raised), and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HostLoadError {
    /// The keys (and list indices, as digits) from the module's entry to the bad value.
    #[serde(default)]
    pub path: Vec<String>,
    /// What is wrong.
    pub message: String,
}

/// The reply to one invoke frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostReply {
    /// The invoke frame's id.
    pub id: u64,
    /// The invocation's reply, as on the bus.
    pub reply: InvocationReply,
}

/// The response to one web frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostWebResponse {
    /// The web frame's id.
    pub id: u64,
    /// The response, as on the bus.
    #[serde(flatten)]
    pub response: WebCallResponse,
}

/// What `glia check-config` asks a host (`glia_python_host check`, on its standard input):
/// run these modules' `parse_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostCheck {
    /// The Python modules of the config.
    pub modules: Vec<HostCheckModule>,
}

/// One module to check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostCheckModule {
    /// Its index in `modules:`.
    pub index: usize,
    /// Its class, as a dotted path.
    pub module: String,
    /// Its `config:` block.
    pub config: Value,
}

/// The host's answer to a [`HostCheck`] (on its standard output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HostCheckResult {
    /// The first error of each module that has one.
    pub errors: Vec<HostCheckError>,
}

/// One module's config error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HostCheckError {
    /// The module's index in `modules:`.
    pub index: Option<usize>,
    /// Where and what.
    #[serde(flatten)]
    pub error: HostLoadError,
}
