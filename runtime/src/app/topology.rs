//! The modules of one config as they run: their registrations, from which the plans and web
//! routes are derived (`Topology`), their actors (`Hosted`), and the bus to them; started the
//! same way at start-up and by a reload.

use super::start_error::StartError;
use crate::bus::refusals::Refusals;
use crate::bus::{Bus, InProcessBus, ModuleRoute, NatsBus, RoutedBus};
use crate::config::{GliaConfig, ModuleConfig, Placement};
use crate::coordinator::{Coordinator, Plans};
use crate::host::{
    spawn_module, ModuleInstance, ModuleState, ModuleStatus, OnRegistered, RegistrationSummary,
    SpawnError, WebPath,
};
use crate::http::routes::{WebRoute, WebRoutes};
use crate::telemetry::ModuleGauge;
use arc_swap::ArcSwap;
use glia_bus_schema::subjects::Description;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

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
pub(super) struct Topology {
    pub(super) configs: Vec<ModuleConfig>,
    pub(super) summaries: Mutex<Vec<Option<RegistrationSummary>>>,
    pub(super) web: ArcSwap<WebRoutes>,
    /// The coordinator and this topology's bus, once both exist.
    pub(super) link: OnceLock<(Arc<Coordinator>, Arc<dyn Bus>)>,
    /// Set (under `summaries`' lock) once a reload replaced this topology: a late
    /// registration then changes no plan.
    pub(super) retired: AtomicBool,
}

impl Topology {
    pub(super) fn new(configs: Vec<ModuleConfig>) -> Topology {
        Topology {
            summaries: Mutex::new(vec![None; configs.len()]),
            configs,
            web: ArcSwap::from_pointee(WebRoutes::default()),
            link: OnceLock::new(),
            retired: AtomicBool::new(false),
        }
    }

    /// Plans and web routes for the registrations known now.
    pub(super) fn derive(
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
    pub(super) fn derive_now(&self) -> Result<(Plans, WebRoutes), StartError> {
        let summaries = self.summaries.lock().unwrap_or_else(|e| e.into_inner());
        self.derive(&summaries)
    }

    /// A module registered (at start-up, or later after failing to start).
    pub(super) fn register(&self, index: usize, summary: RegistrationSummary) {
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
    pub(super) fn summary(&self, index: usize) -> Option<RegistrationSummary> {
        let summaries = self.summaries.lock().unwrap_or_else(|e| e.into_inner());
        summaries.get(index).cloned().flatten()
    }

    /// Makes this topology the coordinator's: its plans (`derived`, or newer) and `bus`
    /// replace the routing in force, whose holders are the dispatches still running on it;
    /// returns that routing.
    /// Under the registrations' lock, so a module registering meanwhile cannot be missed.
    pub(super) fn install(
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
    pub(super) fn retire(&self) {
        let _summaries = self.summaries.lock().unwrap_or_else(|e| e.into_inner());
        self.retired.store(true, Ordering::Release);
    }
}

/// One config's modules, as the coordinator reaches them: what a reload replaces as a
/// whole (a kept module's actor and status move into the next one).
pub(super) struct Generation {
    pub(super) config: Arc<GliaConfig>,
    pub(super) topology: Arc<Topology>,
    pub(super) statuses: Vec<Arc<ModuleStatus>>,
    pub(super) bus: Arc<InProcessBus>,
    pub(super) nats_bus: Option<Arc<NatsBus>>,
}

/// Where a module's first registration is reported: its topology and index, which a reload
/// that keeps the module points at the new ones.
pub(super) type RegistrationSink = Arc<Mutex<(Weak<Topology>, usize)>>;

/// A module running in this process.
pub(super) struct Hosted {
    pub(super) instance: ModuleInstance,
    pub(super) sink: RegistrationSink,
}

impl Hosted {
    /// Starts `module` (the `index`-th of `topology`) under its supervisor.
    pub(super) async fn spawn(
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
    pub(super) fn report_to(&self, topology: &Arc<Topology>, index: usize) {
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = (Arc::downgrade(topology), index);
    }
}

/// Stops `hosted` in reverse order (an aborted start or reload).
pub(super) async fn stop_all(hosted: Vec<Option<Hosted>>) {
    for started in hosted.into_iter().rev().flatten() {
        started.instance.stop().await;
    }
}

/// Starts `config`'s local modules under `topology` (each with its status), except those
/// marked `kept` (a reload moves their running instances in), and learns what the remote
/// ones registered. On an error, what it started is stopped again.
pub(super) async fn start_modules(
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
                if let (Described::Refused(reason), true) = (described, module.required) {
                    stop_all(hosted).await;
                    return Err(StartError::Spawn(SpawnError {
                        index,
                        name: module.name.clone(),
                        reason,
                    }));
                }
            }
            _ => {}
        }
    }
    Ok(hosted)
}

/// The scrape's view of the modules whose supervisors run here.
pub(super) fn module_gauges(
    config: &GliaConfig,
    statuses: &[Arc<ModuleStatus>],
) -> Vec<ModuleGauge> {
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
pub(super) fn routed_bus(
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
pub(super) fn nats_bus(
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

/// How often a remote module that has not described itself is asked again.
pub(super) const REMOTE_RETRY: Duration = Duration::from_secs(2);

/// What came of asking a remote module to describe itself.
pub(super) enum Described {
    /// It answered and is planned.
    Planned,
    /// No worker answered (yet).
    Unavailable,
    /// It answered registrations Synapse would refuse (spec §2.2); it is not planned. Why.
    Refused(String),
}

/// Asks the workers of remote module `name` what it registered, and plans it if they answer
/// with registrations Synapse would accept.
pub(super) async fn describe_remote(
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
            let summary = remote_summary(description);
            let module = &topology.configs[index];
            let refused =
                glia_module_api::check_described(&summary.callbacks, &summary.auth_checkers)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        summary
                            .web_resources
                            .iter()
                            .try_for_each(|w| check_web_path(module, &w.path))
                            .map_err(|e| e.to_string())
                    });
            if let Err(e) = refused {
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

/// What a remote module registered, as its workers describe it: its web resources are
/// routed like a local module's, their requests sent on its `web` subject.
fn remote_summary(description: Description) -> RegistrationSummary {
    let subtrees = description.web_resource_subtrees;
    RegistrationSummary {
        callbacks: description.callbacks,
        auth_checkers: description
            .auth_checkers
            .into_iter()
            .map(|a| (a.login_type, a.fields))
            .collect(),
        web_resources: description
            .web_resources
            .into_iter()
            .map(|path| WebPath {
                subtree: subtrees.contains(&path),
                path,
            })
            .collect(),
    }
}
