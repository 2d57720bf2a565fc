//! Reloading a worker's config (SIGHUP), by the same rules as `glia serve`: an unchanged
//! module keeps running untouched; a changed one is replaced behind its subscriptions (the
//! new instance is swapped into the slot its serving tasks read, and the old one stops once
//! the invocations it took are done); an added one is started, subscribed and announced; a
//! removed one announces it is leaving, drains its subscriptions and stops. An error
//! changes nothing.

use super::hosted::Hosted;
use super::{gauges, hosted, hosted_modules, stop_units, Unit, Worker};
use crate::app::{ReloadError, ReloadReport, StartError};
use crate::config::{GliaConfig, ModuleConfig};
use crate::host::{spawn_module, ModuleInstance, ModuleStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What becomes of a module of the new config.
enum Fate {
    /// The old unit at this index, unchanged.
    Kept(usize),
    /// Replaces the old unit at this index; its new instance.
    Replaces(usize, ModuleInstance, Arc<ModuleStatus>),
    /// New; its unit, not yet announced.
    Added(Box<Unit>),
}

impl Worker {
    /// Re-reads the config with the loader given at start and applies it.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let result = match &self.loader {
            Some(load) => {
                match crate::app::load_bounded(load.clone(), crate::app::LOAD_TIMEOUT).await {
                    Ok(config) => self.apply(config).await,
                    Err(e) => Err(e),
                }
            }
            None => Err(ReloadError::NoLoader),
        };
        let metrics = self.serving.telemetry.metrics();
        match &result {
            Ok(report) => {
                tracing::info!(config = %report.config, started = ?report.started, replaced = ?report.replaced, stopped = ?report.stopped, kept = report.kept.len(), "worker config reloaded");
                metrics.inspect(|m| m.config_reloaded(true));
            }
            Err(e) => {
                tracing::error!(error = %e, "worker config reload refused; nothing changed");
                metrics.inspect(|m| m.config_reloaded(false));
            }
        }
        result
    }

    /// Switches the hosted modules to `config`'s; returns once the retired ones stopped.
    pub async fn apply(&self, config: GliaConfig) -> Result<ReloadReport, ReloadError> {
        let mut units = self.units.lock().await;
        if units.is_empty() {
            return Err(ReloadError::ShuttingDown);
        }
        let old = self
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if old.bus != config.bus {
            return Err(ReloadError::BusChanged {
                file: config.source.clone(),
            });
        }
        let wanted = hosted_modules(&config)
            .map_err(|e| ReloadError::Start(StartError::Bus(format!("{}: {e}", config.source))))?;
        // Start what is new first: on an error, stop it again and change nothing.
        let fates = self.start_new(&units, &wanted).await?;

        let mut report = ReloadReport {
            config: config.source.clone(),
            needs_restart: if old.telemetry == config.telemetry {
                Vec::new()
            } else {
                vec!["telemetry"]
            },
            ..ReloadReport::default()
        };
        let moved = self.move_units(&mut units, &wanted, fates, &mut report);
        if let Some(metrics) = self.serving.telemetry.metrics() {
            let statuses: Vec<Arc<ModuleStatus>> = units.iter().map(|u| u.status.clone()).collect();
            metrics.set_module_gauges(gauges(&wanted, &statuses));
            metrics.renumber(wanted.len());
        }
        if !moved.added.is_empty() {
            // Announced only once reachable, as at start.
            super::confirm_subscribed(&self.serving.client, &moved.added).await;
            for unit in units
                .iter_mut()
                .filter(|u| moved.added.contains(&u.config.name))
            {
                let announcing = self.announce(unit);
                unit.tasks.push(announcing);
            }
        }
        let grace = config.shutdown_grace;
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        drop(units);
        retire(moved.removed, moved.retiring, grace).await;
        Ok(report)
    }

    /// Starts the instances `wanted` adds or changes (a kept module starts nothing); on an
    /// error, stops what it started, so a refused reload leaves nothing behind.
    async fn start_new(
        &self,
        units: &[Unit],
        wanted: &[&ModuleConfig],
    ) -> Result<Vec<Fate>, ReloadError> {
        let mut fates = Vec::with_capacity(wanted.len());
        for (index, module) in wanted.iter().enumerate() {
            let previous = units.iter().position(|u| u.config.name == module.name);
            let started = match previous {
                Some(i) if units[i].config.fingerprint == module.fingerprint => Ok(Fate::Kept(i)),
                Some(i) => {
                    let status = Arc::new(ModuleStatus::continuing(&units[i].status));
                    spawn_module(module, status.clone(), Arc::new(|_| {}))
                        .await
                        .map(|instance| Fate::Replaces(i, instance, status))
                }
                None => self
                    .start_unit(module, index, Arc::new(ModuleStatus::default()))
                    .await
                    .map(|unit| Fate::Added(Box::new(unit))),
            };
            match started {
                Ok(fate) => fates.push(fate),
                Err(e) => {
                    for fate in fates {
                        match fate {
                            Fate::Replaces(_, instance, _) => instance.stop().await,
                            Fate::Added(unit) => stop_units(vec![*unit], Duration::ZERO).await,
                            Fate::Kept(_) => {}
                        }
                    }
                    return Err(ReloadError::Start(e.into()));
                }
            }
        }
        Ok(fates)
    }

    /// Puts the units of the new config, in its order, into `units` (which holds the old
    /// ones), each as its fate says, and reports which were kept, replaced, started and
    /// stopped. Nothing here waits, so serving tasks see the whole switch at once.
    fn move_units(
        &self,
        units: &mut Vec<Unit>,
        wanted: &[&ModuleConfig],
        fates: Vec<Fate>,
        report: &mut ReloadReport,
    ) -> Moved {
        let mut previous: Vec<Option<Unit>> = std::mem::take(units).into_iter().map(Some).collect();
        let mut retiring: Vec<Retiring> = Vec::new();
        let mut added = Vec::new();
        for ((index, module), fate) in wanted.iter().enumerate().zip(fates) {
            let unit = match fate {
                Fate::Kept(i) => {
                    report.kept.push(module.name.clone());
                    let unit = previous[i].take().expect("each old unit is taken once");
                    self.renumber(&unit, module, index);
                    unit
                }
                Fate::Replaces(i, instance, status) => {
                    report.replaced.push(module.name.clone());
                    let mut unit = previous[i].take().expect("each old unit is taken once");
                    retiring.push(self.replace(&mut unit, module, index, instance, status));
                    unit
                }
                Fate::Added(unit) => {
                    let unit = *unit;
                    report.started.push(module.name.clone());
                    added.push(module.name.clone());
                    unit
                }
            };
            units.push(unit);
        }
        let removed: Vec<Unit> = previous.into_iter().flatten().collect();
        report.stopped = removed.iter().map(|u| u.config.name.clone()).collect();
        Moved {
            retiring,
            added,
            removed,
        }
    }

    /// Serves a kept unit at its new `index` (it may have moved): the same instance, permits
    /// and admission.
    fn renumber(&self, unit: &Unit, module: &ModuleConfig, index: usize) {
        let current = unit.slot.load_full();
        let route = current.bus.route(current.index).expect("a hosted route");
        unit.slot.store(Arc::new(hosted(
            module,
            index,
            route,
            current.admission.clone(),
            unit.instance.summary.as_ref(),
            &self.id,
        )));
    }

    /// Swaps `instance` into `unit`'s slot, behind its subscriptions; returns the old
    /// instance, to stop once the invocations it took are done.
    fn replace(
        &self,
        unit: &mut Unit,
        module: &ModuleConfig,
        index: usize,
        instance: ModuleInstance,
        status: Arc<ModuleStatus>,
    ) -> Retiring {
        let fresh = hosted(
            module,
            index,
            crate::bus::ModuleRoute::to_instance(module, &instance),
            Hosted::admission(module.max_in_flight, module.restart.stash),
            instance.summary.as_ref(),
            &self.id,
        );
        let old_hosted = unit.slot.swap(Arc::new(fresh));
        let old_instance = std::mem::replace(&mut unit.instance, instance);
        let old_status = std::mem::replace(&mut unit.status, status);
        unit.config = module.clone();
        (old_hosted, old_instance, old_status)
    }
}

/// A replaced module's old serving state, instance and status, until it stops.
type Retiring = (Arc<Hosted>, ModuleInstance, Arc<ModuleStatus>);

/// What moving the units left to do once the lock is released: instances to retire, the
/// names of the modules added (to announce) and the units removed (to drain and stop).
struct Moved {
    retiring: Vec<Retiring>,
    added: Vec<String>,
    removed: Vec<Unit>,
}

/// A removed module announces it is leaving and drains its subscriptions; then it, and each
/// replaced instance, stops once the invocations it took are done, or `grace` has passed.
async fn retire(removed: Vec<Unit>, mut retiring: Vec<Retiring>, grace: Duration) {
    for unit in &removed {
        unit.stop.send_replace(true);
    }
    let until = Instant::now() + grace;
    for unit in removed {
        let slot = unit.slot.load_full();
        let _ = tokio::time::timeout(
            until.saturating_duration_since(Instant::now()),
            futures::future::join_all(unit.tasks),
        )
        .await;
        retiring.push((slot, unit.instance, unit.status));
    }
    for (hosted, instance, status) in retiring {
        // Each invocation's task holds the module it was given until it answered.
        while (Arc::strong_count(&hosted) > 1 || status.in_flight() > 0) && Instant::now() < until {
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
        instance.stop().await;
    }
}
