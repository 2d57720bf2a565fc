//! Reloading the config without a restart (SIGHUP, `POST /_glia/v1/admin/reload`): a module
//! whose entry is unchanged keeps running untouched; a changed one is replaced (the new
//! instance started, the plans switched, then the old one stopped once its in-flight work is
//! done); added ones are started and removed ones stopped the same way. The new modules are
//! started through the same code as at start-up, and the plans and the bus switch together
//! in one atomic store, so a dispatch runs wholly on the old modules or wholly on the new.
//! A config with an error, or a new module that cannot start, changes nothing.

use super::{
    module_gauges, nats_bus, routed_bus, start_modules, stop_all, Generation, Glia, Hosted,
    StartError, Topology,
};
use crate::bus::NatsBus;
use crate::config::{ConfigFileError, GliaConfig, ModuleConfig};
use crate::coordinator::{Plans, Routing};
use crate::host::ModuleStatus;
use crate::http::routes::WebRoutes;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads the config anew, as the process read it at start (the same file and checks).
pub type ConfigLoader = Arc<dyn Fn() -> Result<GliaConfig, ConfigFileError> + Send + Sync>;

/// How long reading and checking a new config may take on a reload (its Python modules'
/// `parse_config` runs in a host): past it the reload is refused and nothing changes.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `load` on a thread of its own, never on the thread that asked (an HTTP worker serving
/// decisions, or the main thread that must still hear SIGTERM), and gives up after `bound`.
/// Not a runtime's blocking thread: a runtime waits for those when it is dropped, so a
/// SIGTERM during a slow check (a Python module's `parse_config`) would wait for the check.
/// A check given up on, or still running when glia exits, is abandoned.
pub async fn load_bounded(load: ConfigLoader, bound: Duration) -> Result<GliaConfig, ReloadError> {
    let (done, loaded) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("glia-config-check".into())
        .spawn(move || {
            let _ = done.send(load());
        })
        .map_err(|e| ReloadError::LoadFailed(format!("cannot start the check: {e}")))?;
    match tokio::time::timeout(bound, loaded).await {
        Ok(Ok(loaded)) => loaded.map_err(ReloadError::from),
        // The sender went without an answer: the check panicked.
        Ok(Err(_)) => Err(ReloadError::LoadFailed("it panicked".into())),
        Err(_) => Err(ReloadError::LoadTimeout(bound)),
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config has an error (file, line, module, key).
    #[error("{0}")]
    Config(#[from] ConfigFileError),
    /// A new module could not start, or the plans refuse the new registrations.
    #[error("{0}")]
    Start(#[from] StartError),
    /// The bus settings changed: the connection cannot be replaced under the modules.
    #[error("{file}: the bus changed (`bus:`); that needs a restart")]
    BusChanged {
        /// The config file.
        file: String,
    },
    /// Nothing to re-read: glia was started without a loader.
    #[error("this glia has no config file to re-read")]
    NoLoader,
    /// Reading and checking the new config took longer than the bound (a Python module's
    /// `parse_config`, say); nothing changed.
    #[error("the new config was not read and checked within {} s; nothing changed (is a Python module's parse_config slow?)", .0.as_secs())]
    LoadTimeout(Duration),
    /// The config check itself failed (it panicked).
    #[error("the config check failed: {0}")]
    LoadFailed(String),
    /// Shutdown has begun.
    #[error("glia is shutting down")]
    ShuttingDown,
}

/// What a reload did, module by module.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    /// The file read.
    pub config: String,
    /// Modules added to the config, now running.
    pub started: Vec<String>,
    /// Modules whose entry changed: a new instance serves, the old one was stopped after its
    /// in-flight work finished.
    pub replaced: Vec<String>,
    /// Modules removed from the config, stopped after their in-flight work finished.
    pub stopped: Vec<String>,
    /// Modules whose entry is unchanged: the same instance, untouched.
    pub kept: Vec<String>,
    /// Settings that changed in the file but keep their old value until a restart.
    pub needs_restart: Vec<&'static str>,
}

/// Settings read once at start: listening, HTTP limits, the deadline and telemetry. (The
/// bus is refused outright; `auth_token`, `shutdown_grace` and the modules apply live.)
fn needs_restart(old: &GliaConfig, new: &GliaConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("listen", old.listen != new.listen);
    check("listen_unix", old.listen_unix != new.listen_unix);
    check(
        "listen_unix_mode",
        old.listen_unix_mode != new.listen_unix_mode,
    );
    check(
        "listen_unix_group",
        old.listen_unix_group != new.listen_unix_group,
    );
    check("max_body_size", old.max_body_size != new.max_body_size);
    check("body_timeout", old.body_timeout != new.body_timeout);
    check("header_timeout", old.header_timeout != new.header_timeout);
    check(
        "max_connections",
        old.max_connections != new.max_connections,
    );
    check(
        "max_connections_per_address",
        old.max_connections_per_address != new.max_connections_per_address,
    );
    check("deadline", old.deadline != new.deadline);
    check("telemetry", old.telemetry != new.telemetry);
    check("log_format", old.log_format != new.log_format);
    changed
}

/// What becomes of each module of the new config.
enum Fate {
    /// The old module at this index, unchanged.
    Kept(usize),
    /// Replaces the old module at this index.
    Replaces(usize),
    /// New.
    Added,
}

fn fate(old: &[ModuleConfig], module: &ModuleConfig) -> Fate {
    match old.iter().position(|m| m.name == module.name) {
        Some(i) if old[i].fingerprint == module.fingerprint => Fate::Kept(i),
        Some(i) => Fate::Replaces(i),
        None => Fate::Added,
    }
}

impl Glia {
    /// Re-reads the config with the loader given at start and applies it (see [`Glia::apply`]).
    /// A shutdown that begins while the new config is being read and checked abandons the
    /// check (see [`load_bounded`]): the reload is refused and the shutdown does not wait.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let stopped = self.shared.stopped.notified();
        tokio::pin!(stopped);
        // Registered before the flag is read, so a shutdown in between still wakes it.
        stopped.as_mut().enable();
        tracing::info!("config reload: reading and checking the new config");
        let loaded = match &self.loader {
            _ if self.shared.stopping.load(Ordering::Acquire) => Err(ReloadError::ShuttingDown),
            Some(load) => tokio::select! {
                loaded = load_bounded(load.clone(), self.load_timeout) => loaded,
                () = stopped => Err(ReloadError::ShuttingDown),
            },
            None => Err(ReloadError::NoLoader),
        };
        match loaded {
            Ok(config) => self.apply(config).await,
            Err(e) => Err(self.refused(e)),
        }
    }

    /// Switches to `config`: unchanged modules keep running, changed ones are replaced,
    /// added ones started, removed ones stopped; dispatches in flight finish on the modules
    /// they started with, and a retired module is stopped once its in-flight work is done
    /// (at most the old deadline plus `shutdown_grace` after the switch). On an error
    /// nothing changes. Logged and counted (`glia_config_reloads_total`).
    pub async fn apply(&self, config: GliaConfig) -> Result<ReloadReport, ReloadError> {
        match self.switch(config).await {
            Ok((report, retiring)) => {
                tracing::info!(
                    config = %report.config,
                    started = ?report.started,
                    replaced = ?report.replaced,
                    stopped = ?report.stopped,
                    kept = report.kept.len(),
                    "config reloaded; stopping retired modules once their in-flight work is done"
                );
                if !report.needs_restart.is_empty() {
                    tracing::warn!(settings = ?report.needs_restart, "these settings changed but need a restart; they keep their old values until then");
                }
                if let Some(metrics) = self.telemetry.metrics() {
                    metrics.config_reloaded(true);
                }
                retiring.await;
                Ok(report)
            }
            Err(e) => Err(self.refused(e)),
        }
    }

    /// Logs and counts a refused reload.
    fn refused(&self, error: ReloadError) -> ReloadError {
        tracing::error!(error = %error, "config reload refused; nothing changed");
        if let Some(metrics) = self.telemetry.metrics() {
            metrics.config_reloaded(false);
        }
        error
    }

    /// Starts what `config` adds or changes and switches to it; returns the report and the
    /// retirement of what it replaced, to be awaited without holding the reload lock.
    async fn switch(
        &self,
        config: GliaConfig,
    ) -> Result<(ReloadReport, impl std::future::Future<Output = ()>), ReloadError> {
        let changing = self.shared.changing.lock().await;
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(ReloadError::ShuttingDown);
        }
        let old = self.shared.current.load_full();
        if old.config.bus != config.bus {
            return Err(ReloadError::BusChanged {
                file: config.source.clone(),
            });
        }
        let change = Change::new(old, &config);
        let statuses = change.statuses();
        let topology = change.topology(&config);
        let started = start_modules(
            &config,
            &topology,
            &statuses,
            self.nats.as_ref(),
            &change.kept(),
        )
        .await?;
        let derived = match topology.derive_now() {
            Ok(derived) => derived,
            Err(e) => {
                stop_all(started).await;
                return Err(e.into());
            }
        };

        // Nothing can fail from here on.
        let nats_bus = if change.same_names(&config) {
            change.old.nats_bus.clone()
        } else {
            nats_bus(&config, self.nats.as_ref(), &self.refusals)
        };
        let report = change.report(&config);
        let next = Next {
            config,
            topology,
            statuses,
            started,
            derived,
            nats_bus,
        };
        let retiring = self.commit(&change, next);
        drop(changing);
        Ok((report, retiring))
    }

    /// Makes `next` the current generation in one step: kept modules move in, the rest of
    /// the old generation retires, and the plans and bus switch together so a dispatch runs
    /// wholly on the old modules or wholly on the new. Returns the retirement, to await.
    fn commit(&self, change: &Change, next: Next) -> impl std::future::Future<Output = ()> {
        let Next {
            config,
            topology,
            statuses,
            mut started,
            derived,
            nats_bus,
        } = next;
        let old = &change.old;
        let mut current = self.shared.hosted.lock().unwrap_or_else(|e| e.into_inner());
        let mut previous = std::mem::take(&mut *current);
        let hosted = change.hand_over(&mut previous, &mut started, &topology);
        // What is left of the previous generation retires.
        let retiring: Vec<(Hosted, Arc<ModuleStatus>)> = previous
            .into_iter()
            .enumerate()
            .filter_map(|(i, h)| Some((h?, old.statuses[i].clone())))
            .collect();
        let (bus, routed) = routed_bus(
            &config,
            &hosted,
            |j| match change.fates[j] {
                Fate::Kept(i) => old.bus.route(i),
                _ => None,
            },
            nats_bus.clone(),
        );
        old.topology.retire();
        let replaced = topology.install(self.coordinator.clone(), routed, derived);
        if let Some(metrics) = self.telemetry.metrics() {
            metrics.set_module_gauges(module_gauges(&config, &statuses));
            metrics.renumber(config.modules.len());
        }
        let grace = old.config.deadline + config.shutdown_grace;
        let generation = Arc::new(Generation {
            config: Arc::new(config),
            topology,
            statuses,
            bus,
            nats_bus,
        });
        self.shared.current.store(generation.clone());
        *current = hosted;
        drop(current);
        self.watch_remote_modules(&generation);
        retire(replaced, retiring, grace)
    }
}

/// A reload's plan: the generation it replaces and what becomes of each module of the new
/// config, which decide what is started, moved, carried over and reported.
struct Change {
    old: Arc<Generation>,
    fates: Vec<Fate>,
}

impl Change {
    /// The fate of each of `config`'s modules against the generation `old`.
    fn new(old: Arc<Generation>, config: &GliaConfig) -> Change {
        let fates = config
            .modules
            .iter()
            .map(|m| fate(&old.config.modules, m))
            .collect();
        Change { old, fates }
    }

    /// Which modules keep their running instance, so none is started for them.
    fn kept(&self) -> Vec<bool> {
        self.fates
            .iter()
            .map(|f| matches!(f, Fate::Kept(_)))
            .collect()
    }

    /// Each module's status: a kept one's own, a replacement's carrying on the old counts,
    /// an added one's new, so counters read the same across a reload.
    fn statuses(&self) -> Vec<Arc<ModuleStatus>> {
        self.fates
            .iter()
            .map(|f| match f {
                Fate::Kept(i) => self.old.statuses[*i].clone(),
                Fate::Replaces(i) => Arc::new(ModuleStatus::continuing(&self.old.statuses[*i])),
                Fate::Added => Arc::new(ModuleStatus::default()),
            })
            .collect()
    }

    /// The new config's topology, with what the kept modules registered copied in: they do
    /// not start again, so they would not register again.
    fn topology(&self, config: &GliaConfig) -> Arc<Topology> {
        let topology = Arc::new(Topology::new(config.modules.clone()));
        {
            let mut summaries = topology.summaries.lock().unwrap_or_else(|e| e.into_inner());
            for (j, f) in self.fates.iter().enumerate() {
                if let Fate::Kept(i) = f {
                    summaries[j] = self.old.topology.summary(*i);
                }
            }
        }
        topology
    }

    /// Whether `config` names the same modules in the same order, so the NATS bus (which
    /// knows modules by index) carries over.
    fn same_names(&self, config: &GliaConfig) -> bool {
        let old = &self.old.config.modules;
        old.len() == config.modules.len()
            && old
                .iter()
                .zip(&config.modules)
                .all(|(a, b)| a.name == b.name)
    }

    /// What the reload does, module by module, and the settings that wait for a restart.
    fn report(&self, config: &GliaConfig) -> ReloadReport {
        let mut report = ReloadReport {
            config: config.source.clone(),
            needs_restart: needs_restart(&self.old.config, config),
            ..ReloadReport::default()
        };
        for (j, f) in self.fates.iter().enumerate() {
            let name = config.modules[j].name.clone();
            match f {
                Fate::Kept(_) => report.kept.push(name),
                Fate::Replaces(_) => report.replaced.push(name),
                Fate::Added => report.started.push(name),
            }
        }
        report.stopped = self
            .old
            .config
            .modules
            .iter()
            .filter(|m| config.modules.iter().all(|n| n.name != m.name))
            .map(|m| m.name.clone())
            .collect();
        report
    }

    /// The new generation's modules: a kept one moved out of `previous` (now reporting to
    /// `topology`), the others as `started`. What stays in `previous` is to retire.
    fn hand_over(
        &self,
        previous: &mut [Option<Hosted>],
        started: &mut [Option<Hosted>],
        topology: &Arc<Topology>,
    ) -> Vec<Option<Hosted>> {
        self.fates
            .iter()
            .zip(started.iter_mut())
            .enumerate()
            .map(|(j, (f, new))| match f {
                Fate::Kept(i) => {
                    let moved = previous.get_mut(*i).and_then(Option::take);
                    if let Some(h) = &moved {
                        h.report_to(topology, j);
                    }
                    // It may have registered with the old topology since it was copied.
                    if topology.summary(j).is_none() {
                        if let Some(summary) = self.old.topology.summary(*i) {
                            let mut summaries =
                                topology.summaries.lock().unwrap_or_else(|e| e.into_inner());
                            summaries[j] = Some(summary);
                        }
                    }
                    moved
                }
                _ => new.take(),
            })
            .collect()
    }
}

/// The next generation, started and checked, for [`Glia::commit`] to switch to.
struct Next {
    config: GliaConfig,
    topology: Arc<Topology>,
    statuses: Vec<Arc<ModuleStatus>>,
    started: Vec<Option<Hosted>>,
    derived: (Plans, WebRoutes),
    nats_bus: Option<Arc<NatsBus>>,
}

/// Stops the retired modules once no dispatch runs on the `replaced` routing and their own
/// in-flight invocations are done, or `grace` has passed.
async fn retire(
    replaced: Arc<Routing>,
    retiring: Vec<(Hosted, Arc<ModuleStatus>)>,
    grace: Duration,
) {
    let until = Instant::now() + grace;
    // Each dispatch holds the routing it started with until it answers.
    while Arc::strong_count(&replaced) > 1 && Instant::now() < until {
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    drop(replaced);
    for (hosted, status) in retiring {
        while status.in_flight() > 0 && Instant::now() < until {
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
        hosted.instance.stop().await;
    }
}
