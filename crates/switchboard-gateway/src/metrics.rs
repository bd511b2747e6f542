//! The gateway's metrics: one closed list of names, described at start-up so every series
//! exists before traffic. Never a session, user or channel id as a label.

use metrics::{Counter, Gauge, describe_counter, describe_gauge};

pub const CONNECTIONS: &str = "switchboard_gateway_connections";
pub const CONNECTIONS_TOTAL: &str = "switchboard_gateway_connections_total";
pub const DISCONNECTS_TOTAL: &str = "switchboard_gateway_disconnects_total";
pub const MESSAGES_RECEIVED_TOTAL: &str = "switchboard_gateway_messages_received_total";
pub const PUBLICATIONS_TOTAL: &str = "switchboard_gateway_publications_total";
pub const DELIVERIES_TOTAL: &str = "switchboard_gateway_deliveries_total";
pub const LIMIT_HITS_TOTAL: &str = "switchboard_gateway_limit_hits_total";
pub const CHANNELS: &str = "switchboard_gateway_channels";
pub const BUS_SUBSCRIPTIONS: &str = "switchboard_gateway_bus_subscriptions";

/// The `limit` label values of [`LIMIT_HITS_TOTAL`].
pub const LIMITS: &[&str] = &[
    "message_size",
    "outbound_queue",
    "subscriptions",
    "connections",
    "connect_timeout",
    "pong_timeout",
    "handshake",
    "token",
    "pending_rpcs",
    "rpc_timeout",
    "header_bytes",
    "header_timeout",
    "user_id",
    "token_expired",
    "connections_per_ip",
    "connections_per_user",
    "connect_rate",
    "origin",
    "message_rate",
    "byte_rate",
    "channel_len",
];

/// Describes every metric. Call once, after installing the recorder.
pub fn describe() {
    describe_gauge!(CONNECTIONS, "Open WebSocket sessions on this gateway.");
    describe_counter!(CONNECTIONS_TOTAL, "WebSocket connections accepted since start.");
    describe_counter!(DISCONNECTS_TOTAL, "Sessions ended, by close code.");
    describe_counter!(MESSAGES_RECEIVED_TOTAL, "Client messages (data frames) received.");
    describe_counter!(PUBLICATIONS_TOTAL, "Publications received from the bus for local subscribers.");
    describe_counter!(DELIVERIES_TOTAL, "Publication frames queued to local sessions.");
    describe_counter!(LIMIT_HITS_TOTAL, "Requests or sessions refused or closed by a limit, by limit.");
    describe_gauge!(CHANNELS, "Channels with at least one local subscriber.");
    describe_gauge!(BUS_SUBSCRIPTIONS, "Channel subscriptions this gateway holds on the bus.");
}

/// Pre-registered handles for the hot paths (no registry lookup per message).
#[derive(Clone)]
pub struct Metrics {
    pub connections_total: Counter,
    pub messages_received: Counter,
    pub publications: Counter,
    pub deliveries: Counter,
    pub limit_message_size: Counter,
    pub limit_outbound_queue: Counter,
    pub limit_subscriptions: Counter,
    pub limit_connections: Counter,
    pub limit_connect_timeout: Counter,
    pub limit_pong_timeout: Counter,
    pub limit_handshake: Counter,
    pub limit_token: Counter,
    pub limit_pending_rpcs: Counter,
    pub limit_rpc_timeout: Counter,
    pub limit_header_bytes: Counter,
    pub limit_header_timeout: Counter,
    pub limit_user_id: Counter,
    pub limit_token_expired: Counter,
    pub limit_connections_per_ip: Counter,
    pub limit_connections_per_user: Counter,
    pub limit_connect_rate: Counter,
    pub limit_origin: Counter,
    pub limit_message_rate: Counter,
    pub limit_byte_rate: Counter,
    pub limit_channel_len: Counter,
    pub connections: Gauge,
    pub channels: Gauge,
    pub bus_subscriptions: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let limit = |l: &'static str| metrics::counter!(LIMIT_HITS_TOTAL, "limit" => l);
        Metrics {
            connections_total: metrics::counter!(CONNECTIONS_TOTAL),
            messages_received: metrics::counter!(MESSAGES_RECEIVED_TOTAL),
            publications: metrics::counter!(PUBLICATIONS_TOTAL),
            deliveries: metrics::counter!(DELIVERIES_TOTAL),
            limit_message_size: limit("message_size"),
            limit_outbound_queue: limit("outbound_queue"),
            limit_subscriptions: limit("subscriptions"),
            limit_connections: limit("connections"),
            limit_connect_timeout: limit("connect_timeout"),
            limit_pong_timeout: limit("pong_timeout"),
            limit_handshake: limit("handshake"),
            limit_token: limit("token"),
            limit_pending_rpcs: limit("pending_rpcs"),
            limit_rpc_timeout: limit("rpc_timeout"),
            limit_header_bytes: limit("header_bytes"),
            limit_header_timeout: limit("header_timeout"),
            limit_user_id: limit("user_id"),
            limit_token_expired: limit("token_expired"),
            limit_connections_per_ip: limit("connections_per_ip"),
            limit_connections_per_user: limit("connections_per_user"),
            limit_connect_rate: limit("connect_rate"),
            limit_origin: limit("origin"),
            limit_message_rate: limit("message_rate"),
            limit_byte_rate: limit("byte_rate"),
            limit_channel_len: limit("channel_len"),
            connections: metrics::gauge!(CONNECTIONS),
            channels: metrics::gauge!(CHANNELS),
            bus_subscriptions: metrics::gauge!(BUS_SUBSCRIPTIONS),
        }
    }

    /// Counts a session's end under its close code.
    pub fn disconnect(code: u16) {
        metrics::counter!(DISCONNECTS_TOTAL, "code" => code.to_string()).increment(1);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
