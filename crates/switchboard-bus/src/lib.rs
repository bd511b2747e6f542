//! The bus between Switchboard nodes: the [`Bus`] trait, its in-process implementation
//! ([`memory`]), and the behavioural suite every implementation must pass
//! ([`conformance`], behind the `conformance` feature).
//!
//! Architecture invariant: only this crate knows how nodes reach each other. Gateways and
//! control see a `dyn Bus`; they never build a subject or hold a broker connection.

pub mod memory;
pub mod metrics;
pub mod nats;
pub mod shard;
pub mod subjects;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use switchboard_wire::Channel;

pub use memory::{MemoryBroker, MemoryBus};
pub use nats::{NatsBus, NatsConfig};
pub use subjects::Address;

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
/// Called from the bus's own delivery task. Each call hands over what arrived together, at
/// most [`MAX_BATCH`] publications, in delivery order: every channel's publications in
/// offset order, and consecutive ones often of the same channel, which lets the receiver
/// encode and queue them as one piece. The returned future may take its time (it must not
/// block the thread): the next batch is handed over only once it completes, so what
/// arrives meanwhile makes the next batch, and order holds without any other coordination.
pub trait Deliver: Send + Sync + 'static {
    fn deliver<'a>(&'a self, batch: &'a [Publication]) -> BoxFuture<'a, ()>;
}

/// The [`Deliver`] of a node that publishes and sends but subscribes to no channel (the
/// control service's).
pub struct NoDelivery;

impl Deliver for NoDelivery {
    fn deliver<'a>(&'a self, _: &'a [Publication]) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Most publications handed to one [`Deliver::deliver`] call.
pub const MAX_BATCH: usize = 64;

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

    /// Makes this node the sequencer of `shards` of the channel key space (see
    /// [`shard::shard`]), replacing the previous set. A bus that sequences internally (the
    /// in-process bus) ignores it; on NATS the control replicas own the shards the hash
    /// ring gives them.
    fn set_sequencer_shards(&self, shards: &[u16]);

    // --- addressed messages (control plane) ---

    /// Sends `message` to every listener at `to` (one per queue group). Nobody listening
    /// is not an error.
    fn send(&self, to: &Address, message: Message) -> BoxFuture<'static, Result<(), BusError>>;

    /// Sends `message` to `to` and waits for the first reply. Fails with
    /// [`BusError::NoResponders`] at once when nobody listens, [`BusError::Timeout`] after
    /// `timeout`.
    fn request(
        &self,
        to: &Address,
        message: Message,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Message, BusError>>;

    /// Sends `message` to `to` with a fresh reply inbox and returns that inbox, for requests
    /// that several listeners answer (or that one answers in several parts).
    fn request_many(&self, to: &Address, message: Message) -> BoxFuture<'static, Result<Inbox, BusError>>;

    /// Listens at `to`; with a `queue` name each message goes to one listener of the
    /// group. Dropping the inbox stops listening.
    fn listen(&self, at: &Address, queue: Option<&str>) -> BoxFuture<'static, Result<Inbox, BusError>>;

    /// Answers a request.
    fn reply(&self, to: &ReplyTo, message: Message) -> BoxFuture<'static, Result<(), BusError>>;
}

/// A control-plane message: a payload (usually an encoded protobuf) and string headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub payload: Bytes,
    pub headers: Vec<(String, String)>,
}

impl Message {
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Message { payload: payload.into(), headers: Vec::new() }
    }

    /// Encodes a protobuf message as the payload.
    pub fn proto(m: &impl prost::Message) -> Self {
        Message::new(m.encode_to_vec())
    }

    /// Decodes the payload as a protobuf message.
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, prost::DecodeError> {
        M::decode(self.payload.clone())
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Where to send the answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo(pub(crate) String);

/// A message received at a listened address.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub message: Message,
    /// Set when the sender waits for an answer.
    pub reply: Option<ReplyTo>,
}

/// A stream of messages received at one address.
pub struct Inbox {
    stream: BoxStream<'static, Incoming>,
}

impl Inbox {
    pub(crate) fn new(stream: BoxStream<'static, Incoming>) -> Self {
        Inbox { stream }
    }

    /// The next message; `None` once the bus connection is gone for good.
    pub async fn next(&mut self) -> Option<Incoming> {
        self.stream.next().await
    }
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
    /// A request found nobody listening at its address.
    #[error("no responders")]
    NoResponders,
    /// A message could not be decoded.
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl BusError {
    pub fn is_temporary(&self) -> bool {
        matches!(self, BusError::Unavailable(_) | BusError::Timeout | BusError::NoResponders)
    }
}

/// A new random epoch: 8 characters of [a-z0-9].
pub fn new_epoch() -> Arc<str> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let s: String = (0..8).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect();
    Arc::from(s)
}
