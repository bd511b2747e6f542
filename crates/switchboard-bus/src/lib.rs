//! The bus between Switchboard nodes: the [`Bus`] trait, its in-process implementation
//! ([`memory`]), and the behavioural suite every implementation must pass
//! ([`conformance`], behind the `conformance` feature).
//!
//! Architecture invariant: only this crate knows how nodes reach each other. Gateways and
//! control see a `dyn Bus`; they never build a subject or hold a broker connection.

mod history;
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
pub use nats::{NatsAuth, NatsBus, NatsConfig, NatsTls};
pub use subjects::Address;

/// A publication as the bus delivers it.
///
/// In a namespace with history, `offset` is its place in the channel's history and `epoch`
/// names that history; in a live-only namespace both are empty (`0` and `""`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub channel: Channel,
    /// Strictly greater than the channel's previous publication's within an epoch, not
    /// necessarily by one; `0` when the namespace keeps no history.
    pub offset: u64,
    pub epoch: Arc<str>,
    pub data: Bytes,
}

/// A point in a channel's history: the publication at `offset` and everything before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub epoch: Arc<str>,
}

/// How long a namespace keeps its channels' publications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Publications kept per channel (the oldest go first).
    pub size: u32,
    /// How long a publication is kept.
    pub ttl: Duration,
}

/// What the bus keeps for each channel namespace: history or none, from the `[channels]`
/// configuration. A channel of a namespace not listed follows `default` (so do channels
/// without a namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    pub default: Option<HistoryLimits>,
    pub namespaces: std::collections::BTreeMap<String, Option<HistoryLimits>>,
}

/// The key of the namespaces' default entry in [`Namespaces::key`]: not a namespace name
/// (the configuration refuses a namespace named `_`).
pub const DEFAULT_NAMESPACE_KEY: &str = "_";

impl Namespaces {
    /// Which entry `channel` follows: its namespace when listed, else
    /// [`DEFAULT_NAMESPACE_KEY`].
    pub fn key<'a>(&self, channel: &'a Channel) -> &'a str {
        match channel.namespace() {
            ns if !ns.is_empty() && self.namespaces.contains_key(ns) => ns,
            _ => DEFAULT_NAMESPACE_KEY,
        }
    }

    /// The history `channel` keeps, if any.
    pub fn history(&self, channel: &Channel) -> Option<HistoryLimits> {
        match channel.namespace() {
            ns if !ns.is_empty() => self.namespaces.get(ns).copied().unwrap_or(self.default),
            _ => self.default,
        }
    }

    /// Every entry with history: (key, limits).
    pub fn with_history(&self) -> impl Iterator<Item = (&str, HistoryLimits)> {
        let default = self.default.map(|h| (DEFAULT_NAMESPACE_KEY, h));
        default.into_iter().chain(self.namespaces.iter().filter_map(|(k, h)| h.map(|h| (k.as_str(), h))))
    }
}

/// Options of one publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// A publish with the same key on the same channel within the bus's de-duplication
    /// window (2 minutes) is stored and delivered once, and answered with the first one's
    /// position. History namespaces only; ignored by live-only ones.
    pub idempotency_key: Option<String>,
}

/// Which part of a channel's history to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only publications after this position (before it with `reverse`); from the oldest
    /// kept (the newest, with `reverse`) when `None`.
    pub since: Option<Position>,
    /// At most this many publications (callers bound it).
    pub limit: usize,
    /// Newest first.
    pub reverse: bool,
}

/// Part of a channel's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub publications: Vec<Publication>,
    /// The channel's latest position when the page was read.
    pub latest: Position,
    /// Whether the page continues `since` without a gap: `since` is of the current epoch
    /// and nothing published after it has been trimmed (or removed) since. When false, the
    /// publications are the oldest (newest, with `reverse`) kept, and a client that wanted
    /// to resume must reload its state instead. Always true without `since`.
    pub continuous: bool,
}

/// Receives the publications for the channels a node subscribed to.
///
/// Called from the bus's own delivery task. Each call hands over what arrived together, at
/// most [`MAX_BATCH`] publications, in delivery order: every channel's publications in
/// offset order, and consecutive ones often of the same channel, which lets the receiver
/// encode and queue them as one piece. The returned future may take its time (it must not
/// block the thread): the next batch is handed over only once it completes, so what
/// arrives meanwhile makes the next batch, and order holds without any other coordination.
///
/// For a channel with history the bus hands over every publication stored after the
/// node's subscription took effect, each once, without a gap: one that went missing on the
/// way is fetched from the history first. When that is impossible (the missing ones were
/// trimmed, or the history cannot be read in time) the bus calls [`Deliver::interrupted`]
/// before the next publication of the channel.
pub trait Deliver: Send + Sync + 'static {
    fn deliver<'a>(&'a self, batch: &'a [Publication]) -> BoxFuture<'a, ()>;

    /// Publications of `channel` were lost on the way to this node and cannot be
    /// recovered: the node's subscribers must resume from their last position.
    fn interrupted(&self, channel: &Channel) {
        let _ = channel;
    }

    /// A channel event ([`Channels::publish_event`]) for `channel`, which this node is
    /// subscribed to: handed over from the same delivery task as the channel's
    /// publications, never inside a batch, and without taking part in their continuity.
    fn event(&self, channel: &Channel, event: Bytes) {
        let _ = (channel, event);
    }
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

/// Channels: publications, their history, and which channels this node receives.
///
/// Contract, checked by [`conformance::bus_conformance`]:
/// - `publish` delivers the publication at most once to every node subscribed to the
///   channel at that moment, the publisher's own node included, and with history exactly
///   once (see [`Deliver`]); nothing else sequences it: the bus (NATS JetStream, or the
///   in-process broker) gives the offset;
/// - in a namespace with history, offsets on a channel strictly increase within an epoch and
///   every node sees a channel's publications in offset order; the epoch changes only when
///   the history itself is lost (its store deleted or recreated), never because a process
///   restarted; in a live-only namespace publications of one publisher keep their order;
/// - `history` returns what is kept, in order, trimmed by the namespace's size and age;
/// - `subscribe` and `unsubscribe` take effect in the order they are called, even when the
///   future `subscribe` returns completes later; subscribing twice holds one subscription;
/// - `subscriptions` counts the channels this node is subscribed to (one per channel,
///   however many local sessions hold it: the gateway does the interest counting);
/// - `publish_event` is the one extension beside publications: an opaque event (the
///   gateways' join and leave pushes) handed to [`Deliver::event`] of every node subscribed
///   to the channel at that moment, at most once, live only: never stored, no offset, and
///   invisible to the channel's history, positions, continuity and gap filling (a history
///   channel's publications stay contiguous around any number of events); events of one
///   node on one channel arrive in the order their futures were driven to completion.
pub trait Channels: Send + Sync + 'static {
    /// Publishes `data` to `channel`: with history, once it is stored, answering where
    /// (`Some`); live-only, once it is sent (`None`). A history namespace whose store cannot
    /// be reached fails with [`BusError::Unavailable`]: nothing is delivered unstored.
    fn publish(
        &self,
        channel: &Channel,
        data: Bytes,
        options: PublishOptions,
    ) -> BoxFuture<'static, Result<Option<Position>, BusError>>;

    /// Starts delivering `channel`'s publications to this node's [`Deliver`]. The
    /// subscription is registered before this returns; the future resolves once the bus
    /// has it (deliveries may already have begun): everything published after that
    /// reaches this node.
    fn subscribe(&self, channel: &Channel) -> BoxFuture<'static, Result<(), BusError>>;

    /// Stops delivering `channel` to this node.
    fn unsubscribe(&self, channel: &Channel);

    /// Sends a live-only event to the nodes subscribed to `channel` (see the contract
    /// above); resolves once it is sent. Nobody subscribed is not an error.
    fn publish_event(&self, channel: &Channel, event: Bytes) -> BoxFuture<'static, Result<(), BusError>>;

    /// The channel's latest position (`None` in a live-only namespace). With nothing kept
    /// for the channel it is a position before anything the channel will get.
    fn position(&self, channel: &Channel) -> BoxFuture<'static, Result<Option<Position>, BusError>>;

    /// Reads the channel's history; [`BusError::NoHistory`] in a live-only namespace.
    fn history(&self, channel: &Channel, query: HistoryQuery) -> BoxFuture<'static, Result<HistoryPage, BusError>>;

    /// Removes everything kept for the channel; offsets keep increasing afterwards, and a
    /// position from before is no longer continuous.
    fn remove_history(&self, channel: &Channel) -> BoxFuture<'static, Result<(), BusError>>;

    /// How many channels this node is subscribed to.
    fn subscriptions(&self) -> usize;

    /// Whether the bus can currently carry traffic (for `/readyz`).
    fn is_ready(&self) -> bool;
}

/// Addressed control-plane messages: to one node, a user's gateways, every gateway, a
/// queue group of backends; requests with replies.
///
/// Contract, checked by [`conformance::bus_conformance`]: a `listen` that returned is in
/// place for every node (a request right after finds it); `send` reaches every listener once
/// (one per queue group); `request` answers with the first reply, fails at once with
/// [`BusError::NoResponders`] when nobody listens and with [`BusError::Timeout`] after its
/// timeout; dropping an inbox stops listening promptly.
pub trait Messages: Send + Sync + 'static {
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

/// A node's handle on the bus: both halves.
pub trait Bus: Channels + Messages {}

impl<T: Channels + Messages> Bus for T {}

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
    /// The channel's namespace keeps no history.
    #[error("the channel's namespace keeps no history")]
    NoHistory,
}

impl BusError {
    pub fn is_temporary(&self) -> bool {
        matches!(self, BusError::Unavailable(_) | BusError::Timeout | BusError::NoResponders)
    }
}

/// A new random epoch: 8 characters of [a-z0-9].
pub(crate) fn new_epoch() -> Arc<str> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let s: String = (0..8).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect();
    Arc::from(s)
}
