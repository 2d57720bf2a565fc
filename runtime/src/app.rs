//! Starting glia from a config: supervised modules, plans, web resources, the coordinator;
//! and stopping it.

use crate::bus::{InProcessBus, NatsBus, RoutedBus};
use crate::config::{BusConfig, GliaConfig, Instances, ModuleConfig, Placement};
use crate::coordinator::{reducer, Coordinator, PlanError, Plans};
use crate::host::{
    spawn_module, ModuleActor, ModuleInstance, ModuleState, ModuleStatus, PerThread,
    RegistrationSummary, SpawnError,
};
use crate::http::routes::{WebRoute, WebRoutes};
use crate::telemetry::{ModuleGauge, Role, Telemetry};
use actix::Addr;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Why glia could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The bus could not be reached.
    #[error("{0}")]
    Bus(String),
    /// A required module's constructor failed.
    #[error("cannot start {0}")]
    Spawn(#[from] SpawnError),
    /// Two modules hold a single slot, or clash on a login type.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// Telemetry cannot start as configured.
    #[error("{0}")]
    Telemetry(#[from] crate::telemetry::TelemetryError),
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

/// The modules' registrations, from which plans and web routes are derived. A module that
/// failed to start registers later, when its probe restart first succeeds.
struct Topology {
    configs: Vec<ModuleConfig>,
    summaries: Mutex<Vec<Option<RegistrationSummary>>>,
    web: ArcSwap<WebRoutes>,
    coordinator: OnceLock<Arc<Coordinator>>,
}

impl Topology {
    /// Plans and web routes for the registrations known now.
    fn derive(
        &self,
        summaries: &[Option<RegistrationSummary>],
    ) -> Result<(Plans, WebRoutes), StartError> {
        let empty = RegistrationSummary::default();
        let pairs: Vec<_> = self
            .configs
            .iter()
            .zip(summaries)
            .map(|(c, s)| (c, s.as_ref().unwrap_or(&empty)))
            .collect();
        let plans = Plans::build(&pairs)?;
        // spec §2.4: the first module in config order wins a path; later claims are warned.
        let mut web = WebRoutes::default();
        for (index, (module, summary)) in pairs.iter().enumerate() {
            for (slot, resource) in summary.web_resources.iter().enumerate() {
                let path = &resource.path;
                check_web_path(module, path)?;
                if let Some(owner) = web.has(path) {
                    tracing::warn!(
                        module = %module.name,
                        %path,
                        owner = %self.configs[owner.module].name,
                        "web resource already registered by an earlier module; ignoring this one"
                    );
                    continue;
                }
                web.insert(WebRoute {
                    module: index,
                    slot,
                    path: path.clone(),
                    subtree: resource.subtree,
                });
            }
        }
        Ok((plans, web))
    }

    /// A module registered (at start-up, or later after failing to start).
    fn register(&self, index: usize, summary: RegistrationSummary) {
        let mut summaries = self.summaries.lock().unwrap_or_else(|e| e.into_inner());
        summaries[index] = Some(summary);
        let Some(coordinator) = self.coordinator.get() else {
            return;
        };
        match self.derive(&summaries) {
            Ok((plans, web)) => {
                coordinator.set_plans(plans);
                self.web.store(Arc::new(web));
                tracing::info!(module = %self.configs[index].name, "module registered; plans updated");
            }
            Err(e) => {
                tracing::error!(module = %self.configs[index].name, error = %e, "cannot plan the module's registrations")
            }
        }
    }
}

/// A running glia: supervised modules and the coordinator over them.
pub struct Glia {
    coordinator: Arc<Coordinator>,
    topology: Arc<Topology>,
    bus: Arc<InProcessBus>,
    statuses: Vec<Arc<ModuleStatus>>,
    instances: Arc<Mutex<Vec<Option<ModuleInstance>>>>,
    stopping: Arc<AtomicBool>,
    nats: Option<async_nats::Client>,
    ingress: Mutex<Option<actix_rt::task::JoinHandle<()>>>,
    telemetry: Arc<Telemetry>,
    config: GliaConfig,
}

/// Start-up choices that are not in the config file.
#[derive(Default)]
pub struct StartOptions {
    /// Spans go to this provider instead of the exporter the config names (tests bring
    /// an in-memory exporter this way).
    pub tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// How often a remote module that has not described itself is asked again.
const REMOTE_RETRY: Duration = Duration::from_secs(2);

/// What came of asking a remote module to describe itself.
enum Described {
    /// It answered and is planned.
    Planned,
    /// No worker answered (yet).
    Unavailable,
    /// It answered registrations Synapse would refuse (spec §2.2); it is not planned.
    Refused(glia_module_api::RegistrationError),
}

/// Asks the workers of remote module `name` what it registered, and plans it if they answer
/// with registrations Synapse would accept.
async fn describe_remote(
    client: &async_nats::Client,
    topology: &Topology,
    index: usize,
    name: &str,
    status: &ModuleStatus,
) -> Described {
    let described = if client.connection_state() == async_nats::connection::State::Connected {
        crate::bus::nats::describe(client, name, Duration::from_secs(2)).await
    } else {
        Err("NATS is not connected".to_owned())
    };
    match described {
        Ok(description) => {
            let summary = RegistrationSummary {
                callbacks: description.callbacks,
                auth_checkers: description
                    .auth_checkers
                    .into_iter()
                    .map(|a| (a.login_type, a.fields))
                    .collect(),
                // Web resources are not served over NATS (yet).
                web_resources: Vec::new(),
            };
            if let Err(e) =
                glia_module_api::check_described(&summary.callbacks, &summary.auth_checkers)
            {
                tracing::error!(module = %name, error = %e, "remote module registered what Synapse refuses; it is not planned");
                status.set_state(ModuleState::Failed);
                return Described::Refused(e);
            }
            topology.register(index, summary);
            status.set_state(ModuleState::Running);
            tracing::info!(module = %name, "remote module described itself");
            Described::Planned
        }
        Err(reason) => {
            if status.state() != ModuleState::Failed {
                tracing::warn!(module = %name, %reason, "remote module not available; its callbacks are not planned until it is");
            }
            status.set_state(ModuleState::Failed);
            Described::Unavailable
        }
    }
}

impl Glia {
    /// Builds every module (each on its own thread, under its supervisor), then the plans and
    /// the coordinator. Must run inside an actix system.
    pub async fn start(config: GliaConfig) -> Result<Glia, StartError> {
        Glia::start_with(config, StartOptions::default()).await
    }

    /// [`Glia::start`] with choices the config file does not make.
    pub async fn start_with(config: GliaConfig, options: StartOptions) -> Result<Glia, StartError> {
        let (nats, refusals) = match &config.bus {
            BusConfig::Nats(settings) => {
                let (client, refusals) = crate::bus::nats::connect(settings, "coordinator")
                    .await
                    .map_err(StartError::Bus)?;
                (Some(client), refusals)
            }
            BusConfig::Internal => (None, Arc::default()),
        };
        let topology = Arc::new(Topology {
            configs: config.modules.clone(),
            summaries: Mutex::new(vec![None; config.modules.len()]),
            web: ArcSwap::from_pointee(WebRoutes::default()),
            coordinator: OnceLock::new(),
        });
        let statuses: Vec<Arc<ModuleStatus>> = config
            .modules
            .iter()
            .map(|_| Arc::new(ModuleStatus::default()))
            .collect();
        let gauges = config
            .modules
            .iter()
            .zip(&statuses)
            .filter(|(m, _)| m.placement == Placement::Local)
            .map(|(m, status)| ModuleGauge {
                name: m.name.as_str().into(),
                status: status.clone(),
            })
            .collect();
        let telemetry = Arc::new(Telemetry::start(
            &config.telemetry,
            Role::Coordinator,
            config.modules.len(),
            gauges,
            nats.clone(),
            options.tracer_provider,
        )?);
        let mut instances: Vec<Option<ModuleInstance>> = Vec::with_capacity(config.modules.len());
        for (index, module) in config.modules.iter().enumerate() {
            let status = statuses[index].clone();
            if module.placement == Placement::Nats {
                instances.push(None);
                continue;
            }
            let weak = Arc::downgrade(&topology);
            let on_registered = Arc::new(move |summary| {
                if let Some(topology) = weak.upgrade() {
                    topology.register(index, summary);
                }
            });
            let instance = match spawn_module(module, status, on_registered).await {
                Ok(instance) => instance,
                Err(e) => {
                    for started in instances.drain(..).rev().flatten() {
                        started.stop().await;
                    }
                    return Err(e.into());
                }
            };
            tracing::info!(module = %module.name, state = ?instance.status.state(), "module started");
            instances.push(Some(instance));
        }
        // Modules served over NATS: ask their workers what they registered.
        if let Some(client) = &nats {
            for (index, module) in config.modules.iter().enumerate() {
                match (&module.placement, &module.callbacks) {
                    (Placement::Nats, Some(declared)) => {
                        topology.register(
                            index,
                            RegistrationSummary {
                                callbacks: declared.clone(),
                                ..RegistrationSummary::default()
                            },
                        );
                        statuses[index].set_state(ModuleState::Running);
                    }
                    (Placement::Nats, None) => {
                        let described = describe_remote(
                            client,
                            &topology,
                            index,
                            &module.name,
                            &statuses[index],
                        )
                        .await;
                        if let (Described::Refused(e), true) = (described, module.required) {
                            for started in instances.drain(..).rev().flatten() {
                                started.stop().await;
                            }
                            return Err(StartError::Spawn(SpawnError {
                                index,
                                name: module.name.clone(),
                                reason: e.to_string(),
                            }));
                        }
                    }
                    _ => {}
                }
            }
        }

        let derived = {
            let summaries = topology.summaries.lock().unwrap_or_else(|e| e.into_inner());
            topology.derive(&summaries)
        };
        let (plans, web) = match derived {
            Ok(derived) => derived,
            Err(e) => {
                for started in instances.into_iter().rev().flatten() {
                    started.stop().await;
                }
                return Err(e);
            }
        };
        topology.web.store(Arc::new(web));
        let bus = Arc::new(InProcessBus::new(
            config
                .modules
                .iter()
                .zip(&instances)
                .map(|(m, i)| i.as_ref().map(|i| (i.addr.clone(), m.max_in_flight))),
        ));
        for (index, module) in config.modules.iter().enumerate() {
            if module.instances == Instances::PerThread && instances[index].is_some() {
                bus.run_per_thread(index, PerThread::new(module, statuses[index].clone()));
            }
        }
        let nats_bus = nats.clone().map(|client| {
            let names = config
                .modules
                .iter()
                .map(|m| Arc::<str>::from(m.name.as_str()))
                .collect();
            Arc::new(NatsBus::new(client, names, refusals))
        });
        let placements = config.modules.iter().map(|m| m.placement).collect();
        let routed = RoutedBus::new(bus.clone(), nats_bus, placements);
        let coordinator = Arc::new(
            Coordinator::new(plans, Arc::new(routed), config.deadline)
                .with_telemetry(telemetry.clone()),
        );
        let _ = topology.coordinator.set(coordinator.clone());
        // A module whose probe succeeded while the plans were being built registered too early
        // to be planned: plan once more with everything known now.
        {
            let summaries = topology.summaries.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok((plans, web)) = topology.derive(&summaries) {
                coordinator.set_plans(plans);
                topology.web.store(Arc::new(web));
            }
        }
        let glia = Glia {
            coordinator,
            bus,
            statuses,
            instances: Arc::new(Mutex::new(instances)),
            stopping: Arc::new(AtomicBool::new(false)),
            ingress: Mutex::new(None),
            nats,
            topology,
            telemetry,
            config,
        };
        glia.watch_threads();
        glia.watch_remote_modules();
        glia.serve_nats_callbacks();
        Ok(glia)
    }

    /// Keeps asking for the description of remote modules that have not given one (no worker
    /// was up yet), and plans them when they do.
    fn watch_remote_modules(&self) {
        let Some(client) = self.nats.clone() else {
            return;
        };
        let pending: Vec<(usize, String, Arc<ModuleStatus>)> = self
            .config
            .modules
            .iter()
            .enumerate()
            .filter(|(_, m)| m.placement == Placement::Nats && m.callbacks.is_none())
            .map(|(i, m)| (i, m.name.clone(), self.statuses[i].clone()))
            .collect();
        if pending.is_empty() {
            return;
        }
        let (topology, stopping) = (self.topology.clone(), self.stopping.clone());
        actix_rt::spawn(async move {
            let mut pending = pending;
            while !stopping.load(Ordering::Acquire) && !pending.is_empty() {
                actix_rt::time::sleep(REMOTE_RETRY).await;
                let mut refused = Vec::new();
                for (i, (index, name, status)) in pending.iter().enumerate() {
                    if status.state() != ModuleState::Running {
                        if let Described::Refused(_) =
                            describe_remote(&client, &topology, *index, name, status).await
                        {
                            refused.push(i);
                        }
                    }
                }
                // A module that registers what Synapse refuses is asked no more: fix it and
                // restart glia.
                for i in refused.into_iter().rev() {
                    pending.remove(i);
                }
            }
        });
    }

    /// On the NATS bus, homeservers may call the coordinator there too: a request on
    /// `glia.v1.callbacks.<callback>` (queue group `glia.v1.coordinator`) is answered as
    /// `POST /_glia/v1/callbacks/<callback>` is.
    fn serve_nats_callbacks(&self) {
        let Some(client) = self.nats.clone() else {
            return;
        };
        let handle = actix_rt::spawn(crate::bus::ingress::serve(client, self.coordinator.clone()));
        *self.ingress.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    }

    /// Whether the NATS connection is up (`None` on the internal bus).
    pub fn bus_connected(&self) -> Option<bool> {
        self.nats
            .as_ref()
            .map(|c| c.connection_state() == async_nats::connection::State::Connected)
    }

    /// A module's watchdog runs on the module's own thread, so it cannot see that thread
    /// blocked (a handler that never yields). This task, on glia's own thread, watches each
    /// module's heartbeat; a module silent for twice its watchdog (once would mistake a busy
    /// machine for a blocked thread) gets a new thread and a fresh instance, and the blocked
    /// one is abandoned (told to stop when it unblocks).
    /// Invocations queued on it resolve by their callers' timeouts.
    fn watch_threads(&self) {
        let Some(period) = self.config.modules.iter().map(|m| m.restart.watchdog).min() else {
            return;
        };
        let (modules, statuses) = (self.config.modules.clone(), self.statuses.clone());
        let (bus, instances, stopping) = (
            self.bus.clone(),
            self.instances.clone(),
            self.stopping.clone(),
        );
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval((period / 4).max(Duration::from_millis(1)));
            while !stopping.load(Ordering::Acquire) {
                tick.tick().await;
                for (index, (module, status)) in modules.iter().zip(&statuses).enumerate() {
                    let silent = status.since_heartbeat();
                    if module.placement != Placement::Local
                        || silent < module.restart.watchdog * 2
                        || status.state() == ModuleState::Stopped
                    {
                        continue;
                    }
                    let reason = format!(
                        "its thread has been blocked for {} ms (twice the watchdog of {} ms)",
                        silent.as_millis(),
                        module.restart.watchdog.as_millis()
                    );
                    tracing::error!(module = %module.name, %reason, "module thread blocked; starting a new one");
                    status.record_crash(&reason);
                    status.beat();
                    let since = std::time::Instant::now();
                    match spawn_module(module, status.clone(), Arc::new(|_| {})).await {
                        Ok(fresh) => {
                            bus.replace(index, fresh.addr.clone(), module.max_in_flight);
                            status.record_restart(Some(since.elapsed()));
                            let old = {
                                let mut all = instances.lock().unwrap_or_else(|e| e.into_inner());
                                all.get_mut(index).and_then(|slot| slot.replace(fresh))
                            };
                            // The blocked thread exits once it unblocks, if it ever does.
                            if let Some(old) = old {
                                old.arbiter.stop();
                            }
                        }
                        Err(e) => {
                            tracing::error!(module = %module.name, error = %e, "cannot replace the blocked module")
                        }
                    }
                }
            }
        });
    }

    /// The coordinator.
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    /// The config glia runs.
    pub fn config(&self) -> &GliaConfig {
        &self.config
    }

    /// The status of the module at `index` (config order).
    pub fn status(&self, index: usize) -> Option<&Arc<ModuleStatus>> {
        self.statuses.get(index)
    }

    /// The status of the module called `name`.
    pub fn status_of(&self, name: &str) -> Option<&Arc<ModuleStatus>> {
        let index = self.config.modules.iter().position(|m| m.name == name)?;
        self.statuses.get(index)
    }

    /// Names of modules that are failed.
    pub fn failed_modules(&self) -> Vec<&str> {
        self.config
            .modules
            .iter()
            .zip(&self.statuses)
            .filter(|(_, s)| s.state() == ModuleState::Failed)
            .map(|(m, _)| m.name.as_str())
            .collect()
    }

    /// Each module as `/_glia/v1/modules` lists it.
    pub fn modules(&self) -> Vec<ModuleInfo> {
        let summaries = self
            .topology
            .summaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let web = self.topology.web.load();
        self.config
            .modules
            .iter()
            .zip(&self.statuses)
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

    /// The web resources.
    pub fn web_routes(&self) -> Arc<WebRoutes> {
        self.topology.web.load_full()
    }

    /// The actor of the module at `index` (config order).
    pub fn addr(&self, index: usize) -> Option<Addr<ModuleActor>> {
        self.bus.addr(index)
    }

    /// Waits until every module has started the invocations sent to it so far.
    pub async fn flush(&self) {
        for addr in self.bus.addrs() {
            let _ = addr.send(crate::host::Flush).await;
        }
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

    /// Graceful shutdown's second half: in-flight invocations get `grace` to finish, then the
    /// rest resolve through their failure policies; then modules stop in reverse config order.
    /// The caller stops taking new requests first.
    pub async fn shutdown(&self, grace: Duration) {
        let until = std::time::Instant::now() + grace;
        self.stopping.store(true, Ordering::Release);
        if let Some(ingress) = self
            .ingress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            ingress.abort();
        }
        self.coordinator.drain_after(grace).await;
        let instances: Vec<Option<ModuleInstance>> =
            std::mem::take(&mut *self.instances.lock().unwrap_or_else(|e| e.into_inner()));
        for instance in instances.into_iter().rev().flatten() {
            instance.stop().await;
        }
        self.telemetry.shutdown(until).await;
        if let Some(client) = &self.nats {
            crate::bus::nats::flush(client, until).await;
        }
    }

    /// Spans, metrics and the decision log.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }
}
