//! A module that answers what its config says: a fixed answer per callback, after an
//! optional delay or gate, or a panic, an error, a fatal error, a hang.
//!
//! ```yaml
//! - module: scripted
//!   name: m1
//!   config:
//!     probe: t1-m1             # counts invocations, keeps the last arguments
//!     answers:
//!       user_may_invite: {answer: NOT_SPAM}
//!       check_event_for_spam: {answer: {errcode: M_FORBIDDEN}, gate: t1-g1}
//!       is_user_expired: {fail: {message: boom}}
//!       on_create_room: {append_to: chain}   # appends the module name to request_content.chain
//!     auth_checkers:
//!       m.login.test: {fields: [password], answer: {user_id: "@a:hs"}}
//! ```

use crate::probes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use glia_bus_schema::{Callback, CallbackRequest, InvocationError, ModuleAnswer, SynapseError};
use glia_module_api::{from_config, ConfigError, ErasedHandler, Module, ModuleApi, ModuleError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// What the module does for one callback.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The raw answer (decoded as the callback's answer type); an explicit `null` is an answer.
    #[serde(default, deserialize_with = "present")]
    pub answer: Option<Value>,
    /// Wait this long first.
    #[serde(default)]
    pub delay_ms: u64,
    /// Wait for this gate first.
    #[serde(default)]
    pub gate: Option<String>,
    /// Panic with this message.
    #[serde(default)]
    pub panic: Option<String>,
    /// Fail (raise) with this error.
    #[serde(default)]
    pub fail: Option<FailScript>,
    /// Report a fatal error.
    #[serde(default)]
    pub fatal: Option<String>,
    /// Never answer.
    #[serde(default)]
    pub hang: bool,
    /// on_create_room: append the module's name to `request_content[append_to]`.
    #[serde(default)]
    pub append_to: Option<String>,
}

/// `Some` for any value that is present, `null` included.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// An error to raise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailScript {
    /// The message.
    pub message: String,
    /// Raise it as a `SynapseError` meant for the client.
    #[serde(default)]
    pub synapse_error: Option<RaisedError>,
}

/// A `SynapseError` as a module might build it, its status unchecked (so a test can raise
/// one Synapse could not send).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaisedError {
    /// Any status, 200 included.
    #[serde(default = "forbidden")]
    pub status: u16,
    /// The errcode.
    #[serde(default = "unknown")]
    pub errcode: String,
    /// The message.
    pub error: String,
    /// Extra fields.
    #[serde(default)]
    pub fields: glia_bus_schema::JsonObject,
}

fn forbidden() -> u16 {
    403
}

fn unknown() -> String {
    "M_UNKNOWN".into()
}

impl From<&RaisedError> for SynapseError {
    fn from(e: &RaisedError) -> Self {
        SynapseError::new(e.status, e.errcode.clone(), e.error.clone())
            .with_fields(e.fields.clone())
    }
}

/// An auth checker's script.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthScript {
    /// Fields the login dict must carry.
    pub fields: Vec<String>,
    /// What to do.
    #[serde(flatten)]
    pub script: Script,
}

/// The scripted module's config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedConfig {
    /// Probe name; defaults to none.
    #[serde(default)]
    pub probe: Option<String>,
    /// Scripts by callback name.
    #[serde(default)]
    pub answers: BTreeMap<String, Script>,
    /// Auth checkers by login type.
    #[serde(default)]
    pub auth_checkers: BTreeMap<String, AuthScript>,
}

/// The scripted module.
pub struct Scripted;

struct Checked {
    callback: Callback,
    script: Script,
    answer: Option<ModuleAnswer>,
}

fn check(name: &str, callback: Callback, script: Script, at: &str) -> Result<Checked, ConfigError> {
    let answer = match &script.answer {
        Some(raw) => Some(ModuleAnswer::from_json(callback, raw.clone()).map_err(|e| {
            ConfigError::at(
                &format!("{at}.answer"),
                format!("not an answer to {name}: {e}"),
            )
        })?),
        None => None,
    };
    Ok(Checked {
        callback,
        script,
        answer,
    })
}

impl Module for Scripted {
    const NAME: &'static str = "scripted";
    type Config = ScriptedConfig;

    fn parse_config(config: &Value) -> Result<ScriptedConfig, ConfigError> {
        let parsed: ScriptedConfig = from_config(config)?;
        for (name, script) in &parsed.answers {
            let callback: Callback = name
                .parse()
                .map_err(|_| ConfigError::at(&format!("answers.{name}"), "unknown callback"))?;
            check(name, callback, script.clone(), &format!("answers.{name}"))?;
        }
        Ok(parsed)
    }

    fn new(config: ScriptedConfig, api: &mut ModuleApi) -> Result<Self, ModuleError> {
        let module_name: Rc<str> = api.module_name().into();
        let probe: Option<Rc<str>> = config.probe.as_deref().map(Into::into);
        for (name, script) in config.answers {
            let callback: Callback = name
                .parse()
                .map_err(|_| ModuleError::failed("unknown callback"))?;
            let checked = check(&name, callback, script, &name)
                .map_err(|e| ModuleError::failed(e.to_string()))?;
            let handler = make_handler(Rc::new(checked), module_name.clone(), probe.clone());
            api.register_erased(callback, handler)
                .map_err(|e| ModuleError::failed(e.to_string()))?;
        }
        for (login_type, auth) in config.auth_checkers {
            let checked = check("check_auth", Callback::CheckAuth, auth.script, &login_type)
                .map_err(|e| ModuleError::failed(e.to_string()))?;
            let handler = make_handler(Rc::new(checked), module_name.clone(), probe.clone());
            api.register_erased_auth_checker(login_type, auth.fields, handler);
        }
        Ok(Scripted)
    }
}

fn make_handler(
    checked: Rc<Checked>,
    module_name: Rc<str>,
    probe: Option<Rc<str>>,
) -> ErasedHandler {
    ErasedHandler::new(move |request: &CallbackRequest| -> LocalBoxFuture<'static, Result<ModuleAnswer, InvocationError>> {
        if let Some(p) = &probe {
            probes::record_start(p, request.args_json());
        }
        let script = &checked.script;
        if let Some(message) = &script.panic {
            if script.delay_ms == 0 && script.gate.is_none() {
                panic!("{message}");
            }
        }
        // on_create_room edits: computed now, from the request as this module saw it.
        let edited = match (&script.append_to, request) {
            (Some(key), CallbackRequest::OnCreateRoom(args)) => {
                let mut content = args.request_content.clone();
                let list = content.entry(key.clone()).or_insert_with(|| json!([]));
                if let Some(items) = list.as_array_mut() {
                    items.push(json!(&*module_name));
                }
                Some(ModuleAnswer::OnCreateRoom(glia_bus_schema::OnCreateRoomAnswer::Continue(glia_bus_schema::RoomContent {
                    request_content: Some(content),
                })))
            }
            _ => None,
        };
        let checked = checked.clone();
        let probe = probe.clone();
        async move {
            let script = &checked.script;
            if let Some(gate) = &script.gate {
                probes::wait_gate(gate).await;
            }
            if script.delay_ms > 0 {
                actix_rt::time::sleep(Duration::from_millis(script.delay_ms)).await;
            }
            if script.hang {
                futures::future::pending::<()>().await;
            }
            if let Some(message) = &script.panic {
                panic!("{message}");
            }
            let result = if let Some(reason) = &script.fatal {
                Err(ModuleError::fatal(reason.clone()).into())
            } else if let Some(fail) = &script.fail {
                Err(InvocationError::Failed {
                    message: fail.message.clone(),
                    synapse_error: fail.synapse_error.as_ref().map(SynapseError::from),
                })
            } else if let Some(answer) = edited.or_else(|| checked.answer.clone()) {
                Ok(answer)
            } else {
                Err(InvocationError::InvalidAnswer {
                    detail: format!("the script for {} has no answer", checked.callback),
                })
            };
            if let Some(p) = &probe {
                probes::record_answer(p);
            }
            result
        }
        .boxed_local()
    })
}
