//! The `glia` command line: version and help, `check-config` on good and bad files, and
//! `glia serve` running the embedded example and answering `/health`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const GLIA: &str = env!("CARGO_BIN_EXE_glia");
const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn glia(args: &[&str]) -> Output {
    Command::new(GLIA)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run glia")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn example() -> String {
    format!("{REPO}/deploy/glia.example.yaml")
}

/// A file in the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("glia-cli-test-{}-{tag}", std::process::id()));
        std::fs::write(&path, contents).expect("write a temporary file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn version_prints_the_package_version() {
    let out = glia(&["--version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("glia {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_the_subcommands() {
    let out = glia(&["--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    for word in ["Usage: glia", "serve", "check-config", "--log-json"] {
        assert!(help.contains(word), "{word:?} not in:\n{help}");
    }
    let out = glia(&["serve", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    for word in ["--config", "--listen"] {
        assert!(help.contains(word), "{word:?} not in:\n{help}");
    }
}

#[test]
fn no_subcommand_or_an_unknown_one_is_a_usage_error() {
    for args in [&[][..], &["frobnicate"][..]] {
        let out = glia(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains("Usage: glia"), "{}", stderr(&out));
    }
}

#[test]
fn check_config_accepts_the_example() {
    let path = example();
    let out = glia(&["check-config", &path]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("{path}: OK (6 modules)"));
}

#[test]
fn check_config_refuses_a_bad_file_with_its_line() {
    let file = TempFile::new(
        "bad.yaml",
        concat!(
            "listen: 127.0.0.1:0\n", // 1
            "modules:\n",            // 2
            "  - module: demo\n",    // 3
            "  - module: nope\n",    // 4
        ),
    );
    let out = glia(&["check-config", file.path()]);
    assert!(
        !out.status.success(),
        "a bad config passed: {}",
        stdout(&out)
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let expected = format!(
        "error: {}:4:5: modules[1] (nope): key `module`: unknown module \"nope\"; known modules: ",
        file.path()
    );
    assert!(err.starts_with(&expected), "{err}");
    assert!(err.contains("demo, "), "{err}");
    assert_eq!(stdout(&out), "");
}

#[test]
fn check_config_refuses_a_missing_file() {
    let path = format!("{REPO}/deploy/no-such-config.yaml");
    let out = glia(&["check-config", &path]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: {path}: cannot read the config file: ")),
        "{err}"
    );
}

#[test]
fn serve_with_a_bad_config_exits_with_the_error() {
    let file = TempFile::new(
        "bad-serve.yaml",
        concat!(
            "modules:\n",             // 1
            "  - module: demo\n",     // 2
            "    max_in_flight: 0\n", // 3
        ),
    );
    let out = glia(&["serve", "--config", file.path(), "--listen", "127.0.0.1:1"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "error: {}:3:5: modules[0] (demo): key `max_in_flight`: must be between 1 and 1048576",
            file.path()
        )),
        "{err}"
    );
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over a fresh connection; the status and the body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Kills the child when the test ends, however it ends.
struct Running(Option<Child>);

impl Running {
    /// Stops the child and returns what it wrote to stderr.
    fn stop(mut self) -> String {
        let mut child = self.0.take().expect("running");
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait for glia");
        stderr(&out)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `GET path` until it answers (at most ~20 s), failing early if glia exits.
fn wait_for(running: &mut Running, port: u16, path: &str) -> (u16, String) {
    for _ in 0..400 {
        if let Ok(answer) = http_get(port, path) {
            return answer;
        }
        let child = running.0.as_mut().expect("running");
        if let Some(status) = child.try_wait().expect("poll glia") {
            let mut err = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut err);
            }
            panic!("glia exited with {status} before answering:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("glia did not answer {path} on port {port}");
}

/// Starts `glia serve` with these arguments, its log captured.
fn serve(args: &[&str]) -> Running {
    let child = Command::new(GLIA)
        .arg("serve")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start glia serve");
    Running(Some(child))
}

#[test]
fn serve_without_a_config_runs_the_embedded_example() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut running = serve(&["--listen", &listen]);

    let (status, body) = wait_for(&mut running, port, "/health");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["modules"], 6, "{health}");

    // The embedded example's demo module serves its resource on the same port.
    let (status, body) = http_get(port, "/_synapse/client/demo/hello?name=cli").expect("GET");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"hello":"cli"}"#);

    let log = running.stop();
    assert!(log.contains("glia serving on"), "{log}");
}

#[test]
fn serve_with_a_config_file_uses_it() {
    let file = TempFile::new(
        "serve.yaml",
        concat!(
            "listen: 127.0.0.1:1\n", // overridden by --listen
            "auth_token: cli-secret\n",
            "modules:\n",
            "  - module: demo\n",
        ),
    );
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut running = serve(&["-c", file.path(), "--listen", &listen]);

    let (status, body) = wait_for(&mut running, port, "/health");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""modules":1"#), "{body}");
    // The config's token guards the API.
    let (status, body) = http_get(port, "/_glia/v1/modules").expect("GET");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("M_MISSING_TOKEN"), "{body}");
    running.stop();
}

#[test]
fn serve_on_a_port_in_use_fails() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let listen = taken.local_addr().unwrap().to_string();
    // Bounded: were it to serve anyway, it would never exit on its own.
    let out = exits(&["serve", "--listen", &listen]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("error: cannot listen on {listen}: ")),
        "{err}"
    );
}

/// Runs `glia args`, which must exit by itself (within a generous bound: a `serve` that
/// starts would run forever); its output.
fn exits(args: &[&str]) -> Output {
    let mut child = Command::new(GLIA)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run glia");
    for _ in 0..1200 {
        if child.try_wait().expect("poll glia").is_some() {
            return child.wait_with_output().expect("glia's output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("glia's output");
    panic!("glia {args:?} did not exit:\n{}", stderr(&out));
}

/// `check-config` refuses what `serve` refuses, with the same error (file, line, column and
/// key): each of these passed the check and failed only at start, or hung.
#[test]
fn check_config_refuses_what_serve_refuses() {
    let cases = [
        (
            "empty-log-path",
            "telemetry:\n  decision_log:\n    output: file\n    path: \"\"\n",
            ":4:5: key `telemetry.decision_log.path`: must not be empty",
        ),
        (
            "huge-buffer",
            "telemetry:\n  decision_log:\n    output: stdout\n    buffer: 2305843009213693952\n",
            ":4:5: key `telemetry.decision_log.buffer`: must be between 1 and 1000000",
        ),
        (
            "bad-seed",
            "bus:\n  type: nats\n  url: nats://127.0.0.1:1\n  nkey_seed: SUANOTASEED\n",
            ":4:3: key `bus.nkey_seed`: not an NKey seed: ",
        ),
        (
            "unreadable-ca",
            "bus:\n  type: nats\n  url: nats://127.0.0.1:1\n  tls:\n    ca_file: /nonexistent/glia-ca.pem\n",
            ":5:5: key `bus.tls.ca_file`: cannot read /nonexistent/glia-ca.pem: ",
        ),
        (
            "token-dev-zero",
            "listen: 127.0.0.1:0\nauth_token_file: /dev/zero\n",
            ":2:1: key `auth_token_file`: cannot read /dev/zero: not a regular file",
        ),
    ];
    for (tag, yaml, expected) in cases {
        let file = TempFile::new(tag, yaml);
        let checked = exits(&["check-config", file.path()]);
        let served = exits(&["serve", "--config", file.path(), "--listen", "127.0.0.1:0"]);
        let expected = format!("error: {}{expected}", file.path());
        for (what, out) in [("check-config", &checked), ("serve", &served)] {
            assert_eq!(out.status.code(), Some(1), "{what} {tag}: {}", stderr(out));
            assert!(
                stderr(out).lines().any(|l| l.starts_with(&expected)),
                "{what} {tag}: expected {expected:?} in:\n{}",
                stderr(out)
            );
        }
    }
}

#[test]
fn check_config_checks_each_nats_server_url_as_serve_does() {
    let config = |url: &str| {
        format!(
            "bus: {{type: nats, url: {url}}}\nmodules:\n  - module: demo\n    placement: nats\n"
        )
    };
    let good = TempFile::new(
        "nats-list.yaml",
        &config("[\"nats://a:4222\", \"tls://b:4443\"]"),
    );
    let out = glia(&["check-config", good.path()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Once a string that passed here and made serve exit with "invalid port number".
    let bad = TempFile::new(
        "nats-comma.yaml",
        &config("\"nats://a:4222,nats://b:99999\""),
    );
    let out = glia(&["check-config", bad.path()]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: {}:1:", bad.path())),
        "{err}"
    );
    assert!(
        err.contains("key `bus.url`") && err.contains("\"nats://b:99999\""),
        "{err}"
    );
}
