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
//!
//! Every queue is bounded, as NATS bounds each subscription of an async-nats client (65,536
//! messages): a node's publication queue at [`NODE_QUEUE`] and each listener's inbox at
//! [`LISTENER_QUEUE`]. A full queue drops the newest message (the one that does not fit),
//! counted in `switchboard_bus_dropped_messages_total{queue="node"|"listener"}`; what was
//! queued before stays in order, so a channel's publications still reach a node in offset
//! order, possibly with a gap, which the contract's "at most once" allows. The broker
//! never waits for room: a publish holds its channel's shard lock, and a route the
//! router's.

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

/// Publications waiting for one node's deliverer before new ones are dropped.
pub const NODE_QUEUE: usize = 65_536;
/// Messages waiting in one listener's inbox before new ones are dropped.
pub const LISTENER_QUEUE: usize = 65_536;

/// The in-process bus shared by every node of one process.
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<BrokerInner>,
}

/// One node's handle on a [`MemoryBroker`].
pub struct MemoryBus {
    node: u64,
    broker: Arc<BrokerInner>,
    queue: mpsc::Sender<Publication>,
    subscriptions: AtomicUsize,
}

struct BrokerInner {
    shards: Vec<Mutex<HashMap<Channel, ChannelState>>>,
    next_node: AtomicU64,
    router: Arc<Router>,
    subjects: Subjects,
    node_queue: usize,
}

/// Listeners of addressed messages, by subject pattern.
struct Router {
    listeners: Mutex<Listeners>,
    next_id: AtomicU64,
    listener_queue: usize,
    /// Messages and publications dropped by full queues.
    dropped: AtomicU64,
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
    tx: mpsc::Sender<Incoming>,
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
    nodes: Vec<(u64, mpsc::Sender<Publication>)>,
}

// === impl MemoryBroker ===

impl MemoryBroker {
    pub fn new() -> Self {
        MemoryBroker::with_bounds(NODE_QUEUE, LISTENER_QUEUE)
    }

    /// A broker whose node queues hold `node_queue` publications and whose listeners hold
    /// `listener_queue` messages (each at least 1).
    pub fn with_bounds(node_queue: usize, listener_queue: usize) -> Self {
        MemoryBroker {
            inner: Arc::new(BrokerInner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                next_node: AtomicU64::new(1),
                router: Arc::new(Router {
                    listeners: Mutex::default(),
                    next_id: AtomicU64::new(0),
                    listener_queue: listener_queue.max(1),
                    dropped: AtomicU64::new(0),
                }),
                subjects: Subjects::default(),
                node_queue: node_queue.max(1),
            }),
        }
    }

    /// Attaches a node whose subscriptions are delivered to `deliver` (from a task of the
    /// node's own; call within a tokio runtime).
    pub fn connect(&self, deliver: Arc<dyn Deliver>) -> MemoryBus {
        let (queue, mut rx) = mpsc::channel::<Publication>(self.inner.node_queue);
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

impl MemoryBroker {
    /// Messages and publications dropped so far because their queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.router.dropped.load(Ordering::Relaxed)
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
        let (tx, mut rx) = mpsc::channel(self.listener_queue);
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
                None => delivered += offer(&l.tx, incoming.clone(), "listener", &self.dropped) as usize,
            }
        }
        for members in groups.values() {
            let pick = members[fastrand::usize(..members.len())];
            delivered += offer(&pick.tx, incoming.clone(), "listener", &self.dropped) as usize;
        }
        delivered
    }
}

/// Queues `item` without waiting; a full queue drops it (counted). True when a receiver
/// exists, full or not: a listener that cannot keep up is still there, as on NATS.
fn offer<T>(tx: &mpsc::Sender<T>, item: T, queue: &'static str, dropped: &AtomicU64) -> bool {
    match tx.try_send(item) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
            crate::metrics::dropped(queue);
            // Logged at 1, 2, 4, 8… drops: a flood cannot flood the log too.
            if n.is_power_of_two() {
                tracing::warn!(queue, dropped = n, "an in-process bus queue is full; dropping new messages");
            }
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
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
                    offer(node, publication.clone(), "node", &self.broker.router.dropped);
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

    #[tokio::test]
    async fn a_listener_that_does_not_read_keeps_its_bound_in_order_and_the_rest_is_dropped() {
        let broker = MemoryBroker::with_bounds(NODE_QUEUE, 8);
        let bus = broker.connect(Arc::new(crate::NoDelivery));
        let at = Address::Node("stuck".into());
        let mut inbox = bus.listen(&at, None).await.unwrap();
        for i in 0..20u8 {
            bus.send(&at, Message::new(vec![i])).await.unwrap();
        }
        assert_eq!(broker.dropped(), 12);
        // A full listener is still there: a request finds a responder, and is dropped too.
        assert!(bus.request_many(&at, Message::new(vec![99])).await.is_ok());
        assert_eq!(broker.dropped(), 13);
        for i in 0..8u8 {
            assert_eq!(inbox.next().await.unwrap().message.payload[..], [i]);
        }
        let more = tokio::time::timeout(Duration::from_millis(20), inbox.next()).await;
        assert!(more.is_err(), "nothing past the bound was kept");
    }

    /// Records every publication it is handed.
    #[derive(Default)]
    struct Record(Mutex<Vec<u64>>);

    impl Deliver for Record {
        fn deliver<'a>(&'a self, batch: &'a [Publication]) -> BoxFuture<'a, ()> {
            self.0.lock().unwrap().extend(batch.iter().map(|p| p.offset));
            ready(()).boxed()
        }
    }

    impl Record {
        /// The offsets recorded once `n` have arrived (or what arrived within a second).
        async fn first(&self, n: usize) -> Vec<u64> {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while self.0.lock().unwrap().len() < n && tokio::time::Instant::now() < deadline {
                tokio::task::yield_now().await;
            }
            self.0.lock().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn a_node_that_falls_behind_gets_its_oldest_publications_in_order_and_loses_the_newest() {
        let broker = MemoryBroker::with_bounds(4, LISTENER_QUEUE);
        let record = Arc::new(Record::default());
        let bus = broker.connect(record.clone());
        let channel: Channel = "n:c".parse().unwrap();
        bus.subscribe(&channel).await.unwrap();
        // The current-thread runtime runs the drain task only once this test yields.
        for _ in 0..20 {
            bus.publish(&channel, Bytes::from_static(b"x")).await.unwrap();
        }
        assert_eq!(broker.dropped(), 16);
        assert_eq!(record.first(4).await, [1, 2, 3, 4]);
        // Once it caught up, the next publication arrives with the channel's next offset.
        bus.publish(&channel, Bytes::from_static(b"y")).await.unwrap();
        assert_eq!(record.first(5).await, [1, 2, 3, 4, 21]);
    }
}
