//! The reducers: how module answers combine into one decision. All but `chain` invoke every
//! module at once and resolve in plan order, so the result equals Synapse's sequential
//! evaluation and is returned as soon as it is decided.

use super::plan::{Plan, PlanEntry};
use crate::bus::{Bus, InvocationMeta, Target};
use crate::policy::FailurePolicy;
use futures::stream::{FuturesOrdered, StreamExt};
use glia_bus_schema::errcodes::M_UNKNOWN;
use glia_bus_schema::{Callback, CallbackArgs, CallbackRequest, Failure, InvocationError};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// What one dispatch needs from its surroundings.
pub struct DispatchCtx<'a> {
    /// The bus to the modules.
    pub bus: &'a dyn Bus,
    /// Request id and deadline.
    pub meta: InvocationMeta,
    /// Becomes true when shutdown's grace period is over.
    pub drained: tokio::sync::watch::Receiver<bool>,
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

/// Invokes one plan entry under its timeout and the request's deadline.
pub fn invoke_entry(
    ctx: &DispatchCtx<'_>,
    entry: &PlanEntry,
    request: Arc<CallbackRequest>,
) -> impl Future<Output = Result<glia_bus_schema::ModuleAnswer, InvocationError>> + Send + 'static {
    let budget = entry
        .timeout
        .min(ctx.meta.deadline.saturating_duration_since(Instant::now()));
    let call = ctx.bus.invoke(
        Target {
            module: entry.module,
            slot: entry.slot,
        },
        request,
        &ctx.meta,
    );
    let mut drained = ctx.drained.clone();
    async move {
        tokio::select! {
            biased;
            result = tokio::time::timeout(budget, call) => match result {
                Ok(result) => result,
                Err(_) => Err(InvocationError::Timeout {
                    after_ms: budget.as_millis() as u64,
                }),
            },
            _ = drained.wait_for(|done| *done) => Err(InvocationError::Unavailable {
                reason: "glia is shutting down".into(),
            }),
        }
    }
}

/// The failure the caller sees when `entry` failed under policy `error` (or `deny` where a
/// deny has no meaning): a module's own `SynapseError` as is, anything else a 500.
pub fn failure(callback: Callback, entry: &PlanEntry, error: &InvocationError) -> Failure {
    match error {
        InvocationError::Failed {
            synapse_error: Some(e),
            ..
        } if super::rules::synapse_error_passes(callback) => Failure {
            status: e.status,
            errcode: e.errcode.clone(),
            error: e.error.clone(),
            module: entry.name.to_string(),
        },
        other => Failure {
            status: 500,
            errcode: M_UNKNOWN.to_owned(),
            error: format!("module {} {other}", entry.name),
            module: entry.name.to_string(),
        },
    }
}

fn log_failure<R: CallbackArgs>(entry: &PlanEntry, error: &InvocationError) {
    tracing::warn!(
        module = %entry.name,
        callback = %R::CALLBACK,
        error = %error,
        outcome = %error.kind(),
        policy = %entry.policy,
        "module failed; its failure policy decides"
    );
}

/// The engine under FirstDeny, FirstNonNone, Union and SingleSlot: invoke every entry at
/// once, then judge the answers in plan order. `on_deny` says what a failure under policy
/// `deny` means for this callback; `None` where the callback has nothing to deny, in which
/// case `deny` fails the request as `error` does (it must not quietly allow).
pub async fn ordered_walk<R, V>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
    mut judge: impl FnMut(R::Answer, &PlanEntry) -> Step<V>,
    mut on_deny: impl FnMut(&InvocationError, &PlanEntry) -> Option<Step<V>>,
) -> Walk<V>
where
    R: CallbackArgs,
{
    let mut answers: FuturesOrdered<_> = plan
        .entries
        .iter()
        .map(|entry| invoke_entry(ctx, entry, request.clone()))
        .collect();
    drop(request);
    for entry in &plan.entries {
        let Some(result) = answers.next().await else {
            break;
        };
        let typed = result.and_then(|answer| {
            R::unwrap_answer(answer).map_err(|other| InvocationError::InvalidAnswer {
                detail: format!("answered {} instead of {}", other.callback(), R::CALLBACK),
            })
        });
        let step = match typed {
            Ok(answer) => judge(answer, entry),
            Err(error) => {
                log_failure::<R>(entry, &error);
                match entry.policy {
                    FailurePolicy::Allow => Step::Continue,
                    FailurePolicy::Deny => match on_deny(&error, entry) {
                        Some(step) => step,
                        None => return Walk::Failed(failure(R::CALLBACK, entry, &error)),
                    },
                    FailurePolicy::Error => {
                        return Walk::Failed(failure(R::CALLBACK, entry, &error))
                    }
                }
            }
        };
        if let Step::Stop(value) = step {
            return Walk::Stopped(value, entry.name.clone());
        }
    }
    Walk::Exhausted
}

/// FirstDeny: the first deny in plan order decides; if none, allow.
pub async fn first_deny<R: CallbackArgs, V>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
    judge: impl FnMut(R::Answer, &PlanEntry) -> Step<V>,
    mut policy_deny: impl FnMut(&InvocationError, &PlanEntry) -> Step<V>,
) -> Walk<V> {
    ordered_walk::<R, V>(ctx, plan, request, judge, |e, entry| {
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
    ordered_walk::<R, V>(
        ctx,
        plan,
        request,
        |answer, entry| select(answer, entry).map_or(Step::Continue, Step::Stop),
        |error, entry| policy_deny(error, entry).map(Step::Stop),
    )
    .await
}

/// Union: every answer is merged by `merge`; `merge` returning `Stop` short-circuits (the
/// presence router's `"ALL"`). Failures are skipped under policy `allow`; a merge has nothing
/// to deny, so `deny` fails the request as `error` does.
pub async fn union<R: CallbackArgs, V>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
    merge: impl FnMut(R::Answer, &PlanEntry) -> Step<V>,
) -> Walk<V> {
    ordered_walk::<R, V>(ctx, plan, request, merge, |_, _| None).await
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
    ordered_walk::<R, R::Answer>(
        ctx,
        plan,
        request,
        |answer, _| Step::Stop(answer),
        |_, _| None,
    )
    .await
}

/// RunAll: every module is told. Modules whose failure would be ignored (policy `allow`)
/// run in the background, so they do not delay the answer; the others are awaited, since
/// their failure changes the result.
pub async fn run_all<R: CallbackArgs>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
) -> Result<(), Failure> {
    let mut awaited = FuturesOrdered::new();
    for entry in &plan.entries {
        let call = invoke_entry(ctx, entry, request.clone());
        if entry.policy == FailurePolicy::Allow {
            let entry = entry.clone();
            tokio::spawn(async move {
                if let Err(error) = call.await {
                    log_failure::<R>(&entry, &error);
                }
            });
        } else {
            awaited.push_back(async move { (entry, call.await) });
        }
    }
    drop(request);
    while let Some((entry, result)) = awaited.next().await {
        if let Err(error) = result {
            log_failure::<R>(entry, &error);
            // A notification has nothing to deny: `deny` fails the request like `error`.
            return Err(failure(R::CALLBACK, entry, &error));
        }
    }
    Ok(())
}

/// Chain: modules run one after another; `step` turns each answer into the next request
/// (`Continue`) or a final result (`Stop`); failures go through `on_failure`.
pub async fn chain<R: CallbackArgs, V>(
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
    for entry in &plan.entries {
        let result = invoke_entry(ctx, entry, request.clone())
            .await
            .and_then(|answer| {
                R::unwrap_answer(answer).map_err(|other| InvocationError::InvalidAnswer {
                    detail: format!("answered {} instead of {}", other.callback(), R::CALLBACK),
                })
            });
        match result {
            Ok(answer) => request = step(answer, entry, &request)?,
            Err(error) => {
                log_failure::<R>(entry, &error);
                if let Some(v) = on_failure(&error, entry) {
                    return Err(v);
                }
            }
        }
    }
    Ok(request)
}
