//! `glia serve` and `glia worker` as real processes, for tests and load runs: started on
//! ports the system picks, their log read as it comes, signalled (SIGTERM, SIGSTOP, ...),
//! and measured (resident memory, open file descriptors) through `/proc`.

use crate::harness::glia_binary;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A glia process, killed if dropped without [`GliaProcess::terminate_with_log`] (a failed
/// assertion). Its log is kept for [`GliaProcess::log`] and [`GliaProcess::listening`], and
/// passed on to the caller's standard error unless only kept.
pub struct GliaProcess {
    child: Option<Child>,
    pid: u32,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl GliaProcess {
    /// Starts `glia <args>` with extra environment variables; its log goes on to standard
    /// error when `pass_log_on`.
    pub fn spawn(args: &[&str], env: &[(&str, &str)], pass_log_on: bool) -> GliaProcess {
        Self::spawn_binary(&glia_binary(), args, env, pass_log_on)
    }

    /// [`GliaProcess::spawn`] with another `glia` binary (a load run comparing builds).
    pub fn spawn_binary(
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        pass_log_on: bool,
    ) -> GliaProcess {
        let mut command = Command::new(binary);
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
        GliaProcess {
            pid: child.id(),
            child: Some(child),
            log,
            reader: Some(reader),
        }
    }

    /// `glia serve --config FILE --listen 127.0.0.1:0 <extra>`, once it listens; returns it
    /// and its `host:port`.
    pub async fn serve(
        config: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        pass_log_on: bool,
    ) -> (GliaProcess, String) {
        Self::serve_binary(&glia_binary(), config, extra, env, pass_log_on).await
    }

    /// [`GliaProcess::serve`] with another `glia` binary.
    pub async fn serve_binary(
        binary: &Path,
        config: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        pass_log_on: bool,
    ) -> (GliaProcess, String) {
        let config = config.to_str().expect("a UTF-8 path");
        let mut args = vec!["serve", "--config", config, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut process = GliaProcess::spawn_binary(binary, &args, env, pass_log_on);
        let listen = process.listening("glia serving on").await;
        (process, listen)
    }

    /// `glia worker --config FILE`.
    pub fn worker(config: &Path, env: &[(&str, &str)], pass_log_on: bool) -> GliaProcess {
        let config = config.to_str().expect("a UTF-8 path");
        GliaProcess::spawn(&["worker", "--config", config], env, pass_log_on)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Waits (without a deadline of its own) until its log contains `needle`; panics with
    /// the log if it exits first.
    pub async fn logged(&mut self, needle: &str) {
        while !self.log.lock().unwrap().contains(needle) {
            assert!(
                !self.exited(),
                "glia exited before logging {needle:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where it listens, once its log says `"<announcement> http://ADDR"` (glia is started
    /// with port 0, so the system picks a free port and nothing can take it in between).
    pub async fn listening(&mut self, announcement: &str) -> String {
        let marker = format!("{announcement} http://");
        for _ in 0..1200 {
            {
                let log = self.log.lock().unwrap();
                if let Some(at) = log.find(&marker) {
                    let rest = &log[at + marker.len()..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || ".:[]".contains(c)))
                        .unwrap_or(rest.len());
                    return rest[..end].to_owned();
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "glia exited ({exited:?}) before it listened:\n{}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("glia never said {marker:?}");
    }

    /// Sends it a signal by name (`TERM`, `STOP`, `CONT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {} failed", self.pid);
    }

    /// Kills it at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for it to exit: glia drains and flushes on the way out. Returns
    /// what it wrote on standard output, its log, and how long it took to exit; panics if
    /// it exits unsuccessfully.
    pub fn terminate_with_log(mut self) -> (String, String, Duration) {
        let child = self.child.take().expect("running");
        let asked = Instant::now();
        self.signal("TERM");
        let output = child.wait_with_output().expect("glia exits");
        let took = asked.elapsed();
        assert!(
            output.status.success(),
            "glia exited with {}",
            output.status
        );
        // The log ends with the process; the reader has it all once it is done.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        (
            String::from_utf8(output.stdout).expect("UTF-8 output"),
            log,
            took,
        )
    }

    /// Its resident memory in KiB (`VmRSS`), if it still runs.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }

    /// How many file descriptors it has open, if it still runs.
    pub fn fds(&self) -> Option<usize> {
        open_fds(self.pid)
    }
}

/// The resident memory of process `pid` in KiB (`VmRSS`), if it runs.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// How many file descriptors process `pid` has open, if it runs.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

impl Drop for GliaProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
