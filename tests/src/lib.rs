//! Helpers for the end-to-end tests: start a real node on free loopback ports, speak raw
//! WebSocket to it, call its gRPC API, and wait for conditions with a deadline.

pub mod balancer;
pub mod fleet;
pub mod nats;
pub mod procs;
pub mod sampler;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocket};
use http_body_util::Empty;
use hyper::Request;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use switchboard::dev::{Dev, DevConfig};
use switchboard_bus::{HistoryLimits, Namespaces};
use switchboard_client::{Client, ClientConfig, SpawnExecutor};
use switchboard_gateway::GatewayConfig;
use switchboard_wire::Encoding;
use switchboard_wire::pb::switchboard_api_client::SwitchboardApiClient;
use tokio::net::TcpStream;
use tonic::service::interceptor::InterceptedService;

/// How long any single expectation may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A gateway config on a free loopback port with test-friendly defaults: the per-address
/// and per-session rate limits are off, since every test client comes from 127.0.0.1 and
/// sends as fast as it can (`tests/e2e/limits.rs` sets them itself).
pub fn gateway_config() -> GatewayConfig {
    GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        serve_page: true,
        max_connections_per_ip: 0,
        connect_rate_per_ip: 0,
        max_messages_per_sec: 0,
        max_bytes_per_sec: 0,
        ..GatewayConfig::default()
    }
}

/// What the tests' nodes keep: namespace `chat` keeps history (10,000 per channel, an hour),
/// as a deployment would configure it, and so does `hroom` (the presence tests' history
/// namespace, see [`presence_rules`]); every other channel is live-only, the default.
pub fn namespaces() -> Namespaces {
    let chat = HistoryLimits { size: 10_000, ttl: std::time::Duration::from_secs(3600) };
    Namespaces { default: None, namespaces: [("chat".to_owned(), Some(chat)), ("hroom".to_owned(), Some(chat))].into() }
}

/// The channel rules of the presence tests (the cluster's configuration file says the
/// same, see `procs::config_file`): `room` (live-only) and `hroom` (history) with
/// `presence` and `join_leave`; `staff` with presence but no client may subscribe; every
/// other namespace the defaults (no presence).
pub fn presence_rules() -> switchboard_gateway::permissions::ChannelRules {
    use switchboard_gateway::permissions::{Access, ChannelRules, NamespaceRules};
    let on = NamespaceRules { presence: true, join_leave: true, ..NamespaceRules::default() };
    let staff = NamespaceRules { subscribe: Access::Nobody, presence: true, ..NamespaceRules::default() };
    ChannelRules {
        namespaces: [("room".to_owned(), on), ("hroom".to_owned(), on), ("staff".to_owned(), staff)].into(),
        ..ChannelRules::default()
    }
}

/// Starts a dev node (gateway + gRPC API + in-process bus) on free ports, keeping
/// [`namespaces`]; its API is open.
pub async fn start_dev(gateway: GatewayConfig) -> Dev {
    Dev::start(dev_config(gateway), None).await.expect("dev node starts")
}

/// What [`start_dev`] starts: `gateway`, an open API on a free port, [`namespaces`].
fn dev_config(gateway: GatewayConfig) -> DevConfig {
    DevConfig {
        gateway,
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        api_keys: Default::default(),
        api_tls: None,
        reflection: true,
        namespaces: namespaces(),
    }
}

/// The metrics of one dev node ([`start_dev_metered`]), apart from every other node in
/// the test binary.
pub struct Metered(metrics_exporter_prometheus::PrometheusHandle);

impl Metered {
    /// `switchboard_gateway_limit_hits_total{limit="LIMIT"}`, 0 when it is not exposed.
    pub fn limit_hits(&self, limit: &str) -> u64 {
        self.value(&format!("{}{{limit=\"{limit}\"}}", switchboard_gateway::metrics::LIMIT_HITS_TOTAL))
    }

    /// Waits until `switchboard_gateway_limit_hits_total{limit="LIMIT"}` is `want` (some are
    /// counted as the connection ends, just after the client read its answer); fails, with
    /// the count, when it is not within [`DEADLINE`].
    pub async fn expect_limit_hits(&self, limit: &str, want: u64) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let got = self.limit_hits(limit);
            if got == want {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "limit {limit:?} counted {got} hits, not {want}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of the sample `series` (name and labels, as exposed), 0 when it is absent.
    pub fn value(&self, series: &str) -> u64 {
        let text = self.0.render();
        let line = text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' '));
        line.and_then(|v| v.trim().parse::<f64>().ok()).map_or(0, |v| v as u64)
    }

    /// The whole exposition, for failure messages.
    pub fn render(&self) -> String {
        self.0.render()
    }
}

/// [`start_dev`] with a Prometheus recorder of its own, also served on the node's
/// `/metrics`. It holds what the gateway's `Metrics` handles record (every limit hit,
/// connections, deliveries), which are created while the node starts; series named per
/// event in spawned tasks (disconnects by close code, auth failures, control's API calls)
/// go to the process's global recorder, none in the tests.
pub async fn start_dev_metered(gateway: GatewayConfig) -> (Dev, Metered) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let mut starting = std::pin::pin!(Dev::start(dev_config(gateway), Some(handle.clone())));
    // Every poll of the start-up runs with the node's recorder as the thread's own.
    let dev = std::future::poll_fn(|cx| metrics::with_local_recorder(&recorder, || starting.as_mut().poll(cx))).await;
    (dev.expect("dev node starts"), Metered(handle))
}

/// A control replica alone on an in-process bus with `namespaces`, serving its gRPC API
/// on a free port (no gateway): the API's history calls, until `switchboard dev` can be
/// configured with history. `broker` gives more nodes (a subscriber) on the same bus.
pub struct ApiNode {
    pub grpc: SocketAddr,
    pub control: switchboard_control::Control,
    pub broker: switchboard_bus::MemoryBroker,
    serving: tokio::task::JoinHandle<()>,
}

impl Drop for ApiNode {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// Starts an [`ApiNode`]; its API is open.
pub async fn start_api(namespaces: switchboard_bus::Namespaces) -> ApiNode {
    use std::sync::Arc;
    let broker = switchboard_bus::MemoryBroker::with_namespaces(namespaces);
    let bus: Arc<dyn switchboard_bus::Bus> = Arc::new(broker.connect(Arc::new(switchboard_bus::NoDelivery)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = listener.local_addr().unwrap();
    let config = switchboard_control::ControlConfig::new("api", grpc.to_string());
    let control = switchboard_control::Control::start(config, bus).await.expect("control starts");
    let serving = control.clone();
    let serving = tokio::spawn(async move {
        serving.serve(listener, std::future::pending()).await.expect("serves");
    });
    ApiNode { grpc, control, broker, serving }
}

pub fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

/// A connected client library session.
pub async fn client(addr: SocketAddr, encoding: Encoding) -> Client {
    Client::connect(ClientConfig::new(ws_url(addr)).encoding(encoding).reconnect(false)).await.expect("client connects")
}

/// The API key the control processes of the tests ask for ([`procs::control`]).
pub const API_KEY: &str = "test-api-key-0123456789abcdef";

/// The API client of the tests: every call carries [`API_KEY`] (an open dev node ignores it).
pub type Api = SwitchboardApiClient<InterceptedService<tonic::transport::Channel, fn(GrpcRequest) -> ApiResult>>;
type GrpcRequest = tonic::Request<()>;
type ApiResult = Result<GrpcRequest, tonic::Status>;

fn with_api_key(mut req: GrpcRequest) -> ApiResult {
    req.metadata_mut().insert("authorization", format!("Bearer {API_KEY}").parse().expect("ascii"));
    Ok(req)
}

/// A gRPC API client sending [`API_KEY`].
pub async fn grpc(addr: SocketAddr) -> Api {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap();
    let channel = channel.connect().await.expect("grpc connects");
    SwitchboardApiClient::with_interceptor(channel, with_api_key as fn(GrpcRequest) -> ApiResult)
}

/// A raw WebSocket client for sending arbitrary frames.
pub struct RawWs {
    pub ws: WebSocket<TokioIo<Upgraded>>,
}

/// What a raw client read.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Text(String),
    Binary(Vec<u8>),
    Close(u16, String),
    /// The connection ended without a close frame.
    Eof,
}

impl RawWs {
    /// Opens `/ws`, offering `subprotocol` if given.
    pub async fn connect(addr: SocketAddr, subprotocol: Option<&str>) -> RawWs {
        RawWs::connect_with(addr, "/ws", subprotocol.map(|p| ("Sec-WebSocket-Protocol", p)).as_slice()).await
    }

    /// Opens `path` (e.g. `/ws?token=…`) with extra request headers.
    pub async fn connect_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawWs {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut req = Request::builder()
            .method("GET")
            .uri(path)
            .header("Host", addr.to_string())
            .header("Upgrade", "websocket")
            .header("Connection", "upgrade")
            .header("Sec-WebSocket-Key", fastwebsockets::handshake::generate_key())
            .header("Sec-WebSocket-Version", "13");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let (mut ws, _) =
            fastwebsockets::handshake::client(&SpawnExecutor, req.body(Empty::<Bytes>::new()).unwrap(), stream)
                .await
                .expect("websocket handshake");
        ws.set_auto_close(false);
        ws.set_auto_pong(true);
        RawWs { ws }
    }

    /// Opens `/ws` (JSON) and sends connect.
    pub async fn connected(addr: SocketAddr) -> RawWs {
        RawWs::connected_with(RawWs::connect(addr, None).await).await
    }

    /// Sends connect on an open raw session.
    pub async fn connected_with(mut ws: RawWs) -> RawWs {
        ws.text(r#"{"id":1,"connect":{}}"#).await;
        let reply = ws.json().await;
        assert!(reply["connect"]["session"].is_string(), "connect reply: {reply}");
        ws
    }

    pub async fn text(&mut self, s: &str) {
        self.ws.write_frame(Frame::text(Payload::Owned(s.as_bytes().to_vec()))).await.unwrap();
    }

    pub async fn binary(&mut self, b: &[u8]) {
        self.ws.write_frame(Frame::binary(Payload::Owned(b.to_vec()))).await.unwrap();
    }

    /// The next data or close frame.
    pub async fn recv(&mut self) -> Received {
        loop {
            let frame = match tokio::time::timeout(DEADLINE, self.ws.read_frame()).await {
                Ok(Ok(f)) => f,
                Ok(Err(_)) => return Received::Eof,
                Err(_) => panic!("no frame within {DEADLINE:?}"),
            };
            match frame.opcode {
                OpCode::Text => return Received::Text(String::from_utf8(frame.payload.to_vec()).unwrap()),
                OpCode::Binary => return Received::Binary(frame.payload.to_vec()),
                OpCode::Close => {
                    let p = frame.payload.to_vec();
                    let code = if p.len() >= 2 { u16::from_be_bytes([p[0], p[1]]) } else { 1005 };
                    return Received::Close(code, String::from_utf8_lossy(p.get(2..).unwrap_or(&[])).into_owned());
                }
                _ => continue,
            }
        }
    }

    /// The next text frame, parsed as JSON.
    pub async fn json(&mut self) -> serde_json::Value {
        match self.recv().await {
            Received::Text(t) => serde_json::from_str(&t).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Expects the server to close with `code`.
    pub async fn expect_close(&mut self, code: u16) {
        match self.recv().await {
            Received::Close(c, reason) => assert_eq!(c, code, "closed with {c} {reason:?}, expected {code}"),
            other => panic!("expected close {code}, got {other:?}"),
        }
    }
}

/// Waits until `check` holds, polling every 20 ms, or panics with `what` after [`DEADLINE`].
///
/// `check` is any async closure: `async || node.gateway.connections() == 0`, or a closure
/// that returns a future (`|| { let mut api = api.clone(); async move { … } }`).
pub async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    eventually_within(what, DEADLINE, check).await
}

/// [`eventually`] with a deadline of its own, for conditions that take longer by design
/// (a fault healing, a lease expiring).
pub async fn eventually_within(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {within:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `switchboard` binary built by `cargo build` (the Makefile builds it before tests).
pub fn binary() -> PathBuf {
    workspace_binary("switchboard", "switchboard")
}

/// The path of binary `name` of workspace package `package` in the test's own profile,
/// built first if it is missing (`make test` builds every binary before the tests).
pub fn workspace_binary(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/e2e-<hash> → target/<profile>/<name>
    let path = exe.parent().and_then(|d| d.parent()).unwrap().join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", package, "--bin", name])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the {name} binary failed");
    }
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether `GET /readyz` on `addr` answers 200.
pub async fn readyz(addr: std::net::SocketAddr) -> bool {
    http_get(addr, "/readyz").await.is_some_and(|(status, _)| status == 200)
}

/// `GET path` on `addr` over plain HTTP/1.1: the status code and the body, or `None` when
/// nothing answers within 2 s.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.ok()?;
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out)).await;
    let status = out.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()))
}
