//! `glia worker`: hosts the modules placed on NATS and serves them in one queue group per
//! module, so N workers share one module's load (docs/PROTOCOL.md). Each module runs under
//! the same supervisor as in `glia serve`.

use crate::bus::nats::{connect, time_left};
use crate::bus::{Bus, InProcessBus, InvocationMeta, Target};
use crate::config::{BusConfig, GliaConfig, ModuleConfig, Placement, REMOTE_MODULE};
use crate::host::{spawn_module, ModuleInstance, ModuleStatus, RegistrationSummary, Slot};
use crate::telemetry::{propagation, ModuleGauge, Outcome, Role, Telemetry, WorkerSpan};
use async_nats::{Client, Message, Subscriber};
use futures::StreamExt;
use glia_bus_schema::subjects::{self, headers, AuthCheckerDescription, Description};
use glia_bus_schema::{
    CallbackRequest, Invocation, InvocationError, InvocationReply, InvocationResult,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A running worker.
pub struct Worker {
    client: Client,
    telemetry: Arc<Telemetry>,
    instances: Vec<ModuleInstance>,
    serving: Vec<actix_rt::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    in_flight: Arc<AtomicUsize>,
    names: Vec<String>,
}

/// One hosted module, as its serving task sees it.
struct Hosted {
    index: usize,
    name: String,
    description: Description,
    bus: Arc<InProcessBus>,
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
        let client = connect(settings).await?;
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
        let (stop, stopped) = watch::channel(false);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut serving = Vec::new();
        for (index, (module, instance)) in hosted.iter().zip(&instances).enumerate() {
            let subscription = client
                .queue_subscribe(
                    subjects::module_wildcard(&module.name),
                    subjects::module_queue_group(&module.name),
                )
                .await
                .map_err(|e| format!("cannot subscribe for module {}: {e}", module.name))?;
            let hosted = Arc::new(Hosted {
                index,
                name: module.name.clone(),
                description: describe(instance.summary.as_ref()),
                bus: bus.clone(),
            });
            serving.push(actix_rt::spawn(serve(
                client.clone(),
                subscription,
                hosted,
                telemetry.clone(),
                stopped.clone(),
                in_flight.clone(),
            )));
            tracing::info!(module = %module.name, queue_group = %subjects::module_queue_group(&module.name), "serving over NATS");
        }
        let worker = Worker {
            client,
            telemetry,
            instances,
            serving,
            stop,
            in_flight,
            names: hosted.iter().map(|m| m.name.clone()).collect(),
        };
        worker.confirm_subscribed().await;
        Ok(worker)
    }

    /// Waits until the server has taken this worker's subscriptions, so that `start`
    /// returning means reachable (through that server; the other servers of a cluster learn
    /// of them a moment later). Subscribing only queues the request: a coordinator asking
    /// right after could find no responders and leave the module unplanned until it asks
    /// again. The server reads a connection's messages in order, so an answer to a request
    /// sent after the subscriptions (from this worker or another of the queue group) means
    /// they are in place. A NATS user allowed to answer but not to ask gets no answer; that
    /// only costs the wait, so it is a warning.
    async fn confirm_subscribed(&self) {
        let asked = self.names.iter().map(|name| async move {
            if let Err(reason) =
                crate::bus::nats::describe(&self.client, name, Duration::from_secs(2)).await
            {
                tracing::warn!(module = %name, %reason, subject = %subjects::describe_subject(name),
                    "could not confirm the subscription by asking this subject: a NATS user that may not publish there, or may not subscribe to the module's subjects, gets no answer; serving anyway");
            }
        });
        futures::future::join_all(asked).await;
    }

    /// Its spans and metrics.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// The names of the hosted modules.
    pub fn modules(&self) -> &[String] {
        &self.names
    }

    /// Drains: stops taking invocations, lets those in flight finish for up to `grace`, then
    /// stops the modules in reverse order. Scaling down loses nothing: NATS gives new
    /// invocations to the other workers of the queue group.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.send_replace(true);
        let until = Instant::now() + grace;
        // Draining ends each subscription once the invocations already routed here are taken;
        // a lost connection could keep that from happening, so it is bounded too. Past the
        // grace, nothing more is taken: the modules are about to stop.
        let aborts: Vec<_> = self.serving.iter().map(|s| s.abort_handle()).collect();
        if tokio::time::timeout(grace, futures::future::join_all(self.serving))
            .await
            .is_err()
        {
            aborts.iter().for_each(|a| a.abort());
        }
        while self.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < until {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        crate::bus::nats::flush(&self.client, until).await;
        for instance in self.instances.into_iter().rev() {
            instance.stop().await;
        }
        self.telemetry.shutdown(until).await;
    }
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

async fn serve(
    client: Client,
    mut subscription: Subscriber,
    hosted: Arc<Hosted>,
    telemetry: Arc<Telemetry>,
    mut stop: watch::Receiver<bool>,
    in_flight: Arc<AtomicUsize>,
) {
    let mut draining = false;
    loop {
        let message = tokio::select! {
            message = subscription.next() => match message {
                Some(m) => m,
                // After a drain, the stream ends once the messages already routed to this
                // worker have been taken.
                None => return,
            },
            _ = stop.wait_for(|s| *s), if !draining => {
                draining = true;
                if subscription.drain().await.is_err() {
                    return;
                }
                continue;
            }
        };
        in_flight.fetch_add(1, Ordering::AcqRel);
        let (client, hosted, in_flight) = (client.clone(), hosted.clone(), in_flight.clone());
        let telemetry = telemetry.clone();
        actix_rt::spawn(async move {
            handle(&client, &hosted, &telemetry, message).await;
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

async fn handle(client: &Client, hosted: &Hosted, telemetry: &Telemetry, message: Message) {
    let Some(reply_to) = message.reply.clone() else {
        return;
    };
    let suffix = message
        .subject
        .strip_prefix(&subjects::module_queue_group(&hosted.name))
        .and_then(|s| s.strip_prefix('.'))
        .unwrap_or_default();
    if suffix == subjects::DESCRIBE {
        let body = serde_json::to_vec(&hosted.description).unwrap_or_default();
        let _ = client.publish(reply_to, body.into()).await;
        return;
    }
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    // Nobody waits for work past its deadline: drop it without an answer.
    let left = match header(headers::DEADLINE).and_then(|d| d.parse::<u64>().ok()) {
        Some(deadline) => match time_left(deadline) {
            Some(left) => Some(left),
            None => {
                tracing::debug!(module = %hosted.name, subject = %message.subject, "dropping an invocation past its deadline");
                return;
            }
        },
        None => None,
    };
    let request_id = header(headers::REQUEST_ID).unwrap_or_default();
    let started = Instant::now();
    let parent = propagation::extract(
        header(headers::TRACEPARENT).as_deref(),
        header(headers::TRACESTATE).as_deref(),
    );
    let span = WorkerSpan::start(
        telemetry,
        &hosted.name,
        &message.subject,
        suffix.parse().ok(),
        &request_id,
        parent,
    );
    let result = match invocation(hosted, suffix, &message) {
        Err(e) => InvocationResult::Error(e),
        Ok((request, slot)) => {
            let budget = left.unwrap_or(Duration::from_secs(60));
            let meta = InvocationMeta {
                request_id: request_id.as_str().into(),
                decision_id: Arc::from(""),
                deadline: Instant::now() + budget,
                trace: span.context().clone(),
            };
            let call = hosted.bus.invoke(
                Target {
                    module: hosted.index,
                    slot,
                },
                Arc::new(request),
                &meta,
            );
            match tokio::time::timeout(budget, call).await {
                Ok(Ok(answer)) => InvocationResult::Answer(answer),
                Ok(Err(e)) => InvocationResult::Error(e),
                Err(_) => InvocationResult::Error(InvocationError::Timeout {
                    after_ms: budget.as_millis() as u64,
                }),
            }
        }
    };
    let error = match &result {
        InvocationResult::Error(e) => Some(e),
        InvocationResult::Answer(_) => None,
    };
    if let (Some(metrics), Ok(callback)) = (telemetry.metrics(), suffix.parse()) {
        let outcome = error.map_or(Outcome::Answer, Outcome::of_error);
        metrics.invocation(
            hosted.index,
            &hosted.name,
            callback,
            outcome,
            Some(started.elapsed()),
        );
    }
    span.finish(error);
    let reply = InvocationReply { request_id, result };
    let body = serde_json::to_vec(&reply).unwrap_or_default();
    if let Err(e) = client.publish(reply_to, body.into()).await {
        tracing::warn!(module = %hosted.name, error = %e, "cannot send an invocation's answer");
    }
}

/// Decodes and checks an invocation, and picks its handler.
fn invocation(
    hosted: &Hosted,
    suffix: &str,
    message: &Message,
) -> Result<(CallbackRequest, Slot), InvocationError> {
    let malformed = |detail: String| InvocationError::Failed {
        message: format!("malformed invocation for module {}: {detail}", hosted.name),
        synapse_error: None,
    };
    let invocation: Invocation =
        serde_json::from_slice(&message.payload).map_err(|e| malformed(e.to_string()))?;
    let callback = invocation.request.callback();
    if callback.name() != suffix {
        return Err(malformed(format!(
            "the subject names {suffix:?} but the body is {callback}"
        )));
    }
    let slot = handler_slot(&hosted.description, &invocation.request).ok_or_else(|| {
        InvocationError::Unavailable {
            reason: format!("module {} does not handle {callback}", hosted.name),
        }
    })?;
    Ok((invocation.request, slot))
}

/// The module's handler of the request's callback (for an auth checker, of its login type;
/// a module serving one callback twice is served by its first handler over NATS).
fn handler_slot(description: &Description, request: &CallbackRequest) -> Option<Slot> {
    if let CallbackRequest::CheckAuth(args) = request {
        return description
            .auth_checkers
            .iter()
            .position(|a| a.login_type == args.login_type)
            .map(Slot::AuthChecker);
    }
    description
        .callbacks
        .iter()
        .position(|c| *c == request.callback())
        .map(Slot::Callback)
}
