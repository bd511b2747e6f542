//! The behavioural suite every [`Bus`] implementation must pass: the in-process bus in its
//! unit tests and the NATS bus (with JetStream) against real `nats-server` processes. One
//! part per half of the bus: [`channels_conformance`] and [`messages_conformance`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use switchboard_wire::Channel;
use tokio::sync::Notify;

use crate::{
    Address, Bus, BusError, Deliver, HistoryLimits, HistoryQuery, Message, Namespaces, Position, Publication,
    PublishOptions,
};

/// Makes bus nodes that all belong to one bus (one broker, one NATS cluster, …), each
/// configured with [`namespaces`].
pub trait Cluster: Send + Sync {
    fn node(&self, deliver: Arc<dyn Deliver>) -> BoxFuture<'_, Arc<dyn Bus>>;

    /// Loses the history of one namespace entry, as when its store is deleted and created
    /// again (a JetStream stream deleted by an operator).
    fn lose_history<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()>;
}

/// The namespaces every node of the suite is configured with: `conf` (history, 1,000 per
/// channel), `small` (history, 3 per channel), `brief` (history kept 1 s), `gone` (history,
/// lost by the suite), `live` and channels without a namespace (none).
pub fn namespaces() -> Namespaces {
    let hour = Duration::from_secs(3600);
    let history = |size, ttl| Some(HistoryLimits { size, ttl });
    Namespaces {
        default: None,
        namespaces: BTreeMap::from([
            ("conf".to_owned(), history(1000, hour)),
            ("small".to_owned(), history(3, hour)),
            ("brief".to_owned(), history(100, Duration::from_secs(1))),
            ("gone".to_owned(), history(100, hour)),
            ("live".to_owned(), None),
        ]),
    }
}

/// Records what a node receives, and the channels the bus said were interrupted.
#[derive(Default)]
pub struct Recorder {
    received: Mutex<Vec<Publication>>,
    interrupted: Mutex<Vec<Channel>>,
    events: Mutex<Vec<(Channel, Bytes)>>,
    changed: Notify,
}

impl Deliver for Recorder {
    fn deliver<'a>(&'a self, batch: &'a [Publication]) -> BoxFuture<'a, ()> {
        assert!(!batch.is_empty() && batch.len() <= crate::MAX_BATCH, "batches hold 1..=MAX_BATCH publications");
        self.received.lock().unwrap().extend_from_slice(batch);
        self.changed.notify_waiters();
        Box::pin(std::future::ready(()))
    }

    fn interrupted(&self, channel: &Channel) {
        self.interrupted.lock().unwrap().push(channel.clone());
    }

    fn event(&self, channel: &Channel, event: Bytes) {
        self.events.lock().unwrap().push((channel.clone(), event));
        self.changed.notify_waiters();
    }
}

/// Implements [`crate::Messages`] for a wrapper by handing every call to its field `$inner`
/// (a test bus that changes only how channels behave).
#[macro_export]
macro_rules! delegate_messages {
    ($wrapper:ty, $inner:ident) => {
        impl $crate::Messages for $wrapper {
            fn send(
                &self,
                to: &$crate::Address,
                message: $crate::Message,
            ) -> ::futures_util::future::BoxFuture<'static, Result<(), $crate::BusError>> {
                $crate::Messages::send(&self.$inner, to, message)
            }
            fn request(
                &self,
                to: &$crate::Address,
                message: $crate::Message,
                timeout: ::std::time::Duration,
            ) -> ::futures_util::future::BoxFuture<'static, Result<$crate::Message, $crate::BusError>> {
                $crate::Messages::request(&self.$inner, to, message, timeout)
            }
            fn request_many(
                &self,
                to: &$crate::Address,
                message: $crate::Message,
            ) -> ::futures_util::future::BoxFuture<'static, Result<$crate::Inbox, $crate::BusError>> {
                $crate::Messages::request_many(&self.$inner, to, message)
            }
            fn listen(
                &self,
                at: &$crate::Address,
                queue: Option<&str>,
            ) -> ::futures_util::future::BoxFuture<'static, Result<$crate::Inbox, $crate::BusError>> {
                $crate::Messages::listen(&self.$inner, at, queue)
            }
            fn reply(
                &self,
                to: &$crate::ReplyTo,
                message: $crate::Message,
            ) -> ::futures_util::future::BoxFuture<'static, Result<(), $crate::BusError>> {
                $crate::Messages::reply(&self.$inner, to, message)
            }
        }
    };
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder::default())
    }

    /// The publications received on `channel`, in arrival order.
    pub fn on(&self, channel: &Channel) -> Vec<Publication> {
        self.of(channel.as_str())
    }

    /// The publications received on the channel named `channel`, in arrival order.
    pub fn of(&self, channel: &str) -> Vec<Publication> {
        self.received.lock().unwrap().iter().filter(|p| p.channel.as_str() == channel).cloned().collect()
    }

    /// The channels the bus said were interrupted, in order.
    pub fn interruptions(&self) -> Vec<Channel> {
        self.interrupted.lock().unwrap().clone()
    }

    /// The events received on `channel`, in arrival order.
    pub fn events_on(&self, channel: &Channel) -> Vec<Bytes> {
        self.events.lock().unwrap().iter().filter(|(c, _)| c == channel).map(|(_, e)| e.clone()).collect()
    }

    /// Waits (woken by each delivery, at most 10 s) until `n` events arrived on `channel`,
    /// then returns them all.
    pub async fn wait_for_events(&self, channel: &Channel, n: usize) -> Vec<Bytes> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.changed.notified();
            let got = self.events_on(channel);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {n} events on {channel}, got {}", got.len());
            }
        }
    }

    /// Waits until `n` publications arrived on `channel`, then returns them all.
    pub async fn wait_for(&self, channel: &Channel, n: usize) -> Vec<Publication> {
        self.wait_until(channel, &format!("{n} publications"), |got| got.len() >= n).await
    }

    /// Waits (woken by each delivery, at most 10 s) until what arrived on `channel`
    /// satisfies `done`, then returns it.
    pub async fn wait_until(
        &self,
        channel: &Channel,
        what: &str,
        done: impl Fn(&[Publication]) -> bool,
    ) -> Vec<Publication> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.changed.notified();
            let got = self.on(channel);
            if done(&got) {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {what} on {channel}, got {}", got.len());
            }
        }
    }
}

/// Checks `check` until it holds, failing with `what` after 10 s.
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ch(name: &str) -> Channel {
    Channel::parse(name).unwrap()
}

/// Runs every case of the suite against `cluster`.
pub async fn bus_conformance(cluster: &dyn Cluster) {
    channels_conformance(cluster).await;
    messages_conformance(cluster).await;
}

/// The [`crate::Channels`] half: delivery, offsets, history, recovery.
pub async fn channels_conformance(cluster: &dyn Cluster) {
    publication_reaches_every_subscribed_node_once(cluster).await;
    unsubscribed_and_never_subscribed_nodes_receive_nothing(cluster).await;
    offsets_increase_in_publish_order(cluster).await;
    live_only_publications_keep_publisher_order_and_carry_no_offset(cluster).await;
    channels_have_independent_sequences(cluster).await;
    subscribing_twice_holds_one_subscription(cluster).await;
    position_reports_the_latest_offset(cluster).await;
    history_returns_what_was_stored_in_order(cluster).await;
    history_is_trimmed_by_size_and_age(cluster).await;
    the_epoch_changes_only_when_the_history_is_lost(cluster).await;
    recovery_meets_live_delivery_without_gap_or_duplicate(cluster).await;
    removed_history_is_gone_and_offsets_go_on(cluster).await;
    an_idempotency_key_stores_and_delivers_once(cluster).await;
    events_are_live_only_and_leave_offsets_contiguous(cluster).await;
}

/// The [`crate::Messages`] half: addressed messages and requests.
pub async fn messages_conformance(cluster: &dyn Cluster) {
    sent_messages_reach_every_listener_and_one_per_queue_group(cluster).await;
    requests_get_a_reply_or_fail_fast(cluster).await;
    request_many_collects_every_answer(cluster).await;
    a_dropped_inbox_stops_listening(cluster).await;
    a_returned_listen_or_subscribe_is_in_place_for_every_node(cluster).await;
}

async fn next(inbox: &mut crate::Inbox) -> crate::Incoming {
    tokio::time::timeout(Duration::from_secs(10), inbox.next()).await.expect("a message in time").expect("inbox open")
}

async fn sent_messages_reach_every_listener_and_one_per_queue_group(cluster: &dyn Cluster) {
    let a = cluster.node(Recorder::new()).await;
    let b = cluster.node(Recorder::new()).await;
    let mut plain = [
        a.listen(&Address::Node("conf-n".into()), None).await.unwrap(),
        b.listen(&Address::Node("conf-n".into()), None).await.unwrap(),
    ];
    let mut g0 = a.listen(&Address::UpstreamSend, Some("backends")).await.unwrap();
    let mut g1 = b.listen(&Address::UpstreamSend, Some("backends")).await.unwrap();
    let mut all_shards = a.listen(&Address::RegistryAll, None).await.unwrap();
    b.send(&Address::Node("conf-n".into()), Message::new("hello").with_header("Sb-Test", "1")).await.unwrap();
    for inbox in &mut plain {
        let m = next(inbox).await.message;
        assert_eq!((&m.payload[..], m.header("sb-test")), (&b"hello"[..], Some("1")));
    }
    for i in 0..10 {
        a.send(&Address::UpstreamSend, Message::new(format!("{i}"))).await.unwrap();
    }
    b.send(&Address::Registry(7), Message::new("r7")).await.unwrap();
    assert_eq!(next(&mut all_shards).await.message.payload, "r7", "the wildcard address hears every shard");
    // Ten messages to a queue group of two: each exactly once, in all.
    let mut got = Vec::new();
    while got.len() < 10 {
        tokio::select! {
            m = g0.next() => got.push(m.unwrap().message.payload),
            m = g1.next() => got.push(m.unwrap().message.payload),
            _ = tokio::time::sleep(Duration::from_secs(10)) => panic!("queue group got {} of 10", got.len()),
        }
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 10, "a queue group received a message twice");
}

async fn requests_get_a_reply_or_fail_fast(cluster: &dyn Cluster) {
    let server = cluster.node(Recorder::new()).await;
    let client = cluster.node(Recorder::new()).await;
    let mut inbox = server.listen(&Address::Replica("conf-r".into()), None).await.unwrap();
    let serving = tokio::spawn(async move {
        let req = inbox.next().await.unwrap();
        let mut answer = req.message.payload.to_vec();
        answer.reverse();
        server.reply(req.reply.as_ref().unwrap(), Message::new(answer)).await.unwrap();
        (inbox, server)
    });
    let reply =
        client.request(&Address::Replica("conf-r".into()), Message::new("abc"), Duration::from_secs(5)).await.unwrap();
    assert_eq!(reply.payload, "cba");
    let (_inbox, _server) = serving.await.unwrap();
    // A listener that never answers: a timeout. Nobody listening: no responders, at once.
    let started = std::time::Instant::now();
    let err = client
        .request(&Address::Replica("conf-r".into()), Message::new("x"), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout), "{err:?}");
    let err = client
        .request(&Address::Replica("conf-nobody".into()), Message::new("x"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::NoResponders), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "no responders took {:?}", started.elapsed());
}

async fn request_many_collects_every_answer(cluster: &dyn Cluster) {
    let mut serving = Vec::new();
    for i in 0..3 {
        let node = cluster.node(Recorder::new()).await;
        let mut inbox = node.listen(&Address::Gateways, None).await.unwrap();
        serving.push(tokio::spawn(async move {
            let req = inbox.next().await.unwrap();
            for part in 0..2 {
                node.reply(req.reply.as_ref().unwrap(), Message::new(format!("{i}.{part}"))).await.unwrap();
            }
            (inbox, node)
        }));
    }
    let asker = cluster.node(Recorder::new()).await;
    let mut answers = asker.request_many(&Address::Gateways, Message::new("snapshot")).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 6 {
        got.push(String::from_utf8(next(&mut answers).await.message.payload.to_vec()).unwrap());
    }
    got.sort();
    assert_eq!(got, ["0.0", "0.1", "1.0", "1.1", "2.0", "2.1"]);
}

async fn a_dropped_inbox_stops_listening(cluster: &dyn Cluster) {
    let node = cluster.node(Recorder::new()).await;
    let inbox = node.listen(&Address::User("conf-u".into()), None).await.unwrap();
    drop(inbox);
    let asker = cluster.node(Recorder::new()).await;
    // Unsubscription reaches the server asynchronously; it must take effect promptly.
    eventually("nobody listens any more", || async {
        let asked = asker.request(&Address::User("conf-u".into()), Message::new("x"), Duration::from_millis(300));
        matches!(asked.await, Err(BusError::NoResponders))
    })
    .await;
}

/// `listen` and `subscribe` return once the bus has the interest: another node's request
/// or publication right after finds it (no "no responders", nothing missed).
async fn a_returned_listen_or_subscribe_is_in_place_for_every_node(cluster: &dyn Cluster) {
    let recorder = Recorder::new();
    let a = cluster.node(recorder.clone()).await;
    let b = cluster.node(Recorder::new()).await;
    for i in 0..100 {
        let at = Address::Replica(format!("conf-barrier-{i}").into());
        let mut inbox = a.listen(&at, None).await.unwrap();
        let (asked, answer) = tokio::join!(b.request(&at, Message::new("x"), Duration::from_secs(5)), async {
            let req = next(&mut inbox).await;
            a.reply(req.reply.as_ref().unwrap(), Message::new("y")).await.unwrap();
        });
        let () = answer;
        assert_eq!(asked.unwrap_or_else(|e| panic!("request {i} right after listen: {e:?}")).payload, "y");
        let c = ch(&format!("conf:barrier-{i}"));
        a.subscribe(&c).await.unwrap();
        b.publish(&c, Bytes::from_static(b"1"), PublishOptions::default()).await.unwrap();
        recorder.wait_for(&c, 1).await;
    }
}

async fn publish(bus: &Arc<dyn Bus>, c: &Channel, data: &str) -> Option<Position> {
    bus.publish(c, Bytes::from(data.to_owned()), PublishOptions::default()).await.unwrap()
}

/// Publishes to a history channel: its position.
async fn stored(bus: &Arc<dyn Bus>, c: &Channel, data: &str) -> Position {
    publish(bus, c, data).await.expect("a history namespace gives a position")
}

fn after(since: Option<Position>, limit: usize) -> HistoryQuery {
    HistoryQuery { since, limit, reverse: false }
}

fn datas(ps: &[Publication]) -> Vec<String> {
    ps.iter().map(|p| String::from_utf8(p.data.to_vec()).unwrap()).collect()
}

async fn publication_reaches_every_subscribed_node_once(cluster: &dyn Cluster) {
    for name in ["conf:fanout", "live:fanout"] {
        let c = ch(name);
        let (ra, rb) = (Recorder::new(), Recorder::new());
        let a = cluster.node(ra.clone()).await;
        let b = cluster.node(rb.clone()).await;
        a.subscribe(&c).await.unwrap();
        b.subscribe(&c).await.unwrap();
        let pos = publish(&a, &c, "\"one\"").await;
        // A live-only publish returns once sent, not delivered: order holds per publisher.
        let second = if pos.is_some() { &b } else { &a };
        publish(second, &c, "\"two\"").await;
        for r in [&ra, &rb] {
            let got = r.wait_for(&c, 2).await;
            assert_eq!(datas(&got), ["\"one\"", "\"two\""], "{name}");
            if let Some(pos) = &pos {
                assert_eq!((got[0].offset, &got[0].epoch), (pos.offset, &pos.epoch));
            }
        }
        // A marker after the fact: once it arrives, nothing else is in flight.
        publish(&a, &c, "0").await;
        assert_eq!(ra.wait_for(&c, 3).await.len(), 3);
        assert_eq!(rb.wait_for(&c, 3).await.len(), 3);
    }
}

/// Channel events reach the subscribed nodes in order, interleaved with publications, and
/// are never stored: a history channel's offsets, positions, history pages and gap
/// filling see only the publications; a node that subscribes later gets no old event.
async fn events_are_live_only_and_leave_offsets_contiguous(cluster: &dyn Cluster) {
    for name in ["conf:events", "live:events"] {
        let c = ch(name);
        let (ra, rb, rc) = (Recorder::new(), Recorder::new(), Recorder::new());
        let a = cluster.node(ra.clone()).await;
        let b = cluster.node(rb.clone()).await;
        b.subscribe(&c).await.unwrap();
        let first = publish(&a, &c, "1").await;
        a.publish_event(&c, Bytes::from_static(b"join")).await.unwrap();
        publish(&a, &c, "2").await;
        a.publish_event(&c, Bytes::from_static(b"leave")).await.unwrap();
        let cn = cluster.node(rc.clone()).await;
        cn.subscribe(&c).await.unwrap();
        a.publish_event(&c, Bytes::from_static(b"late")).await.unwrap();
        let last = publish(&a, &c, "3").await;
        assert_eq!(rb.wait_for_events(&c, 3).await, ["join", "leave", "late"], "{name}: in order");
        assert_eq!(rc.wait_for_events(&c, 1).await, ["late"], "{name}: live only, no old event");
        let got = rb.wait_for(&c, 3).await;
        assert_eq!(datas(&got), ["1", "2", "3"], "{name}");
        assert!(rb.interruptions().is_empty(), "{name}: events leave no gap");
        let (Some(first), Some(last)) = (first, last) else { continue };
        // Each publication's offset is the one its publish answered, and the history holds
        // the three publications, continuous from the first: the events took no offset.
        assert_eq!((got[0].offset, got[2].offset), (first.offset, last.offset), "{name}");
        assert_eq!(b.position(&c).await.unwrap(), Some(last.clone()), "{name}");
        let query = HistoryQuery { since: Some(first.clone()), limit: 10, reverse: false };
        let page = b.history(&c, query).await.unwrap();
        assert!(page.continuous, "{name}");
        assert_eq!(datas(&page.publications), ["2", "3"], "{name}");
    }
}

async fn unsubscribed_and_never_subscribed_nodes_receive_nothing(cluster: &dyn Cluster) {
    let (c1, c2) = (ch("conf:unsub-1"), ch("live:unsub-2"));
    let (ra, rb) = (Recorder::new(), Recorder::new());
    let a = cluster.node(ra.clone()).await;
    let b = cluster.node(rb.clone()).await;
    a.subscribe(&c1).await.unwrap();
    b.subscribe(&c1).await.unwrap();
    b.subscribe(&c2).await.unwrap();
    publish(&a, &c1, "1").await;
    ra.wait_for(&c1, 1).await;
    a.unsubscribe(&c1);
    publish(&b, &c1, "2").await;
    publish(&b, &c2, "3").await;
    // b sees both; a saw only the first. Deliveries to a node keep per-channel order, and
    // a's marker on another channel proves the bus has caught up with it.
    rb.wait_for(&c1, 2).await;
    rb.wait_for(&c2, 1).await;
    let marker = ch("conf:unsub-marker");
    a.subscribe(&marker).await.unwrap();
    publish(&b, &marker, "m").await;
    ra.wait_for(&marker, 1).await;
    assert_eq!(ra.on(&c1).len(), 1, "an unsubscribed node received a publication: {:?}", ra.on(&c1));
    assert!(ra.on(&c2).is_empty(), "a node received a channel it never subscribed to");
}

async fn offsets_increase_in_publish_order(cluster: &dyn Cluster) {
    let c = ch("conf:offsets");
    let r = Recorder::new();
    let a = cluster.node(r.clone()).await;
    let publisher = cluster.node(Recorder::new()).await;
    a.subscribe(&c).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..100u32 {
        acked.push(stored(&publisher, &c, &i.to_string()).await);
        // Another channel of the same namespace in between: offsets need not be contiguous.
        publish(&publisher, &ch("conf:offsets-other"), "x").await;
    }
    let got = r.wait_for(&c, 100).await;
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.data, Bytes::from(i.to_string()), "publication {i} out of order");
        assert_eq!(p.offset, acked[i].offset);
        assert_eq!(p.epoch, acked[0].epoch, "the epoch changed mid-sequence");
    }
    assert!(got.windows(2).all(|w| w[1].offset > w[0].offset), "offsets do not increase");
}

async fn live_only_publications_keep_publisher_order_and_carry_no_offset(cluster: &dyn Cluster) {
    for name in ["live:order", "plain"] {
        let c = ch(name);
        let r = Recorder::new();
        let a = cluster.node(r.clone()).await;
        let publisher = cluster.node(Recorder::new()).await;
        a.subscribe(&c).await.unwrap();
        for i in 0..100u32 {
            assert_eq!(publish(&publisher, &c, &i.to_string()).await, None, "{name}: a live-only position");
        }
        let got = r.wait_for(&c, 100).await;
        assert_eq!(datas(&got), (0..100).map(|i| i.to_string()).collect::<Vec<_>>(), "{name}");
        assert!(
            got.iter().all(|p| p.offset == 0 && p.epoch.is_empty()),
            "{name}: live-only publications carry an offset"
        );
        assert_eq!(a.position(&c).await.unwrap(), None);
        assert!(matches!(a.history(&c, after(None, 10)).await, Err(BusError::NoHistory)));
        assert!(matches!(a.remove_history(&c).await, Err(BusError::NoHistory)));
    }
}

async fn channels_have_independent_sequences(cluster: &dyn Cluster) {
    let (c1, c2) = (ch("conf:seq-1"), ch("small:seq-2"));
    let r = Recorder::new();
    let a = cluster.node(r.clone()).await;
    a.subscribe(&c1).await.unwrap();
    a.subscribe(&c2).await.unwrap();
    let p1 = stored(&a, &c1, "1").await;
    let q1 = stored(&a, &c2, "1").await;
    let p2 = stored(&a, &c1, "2").await;
    assert!(p2.offset > p1.offset);
    assert_eq!(r.wait_for(&c2, 1).await[0].offset, q1.offset);
    assert_eq!(r.wait_for(&c1, 2).await[1].offset, p2.offset);
    assert_ne!(p1.epoch, q1.epoch, "two namespaces share one history");
}

async fn subscribing_twice_holds_one_subscription(cluster: &dyn Cluster) {
    let c = ch("conf:twice");
    let r = Recorder::new();
    let a = cluster.node(r.clone()).await;
    assert_eq!(a.subscriptions(), 0);
    a.subscribe(&c).await.unwrap();
    a.subscribe(&c).await.unwrap();
    assert_eq!(a.subscriptions(), 1);
    publish(&a, &c, "1").await;
    publish(&a, &c, "2").await;
    let got = r.wait_for(&c, 2).await;
    assert_eq!(got.len(), 2, "a double subscription delivered twice");
    a.unsubscribe(&c);
    assert_eq!(a.subscriptions(), 0);
}

async fn position_reports_the_latest_offset(cluster: &dyn Cluster) {
    let c = ch("conf:position");
    let a = cluster.node(Recorder::new()).await;
    let before = a.position(&c).await.unwrap().expect("a history channel has a position");
    let p = stored(&a, &c, "1").await;
    assert!(p.offset > before.offset);
    assert_eq!(before.epoch, p.epoch);
    assert_eq!(a.position(&c).await.unwrap(), Some(p.clone()));
    // Nothing published since the position: resuming from it loses nothing.
    let page = a.history(&c, after(Some(p), 10)).await.unwrap();
    assert!(page.continuous && page.publications.is_empty());
    let from_before = a.history(&c, after(Some(before), 10)).await.unwrap();
    assert!(from_before.continuous, "a position taken before the first publication");
    assert_eq!(datas(&from_before.publications), ["1"]);
}

async fn history_returns_what_was_stored_in_order(cluster: &dyn Cluster) {
    let c = ch("conf:history");
    let a = cluster.node(Recorder::new()).await;
    let mut at = Vec::new();
    for i in 0..10 {
        at.push(stored(&a, &c, &i.to_string()).await);
    }
    let all = a.history(&c, after(None, 100)).await.unwrap();
    assert_eq!(datas(&all.publications), (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(
        all.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        at.iter().map(|p| p.offset).collect::<Vec<_>>()
    );
    assert_eq!(all.latest, at[9]);
    let page = a.history(&c, after(Some(at[3].clone()), 3)).await.unwrap();
    assert!(page.continuous);
    assert_eq!(datas(&page.publications), ["4", "5", "6"]);
    let newest = a.history(&c, HistoryQuery { since: None, limit: 2, reverse: true }).await.unwrap();
    assert_eq!(datas(&newest.publications), ["9", "8"]);
    let before = a.history(&c, HistoryQuery { since: Some(at[3].clone()), limit: 10, reverse: true }).await.unwrap();
    assert_eq!(datas(&before.publications), ["2", "1", "0"]);
    // A position of another epoch is not continuous.
    let stranger = Position { offset: at[3].offset, epoch: Arc::from("another") };
    assert!(!a.history(&c, after(Some(stranger), 10)).await.unwrap().continuous);
}

async fn history_is_trimmed_by_size_and_age(cluster: &dyn Cluster) {
    let c = ch("small:trim");
    let a = cluster.node(Recorder::new()).await;
    let mut at = Vec::new();
    for i in 0..5 {
        at.push(stored(&a, &c, &i.to_string()).await);
    }
    let page = a.history(&c, after(None, 100)).await.unwrap();
    assert_eq!(datas(&page.publications), ["2", "3", "4"], "a channel keeps its size");
    assert!(!a.history(&c, after(Some(at[0].clone()), 100)).await.unwrap().continuous, "trimmed past");
    let kept = a.history(&c, after(Some(at[2].clone()), 100)).await.unwrap();
    assert!(kept.continuous, "a kept position");
    assert_eq!(datas(&kept.publications), ["3", "4"]);

    let c = ch("brief:trim");
    let first = stored(&a, &c, "old").await;
    stored(&a, &c, "missed").await;
    eventually("the publications aged out", || async {
        a.history(&c, after(None, 10)).await.unwrap().publications.is_empty()
    })
    .await;
    assert!(!a.history(&c, after(Some(first), 10)).await.unwrap().continuous, "a publication after it aged out");
}

async fn the_epoch_changes_only_when_the_history_is_lost(cluster: &dyn Cluster) {
    let c = ch("gone:epoch");
    let a = cluster.node(Recorder::new()).await;
    let p = stored(&a, &c, "1").await;
    drop(a);
    // Another node (a restarted process) continues the same history.
    let b = cluster.node(Recorder::new()).await;
    let q = stored(&b, &c, "2").await;
    assert_eq!(p.epoch, q.epoch);
    assert!(q.offset > p.offset);
    assert!(b.history(&c, after(Some(p.clone()), 10)).await.unwrap().continuous);
    cluster.lose_history("gone").await;
    let r = stored(&b, &c, "3").await;
    assert_ne!(r.epoch, q.epoch, "the history was lost and the epoch did not change");
    let page = b.history(&c, after(Some(q), 10)).await.unwrap();
    assert!(!page.continuous, "a position from the lost history");
    assert_eq!(datas(&page.publications), ["3"]);
}

async fn recovery_meets_live_delivery_without_gap_or_duplicate(cluster: &dyn Cluster) {
    let c = ch("conf:seam");
    let r = Recorder::new();
    let publisher = cluster.node(Recorder::new()).await;
    let first = stored(&publisher, &c, "0").await;
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let publishing = {
        let (publisher, c, done) = (publisher.clone(), c.clone(), done.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 1..300u32 {
                acked.push(stored(&publisher, &c, &i.to_string()).await.offset);
                done.store(acked.len(), std::sync::atomic::Ordering::Relaxed);
                if i % 10 == 0 {
                    // A rate, not a wait: about 10 publications a millisecond, so that the
                    // subscriber comes in while publishing goes on (the in-process bus would
                    // publish all 300 at once).
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            acked
        })
    };
    eventually("50 publications were made", || async { done.load(std::sync::atomic::Ordering::Relaxed) >= 50 }).await;
    // A client resuming from `first` while publishing goes on: the live subscription starts
    // before the history read, and the two are merged by offset.
    let a = cluster.node(r.clone()).await;
    a.subscribe(&c).await.unwrap();
    let page = a.history(&c, after(Some(first.clone()), 1000)).await.unwrap();
    assert!(page.continuous);
    let acked = publishing.await.unwrap();
    let last = *acked.last().unwrap();
    r.wait_until(&c, "the last publication, live", |got| got.last().map(|p| p.offset) == Some(last)).await;
    let mut merged = page.publications.iter().map(|p| p.offset).collect::<Vec<_>>();
    let seam = merged.last().copied().unwrap_or(first.offset);
    merged.extend(r.on(&c).iter().map(|p| p.offset).filter(|o| *o > seam));
    assert_eq!(merged, acked, "history and live delivery merged by offset lose or repeat something");
}

async fn removed_history_is_gone_and_offsets_go_on(cluster: &dyn Cluster) {
    let c = ch("conf:removed");
    let a = cluster.node(Recorder::new()).await;
    stored(&a, &c, "1").await;
    let p = stored(&a, &c, "2").await;
    a.remove_history(&c).await.unwrap();
    let page = a.history(&c, after(None, 10)).await.unwrap();
    assert!(page.publications.is_empty(), "{:?}", datas(&page.publications));
    assert!(!a.history(&c, after(Some(p.clone()), 10)).await.unwrap().continuous, "a position from before the removal");
    let q = stored(&a, &c, "3").await;
    assert!(q.offset > p.offset && q.epoch == p.epoch);
    assert_eq!(datas(&a.history(&c, after(None, 10)).await.unwrap().publications), ["3"]);
}

async fn an_idempotency_key_stores_and_delivers_once(cluster: &dyn Cluster) {
    let c = ch("conf:idempotent");
    let r = Recorder::new();
    let a = cluster.node(r.clone()).await;
    a.subscribe(&c).await.unwrap();
    let keyed = |k: &str| PublishOptions { idempotency_key: Some(k.to_owned()) };
    let p = a.publish(&c, Bytes::from_static(b"1"), keyed("k1")).await.unwrap();
    let again = a.publish(&c, Bytes::from_static(b"1"), keyed("k1")).await.unwrap();
    assert_eq!(p, again, "a retried publish got another position");
    // The same key on another channel is another publication.
    let other = ch("conf:idempotent-other");
    let q = a.publish(&other, Bytes::from_static(b"1"), keyed("k1")).await.unwrap();
    assert_ne!(q, p);
    a.publish(&c, Bytes::from_static(b"2"), keyed("k2")).await.unwrap();
    assert_eq!(datas(&r.wait_for(&c, 2).await), ["1", "2"]);
    assert_eq!(datas(&a.history(&c, after(None, 10)).await.unwrap().publications), ["1", "2"]);
}
