//! `glia worker`: hosts the modules placed on NATS and serves them in one queue group per
//! module, so N workers share one module's load (docs/PROTOCOL.md). Each module runs under
//! the same supervisor as in `glia serve`. A worker also serves each module on subjects of
//! its own and announces them (`announce.rs`), so coordinators can stop routing to a worker
//! that stopped answering; and it takes no more invocations than a module can run or stash
//! (`serve.rs`).

mod announce;
mod serve;

pub use announce::ANNOUNCE_INTERVAL;

use crate::bus::InProcessBus;
use crate::config::{BusConfig, GliaConfig, Instances, ModuleConfig, Placement, REMOTE_MODULE};
use crate::host::{spawn_module, ModuleInstance, ModuleStatus, PerThread, RegistrationSummary};
use crate::telemetry::{ModuleGauge, Role, Telemetry};
use async_nats::Client;
use glia_bus_schema::subjects::{self, AuthCheckerDescription, Description};
use serve::{Hosted, Serving};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A running worker.
pub struct Worker {
    serving: Arc<Serving>,
    instances: Vec<ModuleInstance>,
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
    announcing: actix_rt::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
    names: Vec<String>,
    id: String,
}

/// A fresh worker id: a subject token unique enough among a module's workers.
fn worker_id() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(16)
        .collect()
}

impl Worker {
    /// Connects to NATS, starts the config's `placement: nats` modules (except `remote`
    /// ones, which other programs serve) and subscribes for each.
    pub async fn start(config: &GliaConfig) -> Result<Worker, String> {
        let BusConfig::Nats(settings) = &config.bus else {
            return Err("glia worker needs the NATS bus: `bus: {type: nats, url: ...}`".into());
        };
        let hosted: Vec<&ModuleConfig> = config
            .modules
            .iter()
            .filter(|m| m.placement == Placement::Nats && m.module != REMOTE_MODULE)
            .collect();
        if hosted.is_empty() {
            return Err(
                "no module to host: a worker hosts the modules with `placement: nats`".into(),
            );
        }
        let (client, refusals) = crate::bus::nats::connect(settings, "worker").await?;
        let statuses: Vec<Arc<ModuleStatus>> = hosted
            .iter()
            .map(|_| Arc::new(ModuleStatus::default()))
            .collect();
        let gauges = hosted
            .iter()
            .zip(&statuses)
            .map(|(m, status)| ModuleGauge {
                name: m.name.as_str().into(),
                status: status.clone(),
            })
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
                hosted.len(),
                gauges,
                Some(client.clone()),
                None,
            )
            .map_err(|e| e.to_string())?,
        );
        let mut instances = Vec::new();
        for (module, status) in hosted.iter().zip(&statuses) {
            let instance = spawn_module(module, status.clone(), Arc::new(|_| {}))
                .await
                .map_err(|e| e.to_string())?;
            instances.push(instance);
        }
        let bus = Arc::new(InProcessBus::new(
            hosted
                .iter()
                .zip(&instances)
                .map(|(m, i)| Some((i.addr.clone(), m.max_in_flight))),
        ));
        for (index, (module, status)) in hosted.iter().zip(&statuses).enumerate() {
            if module.instances == Instances::PerThread {
                bus.run_per_thread(index, PerThread::new(module, status.clone()));
            }
        }
        let id = worker_id();
        let serving = Arc::new(Serving {
            client: client.clone(),
            telemetry,
            in_flight: Default::default(),
        });
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for (index, (module, instance)) in hosted.iter().zip(&instances).enumerate() {
            let hosted = Arc::new(Hosted {
                index,
                name: module.name.clone(),
                description: describe(instance.summary.as_ref()),
                bus: bus.clone(),
                admission: Hosted::admission(module.max_in_flight, module.restart.stash),
                capacity: (module.max_in_flight, module.restart.stash),
                worker: id.as_str().into(),
            });
            let group = subjects::module_queue_group(&module.name);
            let shared = client
                .queue_subscribe(subjects::module_wildcard(&module.name), group.clone())
                .await;
            let own = client
                .subscribe(subjects::worker_wildcard(&id, &module.name))
                .await;
            let (shared, own) = match (shared, own) {
                (Ok(shared), Ok(own)) => (shared, own),
                (Err(e), _) | (_, Err(e)) => {
                    return Err(format!("cannot subscribe for module {}: {e}", module.name))
                }
            };
            for (subscription, prefix) in [
                (shared, group.clone()),
                (own, subjects::worker_module_prefix(&id, &module.name)),
            ] {
                tasks.push(actix_rt::spawn(serve::serve(
                    serving.clone(),
                    hosted.clone(),
                    subscription,
                    prefix,
                    stopped.clone(),
                )));
            }
            tracing::info!(module = %module.name, queue_group = %group, worker = %id, "serving over NATS");
        }
        let names: Vec<String> = hosted.iter().map(|m| m.name.clone()).collect();
        confirm_subscribed(&client, &names).await;
        // Announced only once reachable: a coordinator routes to it as soon as it hears.
        let announcing = actix_rt::spawn(announce::announce(
            client,
            refusals,
            id.clone(),
            names.clone(),
            stopped,
        ));
        Ok(Worker {
            serving,
            instances,
            tasks,
            announcing,
            stop,
            names,
            id,
        })
    }

    /// Its spans and metrics.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.serving.telemetry
    }

    /// The names of the hosted modules.
    pub fn modules(&self) -> &[String] {
        &self.names
    }

    /// Its id, the token of its own subjects (`glia.v1.worker.<id>.<module>.<callback>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Drains: announces that it is leaving, stops taking invocations, lets those in flight
    /// finish for up to `grace`, then stops the modules in reverse order. Scaling down loses
    /// nothing: NATS gives new invocations to the other workers of the queue group, and
    /// coordinators stop routing to this one.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.send_replace(true);
        let until = Instant::now() + grace;
        // Draining ends each subscription once the invocations already routed here are taken;
        // a lost connection could keep that from happening, so it is bounded too. Past the
        // grace, nothing more is taken: the modules are about to stop.
        let mut tasks = self.tasks;
        tasks.push(self.announcing);
        let aborts: Vec<_> = tasks.iter().map(|s| s.abort_handle()).collect();
        if tokio::time::timeout(grace, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            aborts.iter().for_each(|a| a.abort());
        }
        while self.serving.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < until {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        crate::bus::nats::flush(&self.serving.client, until).await;
        for instance in self.instances.into_iter().rev() {
            instance.stop().await;
        }
        self.serving.telemetry.shutdown(until).await;
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

fn describe(summary: Option<&RegistrationSummary>) -> Description {
    let summary = summary.cloned().unwrap_or_default();
    Description {
        callbacks: summary.callbacks,
        auth_checkers: summary
            .auth_checkers
            .into_iter()
            .map(|(login_type, fields)| AuthCheckerDescription { login_type, fields })
            .collect(),
        web_resources: Vec::new(),
    }
}
