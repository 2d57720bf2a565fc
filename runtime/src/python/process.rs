//! One Python host process (`python -m glia_python_host child`) and the pipe to it: frames out
//! through a writer thread, frames in through a reader thread that hands each reply to the
//! invocation waiting for it. When the process ends (it crashed, was killed, or was stopped),
//! every invocation waiting on it fails at once, and so does every later one.

use glia_bus_schema::host::{FromHost, HostLoadError, HostReady, HostWebResponse, ToHost};
use glia_bus_schema::InvocationReply;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Why a frame was refused by a host that was replaced and had drained: the frame was never
/// sent, so it may go to the host that replaced it.
pub const RETIRED: &str = "the Python host was recycled";

/// What a waiting invocation or web request receives: the host's answer, or why there is none.
type Answer<T> = Result<T, String>;

enum Waiter {
    Invoke(oneshot::Sender<Answer<InvocationReply>>),
    Web(oneshot::Sender<Answer<HostWebResponse>>),
}

impl Waiter {
    fn fail(self, reason: &str) {
        match self {
            Waiter::Invoke(tx) => drop(tx.send(Err(reason.to_owned()))),
            Waiter::Web(tx) => drop(tx.send(Err(reason.to_owned()))),
        }
    }
}

/// The frames in flight, and why the process is gone once it is.
struct Pipe {
    /// Frames someone waits for.
    waiting: HashMap<u64, Waiter>,
    /// Frames sent and not answered, waited for or not (a caller that timed out forgets its
    /// frame, but the host is still busy with it).
    sent: HashSet<u64>,
    /// When the host last answered a frame, or was given one while idle.
    progress: Instant,
    gone: Option<String>,
}

impl Default for Pipe {
    fn default() -> Self {
        Pipe {
            waiting: HashMap::new(),
            sent: HashSet::new(),
            progress: Instant::now(),
            gone: None,
        }
    }
}

impl Pipe {
    /// The waiter of the answered frame `id`, which is no longer in flight.
    fn answered(&mut self, id: u64) -> Option<Waiter> {
        if self.sent.remove(&id) {
            self.progress = Instant::now();
        }
        self.waiting.remove(&id)
    }
}

/// How busy a host is: the frames it has in flight, and for how long it has answered none of
/// them (a host blocked in a call has few frames in flight, but makes no progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Frames sent and not answered.
    pub in_flight: usize,
    /// Time since the host last answered a frame or was given one while idle.
    pub stalled: Duration,
}

impl Load {
    /// The time a new frame may expect to wait, up to a factor: nothing for an idle host,
    /// else its frames (the new one counted) times how long it has made no progress.
    pub fn expected_wait(&self) -> u128 {
        match self.in_flight {
            0 => 0,
            n => (n as u128 + 1) * self.stalled.as_micros().max(1),
        }
    }
}

/// How a host's start-up ended.
pub enum Started {
    /// The module is loaded.
    Ready(HostReady),
    /// The host could not load it.
    Failed(HostLoadError),
    /// The process ended, or said nothing readable, before either.
    Exited(String),
}

/// A running host.
pub struct HostProcess {
    name: String,
    child: Mutex<Child>,
    frames: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    pipe: Arc<Mutex<Pipe>>,
    next_id: AtomicU64,
}

impl HostProcess {
    /// Starts `interpreter -m glia_python_host child`, writes `start`, and waits up to
    /// `timeout` for the host to load the module.
    pub fn spawn(
        name: &str,
        interpreter: &str,
        start: &ToHost,
        timeout: Duration,
    ) -> Result<(Arc<HostProcess>, Started), String> {
        let mut command = Command::new(interpreter);
        command
            .args(["-m", "glia_python_host", "child"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        super::host_env::apply(&mut command);
        let mut child = super::spawner::spawn(command).map_err(|e| format!("cannot run the Python host with {interpreter:?}: {e} (set python.interpreter to a Python with glia-python-host installed)"))?;
        let pipe = Arc::new(Mutex::new(Pipe::default()));
        let (frames, outgoing) = mpsc::channel::<Vec<u8>>();
        let (started_tx, started_rx) = mpsc::channel();
        if let Err(e) = start_pipe_threads(name, &mut child, outgoing, pipe.clone(), started_tx) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let process = Arc::new(HostProcess {
            name: name.to_owned(),
            child: Mutex::new(child),
            frames: Mutex::new(Some(frames)),
            pipe,
            next_id: AtomicU64::new(1),
        });
        process.send(start);
        let started = match started_rx.recv_timeout(timeout) {
            Ok(started) => started,
            Err(_) => {
                process.stop("it did not load the module in time");
                Started::Exited(format!(
                    "the Python host did not load the module within {} s (python.startup_timeout)",
                    timeout.as_secs_f64()
                ))
            }
        };
        Ok((process, started))
    }

    fn send(&self, frame: &ToHost) {
        let mut line = serde_json::to_vec(frame).unwrap_or_default();
        line.push(b'\n');
        if let Some(frames) = self
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = frames.send(line);
        }
    }

    /// A fresh id for a frame.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `frame` (whose id is `id`) and waits for its reply; fails at once when the host
    /// is gone, and as soon as it goes.
    pub async fn invoke(&self, id: u64, frame: ToHost) -> Answer<InvocationReply> {
        let (tx, rx) = oneshot::channel();
        self.wait_for(id, Waiter::Invoke(tx), &frame)?;
        rx.await
            .unwrap_or_else(|_| Err("the Python host's reader stopped".into()))
    }

    /// Sends a web frame and waits for its response.
    pub async fn web(&self, id: u64, frame: ToHost) -> Answer<HostWebResponse> {
        let (tx, rx) = oneshot::channel();
        self.wait_for(id, Waiter::Web(tx), &frame)?;
        rx.await
            .unwrap_or_else(|_| Err("the Python host's reader stopped".into()))
    }

    fn wait_for(&self, id: u64, waiter: Waiter, frame: &ToHost) -> Result<(), String> {
        {
            let mut pipe = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(reason) = &pipe.gone {
                return Err(reason.clone());
            }
            pipe.waiting.insert(id, waiter);
            if pipe.sent.is_empty() {
                pipe.progress = Instant::now();
            }
            pipe.sent.insert(id);
        }
        self.send(frame);
        Ok(())
    }

    /// Forgets a frame nobody waits for any more (its caller timed out).
    pub fn forget(&self, id: u64) {
        self.pipe
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .remove(&id);
    }

    /// Kills the process (if it still runs); everything waiting on it fails with `why`.
    pub fn stop(&self, why: &str) {
        fail_all(&self.pipe, format!("the Python host was stopped: {why}"));
        self.frames.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(None) = child.try_wait() {
            tracing::info!(module = %self.name, pid = child.id(), %why, "stopping the Python host");
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// How busy the host is.
    pub fn load(&self) -> Load {
        let pipe = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
        Load {
            in_flight: pipe.sent.len(),
            stalled: pipe.progress.elapsed(),
        }
    }

    /// The host's resident memory, in bytes (none when it cannot be read).
    pub fn rss_bytes(&self) -> Option<u64> {
        resident_bytes(self.pid())
    }

    /// Stops a host that was replaced once nobody waits for any of its frames, or `bound`
    /// has passed (those still waiting then fail). Frames offered after a clean drain are
    /// refused with [`RETIRED`], never sent. Returns whether the drain was clean.
    pub fn retire(&self, bound: Duration) -> bool {
        let until = Instant::now() + bound;
        loop {
            {
                let mut pipe = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
                if pipe.waiting.is_empty() {
                    pipe.gone.get_or_insert_with(|| RETIRED.to_owned());
                    break;
                }
            }
            if Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let clean = self
            .pipe
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .gone
            .as_deref()
            == Some(RETIRED);
        self.stop("it was replaced (recycled)");
        clean
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.stop("its module instance is gone");
    }
}

/// Starts the threads that write frames to the host's standard input and read its frames from
/// its standard output.
fn start_pipe_threads(
    name: &str,
    child: &mut Child,
    outgoing: mpsc::Receiver<Vec<u8>>,
    pipe: Arc<Mutex<Pipe>>,
    started: mpsc::Sender<Started>,
) -> Result<(), String> {
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err("the Python host's pipes could not be opened".into());
    };
    std::thread::Builder::new()
        .name(format!("glia-py-out-{name}"))
        .spawn(move || write_frames(stdin, outgoing))
        .map_err(|e| format!("cannot start the pipe's writer thread: {e}"))?;
    std::thread::Builder::new()
        .name(format!("glia-py-in-{name}"))
        .spawn(move || read_frames(stdout, pipe, started))
        .map_err(|e| format!("cannot start the pipe's reader thread: {e}"))?;
    Ok(())
}

/// A reply frame glia cannot read (an answer of the wrong shape for its callback) is that
/// invocation's invalid answer, for its failure policy; the host keeps serving.
fn reply_invalid(pipe: &Mutex<Pipe>, line: &str, error: &str) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
        return;
    };
    let Some(id) = value
        .pointer("/reply/id")
        .and_then(serde_json::Value::as_u64)
    else {
        return;
    };
    let waiter = pipe.lock().unwrap_or_else(|e| e.into_inner()).answered(id);
    if let Some(Waiter::Invoke(tx)) = waiter {
        let request_id = value
            .pointer("/reply/reply/request_id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let _ = tx.send(Ok(InvocationReply {
            request_id: request_id.to_owned(),
            result: glia_bus_schema::InvocationResult::Error(
                glia_bus_schema::InvocationError::InvalidAnswer {
                    detail: format!("the module's answer is not one glia reads: {error}"),
                },
            ),
        }));
    }
}

fn fail_all(pipe: &Mutex<Pipe>, reason: String) {
    let waiting: Vec<Waiter> = {
        let mut pipe = pipe.lock().unwrap_or_else(|e| e.into_inner());
        if pipe.gone.is_none() {
            pipe.gone = Some(reason.clone());
        }
        pipe.sent.clear();
        pipe.waiting.drain().map(|(_, w)| w).collect()
    };
    for waiter in waiting {
        waiter.fail(&reason);
    }
}

/// A process's resident set size, from `/proc/<pid>/statm` (Linux).
fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

fn write_frames(mut stdin: std::process::ChildStdin, outgoing: mpsc::Receiver<Vec<u8>>) {
    // Ends when the process is stopped (the sender is dropped) or its stdin closes; dropping
    // stdin tells the host to exit.
    for line in outgoing {
        if stdin.write_all(&line).and_then(|()| stdin.flush()).is_err() {
            return;
        }
    }
}

fn read_frames(stdout: ChildStdout, pipe: Arc<Mutex<Pipe>>, started: mpsc::Sender<Started>) {
    let mut started = Some(started);
    let mut lines = BufReader::new(stdout).lines();
    let end = loop {
        let line = match lines.next() {
            None => break "the Python host exited".to_owned(),
            Some(Err(e)) => break format!("cannot read from the Python host: {e}"),
            Some(Ok(line)) => line,
        };
        let frame: FromHost = match serde_json::from_str(&line) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::error!(error = %e, line = %line.chars().take(200).collect::<String>(), "the Python host wrote a frame glia cannot read");
                reply_invalid(&pipe, &line, &e.to_string());
                continue;
            }
        };
        match frame {
            FromHost::Ready(ready) => {
                if let Some(tx) = started.take() {
                    let _ = tx.send(Started::Ready(ready));
                }
            }
            FromHost::Failed(error) => {
                if let Some(tx) = started.take() {
                    let _ = tx.send(Started::Failed(error));
                }
            }
            FromHost::Reply(reply) => {
                let waiter = pipe
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .answered(reply.id);
                if let Some(Waiter::Invoke(tx)) = waiter {
                    let _ = tx.send(Ok(reply.reply));
                }
            }
            FromHost::WebReply(response) => {
                let waiter = pipe
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .answered(response.id);
                if let Some(Waiter::Web(tx)) = waiter {
                    let _ = tx.send(Ok(response));
                }
            }
        }
    };
    if let Some(tx) = started.take() {
        let _ = tx.send(Started::Exited(format!("{end} before loading the module")));
    }
    fail_all(&pipe, end);
}

#[cfg(test)]
mod tests {
    //! The pipe against stand-in hosts: shell scripts speaking the frames (the real host is
    //! tested end to end in tests/e2e).

    use super::*;
    use glia_bus_schema::host::HomeserverSettings;
    use glia_bus_schema::{CallbackRequest, Invocation, InvocationResult};
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in host: `sh` running `script` whatever its arguments.
    fn host(script: &str) -> (tempdir::Dir, String) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("host.sh");
        let mut file = std::fs::File::create(&path).unwrap();
        writeln!(file, "#!/bin/sh\n{script}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, path.display().to_string())
    }

    /// Spawns a host from `script`. Another test's child, forked while `host()` still had the
    /// script open for writing, holds that descriptor until it execs: exec then fails with
    /// ETXTBSY for a moment, so that (and only that) is retried.
    fn spawn(script: &str, timeout: Duration) -> Result<(Arc<HostProcess>, Started), String> {
        let mut tries = 0;
        loop {
            match HostProcess::spawn("m", script, &start(), timeout) {
                Err(e) if e.contains("Text file busy") && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    mod tempdir {
        /// A directory removed when dropped.
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let path = std::env::temp_dir().join(format!(
                    "glia-py-test-{}-{}",
                    std::process::id(),
                    fastrand::u64(..)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn start() -> ToHost {
        ToHost::Start(glia_bus_schema::host::HostStart {
            name: "m".into(),
            module: "pkg.Module".into(),
            config: serde_json::json!({}),
            homeserver: HomeserverSettings {
                server_name: "example.com".into(),
                public_baseurl: None,
                worker_name: None,
                email_app_name: None,
                module_api: None,
            },
        })
    }

    fn invoke(id: u64) -> ToHost {
        let request: CallbackRequest = serde_json::from_value(serde_json::json!({
            "callback": "user_may_invite",
            "args": {"inviter": "@a:x", "invitee": "@b:x", "room_id": "!r:x"}
        }))
        .unwrap();
        ToHost::Invoke(glia_bus_schema::host::HostInvoke {
            id,
            invocation: Invocation {
                request_id: "r".into(),
                deadline_ms: 0,
                request,
            },
            traceparent: None,
            tracestate: None,
        })
    }

    const READY: &str =
        r#"echo '{"ready":{"description":{"callbacks":["user_may_invite"]},"subtrees":[]}}'"#;

    #[test]
    fn replies_reach_their_invocation_and_a_dead_host_fails_the_rest() {
        let (_dir, script) = host(&format!(
            r#"read start
{READY}
while read line; do
  id=$(echo "$line" | sed 's/.*"id":\([0-9]*\).*/\1/')
  case "$line" in *inviter*) ;; *) continue;; esac
  [ "$id" = 2 ] && exit 0
  echo "{{\"reply\":{{\"id\":$id,\"reply\":{{\"request_id\":\"r\",\"result\":{{\"answer\":{{\"callback\":\"user_may_invite\",\"answer\":\"NOT_SPAM\"}}}}}}}}}}"
done"#
        ));
        let (process, started) = spawn(&script, Duration::from_secs(10)).unwrap();
        assert!(matches!(started, Started::Ready(_)));
        let id = process.next_id();
        let reply = futures::executor::block_on(process.invoke(id, invoke(id))).unwrap();
        assert!(
            matches!(reply.result, InvocationResult::Answer(_)),
            "{reply:?}"
        );
        // The host exits on the second invocation: it fails, and so does every later one.
        let id = process.next_id();
        let gone = futures::executor::block_on(process.invoke(id, invoke(id))).unwrap_err();
        assert_eq!(gone, "the Python host exited");
        let id = process.next_id();
        assert!(futures::executor::block_on(process.invoke(id, invoke(id))).is_err());
    }

    #[test]
    fn a_retired_host_finishes_its_frames_then_refuses_new_ones_unsent() {
        // Answers each invocation half a second after it came.
        let (_dir, script) = host(&format!(
            r#"read start
{READY}
while read line; do
  id=$(echo "$line" | sed 's/.*"id":\([0-9]*\).*/\1/')
  sleep 0.5
  echo "{{\"reply\":{{\"id\":$id,\"reply\":{{\"request_id\":\"r\",\"result\":{{\"answer\":{{\"callback\":\"user_may_invite\",\"answer\":\"NOT_SPAM\"}}}}}}}}}}"
done"#
        ));
        let (process, _) = spawn(&script, Duration::from_secs(10)).unwrap();
        let id = process.next_id();
        let in_flight = {
            let process = process.clone();
            std::thread::spawn(move || futures::executor::block_on(process.invoke(id, invoke(id))))
        };
        while process.load().in_flight == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(process.retire(Duration::from_secs(30)), "a clean drain");
        let reply = in_flight.join().unwrap().unwrap();
        assert!(
            matches!(reply.result, InvocationResult::Answer(_)),
            "{reply:?}"
        );
        let id = process.next_id();
        let refused = futures::executor::block_on(process.invoke(id, invoke(id))).unwrap_err();
        assert_eq!(refused, RETIRED);
        assert!(process.child.lock().unwrap().try_wait().unwrap().is_some());
    }

    #[test]
    fn an_idle_host_waits_least_and_a_stalled_one_most() {
        let load = |in_flight, ms| Load {
            in_flight,
            stalled: Duration::from_millis(ms),
        };
        assert_eq!(load(0, 5_000).expected_wait(), 0);
        assert!(load(1, 1_000).expected_wait() > load(4, 2).expected_wait());
    }

    #[test]
    fn a_reply_glia_cannot_read_is_an_invalid_answer() {
        let (_dir, script) = host(&format!(
            r#"read start
{READY}
read line
echo '{{"reply":{{"id":1,"reply":{{"request_id":"r","result":{{"answer":{{"callback":"no_such_callback","answer":1}}}}}}}}}}'
sleep 5"#
        ));
        let (process, _) = spawn(&script, Duration::from_secs(10)).unwrap();
        let id = process.next_id();
        let reply = futures::executor::block_on(process.invoke(id, invoke(id))).unwrap();
        match reply.result {
            InvocationResult::Error(glia_bus_schema::InvocationError::InvalidAnswer { detail }) => {
                assert!(detail.contains("not one glia reads"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_host_that_fails_or_exits_while_loading_says_so() {
        let (_dir, script) = host(
            r#"read start
echo '{"failed":{"path":["config","uri"],"message":"bad uri"}}'"#,
        );
        let (_process, started) = spawn(&script, Duration::from_secs(10)).unwrap();
        match started {
            Started::Failed(error) => assert_eq!(
                (error.path, error.message),
                (
                    vec!["config".to_owned(), "uri".to_owned()],
                    "bad uri".to_owned()
                )
            ),
            _ => panic!("expected a load failure"),
        }
        let (_dir, script) = host("exit 3");
        let (_process, started) = spawn(&script, Duration::from_secs(10)).unwrap();
        assert!(
            matches!(&started, Started::Exited(reason) if reason == "the Python host exited before loading the module")
        );
        let (_dir, script) = host("sleep 30");
        let (process, started) = spawn(&script, Duration::from_millis(300)).unwrap();
        assert!(
            matches!(&started, Started::Exited(reason) if reason.contains("did not load the module within 0.3 s"))
        );
        // It was killed, not left to run.
        assert!(process.child.lock().unwrap().try_wait().unwrap().is_some());
    }

    #[test]
    fn an_interpreter_that_is_not_there_is_named() {
        let error =
            HostProcess::spawn("m", "/nonexistent/python", &start(), Duration::from_secs(1))
                .err()
                .unwrap();
        assert!(
            error.starts_with("cannot run the Python host with \"/nonexistent/python\""),
            "{error}"
        );
    }
}
