//! The in-process bus: what `switchboard dev` runs on, and a real implementation of the
//! [`Bus`] contract (it passes the same conformance suite as the NATS bus).
//!
//! A [`MemoryBroker`] stands for the whole bus; each node gets a [`MemoryBus`] handle from
//! [`MemoryBroker::connect`]. Channels are sharded over a fixed number of locks; a publish
//! takes one shard lock, stamps the offset and queues the publication to every subscribed
//! node while still holding it, which keeps each channel's deliveries in offset order.
//! Each node's queue is drained by its own task, which calls the node's [`Deliver`]: the
//! deliverer never runs under a broker lock, so it may take its own locks (the hub's)
//! in any order with respect to `subscribe`, which the hub calls under its lock.
//! A channel's state (offset, epoch) is dropped when its last node unsubscribes, so the
//! next publication starts a new epoch at offset 1.
//!
//! Addressed (control-plane) messages go through a small in-process router that follows
//! NATS's rules: the same subjects, `*`/`>` wildcards, queue groups, reply inboxes, and
//! "no responders" for a request nobody listens to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};
use futures_util::stream::StreamExt;
use switchboard_wire::Channel;
use tokio::sync::mpsc;

use crate::subjects::{Address, Subjects, matches};
use crate::{Bus, BusError, Deliver, Inbox, Incoming, MAX_BATCH, Message, Position, Publication, ReplyTo, new_epoch};

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
    queue: mpsc::UnboundedSender<Publication>,
    subscriptions: AtomicUsize,
}

struct BrokerInner {
    shards: Vec<Mutex<HashMap<Channel, ChannelState>>>,
    next_node: AtomicU64,
    router: Arc<Router>,
    subjects: Subjects,
}

/// Listeners of addressed messages, by subject pattern.
#[derive(Default)]
struct Router {
    listeners: Mutex<Listeners>,
    next_id: AtomicU64,
}

/// Exact subjects are looked up, only wildcard patterns are scanned: a gateway listens on
/// one subject per connected user, and routing must not cost a scan of them all.
#[derive(Default)]
struct Listeners {
    exact: HashMap<String, Vec<Listener>>,
    wildcard: HashMap<String, Vec<Listener>>,
}

struct Listener {
    id: u64,
    queue: Option<String>,
    tx: mpsc::UnboundedSender<Incoming>,
}

/// Removes a listener when its inbox is dropped.
struct ListenGuard {
    router: Arc<Router>,
    pattern: String,
    id: u64,
}

struct ChannelState {
    offset: u64,
    epoch: Arc<str>,
    nodes: Vec<(u64, mpsc::UnboundedSender<Publication>)>,
}

// === impl MemoryBroker ===

impl MemoryBroker {
    pub fn new() -> Self {
        MemoryBroker {
            inner: Arc::new(BrokerInner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                next_node: AtomicU64::new(1),
                router: Arc::new(Router::default()),
                subjects: Subjects::default(),
            }),
        }
    }

    /// Attaches a node whose subscriptions are delivered to `deliver` (from a task of the
    /// node's own; call within a tokio runtime).
    pub fn connect(&self, deliver: Arc<dyn Deliver>) -> MemoryBus {
        let (queue, mut rx) = mpsc::unbounded_channel::<Publication>();
        tokio::spawn(async move {
            // Whatever queued up while the deliverer was busy goes in one call.
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                deliver.deliver(&batch).await;
                batch.clear();
            }
        });
        MemoryBus {
            node: self.inner.next_node.fetch_add(1, Ordering::Relaxed),
            broker: self.inner.clone(),
            queue,
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
    /// The subject of `to`, refused as NATS would refuse it (see `subjects`).
    fn subject(&self, to: &Address) -> Result<String, BusError> {
        self.subjects.address(to).map_err(|e| BusError::Invalid(e.to_string()))
    }

    fn shard(&self, channel: &Channel) -> MutexGuard<'_, HashMap<Channel, ChannelState>> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(channel);
        // A poisoned shard only means a Deliver panicked; the map itself is consistent.
        self.shards[(h as usize) % SHARDS].lock().unwrap_or_else(|p| p.into_inner())
    }
}

// === impl Router ===

impl Router {
    fn listen(self: &Arc<Self>, pattern: String, queue: Option<String>) -> Inbox {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.by_kind(&pattern).entry(pattern.clone()).or_default().push(Listener { id, queue, tx });
        drop(listeners);
        let guard = ListenGuard { router: self.clone(), pattern, id };
        Inbox::new(
            futures_util::stream::poll_fn(move |cx| {
                let _keep = &guard;
                rx.poll_recv(cx)
            })
            .boxed(),
        )
    }

    /// Delivers to every matching listener (one per queue group); returns how many got it.
    fn route(&self, subject: &str, incoming: Incoming) -> usize {
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let mut groups: HashMap<&str, Vec<&Listener>> = HashMap::new();
        let mut delivered = 0;
        let exact = listeners.exact.get(subject).into_iter().flatten();
        let wildcard = listeners.wildcard.iter().filter(|(pattern, _)| matches(pattern, subject));
        for l in exact.chain(wildcard.flat_map(|(_, ls)| ls)) {
            match &l.queue {
                Some(q) => groups.entry(q.as_str()).or_default().push(l),
                None => delivered += l.tx.send(incoming.clone()).is_ok() as usize,
            }
        }
        for members in groups.values() {
            let pick = members[fastrand::usize(..members.len())];
            delivered += pick.tx.send(incoming.clone()).is_ok() as usize;
        }
        delivered
    }
}

impl Drop for ListenGuard {
    fn drop(&mut self) {
        let mut listeners = self.router.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let listeners = listeners.by_kind(&self.pattern);
        if let Some(ls) = listeners.get_mut(&self.pattern) {
            ls.retain(|l| l.id != self.id);
            if ls.is_empty() {
                listeners.remove(&self.pattern);
            }
        }
    }
}

impl Listeners {
    /// The map `pattern` belongs in.
    fn by_kind(&mut self, pattern: &str) -> &mut HashMap<String, Vec<Listener>> {
        if pattern.split('.').any(|token| token == "*" || token == ">") { &mut self.wildcard } else { &mut self.exact }
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
                    let _ = node.send(publication.clone());
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
            state.nodes.push((self.node, self.queue.clone()));
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

    fn set_sequencer_shards(&self, _shards: &[u16]) {}

    fn send(&self, to: &Address, message: Message) -> BoxFuture<'static, Result<(), BusError>> {
        let subject = match self.broker.subject(to) {
            Ok(s) => s,
            Err(e) => return ready(Err(e)).boxed(),
        };
        self.broker.router.route(&subject, Incoming { message, reply: None });
        ready(Ok(())).boxed()
    }

    fn request(
        &self,
        to: &Address,
        message: Message,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Message, BusError>> {
        let inbox = self.request_many(to, message);
        async move {
            let mut inbox = inbox.await?;
            match tokio::time::timeout(timeout, inbox.next()).await {
                Ok(Some(incoming)) => Ok(incoming.message),
                Ok(None) => Err(BusError::Unavailable("bus closed".into())),
                Err(_) => Err(BusError::Timeout),
            }
        }
        .boxed()
    }

    fn request_many(&self, to: &Address, message: Message) -> BoxFuture<'static, Result<Inbox, BusError>> {
        let subject = match self.broker.subject(to) {
            Ok(s) => s,
            Err(e) => return ready(Err(e)).boxed(),
        };
        let router = &self.broker.router;
        let reply = format!("_INBOX.{}", router.next_id.fetch_add(1, Ordering::Relaxed));
        let inbox = router.listen(reply.clone(), None);
        let result = match router.route(&subject, Incoming { message, reply: Some(ReplyTo(reply)) }) {
            0 => Err(BusError::NoResponders),
            _ => Ok(inbox),
        };
        ready(result).boxed()
    }

    fn listen(&self, at: &Address, queue: Option<&str>) -> BoxFuture<'static, Result<Inbox, BusError>> {
        let result =
            self.broker.subject(at).map(|pattern| self.broker.router.listen(pattern, queue.map(str::to_owned)));
        ready(result).boxed()
    }

    fn reply(&self, to: &ReplyTo, message: Message) -> BoxFuture<'static, Result<(), BusError>> {
        self.broker.router.route(&to.0, Incoming { message, reply: None });
        ready(Ok(())).boxed()
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
