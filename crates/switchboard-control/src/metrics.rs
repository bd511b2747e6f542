//! Control's metrics: one closed list of names, described at start-up so every series
//! exists before traffic. Never a session, user or channel id as a label.

use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram};
use tonic::Code;

pub const REPLICAS: &str = "switchboard_control_replicas";
pub const GATEWAYS: &str = "switchboard_control_gateways";
pub const OWNED_SHARDS: &str = "switchboard_control_owned_shards";
pub const SESSIONS: &str = "switchboard_control_sessions";
pub const API_REQUESTS_TOTAL: &str = "switchboard_control_api_requests_total";
pub const GATEWAY_EXPIRATIONS_TOTAL: &str = "switchboard_control_gateway_expirations_total";
pub const SNAPSHOTS_TOTAL: &str = "switchboard_control_snapshots_total";
pub const API_REQUEST_DURATION_SECONDS: &str = "switchboard_control_api_request_duration_seconds";
pub const RING_CHANGES_TOTAL: &str = "switchboard_control_ring_changes_total";
pub const REPLICA_EXPIRATIONS_TOTAL: &str = "switchboard_control_replica_expirations_total";
pub const BALANCE_ROUNDS_TOTAL: &str = "switchboard_control_balance_rounds_total";
pub const BALANCE_SESSIONS_TOTAL: &str = "switchboard_control_balance_sessions_asked_total";

/// The `method` label values of the API metrics: every `SwitchboardApi` method.
pub const METHODS: &[&str] = &[
    "Publish",
    "Broadcast",
    "PublishStream",
    "History",
    "HistoryRemove",
    "SendToSession",
    "SendToUser",
    "Disconnect",
    "Subscribe",
    "Unsubscribe",
    "GetSession",
    "ListSessions",
    "Presence",
    "PresenceStats",
    "Channels",
    "Info",
    "WatchEvents",
];

/// Describes every metric. Call once, after installing the recorder.
pub fn describe() {
    describe_gauge!(REPLICAS, "Live control replicas in this replica's ring, itself included.");
    describe_gauge!(GATEWAYS, "Gateways heartbeating to this replica.");
    describe_gauge!(OWNED_SHARDS, "Registry shards (of 256) this replica owns.");
    describe_gauge!(SESSIONS, "Sessions in the registry shards this replica owns.");
    describe_counter!(API_REQUESTS_TOTAL, "Backend API calls answered, by method and gRPC status code.");
    describe_counter!(GATEWAY_EXPIRATIONS_TOTAL, "Gateways whose sessions were dropped after their lease ran out.");
    describe_counter!(SNAPSHOTS_TOTAL, "Snapshot requests sent to gateways.");
    describe_histogram!(
        API_REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Time to answer a backend API call, by method (for Publish: until the bus stored or sent it; for PublishStream: each request, from its arrival to its reply)."
    );
    describe_counter!(
        RING_CHANGES_TOTAL,
        "New versions of the hash ring this replica computed (replicas joined or left)."
    );
    describe_counter!(REPLICA_EXPIRATIONS_TOTAL, "Peer replicas dropped from the ring after their lease ran out.");
    describe_counter!(
        BALANCE_ROUNDS_TOTAL,
        "Balance rounds that asked gateways to move sessions (this replica deciding)."
    );
    describe_counter!(
        BALANCE_SESSIONS_TOTAL,
        "Sessions gateways took on to move (close with 4009) at this replica's asking."
    );
    // Every method's series exist from the start, so rates and ratios have a zero to start from.
    for method in METHODS {
        metrics::counter!(API_REQUESTS_TOTAL, "method" => *method, "code" => "OK").absolute(0);
    }
    metrics::counter!(RING_CHANGES_TOTAL).absolute(0);
    metrics::counter!(REPLICA_EXPIRATIONS_TOTAL).absolute(0);
    metrics::counter!(GATEWAY_EXPIRATIONS_TOTAL).absolute(0);
    metrics::counter!(SNAPSHOTS_TOTAL).absolute(0);
    metrics::counter!(BALANCE_ROUNDS_TOTAL).absolute(0);
    metrics::counter!(BALANCE_SESSIONS_TOTAL).absolute(0);
}

/// Counts one API call under its method and outcome, and how long it took.
pub(crate) fn api_request(method: &'static str, code: Code, took: Duration) {
    metrics::counter!(API_REQUESTS_TOTAL, "method" => method, "code" => code_name(code)).increment(1);
    metrics::histogram!(API_REQUEST_DURATION_SECONDS, "method" => method).record(took);
}

/// The canonical upper-case name of a gRPC status code (`OK`, `NOT_FOUND`, …).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The gauges of one replica, set together (on every sweep of the membership).
pub(crate) struct Gauges {
    pub replicas: usize,
    pub gateways: usize,
    pub owned_shards: usize,
    pub sessions: usize,
}

impl Gauges {
    pub fn set(&self) {
        metrics::gauge!(REPLICAS).set(self.replicas as f64);
        metrics::gauge!(GATEWAYS).set(self.gateways as f64);
        metrics::gauge!(OWNED_SHARDS).set(self.owned_shards as f64);
        metrics::gauge!(SESSIONS).set(self.sessions as f64);
    }
}

pub(crate) fn gateway_expired() {
    metrics::counter!(GATEWAY_EXPIRATIONS_TOTAL).increment(1);
}

pub(crate) fn ring_changed() {
    metrics::counter!(RING_CHANGES_TOTAL).increment(1);
}

pub(crate) fn replicas_expired(n: usize) {
    metrics::counter!(REPLICA_EXPIRATIONS_TOTAL).increment(n as u64);
}

pub(crate) fn balance_round() {
    metrics::counter!(BALANCE_ROUNDS_TOTAL).increment(1);
}

pub(crate) fn balance_asked(sessions: u32) {
    metrics::counter!(BALANCE_SESSIONS_TOTAL).increment(sessions as u64);
}

pub(crate) fn snapshot_sent() {
    metrics::counter!(SNAPSHOTS_TOTAL).increment(1);
}

#[cfg(test)]
mod tests {
    /// The `method` label's closed list names every RPC of the API, so a new one is counted
    /// under its own name and not as `unknown`.
    #[test]
    fn methods_list_every_rpc_of_the_api() {
        let proto = include_str!("../../../proto/switchboard/v1/api.proto");
        let rpcs: Vec<&str> = proto
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc "))
            .map(|l| l.split('(').next().unwrap_or_default().trim())
            .collect();
        assert!(rpcs.len() > 10, "{rpcs:?}");
        assert_eq!(rpcs, super::METHODS, "METHODS lists the RPCs of api.proto, in its order");
    }
}
