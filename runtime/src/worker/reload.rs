//! Reloading a worker's config (SIGHUP), by the same rules as `glia serve`: an unchanged
//! module keeps running untouched; a changed one is replaced behind its subscriptions (the
//! new instance is swapped into the slot its serving tasks read, and the old one stops once
//! the invocations it took are done); an added one is started, subscribed and announced; a
//! removed one announces it is leaving, drains its subscriptions and stops. An error
//! changes nothing.

use super::serve::Hosted;
use super::{gauges, hosted, hosted_modules, stop_units, Unit, Worker};
use crate::app::{ReloadError, ReloadReport, StartError};
use crate::config::GliaConfig;
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
            Some(load) => match load() {
                Ok(config) => self.apply(config).await,
                Err(e) => Err(e.into()),
            },
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

        let mut report = ReloadReport {
            config: config.source.clone(),
            needs_restart: if old.telemetry == config.telemetry {
                Vec::new()
            } else {
                vec!["telemetry"]
            },
            ..ReloadReport::default()
        };
        let mut previous: Vec<Option<Unit>> =
            std::mem::take(&mut *units).into_iter().map(Some).collect();
        let mut retiring: Vec<(Arc<Hosted>, ModuleInstance, Arc<ModuleStatus>)> = Vec::new();
        let mut added = Vec::new();
        for ((index, module), fate) in wanted.iter().enumerate().zip(fates) {
            let unit = match fate {
                Fate::Kept(i) => {
                    report.kept.push(module.name.clone());
                    let unit = previous[i].take().expect("each old unit is taken once");
                    // Its index may have moved: the same instance, permits and admission.
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
                    unit
                }
                Fate::Replaces(i, instance, status) => {
                    report.replaced.push(module.name.clone());
                    let mut unit = previous[i].take().expect("each old unit is taken once");
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
                    retiring.push((old_hosted, old_instance, old_status));
                    unit.config = (*module).clone();
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
        if let Some(metrics) = self.serving.telemetry.metrics() {
            let statuses: Vec<Arc<ModuleStatus>> = units.iter().map(|u| u.status.clone()).collect();
            metrics.set_module_gauges(gauges(&wanted, &statuses));
            metrics.renumber(wanted.len());
        }
        if !added.is_empty() {
            // Announced only once reachable, as at start.
            super::confirm_subscribed(&self.serving.client, &added).await;
            for unit in units.iter_mut().filter(|u| added.contains(&u.config.name)) {
                let announcing = self.announce(unit);
                unit.tasks.push(announcing);
            }
        }
        let grace = config.shutdown_grace;
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        drop(units);

        // A removed module announces it is leaving and drains its subscriptions; then it
        // stops once the invocations it took are done.
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
            while (Arc::strong_count(&hosted) > 1 || status.in_flight() > 0)
                && Instant::now() < until
            {
                actix_rt::time::sleep(Duration::from_millis(2)).await;
            }
            instance.stop().await;
        }
        Ok(report)
    }
}
