//! Real `nats-server` processes for tests: a single JetStream node ([`NatsServer`]) or a routed
//! JetStream cluster ([`NatsCluster`]), on free loopback ports, each node with its own temp dir
//! (`nats.conf`, JetStream store, `nats.log`). Everything is killed and removed on drop.
//!
//! Starting blocks the calling thread until the server is ready (at most a few seconds); that
//! is fine at the top of a `#[tokio::test]` before anything else runs on the runtime.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a node may take to accept clients, and a cluster to route and elect.
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// How many lines of a node's log a failure message shows.
const LOG_TAIL_LINES: usize = 60;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The `nats-server` binary: from `PATH`, else the Debian package's `/usr/sbin/nats-server`.
pub fn nats_server_bin() -> PathBuf {
    let from_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("nats-server")).find(|p| p.is_file()));
    match from_path {
        Some(p) => p,
        None => {
            let fallback = PathBuf::from("/usr/sbin/nats-server");
            assert!(fallback.is_file(), "nats-server not found: run `make deps` (tests/tools/install-deps.sh)");
            fallback
        }
    }
}

/// A fresh, empty `sb-nats-{pid}-{counter}` directory under the system temp dir.
fn fresh_temp_dir() -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sb-nats-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir); // left over by an earlier process with the same pid
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One `nats-server` child process with its own temp dir.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    http_port: Option<u16>,
    name: String,
    dir: PathBuf,
}

impl NatsServer {
    /// Starts a single node with JetStream on a free `127.0.0.1` port and waits until it
    /// greets clients.
    pub fn start() -> NatsServer {
        NatsServer::start_with("")
    }

    /// Like [`NatsServer::start`], with `extra` appended to its config file: e.g. a
    /// `tls {}` or `authorization {}` block.
    pub fn start_with(extra: &str) -> NatsServer {
        let extra = (!extra.is_empty()).then(|| format!("{extra}\n"));
        let mut server = NatsServer::configure(crate::free_port(), None, "sb-single", extra);
        server.spawn();
        server.wait_ready();
        server
    }

    /// Writes the config file; does not start the process. `cluster` is the extra config
    /// (a `cluster {}` block of a cluster node, or what [`NatsServer::start_with`] adds).
    fn configure(port: u16, http_port: Option<u16>, name: &str, cluster: Option<String>) -> NatsServer {
        let dir = fresh_temp_dir();
        let mut conf = format!(
            "# Written by switchboard-tests (tests/src/nats.rs).\n\
             server_name: \"{name}\"\n\
             host: \"127.0.0.1\"\n\
             port: {port}\n\
             jetstream {{\n  store_dir: \"{store}\"\n}}\n",
            store = dir.join("jetstream").display(),
        );
        if let Some(http) = http_port {
            conf.push_str(&format!("http: \"127.0.0.1:{http}\"\n"));
        }
        if let Some(cluster) = cluster {
            conf.push_str(&cluster);
        }
        let server = NatsServer { child: None, port, http_port, name: name.to_owned(), dir };
        fs::write(server.conf_path(), conf).unwrap_or_else(|e| panic!("writing {}: {e}", server.conf_path().display()));
        server
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The monitoring port (cluster nodes only).
    pub fn http_port(&self) -> Option<u16> {
        self.http_port
    }

    /// The `server_name` in its config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its temp dir (config, store, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the process was started and not killed.
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Everything the process (and its earlier runs) wrote to stdout and stderr.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills the process with SIGKILL and reaps it. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process with SIGSTOP: its sockets stay open and the kernel keeps
    /// accepting bytes for it, but it answers nothing, like a hung or partitioned server
    /// (which a kill on loopback would hide). [`NatsServer::thaw`] resumes it.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill").args([sig, &child.id().to_string()]).status().expect("kill runs");
            assert!(status.success(), "kill {sig} failed");
        }
    }

    /// Kills the process if it is running, starts it again on the same ports and store dir,
    /// and waits until it greets clients.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready();
    }

    /// `GET http://127.0.0.1:HTTP_PORT{path}` on the monitoring port, parsed as JSON.
    ///
    /// # Panics
    /// If the node has no monitoring port.
    pub fn monitor(&self, path: &str) -> Result<serde_json::Value, String> {
        let port = self.http_port.unwrap_or_else(|| panic!("{} has no monitoring port", self.name));
        http_get_json(port, path)
    }

    /// `num_routes` from `/routez`.
    pub fn num_routes(&self) -> Result<u64, String> {
        let routez = self.monitor("/routez")?;
        routez["num_routes"].as_u64().ok_or_else(|| format!("no num_routes in /routez: {routez}"))
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.join("nats.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("nats.log")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.log_path().display()));
        let _ = writeln!(log, "--- switchboard-tests: starting {} on port {} ---", self.name, self.port);
        let stdout = log.try_clone().expect("log file handle clones");
        let bin = nats_server_bin();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(self.conf_path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        self.child = Some(child);
    }

    /// Waits until a TCP connection to the client port gets an `INFO` line.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!("{} exited during start-up ({status}); its log:\n{}", self.name, self.log_tail());
            }
            match read_info(self.port) {
                Ok(_) => return,
                Err(e) if Instant::now() >= deadline => panic!(
                    "{} did not greet a client on 127.0.0.1:{} within {READY_DEADLINE:?} (last error: {e}); its log:\n{}",
                    self.name,
                    self.port,
                    self.log_tail()
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Connects to `127.0.0.1:port` and returns the server's `INFO` JSON.
pub fn read_info(port: u16) -> Result<serde_json::Value, String> {
    let stream = TcpStream::connect_timeout(&loopback(port), Duration::from_millis(500)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(|e| e.to_string())?;
    let json = line.strip_prefix("INFO ").ok_or_else(|| format!("expected INFO, got {line:?}"))?;
    serde_json::from_str(json.trim_end()).map_err(|e| format!("bad INFO {line:?}: {e}"))
}

/// A blocking `GET` over HTTP/1.0 (so the body is neither chunked nor kept alive), parsed as JSON.
fn http_get_json(port: u16, path: &str) -> Result<serde_json::Value, String> {
    let mut stream =
        TcpStream::connect_timeout(&loopback(port), Duration::from_millis(500)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP body in {response:?}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or_default()));
    }
    serde_json::from_str(body).map_err(|e| format!("GET {path}: bad JSON ({e}): {body:?}"))
}

/// N routed `nats-server` nodes (cluster `sb`) with JetStream, on free loopback ports.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` nodes named `sb-n0` … and waits until every node greets clients, every node
    /// has a route to every other, and JetStream has a meta leader.
    pub fn start(n: usize) -> NatsCluster {
        assert!(n >= 1, "a cluster needs at least one node");
        let cluster_ports: Vec<u16> = (0..n).map(|_| crate::free_port()).collect();
        let mut nodes: Vec<NatsServer> = (0..n)
            .map(|i| {
                let routes: String = cluster_ports
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, p)| format!("    \"nats-route://127.0.0.1:{p}\"\n"))
                    .collect();
                let cluster = format!(
                    "cluster {{\n  name: sb\n  listen: \"127.0.0.1:{}\"\n  routes: [\n{routes}  ]\n}}\n",
                    cluster_ports[i]
                );
                NatsServer::configure(crate::free_port(), Some(crate::free_port()), &format!("sb-n{i}"), Some(cluster))
            })
            .collect();
        for node in &mut nodes {
            node.spawn();
        }
        let mut cluster = NatsCluster { nodes };
        for node in &mut cluster.nodes {
            node.wait_ready();
        }
        cluster.wait_routes();
        cluster.wait_jetstream();
        cluster
    }

    /// Every node's client URL, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// The index of the node a client named `name` is connected to, if any (from the
    /// monitoring port's `/connz`).
    pub fn node_of(&self, name: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            self.nodes[i]
                .monitor("/connz")
                .ok()
                .is_some_and(|c| c["connections"].as_array().is_some_and(|cs| cs.iter().any(|c| c["name"] == name)))
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// SIGKILLs node `i`; the others keep serving.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Restarts node `i` on its ports and store, then waits until the running nodes are fully
    /// routed again.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
        self.wait_routes();
    }

    /// Waits until every running node has a route to every other running node.
    pub fn wait_routes(&self) {
        let running: Vec<&NatsServer> = self.nodes.iter().filter(|n| n.is_running()).collect();
        let want = running.len().saturating_sub(1) as u64;
        self.wait_all(&running, &format!("{want} routes"), |node| match node.num_routes() {
            Ok(have) if have == want => Ok(()),
            Ok(have) => Err(format!("{have} routes")),
            Err(e) => Err(e),
        });
    }

    /// Waits until every running node knows a JetStream meta leader.
    fn wait_jetstream(&self) {
        let running: Vec<&NatsServer> = self.nodes.iter().filter(|n| n.is_running()).collect();
        self.wait_all(&running, "a JetStream meta leader", |node| {
            let jsz = node.monitor("/jsz")?;
            match jsz["meta_cluster"]["leader"].as_str() {
                Some(leader) if !leader.is_empty() => Ok(()),
                _ => Err(format!("no meta leader: {}", jsz["meta_cluster"])),
            }
        });
    }

    fn wait_all(&self, nodes: &[&NatsServer], what: &str, check: impl Fn(&NatsServer) -> Result<(), String>) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let failures: Vec<(&NatsServer, String)> =
                nodes.iter().filter_map(|n| check(n).err().map(|e| (*n, e))).collect();
            if failures.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let mut msg = format!("cluster not ready within {READY_DEADLINE:?}: every node should have {what}\n");
                for (node, why) in &failures {
                    msg.push_str(&format!("  {} (127.0.0.1:{}): {why}\n", node.name, node.port));
                }
                for (node, _) in &failures {
                    msg.push_str(&format!("--- log of {} ---\n{}\n", node.name, node.log_tail()));
                }
                panic!("{msg}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
