//! Prometheus metrics. Counters on the dispatch path are resolved once per (module,
//! callback) and cached, so recording is a few atomic adds, not a label lookup.

use super::outcome::{Outcome, ReplyResult};
use super::span_drops::{DropReason, SpanDrops};
use crate::host::{ModuleState, ModuleStatus};
use glia_bus_schema::Callback;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Latency buckets in seconds: 50 µs (an in-process answer) to 10 s (the default deadline).
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// The counters and histogram of one module's part in one callback.
struct EntryMetrics {
    /// The module it counts: after a reload, an old dispatch may still name another module
    /// at the same index.
    name: Box<str>,
    outcomes: Vec<IntCounter>,
    latency: Histogram,
}

/// The counters and histogram of one callback's dispatches.
struct CallbackMetrics {
    results: Vec<IntCounter>,
    latency: Histogram,
}

/// An empty per-(module, callback) cache for `modules` modules.
fn entry_table(modules: usize) -> Vec<Vec<OnceLock<EntryMetrics>>> {
    (0..modules)
        .map(|_| (0..Callback::ALL.len()).map(|_| OnceLock::new()).collect())
        .collect()
}

/// Raises `counter` to `now`, a count kept elsewhere and read at scrape time.
fn catch_up_to(counter: &IntCounter, now: u64) {
    let seen = counter.get();
    if now > seen {
        counter.inc_by(now - seen);
    }
}

/// A module as the scrape sees it.
pub struct ModuleGauge {
    /// Its name.
    pub name: Arc<str>,
    /// Its supervisor's counters.
    pub status: Arc<ModuleStatus>,
}

/// Every metric glia serves at `/metrics`.
pub struct Metrics {
    registry: Registry,
    invocations: IntCounterVec,
    invocation_latency: HistogramVec,
    decisions: IntCounterVec,
    dispatch_latency: HistogramVec,
    restarts: IntCounterVec,
    python_recycles: IntCounterVec,
    crashes: IntCounterVec,
    in_flight: IntGaugeVec,
    state: IntGaugeVec,
    bus_errors: IntCounterVec,
    decision_log_dropped: IntCounter,
    ingress_refused: IntCounter,
    http_refused: IntCounterVec,
    spans_dropped: IntCounterVec,
    span_drops: Option<Arc<SpanDrops>>,
    active_dispatches: IntGauge,
    entries: arc_swap::ArcSwap<Vec<Vec<OnceLock<EntryMetrics>>>>,
    callbacks: Vec<OnceLock<CallbackMetrics>>,
    modules: std::sync::Mutex<Vec<ModuleGauge>>,
    reloads: IntCounterVec,
    last_reload: prometheus::Gauge,
    audits: IntCounterVec,
    audit_disagreements: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("metric names are valid")
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
        labels,
    )
    .expect("metric names are valid")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("metric names are valid")
}

/// The dispatch path's metrics: invocations and decisions, counted and timed.
struct DispatchFamily {
    invocations: IntCounterVec,
    invocation_latency: HistogramVec,
    decisions: IntCounterVec,
    dispatch_latency: HistogramVec,
    active_dispatches: IntGauge,
}

impl DispatchFamily {
    /// The dispatch path's metrics, not yet registered.
    fn new() -> Self {
        DispatchFamily {
            invocations: counter(
                "glia_invocations_total",
                "Module invocations by module, callback and outcome.",
                &["module", "callback", "outcome"],
            ),
            invocation_latency: histogram(
                "glia_invocation_duration_seconds",
                "Time from sending an invocation to its answer (or failure), per module and callback.",
                &["module", "callback"],
            ),
            decisions: counter(
                "glia_decisions_total",
                "Dispatches by callback and result.",
                &["callback", "result"],
            ),
            dispatch_latency: histogram(
                "glia_dispatch_duration_seconds",
                "Time to reach a decision, per callback.",
                &["callback"],
            ),
            active_dispatches: IntGauge::new(
                "glia_dispatches_in_flight",
                "Dispatches waiting for module answers.",
            )
            .expect("metric names are valid"),
        }
    }
}

/// The supervisors' metrics, read from the modules hosted here at scrape time.
struct ModuleFamily {
    restarts: IntCounterVec,
    python_recycles: IntCounterVec,
    crashes: IntCounterVec,
    in_flight: IntGaugeVec,
    state: IntGaugeVec,
}

impl ModuleFamily {
    /// The supervisors' metrics, not yet registered.
    fn new() -> Self {
        ModuleFamily {
            restarts: counter(
                "glia_module_restarts_total",
                "Module restarts by its supervisor.",
                &["module"],
            ),
            python_recycles: counter(
                "glia_python_host_recycles_total",
                "Python host processes replaced by a fresh one, by module and reason (max_requests, max_rss).",
                &["module", "reason"],
            ),
            crashes: counter(
                "glia_module_crashes_total",
                "Module crashes (panics, fatal errors, hangs past the watchdog).",
                &["module"],
            ),
            in_flight: gauge(
                "glia_module_in_flight",
                "Invocations queued or running in a module hosted by this process.",
                &["module"],
            ),
            state: gauge(
                "glia_module_state",
                "1 for the state a module hosted by this process is in.",
                &["module", "state"],
            ),
        }
    }
}

/// What was lost on the way: invocations the bus failed, decision records, callback
/// requests refused at the NATS ingress, spans never exported.
struct LossFamily {
    bus_errors: IntCounterVec,
    decision_log_dropped: IntCounter,
    ingress_refused: IntCounter,
    http_refused: IntCounterVec,
    spans_dropped: IntCounterVec,
}

impl LossFamily {
    /// The losses' metrics, not yet registered.
    fn new() -> Self {
        LossFamily {
            bus_errors: counter(
                "glia_bus_errors_total",
                "Invocations the bus could not deliver or whose reply it could not read.",
                &["module", "error"],
            ),
            decision_log_dropped: IntCounter::new(
                "glia_decision_log_dropped_total",
                "Decision records dropped because the writer fell behind.",
            )
            .expect("metric names are valid"),
            ingress_refused: IntCounter::new(
                "glia_nats_ingress_refused_total",
                "Callback requests over NATS refused at once because bus.ingress_max_in_flight were being answered.",
            )
            .expect("metric names are valid"),
            http_refused: counter(
                "glia_http_refused_total",
                "HTTP requests answered with one of glia's own errors (no module asked), by route (callbacks, http_antispam, modules, reload, other; connection: a connection refused when accepted, past max_connections_per_address), status and errcode.",
                &["route", "status", "reason"],
            ),
            spans_dropped: counter(
                "glia_spans_dropped_total",
                "Finished spans never exported, by reason: queue_full (the exporter fell behind), export_failed (the collector refused or did not answer), collector_down (dropped without trying while backing off after failures).",
                &["reason"],
            ),
        }
    }
}

/// The config reloads' metrics.
struct ReloadFamily {
    reloads: IntCounterVec,
    last_reload: prometheus::Gauge,
}

impl ReloadFamily {
    /// The config reloads' metrics, not yet registered.
    fn new() -> Self {
        ReloadFamily {
            reloads: counter(
                "glia_config_reloads_total",
                "Config reloads (SIGHUP or POST /_glia/v1/admin/reload) by result: applied, or refused (the new config has an error; nothing changed).",
                &["result"],
            ),
            last_reload: prometheus::Gauge::new(
                "glia_config_last_reload_success_timestamp_seconds",
                "When the config was last loaded successfully (at start or by a reload), in seconds since the Unix epoch.",
            )
            .expect("metric names are valid"),
        }
    }
}

/// Audited modules: how often each was asked in audit, and how often its answer would have
/// changed the decision.
fn audit_family() -> (IntCounterVec, IntCounterVec) {
    (
        counter(
            "glia_audit_decisions_total",
            "Decisions a module took part in without being applied (mode audit, or outside its rollout), per module and callback.",
            &["module", "callback"],
        ),
        counter(
            "glia_audit_disagreements_total",
            "Audited decisions the module would have changed (allow to deny, deny to allow, another errcode or value), per module and callback.",
            &["module", "callback"],
        ),
    )
}

impl Metrics {
    /// Metrics for `modules` modules (by config index); `gauges` are those whose
    /// supervisors run in this process.
    pub fn new(modules: usize, gauges: Vec<ModuleGauge>) -> Metrics {
        let DispatchFamily {
            invocations,
            invocation_latency,
            decisions,
            dispatch_latency,
            active_dispatches,
        } = DispatchFamily::new();
        let ModuleFamily {
            restarts,
            python_recycles,
            crashes,
            in_flight,
            state,
        } = ModuleFamily::new();
        let LossFamily {
            bus_errors,
            decision_log_dropped,
            ingress_refused,
            http_refused,
            spans_dropped,
        } = LossFamily::new();
        let ReloadFamily {
            reloads,
            last_reload,
        } = ReloadFamily::new();
        let (audits, audit_disagreements) = audit_family();
        let m = Metrics {
            audits,
            audit_disagreements,
            invocations,
            invocation_latency,
            decisions,
            dispatch_latency,
            restarts,
            python_recycles,
            crashes,
            in_flight,
            state,
            bus_errors,
            decision_log_dropped,
            ingress_refused,
            http_refused,
            spans_dropped,
            span_drops: None,
            active_dispatches,
            entries: arc_swap::ArcSwap::from_pointee(entry_table(modules)),
            callbacks: (0..Callback::ALL.len()).map(|_| OnceLock::new()).collect(),
            modules: std::sync::Mutex::new(gauges),
            reloads,
            last_reload,
            registry: Registry::new(),
        };
        m.register();
        for result in ["applied", "refused"] {
            m.reloads.with_label_values(&[result]);
        }
        m.config_loaded();
        m
    }

    /// Registers every metric with the registry `render` gathers from.
    fn register(&self) {
        for c in [
            &self.invocations,
            &self.decisions,
            &self.restarts,
            &self.python_recycles,
            &self.crashes,
            &self.bus_errors,
            &self.http_refused,
            &self.spans_dropped,
            &self.reloads,
            &self.audits,
            &self.audit_disagreements,
        ] {
            self.registry.register(Box::new(c.clone())).expect("unique");
        }
        for h in [&self.invocation_latency, &self.dispatch_latency] {
            self.registry.register(Box::new(h.clone())).expect("unique");
        }
        for g in [&self.in_flight, &self.state] {
            self.registry.register(Box::new(g.clone())).expect("unique");
        }
        for c in [&self.decision_log_dropped, &self.ingress_refused] {
            self.registry.register(Box::new(c.clone())).expect("unique");
        }
        self.registry
            .register(Box::new(self.active_dispatches.clone()))
            .expect("unique");
        self.registry
            .register(Box::new(self.last_reload.clone()))
            .expect("unique");
    }

    /// Replaces the modules whose gauges are served (a reload started or stopped some); a
    /// module no longer hosted here loses its `in_flight` and `state` series.
    pub fn set_module_gauges(&self, gauges: Vec<ModuleGauge>) {
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        for gone in modules
            .iter()
            .filter(|m| gauges.iter().all(|g| g.name != m.name))
        {
            let _ = self.in_flight.remove_label_values(&[&gone.name]);
            for state in ModuleState::ALL {
                let _ = self
                    .state
                    .remove_label_values(&[&gone.name, state.as_str()]);
            }
        }
        *modules = gauges;
    }

    /// Counts a reload: `applied` or `refused`.
    pub fn config_reloaded(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.reloads.with_label_values(&[result]).inc();
        if applied {
            self.config_loaded();
        }
    }

    fn config_loaded(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_reload.set(now);
    }

    /// Starts the per-(module, callback) cache anew for `modules` modules: a reload numbered
    /// them anew.
    pub fn renumber(&self, modules: usize) {
        self.entries.store(Arc::new(entry_table(modules)));
    }

    fn entry<'a>(
        entries: &'a [Vec<OnceLock<EntryMetrics>>],
        metrics: &Metrics,
        module: usize,
        name: &str,
        callback: Callback,
    ) -> Option<&'a EntryMetrics> {
        let slot = entries.get(module)?.get(callback.index())?;
        let entry = slot.get_or_init(|| EntryMetrics {
            name: name.into(),
            outcomes: Outcome::ALL
                .iter()
                .map(|o| {
                    metrics
                        .invocations
                        .with_label_values(&[name, callback.name(), o.as_str()])
                })
                .collect(),
            latency: metrics
                .invocation_latency
                .with_label_values(&[name, callback.name()]),
        });
        (*entry.name == *name).then_some(entry)
    }

    /// Counts one invocation of module `module` (config index) named `name`.
    pub fn invocation(
        &self,
        module: usize,
        name: &str,
        callback: Callback,
        outcome: Outcome,
        latency: Option<Duration>,
    ) {
        let entries = self.entries.load();
        match Metrics::entry(&entries, self, module, name, callback) {
            Some(e) => {
                e.outcomes[outcome as usize].inc();
                if let Some(latency) = latency {
                    e.latency.observe(latency.as_secs_f64());
                }
            }
            // An index outside the config, or held by another module (an old dispatch after a
            // reload): the slow path still counts.
            None => self
                .invocations
                .with_label_values(&[name, callback.name(), outcome.as_str()])
                .inc(),
        }
        if outcome == Outcome::Unavailable || outcome == Outcome::Invalid {
            self.bus_errors
                .with_label_values(&[name, outcome.as_str()])
                .inc();
        }
    }

    /// Counts one decision.
    pub fn decision(&self, callback: Callback, result: ReplyResult, latency: Duration) {
        let c = self.callbacks[callback.index()].get_or_init(|| CallbackMetrics {
            results: ReplyResult::ALL
                .iter()
                .map(|r| {
                    self.decisions
                        .with_label_values(&[callback.name(), r.as_str()])
                })
                .collect(),
            latency: self.dispatch_latency.with_label_values(&[callback.name()]),
        });
        c.results[result as usize].inc();
        c.latency.observe(latency.as_secs_f64());
    }

    /// Serves `drops` as `glia_spans_dropped_total` (read at scrape time), once spans are
    /// exported.
    pub fn count_span_drops(&mut self, drops: Arc<SpanDrops>) {
        for reason in DropReason::ALL {
            self.spans_dropped.with_label_values(&[reason.as_str()]);
        }
        self.span_drops = Some(drops);
    }

    /// A dispatch started (`+1`) or finished (`-1`).
    pub fn dispatch_active(&self, delta: i64) {
        self.active_dispatches.add(delta);
    }

    /// `module` took part in a `callback` decision in audit; `changed`: its answer would have
    /// changed the decision.
    pub fn audited(&self, module: &str, callback: Callback, changed: bool) {
        let labels = [module, callback.name()];
        self.audits.with_label_values(&labels).inc();
        let disagreements = self.audit_disagreements.with_label_values(&labels);
        if changed {
            disagreements.inc();
        }
    }

    /// A decision record the writer could not take.
    pub fn decision_dropped(&self) {
        self.decision_log_dropped.inc();
    }

    /// A callback request over NATS refused: the ingress was at its bound.
    pub fn ingress_refused(&self) {
        self.ingress_refused.inc();
    }

    /// An HTTP request on `route` answered with glia's own error: `status`, `errcode`.
    pub fn http_refused(&self, route: &str, status: &str, errcode: &str) {
        self.http_refused
            .with_label_values(&[route, status, errcode])
            .inc();
    }

    /// The text exposition format (version 0.0.4), with module gauges read now.
    pub fn render(&self) -> String {
        for m in self
            .modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let name = &*m.name;
            let catch_up = |c: &IntCounterVec, now: u64| {
                catch_up_to(&c.with_label_values(&[name]), now);
            };
            catch_up(&self.restarts, m.status.restarts());
            catch_up(&self.crashes, m.status.crashes());
            self.in_flight
                .with_label_values(&[name])
                .set(m.status.in_flight() as i64);
            let current = m.status.state();
            for state in ModuleState::ALL {
                self.state
                    .with_label_values(&[name, state.as_str()])
                    .set(i64::from(state == current));
            }
        }
        for (module, reason, count) in crate::python::recycles() {
            let counter = self
                .python_recycles
                .with_label_values(&[&module, reason.as_str()]);
            catch_up_to(&counter, count);
        }
        if let Some(drops) = &self.span_drops {
            for reason in DropReason::ALL {
                catch_up_to(
                    &self.spans_dropped.with_label_values(&[reason.as_str()]),
                    drops.get(reason),
                );
            }
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# cannot encode metrics: {e}\n"))
    }
}
