//! The bus's metrics, all `switchboard_bus_…`: one closed list, described at start-up. The
//! connection and request metrics are the NATS bus's; both buses count what a full queue
//! dropped. Never a subject or id as a label.

use metrics::{Counter, Gauge, Histogram, describe_counter, describe_gauge, describe_histogram};

pub const CONNECTED: &str = "switchboard_bus_connected";
pub const DISCONNECTS_TOTAL: &str = "switchboard_bus_disconnects_total";
pub const RECONNECTS_TOTAL: &str = "switchboard_bus_reconnects_total";
pub const STALLS_TOTAL: &str = "switchboard_bus_stalls_total";
pub const REQUEST_DURATION_SECONDS: &str = "switchboard_bus_request_duration_seconds";

/// Messages a full queue dropped, by `queue`: `node` (a node's publication queue on the
/// in-process bus), `listener` (an in-process listener's inbox), `nats_subscription` (a
/// slow-consumer event of the NATS client, which drops what does not fit in a
/// subscription's 65,536 messages; counted once per event).
pub const DROPPED_MESSAGES_TOTAL: &str = "switchboard_bus_dropped_messages_total";

/// Publications of a history channel that went missing on the way to a node, by `outcome`:
/// `filled` (fetched from the history and delivered in order), `lost` (gone from the
/// history too, or it could not be read: the node's subscribers were told to resume).
pub const GAPS_TOTAL: &str = "switchboard_bus_gaps_total";

/// The `outcome` label values of [`GAPS_TOTAL`].
pub const GAP_OUTCOMES: &[&str] = &["filled", "lost"];

pub(crate) fn gap(outcome: &'static str) {
    metrics::counter!(GAPS_TOTAL, "outcome" => outcome).increment(1);
}

/// The `queue` label values of [`DROPPED_MESSAGES_TOTAL`].
pub const QUEUES: &[&str] = &["node", "listener", "nats_subscription"];

pub(crate) fn dropped(queue: &'static str) {
    metrics::counter!(DROPPED_MESSAGES_TOTAL, "queue" => queue).increment(1);
}

/// Describes every metric and registers the dropped-message series at zero. Call once,
/// after installing the recorder.
pub fn describe() {
    describe_counter!(DROPPED_MESSAGES_TOTAL, "Messages dropped because a bus queue was full, by queue.");
    for queue in QUEUES {
        metrics::counter!(DROPPED_MESSAGES_TOTAL, "queue" => *queue).increment(0);
    }
    describe_counter!(
        GAPS_TOTAL,
        "Gaps in a history channel's delivery to this node, by outcome: filled from the history, or lost."
    );
    for outcome in GAP_OUTCOMES {
        metrics::counter!(GAPS_TOTAL, "outcome" => *outcome).increment(0);
    }
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
        "Round trip of a NATS request, by op: publish (a JetStream publish and its ack), history (a history or position read), request (any other)."
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
    pub history: Histogram,
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
            history: op("history"),
            request: op("request"),
        }
    }
}
