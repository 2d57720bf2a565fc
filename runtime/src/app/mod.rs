//! Starting glia from a config: supervised modules, plans, web resources, the coordinator;
//! and stopping it.

mod check;
mod http_service;
mod reload;

pub use crate::http::WebTarget;
pub use check::{check, load_file, load_file_with, load_str, module_types, PythonCheck};
pub use reload::{ConfigLoader, ReloadError, ReloadReport};

use crate::bus::refusals::Refusals;
use crate::bus::{Bus, InProcessBus, ModuleRoute, NatsBus, RoutedBus};
use crate::config::{BusConfig, GliaConfig, ModuleConfig, Placement};
use crate::coordinator::{reducer, Coordinator, PlanError, Plans};
use crate::host::{
    spawn_module, ModuleActor, ModuleInstance, ModuleState, ModuleStatus, OnRegistered,
    RegistrationSummary, SpawnError,
};
use crate::http::routes::{WebRoute, WebRoutes};
use crate::telemetry::{ModuleGauge, Role, Telemetry};
use actix::Addr;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
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
    /// The coordinator and this topology's bus, once both exist.
    link: OnceLock<(Arc<Coordinator>, Arc<dyn Bus>)>,
    /// Set (under `summaries`' lock) once a reload replaced this topology: a late
    /// registration then changes no plan.
    retired: AtomicBool,
}

impl Topology {
    fn new(configs: Vec<ModuleConfig>) -> Topology {
        Topology {
            summaries: Mutex::new(vec![None; configs.len()]),
            configs,
            web: ArcSwap::from_pointee(WebRoutes::default()),
            link: OnceLock::new(),
            retired: AtomicBool::new(false),
        }
    }

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

    /// The plans and web routes of everything registered now.
    fn derive_now(&self) -> Result<(Plans, WebRoutes), StartError> {
        let summaries = self.summaries.lock().unwrap_or_else(|e| e.into_inner());
        self.derive(&summaries)
    }

    /// A module registered (at start-up, or later after failing to start).
    fn register(&self, index: usize, summary: RegistrationSummary) {
        let mut summaries = self.summaries.lock().unwrap_or_else(|e| e.into_inner());
        summaries[index] = Some(summary);
        if self.retired.load(Ordering::Acquire) {
            return;
        }
        let Some((coordinator, bus)) = self.link.get() else {
            return;
        };
        match self.derive(&summaries) {
            Ok((plans, web)) => {
                coordinator.set_routing(plans, bus.clone());
                self.web.store(Arc::new(web));
                tracing::info!(module = %self.configs[index].name, "module registered; plans updated");
            }
            Err(e) => {
                tracing::error!(module = %self.configs[index].name, error = %e, "cannot plan the module's registrations")
            }
        }
    }

    /// What the module at `index` registered, if it has.
    fn summary(&self, index: usize) -> Option<RegistrationSummary> {
        let summaries = self.summaries.lock().unwrap_or_else(|e| e.into_inner());
        summaries.get(index).cloned().flatten()
    }

    /// Makes this topology the coordinator's: its plans (`derived`, or newer) and `bus`
    /// replace the routing in force, whose holders are the dispatches still running on it;
    /// returns that routing.
    /// Under the registrations' lock, so a module registering meanwhile cannot be missed.
    fn install(
        &self,
        coordinator: Arc<Coordinator>,
        bus: Arc<dyn Bus>,
        derived: (Plans, WebRoutes),
    ) -> Arc<crate::coordinator::Routing> {
        let summaries = self.summaries.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.link.set((coordinator.clone(), bus.clone()));
        // `derived` was checked before anything changed; a module that registered since
        // is planned too, unless its registrations are refused (then it is not, as when it
        // registers later).
        let (plans, web) = self.derive(&summaries).unwrap_or(derived);
        self.web.store(Arc::new(web));
        coordinator.set_routing(plans, bus)
    }

    /// A reload replaced this topology: late registrations no longer change the plans.
    fn retire(&self) {
        let _summaries = self.summaries.lock().unwrap_or_else(|e| e.into_inner());
        self.retired.store(true, Ordering::Release);
    }
}

/// One config's modules, as the coordinator reaches them: what a reload replaces as a
/// whole (a kept module's actor and status move into the next one).
struct Generation {
    config: Arc<GliaConfig>,
    topology: Arc<Topology>,
    statuses: Vec<Arc<ModuleStatus>>,
    bus: Arc<InProcessBus>,
    nats_bus: Option<Arc<NatsBus>>,
}

/// Where a module's first registration is reported: its topology and index, which a reload
/// that keeps the module points at the new ones.
type RegistrationSink = Arc<Mutex<(Weak<Topology>, usize)>>;

/// A module running in this process.
struct Hosted {
    instance: ModuleInstance,
    sink: RegistrationSink,
}

impl Hosted {
    /// Starts `module` (the `index`-th of `topology`) under its supervisor.
    async fn spawn(
        module: &ModuleConfig,
        index: usize,
        topology: &Arc<Topology>,
        status: Arc<ModuleStatus>,
    ) -> Result<Hosted, SpawnError> {
        let sink: RegistrationSink = Arc::new(Mutex::new((Arc::downgrade(topology), index)));
        let to = sink.clone();
        let on_registered: OnRegistered = Arc::new(move |summary| {
            let (topology, index) = to.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(topology) = topology.upgrade() {
                topology.register(index, summary);
            }
        });
        let instance = spawn_module(module, status, on_registered).await?;
        Ok(Hosted { instance, sink })
    }

    /// Reports the module's first registration to `topology` as its `index`-th module.
    fn report_to(&self, topology: &Arc<Topology>, index: usize) {
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = (Arc::downgrade(topology), index);
    }
}

/// Stops `hosted` in reverse order (an aborted start or reload).
async fn stop_all(hosted: Vec<Option<Hosted>>) {
    for started in hosted.into_iter().rev().flatten() {
        started.instance.stop().await;
    }
}

/// Starts `config`'s local modules under `topology` (each with its status), except those
/// marked `kept` (a reload moves their running instances in), and learns what the remote
/// ones registered. On an error, what it started is stopped again.
async fn start_modules(
    config: &GliaConfig,
    topology: &Arc<Topology>,
    statuses: &[Arc<ModuleStatus>],
    nats: Option<&async_nats::Client>,
    kept: &[bool],
) -> Result<Vec<Option<Hosted>>, StartError> {
    let mut hosted: Vec<Option<Hosted>> = Vec::with_capacity(config.modules.len());
    for (index, module) in config.modules.iter().enumerate() {
        if module.placement == Placement::Nats || kept[index] {
            hosted.push(None);
            continue;
        }
        match Hosted::spawn(module, index, topology, statuses[index].clone()).await {
            Ok(h) => {
                tracing::info!(module = %module.name, state = ?h.instance.status.state(), "module started");
                hosted.push(Some(h));
            }
            Err(e) => {
                stop_all(hosted).await;
                return Err(e.into());
            }
        }
    }
    // Modules served over NATS: ask their workers what they registered.
    let Some(client) = nats else {
        return Ok(hosted);
    };
    for (index, module) in config.modules.iter().enumerate() {
        if kept[index] {
            continue;
        }
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
                let described =
                    describe_remote(client, topology, index, &module.name, &statuses[index]).await;
                if let (Described::Refused(e), true) = (described, module.required) {
                    stop_all(hosted).await;
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
    Ok(hosted)
}

/// The scrape's view of the modules whose supervisors run here.
fn module_gauges(config: &GliaConfig, statuses: &[Arc<ModuleStatus>]) -> Vec<ModuleGauge> {
    config
        .modules
        .iter()
        .zip(statuses)
        .filter(|(m, _)| m.placement == Placement::Local)
        .map(|(m, status)| ModuleGauge {
            name: m.name.as_str().into(),
            status: status.clone(),
        })
        .collect()
}

/// The bus to `config`'s modules: each local one by the route `carried` gives (a kept
/// module's, with its permits) or else to its new actor; remote ones over `nats_bus`.
fn routed_bus(
    config: &GliaConfig,
    hosted: &[Option<Hosted>],
    carried: impl Fn(usize) -> Option<ModuleRoute>,
    nats_bus: Option<Arc<NatsBus>>,
) -> (Arc<InProcessBus>, Arc<dyn Bus>) {
    let local = Arc::new(InProcessBus::from_routes(
        config
            .modules
            .iter()
            .zip(hosted)
            .enumerate()
            .map(|(index, (m, h))| {
                carried(index)
                    .or_else(|| h.as_ref().map(|h| ModuleRoute::to_instance(m, &h.instance)))
            }),
    ));
    let placements = config.modules.iter().map(|m| m.placement).collect();
    let routed: Arc<dyn Bus> = Arc::new(RoutedBus::new(local.clone(), nats_bus, placements));
    (local, routed)
}

/// The NATS bus to `config`'s modules, by config index.
fn nats_bus(
    config: &GliaConfig,
    client: Option<&async_nats::Client>,
    refusals: &Arc<Refusals>,
) -> Option<Arc<NatsBus>> {
    client.map(|client| {
        let names = config
            .modules
            .iter()
            .map(|m| Arc::<str>::from(m.name.as_str()))
            .collect();
        Arc::new(NatsBus::new(client.clone(), names, refusals.clone()))
    })
}

/// What a reload, the thread watcher and shutdown share.
struct Shared {
    /// The modules in force.
    current: ArcSwap<Generation>,
    /// The current generation's local modules, by config index.
    hosted: Mutex<Vec<Option<Hosted>>>,
    /// Held by a reload and by the thread watcher's replacements: one at a time.
    changing: tokio::sync::Mutex<()>,
    /// Set at shutdown.
    stopping: AtomicBool,
}

/// A running glia: supervised modules and the coordinator over them.
pub struct Glia {
    coordinator: Arc<Coordinator>,
    shared: Arc<Shared>,
    nats: Option<async_nats::Client>,
    refusals: Arc<Refusals>,
    ingress: Mutex<Option<actix_rt::task::JoinHandle<()>>>,
    telemetry: Arc<Telemetry>,
    loader: Option<ConfigLoader>,
}

/// Start-up choices that are not in the config file.
#[derive(Default)]
pub struct StartOptions {
    /// Spans go to this provider instead of the exporter the config names (tests bring
    /// an in-memory exporter this way).
    pub tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    /// How a reload reads the config anew (`glia serve` re-reads its file); without it,
    /// [`Glia::reload`] refuses and only [`Glia::apply`] reloads.
    pub loader: Option<ConfigLoader>,
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
        let topology = Arc::new(Topology::new(config.modules.clone()));
        let statuses: Vec<Arc<ModuleStatus>> = config
            .modules
            .iter()
            .map(|_| Arc::new(ModuleStatus::default()))
            .collect();
        let telemetry = Arc::new(Telemetry::start(
            &config.telemetry,
            Role::Coordinator,
            config.modules.len(),
            module_gauges(&config, &statuses),
            nats.clone(),
            options.tracer_provider,
        )?);
        let kept = vec![false; config.modules.len()];
        let hosted = start_modules(&config, &topology, &statuses, nats.as_ref(), &kept).await?;
        let (plans, web) = match topology.derive_now() {
            Ok(derived) => derived,
            Err(e) => {
                stop_all(hosted).await;
                return Err(e);
            }
        };
        let (plans_again, web_again) = (plans.clone(), web.clone());
        topology.web.store(Arc::new(web));
        let nats_bus = nats_bus(&config, nats.as_ref(), &refusals);
        let (bus, routed) = routed_bus(&config, &hosted, |_| None, nats_bus.clone());
        let coordinator = Arc::new(
            Coordinator::new(plans, routed.clone(), config.deadline)
                .with_telemetry(telemetry.clone()),
        );
        // A module whose probe succeeded while the plans were being built registered too early
        // to be planned: plan once more with everything known now.
        topology.install(coordinator.clone(), routed, (plans_again, web_again));
        let generation = Arc::new(Generation {
            config: Arc::new(config),
            topology,
            statuses,
            bus,
            nats_bus,
        });
        let glia = Glia {
            coordinator,
            shared: Arc::new(Shared {
                current: ArcSwap::new(generation.clone()),
                hosted: Mutex::new(hosted),
                changing: tokio::sync::Mutex::new(()),
                stopping: AtomicBool::new(false),
            }),
            ingress: Mutex::new(None),
            nats,
            refusals,
            telemetry,
            loader: options.loader,
        };
        glia.watch_threads();
        glia.watch_remote_modules(&generation);
        glia.serve_nats_callbacks();
        Ok(glia)
    }

    /// Keeps asking for the description of `generation`'s remote modules that have not given
    /// one (no worker was up yet), and plans them when they do, until a reload replaces it.
    fn watch_remote_modules(&self, generation: &Arc<Generation>) {
        let Some(client) = self.nats.clone() else {
            return;
        };
        let pending: Vec<(usize, String, Arc<ModuleStatus>)> = generation
            .config
            .modules
            .iter()
            .enumerate()
            .filter(|(_, m)| m.placement == Placement::Nats && m.callbacks.is_none())
            .map(|(i, m)| (i, m.name.clone(), generation.statuses[i].clone()))
            .collect();
        if pending.is_empty() {
            return;
        }
        let (topology, shared) = (generation.topology.clone(), self.shared.clone());
        actix_rt::spawn(async move {
            let mut pending = pending;
            let live = || {
                !shared.stopping.load(Ordering::Acquire)
                    && !topology.retired.load(Ordering::Acquire)
            };
            while live() && !pending.is_empty() {
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
                // reload.
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
        // The bus cannot change on a reload, so its bound is the start's.
        let BusConfig::Nats(settings) = &self.config().bus else {
            return;
        };
        let handle = actix_rt::spawn(crate::nats_ingress::serve(
            client,
            self.coordinator.clone(),
            settings.ingress_limit(),
        ));
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
        let shared = self.shared.clone();
        actix_rt::spawn(async move {
            while !shared.stopping.load(Ordering::Acquire) {
                let generation = shared.current.load_full();
                let period = generation
                    .config
                    .modules
                    .iter()
                    .map(|m| m.restart.watchdog)
                    .min()
                    .unwrap_or(Duration::from_secs(1));
                actix_rt::time::sleep((period / 4).max(Duration::from_millis(1))).await;
                // A reload in progress owns the modules; look again at the next tick.
                let Ok(_changing) = shared.changing.try_lock() else {
                    continue;
                };
                let generation = shared.current.load_full();
                for (index, (module, status)) in generation
                    .config
                    .modules
                    .iter()
                    .zip(&generation.statuses)
                    .enumerate()
                {
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
                            generation
                                .bus
                                .replace(index, fresh.addr.clone(), module.max_in_flight);
                            status.record_restart(Some(since.elapsed()));
                            let old = {
                                let mut all =
                                    shared.hosted.lock().unwrap_or_else(|e| e.into_inner());
                                all.get_mut(index)
                                    .and_then(Option::as_mut)
                                    .map(|h| std::mem::replace(&mut h.instance, fresh))
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

    /// The config glia runs (the last one a reload applied).
    pub fn config(&self) -> Arc<GliaConfig> {
        self.shared.current.load().config.clone()
    }

    /// The status of the module at `index` (config order).
    pub fn status(&self, index: usize) -> Option<Arc<ModuleStatus>> {
        self.shared.current.load().statuses.get(index).cloned()
    }

    /// The status of the module called `name`.
    pub fn status_of(&self, name: &str) -> Option<Arc<ModuleStatus>> {
        let generation = self.shared.current.load();
        let index = generation
            .config
            .modules
            .iter()
            .position(|m| m.name == name)?;
        generation.statuses.get(index).cloned()
    }

    /// Names of modules that are failed.
    pub fn failed_modules(&self) -> Vec<String> {
        let generation = self.shared.current.load();
        generation
            .config
            .modules
            .iter()
            .zip(&generation.statuses)
            .filter(|(_, s)| s.state() == ModuleState::Failed)
            .map(|(m, _)| m.name.clone())
            .collect()
    }

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

    /// The web resources.
    pub fn web_routes(&self) -> Arc<WebRoutes> {
        self.shared.current.load().topology.web.load_full()
    }

    /// The web resource that answers `path`: its route, its module's actor, name and
    /// timeout, all of one generation (a reload may come between two lookups).
    pub fn web_target(&self, path: &str) -> Option<WebTarget> {
        let generation = self.shared.current.load();
        let route = generation.topology.web.load().find(path).cloned()?;
        let module = generation.config.modules.get(route.module)?;
        Some(WebTarget {
            addr: generation.bus.addr(route.module),
            name: module.name.clone(),
            timeout: module.timeout,
            route,
        })
    }

    /// The actor of the module at `index` (config order).
    pub fn addr(&self, index: usize) -> Option<Addr<ModuleActor>> {
        self.shared.current.load().bus.addr(index)
    }

    /// Waits until every module has started the invocations sent to it so far.
    pub async fn flush(&self) {
        let addrs = self.shared.current.load().bus.addrs();
        for addr in addrs {
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
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(ingress) = self
            .ingress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            ingress.abort();
        }
        self.coordinator.drain_after(grace).await;
        let _changing = self.shared.changing.lock().await;
        let hosted: Vec<Option<Hosted>> =
            std::mem::take(&mut *self.shared.hosted.lock().unwrap_or_else(|e| e.into_inner()));
        stop_all(hosted).await;
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
