//! Starting a supervised module on its own arbiter.

use super::actor::{ModuleActor, Stop};
use super::registration::RegistrationSummary;
use super::status::ModuleStatus;
use super::supervised::{OnRegistered, Supervised};
use crate::config::ModuleConfig;
use actix::{Actor, Addr};
use actix_rt::Arbiter;
use std::sync::Arc;

/// A running module (its instance may be restarting or failed; the actor stays).
pub struct ModuleInstance {
    /// The actor.
    pub addr: Addr<ModuleActor>,
    /// What it registered, if it has ever been built.
    pub summary: Option<RegistrationSummary>,
    /// Its status.
    pub status: Arc<ModuleStatus>,
    /// Its thread.
    pub arbiter: Arbiter,
}

impl ModuleInstance {
    /// Stops the module and then its thread. A module whose thread is blocked (it never
    /// yields) cannot take the message; after a second the thread is told to stop anyway.
    pub async fn stop(self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.addr.send(Stop)).await;
        self.arbiter.stop();
    }
}

/// A module that could not be started.
#[derive(Debug, Clone, thiserror::Error)]
#[error("modules[{index}] ({name}): {reason}")]
pub struct SpawnError {
    /// Its position in `modules:`.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// Builds the module on a new arbiter (its own thread) under its supervisor. A constructor
/// failure is an error when the module is `required`; otherwise the module starts failed,
/// and `on_registered` is called when a probe restart first builds it.
pub async fn spawn_module(
    config: &ModuleConfig,
    status: Arc<ModuleStatus>,
    on_registered: OnRegistered,
) -> Result<ModuleInstance, SpawnError> {
    let arbiter = Arbiter::new();
    let (tx, rx) = futures::channel::oneshot::channel();
    let factory = config.factory.clone();
    let parsed = config.config.clone();
    let name: Arc<str> = config.name.as_str().into();
    let mailbox = config.max_in_flight;
    let policy = config.restart;
    let actor_status = status.clone();
    let spawned = arbiter.spawn(async move {
        let (module, result) = Supervised::start(
            name.clone(),
            factory,
            parsed,
            policy,
            actor_status,
            on_registered,
        );
        let addr = ModuleActor {
            module,
            name,
            mailbox,
        }
        .start();
        let _ = tx.send((addr, result));
    });
    let error = |reason: String| SpawnError {
        index: config.index,
        name: config.name.clone(),
        reason,
    };
    if !spawned {
        return Err(error("its thread could not be started".into()));
    }
    let Ok((addr, result)) = rx.await else {
        arbiter.stop();
        return Err(error("its thread stopped while it was being built".into()));
    };
    match result {
        Ok(summary) => Ok(ModuleInstance {
            addr,
            summary: Some(summary),
            status,
            arbiter,
        }),
        Err(reason) if config.required => {
            let _ = addr.send(Stop).await;
            arbiter.stop();
            Err(error(reason))
        }
        Err(reason) => {
            tracing::error!(module = %config.name, %reason, "module failed to start; glia starts without it (required: false) and will probe it");
            Ok(ModuleInstance {
                addr,
                summary: None,
                status,
                arbiter,
            })
        }
    }
}
