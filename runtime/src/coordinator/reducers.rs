//! The reducers: how module answers combine into one decision. All but `chain` invoke every
//! module at once and resolve in plan order, so the result equals Synapse's sequential
//! evaluation and is returned as soon as it is decided.

use super::plan::{Plan, PlanEntry};
use super::running::Running;
use super::trace::{DispatchTrace, InvocationSpan, Judgement, LogIds};
use crate::bus::{Bus, InvocationMeta, Target};
use crate::policy::{FailurePolicy, Invoke};
use crate::rules::{rules, Deny, SynapseErrors};
use crate::telemetry::{Outcome, Telemetry};
use futures::future::Either;
use futures::FutureExt;
use glia_bus_schema::errcodes::M_UNKNOWN;
use glia_bus_schema::{
    Callback, CallbackArgs, CallbackRequest, Decision, Failure, InvocationError, ModuleAnswer,
    OnCreateRoomAnswer, RegistrationBehaviour,
};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one dispatch needs from its surroundings.
pub struct DispatchCtx<'a> {
    /// The bus to the modules.
    pub bus: &'a dyn Bus,
    /// Request id, decision id, deadline and the dispatch's trace context.
    pub meta: InvocationMeta,
    /// Becomes true when shutdown's grace period is over.
    pub drained: tokio::sync::watch::Receiver<bool>,
    /// The dispatch's span, metrics and decision record.
    pub trace: &'a DispatchTrace,
    /// The generation of the routing the dispatch runs on, for lasting replies.
    pub generation: &'a Arc<str>,
    /// The routing itself, for work that outlives the dispatch (audited modules' walks).
    pub routing: &'a Arc<super::Routing>,
}

/// One invocation's result, how long it took, and its span (still open until judged).
pub struct Invoked {
    /// The answer or why there is none.
    pub result: Result<ModuleAnswer, InvocationError>,
    /// From sending to the answer.
    pub latency: Duration,
    /// Its span.
    pub span: InvocationSpan,
}

/// What a reducer's deciding value says about the module that gave it, for traces,
/// metrics and the decision log.
pub trait Verdict {
    /// The outcome and, for a deny, its errcode.
    fn verdict(&self) -> (Outcome, Option<&str>);
}

impl Verdict for Deny {
    fn verdict(&self) -> (Outcome, Option<&str>) {
        (Outcome::Deny, Some(&self.errcode))
    }
}

impl Verdict for RegistrationBehaviour {
    fn verdict(&self) -> (Outcome, Option<&str>) {
        match self {
            RegistrationBehaviour::Allow => (Outcome::Allow, None),
            _ => (Outcome::Deny, None),
        }
    }
}

impl Verdict for Decision {
    fn verdict(&self) -> (Outcome, Option<&str>) {
        match self {
            Decision::Allow { .. } => (Outcome::Allow, None),
            Decision::Deny { errcode, .. } => (Outcome::Deny, Some(errcode)),
            Decision::Error(f) => (Outcome::Failed, Some(&f.errcode)),
        }
    }
}

/// A value a module supplied (a user id, a name, an expiry, "ALL").
pub struct Answered<T>(pub T);

impl<T> Verdict for Answered<T> {
    fn verdict(&self) -> (Outcome, Option<&str>) {
        (Outcome::Answer, None)
    }
}

/// What a reducer makes of one module's answer.
pub enum Step<V> {
    /// No decision yet: ask the next module.
    Continue,
    /// Decided: later modules do not count.
    Stop(V),
}

/// How an ordered walk ended.
pub enum Walk<V> {
    /// A module's answer (or its failure policy) decided.
    Stopped(V, Arc<str>),
    /// Every module answered without deciding.
    Exhausted,
    /// A failure with policy `error`: the request fails.
    Failed(Failure),
}

/// An invocation just sent: answered already (a synchronous handler on this thread), or
/// still to wait for.
pub enum Started<F> {
    /// The module answered as it was asked.
    Answered(Invoked),
    /// The answer is to come, under the entry's timeout and the request's deadline.
    Waiting(F),
}

/// Sends one plan entry its invocation, in a span of its own whose context travels with it.
/// An answer already there is taken at once: no timer, no task slot, no wake-up for it.
pub fn start_entry(
    ctx: &DispatchCtx<'_>,
    entry: &PlanEntry,
    request: Arc<CallbackRequest>,
) -> Started<impl Future<Output = Invoked> + Send + 'static> {
    let started = Instant::now();
    let target = Target {
        module: entry.module,
        slot: entry.slot,
    };
    let span = ctx
        .trace
        .invocation(entry, request.callback(), || ctx.bus.route(target));
    let mut call = match span.context() {
        Some(cx) => {
            let meta = InvocationMeta {
                trace: cx.clone(),
                ..ctx.meta.clone()
            };
            ctx.bus.invoke(target, request, &meta)
        }
        None => ctx.bus.invoke(target, request, &ctx.meta),
    };
    if let Some(result) = (&mut call).now_or_never() {
        return Started::Answered(Invoked {
            result: screen(result),
            latency: started.elapsed(),
            span,
        });
    }
    // A module timeout beyond what an `Instant` can hold is no bound: the request's is.
    let deadline = started
        .checked_add(entry.timeout)
        .map_or(ctx.meta.deadline, |t| t.min(ctx.meta.deadline));
    let budget = deadline.saturating_duration_since(started);
    let mut drained = ctx.drained.clone();
    Started::Waiting(async move {
        let result = tokio::select! {
            biased;
            result = tokio::time::timeout_at(deadline.into(), call) => match result {
                Ok(result) => result,
                Err(_) => Err(InvocationError::Timeout {
                    after_ms: budget.as_millis() as u64,
                }),
            },
            _ = drained.wait_for(|done| *done) => Err(InvocationError::Unavailable {
                reason: "glia is shutting down".into(),
            }),
        };
        Invoked {
            result: screen(result),
            latency: started.elapsed(),
            span,
        }
    })
}

/// Invokes one plan entry under its timeout and the request's deadline (see
/// [`start_entry`]), as one future.
pub fn invoke_entry(
    ctx: &DispatchCtx<'_>,
    entry: &PlanEntry,
    request: Arc<CallbackRequest>,
) -> impl Future<Output = Invoked> + Send + 'static {
    match start_entry(ctx, entry, request) {
        Started::Answered(invoked) => Either::Left(futures::future::ready(invoked)),
        Started::Waiting(answer) => Either::Right(answer),
    }
}

/// Refuses a module's `SynapseError` whose status is not an HTTP error status (400 to 599) as
/// an invalid answer, wherever the module put it: raised, or in `on_create_room`'s refusal.
/// (Over NATS the schema already refuses it when the reply is decoded; a module in process
/// builds the value itself.)
fn screen(result: Result<ModuleAnswer, InvocationError>) -> Result<ModuleAnswer, InvocationError> {
    let invalid = match &result {
        Err(InvocationError::Failed {
            synapse_error: Some(e),
            ..
        }) => e.invalid(),
        Ok(ModuleAnswer::OnCreateRoom(OnCreateRoomAnswer::Deny { deny })) => deny.invalid(),
        _ => None,
    };
    match invalid {
        Some(detail) => Err(InvocationError::InvalidAnswer { detail }),
        None => result,
    }
}

/// What is left of an invocation once its result is taken: the means to record how the
/// result was judged.
struct Taken {
    span: InvocationSpan,
    latency: Duration,
    answer: Option<serde_json::Value>,
}

impl Invoked {
    /// Splits off the result (typed for `R`); the answer is kept as JSON if the decision
    /// record wants content.
    fn take<R: CallbackArgs>(
        self,
        ctx: &DispatchCtx<'_>,
    ) -> (Result<R::Answer, InvocationError>, Taken) {
        let answer = match &self.result {
            Ok(answer) if ctx.trace.wants_content() => serde_json::to_value(answer)
                .ok()
                .and_then(|mut tagged| tagged.get_mut("answer").map(serde_json::Value::take)),
            _ => None,
        };
        let taken = Taken {
            span: self.span,
            latency: self.latency,
            answer,
        };
        let typed = self.result.and_then(|answer| {
            R::unwrap_answer(answer).map_err(|other| InvocationError::InvalidAnswer {
                detail: format!("answered {} instead of {}", other.callback(), R::CALLBACK),
            })
        });
        (typed, taken)
    }
}

impl Taken {
    /// Records an answer judged as `outcome` (with a deny's errcode).
    fn answered<R: CallbackArgs>(
        self,
        ctx: &DispatchCtx<'_>,
        entry: &PlanEntry,
        (outcome, errcode): (Outcome, Option<&str>),
    ) {
        let judgement = Judgement {
            outcome,
            errcode,
            latency: self.latency,
            failure: None,
        };
        ctx.trace
            .judged(entry, R::CALLBACK, self.span, judgement, self.answer);
    }

    /// Logs and records a failure, which `entry`'s failure policy resolves.
    fn failed<R: CallbackArgs>(
        self,
        ctx: &DispatchCtx<'_>,
        entry: &PlanEntry,
        error: &InvocationError,
    ) {
        log_failure::<R>(&ctx.trace.log_ids(), entry, error);
        let judgement = Judgement {
            outcome: Outcome::of_error(error),
            errcode: None,
            latency: self.latency,
            failure: Some((error, entry.policy)),
        };
        ctx.trace
            .judged(entry, R::CALLBACK, self.span, judgement, self.answer);
    }
}

/// The failure the caller sees when `entry` failed under policy `error` (or `deny` where a
/// deny has no meaning): a module's own `SynapseError` as is where the callback lets it
/// through, anything else the homeserver's 500.
pub fn failure(callback: Callback, entry: &PlanEntry, error: &InvocationError) -> Failure {
    match error {
        InvocationError::Failed {
            synapse_error: Some(e),
            ..
        } if rules(callback).synapse_errors == SynapseErrors::PassThrough => Failure {
            status: e.status,
            errcode: e.errcode.clone(),
            error: e.error.clone(),
            fields: e.fields.clone(),
            module: entry.name.to_string(),
            synapse_error: true,
        },
        other => Failure {
            status: 500,
            errcode: M_UNKNOWN.to_owned(),
            error: format!("module {} {other}", entry.name),
            fields: Default::default(),
            module: entry.name.to_string(),
            synapse_error: false,
        },
    }
}

/// What a failure under policy `deny` denies with: the module's own `SynapseError` (its
/// errcode, message and fields) if it raised one, else the callback's usual deny.
pub fn policy_deny(callback: Callback, error: &InvocationError) -> Deny {
    match error {
        InvocationError::Failed {
            synapse_error: Some(e),
            ..
        } => Deny {
            errcode: e.errcode.clone(),
            message: e.error.clone(),
            fields: e.fields.clone(),
            module_message: false,
        },
        _ => Deny::default_for(callback),
    }
}

fn log_failure<R: CallbackArgs>(ids: &LogIds, entry: &PlanEntry, error: &InvocationError) {
    tracing::warn!(
        module = %entry.name,
        callback = %R::CALLBACK,
        request_id = ids.request_id(),
        decision_id = ids.decision_id(),
        trace_id = ids.trace_id(),
        error = %error,
        outcome = %error.kind(),
        policy = %entry.policy,
        "module failed; its failure policy decides"
    );
}

/// Waits for entry `index`'s answer; answers of other entries that arrive first are kept in
/// `arrived` until their turn. Entry `index` must have been started.
async fn answer_of<F: Future<Output = Invoked>>(
    running: &mut Running<F>,
    arrived: &mut [Option<Invoked>],
    index: usize,
) -> Invoked {
    loop {
        if let Some(invoked) = arrived[index].take() {
            return invoked;
        }
        match running.next().await {
            Some((i, invoked)) => arrived[i] = Some(invoked),
            None => unreachable!("entry {index} was started"),
        }
    }
}

/// Records the entries left after a decision: those started and not waited for as skipped,
/// the sequential ones never started as not asked.
fn unwaited<'e>(
    ctx: &DispatchCtx<'_>,
    rest: impl IntoIterator<Item = &'e PlanEntry>,
    callback: Callback,
) {
    let (asked, not_asked): (Vec<PlanEntry>, Vec<PlanEntry>) = rest
        .into_iter()
        .cloned()
        .partition(|e| e.invoke == Invoke::Parallel);
    ctx.trace.skipped(&asked, callback);
    ctx.trace.not_asked(&not_asked, callback);
}

/// The engine under FirstDeny, FirstNonNone, Union and SingleSlot: invoke every parallel
/// entry at once (each sequential one once every entry before it has answered without
/// deciding), then judge the answers in plan order. `on_deny` says what a failure under
/// policy `deny` means for this callback; `None` where the callback has nothing to deny, in
/// which case `deny` fails the request as `error` does (it must not quietly allow).
///
/// `continued` is what an answer that decides nothing means for the module (allow for a
/// FirstDeny, none for a FirstNonNone); a deciding answer says for itself ([`Verdict`]).
pub async fn ordered_walk<R, V: Verdict>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
    continued: Outcome,
    mut judge: impl FnMut(R::Answer, &PlanEntry) -> Step<V>,
    mut on_deny: impl FnMut(&InvocationError, &PlanEntry) -> Option<Step<V>>,
) -> Walk<V>
where
    R: CallbackArgs,
{
    let mut running = Running::new();
    let mut arrived: Vec<Option<Invoked>> = plan.entries.iter().map(|_| None).collect();
    let start =
        |i: usize, running: &mut Running<_>, arrived: &mut [Option<Invoked>]| match start_entry(
            ctx,
            &plan.entries[i],
            request.clone(),
        ) {
            Started::Answered(invoked) => arrived[i] = Some(invoked),
            Started::Waiting(answer) => running.push(i, answer),
        };
    for (i, entry) in plan.entries.iter().enumerate() {
        if entry.invoke == Invoke::Parallel {
            start(i, &mut running, &mut arrived);
        }
    }
    for (i, entry) in plan.entries.iter().enumerate() {
        if entry.invoke == Invoke::Sequential {
            start(i, &mut running, &mut arrived);
        }
        let invoked = answer_of(&mut running, &mut arrived, i).await;
        let (result, taken) = invoked.take::<R>(ctx);
        let walk = match result {
            Ok(answer) => {
                let step = judge(answer, entry);
                let verdict = match &step {
                    Step::Continue => (continued, None),
                    Step::Stop(v) => v.verdict(),
                };
                taken.answered::<R>(ctx, entry, verdict);
                match step {
                    Step::Continue => None,
                    Step::Stop(value) => Some(Walk::Stopped(value, entry.name.clone())),
                }
            }
            Err(error) => {
                taken.failed::<R>(ctx, entry, &error);
                match entry.policy {
                    FailurePolicy::Allow => None,
                    FailurePolicy::Deny => match on_deny(&error, entry) {
                        Some(Step::Continue) => None,
                        Some(Step::Stop(value)) => Some(Walk::Stopped(value, entry.name.clone())),
                        None => Some(Walk::Failed(failure(R::CALLBACK, entry, &error))),
                    },
                    FailurePolicy::Error => Some(Walk::Failed(failure(R::CALLBACK, entry, &error))),
                }
            }
        };
        if let Some(walk) = walk {
            unwaited(ctx, &plan.entries[i + 1..], R::CALLBACK);
            return walk;
        }
    }
    Walk::Exhausted
}

/// FirstDeny: the first deny in plan order decides; if none, allow.
pub async fn first_deny<R: CallbackArgs, V: Verdict>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
    judge: impl FnMut(R::Answer, &PlanEntry) -> Step<V>,
    mut policy_deny: impl FnMut(&InvocationError, &PlanEntry) -> Step<V>,
) -> Walk<V> {
    ordered_walk::<R, V>(ctx, plan, request, Outcome::Allow, judge, |e, entry| {
        Some(policy_deny(e, entry))
    })
    .await
}

/// FirstNonNone: the first meaningful answer in plan order decides. `policy_deny` is the
/// answer a failure under policy `deny` stands for, or `None` if there is none (the request
/// then fails).
pub async fn first_non_none<R: CallbackArgs, V>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
    select: impl FnMut(R::Answer, &PlanEntry) -> Option<V>,
    policy_deny: impl FnMut(&InvocationError, &PlanEntry) -> Option<V>,
) -> Walk<V> {
    let mut select = select;
    let mut policy_deny = policy_deny;
    let walk = ordered_walk::<R, Answered<V>>(
        ctx,
        plan,
        request,
        Outcome::None,
        |answer, entry| select(answer, entry).map_or(Step::Continue, |v| Step::Stop(Answered(v))),
        |error, entry| policy_deny(error, entry).map(|v| Step::Stop(Answered(v))),
    )
    .await;
    unanswered(walk)
}

fn unanswered<V>(walk: Walk<Answered<V>>) -> Walk<V> {
    match walk {
        Walk::Stopped(Answered(v), module) => Walk::Stopped(v, module),
        Walk::Exhausted => Walk::Exhausted,
        Walk::Failed(f) => Walk::Failed(f),
    }
}

/// Union: every answer is merged by `merge`; `merge` returning `Stop` short-circuits (the
/// presence router's `"ALL"`). Failures are skipped under policy `allow`; a merge has nothing
/// to deny, so `deny` fails the request as `error` does.
pub async fn union<R: CallbackArgs, V>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
    mut merge: impl FnMut(R::Answer, &PlanEntry) -> Step<V>,
) -> Walk<V> {
    let walk = ordered_walk::<R, Answered<V>>(
        ctx,
        plan,
        request,
        Outcome::Answer,
        |answer, entry| match merge(answer, entry) {
            Step::Continue => Step::Continue,
            Step::Stop(v) => Step::Stop(Answered(v)),
        },
        |_, _| None,
    )
    .await;
    unanswered(walk)
}

/// SingleSlot: at most one module holds the callback (refused at start-up otherwise); its
/// answer is the result.
pub async fn single_slot<R: CallbackArgs>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
) -> Walk<R::Answer> {
    debug_assert!(
        plan.entries.len() <= 1,
        "single-slot plans are checked at start-up"
    );
    let walk = ordered_walk::<R, Answered<R::Answer>>(
        ctx,
        plan,
        request,
        Outcome::Answer,
        |answer, _| Step::Stop(Answered(answer)),
        |_, _| None,
    )
    .await;
    unanswered(walk)
}

/// RunAll: every module is told. Modules whose failure would be ignored (policy `allow`)
/// run in the background, so they do not delay the answer; the others are awaited, in order,
/// since their failure changes the result (and ends the walk: Synapse's exception stops its
/// loop). A sequential module is invoked once every awaited module before it has answered.
pub async fn run_all<R: CallbackArgs>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
) -> Result<(), Failure> {
    let awaited = |entry: &PlanEntry| entry.policy != FailurePolicy::Allow;
    let mut running = Running::new();
    let mut arrived: Vec<Option<Invoked>> = plan.entries.iter().map(|_| None).collect();
    let start = |i: usize, running: &mut Running<_>, arrived: &mut [Option<Invoked>]| {
        let entry = &plan.entries[i];
        match (start_entry(ctx, entry, request.clone()), awaited(entry)) {
            (Started::Answered(invoked), true) => arrived[i] = Some(invoked),
            (Started::Waiting(answer), true) => running.push(i, answer),
            (Started::Answered(invoked), false) => {
                ctx.trace.background(entry);
                finish_background::<R>(ctx.trace.telemetry(), &ctx.trace.log_ids(), entry, invoked);
            }
            (Started::Waiting(answer), false) => in_background::<R>(ctx, entry, answer),
        }
    };
    for (i, entry) in plan.entries.iter().enumerate() {
        if entry.invoke == Invoke::Parallel {
            start(i, &mut running, &mut arrived);
        }
    }
    for (i, entry) in plan.entries.iter().enumerate() {
        if entry.invoke == Invoke::Sequential {
            start(i, &mut running, &mut arrived);
        }
        if !awaited(entry) {
            continue;
        }
        let invoked = answer_of(&mut running, &mut arrived, i).await;
        let (result, taken) = invoked.take::<R>(ctx);
        if let Err(error) = result {
            taken.failed::<R>(ctx, entry, &error);
            // Parallel notifications in the background end by themselves.
            let rest = plan.entries[i + 1..]
                .iter()
                .filter(|e| awaited(e) || e.invoke == Invoke::Sequential);
            unwaited(ctx, rest, R::CALLBACK);
            // A notification has nothing to deny: `deny` fails the request like `error`.
            return Err(failure(R::CALLBACK, entry, &error));
        }
        taken.answered::<R>(ctx, entry, (Outcome::Allow, None));
    }
    Ok(())
}

/// Lets a notification whose failure is ignored finish in the background, counting its
/// outcome when it ends.
fn in_background<R: CallbackArgs>(
    ctx: &DispatchCtx<'_>,
    entry: &PlanEntry,
    call: impl Future<Output = Invoked> + Send + 'static,
) {
    ctx.trace.background(entry);
    let entry = entry.clone();
    let telemetry = ctx.trace.telemetry().clone();
    let ids = ctx.trace.log_ids();
    tokio::spawn(async move {
        finish_background::<R>(&telemetry, &ids, &entry, call.await);
    });
}

/// Counts (and logs, if it failed) how a notification run in the background ended.
fn finish_background<R: CallbackArgs>(
    telemetry: &Telemetry,
    ids: &LogIds,
    entry: &PlanEntry,
    invoked: Invoked,
) {
    let Invoked {
        result,
        latency,
        span,
    } = invoked;
    let (outcome, failure) = match &result {
        Ok(_) => (Outcome::Allow, None),
        Err(error) => {
            log_failure::<R>(ids, entry, error);
            (Outcome::of_error(error), Some((error, entry.policy)))
        }
    };
    let judgement = Judgement {
        outcome,
        errcode: None,
        latency,
        failure,
    };
    telemetry.finish_invocation(entry, R::CALLBACK, span, &judgement);
}

/// Chain: modules run one after another; `step` turns each answer into the next request
/// (`Continue`) or a final result (`Stop`); failures go through `on_failure`.
pub async fn chain<R: CallbackArgs, V: Verdict>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    mut request: Arc<CallbackRequest>,
    mut step: impl FnMut(
        R::Answer,
        &PlanEntry,
        &Arc<CallbackRequest>,
    ) -> Result<Arc<CallbackRequest>, V>,
    mut on_failure: impl FnMut(&InvocationError, &PlanEntry) -> Option<V>,
) -> Result<Arc<CallbackRequest>, V> {
    for (i, entry) in plan.entries.iter().enumerate() {
        let invoked = invoke_entry(ctx, entry, request.clone()).await;
        let (result, taken) = invoked.take::<R>(ctx);
        let stopped = match result {
            Ok(answer) => match step(answer, entry, &request) {
                Ok(next) => {
                    taken.answered::<R>(ctx, entry, (Outcome::Allow, None));
                    request = next;
                    None
                }
                Err(v) => {
                    taken.answered::<R>(ctx, entry, v.verdict());
                    Some(v)
                }
            },
            Err(error) => {
                taken.failed::<R>(ctx, entry, &error);
                on_failure(&error, entry)
            }
        };
        if let Some(v) = stopped {
            // A chain asks one module at a time: the rest were never asked.
            ctx.trace.not_asked(&plan.entries[i + 1..], R::CALLBACK);
            return Err(v);
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glia_bus_schema::SynapseError;

    #[test]
    fn a_synapse_error_that_is_not_an_error_status_is_screened_as_invalid() {
        let refusal = |status| {
            Ok(ModuleAnswer::OnCreateRoom(OnCreateRoomAnswer::Deny {
                deny: SynapseError::new(status, "M_FORBIDDEN", "no"),
            }))
        };
        let raised = |status| {
            Err(InvocationError::Failed {
                message: "no".into(),
                synapse_error: Some(SynapseError::new(status, "M_FORBIDDEN", "no")),
            })
        };
        for status in [200, 302, 399, 600] {
            for result in [refusal(status), raised(status)] {
                assert!(
                    matches!(screen(result), Err(InvocationError::InvalidAnswer { .. })),
                    "{status}"
                );
            }
        }
        for status in [400, 429, 503, 599] {
            assert_eq!(screen(refusal(status)), refusal(status));
            assert_eq!(screen(raised(status)), raised(status));
        }
    }
}
