//! The command line. Every flag can also be set with the environment variable named in
//! `--help` (`SWITCHBOARD_…`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use switchboard_bench::parse_duration;

pub mod security;
pub use security::{ApiKeysArgs, ControlAuthArgs, NatsSecurityArgs, TlsArgs};

/// Switchboard: a horizontally scaled WebSocket pub/sub gateway.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `switchboard_gateway=debug`;
    /// else the config file's `log.level`, else `RUST_LOG`, else `info,async_nats=warn` (the
    /// NATS client's own messages are kept to warnings: switchboard logs its connection
    /// events itself, with the servers named).
    #[arg(long, global = true, env = "SWITCHBOARD_LOG")]
    pub log: Option<String>,
    /// Log line format on stderr: `text` (for people) or `json` (one object per line, with
    /// the span: connect, subscribe, publish, grpc); else the config file's `log.format`,
    /// else `text`.
    #[arg(long, global = true, env = "SWITCHBOARD_LOG_FORMAT", value_enum)]
    pub log_format: Option<crate::telemetry::LogFormat>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run gateway + control API + an in-process bus in one process (no NATS needed).
    Dev(DevArgs),
    /// Run a gateway: the WebSocket edge, relaying over NATS.
    Gateway(GatewayCmdArgs),
    /// Run a control replica: the backend gRPC API and a slice of the session registry.
    Control(ControlArgs),
    /// Subscribe to channels over WebSocket and print each publication as a JSON line.
    Sub(SubArgs),
    /// Publish JSON data to a channel through the gRPC API and print where it landed.
    ///
    /// With `--stream`, every line of stdin is one JSON value, published in order over one
    /// `PublishStream` call, with one `{"line":…,"channel":…,"offset":…,"epoch":…}` line
    /// printed per publication.
    Pub(PubArgs),
    /// Print a channel's history, one JSON line per publication (as `sub` prints them),
    /// through the gRPC API.
    ///
    /// Oldest first (newest first with `--reverse`); with `--since OFFSET --epoch EPOCH`,
    /// only what follows that position (precedes it, with `--reverse`). When the history
    /// does not continue from that position (it was trimmed or removed since, or the epoch
    /// changed), a note says so on stderr and the oldest (newest) kept are printed.
    History(HistoryArgs),
    /// Remove everything a channel's history keeps, through the gRPC API.
    HistoryRemove(HistoryRemoveArgs),
    /// List sessions (all, or one user's), one JSON line each, through the gRPC API.
    Sessions(SessionsArgs),
    /// List the sessions subscribed to a channel, one JSON line each, through the gRPC API.
    Presence(PresenceArgs),
    /// Send JSON data to one session or to every session of a user, through the gRPC API.
    ///
    /// Prints `{"sent":true,"sessions":1}` for `--session`, and `{"sent":true}` for `--user`:
    /// a send to a user is fire and forget on the bus, so no one counts the sessions it reaches.
    Send(SendArgs),
    /// Disconnect one session or every session of a user, through the gRPC API.
    Disconnect(DisconnectArgs),
    /// Check, create or describe a configuration file.
    Config(ConfigCmd),
    /// Mint a connect token (a JWT) for tries and tests.
    Token(TokenArgs),
    /// Load-test a gateway and report throughput, latency, loss and server cost.
    Bench(switchboard_bench::BenchArgs),
}

/// Where NATS is and how subjects are named.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URLs, comma-separated (any one is enough; the rest are for failover).
    /// Required, here or as `nats.urls` in the configuration file.
    #[arg(long = "nats", env = "SWITCHBOARD_NATS", value_delimiter = ',')]
    pub urls: Vec<String>,
    /// Prefix of every NATS subject (dot-separated tokens of [A-Za-z0-9_-]).
    #[arg(long, env = "SWITCHBOARD_SUBJECT_PREFIX", default_value = "sb")]
    pub subject_prefix: String,
    /// Time to wait for the first NATS connection at start-up; the process then exits with
    /// status 1, naming each URL and why it could not be reached.
    #[arg(long, env = "SWITCHBOARD_NATS_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub nats_connect_timeout: Duration,
    /// Interval between liveness round trips to the NATS server.
    #[arg(long, env = "SWITCHBOARD_NATS_PING_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub nats_ping_interval: Duration,
    /// Round trips in a row without an answer after which the NATS connection counts as dead:
    /// not ready, then a reconnect to another server (a frozen server is noticed within
    /// ping interval x (this + 1)).
    #[arg(long, env = "SWITCHBOARD_NATS_MAX_MISSED_PONGS", default_value_t = 2)]
    pub nats_max_missed_pongs: u32,
    #[command(flatten)]
    pub security: NatsSecurityArgs,
}

#[derive(Debug, Args)]
pub struct GatewayCmdArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// HTTP and WebSocket listen address (also serves /healthz, /readyz, /metrics).
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Also serve `/metrics`, `/healthz` and `/readyz` on this address (an admin port kept
    /// off the client path; it answers while the node drains); unset: not served.
    #[arg(long, env = "SWITCHBOARD_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Serve the demo page at `/`.
    #[arg(long, env = "SWITCHBOARD_PAGE")]
    pub page: bool,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// `wss`: TLS on the WebSocket listener.
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// gRPC (backend API) listen address.
    #[arg(long, env = "SWITCHBOARD_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,
    /// The address other parties should use to reach this replica's gRPC API (shown by
    /// `Info`); defaults to the listen address.
    #[arg(long, env = "SWITCHBOARD_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// This replica's id ([A-Za-z0-9_-]); random when unset.
    #[arg(long, env = "SWITCHBOARD_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// A gateway silent this long has its sessions dropped from the registry (at most 15s).
    #[arg(long, env = "SWITCHBOARD_GATEWAY_LEASE", default_value = "10s", value_parser = parse_duration)]
    pub gateway_lease: Duration,
    /// A control replica silent this long leaves the hash ring.
    #[arg(long, env = "SWITCHBOARD_REPLICA_LEASE", default_value = "3s", value_parser = parse_duration)]
    pub replica_lease: Duration,
    /// Time allowed for a query to another replica or a command to a gateway.
    #[arg(long, env = "SWITCHBOARD_QUERY_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub query_timeout: Duration,
    /// Serve `/metrics` (Prometheus), `/healthz` and `/readyz` over HTTP on this address
    /// (the admin port; `--admin-listen` is the same flag); unset: not served.
    #[arg(long, visible_alias = "admin-listen", env = "SWITCHBOARD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// TLS on the gRPC listener (`--tls-client-ca`: mutual TLS).
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub auth: ControlAuthArgs,
    #[command(flatten)]
    pub balance: BalanceArgs,
}

/// Moving sessions from loaded gateways to the others after a membership change.
#[derive(Debug, Clone, Args)]
pub struct BalanceArgs {
    /// Do not balance sessions across gateways.
    #[arg(long, env = "SWITCHBOARD_NO_BALANCE")]
    pub no_balance: bool,
    /// How often the deciding replica compares the gateways' sessions.
    #[arg(long, env = "SWITCHBOARD_BALANCE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub balance_interval: Duration,
    /// A gateway is out of balance when its sessions differ from the mean by more than this
    /// percentage of the mean (1 to 100).
    #[arg(long, env = "SWITCHBOARD_BALANCE_TOLERANCE_PERCENT", default_value_t = 10)]
    pub balance_tolerance_percent: u32,
    /// ... and by at least this many sessions.
    #[arg(long, env = "SWITCHBOARD_BALANCE_MIN_DIFFERENCE", default_value_t = 10)]
    pub balance_min_difference: u32,
    /// The most of a gateway's sessions one round asks to move, in percent (1 to 100).
    #[arg(long, env = "SWITCHBOARD_BALANCE_MAX_SHARE_PERCENT", default_value_t = 25)]
    pub balance_max_share_percent: u32,
    /// A gateway spreads the closes (4009) of one round over this window; no round follows
    /// within it.
    #[arg(long, env = "SWITCHBOARD_BALANCE_WINDOW", default_value = "10s", value_parser = parse_duration)]
    pub balance_window: Duration,
    /// Rounds wait while a gateway is younger than this (not yet in rotation, still filling).
    #[arg(long, env = "SWITCHBOARD_BALANCE_WARMUP", default_value = "15s", value_parser = parse_duration)]
    pub balance_warmup: Duration,
}

/// Where the gRPC API is, and how long to wait for it.
#[derive(Debug, Clone, Args)]
pub struct GrpcArgs {
    /// gRPC API URL (`http://` or `https://`), or `host:port` for `http://host:port`.
    #[arg(long, env = "SWITCHBOARD_GRPC", default_value = "http://127.0.0.1:50051")]
    pub grpc: String,
    /// Time allowed for each call, connecting included; UNAVAILABLE is retried within it.
    #[arg(long, env = "SWITCHBOARD_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// API key, sent as `authorization: Bearer <key>` on every call.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// CA certificates (PEM) to trust for an https:// URL instead of the system's roots.
    #[arg(long, env = "SWITCHBOARD_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// A client certificate (PEM) for an https:// API that verifies clients (mutual TLS,
    /// `--tls-client-ca` on control); with --key.
    #[arg(long, env = "SWITCHBOARD_CERT", requires = "key")]
    pub cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM); with --cert.
    #[arg(long, env = "SWITCHBOARD_KEY", requires = "cert")]
    pub key: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub grpc: GrpcArgs,
    /// Only this user's sessions.
    #[arg(long)]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct PresenceArgs {
    #[command(flatten)]
    pub grpc: GrpcArgs,
    pub channel: String,
}

/// One session or every session of a user.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// A session id.
    #[arg(long)]
    pub session: Option<String>,
    /// A user id: every session of the user, on every gateway.
    #[arg(long)]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub grpc: GrpcArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Data: one JSON value.
    pub data: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    #[command(flatten)]
    pub grpc: GrpcArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Close code, 4000–4999 (4500–4999 tell the client not to reconnect).
    #[arg(long, default_value_t = 4005)]
    pub code: u32,
    /// Close reason (at most 123 bytes).
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// HTTP and WebSocket listen address.
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// gRPC (backend API) listen address.
    #[arg(long, env = "SWITCHBOARD_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,
    /// Do not serve the demo page at `/` (nor the chat example at `/chat/`).
    #[arg(long, env = "SWITCHBOARD_NO_PAGE")]
    pub no_page: bool,
    /// Serve `GET /demo/token?user=NAME`, which mints a 10-minute connect token for any user
    /// name, signed with a secret drawn at start (the chat example's nicknames). For trying
    /// it only: anyone who reaches the port can be anyone. `gateway` has no such endpoint.
    #[arg(long, env = "SWITCHBOARD_DEMO_TOKENS")]
    pub demo_tokens: bool,
    /// Serve the RFC 6455 echo endpoint at /echo (for the Autobahn TestSuite; never in production).
    #[arg(long, hide = true)]
    pub test_echo_endpoint: bool,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// `wss`: TLS on the WebSocket listener.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Optional here: without keys the API is open (with a warning), unless
    /// `control.allow_unauthenticated_api = false` in the config file.
    #[command(flatten)]
    pub api: ControlAuthArgs,
}

/// Gateway limits and timers, shared by every command that runs a gateway.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// This node's id (prefix of its session ids); random when unset.
    #[arg(long, env = "SWITCHBOARD_NODE_ID")]
    pub node_id: Option<String>,
    /// Largest client message in bytes; larger ones close the session with 1009.
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_SIZE", default_value_t = 65536)]
    pub max_message_size: usize,
    /// Bytes queued to one session before it is closed as a slow consumer (4002).
    #[arg(long, env = "SWITCHBOARD_MAX_QUEUE_BYTES", default_value_t = 1 << 20)]
    pub max_queue_bytes: usize,
    /// Channels one session may subscribe to.
    #[arg(long, env = "SWITCHBOARD_MAX_SUBSCRIPTIONS", default_value_t = 512)]
    pub max_subscriptions: usize,
    /// Concurrent WebSocket connections on this node (HTTP 503 beyond).
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,
    /// Time for the HTTP upgrade and then for the connect command (close 4003).
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Interval between server pings.
    #[arg(long, env = "SWITCHBOARD_PING_INTERVAL", default_value = "25s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Time after a server ping within which the client must send something (else close 4004).
    #[arg(long, env = "SWITCHBOARD_PONG_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub pong_timeout: Duration,
    /// Window over which sessions are asked to reconnect when the node drains.
    #[arg(long, env = "SWITCHBOARD_DRAIN_WINDOW", default_value = "5s", value_parser = parse_duration)]
    pub drain_window: Duration,
    /// Refuse client publishes (error 103); backends still publish through gRPC.
    #[arg(long, env = "SWITCHBOARD_NO_CLIENT_PUBLISH")]
    pub no_client_publish: bool,
    /// HMAC secret for HS256 connect tokens (`sub` = user, `exp` required): a shorthand for
    /// one `[[auth.keys]]` entry. Other algorithms, several keys and JWKS: the config file.
    #[arg(long, env = "SWITCHBOARD_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Time a client `rpc` waits for a backend's reply (error 112 beyond).
    #[arg(long, env = "SWITCHBOARD_RPC_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub rpc_timeout: Duration,
    /// Time a client `presence` or `presence_stats` waits for a control replica's answer
    /// (error 110 beyond).
    #[arg(long, env = "SWITCHBOARD_PRESENCE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub presence_timeout: Duration,
    /// Most `rpc` commands one session may have waiting (error 109 beyond).
    #[arg(long, env = "SWITCHBOARD_MAX_PENDING_RPCS", default_value_t = 16)]
    pub max_pending_rpcs: usize,
    /// Most commands one session may have waiting on the bus (at least 1); at the limit the
    /// session stops reading its socket until one completes.
    #[arg(long, env = "SWITCHBOARD_MAX_PENDING_COMMANDS", default_value_t = 256)]
    pub max_pending_commands: usize,
    /// Most publications a subscribe with `recover` replays (at least 1); further behind it
    /// answers `recovered: false`.
    #[arg(long, env = "SWITCHBOARD_MAX_RECOVERY", default_value_t = 10_000)]
    pub max_recovery: usize,
    /// Longest user id (a token's `sub`) in bytes, at most 256; a longer one is refused (4501).
    #[arg(long, env = "SWITCHBOARD_MAX_USER_ID_LEN", default_value_t = 256)]
    pub max_user_id_len: usize,
    /// Most bytes of an HTTP request head (request line and headers), at least 8192; a
    /// longer one gets 431.
    #[arg(long, env = "SWITCHBOARD_MAX_HEADER_BYTES", default_value_t = 16384)]
    pub max_header_bytes: usize,
    /// WebSocket connections from one client IP (IPv6: one /64) on this node; beyond: HTTP 429. 0: no limit.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP", default_value_t = 1000)]
    pub max_connections_per_ip: usize,
    /// Sessions of one user on this node; a connect beyond closes with 4007. 0: no limit.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_USER", default_value_t = 100)]
    pub max_connections_per_user: usize,
    /// WebSocket upgrades per second from one client IP, on average; beyond: HTTP 429. 0: no limit.
    #[arg(long, env = "SWITCHBOARD_CONNECT_RATE_PER_IP", default_value_t = 50)]
    pub connect_rate_per_ip: u32,
    /// WebSocket upgrades one client IP may make at once before --connect-rate-per-ip applies.
    #[arg(long, env = "SWITCHBOARD_CONNECT_BURST_PER_IP", default_value_t = 100)]
    pub connect_burst_per_ip: u32,
    /// Client messages per second per session, on average; beyond: error 109, and close 4008
    /// past twice the rate. 0: no limit.
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGES_PER_SEC", default_value_t = 100)]
    pub max_messages_per_sec: u32,
    /// Client messages one session may send at once before --max-messages-per-sec applies.
    #[arg(long, env = "SWITCHBOARD_MESSAGE_BURST", default_value_t = 200)]
    pub message_burst: u32,
    /// Client payload bytes per second per session, on average; beyond: error 109, and close
    /// 4008 past twice the rate. 0: no limit.
    #[arg(long, env = "SWITCHBOARD_MAX_BYTES_PER_SEC", default_value_t = 1 << 20)]
    pub max_bytes_per_sec: u64,
    /// Client payload bytes one session may send at once before --max-bytes-per-sec applies
    /// (at least --max-message-size).
    #[arg(long, env = "SWITCHBOARD_BYTES_BURST", default_value_t = 2 << 20)]
    pub bytes_burst: u64,
    /// Longest channel name a client may subscribe or publish to, 1 to 255 bytes (error 104 beyond).
    #[arg(long, env = "SWITCHBOARD_MAX_CHANNEL_LEN", default_value_t = 255)]
    pub max_channel_len: usize,
    /// Origins allowed to open a WebSocket, comma-separated: `https://app.example.com`,
    /// `https://*.example.com` (subdomains) or `*`; others get HTTP 403, a request without
    /// Origin passes. Unset: any origin.
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Proxies (IPs or CIDRs, comma-separated) whose Forwarded / X-Forwarded-For header names
    /// the client; empty (`--trusted-proxies=`): trust none.
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_delimiter = ',', default_value = "127.0.0.0/8,::1")]
    pub trusted_proxies: Vec<String>,
    /// Let sessions connect without a token (user ""). A gateway with no token keys refuses
    /// to start without this; `dev` allows anonymous sessions unless the config file says not.
    #[arg(long, env = "SWITCHBOARD_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// CA certificates (PEM) an `https://` `auth.jwks_url` must chain to, instead of the
    /// system's roots (a private identity provider).
    #[arg(long, env = "SWITCHBOARD_JWKS_CA")]
    pub jwks_ca: Option<PathBuf>,
}

/// The configuration file.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// A TOML configuration file (see `switchboard config init`); flags and environment
    /// variables override what it says.
    #[arg(long = "config", env = "SWITCHBOARD_CONFIG")]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ConfigCmd {
    #[command(subcommand)]
    pub action: ConfigAction,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Check what a server would run with (file, environment, flags), by the same code as
    /// its start-up: exit 0, or 64 with the errors. E.g. `config check gateway --config F`.
    Check {
        #[command(subcommand)]
        role: Box<Role>,
    },
    /// Print a complete, commented configuration file with every default.
    Init,
    /// Print the JSON Schema of the configuration file.
    Schema,
}

/// A server role, with its flags.
#[derive(Debug, Subcommand)]
pub enum Role {
    Dev(DevArgs),
    Gateway(GatewayCmdArgs),
    Control(ControlArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user (`sub` claim).
    #[arg(long)]
    pub user: String,
    /// Time to live (`exp` = now + this).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// A channel pattern the token grants subscribing to (repeat; `chat:*` for a prefix).
    #[arg(long = "channel")]
    pub channels: Vec<String>,
    /// A channel pattern the token grants publishing on (repeat).
    #[arg(long = "publish")]
    pub publish: Vec<String>,
    /// A channel pattern whose presence the token grants without subscribing (repeat).
    #[arg(long = "presence")]
    pub presence: Vec<String>,
    /// A channel pattern whose history the token grants without subscribing (repeat).
    #[arg(long = "history")]
    pub history: Vec<String>,
    /// The `iss` claim; default `auth.issuer` of `--config`, else none.
    #[arg(long)]
    pub iss: Option<String>,
    /// The `aud` claim; default `auth.audience` of `--config`, else none.
    #[arg(long)]
    pub aud: Option<String>,
    /// Client info (any JSON) for the `info` claim.
    #[arg(long)]
    pub info: Option<String>,
    /// HMAC secret to sign with (HS256); default: the first HMAC key of `--config`.
    #[arg(long, env = "SWITCHBOARD_TOKEN_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// A PEM private key to sign with instead (RSA, EC or Ed25519).
    #[arg(long, conflicts_with = "secret")]
    pub private_key: Option<PathBuf>,
    /// The algorithm; default HS256 for a secret, RS256, ES256 or EdDSA for a private key.
    #[arg(long)]
    pub alg: Option<String>,
    /// The `kid` header; default the `kid` of the configured key used.
    #[arg(long)]
    pub kid: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// The entries of a comma-separated list that are not blank.
pub fn non_empty(list: &[String]) -> Vec<String> {
    list.iter().map(|e| e.trim()).filter(|e| !e.is_empty()).map(str::to_owned).collect()
}

#[derive(Debug, Args)]
pub struct SubArgs {
    /// Gateway WebSocket URL (`ws://` or `wss://`).
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// CA certificates (PEM) to trust for a wss:// URL instead of the system's roots.
    #[arg(long, env = "SWITCHBOARD_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// Exit after this many publications.
    #[arg(long, env = "SWITCHBOARD_COUNT")]
    pub count: Option<u64>,
    /// Use the protobuf encoding instead of JSON.
    #[arg(long, env = "SWITCHBOARD_PROTOBUF")]
    pub protobuf: bool,
    /// Connect token (a JWT when the gateway checks tokens).
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true, default_value = "")]
    pub token: String,
    /// Time allowed to connect, and for each subscribe; temporary failures are retried
    /// within it. A drop later on is retried until a close code says not to.
    #[arg(long, env = "SWITCHBOARD_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Channels to subscribe to.
    #[arg(required = true)]
    pub channels: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PubArgs {
    #[command(flatten)]
    pub grpc: GrpcArgs,
    /// Channel to publish to.
    pub channel: String,
    /// Data: one JSON value.
    #[arg(required_unless_present = "stream", conflicts_with = "stream")]
    pub data: Option<String>,
    /// A retry with the same key on the same channel within 2 minutes is stored and
    /// delivered once, and answered with the first one's position (namespaces with history
    /// only). At most 256 bytes. With `--stream`, KEY-LINE for each line.
    #[arg(long, env = "SWITCHBOARD_IDEMPOTENCY_KEY")]
    pub idempotency_key: Option<String>,
    /// Publish every line of stdin (one JSON value each; blank lines skipped) in order, over
    /// one stream; `--timeout` bounds the wait for each answer.
    #[arg(long)]
    pub stream: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub grpc: GrpcArgs,
    pub channel: String,
    /// Only publications after this offset (before it, with `--reverse`).
    #[arg(long, requires = "epoch")]
    pub since: Option<u64>,
    /// The epoch of `--since`.
    #[arg(long, requires = "since")]
    pub epoch: Option<String>,
    /// At most this many publications (read in pages of at most 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
    /// Newest first.
    #[arg(long)]
    pub reverse: bool,
}

#[derive(Debug, Args)]
pub struct HistoryRemoveArgs {
    #[command(flatten)]
    pub grpc: GrpcArgs,
    pub channel: String,
}

impl Command {
    /// The configuration file a server role (or `config check`, or `token`) is given.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        let arg = match self {
            Command::Dev(a) => &a.config,
            Command::Gateway(a) => &a.config,
            Command::Control(a) => &a.config,
            Command::Token(a) => &a.config,
            Command::Config(ConfigCmd { action: ConfigAction::Check { role } }) => match role.as_ref() {
                Role::Dev(a) => &a.config,
                Role::Gateway(a) => &a.config,
                Role::Control(a) => &a.config,
            },
            _ => return None,
        };
        arg.path.as_deref()
    }
}
