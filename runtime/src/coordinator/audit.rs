//! Dispatches with audited modules (mode `audit`, or outside their `rollout` share): the
//! enforcing modules decide, as if the audited ones were not in the plan, and the answer goes
//! out as soon as they have. Beside it, off the answer's path, each audited module's would-be
//! decision (the plan with that module enforced) is reached from the same answers: every
//! module is asked once per dispatch, whichever walk asks first. When the would-be decision
//! and the applied one are both known they are compared and recorded (decision log, metric,
//! span), as Kubernetes' `Audit` admission action or Envoy's shadow rules do.

use super::plan::{Plan, PlanEntry, Stage};
use super::reducers::DispatchCtx;
use super::trace::{result_record, DispatchTrace};
use super::Routing;
use crate::bus::{Bus, InvocationMeta, InvokeFuture, Route, Target};
use crate::policy::Subject;
use crate::telemetry::decision_log::AuditRecord;
use crate::telemetry::{Role, Telemetry};
use futures::future::{FutureExt, Shared};
use glia_bus_schema::{CallbackRequest, DispatchReply};
use opentelemetry::trace::{Span as _, Tracer as _};
use opentelemetry::KeyValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};
use tokio::sync::watch;

/// A plan split for one request: who decides, and who is only recorded.
pub(super) struct Staged {
    /// The entries applied for this request, in plan order.
    enforcing: Plan,
    /// The entries recorded only, each with the plan that would have decided had it been
    /// enforced.
    audited: Vec<Shadow>,
}

/// An audited entry and its would-be plan.
struct Shadow {
    entry: PlanEntry,
    would: Plan,
    reason: &'static str,
}

/// Splits `plan` for `request`; `None` when every entry is enforced for it.
pub(super) fn split(plan: &Plan, request: &CallbackRequest) -> Option<Staged> {
    // Each subject is read from the arguments at most once per dispatch.
    let mut subjects: Vec<(Subject, Option<String>)> = Vec::new();
    let mut subject = |by: Subject| -> Option<String> {
        if let Some((_, found)) = subjects.iter().find(|(s, _)| *s == by) {
            return found.clone();
        }
        let found = by.of(request);
        subjects.push((by, found.clone()));
        found
    };
    let reasons: Vec<Option<&'static str>> = plan
        .entries
        .iter()
        .map(|e| match e.stage {
            Stage::Enforce => None,
            Stage::Audit => Some("audit"),
            Stage::Rollout(r) => {
                let inside = subject(r.by).is_some_and(|s| r.enforces_subject(&e.name, &s));
                (!inside).then_some("rollout")
            }
        })
        .collect();
    if reasons.iter().all(Option::is_none) {
        return None;
    }
    let enforced = |i: usize| reasons[i].is_none();
    let enforcing = plan_of(plan, enforced);
    let audited = (0..plan.entries.len())
        .filter_map(|i| {
            let reason = reasons[i]?;
            Some(Shadow {
                entry: plan.entries[i].clone(),
                would: plan_of(plan, |j| j == i || enforced(j)),
                reason,
            })
        })
        .collect();
    Some(Staged { enforcing, audited })
}

/// The entries of `plan` whose positions `keep` selects, in order, each enforced.
fn plan_of(plan: &Plan, keep: impl Fn(usize) -> bool) -> Plan {
    Plan {
        entries: (0..plan.entries.len())
            .filter(|&i| keep(i))
            .map(|i| PlanEntry {
                stage: Stage::Enforce,
                ..plan.entries[i].clone()
            })
            .collect(),
    }
}

/// The bus of a staged dispatch: the first invocation of each handler goes out on the real
/// bus, and every walk of the dispatch shares its answer.
struct Once {
    bus: Arc<dyn Bus>,
    calls: Mutex<HashMap<Target, Shared<InvokeFuture>>>,
}

impl Bus for Once {
    fn invoke(
        &self,
        target: Target,
        request: Arc<CallbackRequest>,
        meta: &InvocationMeta,
    ) -> InvokeFuture {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let call = calls
            .entry(target)
            .or_insert_with(|| self.bus.invoke(target, request, meta).shared())
            .clone();
        Box::pin(call)
    }

    fn route(&self, target: Target) -> Route {
        self.bus.route(target)
    }
}

/// Decides by the enforcing entries of `staged` and starts each audited entry's would-be
/// walk in the background.
pub(super) async fn decide(
    ctx: &DispatchCtx<'_>,
    staged: Staged,
    request: Arc<CallbackRequest>,
) -> DispatchReply {
    let once = Arc::new(Once {
        bus: ctx.routing.bus.clone(),
        calls: Mutex::new(HashMap::new()),
    });
    let (applied, settled) = watch::channel(None);
    let names = staged.audited.iter().map(|s| s.entry.name.to_string());
    ctx.trace.set_audited(names.collect());
    let started = Instant::now();
    for shadow in staged.audited {
        let walk = Would {
            routing: ctx.routing.clone(),
            once: once.clone(),
            meta: ctx.meta.clone(),
            drained: ctx.drained.clone(),
            telemetry: ctx.trace.telemetry().clone(),
            started,
        };
        spawn_beside(walk.run(shadow, request.clone(), settled.clone()));
    }
    let enforcing = DispatchCtx {
        bus: once.as_ref(),
        meta: ctx.meta.clone(),
        drained: ctx.drained.clone(),
        trace: ctx.trace,
        generation: ctx.generation,
        routing: ctx.routing,
    };
    let reply = super::reduce(&enforcing, &staged.enforcing, request).await;
    applied.send_replace(Some(Arc::new(reply.clone())));
    reply
}

/// Runs `walk` as a task of the calling thread's actix arbiter when it has one (a module with
/// `instances: per_thread` builds its instance there, with tasks of that arbiter), else of
/// the tokio runtime.
fn spawn_beside(walk: impl std::future::Future<Output = ()> + Send + 'static) {
    if actix_rt::Arbiter::try_current().is_some() {
        actix_rt::spawn(walk);
    } else {
        tokio::spawn(walk);
    }
}

/// What one would-be walk needs, owned: it outlives the dispatch.
struct Would {
    /// Held so a reload waits for the walk before stopping the modules it asks.
    routing: Arc<Routing>,
    once: Arc<Once>,
    meta: InvocationMeta,
    drained: watch::Receiver<bool>,
    telemetry: Arc<Telemetry>,
    started: Instant,
}

/// The telemetry a would-be walk's own books go to: none (its audit record says it all).
fn quiet() -> &'static Arc<Telemetry> {
    static QUIET: OnceLock<Arc<Telemetry>> = OnceLock::new();
    QUIET.get_or_init(|| Arc::new(Telemetry::disabled(Role::Coordinator)))
}

impl Would {
    /// Reaches the decision `shadow`'s plan would have, waits for the applied one, and
    /// records both. A dispatch abandoned before it decided records nothing.
    async fn run(
        self,
        shadow: Shadow,
        request: Arc<CallbackRequest>,
        mut settled: watch::Receiver<Option<Arc<DispatchReply>>>,
    ) {
        let callback = request.callback();
        let trace = DispatchTrace::begin(quiet(), callback, &self.meta, &request, None);
        let ctx = DispatchCtx {
            bus: self.once.as_ref(),
            meta: self.meta.clone(),
            drained: self.drained.clone(),
            trace: &trace,
            generation: &self.routing.generation,
            routing: &self.routing,
        };
        let would = super::reduce(&ctx, &shadow.would, request).await;
        drop(ctx);
        let took = self.started.elapsed();
        let Ok(applied) = settled.wait_for(Option::is_some).await.map(|a| a.clone()) else {
            return;
        };
        let Some(applied) = applied else { return };
        let audit = Audit {
            shadow: &shadow,
            callback,
            would: &would,
            applied: &applied,
            took,
        };
        audit.record(&self.telemetry, &self.meta);
    }
}

/// One audited module's would-be decision beside the applied one.
struct Audit<'a> {
    shadow: &'a Shadow,
    callback: glia_bus_schema::Callback,
    would: &'a DispatchReply,
    applied: &'a DispatchReply,
    took: std::time::Duration,
}

impl Audit<'_> {
    /// Counts it, traces it (a span under the dispatch's) and writes its record.
    fn record(&self, telemetry: &Telemetry, meta: &InvocationMeta) {
        let changed = !same_decision(self.would, self.applied);
        let module = &self.shadow.entry.name;
        if let Some(m) = telemetry.metrics() {
            m.audited(module, self.callback, changed);
        }
        let content = telemetry.decisions().is_some_and(|d| d.include_content());
        let (_, would, _) = result_record(Ok(self.would), content);
        let (_, applied, _) = result_record(Ok(self.applied), content);
        if let Some(tracer) = telemetry.tracer() {
            let mut span = tracer
                .span_builder(format!("audit {}", self.callback))
                .with_attributes([
                    KeyValue::new("glia.callback", self.callback.name()),
                    KeyValue::new("glia.module", module.to_string()),
                    KeyValue::new("glia.audit.reason", self.shadow.reason),
                    KeyValue::new("glia.audit.would", would.decision),
                    KeyValue::new("glia.audit.applied", applied.decision),
                    KeyValue::new("glia.audit.changed", changed),
                ])
                .start_with_context(tracer, &meta.trace);
            span.end();
        }
        let Some(log) = telemetry.decisions() else {
            return;
        };
        let record = AuditRecord {
            kind: "audit",
            decision_id: meta.decision_id.to_string(),
            time: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            callback: self.callback.name(),
            request_id: meta.request_id.to_string(),
            module: module.to_string(),
            reason: self.shadow.reason,
            would,
            applied,
            changed,
            duration_ms: self.took.as_secs_f64() * 1000.0,
        };
        if !log.write(record) {
            if let Some(m) = telemetry.metrics() {
                m.decision_dropped();
            }
        }
    }
}

/// Whether two replies say the same thing to Synapse: equal but for which module made them.
pub fn same_decision(a: &DispatchReply, b: &DispatchReply) -> bool {
    if a == b {
        return true;
    }
    let (sa, sb) = (a.summary(), b.summary());
    if (sa.kind, sa.errcode, sa.status) != (sb.kind, sb.errcode, sb.status) {
        return false;
    }
    let json = |reply: &DispatchReply| serde_json::to_value(reply).unwrap_or_default();
    same_reply(&json(a), &json(b))
}

/// [`same_decision`] of two replies as JSON (as the decision log records them).
pub fn same_reply(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let strip = |reply: &serde_json::Value| {
        let mut value = reply.clone();
        if let Some(object) = value.as_object_mut() {
            object.remove("module");
        }
        value
    };
    strip(a) == strip(b)
}
