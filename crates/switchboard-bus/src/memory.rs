//! The in-process bus: what `switchboard dev` runs on, and a real implementation of the
//! [`Bus`] contract (it passes the same conformance suite as the NATS bus).
//!
//! A [`MemoryBroker`] stands for the whole bus; each node gets a [`MemoryBus`] handle from
//! [`MemoryBroker::connect`]. Channels are sharded over a fixed number of locks; a publish
//! takes one shard lock, stamps the offset and hands the publication to every subscribed
//! node's [`Deliver`] while still holding it, which is what keeps each channel's deliveries
//! in offset order. A channel's state (offset, epoch) is dropped when its last node
//! unsubscribes, so the next publication starts a new epoch at offset 1.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};
use switchboard_wire::Channel;

use crate::{Bus, BusError, Deliver, Position, Publication, new_epoch};

const SHARDS: usize = 64;

/// The in-process bus shared by every node of one process.
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<BrokerInner>,
}

/// One node's handle on a [`MemoryBroker`].
pub struct MemoryBus {
    node: u64,
    broker: Arc<BrokerInner>,
    deliver: Arc<dyn Deliver>,
    subscriptions: AtomicUsize,
}

struct BrokerInner {
    shards: Vec<Mutex<HashMap<Channel, ChannelState>>>,
    next_node: AtomicU64,
}

struct ChannelState {
    offset: u64,
    epoch: Arc<str>,
    nodes: Vec<(u64, Arc<dyn Deliver>)>,
}

// === impl MemoryBroker ===

impl MemoryBroker {
    pub fn new() -> Self {
        MemoryBroker {
            inner: Arc::new(BrokerInner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                next_node: AtomicU64::new(1),
            }),
        }
    }

    /// Attaches a node whose subscriptions are delivered to `deliver`.
    pub fn connect(&self, deliver: Arc<dyn Deliver>) -> MemoryBus {
        MemoryBus {
            node: self.inner.next_node.fetch_add(1, Ordering::Relaxed),
            broker: self.inner.clone(),
            deliver,
            subscriptions: AtomicUsize::new(0),
        }
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl BrokerInner {
    fn shard(&self, channel: &Channel) -> MutexGuard<'_, HashMap<Channel, ChannelState>> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(channel);
        // A poisoned shard only means a Deliver panicked; the map itself is consistent.
        self.shards[(h as usize) % SHARDS].lock().unwrap_or_else(|p| p.into_inner())
    }
}

// === impl MemoryBus ===

impl Bus for MemoryBus {
    fn publish(&self, channel: &Channel, data: Bytes) -> BoxFuture<'static, Result<Position, BusError>> {
        let mut shard = self.broker.shard(channel);
        let position = match shard.get_mut(channel) {
            Some(state) => {
                state.offset += 1;
                let publication =
                    Publication { channel: channel.clone(), offset: state.offset, epoch: state.epoch.clone(), data };
                for (_, node) in &state.nodes {
                    node.deliver(publication.clone());
                }
                Position { offset: state.offset, epoch: state.epoch.clone() }
            }
            // Nobody listens, so nothing keeps the channel's state: this is offset 1 of a
            // new epoch that ends right away.
            None => Position { offset: 1, epoch: new_epoch() },
        };
        ready(Ok(position)).boxed()
    }

    fn subscribe(&self, channel: &Channel) -> BoxFuture<'static, Result<(), BusError>> {
        let mut shard = self.broker.shard(channel);
        let state = shard.entry(channel.clone()).or_insert_with(|| ChannelState {
            offset: 0,
            epoch: new_epoch(),
            nodes: Vec::new(),
        });
        if !state.nodes.iter().any(|(id, _)| *id == self.node) {
            state.nodes.push((self.node, self.deliver.clone()));
            self.subscriptions.fetch_add(1, Ordering::Relaxed);
        }
        ready(Ok(())).boxed()
    }

    fn unsubscribe(&self, channel: &Channel) {
        let mut shard = self.broker.shard(channel);
        let Some(state) = shard.get_mut(channel) else { return };
        let before = state.nodes.len();
        state.nodes.retain(|(id, _)| *id != self.node);
        if state.nodes.len() < before {
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        if state.nodes.is_empty() {
            shard.remove(channel);
        }
    }

    fn position(&self, channel: &Channel) -> BoxFuture<'static, Result<Position, BusError>> {
        let shard = self.broker.shard(channel);
        let position = match shard.get(channel) {
            Some(state) => Position { offset: state.offset, epoch: state.epoch.clone() },
            None => Position { offset: 0, epoch: Arc::from("") },
        };
        ready(Ok(position)).boxed()
    }

    fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }

    fn is_ready(&self) -> bool {
        true
    }
}

impl Drop for MemoryBus {
    fn drop(&mut self) {
        for shard in &self.broker.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.retain(|_, state| {
                state.nodes.retain(|(id, _)| *id != self.node);
                !state.nodes.is_empty()
            });
        }
    }
}

#[cfg(all(test, feature = "conformance"))]
mod tests {
    use super::*;
    use crate::conformance::{Cluster, bus_conformance};

    impl Cluster for MemoryBroker {
        fn node(&self, deliver: Arc<dyn Deliver>) -> BoxFuture<'_, Arc<dyn Bus>> {
            let bus: Arc<dyn Bus> = Arc::new(self.connect(deliver));
            ready(bus).boxed()
        }
    }

    #[tokio::test]
    async fn memory_bus_passes_the_conformance_suite() {
        bus_conformance(&MemoryBroker::new()).await;
    }
}
