//! Gateway settings. The binary maps its flags onto this struct; tests build it directly.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_tls::TlsFiles;
use switchboard_wire::channel::MAX_CHANNEL_LEN;
use switchboard_wire::ids::MAX_USER_ID_LEN;

use crate::auth::AuthConfig;
use crate::permissions::ChannelRules;

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
    /// Whether clients may publish at all; when true, the namespace rules decide. Default
    /// true.
    pub client_publish: bool,
    /// Whether to serve the demo page at `/` and the chat example at `/chat/`. Default
    /// false (on in `switchboard dev`).
    pub serve_page: bool,
    /// Mint connect tokens for any user name at `GET /demo/token` (the chat example's
    /// nicknames). Only `switchboard dev --demo-tokens` sets it. Default unset (no endpoint).
    pub demo_tokens: Option<crate::demo::DemoTokens>,
    /// How connect tokens are checked (see `auth`). Default: no keys, so every session is
    /// anonymous; the binary refuses that unless `allow_anonymous` says it is meant.
    pub auth: AuthConfig,
    /// Who may subscribe and publish, per namespace (see `permissions`). Default: anyone,
    /// on every channel.
    pub channels: ChannelRules,
    /// Time a client `rpc` waits for a backend's reply (error 112 beyond). Default 5 s.
    pub rpc_timeout: Duration,
    /// Time a client `presence` or `presence_stats` waits for a control replica's answer
    /// (error 110 beyond). Default 5 s.
    pub presence_timeout: Duration,
    /// Most `rpc` commands one session may have waiting (error 109 beyond). Default 16.
    pub max_pending_rpcs: usize,
    /// Most commands one session may have waiting on the bus (subscribe, unsubscribe,
    /// publish, send, and a backend's subscribe and unsubscribe, with the registry events
    /// they send); at the limit the session stops reading its socket until one completes.
    /// At least 1. Default 256.
    pub max_pending_commands: usize,
    /// Most publications a subscribe with `recover` replays, and keeps for itself while it
    /// reads the history; further behind, it answers `recovered: false`. At least 1.
    /// Default 10,000.
    pub max_recovery: usize,
    /// Longest user id (a token's `sub`), bytes; a longer one is refused at connect (4501).
    /// At most [`MAX_USER_ID_LEN`] (256), the default: user ids travel in bus subjects.
    pub max_user_id_len: usize,
    /// Most bytes of an HTTP request head (request line and headers); a longer head gets
    /// `431`. Default 16 KiB, at least 8 KiB.
    pub max_header_bytes: usize,
    /// Serve the RFC 6455 echo endpoint at `/echo`, for the Autobahn TestSuite; default
    /// false; never in production.
    pub echo: bool,
    /// Serve `/metrics` on the client port too. Default true; the binary turns it off when
    /// an admin port is set, so that a client port exposed to the internet does not show
    /// the node's metrics.
    pub metrics_on_listen: bool,
    /// Most WebSocket connections from one client IP (an IPv6 client counts by its /64) on
    /// this node; an upgrade beyond gets `429`. 0: no limit. Default 1000.
    pub max_connections_per_ip: usize,
    /// Most sessions of one user (a token's `sub`) on this node; a `connect` beyond closes
    /// the session with 4007. Anonymous sessions are not counted. 0: no limit. Default 100.
    pub max_connections_per_user: usize,
    /// Upgrades one client IP may make per second, on average (token bucket); beyond gets
    /// `429` with `Retry-After`. 0: no limit. Default 50.
    pub connect_rate_per_ip: u32,
    /// Upgrades one client IP may make at once before [`connect_rate_per_ip`] applies.
    /// At least 1. Default 100.
    ///
    /// [`connect_rate_per_ip`]: GatewayConfig::connect_rate_per_ip
    pub connect_burst_per_ip: u32,
    /// Client messages (data frames) one session may send per second, on average; beyond,
    /// a command gets error 109 and is not run. 0: no limit. Default 100.
    pub max_messages_per_sec: u32,
    /// Client messages one session may send at once before [`max_messages_per_sec`]
    /// applies. At least 1. Default 200.
    ///
    /// [`max_messages_per_sec`]: GatewayConfig::max_messages_per_sec
    pub message_burst: u32,
    /// Payload bytes of client messages one session may send per second, on average;
    /// beyond, a command gets error 109 and is not run. 0: no limit. Default 1 MiB.
    pub max_bytes_per_sec: u64,
    /// Payload bytes one session may send at once before [`max_bytes_per_sec`] applies. At
    /// least [`max_message_size`]. Default 2 MiB.
    ///
    /// [`max_bytes_per_sec`]: GatewayConfig::max_bytes_per_sec
    /// [`max_message_size`]: GatewayConfig::max_message_size
    pub bytes_burst: u64,
    /// Longest channel name a client may subscribe or publish to, bytes (error 104
    /// beyond); 1 to 255. Default 255, the grammar's own bound.
    pub max_channel_len: usize,
    /// Origins allowed to open a WebSocket (`Origin` header): exact origins such as
    /// `https://app.example.com`, `*` (any), or `https://*.example.com` (any subdomain). Any
    /// other origin gets `403`; a request without `Origin` (not a browser) is allowed.
    /// Empty: any origin. Default empty.
    pub allowed_origins: Vec<String>,
    /// Peers whose `Forwarded` or `X-Forwarded-For` header names the client, as IPs or
    /// CIDRs (`10.0.0.0/8`, `::1`); from any other peer those headers are ignored and the
    /// client IP is the peer's. Default `127.0.0.0/8` and `::1` (a proxy on the same host).
    pub trusted_proxies: Vec<String>,
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
            demo_tokens: None,
            auth: AuthConfig::default(),
            channels: ChannelRules::default(),
            rpc_timeout: Duration::from_secs(5),
            presence_timeout: Duration::from_secs(5),
            max_pending_rpcs: 16,
            max_pending_commands: 256,
            max_recovery: 10_000,
            max_user_id_len: MAX_USER_ID_LEN,
            max_header_bytes: 16 * 1024,
            echo: false,
            metrics_on_listen: true,
            max_connections_per_ip: 1000,
            max_connections_per_user: 100,
            connect_rate_per_ip: 50,
            connect_burst_per_ip: 100,
            max_messages_per_sec: 100,
            message_burst: 200,
            max_bytes_per_sec: 1024 * 1024,
            bytes_burst: 2 * 1024 * 1024,
            max_channel_len: MAX_CHANNEL_LEN,
            allowed_origins: Vec::new(),
            trusted_proxies: vec!["127.0.0.0/8".into(), "::1".into()],
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
        crate::auth::Verifier::check(&self.auth)?;
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return Err(format!("max_header_bytes must be at least {MIN_HEADER_BYTES}, not {}", self.max_header_bytes));
        }
        if self.max_channel_len == 0 || self.max_channel_len > MAX_CHANNEL_LEN {
            return Err(format!("max_channel_len must be 1 to {MAX_CHANNEL_LEN}, not {}", self.max_channel_len));
        }
        if self.max_pending_commands == 0 {
            return Err("max_pending_commands must be at least 1".into());
        }
        if self.max_recovery == 0 {
            return Err("max_recovery must be at least 1".into());
        }
        if self.connect_burst_per_ip == 0 {
            return Err("connect_burst_per_ip must be at least 1".into());
        }
        if self.message_burst == 0 {
            return Err("message_burst must be at least 1".into());
        }
        if self.max_bytes_per_sec > 0 && self.bytes_burst < self.max_message_size as u64 {
            return Err(format!(
                "bytes_burst must be at least max_message_size ({}), not {}: a message that size could never pass",
                self.max_message_size, self.bytes_burst
            ));
        }
        for origin in &self.allowed_origins {
            crate::origin::OriginPattern::parse(origin).map_err(|e| format!("allowed_origins: {e}"))?;
        }
        for proxy in &self.trusted_proxies {
            crate::client_ip::Cidr::parse(proxy).map_err(|e| format!("trusted_proxies: {e}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_out_of_range_are_refused_with_the_setting_named() {
        let d = GatewayConfig::default;
        assert_eq!(d().validate(), Ok(()));
        let cases: Vec<(GatewayConfig, &str)> = vec![
            (GatewayConfig { max_channel_len: 0, ..d() }, "max_channel_len"),
            (GatewayConfig { max_channel_len: 256, ..d() }, "max_channel_len"),
            (GatewayConfig { max_pending_commands: 0, ..d() }, "max_pending_commands"),
            (GatewayConfig { max_recovery: 0, ..d() }, "max_recovery"),
            (GatewayConfig { connect_burst_per_ip: 0, ..d() }, "connect_burst_per_ip"),
            (GatewayConfig { message_burst: 0, ..d() }, "message_burst"),
            (GatewayConfig { bytes_burst: 1000, ..d() }, "bytes_burst"),
            (GatewayConfig { allowed_origins: vec!["example.com".into()], ..d() }, "allowed_origins"),
            (GatewayConfig { trusted_proxies: vec!["10.0.0.0/40".into()], ..d() }, "trusted_proxies"),
        ];
        for (config, setting) in cases {
            let e = config.validate().unwrap_err();
            assert!(e.starts_with(setting), "{setting}: {e}");
        }
        let off = GatewayConfig { max_bytes_per_sec: 0, bytes_burst: 0, connect_rate_per_ip: 0, ..d() };
        assert_eq!(off.validate(), Ok(()), "a rate that is off needs no burst");
    }
}
