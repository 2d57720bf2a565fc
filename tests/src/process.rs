//! `glia` processes for tests: started from the binary `cargo build` made, their log read as
//! it comes (and passed on to the test's output unless only kept), where they listen found in
//! it, stopped with SIGTERM the way a service manager stops them.

use crate::harness::glia_binary;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A glia process, killed if the test ends without [`terminate`] (a failed assertion). Its
/// log is read as it comes: kept for [`terminate_with_log`] and [`Process::listening`], and
/// passed on to the test's output unless only kept.
pub struct Process {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    /// Where it listens, once its log says `"<announcement> http://ADDR"` (glia is started
    /// with port 0, so the system picks a free port and nothing can take it in between).
    pub async fn listening(&mut self, announcement: &str) -> String {
        let rest = self.logged(&format!("{announcement} http://")).await;
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || ".:[]".contains(c)))
            .unwrap_or(rest.len());
        rest[..end].to_owned()
    }

    /// Waits (up to a minute) until its log says `text`; the log after it.
    pub async fn logged(&mut self, text: &str) -> String {
        for _ in 0..1200 {
            {
                let log = self.log.lock().unwrap();
                if let Some(at) = log.find(text) {
                    return log[at + text.len()..].to_owned();
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "glia exited ({exited:?}) before it said {text:?}:\n{}",
                self.log.lock().unwrap()
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("glia never said {text:?}");
    }

    /// Sends SIGTERM, as a service manager stops glia, without waiting for it to exit.
    pub fn sigterm(&self) {
        let child = self.child.as_ref().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `glia <args>` with extra environment variables; its log goes to the test's.
pub fn glia(args: &[&str], env: &[(&str, &str)]) -> Process {
    spawn_glia(args, env, true)
}

/// [`glia`], keeping its log for [`terminate_with_log`] only.
pub fn glia_logged(args: &[&str], env: &[(&str, &str)]) -> Process {
    spawn_glia(args, env, false)
}

fn spawn_glia(args: &[&str], env: &[(&str, &str)], pass_log_on: bool) -> Process {
    let mut command = Command::new(glia_binary());
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("glia starts");
    let stderr = child.stderr.take().expect("piped");
    let log = Arc::new(Mutex::new(String::new()));
    let kept = log.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if pass_log_on {
                eprintln!("{line}");
            }
            let mut kept = kept.lock().unwrap();
            kept.push_str(&line);
            kept.push('\n');
        }
    });
    Process {
        child: Some(child),
        log,
        reader: Some(reader),
    }
}

/// Starts `glia serve` on `config` at a port the system picks, with `extra` arguments and
/// `env` (its log kept only when `logged`); returns it, once listening, and its address.
pub async fn serve_glia(
    config: impl AsRef<Path>,
    extra: &[&str],
    env: &[(&str, &str)],
    logged: bool,
) -> (Process, String) {
    let mut args = vec![
        "serve",
        "--config",
        config.as_ref().to_str().expect("a UTF-8 path"),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut process = if logged {
        glia_logged(&args, env)
    } else {
        glia(&args, env)
    };
    let listen = process.listening("glia serving on").await;
    (process, listen)
}

/// SIGTERM, then wait: glia drains and flushes its spans (and decision records) on the way
/// out. Returns what it wrote on standard output.
pub fn terminate(process: Process) -> String {
    terminate_with_log(process).0
}

/// [`terminate`], returning standard output and the log.
pub fn terminate_with_log(mut process: Process) -> (String, String) {
    process.sigterm();
    let child = process.child.take().expect("running");
    let output = child.wait_with_output().expect("glia exits");
    assert!(
        output.status.success(),
        "glia exited with {}",
        output.status
    );
    // The log ends with the process; the reader has it all once it is done.
    if let Some(reader) = process.reader.take() {
        let _ = reader.join();
    }
    let log = std::mem::take(&mut *process.log.lock().unwrap());
    (String::from_utf8(output.stdout).expect("UTF-8 output"), log)
}
