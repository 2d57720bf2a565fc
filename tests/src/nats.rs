//! A real nats-server for tests, on a loopback port it picks itself, stopped when dropped;
//! and a cluster of them, routed to each other.

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
    member: Option<Member>,
}

/// A cluster member's own ports and its routes, kept for a restart on the same ports.
struct Member {
    cluster_name: String,
    route_port: u16,
    monitor_port: u16,
    routes: Vec<u16>,
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
        Self::launch(args.iter().map(|a| a.to_string()).collect(), None)
    }

    /// A cluster member: routes to the members listening for routes on `routes`.
    fn start_member(cluster_name: &str, routes: Vec<u16>) -> NatsServer {
        Self::launch(
            Vec::new(),
            Some(Member {
                cluster_name: cluster_name.to_owned(),
                route_port: 0,
                monitor_port: 0,
                routes,
            }),
        )
    }

    fn launch(args: Vec<String>, member: Option<Member>) -> NatsServer {
        let dir =
            std::env::temp_dir().join(format!("glia-nats-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let mut server = NatsServer {
            child: None,
            port: 0,
            dir,
            args,
            member,
        };
        // The server binds ports of the kernel's choosing and writes them to its ports file:
        // a port picked here and bound there could be taken in between by any connection on
        // the machine.
        let child = server.spawn("-1");
        let ports_file = server.dir.join(format!("nats-server_{}.ports", child.id()));
        server.child = Some(child);
        let ports = server.wait_for(|_| {
            let ports: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&ports_file).ok()?).ok()?;
            let port = |kind: &str| -> Option<u16> {
                ports[kind][0].as_str()?.rsplit(':').next()?.parse().ok()
            };
            Some((port("nats")?, port("cluster"), port("monitoring")))
        });
        server.port = ports.0;
        if let Some(member) = &mut server.member {
            member.route_port = ports.1.expect("a cluster member listens for routes");
            member.monitor_port = ports.2.expect("a cluster member serves monitoring");
        }
        server.wait_for(|port| std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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

    /// Runs nats-server on `port` (`-1`: one the server picks; a member's route and
    /// monitoring ports likewise the first time, then the same again).
    fn spawn(&self, port: &str) -> Child {
        let mut command = Command::new(binary());
        command
            .args(["-a", "127.0.0.1", "-p", port, "--ports_file_dir"])
            .arg(&self.dir)
            .arg("-l")
            .arg(self.dir.join("nats.log"))
            .args(&self.args);
        if let Some(member) = &self.member {
            let own = |p: u16| {
                if p == 0 {
                    "-1".to_owned()
                } else {
                    p.to_string()
                }
            };
            command
                .args(["--cluster_name", &member.cluster_name])
                .args([
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", own(member.route_port)),
                ])
                .args(["-m", &own(member.monitor_port)]);
            if !member.routes.is_empty() {
                let routes: Vec<String> = member
                    .routes
                    .iter()
                    .map(|p| format!("nats://127.0.0.1:{p}"))
                    .collect();
                command.args(["--routes", &routes.join(",")]);
            }
        }
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts")
    }

    /// GETs a monitoring endpoint (`/routez`, `/connz`) of a cluster member, as JSON.
    fn monitor(&self, path: &str) -> Option<serde_json::Value> {
        use std::io::{Read, Write};
        let port = self.member.as_ref()?.monitor_port;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        serde_json::from_str(response.split_once("\r\n\r\n")?.1).ok()
    }

    /// The names of the client connections this server holds now (a member's only).
    pub fn client_names(&self) -> Vec<String> {
        self.monitor("/connz?limit=1024")
            .and_then(|connz| {
                connz["connections"].as_array().map(|all| {
                    all.iter()
                        .filter_map(|c| c["name"].as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// Whether it is running.
    pub fn running(&self) -> bool {
        self.child.is_some()
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

/// Three (or more) nats-servers on loopback, routed to one another: one cluster, as users
/// run NATS. Members can be stopped and restarted on their ports.
pub struct NatsCluster {
    /// The members.
    pub members: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` members and waits until each has a route to every other.
    pub fn start(n: usize) -> NatsCluster {
        let name = format!("glia-test-{}-{}", std::process::id(), free_port());
        let first = NatsServer::start_member(&name, Vec::new());
        let seed = first.member.as_ref().map_or(0, |m| m.route_port);
        let mut members = vec![first];
        for _ in 1..n {
            members.push(NatsServer::start_member(&name, vec![seed]));
        }
        // Restarted, a member routes to all the others itself.
        let ports: Vec<u16> = members
            .iter()
            .map(|m| m.member.as_ref().map_or(0, |m| m.route_port))
            .collect();
        for (i, member) in members.iter_mut().enumerate() {
            if let Some(m) = &mut member.member {
                m.routes = ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| *p)
                    .collect();
            }
        }
        let cluster = NatsCluster { members };
        cluster.wait_routed();
        cluster
    }

    /// Every member's client URL, in order.
    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(NatsServer::url).collect()
    }

    /// Waits (up to 30 s, then panics) until each running member routes to every other
    /// running one.
    pub fn wait_routed(&self) {
        let running = self.members.iter().filter(|m| m.running()).count();
        let until = Instant::now() + Duration::from_secs(30);
        for member in self.members.iter().filter(|m| m.running()) {
            loop {
                let routes = member
                    .monitor("/routez")
                    .and_then(|r| r["num_routes"].as_u64())
                    .unwrap_or(0);
                if routes as usize >= running - 1 {
                    break;
                }
                assert!(
                    Instant::now() < until,
                    "nats-server on {} has {routes} routes, not {}",
                    member.url(),
                    running - 1
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The index of the member holding a client connection whose name contains `name`.
    pub fn holding(&self, name: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.running() && m.client_names().iter().any(|c| c.contains(name)))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
