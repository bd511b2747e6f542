//! The command line. Every flag can also be set with the environment variable named in
//! `--help` (`SWITCHBOARD_…`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use switchboard_gateway::GatewayConfig;

use crate::duration;

/// Switchboard: a horizontally scaled WebSocket pub/sub gateway.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `switchboard_gateway=debug`.
    #[arg(long, global = true, env = "SWITCHBOARD_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run gateway + control API + an in-process bus in one process (no NATS needed).
    Dev(DevArgs),
    /// Subscribe to channels over WebSocket and print each publication as a JSON line.
    Sub(SubArgs),
    /// Publish JSON data to a channel through the gRPC API and print where it landed.
    Pub(PubArgs),
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// HTTP and WebSocket listen address.
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// gRPC (backend API) listen address.
    #[arg(long, env = "SWITCHBOARD_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,
    /// Do not serve the demo page at `/`.
    #[arg(long, env = "SWITCHBOARD_NO_PAGE")]
    pub no_page: bool,
    #[command(flatten)]
    pub gateway: GatewayArgs,
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
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = duration::parse)]
    pub handshake_timeout: Duration,
    /// Interval between server pings.
    #[arg(long, env = "SWITCHBOARD_PING_INTERVAL", default_value = "25s", value_parser = duration::parse)]
    pub ping_interval: Duration,
    /// Time after a server ping within which the client must send something (else close 4004).
    #[arg(long, env = "SWITCHBOARD_PONG_TIMEOUT", default_value = "10s", value_parser = duration::parse)]
    pub pong_timeout: Duration,
    /// Window over which sessions are asked to reconnect when the node drains.
    #[arg(long, env = "SWITCHBOARD_DRAIN_WINDOW", default_value = "5s", value_parser = duration::parse)]
    pub drain_window: Duration,
    /// Refuse client publishes (error 103); backends still publish through gRPC.
    #[arg(long, env = "SWITCHBOARD_NO_CLIENT_PUBLISH")]
    pub no_client_publish: bool,
}

impl GatewayArgs {
    pub fn config(&self, listen: SocketAddr) -> GatewayConfig {
        let defaults = GatewayConfig::default();
        GatewayConfig {
            listen,
            node_id: self.node_id.clone().unwrap_or(defaults.node_id),
            max_message_size: self.max_message_size,
            max_queue_bytes: self.max_queue_bytes,
            max_subscriptions: self.max_subscriptions,
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout,
            ping_interval: self.ping_interval,
            pong_timeout: self.pong_timeout,
            drain_window: self.drain_window,
            client_publish: !self.no_client_publish,
            serve_page: false,
        }
    }
}

#[derive(Debug, Args)]
pub struct SubArgs {
    /// Gateway WebSocket URL.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Exit after this many publications.
    #[arg(long)]
    pub count: Option<u64>,
    /// Use the protobuf encoding instead of JSON.
    #[arg(long)]
    pub protobuf: bool,
    /// Channels to subscribe to.
    #[arg(required = true)]
    pub channels: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PubArgs {
    /// gRPC API URL.
    #[arg(long, env = "SWITCHBOARD_GRPC", default_value = "http://127.0.0.1:50051")]
    pub grpc: String,
    /// Channel to publish to.
    pub channel: String,
    /// Data: one JSON value.
    pub data: String,
}
