//! The NATS bus's metrics, all `switchboard_bus_…`: one closed list, described at start-up
//! by the roles that run on NATS (`gateway`, `control`). The in-process bus reports none.

use metrics::{Counter, Gauge, Histogram, describe_counter, describe_gauge, describe_histogram};

pub const CONNECTED: &str = "switchboard_bus_connected";
pub const DISCONNECTS_TOTAL: &str = "switchboard_bus_disconnects_total";
pub const RECONNECTS_TOTAL: &str = "switchboard_bus_reconnects_total";
pub const STALLS_TOTAL: &str = "switchboard_bus_stalls_total";
pub const REQUEST_DURATION_SECONDS: &str = "switchboard_bus_request_duration_seconds";

/// Describes every metric. Call once, after installing the recorder.
pub fn describe() {
    describe_gauge!(
        CONNECTED,
        "1 while the NATS connection is up and the server answers its liveness round trips, else 0."
    );
    describe_counter!(DISCONNECTS_TOTAL, "NATS connections lost.");
    describe_counter!(RECONNECTS_TOTAL, "NATS connections re-established after a loss.");
    describe_counter!(
        STALLS_TOTAL,
        "NATS servers that stopped answering liveness round trips (then a forced reconnect)."
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Round trip of a NATS request, by op: publish and position (to a channel's sequencer), request (any other)."
    );
}

/// The handles one NATS connection updates.
#[derive(Clone)]
pub(crate) struct BusMetrics {
    pub connected: Gauge,
    pub disconnects: Counter,
    pub reconnects: Counter,
    pub stalls: Counter,
    pub publish: Histogram,
    pub position: Histogram,
    pub request: Histogram,
}

impl BusMetrics {
    pub fn new() -> Self {
        let op = |op: &'static str| metrics::histogram!(REQUEST_DURATION_SECONDS, "op" => op);
        BusMetrics {
            connected: metrics::gauge!(CONNECTED),
            disconnects: metrics::counter!(DISCONNECTS_TOTAL),
            reconnects: metrics::counter!(RECONNECTS_TOTAL),
            stalls: metrics::counter!(STALLS_TOTAL),
            publish: op("publish"),
            position: op("position"),
            request: op("request"),
        }
    }
}
