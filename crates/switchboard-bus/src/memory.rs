//! The in-process bus: what `switchboard dev` runs on, and a real implementation of the
//! [`Bus`] contract (it passes the same conformance suite as the NATS bus).
//!
//! A [`MemoryBroker`] stands for the whole bus; each node gets a [`MemoryBus`] handle from
//! [`MemoryBroker::connect`]. Channels are sharded over a fixed number of locks that hold
//! which nodes receive each channel. Each node's queue is drained by its own task, which
//! calls the node's [`Deliver`]: the deliverer never runs under a broker lock, so it may take
//! its own locks (the gateway's) in any order with respect to `subscribe`.
//!
//! History is kept as JetStream keeps it, so that `switchboard dev` behaves as a cluster
//! does: one [`Stream`] per namespace entry with history (see [`Namespaces`]), whose offsets
//! count every publication of the entry (strictly increasing per channel, not by one), a
//! random epoch for the broker's life, trimming by size per channel and by age, removal
//! markers, and de-duplication by idempotency key. A publish to a history channel takes the
//! stream's lock, stores, and queues the publication to every subscribed node while still
//! holding it, which keeps each channel's deliveries in offset order. A live-only channel
//! takes its shard lock only, and its publications carry no offset. A channel event
//! ([`Channels::publish_event`]) takes the shard lock only, whatever the namespace, and is
//! queued to the subscribed nodes as an event beside the publications: it never reaches a
//! [`Stream`], so it takes no offset and the gap filling never sees it.
//!
//! Addressed (control-plane) messages go through a small in-process router that follows
//! NATS's rules: the same subjects, `*`/`>` wildcards, queue groups, reply inboxes, and
//! "no responders" for a request nobody listens to.
//!
//! Every queue is bounded, as NATS bounds each subscription of an async-nats client (65,536
//! messages): a node's publication queue at [`NODE_QUEUE`] and each listener's inbox at
//! [`LISTENER_QUEUE`]. A full queue drops the newest message (the one that does not fit),
//! counted in `switchboard_bus_dropped_messages_total{queue="node"|"listener"}`; what was
//! queued before stays in order. A history channel's gap is filled by the node's drain task
//! from the stream before the next publication is handed over (as the NATS bus fills one
//! from JetStream), a live-only channel's is not. The broker never waits for room: a
//! publish holds its stream's or its channel's shard lock, and a route the router's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};
use futures_util::stream::StreamExt;
use switchboard_wire::Channel;
use tokio::sync::mpsc;

use crate::history::{Kept, continuous};
use crate::subjects::{Address, Subjects, matches};
use crate::{
    BusError, Channels, Deliver, HistoryLimits, HistoryPage, HistoryQuery, Inbox, Incoming, MAX_BATCH, Message,
    Messages, Namespaces, Position, Publication, PublishOptions, ReplyTo, new_epoch,
};

const SHARDS: usize = 64;

/// Publications waiting for one node's deliverer before new ones are dropped.
pub const NODE_QUEUE: usize = 65_536;
/// Messages waiting in one listener's inbox before new ones are dropped.
pub const LISTENER_QUEUE: usize = 65_536;
/// How long an idempotency key is remembered (JetStream's default duplicate window).
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(120);
/// Idempotency keys remembered per stream at most (the oldest are forgotten first).
const MAX_KEYS: usize = 100_000;

/// The in-process bus shared by every node of one process.
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<BrokerInner>,
}

/// One node's handle on a [`MemoryBroker`].
pub struct MemoryBus {
    node: u64,
    broker: Arc<BrokerInner>,
    queue: mpsc::Sender<Queued>,
    /// The last offset handed to the deliverer per history channel, shared with the node's
    /// drain task (which fills gaps from it) and forgotten on unsubscribe.
    delivered: Arc<Mutex<HashMap<Channel, u64>>>,
    subscriptions: AtomicUsize,
}

/// What a node's queue carries: publications, and the channel events beside them.
enum Queued {
    Publication(QueuedPublication),
    /// A [`Channels::publish_event`] event: no offset, never in a stream.
    Event(Channel, Bytes),
}

/// A publication in a node's queue, with the offset of its channel's previous entry (0:
/// none kept, or a live-only channel).
struct QueuedPublication {
    publication: Publication,
    prev: u64,
}

struct BrokerInner {
    shards: Vec<Mutex<HashMap<Channel, ChannelState>>>,
    /// One per [`Namespaces`] entry with history, by key.
    streams: HashMap<String, Mutex<Stream>>,
    namespaces: Namespaces,
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

/// The nodes subscribed to a channel.
struct ChannelState {
    nodes: Vec<(u64, mpsc::Sender<Queued>)>,
}

/// One namespace entry's history, as a JetStream stream keeps it.
struct Stream {
    epoch: Arc<str>,
    limits: HistoryLimits,
    /// The last offset given.
    last: u64,
    /// Every kept entry's offset with its channel and time, oldest first: age trimming
    /// takes from the front, and the first key is the store's oldest offset.
    kept: BTreeMap<u64, (Channel, Instant)>,
    channels: HashMap<Channel, VecDeque<Entry>>,
    /// Idempotency keys seen within [`DEDUPE_WINDOW`], with the position they got.
    keys: HashMap<(Channel, String), u64>,
    key_order: VecDeque<(Instant, Channel, String)>,
}

/// A kept entry: a publication, or the marker `remove_history` leaves (`data: None`).
struct Entry {
    offset: u64,
    data: Option<Bytes>,
}

// === impl MemoryBroker ===

impl MemoryBroker {
    pub fn new() -> Self {
        MemoryBroker::with_bounds(NODE_QUEUE, LISTENER_QUEUE)
    }

    /// A broker whose node queues hold `node_queue` publications and whose listeners hold
    /// `listener_queue` messages (each at least 1), keeping no history.
    pub fn with_bounds(node_queue: usize, listener_queue: usize) -> Self {
        MemoryBroker::with_config(Namespaces::default(), node_queue, listener_queue)
    }

    /// A broker keeping history as `namespaces` say, with the default queue bounds.
    pub fn with_namespaces(namespaces: Namespaces) -> Self {
        MemoryBroker::with_config(namespaces, NODE_QUEUE, LISTENER_QUEUE)
    }

    pub fn with_config(namespaces: Namespaces, node_queue: usize, listener_queue: usize) -> Self {
        let streams =
            namespaces.with_history().map(|(key, limits)| (key.to_owned(), Mutex::new(Stream::new(limits)))).collect();
        MemoryBroker {
            inner: Arc::new(BrokerInner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                streams,
                namespaces,
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
        let (queue, mut rx) = mpsc::channel::<Queued>(self.inner.node_queue);
        let delivered: Arc<Mutex<HashMap<Channel, u64>>> = Arc::default();
        let (broker, last) = (self.inner.clone(), delivered.clone());
        tokio::spawn(async move {
            // Whatever queued up while the deliverer was busy goes in one call.
            let mut queued = Vec::with_capacity(MAX_BATCH);
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut interrupted = Vec::new();
            let mut events = Vec::new();
            while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
                {
                    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                    for q in queued.drain(..) {
                        match q {
                            Queued::Publication(q) => {
                                broker.continue_channel(q, &mut last, &mut batch, &mut interrupted)
                            }
                            Queued::Event(channel, event) => events.push((channel, event)),
                        }
                    }
                }
                for channel in interrupted.drain(..) {
                    deliver.interrupted(&channel);
                }
                for chunk in batch.chunks(MAX_BATCH) {
                    deliver.deliver(chunk).await;
                }
                batch.clear();
                for (channel, event) in events.drain(..) {
                    deliver.event(&channel, event);
                }
            }
        });
        MemoryBus {
            node: self.inner.next_node.fetch_add(1, Ordering::Relaxed),
            broker: self.inner.clone(),
            queue,
            delivered,
            subscriptions: AtomicUsize::new(0),
        }
    }
}

impl MemoryBroker {
    /// Forgets everything one namespace entry keeps and gives it a new epoch, as a deleted
    /// and recreated JetStream stream would.
    pub fn reset_history(&self, key: &str) {
        if let Some(stream) = self.inner.streams.get(key) {
            let mut stream = stream.lock().unwrap_or_else(|p| p.into_inner());
            let limits = stream.limits;
            *stream = Stream::new(limits);
        }
    }

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
    /// The stream `channel` is kept in, if its namespace keeps history.
    fn stream(&self, channel: &Channel) -> Option<MutexGuard<'_, Stream>> {
        // Streams exist only for the entries with history.
        let stream = self.streams.get(self.namespaces.key(channel))?;
        Some(stream.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Adds `q` to `batch` unless it repeats what was handed over; a history channel's
    /// publications that went missing before it (a full queue dropped them) are fetched
    /// from the stream first, or the deliverer is told they are lost.
    fn continue_channel(
        &self,
        q: QueuedPublication,
        last: &mut HashMap<Channel, u64>,
        batch: &mut Vec<Publication>,
        interrupted: &mut Vec<Channel>,
    ) {
        let p = q.publication;
        if p.offset == 0 {
            batch.push(p);
            return;
        }
        let Some(seen) = last.get_mut(&p.channel) else {
            // Not subscribed any more (or not yet): not this node's.
            return;
        };
        if *seen >= p.offset {
            return;
        }
        if *seen != 0 && q.prev > *seen {
            let since = Position { offset: *seen, epoch: p.epoch.clone() };
            let query = HistoryQuery { since: Some(since), limit: usize::MAX, reverse: false };
            match self.stream(&p.channel).map(|mut s| s.page(&p.channel, &query, Instant::now())) {
                Some(page) if page.continuous => {
                    crate::metrics::gap("filled");
                    batch.extend(page.publications.into_iter().filter(|f| f.offset < p.offset));
                }
                _ => {
                    crate::metrics::gap("lost");
                    interrupted.push(p.channel.clone());
                }
            }
        }
        *seen = p.offset;
        batch.push(p);
    }

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

// === impl Stream ===

impl Stream {
    fn new(limits: HistoryLimits) -> Self {
        Stream {
            epoch: new_epoch(),
            limits,
            last: 0,
            kept: BTreeMap::new(),
            channels: HashMap::new(),
            keys: HashMap::new(),
            key_order: VecDeque::new(),
        }
    }

    /// Drops what is older than the namespace's age.
    fn trim(&mut self, now: Instant) {
        while let Some((&offset, (_, at))) = self.kept.first_key_value() {
            if now.duration_since(*at) < self.limits.ttl {
                break;
            }
            let (channel, _) = self.kept.remove(&offset).expect("just seen");
            self.pop_front(&channel);
        }
        while let Some((at, _, _)) = self.key_order.front() {
            if now.duration_since(*at) < DEDUPE_WINDOW && self.key_order.len() <= MAX_KEYS {
                break;
            }
            let (_, channel, key) = self.key_order.pop_front().expect("just seen");
            self.keys.remove(&(channel, key));
        }
    }

    /// Removes the channel's oldest entry (already gone from `kept`).
    fn pop_front(&mut self, channel: &Channel) {
        if let Some(entries) = self.channels.get_mut(channel) {
            entries.pop_front();
            if entries.is_empty() {
                self.channels.remove(channel);
            }
        }
    }

    /// Stores an entry; returns its offset and the channel's previous entry's (0: none).
    fn store(&mut self, channel: &Channel, data: Option<Bytes>, now: Instant) -> (u64, u64) {
        self.trim(now);
        self.last += 1;
        let offset = self.last;
        let entries = self.channels.entry(channel.clone()).or_default();
        let prev = entries.back().map_or(0, |e| e.offset);
        entries.push_back(Entry { offset, data });
        let trimmed = (entries.len() > self.limits.size as usize).then(|| entries.pop_front()).flatten();
        self.kept.insert(offset, (channel.clone(), now));
        if let Some(old) = trimmed {
            self.kept.remove(&old.offset);
        }
        (offset, prev)
    }

    /// The channel's latest position: its last entry, or the stream's last offset when it
    /// keeps nothing of the channel.
    fn position(&self, channel: &Channel) -> Position {
        let offset = self.channels.get(channel).and_then(|e| e.back()).map_or(self.last, |e| e.offset);
        Position { offset, epoch: self.epoch.clone() }
    }

    fn page(&mut self, channel: &Channel, query: &HistoryQuery, now: Instant) -> HistoryPage {
        self.trim(now);
        let latest = self.position(channel);
        let empty = VecDeque::new();
        let entries = self.channels.get(channel).unwrap_or(&empty);
        let continuous = query.since.as_ref().is_none_or(|since| {
            let kept = Kept {
                epoch: self.epoch.clone(),
                store_first: self.kept.first_key_value().map_or(self.last + 1, |(&o, _)| o),
                store_last: self.last,
                channel_total: entries.len() as u64,
                size: self.limits.size,
                has_since: entries.iter().any(|e| e.offset == since.offset),
                first_after_is_marker: entries
                    .iter()
                    .find(|e| e.offset > since.offset)
                    .is_some_and(|e| e.data.is_none()),
            };
            continuous(since, &kept)
        });
        let since = query.since.as_ref().filter(|_| continuous).map(|p| p.offset);
        let publication = |e: &Entry| {
            e.data.clone().map(|data| Publication {
                channel: channel.clone(),
                offset: e.offset,
                epoch: self.epoch.clone(),
                data,
            })
        };
        let publications = if query.reverse {
            let before = since.unwrap_or(u64::MAX);
            entries.iter().rev().filter(|e| e.offset < before).filter_map(publication).take(query.limit).collect()
        } else {
            let after = since.unwrap_or(0);
            entries.iter().filter(|e| e.offset > after).filter_map(publication).take(query.limit).collect()
        };
        HistoryPage { publications, latest, continuous }
    }

    /// Forgets the channel's entries and leaves a removal marker.
    fn remove(&mut self, channel: &Channel, now: Instant) {
        if let Some(entries) = self.channels.remove(channel) {
            for e in entries {
                self.kept.remove(&e.offset);
            }
        }
        self.store(channel, None, now);
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

impl Channels for MemoryBus {
    fn publish(
        &self,
        channel: &Channel,
        data: Bytes,
        options: PublishOptions,
    ) -> BoxFuture<'static, Result<Option<Position>, BusError>> {
        let dropped = &self.broker.router.dropped;
        let Some(mut stream) = self.broker.stream(channel) else {
            let publication = Publication { channel: channel.clone(), offset: 0, epoch: Arc::from(""), data };
            if let Some(state) = self.broker.shard(channel).get(channel) {
                for (_, node) in &state.nodes {
                    let q = QueuedPublication { publication: publication.clone(), prev: 0 };
                    offer(node, Queued::Publication(q), "node", dropped);
                }
            }
            return ready(Ok(None)).boxed();
        };
        let now = Instant::now();
        stream.trim(now);
        let key = options.idempotency_key.map(|k| (channel.clone(), k));
        if let Some(&offset) = key.as_ref().and_then(|k| stream.keys.get(k)) {
            return ready(Ok(Some(Position { offset, epoch: stream.epoch.clone() }))).boxed();
        }
        let (offset, prev) = stream.store(channel, Some(data.clone()), now);
        if let Some((channel, key)) = key {
            stream.keys.insert((channel.clone(), key.clone()), offset);
            stream.key_order.push_back((now, channel, key));
        }
        let epoch = stream.epoch.clone();
        // Queued under the stream's lock: every node gets the channel's entries in order.
        if let Some(state) = self.broker.shard(channel).get(channel) {
            let publication = Publication { channel: channel.clone(), offset, epoch: epoch.clone(), data };
            for (_, node) in &state.nodes {
                let q = QueuedPublication { publication: publication.clone(), prev };
                offer(node, Queued::Publication(q), "node", dropped);
            }
        }
        drop(stream);
        ready(Ok(Some(Position { offset, epoch }))).boxed()
    }

    fn subscribe(&self, channel: &Channel) -> BoxFuture<'static, Result<(), BusError>> {
        let added = {
            let mut shard = self.broker.shard(channel);
            let state = shard.entry(channel.clone()).or_insert_with(|| ChannelState { nodes: Vec::new() });
            let added = !state.nodes.iter().any(|(id, _)| *id == self.node);
            if added {
                state.nodes.push((self.node, self.queue.clone()));
            }
            added
        };
        if added {
            self.subscriptions.fetch_add(1, Ordering::Relaxed);
            if self.broker.namespaces.history(channel).is_some() {
                self.delivered.lock().unwrap_or_else(|p| p.into_inner()).insert(channel.clone(), 0);
            }
        }
        ready(Ok(())).boxed()
    }

    fn unsubscribe(&self, channel: &Channel) {
        let removed = {
            let mut shard = self.broker.shard(channel);
            let Some(state) = shard.get_mut(channel) else { return };
            let before = state.nodes.len();
            state.nodes.retain(|(id, _)| *id != self.node);
            let removed = state.nodes.len() < before;
            if state.nodes.is_empty() {
                shard.remove(channel);
            }
            removed
        };
        if removed {
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
            self.delivered.lock().unwrap_or_else(|p| p.into_inner()).remove(channel);
        }
    }

    fn publish_event(&self, channel: &Channel, event: Bytes) -> BoxFuture<'static, Result<(), BusError>> {
        // The shard lock only, never the stream's: an event takes no offset.
        if let Some(state) = self.broker.shard(channel).get(channel) {
            for (_, node) in &state.nodes {
                offer(node, Queued::Event(channel.clone(), event.clone()), "node", &self.broker.router.dropped);
            }
        }
        ready(Ok(())).boxed()
    }

    fn position(&self, channel: &Channel) -> BoxFuture<'static, Result<Option<Position>, BusError>> {
        let position = self.broker.stream(channel).map(|mut s| {
            s.trim(Instant::now());
            s.position(channel)
        });
        ready(Ok(position)).boxed()
    }

    fn history(&self, channel: &Channel, query: HistoryQuery) -> BoxFuture<'static, Result<HistoryPage, BusError>> {
        let page = match self.broker.stream(channel) {
            Some(mut stream) => Ok(stream.page(channel, &query, Instant::now())),
            None => Err(BusError::NoHistory),
        };
        ready(page).boxed()
    }

    fn remove_history(&self, channel: &Channel) -> BoxFuture<'static, Result<(), BusError>> {
        let removed = match self.broker.stream(channel) {
            Some(mut stream) => {
                stream.remove(channel, Instant::now());
                Ok(())
            }
            None => Err(BusError::NoHistory),
        };
        ready(removed).boxed()
    }

    fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }

    fn is_ready(&self) -> bool {
        true
    }
}

impl Messages for MemoryBus {
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
    use crate::Bus;
    use crate::conformance::{Cluster, bus_conformance};

    impl Cluster for MemoryBroker {
        fn node(&self, deliver: Arc<dyn Deliver>) -> BoxFuture<'_, Arc<dyn Bus>> {
            let bus: Arc<dyn Bus> = Arc::new(self.connect(deliver));
            ready(bus).boxed()
        }

        fn lose_history<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
            self.reset_history(key);
            ready(()).boxed()
        }
    }

    #[tokio::test]
    async fn memory_bus_passes_the_conformance_suite() {
        bus_conformance(&MemoryBroker::with_namespaces(crate::conformance::namespaces())).await;
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
            self.0.lock().unwrap().extend(batch.iter().map(|p| p.data[0] as u64));
            ready(()).boxed()
        }
    }

    impl Record {
        /// The publications recorded (their first byte) once `n` have arrived (or what
        /// arrived within a second).
        async fn first(&self, n: usize) -> Vec<u64> {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while self.0.lock().unwrap().len() < n && tokio::time::Instant::now() < deadline {
                tokio::task::yield_now().await;
            }
            self.0.lock().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn a_node_that_falls_behind_loses_the_newest_live_only_and_gets_history_channels_filled() {
        let namespaces = Namespaces {
            default: None,
            namespaces: [("h".to_owned(), Some(HistoryLimits { size: 100, ttl: Duration::from_secs(60) }))].into(),
        };
        for (name, after_catching_up) in [("n:c", vec![1, 2, 3, 4, 21]), ("h:c", (1..=21).collect())] {
            let broker = MemoryBroker::with_config(namespaces.clone(), 4, LISTENER_QUEUE);
            let record = Arc::new(Record::default());
            let bus = broker.connect(record.clone());
            let channel: Channel = name.parse().unwrap();
            bus.subscribe(&channel).await.unwrap();
            // The current-thread runtime runs the drain task only once this test yields.
            for i in 1..=20u8 {
                bus.publish(&channel, Bytes::from(vec![i]), PublishOptions::default()).await.unwrap();
            }
            assert_eq!(broker.dropped(), 16);
            assert_eq!(record.first(4).await, [1, 2, 3, 4], "{name}");
            // The next publication that gets through shows the gap: a live-only channel's is
            // lost, a history channel's is filled from the stream first, in order.
            bus.publish(&channel, Bytes::from(vec![21]), PublishOptions::default()).await.unwrap();
            assert_eq!(record.first(after_catching_up.len()).await, after_catching_up, "{name}");
        }
    }
}
