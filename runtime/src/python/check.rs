//! Checking Python modules' configs as Synapse would at start-up: the host imports each
//! module's class and runs its `parse_config` (`python -m glia_python_host check`), and says
//! which key of which module is wrong.

use super::PYTHON_FACTORY;
use crate::config::{Fault, GliaConfig, ModuleConfig, PythonModuleConfig};
use glia_bus_schema::host::{HostCheck, HostCheckModule, HostCheckResult};
use glia_module_api::ConfigPath;
use serde_json::Value;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the check may take: importing Synapse and every module's class.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the check could not run at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// Runs the modules' `parse_config` in a host started with `interpreter`; returns each
/// module's first error.
pub fn run(
    interpreter: &str,
    modules: Vec<HostCheckModule>,
) -> Result<HostCheckResult, CheckFailed> {
    let hint = "set python.interpreter to a Python with glia-python-host installed (pip install deploy/synapse-bridge deploy/python-host)";
    let mut command = Command::new(interpreter);
    command
        .args(["-m", "glia_python_host", "check"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Started as the hosts are, so it dies with glia: a shutdown abandons a check that has
    // not ended (a module's `parse_config` blocking), and the check must not outlive it.
    let mut child = super::spawner::spawn(command)
        .map_err(|e| CheckFailed(format!("cannot run {interpreter:?}: {e}; {hint}")))?;
    let request = serde_json::to_vec(&HostCheck { modules }).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        // Written from a thread of its own, so a host writing much before it reads cannot
        // block glia; a failed write shows as the host's exit.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&request);
        });
    }
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        if let Some(stdout) = stdout.as_mut() {
            let _ = stdout.read_to_end(&mut out);
        }
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_end(&mut err);
        }
        let _ = done.send((out, err));
    });
    let Ok((out, err)) = finished.recv_timeout(CHECK_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(CheckFailed(format!(
            "the Python host did not check the modules within {} s",
            CHECK_TIMEOUT.as_secs()
        )));
    };
    let status = child.wait().map_err(|e| CheckFailed(e.to_string()))?;
    match serde_json::from_slice::<HostCheckResult>(&out) {
        Ok(result) if status.success() => Ok(result),
        _ => {
            let stderr = String::from_utf8_lossy(&err);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(CheckFailed(format!(
                "the Python host at {interpreter:?} could not check the modules ({status}): {last}; {hint}"
            )))
        }
    }
}

/// Runs the `parse_config` of the Python modules of `config` that `selected` picks, in one
/// host; the first refusal is a fault at the key it names, inside the module's entry.
pub fn modules(config: &GliaConfig, selected: impl Fn(&ModuleConfig) -> bool) -> Result<(), Fault> {
    let python: Vec<&ModuleConfig> = config
        .modules
        .iter()
        .filter(|m| m.factory.name() == PYTHON_FACTORY && selected(m))
        .collect();
    let Some(interpreter) = python
        .iter()
        .find_map(|m| m.config.get::<PythonModuleConfig>())
        .map(|entry| entry.python.interpreter.clone())
    else {
        return Ok(());
    };
    let request = python
        .iter()
        .map(|m| HostCheckModule {
            index: m.index,
            module: m.module.clone(),
            config: m.raw_config.clone(),
        })
        .collect();
    let result = run(&interpreter, request).map_err(|e| {
        Fault::new(
            ConfigPath::root().key("python").key("interpreter"),
            e.to_string(),
        )
    })?;
    match result.errors.into_iter().next() {
        None => Ok(()),
        Some(error) => Err(refusal(&config.modules, error)),
    }
}

/// A module's refusal as a fault at the key its path names.
fn refusal(modules: &[ModuleConfig], error: glia_bus_schema::host::HostCheckError) -> Fault {
    let index = error.index.unwrap_or_default();
    let module = modules.iter().find(|m| m.index == index);
    let entry = module.map(|m| serde_json::json!({"config": m.raw_config}));
    let mut at = ConfigPath::root().key("modules").index(index);
    let mut value = entry.as_ref();
    for segment in &error.error.path {
        // The host's path is text; a list's index is digits.
        value = match (value, segment.parse::<usize>()) {
            (Some(Value::Array(items)), Ok(i)) => {
                at = at.index(i);
                items.get(i)
            }
            (value, _) => {
                at = at.key(segment.as_str());
                value.and_then(|v| v.get(segment.as_str()))
            }
        };
    }
    let class = module.map_or("?", |m| m.module.as_str());
    let message = if error.error.path.first().map(String::as_str) == Some("config") {
        format!("bad config for module {class:?}: {}", error.error.message)
    } else {
        error.error.message // the class cannot be loaded: the message says so
    };
    Fault {
        at,
        module: module.map(|m| (m.index, m.name.clone())),
        message,
    }
}
