//! Starting glia from a config: supervised modules, plans, web resources, the coordinator;
//! and stopping it.

mod check;
mod http_service;
mod listing;
mod reload;
mod remote;
mod start_error;
mod threads;
mod topology;
mod workers_seen;

pub use crate::http::WebTarget;
pub use check::{check, load_file, load_file_with, load_str, module_types, PythonCheck};
pub use listing::{AuthCheckerInfo, ModuleInfo};
pub use reload::{load_bounded, ConfigLoader, ReloadError, ReloadReport, LOAD_TIMEOUT};
pub use start_error::StartError;

use topology::{
    module_gauges, nats_bus, routed_bus, start_modules, stop_all, Generation, Hosted, Topology,
};

use crate::bus::refusals::Refusals;
use crate::config::{BusConfig, GliaConfig, Placement};
use crate::coordinator::Coordinator;
use crate::host::{ModuleActor, ModuleState, ModuleStatus};
use crate::http::routes::WebRoutes;
use crate::telemetry::{Role, Telemetry};
use actix::Addr;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Wakes a reload still reading its config when shutdown begins, so it gives up at once.
    stopped: tokio::sync::Notify,
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
    load_timeout: Duration,
    /// Which NATS-placed modules no worker served at the last probe.
    workers_seen: workers_seen::WorkersSeen,
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
    /// How long a reload may take to read and check the new config ([`LOAD_TIMEOUT`] when
    /// unset).
    pub load_timeout: Option<Duration>,
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
                stopped: tokio::sync::Notify::new(),
            }),
            ingress: Mutex::new(None),
            nats,
            refusals,
            telemetry,
            loader: options.loader,
            load_timeout: options.load_timeout.unwrap_or(LOAD_TIMEOUT),
            workers_seen: Default::default(),
        };
        glia.watch_threads();
        glia.watch_remote_modules(&generation);
        glia.serve_nats_callbacks();
        Ok(glia)
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

    /// The web resources.
    pub fn web_routes(&self) -> Arc<WebRoutes> {
        self.shared.current.load().topology.web.load_full()
    }

    /// The web resource that answers `path`: its route, its module's actor (or bus to its
    /// workers), name and timeout, all of one generation (a reload may come between two lookups).
    pub fn web_target(&self, path: &str) -> Option<WebTarget> {
        let generation = self.shared.current.load();
        let route = generation.topology.web.load().find(path).cloned()?;
        let module = generation.config.modules.get(route.module)?;
        let nats = match module.placement {
            Placement::Nats => generation.nats_bus.clone(),
            Placement::Local => None,
        };
        Some(WebTarget {
            addr: generation.bus.addr(route.module),
            nats,
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

    /// Graceful shutdown's second half: in-flight invocations get `grace` to finish, then the
    /// rest resolve through their failure policies; then modules stop in reverse config order.
    /// The caller stops taking new requests first.
    pub async fn shutdown(&self, grace: Duration) {
        let until = std::time::Instant::now() + grace;
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.stopped.notify_waiters();
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
