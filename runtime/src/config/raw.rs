//! The config as written: the shapes serde reads the file into, before defaults are applied
//! and each setting is checked.

use super::python::RawPythonConfig;
use super::restart::RawRestartPolicy;
use super::{BusConfig, ByteSize, ConfigDuration, Instances, Placement, TelemetryConfig};
use crate::logging::LogFormat;
use crate::policy::{FailurePolicy, Invoke, Mode, Rollout};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A per-callback setting as written (`failure_policy:`, `invoke:`): one value for every
/// callback, or a map of callback names (and `default`) to values.
#[derive(Debug, Clone)]
pub(super) enum RawPerCallback<T> {
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

pub(super) type RawPolicy = RawPerCallback<FailurePolicy>;
pub(super) type RawInvoke = RawPerCallback<Invoke>;
pub(super) type RawMode = RawPerCallback<Mode>;

/// Sections of Synapse's `homeserver.yaml` that load modules the legacy way, and what replaces
/// each in glia (a config copied from Synapse must not have them silently ignored).
pub(super) const LEGACY_SECTIONS: &[(&str, &str)] = &[
    ("spam_checker", "list the module under `modules:` (glia calls its spam-checker callbacks as Synapse's `register_spam_checker_callbacks` does)"),
    ("third_party_event_rules", "list the module under `modules:` (several third-party rules modules may then run, in order)"),
    ("password_providers", "list each provider under `modules:` (its auth checkers are registered with `register_password_auth_provider_callbacks`)"),
    ("presence", "list the presence router under `modules:` (it registers both get_users_for_states and get_interested_users)"),
];

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) timeout: Option<ConfigDuration>,
    pub(super) failure_policy: Option<RawPolicy>,
    pub(super) invoke: Option<RawInvoke>,
    pub(super) max_in_flight: Option<usize>,
    pub(super) restart: Option<RawRestartPolicy>,
    pub(super) required: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<String>,
    pub(super) listen_unix: Option<std::path::PathBuf>,
    pub(super) listen_unix_mode: Option<String>,
    pub(super) listen_unix_group: Option<String>,
    pub(super) auth_token: Option<String>,
    pub(super) auth_token_file: Option<String>,
    pub(super) max_body_size: Option<ByteSize>,
    pub(super) body_timeout: Option<ConfigDuration>,
    pub(super) header_timeout: Option<ConfigDuration>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_address: Option<usize>,
    pub(super) bus: Option<BusConfig>,
    pub(super) deadline: Option<ConfigDuration>,
    pub(super) shutdown_grace: Option<ConfigDuration>,
    pub(super) log_format: Option<LogFormat>,
    #[serde(default)]
    pub(super) defaults: RawDefaults,
    pub(super) telemetry: Option<TelemetryConfig>,
    pub(super) python: Option<RawPythonConfig>,
    pub(super) modules: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModule {
    pub(super) module: String,
    pub(super) name: Option<String>,
    pub(super) config: Option<Value>,
    pub(super) priority: Option<i32>,
    pub(super) timeout: Option<ConfigDuration>,
    pub(super) failure_policy: Option<RawPolicy>,
    pub(super) invoke: Option<RawInvoke>,
    pub(super) mode: Option<RawMode>,
    pub(super) rollout: Option<Rollout>,
    pub(super) max_in_flight: Option<usize>,
    pub(super) restart: Option<RawRestartPolicy>,
    pub(super) required: Option<bool>,
    pub(super) placement: Option<Placement>,
    pub(super) instances: Option<Instances>,
    pub(super) callbacks: Option<Vec<String>>,
    pub(super) python: Option<super::python::HostLimits>,
}
