//! A real nats-server for tests, on a loopback port it picks itself, stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nats-server.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

fn binary() -> PathBuf {
    for candidate in [
        "nats-server",
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
    ] {
        if Command::new(candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
        {
            return candidate.into();
        }
    }
    panic!(
        "nats-server is not installed: `apt-get install nats-server` (tests/run-all installs it)"
    );
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> NatsServer {
        Self::start_with(&[])
    }

    /// The same, with extra nats-server arguments (`--auth TOKEN`, ...).
    pub fn start_with(args: &[&str]) -> NatsServer {
        let dir =
            std::env::temp_dir().join(format!("glia-nats-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let mut server = NatsServer {
            child: None,
            port: 0,
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        // The server binds a port of the kernel's choosing and writes it to its ports file: a
        // port picked here and bound there could be taken in between by any connection on
        // the machine.
        let child = server.spawn("-1");
        let ports_file = server.dir.join(format!("nats-server_{}.ports", child.id()));
        server.child = Some(child);
        server.port = server.wait_for(|_| {
            let ports: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&ports_file).ok()?).ok()?;
            ports["nats"][0].as_str()?.rsplit(':').next()?.parse().ok()
        });
        server.wait_for(|port| std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (connections drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let child = self.spawn(&self.port.to_string());
        self.child = Some(child);
        self.wait_for(|port| std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    }

    /// Runs nats-server on `port` (`-1`: one the server picks).
    fn spawn(&self, port: &str) -> Child {
        Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", port, "--ports_file_dir"])
            .arg(&self.dir)
            .arg("-l")
            .arg(self.dir.join("nats.log"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts")
    }

    /// Polls `ready` (given the port) until it says yes; fails with the server's log if the
    /// server exits or takes 10 s.
    fn wait_for<T>(&mut self, mut ready: impl FnMut(u16) -> Option<T>) -> T {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(value) = ready(self.port) {
                return value;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > until {
                let log = std::fs::read_to_string(self.dir.join("nats.log")).unwrap_or_default();
                panic!(
                    "nats-server did not come up on port {} ({}); its log:\n{log}",
                    self.port,
                    match exited {
                        Some(status) => format!("it exited: {status}"),
                        None => "still not listening after 10 s".into(),
                    }
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
