//! The embedded bus: actor addresses in this process, no broker.

use super::{Bus, InvocationMeta, InvokeFuture, Target};
use crate::config::{Instances, ModuleConfig};
use crate::host::{Invoke, ModuleActor, ModuleInstance, PerThread};
use actix::Addr;
use arc_swap::ArcSwap;
use futures::channel::oneshot;
use futures::FutureExt;
use glia_bus_schema::{CallbackRequest, InvocationError};
use std::sync::Arc;
use tokio::sync::Semaphore;

struct Route {
    addr: Addr<ModuleActor>,
    permits: Arc<Semaphore>,
    /// For `instances: per_thread`: runs the invocation on the caller's thread.
    per_thread: Option<Arc<PerThread>>,
}

impl Route {
    fn new(
        addr: Addr<ModuleActor>,
        max_in_flight: usize,
        per_thread: Option<Arc<PerThread>>,
    ) -> Arc<Route> {
        Arc::new(Route {
            addr,
            permits: Arc::new(Semaphore::new(max_in_flight)),
            per_thread,
        })
    }
}

/// Delivers invocations to module actors in this process.
pub struct InProcessBus {
    routes: Vec<Option<ArcSwap<Route>>>,
}

/// One module's actor and in-flight permits, carried from one bus to the next on a reload
/// so that a kept module's bound holds across both.
#[derive(Clone)]
pub struct ModuleRoute(Arc<Route>);

impl ModuleRoute {
    /// A route to `addr` with `max_in_flight` permits, running invocations on the caller's
    /// thread through `per_thread` when the module has `instances: per_thread`.
    pub fn new(
        addr: Addr<ModuleActor>,
        max_in_flight: usize,
        per_thread: Option<Arc<PerThread>>,
    ) -> ModuleRoute {
        ModuleRoute(Route::new(addr, max_in_flight, per_thread))
    }

    /// The route to `module`'s started `instance`: its actor, its `max_in_flight`, and an
    /// instance on each calling thread when its config says `instances: per_thread`.
    pub fn to_instance(module: &ModuleConfig, instance: &ModuleInstance) -> ModuleRoute {
        let per_thread = (module.instances == Instances::PerThread)
            .then(|| PerThread::new(module, instance.status.clone()));
        ModuleRoute::new(instance.addr.clone(), module.max_in_flight, per_thread)
    }
}

impl InProcessBus {
    /// A bus to these actors, in config order, each with its in-flight bound (`None` for a
    /// module that does not run in this process).
    pub fn new(modules: impl IntoIterator<Item = Option<(Addr<ModuleActor>, usize)>>) -> Self {
        InProcessBus::from_routes(
            modules.into_iter().map(|m| {
                m.map(|(addr, max_in_flight)| ModuleRoute::new(addr, max_in_flight, None))
            }),
        )
    }

    /// A bus over these routes, in config order (`None` for a module not in this process).
    pub fn from_routes(routes: impl IntoIterator<Item = Option<ModuleRoute>>) -> Self {
        InProcessBus {
            routes: routes
                .into_iter()
                .map(|r| r.map(|r| ArcSwap::new(r.0)))
                .collect(),
        }
    }

    /// The route of the module at `index`, to carry into another bus.
    pub fn route(&self, index: usize) -> Option<ModuleRoute> {
        Some(ModuleRoute(self.routes.get(index)?.as_ref()?.load_full()))
    }

    /// Sends the module at `index` to a new actor, with fresh permits: the old actor's
    /// thread is blocked, and so are the permits its queued invocations hold.
    pub fn replace(&self, index: usize, addr: Addr<ModuleActor>, max_in_flight: usize) {
        if let Some(Some(route)) = self.routes.get(index) {
            let per_thread = route.load().per_thread.clone();
            route.store(Route::new(addr, max_in_flight, per_thread));
        }
    }

    /// The actor of the module at `index`.
    pub fn addr(&self, index: usize) -> Option<Addr<ModuleActor>> {
        self.routes
            .get(index)?
            .as_ref()
            .map(|r| r.load().addr.clone())
    }

    /// Every module's actor, in config order.
    pub fn addrs(&self) -> Vec<Addr<ModuleActor>> {
        self.routes
            .iter()
            .flatten()
            .map(|r| r.load().addr.clone())
            .collect()
    }
}

impl Bus for InProcessBus {
    fn invoke(
        &self,
        target: Target,
        request: Arc<CallbackRequest>,
        meta: &InvocationMeta,
    ) -> InvokeFuture {
        let Some(route) = self
            .routes
            .get(target.module)
            .and_then(Option::as_ref)
            .map(ArcSwap::load)
        else {
            return futures::future::ready(Err(InvocationError::Unavailable {
                reason: format!("no module at index {}", target.module),
            }))
            .boxed();
        };
        let trace = meta.trace.clone();
        // Run here when the module has an instance per thread and a permit is at hand (the
        // common case, kept free of the actor's address and its clone).
        if let Some(per_thread) = route.per_thread.as_ref().filter(|p| p.available()) {
            if let Ok(permit) = route.permits.clone().try_acquire_owned() {
                return per_thread.invoke(target.slot, request, permit, trace);
            }
        }
        let addr = route.addr.clone();
        let per_thread = route.per_thread.clone();
        let send = move |permit| -> InvokeFuture {
            if let Some(per_thread) = per_thread.filter(|p| p.available()) {
                return per_thread.invoke(target.slot, request, permit, trace);
            }
            let (reply, answer) = oneshot::channel();
            // The permit bounds what is queued or running, so the mailbox cannot grow
            // without bound even though `do_send` ignores its capacity.
            addr.do_send(Invoke {
                slot: target.slot,
                request,
                permit: Some(permit),
                trace,
                reply,
            });
            async move {
                answer.await.unwrap_or_else(|_| {
                    Err(InvocationError::Unavailable {
                        reason: "the module stopped before answering".into(),
                    })
                })
            }
            .boxed()
        };
        // With a permit at hand the invocation is sent now, not when the caller first polls:
        // a module is asked even if the decision is reached without it.
        match route.permits.clone().try_acquire_owned() {
            Ok(permit) => send(permit),
            Err(_) => {
                let permits = route.permits.clone();
                async move {
                    let permit = permits.acquire_owned().await.map_err(|_| {
                        InvocationError::Unavailable {
                            reason: "module is shutting down".into(),
                        }
                    })?;
                    send(permit).await
                }
                .boxed()
            }
        }
    }
}
