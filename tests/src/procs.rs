//! Switchboard processes for cluster tests: real `switchboard gateway` and `switchboard
//! control` children of the test (or another binary of the workspace, such as
//! `bench-floor`), on free loopback ports, killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_wire::pb;

use crate::{binary, free_port};

/// The HS256 secret cluster tests give gateways.
pub const SECRET: &str = "cluster-test-secret";

/// One switchboard child process.
pub struct Proc {
    pub name: String,
    program: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
    log: PathBuf,
    pub port: u16,
}

impl Proc {
    /// Spawns `switchboard ARGS` and waits until `port` accepts connections.
    pub fn spawn(name: &str, args: Vec<String>, port: u16) -> Proc {
        Proc::spawn_program(name, binary(), args, port)
    }

    /// Spawns `program ARGS` and waits until `port` accepts connections.
    pub fn spawn_program(name: &str, program: PathBuf, args: Vec<String>, port: u16) -> Proc {
        let log = std::env::temp_dir().join(format!("sb-{}-{name}-{port}.log", std::process::id()));
        let mut p = Proc { name: name.to_owned(), program, child: None, args, log, port };
        p.start();
        p
    }

    fn start(&mut self) {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .env("SWITCHBOARD_LOG", "info,switchboard_control=debug")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("switchboard starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited with {status} during start-up:\n{}", self.name, self.log());
            }
            assert!(Instant::now() < deadline, "{} never listened on {}:\n{}", self.name, self.port, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: the process gets no chance to say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    /// Starts the process again (after [`Proc::kill`] or [`Proc::terminate`]; kills it
    /// first if it runs) with the same arguments, on the same port and log, and waits until
    /// the port accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// Whether the process was started and not killed or terminated.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        } else {
            eprintln!("--- log of {} ---\n{}", self.name, self.log());
        }
    }
}

/// The configuration file the cluster's processes start with (unless a test gives its
/// own `--config`): namespace `chat` keeps history, as [`crate::namespaces`] says.
pub fn config_file() -> &'static Path {
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("sb-{}-cluster.toml", std::process::id()));
        let presence = "[channels.namespaces.room]\npresence = true\njoin_leave = true\n\
                        [channels.namespaces.hroom]\nhistory_size = 10000\nhistory_ttl = \"1h\"\npresence = true\njoin_leave = true\n\
                        [channels.namespaces.staff]\nsubscribe = \"nobody\"\npresence = true\n";
        let chat = "[channels.namespaces.chat]\nhistory_size = 10000\nhistory_ttl = \"1h\"\n";
        std::fs::write(&path, format!("{chat}{presence}")).unwrap();
        path
    })
}

fn with_config(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    if !extra.contains(&"--config") {
        args.extend(["--config".into(), config_file().display().to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Starts `switchboard control` with the given NATS URLs, asking for [`crate::API_KEY`].
pub fn control(id: &str, nats: &[String], extra: &[&str]) -> Proc {
    let port = free_port();
    let args: Vec<String> = vec![
        "control".into(),
        "--nats".into(),
        nats.join(","),
        "--grpc-listen".into(),
        format!("127.0.0.1:{port}"),
        "--replica-id".into(),
        id.into(),
        "--api-keys".into(),
        crate::API_KEY.into(),
    ];
    Proc::spawn(id, with_config(args, extra), port)
}

/// Starts `switchboard gateway` with the given NATS URLs and the test token secret.
pub fn gateway(id: &str, nats: &[String], extra: &[&str]) -> Proc {
    let port = free_port();
    let args: Vec<String> = vec![
        "gateway".into(),
        "--nats".into(),
        nats.join(","),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--node-id".into(),
        id.into(),
        "--token-secret".into(),
        SECRET.into(),
    ];
    Proc::spawn(id, with_config(args, extra), port)
}

/// A connect token for `user`, valid for an hour.
pub fn token(user: &str) -> String {
    token_with_info(user, None)
}

/// A connect token for `user` with an `info` claim when given, valid for an hour.
pub fn token_with_info(user: &str, info: Option<serde_json::Value>) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let mut claims = serde_json::json!({"sub": user, "exp": exp});
    if let Some(info) = info {
        claims["info"] = info;
    }
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

/// A client session of `user` on a gateway.
pub async fn user_client(gateway: &Proc, user: &str) -> switchboard_client::Client {
    let mut config = switchboard_client::ClientConfig::new(crate::ws_url(gateway.addr())).reconnect(false);
    config.token = token(user);
    switchboard_client::Client::connect(config).await.expect("client connects")
}

/// Waits until the control replica at `grpc` sees `gateways` gateways and `replicas`
/// replicas, a registry read is answered (the replica joined the ring and settled its
/// shards: it is ready), and a publish goes through.
pub async fn wait_ready(grpc: SocketAddr, gateways: usize, replicas: usize) {
    let mut api = crate::grpc(grpc).await;
    crate::eventually("the cluster is assembled", || {
        let mut api = api.clone();
        async move {
            let Ok(info) = api.info(pb::InfoRequest {}).await else { return false };
            let info = info.into_inner();
            info.gateways.len() == gateways && info.replicas.len() == replicas
        }
    })
    .await;
    // A publish needs no ring any more (the bus gives offsets); a registry read does.
    crate::eventually("the registry answers", || {
        let mut api = api.clone();
        async move { api.list_sessions(pb::ListSessionsRequest::default()).await.is_ok() }
    })
    .await;
    crate::eventually("publishing works", || {
        let mut api = api.clone();
        async move {
            api.publish(pb::PublishApiRequest { channel: "probe:ready".into(), data: "1".into(), ..Default::default() })
                .await
                .is_ok()
        }
    })
    .await;
    let _ = &mut api;
}
