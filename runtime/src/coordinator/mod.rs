//! The coordinator: looks up a callback's plan, fans the invocation out over the bus, and
//! reduces the answers to the decision Synapse's module system would reach.

pub mod audit;
pub mod lifetime;
pub mod plan;
pub mod reduce;
pub mod reducers;

pub mod running;
pub mod trace;

pub use crate::rules::{reducer, rules, Deny, Reducer, Rules};
pub use plan::{Plan, PlanEntry, PlanError, Plans};
pub use reduce::Reduce;
pub use reducers::{DispatchCtx, Step, Verdict, Walk};
pub use trace::{DispatchTrace, Ingress, InvocationSpan, Judgement, LogIds, WorkerSpan};

use crate::bus::{Bus, InvocationMeta};
use crate::telemetry::{Role, Telemetry};
use arc_swap::ArcSwap;
use glia_bus_schema::errcodes::M_MISSING_PARAM;
use glia_bus_schema::requests::CheckAuth;
use glia_bus_schema::{
    AuthReply, Callback, CallbackArgs, CallbackRequest, DispatchReply, JsonObject, Outcome,
};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A request the coordinator refuses before asking any module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct DispatchError {
    /// HTTP status (4xx).
    pub status: u16,
    /// Matrix errcode.
    pub errcode: &'static str,
    /// What is wrong.
    pub error: String,
}

/// The plans and the bus that reaches their modules: a dispatch reads both at once, so a
/// reload, which replaces them together, never sends an old plan's invocation to a new
/// module set.
pub struct Routing {
    /// Every callback's plan.
    pub plans: Arc<Plans>,
    /// The bus to the modules the plans name (by config index).
    pub bus: Arc<dyn Bus>,
    /// Names this routing among every routing of every glia process (a random number drawn
    /// by the coordinator, then a count of routings): a lasting reply holds only while the
    /// replies of the glia it came from still name the routing it was decided under.
    pub generation: Arc<str>,
}

/// A dispatch under way: what Synapse would do, once decided.
pub type Dispatching<'a> = futures::future::BoxFuture<'a, Result<DispatchReply, DispatchError>>;

/// Dispatches callbacks to modules under their plans.
pub struct Coordinator {
    routing: ArcSwap<Routing>,
    deadline: Duration,
    ids: AtomicU64,
    /// Routings made so far, after the first (their generations' counts).
    generations: AtomicU64,
    /// This coordinator's part of every generation it names.
    generation_prefix: String,
    id_prefix: String,
    /// Set when shutdown's grace period is over: pending invocations resolve at once.
    drained: watch::Sender<bool>,
    /// Dispatches in progress, so shutdown knows when they are done.
    active: AtomicUsize,
    /// Spans, metrics and decision records.
    telemetry: Arc<Telemetry>,
}

/// Counts a dispatch as active until it is dropped (finished or cancelled).
struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Coordinator {
    /// A coordinator over `plans`, reaching modules through `bus`, with a default whole-request
    /// deadline.
    pub fn new(plans: Plans, bus: Arc<dyn Bus>, deadline: Duration) -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let generation_prefix = format!("{:016x}", fastrand::u64(..));
        Coordinator {
            routing: ArcSwap::from_pointee(Routing {
                plans: Arc::new(plans),
                bus,
                generation: format!("{generation_prefix}.0").into(),
            }),
            deadline,
            ids: AtomicU64::new(0),
            generations: AtomicU64::new(0),
            generation_prefix,
            id_prefix: format!("{:x}", started & 0xffff_ffff_ffff),
            drained: watch::channel(false).0,
            active: AtomicUsize::new(0),
            telemetry: Arc::new(Telemetry::disabled(Role::Coordinator)),
        }
    }

    /// Reports dispatches to `telemetry` (by default nothing is recorded).
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// The telemetry dispatches report to.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// The plans in force.
    pub fn plans(&self) -> Arc<Plans> {
        self.routing.load().plans.clone()
    }

    /// Replaces the plans (a module registered late); dispatches in progress keep theirs.
    pub fn set_plans(&self, plans: Plans) {
        let plans = Arc::new(plans);
        let generation = self.next_generation();
        self.routing.rcu(|current| Routing {
            plans: plans.clone(),
            bus: current.bus.clone(),
            generation: generation.clone(),
        });
    }

    /// The routing in force's generation (see [`Routing::generation`]).
    pub fn generation(&self) -> Arc<str> {
        self.routing.load().generation.clone()
    }

    fn next_generation(&self) -> Arc<str> {
        let n = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}.{n}", self.generation_prefix).into()
    }

    /// Replaces the plans and the bus together (a reload); dispatches in progress finish on
    /// the routing they started with, which is returned: each holds a reference to it, so
    /// once the caller's is the only one left, no dispatch uses the old modules any more.
    pub fn set_routing(&self, plans: Plans, bus: Arc<dyn Bus>) -> Arc<Routing> {
        self.routing.swap(Arc::new(Routing {
            plans: Arc::new(plans),
            bus,
            generation: self.next_generation(),
        }))
    }

    /// Dispatches in progress.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Lets dispatches in progress finish for up to `grace`, then resolves what is still
    /// pending through the failure policies, and waits until every dispatch has answered.
    /// Dispatches started afterwards resolve at once.
    pub async fn drain_after(&self, grace: Duration) {
        let until = Instant::now() + grace;
        while self.active() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.drained.send_replace(true);
        while self.active() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The default whole-request deadline.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// A fresh request id.
    pub fn next_request_id(&self) -> Arc<str> {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.id_prefix).into()
    }

    /// A fresh decision id: 128 random bits in hex, unique across coordinators.
    pub fn next_decision_id(&self) -> Arc<str> {
        hex128(fastrand::u128(..))
    }

    /// Metadata for a new request with the default deadline.
    pub fn new_meta(&self) -> InvocationMeta {
        self.meta(None, opentelemetry::Context::new())
    }

    /// Metadata for a request with the caller's request id (or a fresh one) and trace
    /// context, and the default deadline.
    pub fn meta(
        &self,
        request_id: Option<Arc<str>>,
        trace: opentelemetry::Context,
    ) -> InvocationMeta {
        InvocationMeta {
            request_id: request_id.unwrap_or_else(|| self.next_request_id()),
            decision_id: self.next_decision_id(),
            deadline: Instant::now() + self.deadline,
            trace,
        }
    }

    /// Typed dispatch, for embedding glia as a library.
    pub async fn call<R: CallbackArgs>(&self, args: R) -> Result<R::Reply, DispatchError> {
        let reply = self.dispatch(args.into_request(), self.new_meta()).await?;
        R::unwrap_reply(reply).map_err(|other| DispatchError {
            status: 500,
            errcode: glia_bus_schema::errcodes::M_UNKNOWN,
            error: format!("internal: {} answered as {}", R::CALLBACK, other.callback()),
        })
    }

    /// Dispatches one callback and returns what Synapse would do. The dispatch is traced
    /// (a child of `meta.trace`), counted and recorded under `meta.decision_id`.
    pub fn dispatch(&self, request: CallbackRequest, meta: InvocationMeta) -> Dispatching<'_> {
        self.dispatch_via(request, meta, None)
    }

    /// [`Coordinator::dispatch`] of a request that came in by `route`, which its span and
    /// decision record name. The future is boxed once here: it is a few KB, and callers move
    /// it (into tasks, `join_all`s, actix's handler futures) several times each.
    pub fn dispatch_via(
        &self,
        request: CallbackRequest,
        meta: InvocationMeta,
        route: Option<Ingress>,
    ) -> Dispatching<'_> {
        Box::pin(self.dispatched(request, meta, route))
    }

    async fn dispatched(
        &self,
        request: CallbackRequest,
        meta: InvocationMeta,
        route: Option<Ingress>,
    ) -> Result<DispatchReply, DispatchError> {
        self.active.fetch_add(1, Ordering::AcqRel);
        let _active = ActiveGuard(&self.active);
        let trace =
            DispatchTrace::begin(&self.telemetry, request.callback(), &meta, &request, route);
        // Held to the end: a reload waits for the last holder of the routing it replaced.
        let routing = self.routing.load_full();
        let ctx = DispatchCtx {
            bus: routing.bus.as_ref(),
            meta: InvocationMeta {
                trace: trace.context().clone(),
                ..meta
            },
            drained: self.drained.subscribe(),
            trace: &trace,
            generation: &routing.generation,
            routing: &routing,
        };
        let result = self.decide(&ctx, &routing.plans, request).await;
        drop(ctx);
        trace.finish(&result);
        result
    }

    async fn decide(
        &self,
        ctx: &DispatchCtx<'_>,
        plans: &Plans,
        request: CallbackRequest,
    ) -> Result<DispatchReply, DispatchError> {
        let callback = request.callback();
        if let CallbackRequest::CheckAuth(args) = request {
            // Boxed for the reason each arm below is.
            return Box::pin(check_auth(ctx, plans, args)).await;
        }
        Ok(reduce_staged(ctx, plans.get(callback), Arc::new(request)).await)
    }
}

/// Reduces `plan`'s answers to `request`; where some of its modules are audited for this
/// request, the enforcing ones decide and the audited ones are recorded (`audit`).
async fn reduce_staged(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
) -> DispatchReply {
    match plan
        .is_staged()
        .then(|| audit::split(plan, &request))
        .flatten()
    {
        Some(staged) => Box::pin(audit::decide(ctx, staged, request)).await,
        None => reduce(ctx, plan, request).await,
    }
}

/// Reduces the answers of every module of `plan` to `request` into its reply, by the
/// callback's row of the rules table.
async fn reduce(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
) -> DispatchReply {
    let callback = request.callback();
    let rules = crate::rules::rules(callback);
    // One arm per callback, generated from the bus schema's table. Each arm's future is
    // boxed: inline, every dispatch future would be as large as the largest arm's (several
    // KB), and copying that as it is moved and boxed by callers was the largest single cost
    // of a dispatch once modules ran on the caller's thread.
    macro_rules! dispatch {
        ($($variant:ident = $name:literal, $cat:ident, $req:ty, $ans:ty, $reply:ty;)*) => {
            match callback {
                $(Callback::$variant => DispatchReply::$variant(
                    Box::pin(<$reply as Reduce<$ans>>::reduce::<$req>(ctx, rules, plan, request))
                        .await,
                ),)*
            }
        };
    }
    glia_bus_schema::for_each_callback!(dispatch)
}

/// `bits` as 32 lowercase hex digits. Written by hand: `format!("{:032x}")` was a visible
/// share of a dispatch's CPU.
fn hex128(bits: u128) -> Arc<str> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 32];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = DIGITS[((bits >> (124 - 4 * i)) & 0xf) as usize];
    }
    std::str::from_utf8(&hex).expect("hex digits").into()
}

/// `check_auth`, the one callback whose plan depends on its arguments: the checkers of the
/// login type, each seeing exactly the fields it registered (spec §3.5).
async fn check_auth(
    ctx: &DispatchCtx<'_>,
    plans: &Plans,
    args: CheckAuth,
) -> Result<DispatchReply, DispatchError> {
    let Some(auth) = plans.auth(&args.login_type) else {
        return Ok(DispatchReply::CheckAuth(Outcome::Value(AuthReply {
            user_id: None,
            module: None,
            post_login: None,
        })));
    };
    let missing: Vec<&str> = auth
        .fields
        .iter()
        .filter(|f| !args.login_dict.contains_key(f.as_str()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(DispatchError {
            status: 400,
            errcode: M_MISSING_PARAM,
            error: format!(
                "Missing parameters for login type {}: {}",
                args.login_type,
                missing.join(", ")
            ),
        });
    }
    let login_dict: JsonObject = auth
        .fields
        .iter()
        .filter_map(|f| args.login_dict.get(f).map(|v| (f.clone(), v.clone())))
        .collect();
    let request = CheckAuth { login_dict, ..args };
    Ok(reduce_staged(ctx, &auth.plan, Arc::new(request.into_request())).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_ids_are_the_bits_in_32_hex_digits() {
        for bits in [
            0,
            1,
            0xabc,
            u128::MAX,
            fastrand::u128(..),
            fastrand::u128(..),
        ] {
            assert_eq!(&*hex128(bits), format!("{bits:032x}"));
        }
    }

    /// Each row's reducer and reading must be one its callback's (answer, reply) types
    /// implement: the table cannot promise what the types do not do.
    #[test]
    fn every_row_is_served_by_its_answer_and_reply_types() {
        macro_rules! check {
            ($($variant:ident = $name:literal, $cat:ident, $req:ty, $ans:ty, $reply:ty;)*) => {
                $(
                    let row = crate::rules::rules(Callback::$variant);
                    assert!(
                        <$reply as Reduce<$ans>>::SERVES.contains(&(row.reducer, row.reading)),
                        "{}: ({:?}, {:?}) is not among what its types serve: {:?}",
                        $name,
                        row.reducer,
                        row.reading,
                        <$reply as Reduce<$ans>>::SERVES,
                    );
                )*
            };
        }
        glia_bus_schema::for_each_callback!(check);
    }
}
