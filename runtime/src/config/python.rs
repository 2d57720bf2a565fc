//! The `python:` section: how glia runs Python hosts for unmodified Synapse modules, and what
//! those modules' `ModuleApi` says of the homeserver.
//!
//! ```yaml
//! python:
//!   interpreter: /opt/venvs/matrix-synapse/bin/python   # has glia-python-host installed
//!   server_name: example.com
//!   public_baseurl: https://matrix.example.com/
//!   module_api: {url: "http://127.0.0.1:8788", secret_file: /etc/glia/module-api-secret}
//!   startup_timeout: 60s
//!   processes: 1           # host processes per module (a module entry's `python:` overrides
//!   max_requests: 10000    # these four); a host past max_requests (plus up to
//!   max_requests_jitter: 1000  # max_requests_jitter) or max_rss is replaced
//!   max_rss: 512MiB
//! ```

use super::{ByteSize, ConfigDuration};
use glia_bus_schema::host::{HomeserverSettings, ModuleApiChannel};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The interpreter glia runs hosts with unless `python.interpreter` says otherwise.
pub const DEFAULT_INTERPRETER: &str = "python3";
/// How long a host may take to load its module unless configured (importing Synapse takes
/// a few seconds on a slow machine).
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The `python:` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPythonConfig {
    interpreter: Option<String>,
    server_name: Option<String>,
    public_baseurl: Option<String>,
    worker_name: Option<String>,
    email_app_name: Option<String>,
    module_api: Option<RawModuleApi>,
    startup_timeout: Option<ConfigDuration>,
    processes: Option<usize>,
    max_requests: Option<u64>,
    max_requests_jitter: Option<u64>,
    max_rss: Option<ByteSize>,
}

/// How many host processes serve a Python module unless `processes` says otherwise.
pub const DEFAULT_PROCESSES: usize = 1;
/// The most host processes one module may have.
pub const MAX_PROCESSES: usize = 64;

/// How many host processes serve a module and when one is replaced by a fresh one (as
/// gunicorn's `workers`, `max_requests`, `max_requests_jitter`): the `python:` section's,
/// over which a module entry's own `python:` block may set each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostLimits {
    /// Host processes serving the module; each invocation goes to the least busy.
    #[serde(default)]
    pub processes: Option<usize>,
    /// Invocations a host serves before it is replaced.
    #[serde(default)]
    pub max_requests: Option<u64>,
    /// Up to this many more, drawn per host, so that hosts started together are not all
    /// replaced at once.
    #[serde(default)]
    pub max_requests_jitter: Option<u64>,
    /// The resident memory past which a host is replaced.
    #[serde(default)]
    pub max_rss: Option<ByteSize>,
}

impl HostLimits {
    /// `self` with each key `over` sets replaced.
    pub fn overridden_by(self, over: &HostLimits) -> HostLimits {
        HostLimits {
            processes: over.processes.or(self.processes),
            max_requests: over.max_requests.or(self.max_requests),
            max_requests_jitter: over.max_requests_jitter.or(self.max_requests_jitter),
            max_rss: over.max_rss.or(self.max_rss),
        }
    }

    /// How many host processes (`DEFAULT_PROCESSES` unless set).
    pub fn process_count(&self) -> usize {
        self.processes.unwrap_or(DEFAULT_PROCESSES)
    }

    /// The key that is out of range, and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=MAX_PROCESSES).contains(&self.process_count()) {
            return Err(("processes", format!("from 1 to {MAX_PROCESSES}")));
        }
        if self.max_requests == Some(0) {
            return Err((
                "max_requests",
                "at least 1 (leave it out for no bound)".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModuleApi {
    url: String,
    secret: Option<String>,
    secret_file: Option<String>,
}

/// A Python module's entry, as its host needs it.
#[derive(Debug, Clone)]
pub struct PythonModuleConfig {
    /// The instance name.
    pub name: String,
    /// The class, as a dotted path.
    pub class: String,
    /// Its `config:` block.
    pub config: Value,
    /// The module's timeout: how long after an invocation starts nobody waits for it.
    pub timeout: Duration,
    /// How to run the host.
    pub python: Arc<PythonConfig>,
}

/// How glia runs Python hosts (checked).
#[derive(Debug, Clone)]
pub struct PythonConfig {
    /// The Python interpreter with `glia_python_host` installed.
    pub interpreter: String,
    /// What the hosted modules' `ModuleApi` says of the homeserver.
    pub homeserver: HomeserverSettings,
    /// How long a host may take to load its module.
    pub startup_timeout: Duration,
    /// How many hosts serve a module and when one is replaced (with a module's override).
    pub limits: HostLimits,
}

impl RawPythonConfig {
    /// The checked settings, or the key that is wrong and why.
    pub(super) fn check(&self) -> Result<PythonConfig, (&'static [&'static str], String)> {
        let server_name = match &self.server_name {
            Some(name) if !name.is_empty() => name.clone(),
            _ => return Err((&["server_name"], "required: the homeserver's server name (as in homeserver.yaml), which Python modules read from their ModuleApi".into())),
        };
        let module_api = match &self.module_api {
            None => None,
            Some(channel) => {
                let secret = match (&channel.secret, &channel.secret_file) {
                    (Some(_), Some(_)) => {
                        return Err((
                            &["module_api", "secret_file"],
                            "set secret or secret_file, not both".into(),
                        ))
                    }
                    (Some(secret), None) => secret.clone(),
                    (None, Some(path)) => super::files::read_text(
                        std::path::Path::new(path),
                        super::files::MAX_NAMED_FILE,
                    )
                    .map_err(|e| {
                        (
                            &["module_api", "secret_file"][..],
                            format!("cannot read {path}: {e}"),
                        )
                    })?
                    .trim()
                    .to_owned(),
                    (None, None) => {
                        return Err((
                            &["module_api"],
                            "needs secret or secret_file (the bridge's module_api secret)".into(),
                        ))
                    }
                };
                if secret.is_empty() {
                    return Err((&["module_api", "secret"], "the secret is empty".into()));
                }
                if !(channel.url.starts_with("http://") || channel.url.starts_with("https://")) {
                    return Err((
                        &["module_api", "url"],
                        format!("{:?} is not an http(s) URL", channel.url),
                    ));
                }
                Some(ModuleApiChannel {
                    url: channel.url.trim_end_matches('/').to_owned(),
                    secret,
                })
            }
        };
        Ok(PythonConfig {
            interpreter: self
                .interpreter
                .clone()
                .unwrap_or_else(|| DEFAULT_INTERPRETER.to_owned()),
            homeserver: HomeserverSettings {
                server_name,
                public_baseurl: self.public_baseurl.clone(),
                worker_name: self.worker_name.clone(),
                email_app_name: self.email_app_name.clone(),
                module_api,
            },
            startup_timeout: self
                .startup_timeout
                .map_or(DEFAULT_STARTUP_TIMEOUT, |d| d.0),
            limits: self.limits()?,
        })
    }

    fn limits(&self) -> Result<HostLimits, (&'static [&'static str], String)> {
        let limits = HostLimits {
            processes: self.processes,
            max_requests: self.max_requests,
            max_requests_jitter: self.max_requests_jitter,
            max_rss: self.max_rss,
        };
        limits.check().map_err(|(key, why)| {
            let at: &'static [&'static str] = match key {
                "processes" => &["processes"],
                _ => &["max_requests"],
            };
            (at, why)
        })?;
        Ok(limits)
    }
}

/// Whether `module:` names a Python module's class (a dotted path, as in Synapse's
/// `homeserver.yaml`) rather than one of glia's own modules, whose names have no dots.
pub fn is_python_module(module: &str) -> bool {
    module.contains('.')
}
