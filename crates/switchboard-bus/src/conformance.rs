//! The behavioural suite every [`Bus`] implementation must pass: the in-process bus in its
//! unit tests and the NATS bus against real `nats-server` processes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use switchboard_wire::Channel;
use tokio::sync::Notify;

use crate::{Address, Bus, BusError, Deliver, Message, Publication};

/// Makes bus nodes that all belong to one bus (one broker, one NATS cluster, …).
pub trait Cluster: Send + Sync {
    fn node(&self, deliver: Arc<dyn Deliver>) -> BoxFuture<'_, Arc<dyn Bus>>;
}

/// Records what a node receives.
#[derive(Default)]
pub struct Recorder {
    received: Mutex<Vec<Publication>>,
    changed: Notify,
}

impl Deliver for Recorder {
    fn deliver<'a>(&'a self, batch: &'a [Publication]) -> BoxFuture<'a, ()> {
        assert!(!batch.is_empty() && batch.len() <= crate::MAX_BATCH, "batches hold 1..=MAX_BATCH publications");
        self.received.lock().unwrap().extend_from_slice(batch);
        self.changed.notify_waiters();
        Box::pin(std::future::ready(()))
    }
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder::default())
    }

    /// The publications received on `channel`, in arrival order.
    pub fn on(&self, channel: &Channel) -> Vec<Publication> {
        self.received.lock().unwrap().iter().filter(|p| &p.channel == channel).cloned().collect()
    }

    /// Waits until `n` publications arrived on `channel`, then returns them all.
    pub async fn wait_for(&self, channel: &Channel, n: usize) -> Vec<Publication> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.changed.notified();
            let got = self.on(channel);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {n} publications on {channel}, got {}", got.len());
            }
        }
    }
}

fn ch(name: &str) -> Channel {
    Channel::parse(name).unwrap()
}

/// Runs every case of the suite against `cluster`.
pub async fn bus_conformance(cluster: &dyn Cluster) {
    publication_reaches_every_subscribed_node_once(cluster).await;
    unsubscribed_and_never_subscribed_nodes_receive_nothing(cluster).await;
    offsets_increase_by_one_in_publish_order(cluster).await;
    channels_have_independent_sequences(cluster).await;
    subscribing_twice_holds_one_subscription(cluster).await;
    position_reports_the_latest_offset(cluster).await;
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match asker.request(&Address::User("conf-u".into()), Message::new("x"), Duration::from_millis(300)).await {
            Err(BusError::NoResponders) => break,
            other => assert!(tokio::time::Instant::now() < deadline, "still listening: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
        b.publish(&c, Bytes::from_static(b"1")).await.unwrap();
        recorder.wait_for(&c, 1).await;
    }
}

async fn publication_reaches_every_subscribed_node_once(cluster: &dyn Cluster) {
    let c = ch("conf:fanout");
    let (ra, rb) = (Recorder::new(), Recorder::new());
    let a = cluster.node(ra.clone()).await;
    let b = cluster.node(rb.clone()).await;
    a.subscribe(&c).await.unwrap();
    b.subscribe(&c).await.unwrap();
    let pos = a.publish(&c, Bytes::from_static(b"\"one\"")).await.unwrap();
    b.publish(&c, Bytes::from_static(b"\"two\"")).await.unwrap();
    for r in [&ra, &rb] {
        let got = r.wait_for(&c, 2).await;
        let data: Vec<_> = got.iter().map(|p| p.data.clone()).collect();
        assert_eq!(data, [&b"\"one\""[..], &b"\"two\""[..]]);
        assert_eq!(got[0].offset, pos.offset);
        assert_eq!(got[0].epoch, pos.epoch);
    }
    // A marker after the fact: once it arrives, nothing else is in flight.
    a.publish(&c, Bytes::from_static(b"0")).await.unwrap();
    assert_eq!(ra.wait_for(&c, 3).await.len(), 3);
    assert_eq!(rb.wait_for(&c, 3).await.len(), 3);
}

async fn unsubscribed_and_never_subscribed_nodes_receive_nothing(cluster: &dyn Cluster) {
    let (c1, c2) = (ch("conf:unsub-1"), ch("conf:unsub-2"));
    let (ra, rb) = (Recorder::new(), Recorder::new());
    let a = cluster.node(ra.clone()).await;
    let b = cluster.node(rb.clone()).await;
    a.subscribe(&c1).await.unwrap();
    b.subscribe(&c1).await.unwrap();
    b.subscribe(&c2).await.unwrap();
    a.publish(&c1, Bytes::from_static(b"1")).await.unwrap();
    ra.wait_for(&c1, 1).await;
    a.unsubscribe(&c1);
    b.publish(&c1, Bytes::from_static(b"2")).await.unwrap();
    b.publish(&c2, Bytes::from_static(b"3")).await.unwrap();
    // b sees both; a saw only the first. Deliveries to a node keep per-channel order, and
    // a's marker on another channel proves the bus has caught up with it.
    rb.wait_for(&c1, 2).await;
    rb.wait_for(&c2, 1).await;
    let marker = ch("conf:unsub-marker");
    a.subscribe(&marker).await.unwrap();
    b.publish(&marker, Bytes::from_static(b"m")).await.unwrap();
    ra.wait_for(&marker, 1).await;
    assert_eq!(ra.on(&c1).len(), 1, "an unsubscribed node received a publication");
    assert!(ra.on(&c2).is_empty(), "a node received a channel it never subscribed to");
}

async fn offsets_increase_by_one_in_publish_order(cluster: &dyn Cluster) {
    let c = ch("conf:offsets");
    let r = Recorder::new();
    let a = cluster.node(r.clone()).await;
    let publisher = cluster.node(Recorder::new()).await;
    a.subscribe(&c).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..100u32 {
        acked.push(publisher.publish(&c, Bytes::from(i.to_string())).await.unwrap());
    }
    let got = r.wait_for(&c, 100).await;
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.data, Bytes::from(i.to_string()), "publication {i} out of order");
        assert_eq!(p.offset, acked[i].offset);
        assert_eq!(p.epoch, acked[0].epoch, "the epoch changed mid-sequence");
    }
    assert!(got.windows(2).all(|w| w[1].offset == w[0].offset + 1), "offsets are not contiguous");
}

async fn channels_have_independent_sequences(cluster: &dyn Cluster) {
    let (c1, c2) = (ch("conf:seq-1"), ch("conf:seq-2"));
    let r = Recorder::new();
    let a = cluster.node(r.clone()).await;
    a.subscribe(&c1).await.unwrap();
    a.subscribe(&c2).await.unwrap();
    let p1 = a.publish(&c1, Bytes::from_static(b"1")).await.unwrap();
    let p2 = a.publish(&c1, Bytes::from_static(b"2")).await.unwrap();
    let q1 = a.publish(&c2, Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(p2.offset, p1.offset + 1);
    assert_eq!(r.wait_for(&c2, 1).await[0].offset, q1.offset);
    assert_eq!(r.wait_for(&c1, 2).await[1].offset, p2.offset);
}

async fn subscribing_twice_holds_one_subscription(cluster: &dyn Cluster) {
    let c = ch("conf:twice");
    let r = Recorder::new();
    let a = cluster.node(r.clone()).await;
    assert_eq!(a.subscriptions(), 0);
    a.subscribe(&c).await.unwrap();
    a.subscribe(&c).await.unwrap();
    assert_eq!(a.subscriptions(), 1);
    a.publish(&c, Bytes::from_static(b"1")).await.unwrap();
    a.publish(&c, Bytes::from_static(b"2")).await.unwrap();
    let got = r.wait_for(&c, 2).await;
    assert_eq!(got.len(), 2, "a double subscription delivered twice");
    a.unsubscribe(&c);
    assert_eq!(a.subscriptions(), 0);
}

async fn position_reports_the_latest_offset(cluster: &dyn Cluster) {
    let c = ch("conf:position");
    let r = Recorder::new();
    let a = cluster.node(r.clone()).await;
    a.subscribe(&c).await.unwrap();
    let before = a.position(&c).await.unwrap();
    let p = a.publish(&c, Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(p.offset, before.offset + 1);
    let after = a.position(&c).await.unwrap();
    assert_eq!((after.offset, &after.epoch), (p.offset, &p.epoch));
}
