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
//! Architecture invariant: the hub does no I/O and knows nothing about the bus. It reports
//! interest changes (a channel's first local subscriber arrived, its last one left) to an
//! [`Interest`] while holding the channel's lock, so the bus sees them in order.

pub mod frame;
pub mod outbox;

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use switchboard_wire::{Channel, Encoding, protocol};

pub use outbox::{Outbox, Push};

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

/// One publication handed to [`Hub::deliver`].
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub offset: u64,
    pub epoch: &'a str,
    pub data: &'a Bytes,
}

/// One shard of the index: channel → (subscriber id → subscriber).
type Shard = RwLock<HashMap<Channel, HashMap<u64, Arc<Subscriber>>>>;

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
        let mut shard = self.shard(channel).write().unwrap_or_else(|p| p.into_inner());
        let subs = match shard.get_mut(channel) {
            Some(subs) => subs,
            None => {
                self.interest.first_subscriber(channel);
                shard.entry(channel.clone()).or_default()
            }
        };
        subs.insert(sub.id, sub.clone()).is_none()
    }

    /// Removes subscriber `id` from `channel`. Returns false if it was not there.
    pub fn unsubscribe(&self, channel: &Channel, id: u64) -> bool {
        let mut shard = self.shard(channel).write().unwrap_or_else(|p| p.into_inner());
        let Some(subs) = shard.get_mut(channel) else { return false };
        let removed = subs.remove(&id).is_some();
        if subs.is_empty() {
            shard.remove(channel);
            self.interest.last_unsubscribed(channel);
        }
        removed
    }

    /// Queues `items`, publications of `channel` in offset order, to every local subscriber
    /// of the channel, encoding each once per encoding in use.
    pub fn deliver(&self, channel: &Channel, items: &[Item<'_>]) -> Delivery {
        let shard = self.shard(channel).read().unwrap_or_else(|p| p.into_inner());
        let Some(subs) = shard.get(channel) else { return Delivery::default() };
        let mut pieces: [Option<Vec<(Bytes, usize)>>; 2] = [None, None];
        let mut delivery = Delivery::default();
        for sub in subs.values() {
            let slot = match sub.encoding {
                Encoding::Json => 0,
                Encoding::Protobuf => 1,
            };
            let pieces = pieces[slot].get_or_insert_with(|| encode_batch(channel, sub.encoding, items));
            for (piece, count) in pieces.iter() {
                match sub.outbox.push(piece.clone()) {
                    Push::Queued => delivery.queued += count,
                    Push::Overflow => delivery.overflowed += 1,
                    Push::Closed => break,
                }
            }
        }
        delivery
    }

    /// How many local subscribers `channel` has.
    pub fn subscribers(&self, channel: &Channel) -> usize {
        self.shard(channel).read().unwrap_or_else(|p| p.into_inner()).get(channel).map_or(0, HashMap::len)
    }

    /// How many channels have at least one local subscriber.
    pub fn channels(&self) -> usize {
        self.shards.iter().map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len()).sum()
    }
}

/// Encodes `items` as frames back to back, in pieces of at most [`BATCH_BYTES`] (or one
/// frame); each piece comes with the number of publications in it.
fn encode_batch(channel: &Channel, encoding: Encoding, items: &[Item<'_>]) -> Vec<(Bytes, usize)> {
    let push =
        |item: &Item<'_>| protocol::publication_push(channel.as_str(), item.offset, item.epoch, item.data.clone());
    if let [item] = items {
        return vec![(frame::encode(encoding, |buf| encoding.encode_reply(&push(item), buf)), 1)];
    }
    let mut pieces = Vec::new();
    let mut buf = Vec::new();
    let mut count = 0;
    for item in items {
        frame::append(&mut buf, encoding, |buf| encoding.encode_reply(&push(item), buf));
        count += 1;
        if buf.len() >= BATCH_BYTES {
            pieces.push((Bytes::from(std::mem::take(&mut buf)), std::mem::take(&mut count)));
        }
    }
    if count > 0 {
        pieces.push((Bytes::from(buf), count));
    }
    pieces
}

#[cfg(test)]
mod tests;
