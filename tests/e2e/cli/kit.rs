//! Helpers for running the binary as a user does: a dev node started from the workspace
//! root with its banner read, one-shot tool runs with a hard limit, and a silent port.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard_tests::{binary, free_port};

/// Longest a single tool run may take before the test fails (and kills it).
pub const LIMIT: Duration = Duration::from_secs(20);

/// A child process killed on drop.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The workspace root, where a user runs `make run`.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().canonicalize().unwrap()
}

/// A finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs `switchboard ARGS` to the end (at most [`LIMIT`]).
pub fn run(args: &[&str]) -> Run {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    run_command(cmd)
}

/// Runs `switchboard ARGS` to the end (at most [`LIMIT`]) with `input` on its stdin.
pub fn run_with_stdin(args: &[&str], input: &str) -> Run {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    run_command_with(cmd, Some(input.to_owned()))
}

/// Runs a shell command line from the workspace root, as a user pastes it.
pub fn run_shell(line: &str) -> Run {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", line]).current_dir(root());
    run_command(cmd)
}

fn run_command(cmd: Command) -> Run {
    run_command_with(cmd, None)
}

fn run_command_with(mut cmd: Command, input: Option<String>) -> Run {
    let started = Instant::now();
    let stdin = if input.is_some() { Stdio::piped() } else { Stdio::null() };
    let mut child = cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    if let Some(input) = input {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("{cmd:?} still ran after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    Run { code: status.code(), stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap(), took }
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// A port that accepts connections and never says a word (a frozen server).
pub fn silent_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    port
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    free_port()
}

/// `switchboard dev` on free ports, started from the workspace root.
pub struct DevNode {
    pub http: u16,
    pub grpc: u16,
    /// The lines printed on stdout so far: up to `grpc:` at least.
    pub banner: String,
    out: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
    _child: Kill,
}

impl DevNode {
    pub fn start(extra: &[&str]) -> DevNode {
        DevNode::start_with_env(extra, &[])
    }

    /// [`DevNode::start`] with these environment variables set for the process.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> DevNode {
        let (http, grpc) = (free_port(), free_port());
        let child = Command::new(binary())
            .args(["dev", "--listen", &format!("127.0.0.1:{http}"), "--grpc-listen", &format!("127.0.0.1:{grpc}")])
            .args(extra)
            .envs(env.iter().copied())
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = Kill(child);
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = BufReader::new(child.0.stderr.take().unwrap());
        let log = stderr.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while err.read_line(&mut line).unwrap_or(0) > 0 {
                log.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let out = BufReader::new(child.0.stdout.take().unwrap());
        let mut node = DevNode { http, grpc, banner: String::new(), out, stderr, _child: child };
        node.banner_line("grpc:");
        wait_for_port(grpc);
        node
    }

    pub fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.http)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    /// What the node logged on stderr so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The line of the banner that starts with `label`, without the label, read on from
    /// stdout until it comes.
    pub fn banner_line(&mut self, label: &str) -> String {
        loop {
            if let Some(line) = self.banner.lines().find_map(|l| l.trim_start().strip_prefix(label)) {
                return line.trim().to_owned();
            }
            let read = self.out.read_line(&mut self.banner).unwrap();
            assert!(read > 0, "dev exited before a {label} line:\n{}\n{}", self.banner, self.log());
        }
    }

    /// The sessions subscribed to `channel`, as `switchboard presence` prints them.
    pub fn presence(&self, channel: &str) -> Vec<serde_json::Value> {
        let out = run(&["presence", "--grpc", &self.grpc_url(), channel]);
        out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Waits until `channel` has `n` subscribed sessions and returns them.
    pub fn wait_presence(&self, channel: &str, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let sessions = self.presence(channel);
            if sessions.len() == n {
                return sessions;
            }
            assert!(Instant::now() < deadline, "{channel} never had {n} sessions: {sessions:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + LIMIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `switchboard ARGS` left running, stdout and stderr read line by line.
pub struct Running {
    child: Kill,
    pub stdout: std::sync::mpsc::Receiver<String>,
    pub stderr: std::sync::mpsc::Receiver<String>,
}

impl Running {
    pub fn start(args: &[&str]) -> Running {
        let child = Command::new(binary()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut child = Kill(child);
        let stdout = lines(child.0.stdout.take().unwrap());
        let stderr = lines(child.0.stderr.take().unwrap());
        Running { child, stdout, stderr }
    }

    /// Waits for a stderr line containing `text` and returns it.
    pub fn stderr_line(&self, text: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => continue,
                Err(_) => panic!("no stderr line with {text:?}"),
            }
        }
    }

    /// Waits for the exit and returns its status code.
    pub fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "still running after {LIMIT:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The lines of a child's pipe, read on a thread of their own.
// A synchronous test reading a child process: a blocking receiver is what it wants here.
#[allow(clippy::disallowed_methods)]
fn lines(r: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Writes a configuration file for this test run and returns its path.
pub fn config_file(text: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("sb-e2e-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}
