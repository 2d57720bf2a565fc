//! One dispatch as telemetry sees it: its span, a child span per module invocation, the
//! metrics they move and the decision record they make; and a worker's span per invocation.

use super::{DispatchError, PlanEntry};
use crate::bus::{InvocationMeta, Route};
use crate::policy::FailurePolicy;
use crate::propagation;
use crate::telemetry::decision_log::{DecisionRecord, ModuleRecord, ResultRecord};
use crate::telemetry::outcome::{Outcome, ReplyResult};
use crate::telemetry::Telemetry;
use glia_bus_schema::subjects;
use glia_bus_schema::{Callback, CallbackRequest, DispatchReply, InvocationError};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How one invocation ended, as traces, metrics and the decision log record it.
#[derive(Debug, Clone, Copy)]
pub struct Judgement<'a> {
    /// What became of it.
    pub outcome: Outcome,
    /// A deny's errcode.
    pub errcode: Option<&'a str>,
    /// From sending to the answer or failure.
    pub latency: Duration,
    /// The failure and the policy that resolved it.
    pub failure: Option<(&'a InvocationError, FailurePolicy)>,
}

/// A module invocation's span (when spans are recorded). Dropped without
/// [`InvocationSpan::finish`], the invocation was not waited for: it ends as `skipped`.
pub struct InvocationSpan {
    span: Option<(Context, SystemTime)>,
}

impl InvocationSpan {
    /// No span (export off).
    pub const NONE: InvocationSpan = InvocationSpan { span: None };

    /// The context to send with the invocation, when there is a span.
    pub fn context(&self) -> Option<&Context> {
        self.span.as_ref().map(|(cx, _)| cx)
    }

    fn finish(mut self, judgement: &Judgement<'_>) {
        let Some((cx, started)) = self.span.take() else {
            return;
        };
        let Judgement {
            outcome,
            errcode,
            latency,
            failure,
        } = *judgement;
        let span = cx.span();
        span.set_attribute(KeyValue::new("glia.outcome", outcome.as_str()));
        span.set_attribute(KeyValue::new("glia.latency_ms", ms(latency)));
        if let Some(errcode) = errcode {
            span.set_attribute(KeyValue::new("glia.errcode", errcode.to_owned()));
        }
        if let Some((error, policy)) = failure {
            span.set_status(Status::error(error.to_string()));
            span.add_event(
                "policy",
                vec![
                    KeyValue::new("glia.policy", policy.to_string()),
                    KeyValue::new("glia.outcome", outcome.as_str()),
                    KeyValue::new("exception.message", error.to_string()),
                ],
            );
        }
        span.end_with_timestamp(started + latency);
    }
}

impl Drop for InvocationSpan {
    fn drop(&mut self) {
        if let Some((cx, _)) = self.span.take() {
            let span = cx.span();
            span.set_attribute(KeyValue::new("glia.outcome", Outcome::Skipped.as_str()));
            span.end();
        }
    }
}

impl Telemetry {
    /// Ends an invocation's span and counts it (the part shared by judged invocations and
    /// notifications left to finish in the background).
    pub fn finish_invocation(
        &self,
        entry: &PlanEntry,
        callback: Callback,
        span: InvocationSpan,
        judgement: &Judgement<'_>,
    ) {
        span.finish(judgement);
        if let Some(m) = self.metrics() {
            m.invocation(
                entry.module,
                &entry.name,
                callback,
                judgement.outcome,
                Some(judgement.latency),
            );
        }
    }
}

/// How a request came in to the coordinator: its decision record and span name the route, so
/// dispatches asked through synapse-http-antispam are told apart from the bridge's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// `POST /_glia/v1/callbacks/{callback}` (the Synapse bridge, any HTTP client).
    Http,
    /// `POST /_glia/v1/http-antispam/{callback}` (synapse-http-antispam).
    HttpAntispam,
    /// `glia.v1.callbacks.<callback>` on the NATS bus.
    Nats,
}

impl Ingress {
    /// The name in decision records (`route`) and spans (`glia.route`).
    pub fn as_str(self) -> &'static str {
        match self {
            Ingress::Http => "http",
            Ingress::HttpAntispam => "http_antispam",
            Ingress::Nats => "nats",
        }
    }
}

/// What ties a log line to its dispatch: the request id, the decision id and the trace.
#[derive(Clone)]
pub struct LogIds {
    request_id: Arc<str>,
    decision_id: Arc<str>,
    cx: Context,
}

impl LogIds {
    /// The request id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The decision id (the record in the decision log, the `Glia-Decision-Id` header).
    pub fn decision_id(&self) -> &str {
        &self.decision_id
    }

    /// The trace id, when the dispatch has a trace (its own span, or the caller's).
    pub fn trace_id(&self) -> Option<String> {
        propagation::trace_id(&self.cx)
    }
}

/// One dispatch's span, metrics and decision record.
pub struct DispatchTrace {
    telemetry: Arc<Telemetry>,
    callback: Callback,
    request_id: Arc<str>,
    decision_id: Arc<str>,
    route: Option<Ingress>,
    started: Instant,
    /// When it began, for the decision log only (a clock read saved otherwise).
    wall: Option<SystemTime>,
    /// The dispatch span's context (when this process has a tracer, the span is its own),
    /// or the caller's when no spans are made.
    cx: Context,
    /// Each module's part, kept only for the decision log.
    records: Option<Mutex<Vec<ModuleRecord>>>,
    input: Option<Value>,
    /// The redaction rules that removed part of `input`.
    redacted: Vec<String>,
    content: bool,
    finished: bool,
    /// Modules asked in audit for this decision.
    audited: std::sync::OnceLock<Vec<String>>,
}

impl DispatchTrace {
    /// Opens the dispatch span (a child of the caller's context in `meta`) of a request that
    /// came in by `route` (`None`: a library call).
    pub fn begin(
        telemetry: &Arc<Telemetry>,
        callback: Callback,
        meta: &InvocationMeta,
        request: &CallbackRequest,
        route: Option<Ingress>,
    ) -> DispatchTrace {
        let cx = match telemetry.tracer() {
            Some(tracer) => {
                let mut attributes = vec![
                    KeyValue::new("glia.callback", callback.name()),
                    KeyValue::new("glia.request_id", meta.request_id.to_string()),
                    KeyValue::new("glia.decision_id", meta.decision_id.to_string()),
                ];
                if let Some(route) = route {
                    attributes.push(KeyValue::new("glia.route", route.as_str()));
                }
                let span = tracer
                    .span_builder(format!("dispatch {callback}"))
                    .with_kind(SpanKind::Server)
                    .with_attributes(attributes)
                    .start_with_context(tracer, &meta.trace);
                meta.trace.with_span(span)
            }
            None => meta.trace.clone(),
        };
        let content = telemetry.decisions().is_some_and(|d| d.include_content());
        // The callback's name is in the record already: keep just the arguments.
        let mut input = content
            .then(|| serde_json::to_value(request).ok())
            .flatten()
            .and_then(|mut tagged| tagged.get_mut("args").map(Value::take));
        let redacted = match (&mut input, telemetry.decisions()) {
            (Some(input), Some(log)) => log.redact(input),
            _ => Vec::new(),
        };
        if let Some(m) = telemetry.metrics() {
            m.dispatch_active(1);
        }
        DispatchTrace {
            telemetry: telemetry.clone(),
            callback,
            request_id: meta.request_id.clone(),
            decision_id: meta.decision_id.clone(),
            route,
            started: Instant::now(),
            wall: telemetry.decisions().map(|_| SystemTime::now()),
            cx,
            records: telemetry.decisions().map(|_| Mutex::new(Vec::new())),
            input,
            redacted,
            content,
            finished: false,
            audited: std::sync::OnceLock::new(),
        }
    }

    /// The ids log lines about this dispatch carry.
    pub fn log_ids(&self) -> LogIds {
        LogIds {
            request_id: self.request_id.clone(),
            decision_id: self.decision_id.clone(),
            cx: self.cx.clone(),
        }
    }

    /// The telemetry it reports to.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Whether module answers should be kept (as JSON) for the decision record.
    pub fn wants_content(&self) -> bool {
        self.content
    }

    /// Whether the dispatch span in `cx` is this dispatch's own (spans are made).
    fn owns_span(&self) -> bool {
        self.telemetry.tracer().is_some()
    }

    /// Opens the span of `entry`'s invocation, a child of the dispatch span; `route` says
    /// how it travels (a NATS invocation follows the messaging conventions), asked only when
    /// spans are made.
    pub fn invocation(
        &self,
        entry: &PlanEntry,
        callback: Callback,
        route: impl FnOnce() -> Route,
    ) -> InvocationSpan {
        let Some(tracer) = self.telemetry.tracer() else {
            return InvocationSpan::NONE;
        };
        let mut attributes = vec![
            KeyValue::new("glia.module", entry.name.to_string()),
            KeyValue::new("glia.callback", callback.name()),
        ];
        let builder = match route() {
            Route::InProcess => tracer
                .span_builder(format!("invoke {}", entry.name))
                .with_kind(SpanKind::Internal),
            Route::Nats => {
                let destination = subjects::module_queue_group(&entry.name);
                attributes.extend([
                    KeyValue::new("messaging.system", "nats"),
                    KeyValue::new("messaging.operation.name", "send"),
                    KeyValue::new("messaging.operation.type", "send"),
                    KeyValue::new(
                        "messaging.destination.name",
                        subjects::module_subject(&entry.name, callback),
                    ),
                    KeyValue::new(
                        "messaging.destination.template",
                        format!("{destination}.{{callback}}"),
                    ),
                    KeyValue::new(
                        "messaging.message.conversation_id",
                        self.request_id.to_string(),
                    ),
                ]);
                tracer
                    .span_builder(format!("send {destination}"))
                    .with_kind(SpanKind::Producer)
            }
        };
        let span = builder
            .with_attributes(attributes)
            .start_with_context(tracer, &self.cx);
        InvocationSpan {
            span: Some((self.cx.with_span(span), SystemTime::now())),
        }
    }

    /// The context an invocation carries when it has no span of its own.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Records how `entry`'s answer (or failure) was judged; `answer` is the answer as JSON
    /// when the decision record carries content.
    pub fn judged(
        &self,
        entry: &PlanEntry,
        callback: Callback,
        span: InvocationSpan,
        judgement: Judgement<'_>,
        answer: Option<Value>,
    ) {
        self.telemetry
            .finish_invocation(entry, callback, span, &judgement);
        let Judgement {
            outcome,
            errcode,
            latency,
            failure,
        } = judgement;
        self.record(ModuleRecord {
            module: entry.name.to_string(),
            outcome: outcome.as_str(),
            errcode: errcode.map(str::to_owned),
            latency_ms: Some(ms(latency)),
            policy: failure.map(|(_, p)| p.as_str()),
            answer,
            error: failure.filter(|_| self.content).map(|(e, _)| e.to_string()),
        });
    }

    /// Records modules whose answers were not waited for.
    pub fn skipped(&self, entries: &[PlanEntry], callback: Callback) {
        self.unanswered(entries, callback, Outcome::Skipped);
    }

    /// Records sequential modules that were not invoked because an earlier module decided.
    pub fn not_asked(&self, entries: &[PlanEntry], callback: Callback) {
        self.unanswered(entries, callback, Outcome::NotAsked);
    }

    fn unanswered(&self, entries: &[PlanEntry], callback: Callback, outcome: Outcome) {
        for entry in entries {
            if let Some(m) = self.telemetry.metrics() {
                m.invocation(entry.module, &entry.name, callback, outcome, None);
            }
            self.record(ModuleRecord {
                module: entry.name.to_string(),
                outcome: outcome.as_str(),
                errcode: None,
                latency_ms: None,
                policy: None,
                answer: None,
                error: None,
            });
        }
    }

    /// Records a notification left to finish in the background.
    pub fn background(&self, entry: &PlanEntry) {
        self.record(ModuleRecord {
            module: entry.name.to_string(),
            outcome: Outcome::Background.as_str(),
            errcode: None,
            latency_ms: None,
            policy: None,
            answer: None,
            error: None,
        });
    }

    fn record(&self, record: ModuleRecord) {
        if let Some(records) = &self.records {
            records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(record);
        }
    }

    /// Ends the dispatch span, counts the decision and writes its record.
    pub fn finish(mut self, result: &Result<DispatchReply, DispatchError>) {
        self.finished = true;
        let duration = self.started.elapsed();
        let (decision, result_record, winner) = result_record(result.as_ref(), self.content);
        if let Some(m) = self.telemetry.metrics() {
            m.decision(self.callback, decision, duration);
            m.dispatch_active(-1);
        }
        if self.owns_span() {
            self.end_span(decision, &result_record, winner, duration);
        }
        let Some(log) = self.telemetry.decisions() else {
            return;
        };
        let modules = self
            .records
            .take()
            .map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner()))
            .unwrap_or_default();
        let record = DecisionRecord {
            decision_id: self.decision_id.to_string(),
            time: humantime::format_rfc3339_micros(self.wall.unwrap_or_else(SystemTime::now))
                .to_string(),
            callback: self.callback.name(),
            request_id: self.request_id.to_string(),
            route: self.route.map(Ingress::as_str),
            trace_id: propagation::trace_id(&self.cx),
            duration_ms: ms(duration),
            modules,
            winner: winner.map(str::to_owned),
            result: result_record,
            input: self.input.take(),
            redacted: std::mem::take(&mut self.redacted),
            audited: self.audited.take().unwrap_or_default(),
        };
        if !log.write(record) {
            if let Some(m) = self.telemetry.metrics() {
                m.decision_dropped();
            }
        }
    }

    /// Sets the dispatch span's result attributes and ends it.
    fn end_span(
        &self,
        decision: ReplyResult,
        result: &ResultRecord,
        winner: Option<&str>,
        duration: Duration,
    ) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("glia.result", decision.as_str()));
        span.set_attribute(KeyValue::new("glia.duration_ms", ms(duration)));
        if let Some(errcode) = &result.errcode {
            span.set_attribute(KeyValue::new("glia.errcode", errcode.clone()));
        }
        if let Some(status) = result.status {
            span.set_attribute(KeyValue::new("glia.status", i64::from(status)));
        }
        if let Some(winner) = winner {
            span.set_attribute(KeyValue::new("glia.winner", winner.to_owned()));
        }
        if let Some(audited) = self.audited.get() {
            span.set_attribute(KeyValue::new("glia.audited", audited.join(",")));
        }
        if matches!(decision, ReplyResult::Error) {
            let errcode = result.errcode.clone().unwrap_or_default();
            span.set_status(Status::error(errcode));
        }
        span.end();
    }

    /// Names the modules asked in audit for this decision (set once, before it finishes).
    pub fn set_audited(&self, modules: Vec<String>) {
        let _ = self.audited.set(modules);
    }
}

/// What a dispatch's result is for the metrics, its record (the reply itself when `content`)
/// and the module that made it.
pub fn result_record<'a>(
    result: Result<&'a DispatchReply, &DispatchError>,
    content: bool,
) -> (ReplyResult, ResultRecord, Option<&'a str>) {
    let (decision, errcode, status, winner) = match result {
        Ok(reply) => {
            let s = reply.summary();
            (ReplyResult::from(s.kind), s.errcode, s.status, s.module)
        }
        Err(e) => (ReplyResult::Rejected, Some(e.errcode), Some(e.status), None),
    };
    let record = ResultRecord {
        decision: decision.as_str(),
        errcode: errcode.map(str::to_owned),
        status,
        reply: match result {
            Ok(reply) if content => serde_json::to_value(reply).ok(),
            Err(e) if content => Some(serde_json::json!({"errcode": e.errcode, "error": e.error})),
            _ => None,
        },
    };
    (decision, record, winner)
}

impl Drop for DispatchTrace {
    /// A dispatch abandoned by its caller (a dropped connection) still closes its books.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(m) = self.telemetry.metrics() {
            m.dispatch_active(-1);
        }
        if self.owns_span() {
            let span = self.cx.span();
            span.set_attribute(KeyValue::new("glia.result", "cancelled"));
            span.end();
        }
    }
}

/// A worker's span for one invocation it serves: a CONSUMER `process` span, child of the
/// coordinator's invocation span named in the message's `traceparent`.
pub struct WorkerSpan {
    cx: Context,
    recording: bool,
}

impl WorkerSpan {
    /// Opens the span, or passes the sender's context on if spans are not recorded.
    pub fn start(
        telemetry: &Telemetry,
        module: &str,
        subject: &str,
        callback: Option<Callback>,
        request_id: &str,
        parent: Context,
    ) -> WorkerSpan {
        let Some(tracer) = telemetry.tracer() else {
            return WorkerSpan {
                cx: parent,
                recording: false,
            };
        };
        let group = subjects::module_queue_group(module);
        let mut attributes = vec![
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", subject.to_owned()),
            KeyValue::new("messaging.consumer.group.name", group.clone()),
            KeyValue::new("messaging.message.conversation_id", request_id.to_owned()),
            KeyValue::new("glia.module", module.to_owned()),
        ];
        if let Some(callback) = callback {
            attributes.push(KeyValue::new("glia.callback", callback.name()));
        }
        let span = tracer
            .span_builder(format!("process {group}"))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        WorkerSpan {
            cx: parent.with_span(span),
            recording: true,
        }
    }

    /// The context the module's invocation carries (restart events land on this span).
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Ends the span with the invocation's outcome.
    pub fn finish(self, error: Option<&InvocationError>) {
        if !self.recording {
            return;
        }
        let span = self.cx.span();
        let outcome = error.map_or(Outcome::Answer, Outcome::of_error);
        span.set_attribute(KeyValue::new("glia.outcome", outcome.as_str()));
        if let Some(error) = error {
            span.set_status(Status::error(error.to_string()));
        }
        span.end();
    }
}
