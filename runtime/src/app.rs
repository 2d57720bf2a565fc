//! Starting glia from a config: module instances, plans, web resources, the coordinator.

use crate::bus::InProcessBus;
use crate::config::{BusKind, GliaConfig, ModuleConfig};
use crate::coordinator::{reducer, Coordinator, PlanError, Plans};
use crate::host::{spawn_module, ModuleActor, ModuleInstance, SpawnError};
use actix::Addr;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why glia could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A module's constructor failed.
    #[error("cannot start {0}")]
    Spawn(#[from] SpawnError),
    /// Two modules hold a single slot, or clash on a login type.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// A web resource path glia refuses.
    #[error("modules[{index}] ({name}): web resource {path:?}: {reason}")]
    WebPath {
        /// Module index.
        index: usize,
        /// Module name.
        name: String,
        /// The path.
        path: String,
        /// Why it is refused.
        reason: String,
    },
}

/// Where a web resource is served.
#[derive(Debug, Clone)]
pub struct WebRoute {
    /// Module index.
    pub module: usize,
    /// Index into the module's web resources.
    pub slot: usize,
}

/// Registered web resource paths; a path serves itself and everything below it.
#[derive(Debug, Clone, Default)]
pub struct WebRoutes {
    routes: BTreeMap<String, WebRoute>,
}

impl WebRoutes {
    /// The route for `path`: an exact match, else the longest registered prefix.
    pub fn find(&self, path: &str) -> Option<&WebRoute> {
        if let Some(route) = self.routes.get(path) {
            return Some(route);
        }
        self.routes
            .iter()
            .rev()
            .find(|(prefix, _)| {
                path.starts_with(prefix.as_str()) && path[prefix.len()..].starts_with('/')
            })
            .map(|(_, route)| route)
    }

    /// Every registered path.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }
}

/// One module as `/_glia/v1/modules` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleInfo {
    /// Its name.
    pub name: String,
    /// Its type (`module:`).
    pub module: String,
    /// Its position in `modules:`.
    pub index: usize,
    /// Its priority.
    pub priority: i32,
    /// `running` (supervision adds more states).
    pub state: &'static str,
    /// Callbacks it registered.
    pub callbacks: Vec<String>,
    /// Login types of its auth checkers.
    pub login_types: Vec<String>,
    /// Web resource paths it serves (after the first-wins rule).
    pub web_resources: Vec<String>,
}

/// A running glia: module instances and the coordinator over them.
pub struct Glia {
    coordinator: Arc<Coordinator>,
    instances: Vec<ModuleInstance>,
    infos: Vec<ModuleInfo>,
    web: WebRoutes,
    config: GliaConfig,
}

/// Path prefixes a module may not claim: Synapse's own APIs and glia's.
const RESERVED: &[(&str, &str)] = &[
    (
        "/_matrix",
        "paths under /_matrix belong to Synapse's APIs; register under /_synapse/client/ instead",
    ),
    (
        "/_glia",
        "paths under /_glia belong to glia's API; register under /_synapse/client/ instead",
    ),
    (
        "/health",
        "/health is glia's health check; register under /_synapse/client/ instead",
    ),
];

fn check_web_path(config: &ModuleConfig, path: &str) -> Result<(), StartError> {
    let refuse = |reason: &str| StartError::WebPath {
        index: config.index,
        name: config.name.clone(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if !path.starts_with('/') {
        return Err(refuse("a path must start with '/'"));
    }
    for (prefix, reason) in RESERVED {
        if path == *prefix || path.starts_with(&format!("{prefix}/")) {
            return Err(refuse(reason));
        }
    }
    if !path.starts_with("/_synapse/client/") {
        tracing::warn!(module = %config.name, %path, "web resource outside /_synapse/client/, the documented place");
    }
    Ok(())
}

impl Glia {
    /// Builds every module (each on its own thread), then the plans and the coordinator.
    /// Must run inside an actix system.
    pub async fn start(config: GliaConfig) -> Result<Glia, StartError> {
        let BusKind::Internal = config.bus;
        let mut instances = Vec::with_capacity(config.modules.len());
        for module in &config.modules {
            let instance = spawn_module(module).await?;
            tracing::info!(
                module = %module.name,
                callbacks = instance.summary.callbacks.len() + instance.summary.auth_checkers.len(),
                web_resources = instance.summary.web_resources.len(),
                "module started"
            );
            instances.push(instance);
        }

        let pairs: Vec<_> = config
            .modules
            .iter()
            .zip(instances.iter().map(|i| &i.summary))
            .collect();
        let plans = Plans::build(&pairs)?;

        // spec §2.4: the first module in config order wins a path; later claims are warned.
        let mut web = WebRoutes::default();
        let mut infos = Vec::with_capacity(instances.len());
        for (index, (module, instance)) in config.modules.iter().zip(&instances).enumerate() {
            let mut served = Vec::new();
            for (slot, path) in instance.summary.web_resources.iter().enumerate() {
                check_web_path(module, path)?;
                if let Some(owner) = web.routes.get(path) {
                    tracing::warn!(
                        module = %module.name,
                        %path,
                        owner = %config.modules[owner.module].name,
                        "web resource already registered by an earlier module; ignoring this one"
                    );
                    continue;
                }
                web.routes.insert(
                    path.clone(),
                    WebRoute {
                        module: index,
                        slot,
                    },
                );
                served.push(path.clone());
            }
            let mut login_types: Vec<String> = instance
                .summary
                .auth_checkers
                .iter()
                .map(|(t, _)| t.clone())
                .collect();
            login_types.dedup();
            infos.push(ModuleInfo {
                name: module.name.clone(),
                module: module.module.clone(),
                index,
                priority: module.priority,
                state: "running",
                callbacks: instance
                    .summary
                    .callbacks
                    .iter()
                    .map(|c| c.name().to_owned())
                    .collect(),
                login_types,
                web_resources: served,
            });
        }

        let bus = InProcessBus::new(
            config
                .modules
                .iter()
                .zip(&instances)
                .map(|(m, i)| (i.addr.clone(), m.max_in_flight)),
        );
        let coordinator = Arc::new(Coordinator::new(plans, Arc::new(bus), config.deadline));
        Ok(Glia {
            coordinator,
            instances,
            infos,
            web,
            config,
        })
    }

    /// The coordinator.
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    /// The config glia runs.
    pub fn config(&self) -> &GliaConfig {
        &self.config
    }

    /// Each module as `/_glia/v1/modules` lists it.
    pub fn modules(&self) -> &[ModuleInfo] {
        &self.infos
    }

    /// The web resources.
    pub fn web_routes(&self) -> &WebRoutes {
        &self.web
    }

    /// The actor of the module at `index` (config order).
    pub fn addr(&self, index: usize) -> Option<Addr<ModuleActor>> {
        self.instances.get(index).map(|i| i.addr.clone())
    }

    /// Module actor addresses, in config order.
    pub fn addrs(&self) -> Vec<Addr<ModuleActor>> {
        self.instances.iter().map(|i| i.addr.clone()).collect()
    }

    /// Every callback with modules: its reducer and its modules in plan order.
    pub fn plan_listing(&self) -> serde_json::Value {
        let plans = self.coordinator.plans();
        let mut out = serde_json::Map::new();
        for &callback in glia_bus_schema::Callback::ALL {
            let plan = plans.get(callback);
            if plan.entries.is_empty() {
                continue;
            }
            out.insert(
                callback.name().to_owned(),
                serde_json::json!({
                    "reducer": reducer(callback).name(),
                    "modules": plan.entries.iter().map(|e| serde_json::json!({
                        "name": &*e.name,
                        "timeout_ms": e.timeout.as_millis() as u64,
                        "failure_policy": e.policy.to_string(),
                    })).collect::<Vec<_>>(),
                }),
            );
        }
        serde_json::Value::Object(out)
    }

    /// Stops every module, in reverse config order.
    pub fn stop(mut self) {
        while let Some(instance) = self.instances.pop() {
            drop(instance);
        }
    }
}
