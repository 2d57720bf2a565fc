//! Unmodified Synapse modules in Python, each in a host process glia supervises.
//!
//! A `modules:` entry whose `module:` is a dotted path (`ldap_auth_provider.LdapAuthProviderModule`)
//! is a Python module. To the rest of glia it is a module like any other: its factory's `build`
//! starts a host process (`python -m glia_python_host child`), which loads the module as Synapse
//! does and says what it registered; `build` registers a handler per callback, auth checker and
//! web resource that sends the invocation down the pipe and waits for the reply. So the module
//! actor's supervisor supervises the host: a host that dies fails its invocations at once as
//! crashes (the failure policy answers, and the module is rebuilt, which starts a new host,
//! with the module's restart policy), one that hangs is caught by the timeouts and the
//! watchdog, and dropping the instance kills the process. A rebuild does not wait for its new
//! host: it registers what the first host registered and the host loads in the background,
//! invocations failing at once as `Unavailable` until it is ready (`loading`).
//!
//! `check` runs the modules' `parse_config` in a host when a config is checked, so a config
//! error names the file, line, module and key.

pub mod check;
mod host_env;
mod loading;
mod pool;
mod post_login;
mod process;
mod spawner;

pub use crate::config::PythonModuleConfig;
use futures::FutureExt;
use glia_bus_schema::host::{HostInvoke, HostReady, HostStart, HostWebRequest, ToHost};
use glia_bus_schema::{CallbackRequest, Invocation, InvocationError, InvocationResult};
use glia_module_api::{
    ConfigError, ErasedHandler, ModuleApi, ModuleError, ModuleFactory, ParsedConfig, WebHandler,
    WebRequest, WebResponse,
};
pub use host_env::{export_traces_with, HostVar};
use loading::Hosts;
pub use pool::{recycles, Recycle};
use pool::{HostPool, Recipe};
use post_login::Route;
use process::HostProcess;
use serde_json::Value;
use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `module:` name glia reports for Python modules' factory (their real type is the
/// dotted path of their class).
pub const PYTHON_FACTORY: &str = "python";

/// The factory of one Python module entry (each entry has its own: the settings differ).
pub struct PythonFactory {
    entry: PythonModuleConfig,
    /// What the module's first host registered. A rebuild (after a crash) registers the same
    /// at once and loads its host in the background, so that calls fail at once through the
    /// failure policy while it loads rather than wait on the module's blocked thread.
    registered: Mutex<Option<HostReady>>,
}

impl PythonFactory {
    /// The factory for `entry`, ready for a `ModuleConfig`.
    pub fn shared(entry: PythonModuleConfig) -> Arc<dyn ModuleFactory> {
        Arc::new(PythonFactory {
            entry,
            registered: Mutex::new(None),
        })
    }
}

impl ModuleFactory for PythonFactory {
    fn name(&self) -> &'static str {
        PYTHON_FACTORY
    }

    fn parse_config(&self, config: &Value) -> Result<ParsedConfig, ConfigError> {
        // The module's own parse_config runs in a host (`check`); here the block is kept as
        // is, to be handed to the host that runs the module.
        let mut entry = self.entry.clone();
        entry.config = config.clone();
        Ok(ParsedConfig::new(entry))
    }

    fn build(
        &self,
        config: &ParsedConfig,
        api: &mut ModuleApi,
    ) -> Result<Box<dyn Any>, ModuleError> {
        let entry = config.get::<PythonModuleConfig>().ok_or_else(|| {
            ModuleError::fatal("a Python module was given another module's config")
        })?;
        let registered = self
            .registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let instance = match registered {
            Some(ready) => rebuild(entry, ready, api)?,
            None => {
                let (instance, ready) = build(entry, api)?;
                *self.registered.lock().unwrap_or_else(|e| e.into_inner()) = Some(ready);
                instance
            }
        };
        Ok(Box::new(instance) as Box<dyn Any>)
    }
}

/// A running Python module: its host processes, killed when the instance is dropped (a
/// crash, a restart, shutdown).
pub struct PythonInstance {
    hosts: Arc<Hosts>,
}

impl Drop for PythonInstance {
    fn drop(&mut self) {
        self.hosts.stop("its module instance was dropped");
    }
}

/// How to start one host of `entry`'s module, and how long a replaced host may drain.
fn recipe(entry: &PythonModuleConfig) -> (Recipe, Duration) {
    let recipe = Recipe {
        name: entry.name.clone(),
        interpreter: entry.python.interpreter.clone(),
        start: ToHost::Start(HostStart {
            name: entry.name.clone(),
            module: entry.class.clone(),
            config: entry.config.clone(),
            homeserver: entry.python.homeserver.clone(),
        }),
        startup_timeout: entry.python.startup_timeout,
    };
    // A host being replaced drains: its invocations end by their timeout at the latest.
    (recipe, entry.timeout * 2 + Duration::from_secs(1))
}

/// The first build: loads the module in its hosts (the caller waits), then registers what it
/// registered.
fn build(
    entry: &PythonModuleConfig,
    api: &mut ModuleApi,
) -> Result<(PythonInstance, HostReady), ModuleError> {
    let (recipe, drain_bound) = recipe(entry);
    let (pool, ready) = HostPool::start(recipe, entry.python.limits, drain_bound)
        .map_err(|e| ModuleError::failed(format!("cannot load {}: {e}", entry.class)))?;
    tracing::info!(module = %entry.name, class = %entry.class, processes = entry.python.limits.process_count(), callbacks = ?ready.description.callbacks, "Python module ready");
    let hosts = Hosts::ready(pool);
    register(entry, &ready, &hosts, api)?;
    Ok((PythonInstance { hosts }, ready))
}

/// A rebuild after a crash: registers what the first host registered, and loads the new host
/// in the background (see `loading`).
fn rebuild(
    entry: &PythonModuleConfig,
    ready: HostReady,
    api: &mut ModuleApi,
) -> Result<PythonInstance, ModuleError> {
    let (recipe, drain_bound) = recipe(entry);
    let hosts = Hosts::load_in_background(recipe, entry.python.limits, drain_bound, ready.clone())
        .map_err(ModuleError::failed)?;
    register(entry, &ready, &hosts, api)?;
    Ok(PythonInstance { hosts })
}

/// Registers a handler per callback, auth checker and web resource the module registered.
fn register(
    entry: &PythonModuleConfig,
    ready: &HostReady,
    hosts: &Arc<Hosts>,
    api: &mut ModuleApi,
) -> Result<(), ModuleError> {
    let invoke = invoker(hosts.clone(), entry.name.clone(), entry.timeout);
    for callback in &ready.description.callbacks {
        api.register_erased(*callback, invoke.clone())?;
    }
    for checker in &ready.description.auth_checkers {
        api.register_erased_auth_checker(
            &checker.login_type,
            checker.fields.clone(),
            invoke.clone(),
        );
    }
    for path in &ready.description.web_resources {
        let handler = web_handler(hosts.clone());
        if ready.subtrees.contains(path) {
            api.register_web_resource_tree(path, handler);
        } else {
            api.register_web_resource(path, handler);
        }
    }
    Ok(())
}

/// The handler of every callback: the invocation goes down the pipe; the host's reply is the
/// answer. A host that is gone is a crash, so the supervisor starts a new one.
fn invoker(hosts: Arc<Hosts>, module: String, timeout: Duration) -> ErasedHandler {
    ErasedHandler::new(move |request: &CallbackRequest| {
        let hosts = hosts.clone();
        let callback = request.callback();
        let route = post_login::route(request.clone(), &module);
        // The invocation's span (the coordinator's or the worker's) is current while the
        // supervisor calls this handler; the host's span for the callback becomes its child.
        let trace = crate::propagation::inject(&opentelemetry::Context::current());
        async move {
            let (request, pinned) = match route {
                Route::AnyHost(request) => (request, None),
                Route::NotOurs => return Ok(post_login::nothing()),
                Route::Host(pid, request) => (request, Some(pid)),
            };
            let deadline_ms = deadline_ms(timeout);
            let send = |host: Arc<HostProcess>| {
                let id = host.next_id();
                let frame = ToHost::Invoke(HostInvoke {
                    id,
                    invocation: Invocation {
                        request_id: format!("py-{id}"),
                        deadline_ms,
                        request: request.clone(),
                    },
                    traceparent: trace.traceparent.clone(),
                    tracestate: trace.tracestate.clone(),
                });
                async move {
                    // The caller may stop waiting (its timeout): forget the frame then.
                    let forget = Forget { host: &host, id };
                    let mut reply = host.invoke(id, frame).await;
                    std::mem::forget(forget);
                    if let Ok(reply) = &mut reply {
                        post_login::name_host(reply, host.pid());
                    }
                    reply
                }
            };
            let pool = hosts.pool()?;
            let called = match pinned {
                None => pool.call(send).await,
                Some(pid) => pool.call_on(pid, send).await,
            };
            match called {
                // A post-login callback lost with its host: nothing to restart for.
                Err(reason) if pinned.is_some() => Err(InvocationError::Unavailable { reason }),
                Err(reason) => Err(InvocationError::Crashed { reason }),
                Ok(reply) => match reply.result {
                    InvocationResult::Answer(answer) if answer.callback() == callback => Ok(answer),
                    InvocationResult::Answer(answer) => Err(InvocationError::InvalidAnswer {
                        detail: format!("the host answered {} to {callback}", answer.callback()),
                    }),
                    InvocationResult::Error(error) => Err(error),
                },
            }
        }
        .boxed_local()
    })
}

/// Forgets a frame whose invocation was dropped before its reply came.
struct Forget<'a> {
    host: &'a HostProcess,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.host.forget(self.id);
    }
}

fn deadline_ms(timeout: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (now + timeout).as_millis() as u64
}

/// A web resource's handler: the request goes down the pipe, the module's response comes back
/// (502 when the host is gone).
fn web_handler(hosts: Arc<Hosts>) -> WebHandler {
    WebHandler::new(move |request: WebRequest| {
        let hosts = hosts.clone();
        async move {
            let send = |host: Arc<HostProcess>| {
                let id = host.next_id();
                let frame = ToHost::Web(HostWebRequest {
                    id,
                    request: request.clone().into(),
                });
                async move {
                    let forget = Forget { host: &host, id };
                    let response = host.web(id, frame).await;
                    std::mem::forget(forget);
                    response
                }
            };
            let called = match hosts.pool() {
                Ok(pool) => pool.call(send).await,
                Err(error) => Err(error.to_string()),
            };
            match called {
                Ok(response) => response.response.into(),
                Err(reason) => WebResponse::json(
                    502,
                    &serde_json::json!({"errcode": "M_UNKNOWN", "error": format!("the module's host is unavailable: {reason}")}),
                ),
            }
        }
    })
}
