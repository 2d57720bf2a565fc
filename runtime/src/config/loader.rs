//! Reading a config: YAML to a located document, the top-level settings and the defaults,
//! each checked where it is read, so an error names the file, line and key.

use super::raw::{RawConfig, RawDefaults, RawPerCallback, LEGACY_SECTIONS};
use super::{
    files, BusConfig, ConfigFileError, GliaConfig, Locations, ModuleTypes, Position, PythonConfig,
    SourceMap, TelemetryConfig, DEFAULT_BODY_TIMEOUT, DEFAULT_DEADLINE, DEFAULT_HEADER_TIMEOUT,
    DEFAULT_LISTEN, DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_SHUTDOWN_GRACE, DEFAULT_TIMEOUT, IN_FLIGHT_RANGE, MAX_INGRESS_MAX_IN_FLIGHT,
    MAX_IN_FLIGHT_LIMIT,
};
use crate::policy::{Builtin, InvokeTable, PerCallback, PolicyTable};
use crate::supervision::RestartPolicy;
use glia_bus_schema::Callback;
use glia_module_api::ConfigPath;
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A config document being read: its text's locations and its value.
pub(super) struct Loader {
    pub(super) sources: SourceMap,
    root: Value,
}

/// The `defaults:` section, applied: what every module entry starts from.
pub(super) struct Defaults {
    pub(super) policy: PolicyTable,
    pub(super) invoke: InvokeTable,
    pub(super) timeout: Duration,
    pub(super) in_flight: usize,
    pub(super) restart: RestartPolicy,
    pub(super) required: bool,
}

impl Loader {
    /// Parses `text` (named `file` in errors) and indexes where each key is.
    pub(super) fn new(text: &str, file: &str) -> Result<Self, ConfigFileError> {
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
            sources: SourceMap {
                file: file.to_owned(),
                locations,
            },
            root,
        })
    }

    pub(super) fn error(
        &self,
        path: &ConfigPath,
        module: Option<(usize, String)>,
        message: impl Into<String>,
    ) -> ConfigFileError {
        self.sources.error(path, module, message)
    }

    pub(super) fn decode<T: for<'de> Deserialize<'de>>(
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

    /// Reads the whole document into a config: every setting checked, nothing outside the
    /// file looked at (each part checks what it will open or connect to when it is built).
    pub(super) fn load(self, types: &ModuleTypes) -> Result<GliaConfig, ConfigFileError> {
        self.refuse_empty()?;
        self.refuse_legacy_sections()?;
        let raw = self.raw()?;
        self.check_bus(&raw)?;
        let auth_token = self.auth_token(&raw)?;
        let (max_connections, max_connections_per_address) = self.connection_caps(&raw)?;
        let defaults = self.defaults(&raw.defaults)?;
        let modules = self.modules(&raw, &defaults, types)?;
        let telemetry = self.telemetry(&raw)?;
        let listen_unix_mode = self.unix_mode(&raw)?;
        Ok(GliaConfig {
            source: self.sources.file.clone(),
            listen: raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            listen_unix: raw.listen_unix.clone(),
            listen_unix_mode,
            listen_unix_group: raw.listen_unix_group.clone(),
            auth_token,
            max_body_size: raw.max_body_size.map_or(DEFAULT_MAX_BODY_SIZE, |b| b.0),
            // Durations are longer than 0 (`ConfigDuration` refuses 0).
            body_timeout: raw.body_timeout.map_or(DEFAULT_BODY_TIMEOUT, |d| d.0),
            header_timeout: raw.header_timeout.map_or(DEFAULT_HEADER_TIMEOUT, |d| d.0),
            max_connections,
            max_connections_per_address,
            bus: raw.bus.clone().unwrap_or(BusConfig::Internal),
            deadline: raw.deadline.map_or(DEFAULT_DEADLINE, |d| d.0),
            shutdown_grace: raw.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |d| d.0),
            modules,
            telemetry,
            log_format: raw.log_format.unwrap_or_default(),
            sources: Arc::new(self.sources),
        })
    }

    /// `max_connections` and `max_connections_per_address` (by default half the cap, so one
    /// address leaves the other half to everyone else).
    fn connection_caps(&self, raw: &RawConfig) -> Result<(usize, usize), ConfigFileError> {
        let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            let at = ConfigPath::root().key("max_connections");
            return Err(self.error(&at, None, "must be at least 1"));
        }
        let per_address = raw
            .max_connections_per_address
            .unwrap_or((max_connections / 2).max(1));
        if per_address == 0 || per_address > max_connections {
            let at = ConfigPath::root().key("max_connections_per_address");
            let message = format!("must be between 1 and max_connections ({max_connections})");
            return Err(self.error(&at, None, message));
        }
        Ok((max_connections, per_address))
    }

    /// `listen_unix_mode`: permission bits written in octal, as `chmod` takes them.
    fn unix_mode(&self, raw: &RawConfig) -> Result<Option<u32>, ConfigFileError> {
        let Some(text) = &raw.listen_unix_mode else {
            return Ok(None);
        };
        let at = ConfigPath::root().key("listen_unix_mode");
        match u32::from_str_radix(text, 8) {
            Ok(mode) if mode <= 0o777 && !text.is_empty() => Ok(Some(mode)),
            _ => Err(self.error(
                &at,
                None,
                format!("{text:?} is not a mode: write permission bits in octal, quoted, such as \"0660\""),
            )),
        }
    }

    /// An empty document (nothing, only comments, `~` or `{}`) is refused: it would serve
    /// with no modules, allowing every callback, which is more likely a file that was not
    /// written (or an empty volume mounted over it) than a choice. `modules: []` says it.
    fn refuse_empty(&self) -> Result<(), ConfigFileError> {
        let empty = match &self.root {
            Value::Null => true,
            Value::Object(settings) => settings.is_empty(),
            _ => false,
        };
        if !empty {
            return Ok(());
        }
        Err(self.error(
            &ConfigPath::root(),
            None,
            "the config is empty: list the modules under `modules:` (with no modules glia \
             allows every callback; write `modules: []` to run it so)",
        ))
    }

    fn refuse_legacy_sections(&self) -> Result<(), ConfigFileError> {
        for (section, replacement) in LEGACY_SECTIONS {
            if self.root.get(section).is_some() {
                return Err(self.error(
                    &ConfigPath::root().key(*section),
                    None,
                    format!("`{section}:` is Synapse's legacy way of loading modules and glia does not read it: {replacement}"),
                ));
            }
        }
        Ok(())
    }

    fn raw(&self) -> Result<RawConfig, ConfigFileError> {
        match &self.root {
            Value::Null => Ok(RawConfig::default()),
            Value::Object(_) => self.decode(&self.root, &ConfigPath::root(), None),
            _ => Err(self.error(
                &ConfigPath::root(),
                None,
                "the config must be a mapping with a `modules:` list",
            )),
        }
    }

    /// The NATS URLs parse, and the ingress bound is in range.
    fn check_bus(&self, raw: &RawConfig) -> Result<(), ConfigFileError> {
        let Some(BusConfig::Nats(nats)) = &raw.bus else {
            return Ok(());
        };
        let bus = ConfigPath::root().key("bus");
        nats.url.server_addrs().map_err(|(index, message)| {
            let at = bus.clone().key("url");
            let at = match index {
                Some(i) if nats.url.listed => at.index(i),
                _ => at,
            };
            self.error(&at, None, message)
        })?;
        if !(1..=MAX_INGRESS_MAX_IN_FLIGHT).contains(&nats.ingress_limit()) {
            return Err(self.error(
                &bus.key("ingress_max_in_flight"),
                None,
                format!("must be between 1 and {MAX_INGRESS_MAX_IN_FLIGHT}"),
            ));
        }
        Ok(())
    }

    fn defaults(&self, raw: &RawDefaults) -> Result<Defaults, ConfigFileError> {
        let at = ConfigPath::root().key("defaults");
        let policy = match &raw.failure_policy {
            Some(p) => self.per_callback(
                p,
                PolicyTable::builtin(),
                &at.clone().key("failure_policy"),
                None,
            )?,
            None => PolicyTable::builtin(),
        };
        let invoke = match &raw.invoke {
            Some(i) => {
                self.per_callback(i, InvokeTable::builtin(), &at.clone().key("invoke"), None)?
            }
            None => InvokeTable::builtin(),
        };
        let in_flight = raw.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&in_flight) {
            return Err(self.error(&at.clone().key("max_in_flight"), None, IN_FLIGHT_RANGE));
        }
        let restart = match &raw.restart {
            Some(r) => r
                .apply(RestartPolicy::default())
                .map_err(|(key, m)| self.error(&at.clone().key("restart").key(key), None, m))?,
            None => RestartPolicy::default(),
        };
        Ok(Defaults {
            policy,
            invoke,
            timeout: raw.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
            in_flight,
            restart,
            required: raw.required.unwrap_or(true),
        })
    }

    fn telemetry(&self, raw: &RawConfig) -> Result<TelemetryConfig, ConfigFileError> {
        let telemetry = raw.telemetry.clone().unwrap_or_default();
        telemetry
            .check(matches!(raw.bus, Some(BusConfig::Nats(_))))
            .map_err(|(keys, message)| {
                let at = keys
                    .iter()
                    .fold(ConfigPath::root().key("telemetry"), |at, k| at.key(*k));
                self.error(&at, None, message)
            })?;
        Ok(telemetry)
    }

    /// The bearer token, from `auth_token` or the file `auth_token_file` names (a regular
    /// file, read up to a cap). Errors name the key that was used.
    pub(super) fn auth_token(&self, raw: &RawConfig) -> Result<Option<String>, ConfigFileError> {
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
    pub(super) fn python_settings(
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

    pub(super) fn per_callback<T: Builtin>(
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

/// Reads and checks a config file as data: every setting, each module's own `config:` block
/// (a Rust module's, by its type's `parse_config`), nothing outside the file (each part
/// checks what it will open or connect to when it is built: see `app::check`).
pub fn parse_file(path: &Path, types: &ModuleTypes) -> Result<GliaConfig, ConfigFileError> {
    let file = path.display().to_string();
    let text = files::read_text(path, files::MAX_CONFIG_FILE).map_err(|e| ConfigFileError {
        file: file.clone(),
        position: None,
        module: None,
        key: String::new(),
        message: format!("cannot read the config file: {e}"),
    })?;
    parse_str(&text, &file, types)
}

/// [`parse_file`] for config text; `file` names it in errors.
pub fn parse_str(
    text: &str,
    file: &str,
    types: &ModuleTypes,
) -> Result<GliaConfig, ConfigFileError> {
    Loader::new(text, file)?.load(types)
}

/// The `log_format:` of the config file at `path`, read before logging starts (so even the
/// load's own messages come out in that format); `None` when the file cannot be read or has
/// no valid one — the load that follows reports any error.
pub fn peek_log_format(path: &Path) -> Option<crate::logging::LogFormat> {
    let text = files::read_text(path, files::MAX_CONFIG_FILE).ok()?;
    let root: Value = serde_saphyr::from_str(&text).ok()?;
    root.get("log_format")?.as_str()?.parse().ok()
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
