//! One entry of `modules:`: its module type, its own `config:` block parsed by that type,
//! and glia's settings for it (timeout, policies, restarts, placement, instances), each over
//! the `defaults:`.

use super::loader::{Defaults, Loader};
use super::raw::{RawConfig, RawModule};
use super::{
    python, BusConfig, ConfigFileError, Instances, ModuleConfig, ModuleTypes, Placement,
    PythonConfig, PythonModuleConfig, IN_FLIGHT_RANGE, MAX_IN_FLIGHT_LIMIT, REMOTE_MODULE,
};
use crate::policy::{Mode, ModeTable, Rollout};
use glia_bus_schema::Callback;
use glia_module_api::{ConfigPath, ModuleFactory, ModuleRegistry, ParsedConfig};
use serde_json::Value;
use std::sync::Arc;

/// An entry's place in `modules:` and the name errors give it.
struct Site {
    at: ConfigPath,
    label: Option<(usize, String)>,
}

impl Loader {
    /// Every entry of `modules:`, in order.
    pub(super) fn modules(
        &self,
        raw: &RawConfig,
        defaults: &Defaults,
        types: &ModuleTypes,
    ) -> Result<Vec<ModuleConfig>, ConfigFileError> {
        let mut modules: Vec<ModuleConfig> = Vec::new();
        let mut python: Option<Arc<PythonConfig>> = None;
        for (index, entry) in raw.modules.iter().flatten().enumerate() {
            let module = self.module(index, entry, raw, defaults, types, &modules, &mut python)?;
            modules.push(module);
        }
        Ok(modules)
    }

    #[allow(clippy::too_many_arguments)]
    fn module(
        &self,
        index: usize,
        entry: &Value,
        raw: &RawConfig,
        defaults: &Defaults,
        types: &ModuleTypes,
        earlier: &[ModuleConfig],
        python_settings: &mut Option<Arc<PythonConfig>>,
    ) -> Result<ModuleConfig, ConfigFileError> {
        let mut site = self.site(index, entry)?;
        let raw_module: RawModule = self.decode(entry, &site.at, site.label.clone())?;
        let remote = raw_module.module == REMOTE_MODULE;
        let is_python = python::is_python_module(&raw_module.module);
        let python = match is_python {
            true => Some(self.python_settings(raw, &site.at, &site.label, python_settings)?),
            false => None,
        };
        let python = self.host_limits(&raw_module, python, &site)?;
        let factory = self.factory(&raw_module, defaults, types, python.clone(), &site)?;
        let name = raw_module
            .name
            .clone()
            .unwrap_or_else(|| raw_module.module.clone());
        site.label = Some((index, name.clone()));
        self.check_unique(&name, &raw_module, earlier, &site)?;
        let (config, config_value) = self.module_config(&raw_module, factory.as_ref(), &site)?;
        let (failure_policy, invoke) = self.tables(&raw_module, defaults, &site)?;
        let (mode, rollout) = self.staging(&raw_module, &site)?;
        let max_in_flight = raw_module.max_in_flight.unwrap_or(defaults.in_flight);
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&max_in_flight) {
            let at = site.at.clone().key("max_in_flight");
            return Err(self.error(&at, site.label, IN_FLIGHT_RANGE));
        }
        let restart = match &raw_module.restart {
            Some(r) => r.apply(defaults.restart).map_err(|(key, m)| {
                self.error(
                    &site.at.clone().key("restart").key(key),
                    site.label.clone(),
                    m,
                )
            })?,
            None => defaults.restart,
        };
        let placement = self.placement(&raw_module, raw, &name, remote, &site)?;
        let instances = self.instances(&raw_module, factory.as_ref(), remote, is_python, &site)?;
        let callbacks = self.callbacks(&raw_module, &site)?;
        let mut module = ModuleConfig {
            index,
            name,
            fingerprint: String::new(),
            module: raw_module.module,
            factory,
            config,
            raw_config: config_value,
            priority: raw_module.priority.unwrap_or(0),
            timeout: raw_module.timeout.map_or(defaults.timeout, |d| d.0),
            failure_policy,
            invoke,
            mode,
            rollout,
            max_in_flight,
            restart,
            required: raw_module.required.unwrap_or(defaults.required),
            placement,
            instances,
            callbacks,
        };
        module.fingerprint = fingerprint(&module, python.as_deref());
        Ok(module)
    }

    /// The entry's `config:` block, as written and as its module type parses it.
    fn module_config(
        &self,
        raw: &RawModule,
        factory: &dyn ModuleFactory,
        site: &Site,
    ) -> Result<(ParsedConfig, Value), ConfigFileError> {
        let written = match &raw.config {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v) => v.clone(),
        };
        let parsed = factory.parse_config(&written).map_err(|e| {
            self.error(
                &e.path.under(&site.at.clone().key("config")),
                site.label.clone(),
                format!("bad config for module {:?}: {}", raw.module, e.message),
            )
        })?;
        Ok((parsed, written))
    }

    /// Where the entry is, after checking it is a mapping with a `module:` string.
    fn site(&self, index: usize, entry: &Value) -> Result<Site, ConfigFileError> {
        let at = ConfigPath::root().key("modules").index(index);
        // Errors name the entry as the operator does: its `name:`, else its type.
        let type_name = entry
            .get("name")
            .or_else(|| entry.get("module"))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let label = Some((index, type_name));
        if !entry.is_object() {
            return Err(self.error(&at, label, "expected a mapping with a `module:` key"));
        }
        if entry.get("module").is_none() {
            return Err(self.error(&at, label, "missing key `module` (the module to load)"));
        }
        if !entry["module"].is_string() {
            return Err(self.error(&at.clone().key("module"), label, "expected a string"));
        }
        Ok(Site { at, label })
    }

    /// The `python:` settings with the entry's own `python:` block (its host limits) over them.
    fn host_limits(
        &self,
        raw: &RawModule,
        python: Option<Arc<PythonConfig>>,
        site: &Site,
    ) -> Result<Option<Arc<PythonConfig>>, ConfigFileError> {
        let (Some(over), Some(settings)) = (&raw.python, &python) else {
            return match raw.python {
                Some(_) => Err(self.error(
                    &site.at.clone().key("python"),
                    site.label.clone(),
                    "a module's `python:` block is for Python modules (a dotted path to a class)",
                )),
                None => Ok(python),
            };
        };
        let limits = settings.limits.overridden_by(over);
        limits.check().map_err(|(key, why)| {
            let at = site.at.clone().key("python").key(key);
            self.error(&at, site.label.clone(), why)
        })?;
        Ok(Some(Arc::new(PythonConfig {
            limits,
            ..(**settings).clone()
        })))
    }

    /// The factory of the entry's module type: `remote`, a Python class, or a registered type.
    fn factory(
        &self,
        raw: &RawModule,
        defaults: &Defaults,
        types: &ModuleTypes,
        python: Option<Arc<PythonConfig>>,
        site: &Site,
    ) -> Result<Arc<dyn ModuleFactory>, ConfigFileError> {
        let factory = match (raw.module == REMOTE_MODULE, python, types.python) {
            (true, _, _) => Some(remote_factory()),
            (false, Some(python), Some(make)) => Some(make(PythonModuleConfig {
                name: raw.name.clone().unwrap_or_else(|| raw.module.clone()),
                class: raw.module.clone(),
                config: Value::Null,
                timeout: raw.timeout.map_or(defaults.timeout, |d| d.0),
                python,
            })),
            (false, Some(_), None) => {
                return Err(self.error(
                    &site.at.clone().key("module"),
                    site.label.clone(),
                    "Python modules cannot run in this process (it has no Python host)",
                ))
            }
            (false, None, _) => types.registry.get(&raw.module),
        };
        factory.ok_or_else(|| {
            self.error(
                &site.at.clone().key("module"),
                site.label.clone(),
                format!(
                    "unknown module {:?}; known modules: {}",
                    raw.module,
                    types.registry.names().join(", ")
                ),
            )
        })
    }

    fn check_unique(
        &self,
        name: &str,
        raw: &RawModule,
        earlier: &[ModuleConfig],
        site: &Site,
    ) -> Result<(), ConfigFileError> {
        let Some(other) = earlier.iter().find(|m| m.name == name) else {
            return Ok(());
        };
        let key = if raw.name.is_some() { "name" } else { "module" };
        Err(self.error(
            &site.at.clone().key(key),
            site.label.clone(),
            format!("module name {name:?} is already used by modules[{}]; give this entry a distinct `name:`", other.index),
        ))
    }

    /// The entry's failure policies and invocation modes, over the defaults'.
    fn tables(
        &self,
        raw: &RawModule,
        defaults: &Defaults,
        site: &Site,
    ) -> Result<(crate::policy::PolicyTable, crate::policy::InvokeTable), ConfigFileError> {
        let failure_policy = match &raw.failure_policy {
            Some(p) => self.per_callback(
                p,
                defaults.policy.clone(),
                &site.at.clone().key("failure_policy"),
                site.label.clone(),
            )?,
            None => defaults.policy.clone(),
        };
        let invoke = match &raw.invoke {
            Some(i) => self.per_callback(
                i,
                defaults.invoke.clone(),
                &site.at.clone().key("invoke"),
                site.label.clone(),
            )?,
            None => defaults.invoke.clone(),
        };
        Ok((failure_policy, invoke))
    }

    /// The entry's modes and its rollout: `rollout:` alone puts every callback in mode
    /// `rollout`; a mode `rollout` needs a `rollout:` to say the share, and a `rollout:` a
    /// callback in that mode.
    fn staging(
        &self,
        raw: &RawModule,
        site: &Site,
    ) -> Result<(ModeTable, Option<Rollout>), ConfigFileError> {
        let error = |key: &str, message: String| {
            self.error(&site.at.clone().key(key), site.label.clone(), message)
        };
        let mut mode = match &raw.mode {
            Some(m) => self.per_callback(
                m,
                ModeTable::builtin(),
                &site.at.clone().key("mode"),
                site.label.clone(),
            )?,
            None => ModeTable::builtin(),
        };
        if let Some(rollout) = &raw.rollout {
            rollout.check().map_err(|m| error("rollout", m))?;
            if raw.mode.is_none() {
                mode.set_default(Mode::Rollout);
            }
        }
        let rolled = Callback::ALL
            .iter()
            .any(|&c| mode.for_callback(c) == Mode::Rollout);
        match (rolled, raw.rollout) {
            (true, None) => Err(error(
                "mode",
                "mode `rollout` needs `rollout: {percent: N, by: sender}` to say who is enforced"
                    .into(),
            )),
            (false, Some(_)) => Err(error(
                "rollout",
                "`rollout:` is set but no callback's mode is `rollout`".into(),
            )),
            (_, rollout) => Ok((mode, rollout)),
        }
    }

    fn placement(
        &self,
        raw_module: &RawModule,
        raw: &RawConfig,
        name: &str,
        remote: bool,
        site: &Site,
    ) -> Result<Placement, ConfigFileError> {
        let placement = raw_module.placement.unwrap_or(Placement::Local);
        let label = site.label.clone();
        if placement == Placement::Nats {
            let key = site.at.clone().key("placement");
            if !matches!(raw.bus, Some(BusConfig::Nats(_))) {
                return Err(self.error(
                    &key,
                    label,
                    "placement: nats needs the NATS bus (`bus: {type: nats, url: ...}`)",
                ));
            }
            if !glia_bus_schema::subjects::valid_module_token(name) {
                return Err(self.error(&key, label, format!("the name {name:?} cannot be a NATS subject token: use letters, digits, `_` and `-`")));
            }
        } else if raw_module.callbacks.is_some() {
            return Err(self.error(
                &site.at.clone().key("callbacks"),
                label,
                "`callbacks:` lists what a module on NATS serves; a local module registers its own",
            ));
        } else if remote {
            return Err(self.error(
                &site.at.clone().key("module"),
                label,
                "module `remote` stands for a module another process serves over NATS; give it `placement: nats`",
            ));
        }
        Ok(placement)
    }

    /// A module that says it is stateless gets an instance per dispatching thread unless the
    /// entry says otherwise (a Python or remote module is not built here).
    fn instances(
        &self,
        raw: &RawModule,
        factory: &dyn ModuleFactory,
        remote: bool,
        is_python: bool,
        site: &Site,
    ) -> Result<Instances, ConfigFileError> {
        if raw.instances == Some(Instances::PerThread) {
            let key = site.at.clone().key("instances");
            if remote {
                return Err(self.error(
                    &key,
                    site.label.clone(),
                    "instances: per_thread is for a module glia builds; a `remote` module is served by another program",
                ));
            }
            if is_python {
                return Err(self.error(
                    &key,
                    site.label.clone(),
                    "instances: per_thread is for Rust modules; a Python module runs in its host process",
                ));
            }
        }
        Ok(raw
            .instances
            .unwrap_or(if factory.stateless() && !remote && !is_python {
                Instances::PerThread
            } else {
                Instances::One
            }))
    }

    /// `callbacks:` of a module on NATS, checked as Synapse checks a registration (spec §2.2).
    fn callbacks(
        &self,
        raw: &RawModule,
        site: &Site,
    ) -> Result<Option<Vec<Callback>>, ConfigFileError> {
        let Some(names) = &raw.callbacks else {
            return Ok(None);
        };
        let at = site.at.clone().key("callbacks");
        let callbacks = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                name.parse::<Callback>().map_err(|_| {
                    let message = format!("unknown callback {name:?}");
                    self.error(&at.clone().index(i), site.label.clone(), message)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        glia_module_api::check_described(&callbacks, &[])
            .map_err(|e| self.error(&at, site.label.clone(), e.to_string()))?;
        Ok(Some(callbacks))
    }
}

/// Everything that makes up the entry once defaults are applied (but not its position): a
/// reload keeps a module whose fingerprint is unchanged, and replaces it otherwise.
fn fingerprint(m: &ModuleConfig, python: Option<&PythonConfig>) -> String {
    // The tables resolved per callback: their maps print in no fixed order.
    let per_callback: Vec<_> = Callback::ALL
        .iter()
        .map(|&c| (m.failure_policy.for_callback(c), m.invoke.for_callback(c)))
        .collect();
    format!(
        "{:?}",
        (
            (&m.name, &m.module, &m.raw_config, m.priority, m.timeout),
            (per_callback, m.max_in_flight, &m.restart, m.required),
            (m.placement, &m.callbacks, python, m.instances),
        )
    )
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
