//! Routes each module's invocations to the bus it is placed on.

use super::{Bus, InProcessBus, InvocationMeta, InvokeFuture, NatsBus, Route, Target};
use crate::config::Placement;
use glia_bus_schema::CallbackRequest;
use std::sync::Arc;

/// In-process modules through the in-process bus, `placement: nats` ones through NATS.
pub struct RoutedBus {
    local: Arc<InProcessBus>,
    nats: Option<Arc<NatsBus>>,
    placements: Vec<Placement>,
}

impl RoutedBus {
    /// Routes by `placements` (config order); `nats` is required if any module is remote.
    pub fn new(
        local: Arc<InProcessBus>,
        nats: Option<Arc<NatsBus>>,
        placements: Vec<Placement>,
    ) -> Self {
        RoutedBus {
            local,
            nats,
            placements,
        }
    }
}

impl Bus for RoutedBus {
    fn invoke(
        &self,
        target: Target,
        request: Arc<CallbackRequest>,
        meta: &InvocationMeta,
    ) -> InvokeFuture {
        match (self.placements.get(target.module), &self.nats) {
            (Some(Placement::Nats), Some(nats)) => nats.invoke(target, request, meta),
            _ => self.local.invoke(target, request, meta),
        }
    }

    fn route(&self, target: Target) -> Route {
        match (self.placements.get(target.module), &self.nats) {
            (Some(Placement::Nats), Some(_)) => Route::Nats,
            _ => Route::InProcess,
        }
    }
}
