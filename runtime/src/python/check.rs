//! Checking Python modules' configs as Synapse would at start-up: the host imports each
//! module's class and runs its `parse_config` (`python -m glia_python_host check`), and says
//! which key of which module is wrong.

use glia_bus_schema::host::{HostCheck, HostCheckModule, HostCheckResult};
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
    let mut child = Command::new(interpreter)
        .args(["-m", "glia_python_host", "check"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
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
