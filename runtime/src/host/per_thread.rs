//! `instances: per_thread`: besides its actor, a stateless module gets an instance on each
//! thread that dispatches to it, built there on first use, so its handlers run on the
//! caller's thread. A synchronous handler then answers with no message to another thread,
//! no wake-up and no context switch (on 2 cores those were most of a dispatch's CPU).
//!
//! Each instance is supervised as the actor's is (a panic is a crash, the supervisor
//! rebuilds the instance after its backoff, stashes meanwhile, fails past the restart
//! intensity); all share the module's status. A handler that does not answer at once goes
//! on as a task of the caller's thread.

use super::registration::Slot;
use super::status::{ModuleState, ModuleStatus};
use super::supervised::Supervised;
use crate::config::ModuleConfig;
use crate::supervision::RestartPolicy;
use futures::channel::oneshot;
use futures::future::BoxFuture;
use futures::FutureExt;
use glia_bus_schema::{CallbackRequest, InvocationError, ModuleAnswer};
use glia_module_api::{ModuleFactory, ParsedConfig};
use std::cell::RefCell;
use std::sync::{Arc, Weak};
use tokio::sync::OwnedSemaphorePermit;

/// What builds a module's instance on each calling thread.
pub struct PerThread {
    name: Arc<str>,
    factory: Arc<dyn ModuleFactory>,
    config: ParsedConfig,
    policy: RestartPolicy,
    status: Arc<ModuleStatus>,
}

thread_local! {
    /// This thread's instances, by the `PerThread` they were built from.
    static INSTANCES: RefCell<Vec<(Weak<PerThread>, Supervised)>> = const { RefCell::new(Vec::new()) };
}

impl PerThread {
    /// Instances of `config`'s module, reporting to its `status`.
    pub fn new(config: &ModuleConfig, status: Arc<ModuleStatus>) -> Arc<PerThread> {
        Arc::new(PerThread {
            name: config.name.as_str().into(),
            factory: config.factory.clone(),
            config: config.config.clone(),
            policy: config.restart,
            status,
        })
    }

    /// Whether the calling thread can run an instance: it has an actix arbiter (the
    /// supervisor's timers are tasks of it) and the module has not been stopped.
    pub fn available(&self) -> bool {
        actix_rt::Arbiter::try_current().is_some() && self.status.state() != ModuleState::Stopped
    }

    /// Runs one invocation on this thread's instance (built now if there is none). Call only
    /// when [`PerThread::available`].
    pub fn invoke(
        self: &Arc<Self>,
        slot: Slot,
        request: Arc<CallbackRequest>,
        permit: OwnedSemaphorePermit,
        trace: opentelemetry::Context,
    ) -> BoxFuture<'static, Result<ModuleAnswer, InvocationError>> {
        let instance = self.instance();
        let mut answer = instance.invoke(slot, request, Some(permit), trace);
        if let Some(result) = (&mut answer).now_or_never() {
            return futures::future::ready(result).boxed();
        }
        let (reply, answered) = oneshot::channel();
        actix_rt::spawn(async move {
            let _ = reply.send(answer.await);
        });
        async move {
            answered.await.unwrap_or_else(|_| {
                Err(InvocationError::Unavailable {
                    reason: "the module's thread stopped before it answered".into(),
                })
            })
        }
        .boxed()
    }

    /// This thread's instance, built on first use. Meanwhile the instances of modules since
    /// stopped are stopped here too, and those of `PerThread`s that are gone (a module
    /// replaced) are dropped: their watchdogs end with them.
    fn instance(self: &Arc<Self>) -> Supervised {
        INSTANCES.with(|instances| {
            let mut instances = instances.borrow_mut();
            // A dead owner's address may be reused by a new `PerThread` (of another module):
            // only a live owner is this one.
            if let Some((_, found)) = instances.iter().find(|(owner, _)| {
                owner.strong_count() > 0 && std::ptr::eq(owner.as_ptr(), Arc::as_ptr(self))
            }) {
                return found.clone();
            }
            instances.retain(|(owner, instance)| match owner.upgrade() {
                Some(owner) if owner.status.state() == ModuleState::Stopped => {
                    instance.stop();
                    false
                }
                Some(_) => true,
                None => false,
            });
            let (instance, _) = Supervised::start(
                self.name.clone(),
                self.factory.clone(),
                self.config.clone(),
                self.policy,
                self.status.clone(),
                Arc::new(|_| {}),
            );
            let instance = instance.without_heartbeat();
            instances.push((Arc::downgrade(self), instance.clone()));
            instance
        })
    }
}
