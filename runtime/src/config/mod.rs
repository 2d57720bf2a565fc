//! The config file: Synapse's `modules:` list plus glia's runtime settings, checked at load
//! time so every error names the file, line, module and key.

mod duration;
mod entry;
pub mod files;
mod loader;
mod locate;
mod nats_urls;
pub mod python;
mod raw;
mod restart;
pub mod telemetry;

pub use duration::{parse_byte_size, parse_duration, ByteSize, ConfigDuration};
pub use loader::{parse_file, parse_str, peek_log_format};
pub use locate::{Locations, Position};
pub use nats_urls::NatsUrls;
pub use python::{PythonConfig, PythonModuleConfig};
pub use telemetry::TelemetryConfig;

use crate::logging::LogFormat;
use crate::policy::{InvokeTable, ModeTable, PolicyTable, Rollout};
use crate::supervision::RestartPolicy;
use glia_bus_schema::Callback;
use glia_module_api::{ConfigPath, ModuleFactory, ModuleRegistry, ParsedConfig};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Where the HTTP server listens unless the config or `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// A module's timeout unless configured: generous, since Synapse has none (spec §1.2).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole-request deadline unless configured.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Requests one module may have in flight before callers wait (back-pressure).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// How long in-flight requests may take to finish after a shutdown signal, unless configured.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The largest `max_in_flight` accepted (each in-flight invocation holds a mailbox slot).
pub const MAX_IN_FLIGHT_LIMIT: usize = 1 << 20;
pub(crate) const IN_FLIGHT_RANGE: &str = "must be between 1 and 1048576";
/// The largest request body the HTTP API accepts unless configured.
pub const DEFAULT_MAX_BODY_SIZE: usize = 1 << 20;
/// How long a request's whole body may take to arrive unless configured.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request's head may take to arrive unless configured (actix-web's default).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP connections served at once unless configured.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

/// The example config glia runs when no file is given.
pub const EMBEDDED_CONFIG: &str = include_str!("../../../deploy/glia.example.yaml");
/// The name errors use for the embedded config.
pub const EMBEDDED_NAME: &str = "<embedded deploy/glia.example.yaml>";

/// A loaded, checked config.
#[derive(Clone)]
pub struct GliaConfig {
    /// The file it came from (for messages).
    pub source: String,
    /// `host:port` of the HTTP server.
    pub listen: String,
    /// A Unix socket the HTTP server also listens on (same routes, same token): a bridge on
    /// the same host skips TCP.
    pub listen_unix: Option<std::path::PathBuf>,
    /// The Unix socket's permission bits (`listen_unix_mode: "0660"`); without it the
    /// process's umask decides.
    pub listen_unix_mode: Option<u32>,
    /// The group the Unix socket is given (a name or a number), so a homeserver running as
    /// another user in that group can connect.
    pub listen_unix_group: Option<String>,
    /// The bearer token callers of the HTTP API must present, if any.
    pub auth_token: Option<String>,
    /// The largest request body accepted.
    pub max_body_size: usize,
    /// How long a request's whole body may take to arrive, from its head.
    pub body_timeout: Duration,
    /// How long a request's head may take to arrive, from its first byte (or from the
    /// connection's start, for its first request).
    pub header_timeout: Duration,
    /// HTTP connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// HTTP connections one peer address may hold at once (TCP only; an IPv6 address is
    /// counted by its /64); more are refused at once.
    pub max_connections_per_address: usize,
    /// Which bus carries invocations.
    pub bus: BusConfig,
    /// The whole-request deadline.
    pub deadline: Duration,
    /// After a shutdown signal, in-flight requests get this long before they are resolved
    /// through their failure policies.
    pub shutdown_grace: Duration,
    /// The modules, in config order.
    pub modules: Vec<ModuleConfig>,
    /// Traces, metrics and the decision log.
    pub telemetry: TelemetryConfig,
    /// How log lines are written (read at start; `--log-format` overrides it).
    pub log_format: LogFormat,
    /// Where each key was written, so a part that checks its section later (when it is
    /// built) can still name the file, line and key.
    pub sources: Arc<SourceMap>,
}

impl GliaConfig {
    /// `fault`, found by a part checking its section, as an error at its place in the file.
    pub fn locate(&self, fault: Fault) -> ConfigFileError {
        self.sources.error(&fault.at, fault.module, fault.message)
    }
}

/// What a part found wrong with its section of a config: the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The key at fault, from the document's root.
    pub at: ConfigPath,
    /// The module entry (index and name) the key is inside, if any.
    pub module: Option<(usize, String)>,
    /// What is wrong.
    pub message: String,
}

impl Fault {
    /// A fault at `at`, outside any module entry.
    pub fn new(at: ConfigPath, message: impl Into<String>) -> Fault {
        Fault {
            at,
            module: None,
            message: message.into(),
        }
    }
}

/// A config file's name and where each of its keys is.
#[derive(Debug, Default)]
pub struct SourceMap {
    file: String,
    locations: Locations,
}

impl SourceMap {
    /// An error at `path`, with the file, line and column, and the key relative to the module
    /// entry when there is one (`config.rules[0].match`).
    pub fn error(
        &self,
        path: &ConfigPath,
        module: Option<(usize, String)>,
        message: impl Into<String>,
    ) -> ConfigFileError {
        let key = match &module {
            Some(_) => ConfigPath(path.0.iter().skip(2).cloned().collect()).to_string(),
            None => path.to_string(),
        };
        ConfigFileError {
            file: self.file.clone(),
            position: self.locations.find(path),
            module,
            key,
            message: message.into(),
        }
    }
}

/// Makes the factory of a Python module entry (the Python host is a part above config, so
/// whoever loads a config brings it).
pub type PythonFactoryFn = fn(PythonModuleConfig) -> Arc<dyn ModuleFactory>;

/// The module types a config may name: the registry's, and Python classes when a factory for
/// them is given.
#[derive(Clone, Copy)]
pub struct ModuleTypes<'a> {
    /// The module types built into this binary.
    pub registry: &'a ModuleRegistry,
    /// Makes a Python module's factory; without it a Python module is refused.
    pub python: Option<PythonFactoryFn>,
}

/// Which bus carries invocations: `bus: internal` (the default), or
/// `bus: {type: nats, url: ..., ...}`.
#[derive(Debug, Clone, PartialEq)]
pub enum BusConfig {
    /// In-process actor addresses: no broker needed.
    Internal,
    /// NATS: modules with `placement: nats` are reached over it, and homeservers may call
    /// the coordinator over it.
    Nats(Box<NatsConfig>),
}

/// How to reach NATS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://host:port` (or `tls://`), or a cluster's URLs: a list, or comma-separated.
    pub url: NatsUrls,
    /// Token authentication.
    #[serde(default)]
    pub token: Option<String>,
    /// User and password authentication (both).
    #[serde(default)]
    pub user: Option<String>,
    /// See `user`.
    #[serde(default)]
    pub password: Option<String>,
    /// NKey authentication: the seed.
    #[serde(default)]
    pub nkey_seed: Option<String>,
    /// A `.creds` file (JWT and NKey).
    #[serde(default)]
    pub credentials_file: Option<std::path::PathBuf>,
    /// TLS settings.
    #[serde(default)]
    pub tls: Option<NatsTls>,
    /// How long connecting may take.
    #[serde(default)]
    pub connect_timeout: Option<ConfigDuration>,
    /// How many callback requests arriving over NATS the coordinator answers at once; more
    /// are refused at once, so a flood cannot grow glia's memory (default
    /// [`DEFAULT_INGRESS_MAX_IN_FLIGHT`]).
    #[serde(default)]
    pub ingress_max_in_flight: Option<usize>,
}

/// Callback requests over NATS answered at once unless `bus.ingress_max_in_flight` says
/// otherwise: ten times the HTTP server's default connection cap, since NATS multiplexes
/// many requests on one connection.
pub const DEFAULT_INGRESS_MAX_IN_FLIGHT: usize = 10_000;

/// The largest `bus.ingress_max_in_flight` accepted (a semaphore's permits are bounded).
pub(crate) const MAX_INGRESS_MAX_IN_FLIGHT: usize = 1_000_000;

impl NatsConfig {
    /// The bound on callback requests over NATS answered at once.
    pub fn ingress_limit(&self) -> usize {
        self.ingress_max_in_flight
            .unwrap_or(DEFAULT_INGRESS_MAX_IN_FLIGHT)
    }
}

/// TLS to NATS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsTls {
    /// Require TLS even if the server does not ask for it.
    #[serde(default)]
    pub required: bool,
    /// A CA certificate (PEM) to trust.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate (PEM), with `key_file`.
    #[serde(default)]
    pub cert_file: Option<std::path::PathBuf>,
    /// The client certificate's key (PEM).
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
}

impl<'de> Deserialize<'de> for BusConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(d)?;
        let kind = match &value {
            Value::String(s) => s.clone(),
            Value::Object(map) => match map.get("type") {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(D::Error::custom(
                        "a bus mapping needs `type: internal` or `type: nats`",
                    ))
                }
            },
            _ => {
                return Err(D::Error::custom(
                    "expected `internal` or a mapping such as `{type: nats, url: ...}`",
                ))
            }
        };
        match (kind.as_str(), value) {
            ("internal", Value::String(_)) => Ok(BusConfig::Internal),
            ("internal", Value::Object(map)) if map.len() == 1 => Ok(BusConfig::Internal),
            ("internal", _) => Err(D::Error::custom("the internal bus takes no settings")),
            ("nats", Value::Object(mut map)) => {
                map.remove("type");
                serde_path_to_error::deserialize(Value::Object(map))
                    .map(|c| BusConfig::Nats(Box::new(c)))
                    .map_err(|e| {
                        let path = e.path().to_string();
                        D::Error::custom(format!(
                            "NATS settings{}: {}",
                            if path == "." {
                                String::new()
                            } else {
                                format!(" at `{path}`")
                            },
                            e.into_inner()
                        ))
                    })
            }
            ("nats", _) => Err(D::Error::custom(
                "the NATS bus needs a url: `bus: {type: nats, url: \"nats://127.0.0.1:4222\"}`",
            )),
            (other, _) => Err(D::Error::custom(format!(
                "unknown bus {other:?}; use internal or nats"
            ))),
        }
    }
}

/// Where a module runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// In this process, as a supervised actor.
    Local,
    /// In a worker process (`glia worker`) or another program, reached over NATS.
    Nats,
}

/// How many instances of a local module run. Without `instances:`, a module that declares
/// itself stateless (`Module::STATELESS`) runs `per_thread`, any other `one`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Instances {
    /// One, on the module's own thread: every invocation hops to it.
    One,
    /// Also one on each thread that dispatches (an HTTP worker, the NATS ingress, a worker's
    /// message loop), which runs the module's handlers there with no thread hop. Only for a
    /// module that keeps no state between calls and never blocks its thread: it runs on
    /// glia's own threads.
    PerThread,
}

/// The `module:` name of a module another process serves over NATS (in any language).
pub const REMOTE_MODULE: &str = "remote";

/// One entry of `modules:`, checked.
#[derive(Clone)]
pub struct ModuleConfig {
    /// Position in `modules:`.
    pub index: usize,
    /// The instance's name: `name:`, or the module type's name.
    pub name: String,
    /// The module type (`module:`).
    pub module: String,
    /// Builds instances of the type.
    pub factory: Arc<dyn ModuleFactory>,
    /// The parsed `config:` block.
    pub config: ParsedConfig,
    /// The `config:` block as written (a Python module's is checked by its host).
    pub raw_config: Value,
    /// Higher runs earlier; equal priorities keep config order.
    pub priority: i32,
    /// How long one invocation may take.
    pub timeout: Duration,
    /// What a timeout or failure means, per callback.
    pub failure_policy: PolicyTable,
    /// When it is invoked, per callback: with the others at once, or only once the modules
    /// before it have answered without deciding.
    pub invoke: InvokeTable,
    /// Whether its answers are applied, per callback: enforced, audited, or rolled out.
    pub mode: ModeTable,
    /// For callbacks in mode `rollout`: the share of subjects it is enforced for.
    pub rollout: Option<Rollout>,
    /// Invocations in flight before callers wait.
    pub max_in_flight: usize,
    /// How crashes are restarted.
    pub restart: RestartPolicy,
    /// Whether glia refuses to start when the module's constructor fails.
    pub required: bool,
    /// Where it runs.
    pub placement: Placement,
    /// One instance, or one per dispatching thread besides.
    pub instances: Instances,
    /// For a module on NATS: the callbacks it serves, planned without asking its workers.
    pub callbacks: Option<Vec<Callback>>,
    /// Everything that makes up the entry once defaults are applied (but not its position):
    /// a reload keeps a module whose fingerprint is unchanged, and replaces it otherwise.
    pub fingerprint: String,
}

impl fmt::Debug for ModuleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleConfig")
            .field("index", &self.index)
            .field("name", &self.name)
            .field("module", &self.module)
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A config error: file, line and column, module (index and name), key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigFileError {
    /// The file.
    pub file: String,
    /// Where in it, when known.
    pub position: Option<Position>,
    /// The module entry (index and name), when the error is inside one.
    pub module: Option<(usize, String)>,
    /// The key, relative to the module entry when there is one.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        write!(f, ": ")?;
        if let Some((index, name)) = &self.module {
            write!(f, "modules[{index}] ({name}): ")?;
        }
        if !self.key.is_empty() {
            write!(f, "key `{}`: ", self.key)?;
        }
        write!(f, "{}", self.message)
    }
}
