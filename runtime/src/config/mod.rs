//! The config file: Synapse's `modules:` list plus glia's runtime settings, checked at load
//! time so every error names the file, line, module and key.

mod duration;
mod external;
pub mod files;
mod locate;
mod nats_urls;
pub mod python;
pub mod telemetry;

pub use duration::{parse_byte_size, parse_duration, ByteSize, ConfigDuration};
pub use locate::{Locations, Position};
pub use nats_urls::NatsUrls;
pub use python::PythonConfig;
pub use telemetry::TelemetryConfig;

use crate::policy::{Builtin, FailurePolicy, Invoke, InvokeTable, PerCallback, PolicyTable};
use crate::supervision::{RawRestartPolicy, RestartPolicy};
use glia_bus_schema::Callback;
use glia_module_api::{ConfigPath, ModuleFactory, ModuleRegistry, ParsedConfig};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
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
const IN_FLIGHT_RANGE: &str = "must be between 1 and 1048576";
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
const MAX_INGRESS_MAX_IN_FLIGHT: usize = 1_000_000;

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
    /// Higher runs earlier; equal priorities keep config order.
    pub priority: i32,
    /// How long one invocation may take.
    pub timeout: Duration,
    /// What a timeout or failure means, per callback.
    pub failure_policy: PolicyTable,
    /// When it is invoked, per callback: with the others at once, or only once the modules
    /// before it have answered without deciding.
    pub invoke: InvokeTable,
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

/// A per-callback setting as written (`failure_policy:`, `invoke:`): one value for every
/// callback, or a map of callback names (and `default`) to values.
#[derive(Debug, Clone)]
enum RawPerCallback<T> {
    All(T),
    PerCallback(BTreeMap<String, T>),
}

impl<'de, T: FromStr<Err = String> + Deserialize<'de>> Deserialize<'de> for RawPerCallback<T> {
    // By hand rather than `untagged`, so a bad value is reported at its own key with its own
    // message.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: FromStr<Err = String> + Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = RawPerCallback<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value, or a mapping of callback names (and `default`) to values")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawPerCallback<T>, E> {
                v.parse().map(RawPerCallback::All).map_err(E::custom)
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<RawPerCallback<T>, M::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: T = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(RawPerCallback::PerCallback(out))
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

type RawPolicy = RawPerCallback<FailurePolicy>;
type RawInvoke = RawPerCallback<Invoke>;

/// Sections of Synapse's `homeserver.yaml` that load modules the legacy way, and what replaces
/// each in glia (a config copied from Synapse must not have them silently ignored).
const LEGACY_SECTIONS: &[(&str, &str)] = &[
    ("spam_checker", "list the module under `modules:` (glia calls its spam-checker callbacks as Synapse's `register_spam_checker_callbacks` does)"),
    ("third_party_event_rules", "list the module under `modules:` (several third-party rules modules may then run, in order)"),
    ("password_providers", "list each provider under `modules:` (its auth checkers are registered with `register_password_auth_provider_callbacks`)"),
    ("presence", "list the presence router under `modules:` (it registers both get_users_for_states and get_interested_users)"),
];

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    timeout: Option<ConfigDuration>,
    failure_policy: Option<RawPolicy>,
    invoke: Option<RawInvoke>,
    max_in_flight: Option<usize>,
    restart: Option<RawRestartPolicy>,
    required: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    listen_unix: Option<std::path::PathBuf>,
    auth_token: Option<String>,
    auth_token_file: Option<String>,
    max_body_size: Option<ByteSize>,
    body_timeout: Option<ConfigDuration>,
    header_timeout: Option<ConfigDuration>,
    max_connections: Option<usize>,
    bus: Option<BusConfig>,
    deadline: Option<ConfigDuration>,
    shutdown_grace: Option<ConfigDuration>,
    #[serde(default)]
    defaults: RawDefaults,
    telemetry: Option<TelemetryConfig>,
    python: Option<python::RawPythonConfig>,
    modules: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    module: String,
    name: Option<String>,
    config: Option<Value>,
    priority: Option<i32>,
    timeout: Option<ConfigDuration>,
    failure_policy: Option<RawPolicy>,
    invoke: Option<RawInvoke>,
    max_in_flight: Option<usize>,
    restart: Option<RawRestartPolicy>,
    required: Option<bool>,
    placement: Option<Placement>,
    instances: Option<Instances>,
    callbacks: Option<Vec<String>>,
}

/// Which Python modules' configs a load checks by running their `parse_config` in a Python
/// host (which needs Python, and takes a few seconds): those this process will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PythonCheck {
    /// Every Python module (`glia check-config`).
    All,
    /// Those with this placement (`glia serve` runs the local ones, `glia worker` those on NATS).
    Placement(Placement),
}

/// Reads and checks a config file, and what it names outside itself (see [`load_str`]),
/// every Python module's config included.
pub fn load_file(path: &Path, registry: &ModuleRegistry) -> Result<GliaConfig, ConfigFileError> {
    load_file_with(path, registry, PythonCheck::All)
}

/// [`load_file`], checking the Python modules `check` selects.
pub fn load_file_with(
    path: &Path,
    registry: &ModuleRegistry,
    check: PythonCheck,
) -> Result<GliaConfig, ConfigFileError> {
    let file = path.display().to_string();
    let text = files::read_text(path, files::MAX_CONFIG_FILE).map_err(|e| ConfigFileError {
        file: file.clone(),
        position: None,
        module: None,
        key: String::new(),
        message: format!("cannot read the config file: {e}"),
    })?;
    Loader::new(&text, &file)?.load(registry, check)
}

/// Checks config text; `file` names it in errors. Besides the text, it checks what the
/// config names outside itself as `glia serve` and `glia worker` will use it — files (TLS,
/// credentials, the token, the decision log), the NATS seed, the open-file limit — so
/// `glia check-config` and a start refuse the same configs, with the same errors.
pub fn load_str(
    text: &str,
    file: &str,
    registry: &ModuleRegistry,
) -> Result<GliaConfig, ConfigFileError> {
    Loader::new(text, file)?.load(registry, PythonCheck::All)
}

struct Loader<'a> {
    file: &'a str,
    locations: Locations,
    root: Value,
}

impl<'a> Loader<'a> {
    fn new(text: &str, file: &'a str) -> Result<Self, ConfigFileError> {
        let syntax = |message: String, position: Option<Position>| ConfigFileError {
            file: file.to_owned(),
            position,
            module: None,
            key: String::new(),
            message: format!("invalid YAML: {message}"),
        };
        let locations = Locations::index(text).map_err(|(m, p)| syntax(m, Some(p)))?;
        let root: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                // An error serde-saphyr cannot place (a limit on the whole document, say) is
                // the document's: it points where the document starts.
                let position = e
                    .location()
                    .map(|l| Position {
                        line: l.line() as u32,
                        column: l.column() as u32,
                    })
                    .or_else(|| locations.find(&ConfigPath::root()));
                syntax(yaml_message(&e), position)
            })?
        };
        Ok(Loader {
            file,
            locations,
            root,
        })
    }

    fn error(
        &self,
        path: &ConfigPath,
        module: Option<(usize, String)>,
        message: impl Into<String>,
    ) -> ConfigFileError {
        let key = match &module {
            // Inside a module entry the key is relative to it: `config.rules[0].match`.
            Some(_) => ConfigPath(path.0.iter().skip(2).cloned().collect()).to_string(),
            None => path.to_string(),
        };
        ConfigFileError {
            file: self.file.to_owned(),
            position: self.locations.find(path),
            module,
            key,
            message: message.into(),
        }
    }

    fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        value: &Value,
        at: &ConfigPath,
        module: Option<(usize, String)>,
    ) -> Result<T, ConfigFileError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let inner = glia_module_api::path_of(e.path());
            self.error(&inner.under(at), module, e.into_inner().to_string())
        })
    }

    fn load(
        self,
        registry: &ModuleRegistry,
        python_check: PythonCheck,
    ) -> Result<GliaConfig, ConfigFileError> {
        let root_path = ConfigPath::root();
        for (section, replacement) in LEGACY_SECTIONS {
            if self.root.get(section).is_some() {
                return Err(self.error(
                    &root_path.clone().key(*section),
                    None,
                    format!("`{section}:` is Synapse's legacy way of loading modules and glia does not read it: {replacement}"),
                ));
            }
        }
        let raw: RawConfig = match &self.root {
            Value::Null => RawConfig::default(),
            Value::Object(_) => self.decode(&self.root, &root_path, None)?,
            _ => {
                return Err(self.error(
                    &root_path,
                    None,
                    "the config must be a mapping with a `modules:` list",
                ))
            }
        };

        if let Some(BusConfig::Nats(nats)) = &raw.bus {
            nats.url.server_addrs().map_err(|(index, message)| {
                let at = root_path.clone().key("bus").key("url");
                let at = match index {
                    Some(i) if nats.url.listed => at.index(i),
                    _ => at,
                };
                self.error(&at, None, message)
            })?;
            if !(1..=MAX_INGRESS_MAX_IN_FLIGHT).contains(&nats.ingress_limit()) {
                return Err(self.error(
                    &root_path.clone().key("bus").key("ingress_max_in_flight"),
                    None,
                    format!("must be between 1 and {MAX_INGRESS_MAX_IN_FLIGHT}"),
                ));
            }
        }

        let auth_token = self.auth_token(&raw)?;
        let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(self.error(
                &root_path.clone().key("max_connections"),
                None,
                "must be at least 1",
            ));
        }

        let default_policy = match &raw.defaults.failure_policy {
            Some(p) => self.per_callback(
                p,
                PolicyTable::builtin(),
                &root_path.clone().key("defaults").key("failure_policy"),
                None,
            )?,
            None => PolicyTable::builtin(),
        };
        let default_invoke = match &raw.defaults.invoke {
            Some(i) => self.per_callback(
                i,
                InvokeTable::builtin(),
                &root_path.clone().key("defaults").key("invoke"),
                None,
            )?,
            None => InvokeTable::builtin(),
        };
        let default_timeout = raw.defaults.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
        let default_in_flight = raw.defaults.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&default_in_flight) {
            return Err(self.error(
                &root_path.clone().key("defaults").key("max_in_flight"),
                None,
                IN_FLIGHT_RANGE,
            ));
        }

        let default_restart = match &raw.defaults.restart {
            Some(r) => r.apply(RestartPolicy::default()).map_err(|(key, m)| {
                self.error(
                    &root_path.clone().key("defaults").key("restart").key(key),
                    None,
                    m,
                )
            })?,
            None => RestartPolicy::default(),
        };
        let default_required = raw.defaults.required.unwrap_or(true);

        let mut modules: Vec<ModuleConfig> = Vec::new();
        let mut python_settings: Option<Arc<PythonConfig>> = None;
        for (index, entry) in raw.modules.iter().flatten().enumerate() {
            let at = root_path.clone().key("modules").index(index);
            // Errors name the entry as the operator does: its `name:`, else its type.
            let type_name = entry
                .get("name")
                .or_else(|| entry.get("module"))
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned();
            let label = Some((index, type_name.clone()));
            if !entry.is_object() {
                return Err(self.error(&at, label, "expected a mapping with a `module:` key"));
            }
            if entry.get("module").is_none() {
                return Err(self.error(&at, label, "missing key `module` (the module to load)"));
            }
            if !entry["module"].is_string() {
                return Err(self.error(&at.clone().key("module"), label, "expected a string"));
            }
            let raw_module: RawModule = self.decode(entry, &at, label.clone())?;
            let remote = raw_module.module == REMOTE_MODULE;
            let factory = if remote {
                Some(remote_factory())
            } else if python::is_python_module(&raw_module.module) {
                let python = self.python_settings(&raw, &at, &label, &mut python_settings)?;
                Some(crate::python::PythonFactory::shared(
                    crate::python::PythonModuleConfig {
                        name: raw_module
                            .name
                            .clone()
                            .unwrap_or_else(|| raw_module.module.clone()),
                        class: raw_module.module.clone(),
                        config: Value::Null,
                        timeout: raw_module.timeout.map_or(default_timeout, |d| d.0),
                        python,
                    },
                ))
            } else {
                registry.get(&raw_module.module)
            };
            let factory = factory.ok_or_else(|| {
                self.error(
                    &at.clone().key("module"),
                    label.clone(),
                    format!(
                        "unknown module {:?}; known modules: {}",
                        raw_module.module,
                        registry.names().join(", ")
                    ),
                )
            })?;
            let name = raw_module
                .name
                .clone()
                .unwrap_or_else(|| raw_module.module.clone());
            let label = Some((index, name.clone()));
            if let Some(other) = modules.iter().find(|m| m.name == name) {
                let key = if raw_module.name.is_some() {
                    "name"
                } else {
                    "module"
                };
                return Err(self.error(
                    &at.clone().key(key),
                    label,
                    format!("module name {name:?} is already used by modules[{}]; give this entry a distinct `name:`", other.index),
                ));
            }
            let config_value = match &raw_module.config {
                None | Some(Value::Null) => Value::Object(Default::default()),
                Some(v) => v.clone(),
            };
            let config = factory.parse_config(&config_value).map_err(|e| {
                self.error(
                    &e.path.under(&at.clone().key("config")),
                    label.clone(),
                    format!(
                        "bad config for module {:?}: {}",
                        raw_module.module, e.message
                    ),
                )
            })?;
            let failure_policy = match &raw_module.failure_policy {
                Some(p) => self.per_callback(
                    p,
                    default_policy.clone(),
                    &at.clone().key("failure_policy"),
                    label.clone(),
                )?,
                None => default_policy.clone(),
            };
            let invoke = match &raw_module.invoke {
                Some(i) => self.per_callback(
                    i,
                    default_invoke.clone(),
                    &at.clone().key("invoke"),
                    label.clone(),
                )?,
                None => default_invoke.clone(),
            };
            let max_in_flight = raw_module.max_in_flight.unwrap_or(default_in_flight);
            if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&max_in_flight) {
                return Err(self.error(&at.clone().key("max_in_flight"), label, IN_FLIGHT_RANGE));
            }
            let restart = match &raw_module.restart {
                Some(r) => r.apply(default_restart).map_err(|(key, m)| {
                    self.error(&at.clone().key("restart").key(key), label.clone(), m)
                })?,
                None => default_restart,
            };
            let placement = raw_module.placement.unwrap_or(Placement::Local);
            if placement == Placement::Nats {
                let key = at.clone().key("placement");
                if !matches!(raw.bus, Some(BusConfig::Nats(_))) {
                    return Err(self.error(
                        &key,
                        label,
                        "placement: nats needs the NATS bus (`bus: {type: nats, url: ...}`)",
                    ));
                }
                if !glia_bus_schema::subjects::valid_module_token(&name) {
                    return Err(self.error(&key, label, format!("the name {name:?} cannot be a NATS subject token: use letters, digits, `_` and `-`")));
                }
            } else if raw_module.callbacks.is_some() {
                return Err(self.error(
                    &at.clone().key("callbacks"),
                    label,
                    "`callbacks:` lists what a module on NATS serves; a local module registers its own",
                ));
            } else if remote {
                return Err(self.error(
                    &at.clone().key("module"),
                    label,
                    "module `remote` stands for a module another process serves over NATS; give it `placement: nats`",
                ));
            }
            // A module that says it is stateless gets an instance per dispatching thread
            // unless the entry says otherwise (a Python or remote module is not built here).
            let instances = raw_module.instances.unwrap_or(
                if factory.stateless() && !remote && !python::is_python_module(&raw_module.module) {
                    Instances::PerThread
                } else {
                    Instances::One
                },
            );
            if raw_module.instances == Some(Instances::PerThread) {
                let key = at.clone().key("instances");
                if remote {
                    return Err(self.error(
                        &key,
                        label,
                        "instances: per_thread is for a module glia builds; a `remote` module is served by another program",
                    ));
                }
                if python::is_python_module(&raw_module.module) {
                    return Err(self.error(
                        &key,
                        label,
                        "instances: per_thread is for Rust modules; a Python module runs in its host process",
                    ));
                }
            }
            let callbacks = match &raw_module.callbacks {
                None => None,
                Some(names) => Some(
                    names
                        .iter()
                        .enumerate()
                        .map(|(i, name)| {
                            name.parse::<Callback>().map_err(|_| {
                                self.error(
                                    &at.clone().key("callbacks").index(i),
                                    label.clone(),
                                    format!("unknown callback {name:?}"),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            if let Some(callbacks) = &callbacks {
                // The rules Synapse applies when a module registers (spec §2.2).
                glia_module_api::check_described(callbacks, &[]).map_err(|e| {
                    self.error(&at.clone().key("callbacks"), label.clone(), e.to_string())
                })?;
            }
            let priority = raw_module.priority.unwrap_or(0);
            let timeout = raw_module.timeout.map_or(default_timeout, |d| d.0);
            let required = raw_module.required.unwrap_or(default_required);
            let python = python::is_python_module(&raw_module.module)
                .then(|| python_settings.clone())
                .flatten();
            // The tables resolved per callback: their maps print in no fixed order.
            let per_callback: Vec<_> = Callback::ALL
                .iter()
                .map(|&c| (failure_policy.for_callback(c), invoke.for_callback(c)))
                .collect();
            let fingerprint = format!(
                "{:?}",
                (
                    (&name, &raw_module.module, &config_value, priority, timeout),
                    (per_callback, max_in_flight, &restart, required),
                    (placement, &callbacks, python, instances),
                )
            );
            modules.push(ModuleConfig {
                index,
                name,
                fingerprint,
                module: raw_module.module,
                factory,
                config,
                priority,
                timeout,
                failure_policy,
                invoke,
                max_in_flight,
                restart,
                required,
                placement,
                instances,
                callbacks,
            });
        }

        if let Some(python) = &python_settings {
            self.check_python_modules(&raw, &modules, python, python_check)?;
        }

        let telemetry = raw.telemetry.clone().unwrap_or_default();
        telemetry
            .check(matches!(raw.bus, Some(BusConfig::Nats(_))))
            .map_err(|(keys, message)| {
                let at = keys
                    .iter()
                    .fold(root_path.clone().key("telemetry"), |at, k| at.key(*k));
                self.error(&at, None, message)
            })?;

        let config = GliaConfig {
            source: self.file.to_owned(),
            listen: raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            listen_unix: raw.listen_unix.clone(),
            auth_token,
            max_body_size: raw.max_body_size.map_or(DEFAULT_MAX_BODY_SIZE, |b| b.0),
            // Durations are longer than 0 (`ConfigDuration` refuses 0).
            body_timeout: raw.body_timeout.map_or(DEFAULT_BODY_TIMEOUT, |d| d.0),
            header_timeout: raw.header_timeout.map_or(DEFAULT_HEADER_TIMEOUT, |d| d.0),
            max_connections,
            bus: raw.bus.clone().unwrap_or(BusConfig::Internal),
            deadline: raw.deadline.map_or(DEFAULT_DEADLINE, |d| d.0),
            shutdown_grace: raw.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |d| d.0),
            modules,
            telemetry,
        };
        external::check(&config, |name| std::env::var(name).ok())
            .map_err(|(at, message)| self.error(&at, None, message))?;
        Ok(config)
    }

    /// The bearer token, from `auth_token` or the file `auth_token_file` names (a regular
    /// file, read up to a cap). Errors name the key that was used.
    fn auth_token(&self, raw: &RawConfig) -> Result<Option<String>, ConfigFileError> {
        let (token, key) = match (&raw.auth_token, &raw.auth_token_file) {
            (Some(_), Some(_)) => {
                return Err(self.error(
                    &ConfigPath::root().key("auth_token_file"),
                    None,
                    "set auth_token or auth_token_file, not both",
                ))
            }
            (Some(t), None) => (t.clone(), "auth_token"),
            (None, Some(path)) => {
                let token =
                    files::read_text(Path::new(path), files::MAX_NAMED_FILE).map_err(|e| {
                        self.error(
                            &ConfigPath::root().key("auth_token_file"),
                            None,
                            format!("cannot read {path}: {e}"),
                        )
                    })?;
                (token.trim().to_owned(), "auth_token_file")
            }
            (None, None) => return Ok(None),
        };
        let at = ConfigPath::root().key(key);
        if token.is_empty() {
            return Err(self.error(&at, None, "the auth token is empty"));
        }
        // Callers send it in an `Authorization` header, which carries visible ASCII only: any
        // other token could never be presented.
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(self.error(
                &at,
                None,
                "the auth token must be visible ASCII (no spaces, control characters or \
                 non-ASCII letters): callers send it in an HTTP header",
            ));
        }
        Ok(Some(token))
    }

    /// The `python:` settings, checked once, for the first Python module that needs them.
    fn python_settings(
        &self,
        raw: &RawConfig,
        at: &ConfigPath,
        label: &Option<(usize, String)>,
        settings: &mut Option<Arc<PythonConfig>>,
    ) -> Result<Arc<PythonConfig>, ConfigFileError> {
        if let Some(settings) = settings {
            return Ok(settings.clone());
        }
        let Some(section) = &raw.python else {
            return Err(self.error(
                &at.clone().key("module"),
                label.clone(),
                "a Python module (a dotted path to its class) needs glia's `python:` section, with at least `server_name` (see docs/python-host.md)",
            ));
        };
        let checked = section.check().map_err(|(keys, message)| {
            let at = keys
                .iter()
                .fold(ConfigPath::root().key("python"), |at, k| at.key(*k));
            self.error(&at, None, message)
        })?;
        Ok(settings.insert(Arc::new(checked)).clone())
    }

    /// Runs the selected Python modules' `parse_config` in a host; the first refusal becomes
    /// an error at the key it names, inside the module's entry.
    fn check_python_modules(
        &self,
        raw: &RawConfig,
        modules: &[ModuleConfig],
        python: &PythonConfig,
        check: PythonCheck,
    ) -> Result<(), ConfigFileError> {
        let entries = raw.modules.as_deref().unwrap_or_default();
        let selected: Vec<_> = modules
            .iter()
            .filter(|m| m.factory.name() == crate::python::PYTHON_FACTORY)
            .filter(|m| match check {
                PythonCheck::All => true,
                PythonCheck::Placement(p) => m.placement == p,
            })
            .map(|m| glia_bus_schema::host::HostCheckModule {
                index: m.index,
                module: m.module.clone(),
                config: entries[m.index]
                    .get("config")
                    .filter(|c| !c.is_null())
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Default::default())),
            })
            .collect();
        if selected.is_empty() {
            return Ok(());
        }
        let result = crate::python::check::run(&python.interpreter, selected).map_err(|e| {
            self.error(
                &ConfigPath::root().key("python").key("interpreter"),
                None,
                e.to_string(),
            )
        })?;
        let Some(error) = result.errors.into_iter().next() else {
            return Ok(());
        };
        let index = error.index.unwrap_or_default();
        let module = modules.iter().find(|m| m.index == index);
        let label = module.map(|m| (m.index, m.name.clone()));
        let mut at = ConfigPath::root().key("modules").index(index);
        let mut value = entries.get(index);
        for segment in &error.error.path {
            // The host's path is text; a list's index is digits.
            value = match (value, segment.parse::<usize>()) {
                (Some(Value::Array(items)), Ok(i)) => {
                    at = at.index(i);
                    items.get(i)
                }
                (value, _) => {
                    at = at.key(segment.as_str());
                    value.and_then(|v| v.get(segment.as_str()))
                }
            };
        }
        let class = module.map_or("?", |m| m.module.as_str());
        let message = if error.error.path.first().map(String::as_str) == Some("config") {
            format!("bad config for module {class:?}: {}", error.error.message)
        } else {
            error.error.message // the class cannot be loaded: the message says so
        };
        Err(self.error(&at, label, message))
    }

    fn per_callback<T: Builtin>(
        &self,
        raw: &RawPerCallback<T>,
        base: PerCallback<T>,
        at: &ConfigPath,
        module: Option<(usize, String)>,
    ) -> Result<PerCallback<T>, ConfigFileError> {
        let mut table = PerCallback::over(base);
        match raw {
            RawPerCallback::All(value) => table.set_default(*value),
            RawPerCallback::PerCallback(map) => {
                for (name, value) in map {
                    if name == "default" {
                        table.set_default(*value);
                    } else {
                        let callback: Callback = name.parse().map_err(|_| {
                            self.error(
                                &at.clone().key(name),
                                module.clone(),
                                format!("unknown callback {name:?} (use a callback name such as user_may_invite, or `default`)"),
                            )
                        })?;
                        table.set(callback, *value);
                    }
                }
            }
        }
        Ok(table)
    }
}

/// A YAML error's message alone: the error names the file, line and column itself, and
/// serde-saphyr's own rendering adds a source snippet headed `<input>` and the position again.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::MessageFormatter;
    let mut inner = e;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    // Rendered without the renderer, so control characters are escaped here.
    serde_saphyr::UserMessageFormatter
        .format_message(inner)
        .escape_debug()
        .to_string()
}

/// The factory behind `module: remote`: it parses an empty config and cannot be built here.
fn remote_factory() -> Arc<dyn ModuleFactory> {
    struct Remote;
    impl glia_module_api::Module for Remote {
        const NAME: &'static str = REMOTE_MODULE;
        type Config = ();
        fn parse_config(config: &Value) -> Result<(), glia_module_api::ConfigError> {
            match config {
                Value::Object(m) if m.is_empty() => Ok(()),
                _ => Err(glia_module_api::ConfigError::new(
                    "a remote module's settings belong to the program that serves it",
                )),
            }
        }
        fn new(
            _: (),
            _: &mut glia_module_api::ModuleApi,
        ) -> Result<Self, glia_module_api::ModuleError> {
            Err(glia_module_api::ModuleError::failed(
                "module `remote` is served by another program over NATS; it cannot run here",
            ))
        }
    }
    ModuleRegistry::new()
        .with::<Remote>()
        .get(REMOTE_MODULE)
        .expect("just registered")
}
