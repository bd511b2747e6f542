//! The bus's metrics: messages its queues dropped. Never a subject or id as a label.

/// Messages a full queue dropped, by `queue`: `node` (a node's publication queue on the
/// in-process bus), `listener` (an in-process listener's inbox), `nats_subscription` (a
/// slow-consumer event of the NATS client, which drops what does not fit in a
/// subscription's 65,536 messages; counted once per event).
pub const DROPPED_MESSAGES_TOTAL: &str = "switchboard_bus_dropped_messages_total";

/// The `queue` label values of [`DROPPED_MESSAGES_TOTAL`].
pub const QUEUES: &[&str] = &["node", "listener", "nats_subscription"];

/// Describes every metric and registers each series at zero. Call once, after installing
/// the recorder.
pub fn describe() {
    metrics::describe_counter!(DROPPED_MESSAGES_TOTAL, "Messages dropped because a bus queue was full, by queue.");
    for queue in QUEUES {
        metrics::counter!(DROPPED_MESSAGES_TOTAL, "queue" => *queue).increment(0);
    }
}

pub(crate) fn dropped(queue: &'static str) {
    metrics::counter!(DROPPED_MESSAGES_TOTAL, "queue" => queue).increment(1);
}
