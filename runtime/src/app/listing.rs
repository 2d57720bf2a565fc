//! What `GET /_glia/v1/modules` lists: each module (name, state, restarts, what it
//! registered) and each callback's plan.

use super::Glia;
use crate::coordinator::reducer;
use crate::host::ModuleState;
use serde::Serialize;

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
    /// starting, running, restarting, failed or stopped.
    pub state: ModuleState,
    /// Successful restarts.
    pub restarts: u64,
    /// Crashes.
    pub crashes: u64,
    /// The last crash's reason and time.
    pub last_crash: Option<crate::host::CrashInfo>,
    /// Invocations running now.
    pub in_flight: usize,
    /// Callbacks it registered.
    pub callbacks: Vec<String>,
    /// Login types of its auth checkers.
    pub login_types: Vec<String>,
    /// Its auth checkers: login type and the fields a login dict must carry, as Synapse's
    /// `auth_checkers` keys them.
    pub auth_checkers: Vec<AuthCheckerInfo>,
    /// Web resource paths it serves (after the first-wins rule).
    pub web_resources: Vec<String>,
    /// Those of `web_resources` that also serve every path below them.
    pub web_resource_subtrees: Vec<String>,
}

/// An auth checker as `/_glia/v1/modules` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AuthCheckerInfo {
    /// The login type.
    pub login_type: String,
    /// The fields it needs.
    pub fields: Vec<String>,
}

impl Glia {
    /// Each module as `/_glia/v1/modules` lists it.
    pub fn modules(&self) -> Vec<ModuleInfo> {
        let generation = self.shared.current.load();
        let summaries = generation
            .topology
            .summaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let web = generation.topology.web.load();
        generation
            .config
            .modules
            .iter()
            .zip(&generation.statuses)
            .zip(summaries)
            .map(|((module, status), summary)| {
                let summary = summary.unwrap_or_default();
                let mut login_types: Vec<String> = summary
                    .auth_checkers
                    .iter()
                    .map(|(t, _)| t.clone())
                    .collect();
                login_types.dedup();
                ModuleInfo {
                    name: module.name.clone(),
                    module: module.module.clone(),
                    index: module.index,
                    priority: module.priority,
                    state: status.state(),
                    restarts: status.restarts(),
                    crashes: status.crashes(),
                    last_crash: status.last_crash(),
                    in_flight: status.in_flight(),
                    callbacks: summary
                        .callbacks
                        .iter()
                        .map(|c| c.name().to_owned())
                        .collect(),
                    login_types,
                    auth_checkers: summary
                        .auth_checkers
                        .iter()
                        .map(|(login_type, fields)| AuthCheckerInfo {
                            login_type: login_type.clone(),
                            fields: fields.clone(),
                        })
                        .collect(),
                    web_resources: web
                        .of_module(module.index)
                        .iter()
                        .map(|r| r.path.clone())
                        .collect(),
                    web_resource_subtrees: web
                        .of_module(module.index)
                        .iter()
                        .filter(|r| r.subtree)
                        .map(|r| r.path.clone())
                        .collect(),
                }
            })
            .collect()
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
                        "invoke": e.invoke.to_string(),
                    })).collect::<Vec<_>>(),
                }),
            );
        }
        serde_json::Value::Object(out)
    }
}
