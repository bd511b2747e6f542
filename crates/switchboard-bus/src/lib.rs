//! The bus between Switchboard nodes: the [`Bus`] trait, its in-process implementation
//! ([`memory`]), and the behavioural suite every implementation must pass
//! ([`conformance`], behind the `conformance` feature).
//!
//! Architecture invariant: only this crate knows how nodes reach each other. Gateways and
//! control see a `dyn Bus`; they never build a subject or hold a broker connection.

pub mod memory;
pub mod subjects;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use switchboard_wire::Channel;

pub use memory::{MemoryBroker, MemoryBus};

/// A publication as the bus delivers it: stamped with its channel offset and epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub channel: Channel,
    /// One more than the previous publication on the channel within the same epoch.
    pub offset: u64,
    pub epoch: Arc<str>,
    pub data: Bytes,
}

/// Where a publication landed in its channel's sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub epoch: Arc<str>,
}

/// Receives the publications for the channels a node subscribed to.
///
/// Called from the bus's own context (the publisher's task for the in-process bus), so it
/// must not block: queue the work and return.
pub trait Deliver: Send + Sync + 'static {
    fn deliver(&self, publication: Publication);
}

/// A node's handle on the bus.
///
/// Contract, checked by [`conformance::bus_conformance`]:
/// - `publish` stamps the publication with the channel's next offset and its epoch and
///   delivers it at most once to every node subscribed to the channel at that moment, the
///   publisher's own node included;
/// - offsets on a channel increase by exactly one per publication within an epoch, and every
///   node sees a channel's publications in offset order;
/// - `subscribe` and `unsubscribe` take effect in the order they are called, even when the
///   future `subscribe` returns completes later; subscribing twice holds one subscription;
/// - `subscriptions` counts the channels this node is subscribed to (one per channel,
///   however many local sessions hold it: the gateway's hub does the interest counting).
pub trait Bus: Send + Sync + 'static {
    /// Publishes `data` to `channel` and returns the position it was given.
    fn publish(&self, channel: &Channel, data: Bytes) -> BoxFuture<'static, Result<Position, BusError>>;

    /// Starts delivering `channel`'s publications to this node's [`Deliver`]. The
    /// subscription is registered before this returns; the future resolves once the bus
    /// confirms it (deliveries may already have begun).
    fn subscribe(&self, channel: &Channel) -> BoxFuture<'static, Result<(), BusError>>;

    /// Stops delivering `channel` to this node.
    fn unsubscribe(&self, channel: &Channel);

    /// The channel's latest position (offset 0 when nothing was published in this epoch).
    fn position(&self, channel: &Channel) -> BoxFuture<'static, Result<Position, BusError>>;

    /// How many channels this node is subscribed to.
    fn subscriptions(&self) -> usize;

    /// Whether the bus can currently carry traffic (for `/readyz`).
    fn is_ready(&self) -> bool;
}

/// A bus operation that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The bus cannot be reached now; retrying later may succeed.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The operation did not complete in time.
    #[error("bus operation timed out")]
    Timeout,
}

impl BusError {
    pub fn is_temporary(&self) -> bool {
        matches!(self, BusError::Unavailable(_) | BusError::Timeout)
    }
}

/// A new random epoch: 8 characters of [a-z0-9].
pub fn new_epoch() -> Arc<str> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let s: String = (0..8).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect();
    Arc::from(s)
}
