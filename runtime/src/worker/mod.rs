//! `glia worker`: hosts the modules placed on NATS and serves them in one queue group per
//! module, so N workers share one module's load (docs/PROTOCOL.md). Each module runs under
//! the same supervisor as in `glia serve`. A worker also serves each module on subjects of
//! its own and announces them (`announce.rs`), so coordinators can stop routing to a worker
//! that stopped answering; and it takes no more invocations than a module can run or stash
//! (`serve.rs`).

mod announce;
mod hosted;
mod reload;
mod serve;
mod web;

pub use announce::ANNOUNCE_INTERVAL;

use crate::app::ConfigLoader;
use crate::bus::refusals::Refusals;
use crate::bus::{InProcessBus, ModuleRoute};
use crate::config::{BusConfig, GliaConfig, ModuleConfig, Placement, REMOTE_MODULE};
use crate::host::{
    spawn_module, ModuleInstance, ModuleState, ModuleStatus, RegistrationSummary, SpawnError,
};
use crate::http::routes::{WebRoute, WebRoutes};
use crate::telemetry::{ModuleGauge, Role, Telemetry};
use arc_swap::ArcSwap;
use async_nats::Client;
use glia_bus_schema::subjects::{self, AuthCheckerDescription, Description};
use hosted::{Hosted, Serving};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

/// A running worker.
pub struct Worker {
    serving: Arc<Serving>,
    refusals: Arc<Refusals>,
    /// The hosted modules, in config order; a reload replaces them.
    units: tokio::sync::Mutex<Vec<Unit>>,
    /// The config in force (the bus, for a reload to compare).
    config: std::sync::Mutex<Arc<GliaConfig>>,
    loader: Option<ConfigLoader>,
    id: String,
}

/// One hosted module: its instance, and the tasks that serve its subscriptions and
/// announce it.
struct Unit {
    config: ModuleConfig,
    instance: ModuleInstance,
    status: Arc<ModuleStatus>,
    /// What its serving tasks serve: a reload that replaces the module swaps the new one in
    /// here, so the subscriptions (and the announcements) stay.
    slot: Arc<ArcSwap<Hosted>>,
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

/// A fresh worker id: a subject token unique enough among a module's workers.
fn worker_id() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(16)
        .collect()
}

/// The modules of `config` a worker hosts: those with `placement: nats`, except `remote`
/// ones, which other programs serve.
fn hosted_modules(config: &GliaConfig) -> Result<Vec<&ModuleConfig>, String> {
    let hosted: Vec<&ModuleConfig> = config
        .modules
        .iter()
        .filter(|m| m.placement == Placement::Nats && m.module != REMOTE_MODULE)
        .collect();
    if hosted.is_empty() {
        return Err("no module to host: a worker hosts the modules with `placement: nats`".into());
    }
    Ok(hosted)
}

/// The `index`-th hosted module as its serving tasks see it, reached through `route`.
fn hosted(
    module: &ModuleConfig,
    index: usize,
    route: ModuleRoute,
    admission: Arc<Semaphore>,
    summary: Option<&RegistrationSummary>,
    worker: &str,
) -> Hosted {
    Hosted {
        index,
        name: module.name.clone(),
        description: describe(summary),
        web: web_routes(summary),
        bus: Arc::new(InProcessBus::from_routes(
            (0..=index).map(|i| (i == index).then(|| route.clone())),
        )),
        admission,
        capacity: (module.max_in_flight, module.restart.stash),
        worker: worker.into(),
    }
}

impl Worker {
    /// Connects to NATS, starts the config's `placement: nats` modules (except `remote`
    /// ones, which other programs serve) and subscribes for each. `loader` re-reads the
    /// config on a reload.
    pub async fn start(config: &GliaConfig) -> Result<Worker, String> {
        Worker::start_with(config, None).await
    }

    /// [`Worker::start`], with how a reload re-reads the config.
    pub async fn start_with(
        config: &GliaConfig,
        loader: Option<ConfigLoader>,
    ) -> Result<Worker, String> {
        let BusConfig::Nats(settings) = &config.bus else {
            return Err("glia worker needs the NATS bus: `bus: {type: nats, url: ...}`".into());
        };
        let hosted_configs = hosted_modules(config)?;
        let (client, refusals) = crate::bus::nats::connect(settings, "worker").await?;
        let statuses: Vec<Arc<ModuleStatus>> = hosted_configs
            .iter()
            .map(|_| Arc::new(ModuleStatus::default()))
            .collect();
        // Decisions are the coordinator's to record; a worker only traces.
        let telemetry_config = crate::config::TelemetryConfig {
            decision_log: Default::default(),
            ..config.telemetry.clone()
        };
        let telemetry = Arc::new(
            Telemetry::start(
                &telemetry_config,
                Role::Worker,
                hosted_configs.len(),
                gauges(&hosted_configs, &statuses),
                Some(client.clone()),
                None,
            )
            .map_err(|e| e.to_string())?,
        );
        let serving = Arc::new(Serving {
            client: client.clone(),
            telemetry,
            in_flight: Default::default(),
            max_body_size: config.max_body_size,
        });
        let worker = Worker {
            serving,
            refusals,
            units: tokio::sync::Mutex::new(Vec::new()),
            config: std::sync::Mutex::new(Arc::new(config.clone())),
            loader,
            id: worker_id(),
        };
        let mut units = Vec::new();
        for (index, (module, status)) in hosted_configs.iter().zip(statuses).enumerate() {
            match worker.start_unit(module, index, status).await {
                Ok(unit) => units.push(unit),
                Err(e) => {
                    stop_units(units, Duration::ZERO).await;
                    return Err(e.to_string());
                }
            }
        }
        let names: Vec<String> = hosted_configs.iter().map(|m| m.name.clone()).collect();
        confirm_subscribed(&client, &names).await;
        // Announced only once reachable: a coordinator routes to it as soon as it hears.
        for unit in &mut units {
            unit.tasks.push(worker.announce(unit));
        }
        *worker.units.lock().await = units;
        Ok(worker)
    }

    /// Starts `module` as the `index`-th hosted module and subscribes for it (it is not
    /// announced yet).
    async fn start_unit(
        &self,
        module: &ModuleConfig,
        index: usize,
        status: Arc<ModuleStatus>,
    ) -> Result<Unit, SpawnError> {
        let instance = spawn_module(module, status.clone(), Arc::new(|_| {})).await?;
        let slot = Arc::new(ArcSwap::from_pointee(hosted(
            module,
            index,
            ModuleRoute::to_instance(module, &instance),
            Hosted::admission(module.max_in_flight, module.restart.stash),
            instance.summary.as_ref(),
            &self.id,
        )));
        let (stop, stopped) = watch::channel(false);
        let mut unit = Unit {
            config: module.clone(),
            instance,
            status,
            slot,
            tasks: Vec::new(),
            stop,
        };
        let client = &self.serving.client;
        let group = subjects::module_queue_group(&module.name);
        let shared = client
            .queue_subscribe(subjects::module_wildcard(&module.name), group.clone())
            .await;
        let own = client
            .subscribe(subjects::worker_wildcard(&self.id, &module.name))
            .await;
        let (shared, own) = match (shared, own) {
            (Ok(shared), Ok(own)) => (shared, own),
            (Err(e), _) | (_, Err(e)) => {
                unit.instance.stop().await;
                return Err(SpawnError {
                    index: module.index,
                    name: module.name.clone(),
                    reason: format!("cannot subscribe: {e}"),
                });
            }
        };
        for (subscription, prefix) in [
            (shared, group.clone()),
            (own, subjects::worker_module_prefix(&self.id, &module.name)),
        ] {
            unit.tasks.push(actix_rt::spawn(serve::serve(
                self.serving.clone(),
                unit.slot.clone(),
                subscription,
                prefix,
                stopped.clone(),
            )));
        }
        tracing::info!(module = %module.name, queue_group = %group, worker = %self.id, "serving over NATS");
        Ok(unit)
    }

    /// Announces `unit`'s module until it stops.
    fn announce(&self, unit: &Unit) -> actix_rt::task::JoinHandle<()> {
        actix_rt::spawn(announce::announce(
            self.serving.client.clone(),
            self.refusals.clone(),
            self.id.clone(),
            vec![unit.config.name.clone()],
            unit.stop.subscribe(),
        ))
    }

    /// Its spans and metrics.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.serving.telemetry
    }

    /// What `GET /health` on the metrics listener answers: `ok` while NATS is connected and
    /// no hosted module is failed, else `degraded` (with the failed ones): a liveness and
    /// readiness check for the worker, as `glia serve`'s `/health` is for the coordinator.
    pub async fn health(&self) -> serde_json::Value {
        let connected =
            self.serving.client.connection_state() == async_nats::connection::State::Connected;
        let units = self.units.lock().await;
        let failed: Vec<&str> = units
            .iter()
            .filter(|u| u.status.state() == ModuleState::Failed)
            .map(|u| u.config.name.as_str())
            .collect();
        let modules: Vec<serde_json::Value> = units
            .iter()
            .map(|u| serde_json::json!({"name": u.config.name, "state": u.status.state()}))
            .collect();
        let degraded = !connected || !failed.is_empty();
        serde_json::json!({
            "status": if degraded { "degraded" } else { "ok" },
            "role": "worker",
            "worker": self.id,
            "modules": modules,
            "failed": failed,
            "bus": if connected { "connected" } else { "disconnected" },
        })
    }

    /// The names of the hosted modules.
    pub fn modules(&self) -> Vec<String> {
        let config = self
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        hosted_modules(&config)
            .map(|h| h.iter().map(|m| m.name.clone()).collect())
            .unwrap_or_default()
    }

    /// The grace period of the config in force.
    pub fn shutdown_grace(&self) -> Duration {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shutdown_grace
    }

    /// Its id, the token of its own subjects (`glia.v1.worker.<id>.<module>.<callback>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Drains: announces that it is leaving, stops taking invocations, lets those in flight
    /// finish for up to `grace`, then stops the modules in reverse order. Scaling down loses
    /// nothing: NATS gives new invocations to the other workers of the queue group, and
    /// coordinators stop routing to this one.
    pub async fn shutdown(&self, grace: Duration) {
        let until = Instant::now() + grace;
        let units = std::mem::take(&mut *self.units.lock().await);
        for unit in &units {
            unit.stop.send_replace(true);
        }
        // Draining ends each subscription once the invocations already routed here are taken;
        // it is bounded by the grace, and ends early if NATS becomes unreachable: a drain
        // needs the server, and nothing more can arrive then (waiting out the grace had a
        // container's stop timeout kill the worker). Past it, nothing more is taken: the
        // modules are about to stop.
        let tasks: Vec<_> = units
            .iter()
            .flat_map(|u| u.tasks.iter().map(|t| t.abort_handle()))
            .collect();
        let mut units = units;
        let joins: Vec<_> = units
            .iter_mut()
            .flat_map(|u| std::mem::take(&mut u.tasks))
            .collect();
        let drained = tokio::time::timeout(grace, async {
            tokio::select! {
                _ = futures::future::join_all(joins) => true,
                () = disconnected(&self.serving.client) => false,
            }
        });
        if !drained.await.unwrap_or(false) {
            tasks.iter().for_each(|a| a.abort());
        }
        while self.serving.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < until {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        crate::bus::nats::flush(&self.serving.client, until).await;
        stop_units(units, Duration::ZERO).await;
        self.serving.telemetry.shutdown(until).await;
    }
}

/// Resolves once the NATS client is not connected (checked every 20 ms: only a shutdown waits
/// on it).
async fn disconnected(client: &Client) {
    while client.connection_state() == async_nats::connection::State::Connected {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The scrape's view of the hosted modules.
fn gauges(modules: &[&ModuleConfig], statuses: &[Arc<ModuleStatus>]) -> Vec<ModuleGauge> {
    modules
        .iter()
        .zip(statuses)
        .map(|(m, status)| ModuleGauge {
            name: m.name.as_str().into(),
            status: status.clone(),
        })
        .collect()
}

/// Stops `units` in reverse order, each after its serving tasks (already told to stop)
/// ended, for at most `wait`.
async fn stop_units(units: Vec<Unit>, wait: Duration) {
    for unit in units.into_iter().rev() {
        unit.stop.send_replace(true);
        let _ = tokio::time::timeout(wait, futures::future::join_all(unit.tasks)).await;
        unit.instance.stop().await;
    }
}

/// Waits until the server has taken the worker's subscriptions, so that `start` returning
/// means reachable (through that server; the other servers of a cluster learn of them a
/// moment later). Subscribing only queues the request: a coordinator asking right after
/// could find no responders and leave the module unplanned until it asks again. The server
/// reads a connection's messages in order, so an answer to a request sent after the
/// subscriptions (from this worker or another of the queue group) means they are in place.
/// A NATS user allowed to answer but not to ask gets no answer; that only costs the wait, so
/// it is a warning. With no server reachable yet, it first waits for one.
async fn confirm_subscribed(client: &Client, names: &[String]) {
    crate::bus::nats::wait_connected(client).await;
    let asked = names.iter().map(|name| async move {
        if let Err(reason) =
            crate::bus::nats::describe(client, name, Duration::from_secs(2)).await
        {
            tracing::warn!(module = %name, %reason, subject = %subjects::describe_subject(name),
                "could not confirm the subscription by asking this subject: a NATS user that may not publish there, or may not subscribe to the module's subjects, gets no answer; serving anyway");
        }
    });
    futures::future::join_all(asked).await;
}

/// What the module registered, as `describe` answers it.
fn describe(summary: Option<&RegistrationSummary>) -> Description {
    let summary = summary.cloned().unwrap_or_default();
    let web_resource_subtrees = summary
        .web_resources
        .iter()
        .filter(|w| w.subtree)
        .map(|w| w.path.clone())
        .collect();
    Description {
        callbacks: summary.callbacks,
        auth_checkers: summary
            .auth_checkers
            .into_iter()
            .map(|(login_type, fields)| AuthCheckerDescription { login_type, fields })
            .collect(),
        web_resources: summary.web_resources.into_iter().map(|w| w.path).collect(),
        web_resource_subtrees,
    }
}

/// The module's web resources by path, as `glia serve` routes to a local module's.
fn web_routes(summary: Option<&RegistrationSummary>) -> WebRoutes {
    let mut routes = WebRoutes::default();
    let resources = summary
        .map(|s| s.web_resources.as_slice())
        .unwrap_or_default();
    for (slot, resource) in resources.iter().enumerate() {
        if routes.has(&resource.path).is_none() {
            routes.insert(WebRoute {
                module: 0,
                slot,
                path: resource.path.clone(),
                subtree: resource.subtree,
            });
        }
    }
    routes
}
