//! The gateway's metrics: one closed list of names, described at start-up so every series
//! exists before traffic. Never a session, user or channel id as a label.
//!
//! Nothing here costs a registry lookup on the delivery path: [`Metrics::new`] registers
//! every handle the hot paths touch, and the only histogram near the fan-out
//! ([`DELIVERY_DURATION_SECONDS`]) records one batch in [`DELIVERY_SAMPLE`].

use metrics::{Counter, Gauge, Histogram, describe_counter, describe_gauge, describe_histogram};

pub const CONNECTIONS: &str = "switchboard_gateway_connections";
pub const CONNECTIONS_TOTAL: &str = "switchboard_gateway_connections_total";
pub const DISCONNECTS_TOTAL: &str = "switchboard_gateway_disconnects_total";
pub const MESSAGES_RECEIVED_TOTAL: &str = "switchboard_gateway_messages_received_total";
pub const PUBLICATIONS_TOTAL: &str = "switchboard_gateway_publications_total";
pub const DELIVERIES_TOTAL: &str = "switchboard_gateway_deliveries_total";
pub const LIMIT_HITS_TOTAL: &str = "switchboard_gateway_limit_hits_total";
pub const CHANNELS: &str = "switchboard_gateway_channels";
pub const BUS_SUBSCRIPTIONS: &str = "switchboard_gateway_bus_subscriptions";
pub const SUBSCRIPTIONS: &str = "switchboard_gateway_subscriptions";
pub const HANDSHAKE_DURATION_SECONDS: &str = "switchboard_gateway_handshake_duration_seconds";
pub const CONNECT_DURATION_SECONDS: &str = "switchboard_gateway_connect_duration_seconds";
pub const DELIVERY_DURATION_SECONDS: &str = "switchboard_gateway_delivery_duration_seconds";
pub const OUTBOUND_QUEUE_BYTES: &str = "switchboard_gateway_outbound_queue_bytes";
pub const SLOW_CONSUMERS_TOTAL: &str = "switchboard_gateway_slow_consumers_total";
pub const AUTH_FAILURES_TOTAL: &str = "switchboard_gateway_auth_failures_total";
/// Subscribes that resumed from a position, by `result`: `recovered` (everything after it
/// followed) or `not_recovered` (the history no longer covered it, or another epoch).
pub const RECOVERIES_TOTAL: &str = "switchboard_gateway_recoveries_total";

/// One publication batch in this many has its delivery time recorded.
pub const DELIVERY_SAMPLE: u32 = 16;

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
    "pending_commands",
    "recovery",
    "rpc_timeout",
    "presence_timeout",
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
    describe_counter!(
        RECOVERIES_TOTAL,
        "Subscribes that resumed from a position, by result: recovered or not_recovered (the client reloads)."
    );
    describe_counter!(MESSAGES_RECEIVED_TOTAL, "Client messages (data frames) received.");
    describe_counter!(PUBLICATIONS_TOTAL, "Publications received from the bus for local subscribers.");
    describe_counter!(DELIVERIES_TOTAL, "Publication frames queued to local sessions.");
    describe_counter!(LIMIT_HITS_TOTAL, "Requests or sessions refused or closed by a limit, by limit.");
    describe_gauge!(CHANNELS, "Channels with at least one local subscriber.");
    describe_gauge!(BUS_SUBSCRIPTIONS, "Channel subscriptions this gateway holds on the bus.");
    describe_gauge!(SUBSCRIPTIONS, "Channel subscriptions of the connected sessions, summed over sessions.");
    describe_histogram!(
        HANDSHAKE_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Time from the TCP accept to the WebSocket upgrade (the 101 written)."
    );
    describe_histogram!(
        CONNECT_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Time to answer a connect command (token check and registration), accepted or not."
    );
    describe_histogram!(
        DELIVERY_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Time from a publication batch's receipt from the bus until every local subscriber has it \
         written to its socket (write=direct) or queued for its writer (write=queued); 1 batch in 16."
    );
    describe_gauge!(
        OUTBOUND_QUEUE_BYTES,
        metrics::Unit::Bytes,
        "Bytes queued to the connected sessions and not yet taken by their writers, summed."
    );
    describe_counter!(
        SLOW_CONSUMERS_TOTAL,
        "Sessions closed as slow consumers (4002): their outbound queue overflowed."
    );
    describe_counter!(AUTH_FAILURES_TOTAL, "Connect and refresh tokens refused, by reason.");
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
    pub limit_pending_commands: Counter,
    pub limit_recovery: Counter,
    pub limit_rpc_timeout: Counter,
    pub limit_presence_timeout: Counter,
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
    pub slow_consumers: Counter,
    pub recoveries: Counter,
    pub recoveries_failed: Counter,
    pub connections: Gauge,
    pub channels: Gauge,
    pub bus_subscriptions: Gauge,
    pub subscriptions: Gauge,
    pub outbound_queue_bytes: Gauge,
    pub handshake: Histogram,
    pub connect: Histogram,
    pub delivery_direct: Histogram,
    pub delivery_queued: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let limit = |l: &'static str| metrics::counter!(LIMIT_HITS_TOTAL, "limit" => l);
        // Every reason's series exists from the start, at zero.
        for reason in crate::auth::TokenError::REASONS {
            metrics::counter!(AUTH_FAILURES_TOTAL, "reason" => *reason).absolute(0);
        }
        let delivery = |w: &'static str| metrics::histogram!(DELIVERY_DURATION_SECONDS, "write" => w);
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
            limit_pending_commands: limit("pending_commands"),
            limit_recovery: limit("recovery"),
            limit_rpc_timeout: limit("rpc_timeout"),
            limit_presence_timeout: limit("presence_timeout"),
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
            slow_consumers: metrics::counter!(SLOW_CONSUMERS_TOTAL),
            recoveries: metrics::counter!(RECOVERIES_TOTAL, "result" => "recovered"),
            recoveries_failed: metrics::counter!(RECOVERIES_TOTAL, "result" => "not_recovered"),
            connections: metrics::gauge!(CONNECTIONS),
            channels: metrics::gauge!(CHANNELS),
            bus_subscriptions: metrics::gauge!(BUS_SUBSCRIPTIONS),
            subscriptions: metrics::gauge!(SUBSCRIPTIONS),
            outbound_queue_bytes: metrics::gauge!(OUTBOUND_QUEUE_BYTES),
            handshake: metrics::histogram!(HANDSHAKE_DURATION_SECONDS),
            connect: metrics::histogram!(CONNECT_DURATION_SECONDS),
            delivery_direct: delivery("direct"),
            delivery_queued: delivery("queued"),
        }
    }

    /// Counts a refused token under its reason (one of [`crate::auth::TokenError::REASONS`]).
    pub fn auth_failure(reason: &'static str) {
        metrics::counter!(AUTH_FAILURES_TOTAL, "reason" => reason).increment(1);
    }

    /// Counts a slow consumer's close, under its limit and on its own.
    pub fn slow_consumer(&self) {
        self.limit_outbound_queue.increment(1);
        self.slow_consumers.increment(1);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
