//! The hub: which local sessions hold which channel, and the fan-out of a publication to
//! them.
//!
//! A publication is encoded into a complete WebSocket frame at most once per encoding
//! (JSON, protobuf) and the same bytes are queued to every local subscriber's [`Outbox`].
//! Server frames are unmasked, so one frame serves every connection as is.
//!
//! Publications of one channel that the bus handed over together are encoded back to back
//! into one buffer (up to [`BATCH_BYTES`]) and queued as one piece: the per-subscriber work
//! (a queue push, a reference count, an entry in the vectored write) is paid once per batch,
//! not once per publication. Under load batches grow by themselves, as in any broadcaster
//! that writes what accumulated while it was busy.
//!
//! The fan-out runs over a snapshot of the channel's subscribers (a shared list, copied on
//! write only when a subscription changes while a fan-out holds it), not under the index's
//! lock: with direct writes (see [`outbox`]) a fan-out makes system calls, and subscribing
//! to other channels of the same shard must not wait for them.
//!
//! A subscriber may join a channel *from* an offset ([`Hub::subscribe_from`],
//! [`Hub::set_from`]): it gets only publications after it. A session resuming from a
//! position joins from `u64::MAX` (it receives nothing, but its interest counts, so the bus
//! subscription exists before it reads the history), then from the last publication it
//! was handed from the history. While a channel has such a subscriber its publications are
//! encoded one frame per piece, so the cut falls between pieces.
//!
//! Architecture invariant: the hub knows nothing about the bus, and its only I/O is the
//! non-blocking write an outbox's [`Sink`] makes. It reports interest changes (a channel's
//! first local subscriber arrived, its last one left) to an [`Interest`] while holding the
//! channel's lock, so the bus sees them in order.

pub mod frame;
pub mod outbox;

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use switchboard_wire::{Channel, Encoding, protocol};

pub use outbox::{Outbox, Push, Sink};

const SHARDS: usize = 64;
/// Most frame bytes queued as one piece; a larger batch is split.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Told when a channel gains its first local subscriber or loses its last one.
///
/// Called with the hub's lock for that channel held: implementations register the change
/// and return at once (the bus's subscribe registers synchronously, see `Bus::subscribe`).
pub trait Interest: Send + Sync + 'static {
    fn first_subscriber(&self, channel: &Channel);
    fn last_unsubscribed(&self, channel: &Channel);
}

/// One local session as the hub sees it.
pub struct Subscriber {
    /// Unique within this process.
    pub id: u64,
    pub encoding: Encoding,
    pub outbox: Outbox,
}

/// The result of [`Hub::deliver`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Publications queued, counted once per subscriber.
    pub queued: usize,
    /// Subscribers whose outbox overflowed with these publications (now being disconnected).
    pub overflowed: usize,
}

impl std::ops::AddAssign for Delivery {
    fn add_assign(&mut self, other: Delivery) {
        self.queued += other.queued;
        self.overflowed += other.overflowed;
    }
}

/// How a fan-out hands frames to the subscribers' outboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Write to the socket at once where nothing is queued ([`Outbox::push`]): the
    /// cheapest way while each delivery is its own write anyway.
    Direct,
    /// Queue for the connection's writer ([`Outbox::enqueue`]): under load, frames gather
    /// while it waits its turn and go out several to a write.
    Queue,
}

/// One publication handed to [`Hub::deliver`].
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub offset: u64,
    pub epoch: &'a str,
    pub data: &'a Bytes,
}

/// One shard of the index: channel → its subscribers.
type Shard = RwLock<HashMap<Channel, Subscribers>>;

/// A channel's local subscribers: a list that fan-outs share, where each one is in it, and
/// how many use each encoding (so a fan-out knows which to encode without a scan).
#[derive(Default)]
struct Subscribers {
    list: Arc<Vec<Arc<Subscriber>>>,
    index: HashMap<u64, usize>,
    encodings: [usize; 2],
    /// Subscribers that get only publications after an offset (few, and only for a while).
    from: Vec<(u64, u64)>,
}

/// The subscribers and encoded frames of one fan-out, detached from the index: deliver to
/// all of them at once ([`Hub::deliver`]) or to slices of them from several threads.
pub struct Fanout {
    subscribers: Arc<Vec<Arc<Subscriber>>>,
    /// Frames per encoding in use (JSON, protobuf): pieces with their publication counts
    /// and the offset of their last publication.
    pieces: [Vec<Piece>; 2],
    /// The channel's subscribers that get only publications after an offset.
    from: Vec<(u64, u64)>,
}

/// Frames of one or more publications back to back.
struct Piece {
    frames: Bytes,
    count: usize,
    last_offset: u64,
}

/// The index of local subscribers per channel.
pub struct Hub {
    shards: Box<[Shard]>,
    interest: Arc<dyn Interest>,
}

// === impl Hub ===

impl Hub {
    pub fn new(interest: Arc<dyn Interest>) -> Self {
        Hub { shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(), interest }
    }

    fn shard(&self, channel: &Channel) -> &Shard {
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(channel);
        &self.shards[(h as usize) % SHARDS]
    }

    /// Adds `sub` to `channel`. Returns false if it was already there.
    pub fn subscribe(&self, channel: &Channel, sub: &Arc<Subscriber>) -> bool {
        self.subscribe_from(channel, sub, 0)
    }

    /// Adds `sub` to `channel`, to get only publications with an offset above `from` (0:
    /// all). Returns false if it was already there.
    pub fn subscribe_from(&self, channel: &Channel, sub: &Arc<Subscriber>, from: u64) -> bool {
        let mut shard = self.shard(channel).write().unwrap_or_else(|p| p.into_inner());
        let subs = match shard.get_mut(channel) {
            Some(subs) => subs,
            None => {
                self.interest.first_subscriber(channel);
                shard.entry(channel.clone()).or_default()
            }
        };
        if subs.index.contains_key(&sub.id) {
            return false;
        }
        subs.index.insert(sub.id, subs.list.len());
        subs.encodings[slot(sub.encoding)] += 1;
        Arc::make_mut(&mut subs.list).push(sub.clone());
        if from > 0 {
            subs.from.push((sub.id, from));
        }
        true
    }

    /// From now on, subscriber `id` of `channel` gets only publications with an offset
    /// above `from` (0: all again). False if it is not subscribed.
    pub fn set_from(&self, channel: &Channel, id: u64, from: u64) -> bool {
        let mut shard = self.shard(channel).write().unwrap_or_else(|p| p.into_inner());
        let Some(subs) = shard.get_mut(channel) else { return false };
        if !subs.index.contains_key(&id) {
            return false;
        }
        subs.from.retain(|(s, _)| *s != id);
        if from > 0 {
            subs.from.push((id, from));
        }
        true
    }

    /// Removes subscriber `id` from `channel`. Returns false if it was not there.
    pub fn unsubscribe(&self, channel: &Channel, id: u64) -> bool {
        let mut shard = self.shard(channel).write().unwrap_or_else(|p| p.into_inner());
        let Some(subs) = shard.get_mut(channel) else { return false };
        let Some(at) = subs.index.remove(&id) else { return false };
        let list = Arc::make_mut(&mut subs.list);
        let removed = list.swap_remove(at);
        subs.encodings[slot(removed.encoding)] -= 1;
        subs.from.retain(|(s, _)| *s != id);
        if let Some(moved) = list.get(at) {
            subs.index.insert(moved.id, at);
        }
        if list.is_empty() {
            shard.remove(channel);
            self.interest.last_unsubscribed(channel);
        }
        true
    }

    /// Queues (or writes) `items`, publications of `channel` in offset order, to every local
    /// subscriber of the channel, encoding each once per encoding in use.
    pub fn deliver(&self, channel: &Channel, items: &[Item<'_>]) -> Delivery {
        self.fanout(channel, items).map_or_else(Delivery::default, |f| f.deliver(0..f.len(), Write::Direct))
    }

    /// Prepares the delivery of `items` to the channel's current subscribers: encodes them
    /// once per encoding in use and takes a snapshot of the subscriber list. `None` when
    /// the channel has no local subscriber.
    pub fn fanout(&self, channel: &Channel, items: &[Item<'_>]) -> Option<Fanout> {
        let (subscribers, in_use, from) = {
            let shard = self.shard(channel).read().unwrap_or_else(|p| p.into_inner());
            let subs = shard.get(channel)?;
            (subs.list.clone(), subs.encodings.map(|n| n > 0), subs.from.clone())
        };
        // With a subscriber joining from an offset, one publication per piece.
        let piece_bytes = if from.is_empty() { BATCH_BYTES } else { 0 };
        let pieces = [Encoding::Json, Encoding::Protobuf]
            .map(|e| if in_use[slot(e)] { encode_batch(channel, e, items, piece_bytes) } else { Vec::new() });
        Some(Fanout { subscribers, pieces, from })
    }

    /// Queues `push`, a frame about the channel that is not a publication (a `join` or
    /// `leave`), to every local subscriber of `channel`, encoded once per encoding in use.
    /// A subscriber still resuming from a position (joined from `u64::MAX`) is skipped: its
    /// subscribe reply has not gone out. Never on the publications' path: their fan-out
    /// does not look at pushes.
    pub fn push(&self, channel: &Channel, push: &switchboard_wire::pb::Reply) -> Delivery {
        let (subscribers, in_use, from) = {
            let shard = self.shard(channel).read().unwrap_or_else(|p| p.into_inner());
            let Some(subs) = shard.get(channel) else { return Delivery::default() };
            (subs.list.clone(), subs.encodings.map(|n| n > 0), subs.from.clone())
        };
        let frames = [Encoding::Json, Encoding::Protobuf]
            .map(|e| in_use[slot(e)].then(|| frame::encode(e, |buf| e.encode_reply(push, buf))));
        let mut delivery = Delivery::default();
        for sub in subscribers.iter() {
            if from.iter().any(|&(id, from)| id == sub.id && from == u64::MAX) {
                continue;
            }
            let Some(frame) = &frames[slot(sub.encoding)] else { continue };
            match sub.outbox.enqueue(frame.clone()) {
                Push::Queued => delivery.queued += 1,
                Push::Overflow => delivery.overflowed += 1,
                Push::Closed => {}
            }
        }
        delivery
    }

    /// How many local subscribers `channel` has.
    pub fn subscribers(&self, channel: &Channel) -> usize {
        self.shard(channel).read().unwrap_or_else(|p| p.into_inner()).get(channel).map_or(0, |s| s.list.len())
    }

    /// How many channels have at least one local subscriber.
    pub fn channels(&self) -> usize {
        self.shards.iter().map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len()).sum()
    }
}

fn slot(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Json => 0,
        Encoding::Protobuf => 1,
    }
}

// === impl Fanout ===

impl Fanout {
    /// How many subscribers the fan-out reaches.
    pub fn len(&self) -> usize {
        self.subscribers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Delivers to the subscribers in `range` (of `0..len()`).
    pub fn deliver(&self, range: std::ops::Range<usize>, write: Write) -> Delivery {
        let mut delivery = Delivery::default();
        for sub in &self.subscribers[range] {
            let from = match self.from.is_empty() {
                true => 0,
                false => self.from.iter().find(|(id, _)| *id == sub.id).map_or(0, |(_, from)| *from),
            };
            for piece in &self.pieces[slot(sub.encoding)] {
                if from > 0 && piece.last_offset <= from {
                    continue;
                }
                let push = match write {
                    Write::Direct => sub.outbox.push(piece.frames.clone()),
                    Write::Queue => sub.outbox.enqueue(piece.frames.clone()),
                };
                match push {
                    Push::Queued => delivery.queued += piece.count,
                    Push::Overflow => delivery.overflowed += 1,
                    Push::Closed => break,
                }
            }
        }
        delivery
    }
}

/// Encodes `items` as frames back to back, in pieces of at most `piece_bytes` (or one
/// frame); each piece comes with the number of publications in it and the last one's
/// offset.
fn encode_batch(channel: &Channel, encoding: Encoding, items: &[Item<'_>], piece_bytes: usize) -> Vec<Piece> {
    let push =
        |item: &Item<'_>| protocol::publication_push(channel.as_str(), item.offset, item.epoch, item.data.clone());
    if let [item] = items {
        let frames = frame::encode(encoding, |buf| encoding.encode_reply(&push(item), buf));
        return vec![Piece { frames, count: 1, last_offset: item.offset }];
    }
    let mut pieces = Vec::new();
    let mut buf = Vec::new();
    let mut count = 0;
    for item in items {
        frame::append(&mut buf, encoding, |buf| encoding.encode_reply(&push(item), buf));
        count += 1;
        if buf.len() >= piece_bytes {
            let frames = Bytes::from(std::mem::take(&mut buf));
            pieces.push(Piece { frames, count: std::mem::take(&mut count), last_offset: item.offset });
        }
    }
    if count > 0 {
        let last_offset = items.last().map_or(0, |i| i.offset);
        pieces.push(Piece { frames: Bytes::from(buf), count, last_offset });
    }
    pieces
}

#[cfg(test)]
mod tests;
