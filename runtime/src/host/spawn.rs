//! Starting a module instance on its own arbiter.

use super::actor::{panic_message, ModuleActor};
use crate::config::ModuleConfig;
use actix::{Actor, Addr};
use actix_rt::Arbiter;
use glia_bus_schema::Callback;
use glia_module_api::{ModuleApi, ModuleError};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// What a module registered, in a form that can leave its thread.
#[derive(Debug, Clone, Default)]
pub struct RegistrationSummary {
    /// Callback of each `Slot::Callback` index.
    pub callbacks: Vec<Callback>,
    /// Login type and fields of each `Slot::AuthChecker` index.
    pub auth_checkers: Vec<(String, Vec<String>)>,
    /// Path of each web resource index.
    pub web_resources: Vec<String>,
}

/// A running module instance.
pub struct ModuleInstance {
    /// The actor.
    pub addr: Addr<ModuleActor>,
    /// What it registered.
    pub summary: RegistrationSummary,
    /// Its thread; stopped when the instance is dropped.
    pub arbiter: Arbiter,
}

impl Drop for ModuleInstance {
    fn drop(&mut self) {
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

/// Builds the module on a new arbiter (its own thread) and starts its actor there.
pub async fn spawn_module(config: &ModuleConfig) -> Result<ModuleInstance, SpawnError> {
    let arbiter = Arbiter::new();
    let (tx, rx) = futures::channel::oneshot::channel();
    let factory = config.factory.clone();
    let parsed = config.config.clone();
    let name: Arc<str> = config.name.as_str().into();
    let mailbox = config.max_in_flight;
    let spawned = arbiter.spawn(async move {
        let mut api = ModuleApi::new(name.to_string());
        let built = std::panic::catch_unwind(AssertUnwindSafe(|| factory.build(&parsed, &mut api)));
        let result = match built {
            Ok(Ok(instance)) => {
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
                        .map(|(p, _)| p.clone())
                        .collect(),
                };
                let actor = ModuleActor {
                    name,
                    _instance: instance,
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
                        .map(|(_, h)| h)
                        .collect(),
                    mailbox,
                };
                Ok((actor.start(), summary))
            }
            Ok(Err(ModuleError::Failed { message, .. })) => {
                Err(format!("constructor failed: {message}"))
            }
            Ok(Err(ModuleError::Fatal(message))) => Err(format!("constructor failed: {message}")),
            Err(payload) => Err(format!(
                "constructor panicked: {}",
                panic_message(payload.as_ref())
            )),
        };
        let _ = tx.send(result);
    });
    let error = |reason: String| SpawnError {
        index: config.index,
        name: config.name.clone(),
        reason,
    };
    if !spawned {
        return Err(error("its thread could not be started".into()));
    }
    match rx.await {
        Ok(Ok((addr, summary))) => Ok(ModuleInstance {
            addr,
            summary,
            arbiter,
        }),
        Ok(Err(reason)) => {
            arbiter.stop();
            Err(error(reason))
        }
        Err(_) => {
            arbiter.stop();
            Err(error("its thread stopped while it was being built".into()))
        }
    }
}
