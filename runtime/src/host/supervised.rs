//! The supervisor inside each module actor: it owns the module instance, turns a panic or a
//! fatal error into a crash, rebuilds the instance from its parsed config after a backoff,
//! stashes what arrives meanwhile, marks the module failed past its restart intensity and
//! probes it back, and restarts a module whose invocation hangs past the watchdog.
//!
//! Everything here runs on the module's own thread, so the state is an `Rc<RefCell<_>>`
//! shared by the actor and the invocations' futures: a crash is seen by the very next
//! invocation, with no message to wait for.

use super::registration::{RegistrationSummary, Slot, WebPath};
use super::status::{ModuleState, ModuleStatus};
use crate::supervision::{backoff_delay, IntensityWindow, RestartPolicy};
use futures::channel::oneshot;
use futures::future::{AbortHandle, Abortable, Aborted, LocalBoxFuture};
use futures::FutureExt;
use glia_bus_schema::{CallbackRequest, InvocationError, ModuleAnswer};
use glia_module_api::{
    ErasedHandler, ModuleApi, ModuleError, ModuleFactory, ParsedConfig, SharedState, WebHandler,
};
use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// Called (on the module's thread) the first time an instance is built, with what it
/// registered; lets the runtime plan a module whose constructor failed at start-up.
pub type OnRegistered = Arc<dyn Fn(RegistrationSummary) + Send + Sync>;

/// One built instance: the module object and its handlers, by slot.
struct Instance {
    _module: Box<dyn Any>,
    callbacks: Vec<ErasedHandler>,
    auth_checkers: Vec<ErasedHandler>,
    web: Vec<WebHandler>,
}

enum Life {
    Running(Instance),
    Restarting,
    Failed,
    Stopped,
}

struct Stashed {
    slot: Slot,
    request: Arc<CallbackRequest>,
    permit: Option<OwnedSemaphorePermit>,
    trace: opentelemetry::Context,
    reply: oneshot::Sender<Result<ModuleAnswer, InvocationError>>,
}

/// What the supervisor does after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// A fresh instance is built after this backoff.
    Restart(Duration),
    /// Past the restart intensity: failed until a probe restart.
    Failed,
}

/// Adds an event to the span in `trace`, if it is recording (a crash seen from the trace).
fn trace_event(
    trace: &opentelemetry::Context,
    name: &'static str,
    attributes: Vec<opentelemetry::KeyValue>,
) {
    use opentelemetry::trace::TraceContextExt;
    let span = trace.span();
    if span.is_recording() {
        span.add_event(name, attributes);
    }
}

struct Flight {
    started: Instant,
    generation: u64,
    abort: AbortHandle,
}

/// The supervisor's state.
pub struct Core {
    name: Arc<str>,
    factory: Arc<dyn ModuleFactory>,
    config: ParsedConfig,
    policy: RestartPolicy,
    status: Arc<ModuleStatus>,
    expected: Option<RegistrationSummary>,
    on_registered: Option<OnRegistered>,
    life: Life,
    generation: u64,
    window: IntensityWindow,
    /// Restarts in a row, each instance having crashed before it answered anything and sooner
    /// than `backoff_min` after it started: the exponent of the next backoff.
    consecutive: u32,
    running_since: Instant,
    /// Whether the current instance has answered an invocation without crashing.
    served: bool,
    stash: VecDeque<Stashed>,
    flights: HashMap<u64, Flight>,
    next_flight: u64,
    crashed_at: Option<Instant>,
    /// Whether this instance's watchdog beats the module's heartbeat: only the module's own
    /// thread does, since the heartbeat tells whether that thread is blocked.
    beats: bool,
}

/// The shared handle to a module's supervisor state.
#[derive(Clone)]
pub struct Supervised(Rc<RefCell<Core>>);

/// What building an instance produced.
type Built = Result<(Instance, RegistrationSummary), String>;

fn build(
    name: &str,
    factory: &Arc<dyn ModuleFactory>,
    config: &ParsedConfig,
    shared: &SharedState,
) -> Built {
    let mut api = ModuleApi::sharing(name, shared.clone());
    let built = std::panic::catch_unwind(AssertUnwindSafe(|| factory.build(config, &mut api)));
    let module = match built {
        Ok(Ok(module)) => module,
        Ok(Err(ModuleError::Failed { message, .. })) | Ok(Err(ModuleError::Fatal(message))) => {
            return Err(format!("constructor failed: {message}"))
        }
        Err(payload) => {
            return Err(format!(
                "constructor panicked: {}",
                panic_message(payload.as_ref())
            ))
        }
    };
    let registrations = api.into_registrations();
    let summary = RegistrationSummary {
        callbacks: registrations.callbacks.iter().map(|(c, _)| *c).collect(),
        auth_checkers: registrations
            .auth_checkers
            .iter()
            .map(|a| (a.login_type.clone(), a.fields.clone()))
            .collect(),
        web_resources: registrations
            .web_resources
            .iter()
            .map(|r| WebPath {
                path: r.path.clone(),
                subtree: r.subtree,
            })
            .collect(),
    };
    let instance = Instance {
        _module: module,
        callbacks: registrations
            .callbacks
            .into_iter()
            .map(|(_, h)| h)
            .collect(),
        auth_checkers: registrations
            .auth_checkers
            .into_iter()
            .map(|a| a.handler)
            .collect(),
        web: registrations
            .web_resources
            .into_iter()
            .map(|r| r.handler)
            .collect(),
    };
    Ok((instance, summary))
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_owned())
}

/// Drops a replaced instance with no borrow of the supervisor held, so the module's own
/// `Drop` can neither re-enter the supervisor nor, by panicking, leave it half-updated.
fn discard(life: Life) {
    if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(move || drop(life))) {
        tracing::error!(panic = %panic_message(payload.as_ref()), "a module instance panicked while being dropped");
    }
}

/// Why an invocation's future ended without its own result.
const WATCHDOG_ABORT: &str = "hung past the watchdog; the module was restarted";

/// An invocation answered at once with `Unavailable`: the module cannot run it now.
fn unavailable(reason: String) -> LocalBoxFuture<'static, Result<ModuleAnswer, InvocationError>> {
    futures::future::ready(Err(InvocationError::Unavailable { reason })).boxed_local()
}

/// The error of an invocation that panicked, carrying the panic's text.
fn crashed(payload: Box<dyn Any + Send>) -> InvocationError {
    InvocationError::Crashed {
        reason: panic_message(payload.as_ref()),
    }
}

impl Instance {
    /// The handler registered in `slot`, if this instance has one.
    #[inline]
    fn handler(&self, slot: Slot) -> Option<ErasedHandler> {
        match slot {
            Slot::Callback(i) => self.callbacks.get(i).cloned(),
            Slot::AuthChecker(i) => self.auth_checkers.get(i).cloned(),
        }
    }
}

impl Core {
    /// Keeps an invocation for the instance being rebuilt, or refuses it when the stash is
    /// full, so a restart loses nothing it promised to run.
    fn stash_invocation(
        &mut self,
        slot: Slot,
        request: Arc<CallbackRequest>,
        permit: Option<OwnedSemaphorePermit>,
        trace: opentelemetry::Context,
    ) -> LocalBoxFuture<'static, Result<ModuleAnswer, InvocationError>> {
        if self.stash.len() >= self.policy.stash {
            return unavailable(format!(
                "module {} is restarting and its stash of {} is full",
                self.name, self.policy.stash
            ));
        }
        let (reply, answer) = oneshot::channel();
        trace_event(&trace, "stashed", vec![]);
        self.stash.push_back(Stashed {
            slot,
            request,
            permit,
            trace,
            reply,
        });
        async move {
            answer.await.unwrap_or_else(|_| {
                Err(InvocationError::Unavailable {
                    reason: "the module stopped while the invocation waited for its restart".into(),
                })
            })
        }
        .boxed_local()
    }
}

impl Supervised {
    /// Builds the first instance. On failure the module starts `Failed` with a probe
    /// scheduled, and the error is returned for the caller to decide (`required`).
    pub fn start(
        name: Arc<str>,
        factory: Arc<dyn ModuleFactory>,
        config: ParsedConfig,
        policy: RestartPolicy,
        status: Arc<ModuleStatus>,
        on_registered: OnRegistered,
    ) -> (Supervised, Result<RegistrationSummary, String>) {
        let built = build(&name, &factory, &config, status.shared());
        let core = Core {
            name,
            factory,
            config,
            policy,
            status,
            expected: None,
            on_registered: Some(on_registered),
            life: Life::Failed,
            generation: 0,
            window: IntensityWindow::default(),
            consecutive: 0,
            running_since: Instant::now(),
            served: false,
            stash: VecDeque::new(),
            flights: HashMap::new(),
            next_flight: 0,
            crashed_at: None,
            beats: true,
        };
        let this = Supervised(Rc::new(RefCell::new(core)));
        let result = match built {
            Ok((instance, summary)) => {
                this.install(instance, summary.clone());
                Ok(summary)
            }
            Err(reason) => {
                let core = this.0.borrow();
                core.status.record_crash(&reason);
                core.status.set_state(ModuleState::Failed);
                let cooldown = core.policy.cooldown;
                drop(core);
                this.schedule_rebuild(cooldown);
                Err(reason)
            }
        };
        this.start_watchdog();
        (this, result)
    }

    /// Stops this instance's watchdog from beating the module's heartbeat: for an instance
    /// on a thread that is not the module's own (see `PerThread`).
    pub fn without_heartbeat(self) -> Self {
        self.0.borrow_mut().beats = false;
        self
    }

    fn install(&self, instance: Instance, summary: RegistrationSummary) {
        let mut core = self.0.borrow_mut();
        core.generation += 1;
        core.running_since = Instant::now();
        core.served = false;
        core.life = Life::Running(instance);
        core.status.set_state(ModuleState::Running);
        if core.expected.is_none() {
            core.expected = Some(summary.clone());
            if let Some(notify) = core.on_registered.take() {
                drop(core);
                notify(summary);
            }
        }
    }

    /// Runs one invocation: on the instance if it is running, from the stash once it is
    /// rebuilt if it is restarting, or not at all (an `Unavailable` error) if it failed.
    /// A crash and what the supervisor does about it become events on `trace`'s span.
    pub fn invoke(
        &self,
        slot: Slot,
        request: Arc<CallbackRequest>,
        permit: Option<OwnedSemaphorePermit>,
        trace: opentelemetry::Context,
    ) -> LocalBoxFuture<'static, Result<ModuleAnswer, InvocationError>> {
        let mut core = self.0.borrow_mut();
        let handler = match &core.life {
            Life::Running(instance) => instance.handler(slot),
            Life::Restarting => return core.stash_invocation(slot, request, permit, trace),
            Life::Failed => {
                return unavailable(format!(
                    "module {} is failed (restarts exhausted or its constructor fails); a probe restart follows its cool-down",
                    core.name
                ))
            }
            Life::Stopped => return unavailable(format!("module {} is stopped", core.name)),
        };
        let Some(handler) = handler else {
            return unavailable(format!("module {} has no handler {slot:?}", core.name));
        };
        let generation = core.generation;
        let status = core.status.clone();
        drop(core);
        status.enter();

        // A panic is a crash of this invocation whether it happens before the first await or
        // while the future runs; it must not take the module's thread down. The invocation's
        // context is current during the call, so a handler that passes it on (a Python
        // host's pipe) continues the trace.
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| {
            use opentelemetry::trace::TraceContextExt;
            let _current = trace.has_active_span().then(|| trace.clone().attach());
            handler.call(&request)
        }));
        drop(request);
        let this = self.clone();
        async move {
            let result = match started {
                Ok(future) => this.settle(generation, future).await,
                Err(payload) => Err(crashed(payload)),
            };
            {
                let mut core = this.0.borrow_mut();
                if result.is_ok() && core.generation == generation {
                    core.served = true;
                }
            }
            if let Err(InvocationError::Crashed { reason }) = &result {
                if reason != WATCHDOG_ABORT {
                    status.record_crashed_invocation();
                    this.crash_traced(generation, reason, &trace);
                }
            }
            // Counted as finished only once its consequences (a crash) are recorded.
            status.leave();
            drop(permit);
            result
        }
        .boxed_local()
    }

    /// Drives a started invocation to its answer, a panic or a watchdog abort becoming a
    /// crash: the future is polled once here so only a pending one costs a flight.
    async fn settle(
        &self,
        generation: u64,
        future: LocalBoxFuture<'static, Result<ModuleAnswer, InvocationError>>,
    ) -> Result<ModuleAnswer, InvocationError> {
        let mut answer = AssertUnwindSafe(future).catch_unwind();
        // A synchronous handler answers on its first poll; only an invocation
        // still running after it is a flight for the watchdog to time.
        let outcome = match futures::poll!(&mut answer) {
            std::task::Poll::Ready(outcome) => Ok(outcome),
            std::task::Poll::Pending => self.in_flight(generation, answer).await,
        };
        match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(payload)) => Err(crashed(payload)),
            Err(_aborted) => Err(InvocationError::Crashed {
                reason: WATCHDOG_ABORT.into(),
            }),
        }
    }

    /// Records the crash of an invocation of `generation` and adds it, with what the
    /// supervisor does about it, as events on `trace`'s span (a crash seen from the trace).
    fn crash_traced(&self, generation: u64, reason: &str, trace: &opentelemetry::Context) {
        let recovery = self.crash(generation, reason);
        trace_event(
            trace,
            "crash",
            vec![opentelemetry::KeyValue::new(
                "exception.message",
                reason.to_owned(),
            )],
        );
        match recovery {
            Some(Recovery::Restart(delay)) => trace_event(
                trace,
                "restart",
                vec![opentelemetry::KeyValue::new(
                    "glia.restart.delay_ms",
                    delay.as_millis() as i64,
                )],
            ),
            Some(Recovery::Failed) => trace_event(trace, "failed", vec![]),
            None => {}
        }
    }

    /// Runs the rest of an invocation of `generation` as a flight the watchdog times (and
    /// aborts, if it hangs past the watchdog).
    async fn in_flight<F: Future + Unpin>(
        &self,
        generation: u64,
        answer: F,
    ) -> Result<F::Output, Aborted> {
        let (abort, registration) = AbortHandle::new_pair();
        let id = {
            let mut core = self.0.borrow_mut();
            let id = core.next_flight;
            core.next_flight += 1;
            core.flights.insert(
                id,
                Flight {
                    started: Instant::now(),
                    generation,
                    abort,
                },
            );
            id
        };
        let outcome = Abortable::new(answer, registration).await;
        self.0.borrow_mut().flights.remove(&id);
        outcome
    }

    /// Serves a web request on the running instance.
    pub fn web_handler(&self, slot: usize) -> Option<WebHandler> {
        match &self.0.borrow().life {
            Life::Running(instance) => instance.web.get(slot).cloned(),
            _ => None,
        }
    }

    /// The instance of `generation` crashed: restart it after a backoff, or mark the module
    /// failed past its intensity. A crash of an instance already replaced is ignored
    /// (`None`).
    pub fn crash(&self, generation: u64, reason: &str) -> Option<Recovery> {
        let mut core = self.0.borrow_mut();
        if generation != core.generation || !matches!(core.life, Life::Running(_)) {
            return None;
        }
        tracing::error!(module = %core.name, %reason, "module crashed");
        core.status.record_crash(reason);
        core.crashed_at = Some(Instant::now());
        // The old instance goes; invocations still running on it finish on their own.
        let old = std::mem::replace(&mut core.life, Life::Restarting);
        let recovery = self.after_failure(core);
        discard(old);
        Some(recovery)
    }

    /// Decides between a backoff restart and the failed state, once the instance is gone.
    fn after_failure(&self, mut core: std::cell::RefMut<'_, Core>) -> Recovery {
        let now = Instant::now();
        let policy = core.policy;
        if core.window.allow_restart(&policy, now) {
            // A burst of restarts ends once an instance has worked: it answered an invocation,
            // or ran for backoff_min (Akka's resetBackoffAfter). A module that crashes on
            // some requests is not in a crash loop; one that crashes on every request is.
            if core.served
                || now.saturating_duration_since(core.running_since) >= policy.backoff_min
            {
                core.consecutive = 0;
            }
            let delay = backoff_delay(&policy, core.consecutive, fastrand::f64());
            core.consecutive = core.consecutive.saturating_add(1);
            core.life = Life::Restarting;
            core.status.set_state(ModuleState::Restarting);
            tracing::info!(module = %core.name, delay_ms = delay.as_millis() as u64, "restarting module");
            drop(core);
            self.schedule_rebuild(delay);
            Recovery::Restart(delay)
        } else {
            tracing::error!(
                module = %core.name,
                intensity = policy.intensity,
                period_ms = policy.period.as_millis() as u64,
                cooldown_ms = policy.cooldown.as_millis() as u64,
                "module crashed past its restart intensity; marked failed until a probe restart succeeds"
            );
            core.life = Life::Failed;
            core.status.set_state(ModuleState::Failed);
            let stashed: Vec<Stashed> = core.stash.drain(..).collect();
            let name = core.name.clone();
            drop(core);
            for s in stashed {
                let _ = s.reply.send(Err(InvocationError::Unavailable {
                    reason: format!("module {name} has failed (past its restart intensity)"),
                }));
            }
            self.schedule_rebuild(policy.cooldown);
            Recovery::Failed
        }
    }

    fn schedule_rebuild(&self, delay: Duration) {
        let this = self.clone();
        actix_rt::spawn(async move {
            actix_rt::time::sleep(delay).await;
            this.rebuild();
        });
    }

    /// Builds a fresh instance from the parsed config (fresh state, as OTP and Akka do; what
    /// the module keeps through `ModuleApi::shared` stays, being every instance's), then
    /// delivers the stash to it. A failed build counts as another crash.
    fn rebuild(&self) {
        let core = self.0.borrow();
        if matches!(core.life, Life::Stopped | Life::Running(_)) {
            return;
        }
        let probing = matches!(core.life, Life::Failed);
        let (name, factory, config, status) = (
            core.name.clone(),
            core.factory.clone(),
            core.config.clone(),
            core.status.clone(),
        );
        drop(core);
        let built =
            build(&name, &factory, &config, status.shared()).and_then(|(instance, summary)| {
                let core = self.0.borrow();
                match &core.expected {
                    Some(expected) if expected != &summary => Err(
                        "the rebuilt instance registered different callbacks than the first one"
                            .to_owned(),
                    ),
                    _ => Ok((instance, summary)),
                }
            });
        match built {
            Ok((instance, summary)) => {
                let recovery = {
                    let mut core = self.0.borrow_mut();
                    if probing {
                        core.window.reset();
                    }
                    core.crashed_at.take().map(|t| t.elapsed())
                };
                self.install(instance, summary);
                // The stash goes to the new instance before the restart is counted, so whoever
                // sees the restart also sees the stashed invocations in flight.
                self.deliver_stash();
                let core = self.0.borrow();
                core.status.record_restart(recovery);
                tracing::info!(module = %core.name, probe = probing, "module serving again");
            }
            Err(reason) => {
                let core = self.0.borrow_mut();
                tracing::error!(module = %core.name, %reason, "module rebuild failed");
                core.status.record_crash(&reason);
                if probing {
                    let cooldown = core.policy.cooldown;
                    drop(core);
                    self.schedule_rebuild(cooldown);
                } else {
                    let _ = self.after_failure(core);
                }
            }
        }
    }

    fn deliver_stash(&self) {
        let stashed: Vec<Stashed> = self.0.borrow_mut().stash.drain(..).collect();
        for s in stashed {
            let answer = self.invoke(s.slot, s.request, s.permit, s.trace);
            actix_rt::spawn(async move {
                let _ = s.reply.send(answer.await);
            });
        }
    }

    /// Checks, every quarter of the watchdog period, for an invocation running longer than
    /// the watchdog; such a module is restarted and its hung invocations are aborted.
    fn start_watchdog(&self) {
        let weak = Rc::downgrade(&self.0);
        let period = self.0.borrow().policy.watchdog;
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval((period / 4).max(Duration::from_millis(1)));
            loop {
                tick.tick().await;
                let Some(core) = weak.upgrade() else { return };
                let this = Supervised(core);
                if matches!(this.0.borrow().life, Life::Stopped) {
                    return;
                }
                // Seen from outside: a thread that stops beating is blocked (see app.rs).
                if this.0.borrow().beats {
                    this.0.borrow().status.beat();
                }
                this.check_hangs(period);
            }
        });
    }

    fn check_hangs(&self, watchdog: Duration) {
        let core = self.0.borrow();
        let generation = core.generation;
        // Hung invocations of an instance already replaced are aborted too (they hold
        // permits); only a hang of the current instance restarts the module.
        let hung: Vec<(u64, u64)> = core
            .flights
            .iter()
            .filter(|(_, f)| f.started.elapsed() >= watchdog)
            .map(|(id, f)| (*id, f.generation))
            .collect();
        if hung.is_empty() {
            return;
        }
        drop(core);
        let current = hung.iter().filter(|(_, g)| *g == generation).count();
        if current > 0 {
            let reason = format!(
                "{current} invocation(s) hung past the watchdog of {} ms",
                watchdog.as_millis()
            );
            self.crash(generation, &reason);
        }
        let mut core = self.0.borrow_mut();
        for (id, _) in hung {
            if let Some(flight) = core.flights.remove(&id) {
                flight.abort.abort();
            }
        }
    }

    /// Stops the module: nothing new runs; stashed invocations are answered `Unavailable`.
    pub fn stop(&self) {
        let mut core = self.0.borrow_mut();
        let old = std::mem::replace(&mut core.life, Life::Stopped);
        core.status.set_state(ModuleState::Stopped);
        let stashed: Vec<Stashed> = core.stash.drain(..).collect();
        drop(core);
        discard(old);
        for s in stashed {
            let _ = s.reply.send(Err(InvocationError::Unavailable {
                reason: "the module stopped".into(),
            }));
        }
    }
}
