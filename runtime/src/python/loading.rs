//! A module's hosts as its handlers see them: loaded, still loading after a restart, or
//! failed to load. A rebuilt module (its host died, hung or was killed) registers at once what
//! its first host registered, and its new host loads in the background; until that host is
//! ready, invocations fail at once as `Unavailable`, so the failure policy answers them as it
//! does for a dead host, instead of leaving them to wait for the load or their timeout.

use super::pool::{HostPool, Recipe};
use crate::config::python::HostLimits;
use glia_bus_schema::host::HostReady;
use glia_bus_schema::InvocationError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a module's hosts are.
enum State {
    /// A new host is loading the module.
    Loading,
    /// The hosts serve.
    Ready(Arc<HostPool>),
    /// The new host could not load the module (the next invocation is a crash, so the
    /// supervisor tries again after its backoff).
    Failed(String),
    /// The module instance is gone: a host that finishes loading is stopped.
    Stopped,
}

/// A module's hosts, or why there are none to serve now.
pub struct Hosts {
    state: Mutex<State>,
}

impl Hosts {
    /// Hosts that are already loaded.
    pub fn ready(pool: Arc<HostPool>) -> Arc<Hosts> {
        Arc::new(Hosts {
            state: Mutex::new(State::Ready(pool)),
        })
    }

    /// Starts loading the module's hosts on a thread of their own; `expected` is what the
    /// first host registered, which the new one must register again.
    pub fn load_in_background(
        recipe: Recipe,
        limits: HostLimits,
        drain_bound: Duration,
        expected: HostReady,
    ) -> Result<Arc<Hosts>, String> {
        let hosts = Arc::new(Hosts {
            state: Mutex::new(State::Loading),
        });
        let loading = hosts.clone();
        let name = recipe.name.clone();
        std::thread::Builder::new()
            .name(format!("glia-py-load-{name}"))
            .spawn(move || {
                let loaded = HostPool::start(recipe, limits, drain_bound);
                loading.loaded(&name, loaded, &expected);
            })
            .map_err(|e| format!("cannot start a thread to load the Python host: {e}"))?;
        Ok(hosts)
    }

    fn loaded(
        &self,
        name: &str,
        loaded: Result<(Arc<HostPool>, HostReady), String>,
        expected: &HostReady,
    ) {
        let next = match loaded {
            Ok((pool, ready)) if &ready != expected => {
                pool.stop("it registered other callbacks than the module's first host");
                State::Failed("the restarted host registered other callbacks, auth checkers or web resources than the first one".into())
            }
            Ok((pool, _)) => State::Ready(pool),
            Err(reason) => State::Failed(format!(
                "the restarted host could not load the module: {reason}"
            )),
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match (&*state, next) {
            (State::Stopped, State::Ready(pool)) => {
                pool.stop("its module instance was dropped while it loaded")
            }
            (State::Stopped, _) => {}
            (_, next) => {
                match &next {
                    State::Failed(reason) => {
                        tracing::error!(module = %name, %reason, "the Python host did not come back")
                    }
                    _ => tracing::info!(module = %name, "Python host ready again"),
                }
                *state = next;
            }
        }
    }

    /// The hosts to send a frame to, or the error the invocation fails with at once.
    pub fn pool(&self) -> Result<Arc<HostPool>, InvocationError> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Ready(pool) => Ok(pool.clone()),
            State::Loading => Err(InvocationError::Unavailable {
                reason: "the module's Python host is restarting (loading the module)".into(),
            }),
            State::Failed(reason) => Err(InvocationError::Crashed {
                reason: reason.clone(),
            }),
            State::Stopped => Err(InvocationError::Unavailable {
                reason: "the module's Python host was stopped".into(),
            }),
        }
    }

    /// Stops the hosts (now, or once they have loaded).
    pub fn stop(&self, why: &str) {
        let old = std::mem::replace(
            &mut *self.state.lock().unwrap_or_else(|e| e.into_inner()),
            State::Stopped,
        );
        if let State::Ready(pool) = old {
            pool.stop(why);
        }
    }
}
