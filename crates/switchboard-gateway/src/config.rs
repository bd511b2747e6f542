//! Gateway settings. The binary maps its flags onto this struct; tests build it directly.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_tls::TlsFiles;
use switchboard_wire::ids::MAX_USER_ID_LEN;

/// How a gateway behaves. Every limit has a default here, a flag in the binary, a metric
/// (`switchboard_gateway_limit_hits_total{limit=…}`) and a test.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen for HTTP and WebSocket. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// This node's id, the prefix of its session ids. Default: random.
    pub node_id: String,
    /// Largest client message, bytes (close 1009 beyond). Default 65536.
    pub max_message_size: usize,
    /// Most bytes queued to one connection before it is closed as a slow consumer (4002).
    /// Default 1 MiB.
    pub max_queue_bytes: usize,
    /// Most channels one session may subscribe to (error 109 beyond). Default 512.
    pub max_subscriptions: usize,
    /// Most concurrent WebSocket connections on this node (HTTP 503 beyond). Default 100000.
    pub max_connections: usize,
    /// Time allowed for the HTTP upgrade request and then for the connect command (4003).
    /// Default 10 s.
    pub handshake_timeout: Duration,
    /// Interval between server pings. Default 25 s.
    pub ping_interval: Duration,
    /// Time after a server ping within which the client must send something (a pong or
    /// any frame), else the session is closed (4004). Default 10 s.
    pub pong_timeout: Duration,
    /// Window over which sessions are asked to reconnect when the node drains. Default 5 s.
    pub drain_window: Duration,
    /// Whether clients may publish (the per-namespace permissions replace this once
    /// authentication exists). Default true.
    pub client_publish: bool,
    /// Whether to serve the demo page at `/`. Default false (on in `switchboard dev`).
    pub serve_page: bool,
    /// HMAC secret for HS256 connect tokens (JWT; `sub` is the user, `exp` is required).
    /// When unset every session is anonymous (user ""). Default unset.
    pub token_secret: Option<String>,
    /// Time a client `rpc` waits for a backend's reply (error 112 beyond). Default 5 s.
    pub rpc_timeout: Duration,
    /// Most `rpc` commands one session may have waiting (error 109 beyond). Default 16.
    pub max_pending_rpcs: usize,
    /// Longest user id (a token's `sub`), bytes; a longer one is refused at connect (4501).
    /// At most [`MAX_USER_ID_LEN`] (256), the default: user ids travel in bus subjects.
    pub max_user_id_len: usize,
    /// Most bytes of an HTTP request head (request line and headers); a longer head gets
    /// `431`. Default 16 KiB, at least 8 KiB.
    pub max_header_bytes: usize,
    /// Serve `wss` (TLS) instead of `ws` with this certificate and key, reloaded when the
    /// files change; with `client_ca`, clients need a certificate (mutual TLS). Default
    /// unset (plain `ws`; TLS is then usually terminated by an ingress).
    pub tls: Option<TlsFiles>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            node_id: random_node_id(),
            max_message_size: 64 * 1024,
            max_queue_bytes: 1024 * 1024,
            max_subscriptions: 512,
            max_connections: 100_000,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(10),
            drain_window: Duration::from_secs(5),
            client_publish: true,
            serve_page: false,
            token_secret: None,
            rpc_timeout: Duration::from_secs(5),
            max_pending_rpcs: 16,
            max_user_id_len: MAX_USER_ID_LEN,
            max_header_bytes: 16 * 1024,
            tls: None,
        }
    }
}

/// The smallest request-head bound hyper allows.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;

impl GatewayConfig {
    /// Checks the settings that have a range; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_user_id_len == 0 || self.max_user_id_len > MAX_USER_ID_LEN {
            return Err(format!("max_user_id_len must be 1 to {MAX_USER_ID_LEN}, not {}", self.max_user_id_len));
        }
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return Err(format!("max_header_bytes must be at least {MIN_HEADER_BYTES}, not {}", self.max_header_bytes));
        }
        if let Some(files) = &self.tls {
            // The same loading as at start-up, without the reloading.
            let once = TlsFiles { reload_interval: Duration::ZERO, ..files.clone() };
            switchboard_tls::ServerTls::load(&once, crate::tls::ALPN).map_err(|e| format!("tls: {e}"))?;
        }
        Ok(())
    }
}

/// A random node id: `g` and 7 characters of [a-z0-9].
pub fn random_node_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    std::iter::once('g').chain((0..7).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)).collect()
}
