//! A session never waits on the bus inside its loop: on a bus made slow on purpose, a
//! session keeps delivering, answering pings and taking commands while its own commands
//! wait, pipelined commands overlap, and their replies keep command order.
//!
//! The gateway runs in process on [`SlowBus`], a memory bus whose `publish`, `position` and
//! subscribe confirmation take a set time on channels of namespace `slow`. The timings
//! asserted here are bounds against that artificial delay, not against normal running.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use switchboard_bus::{
    Bus, BusError, Channels, HistoryPage, HistoryQuery, MemoryBroker, MemoryBus, NoDelivery, Position, PublishOptions,
};
use switchboard_gateway::{Gateway, GatewayConfig};
use switchboard_tests::{DEADLINE, RawWs, gateway_config};
use switchboard_wire::Channel;

/// A [`MemoryBus`] that takes `delay` to publish, to answer a position and to confirm a
/// subscription on channels of namespace `slow`; the first `refusals` subscriptions (of any
/// channel) are refused after that delay. Everything else is the memory bus's.
struct SlowBus {
    inner: MemoryBus,
    delay: Duration,
    refusals: Arc<AtomicUsize>,
}

impl SlowBus {
    fn later<T: Send + 'static>(&self, channel: &Channel, f: BoxFuture<'static, T>) -> BoxFuture<'static, T> {
        if channel.namespace() != "slow" {
            return f;
        }
        let delay = self.delay;
        async move {
            tokio::time::sleep(delay).await;
            f.await
        }
        .boxed()
    }
}

impl Channels for SlowBus {
    fn publish(
        &self,
        channel: &Channel,
        data: Bytes,
        options: PublishOptions,
    ) -> BoxFuture<'static, Result<Option<Position>, BusError>> {
        self.later(channel, self.inner.publish(channel, data, options))
    }

    fn subscribe(&self, channel: &Channel) -> BoxFuture<'static, Result<(), BusError>> {
        let refused = self.refusals.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let confirmed = self.inner.subscribe(channel);
        let confirmed =
            if refused { async { Err(BusError::Unavailable("refused".into())) }.boxed() } else { confirmed };
        self.later(channel, confirmed)
    }

    fn unsubscribe(&self, channel: &Channel) {
        self.inner.unsubscribe(channel)
    }

    fn publish_event(&self, channel: &Channel, event: Bytes) -> BoxFuture<'static, Result<(), BusError>> {
        self.inner.publish_event(channel, event)
    }

    fn position(&self, channel: &Channel) -> BoxFuture<'static, Result<Option<Position>, BusError>> {
        self.later(channel, self.inner.position(channel))
    }

    fn history(&self, channel: &Channel, query: HistoryQuery) -> BoxFuture<'static, Result<HistoryPage, BusError>> {
        self.later(channel, self.inner.history(channel, query))
    }

    fn remove_history(&self, channel: &Channel) -> BoxFuture<'static, Result<(), BusError>> {
        self.later(channel, self.inner.remove_history(channel))
    }

    fn subscriptions(&self) -> usize {
        self.inner.subscriptions()
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }
}

switchboard_bus::delegate_messages!(SlowBus, inner);

/// A gateway alone on a [`SlowBus`] (no control: the memory bus sequences by itself).
struct Node {
    gateway: Gateway,
    addr: SocketAddr,
    broker: MemoryBroker,
    refusals: Arc<AtomicUsize>,
}

async fn start(delay: Duration, config: GatewayConfig) -> Node {
    let broker = MemoryBroker::new();
    let refusals = Arc::new(AtomicUsize::new(0));
    let (b, r) = (broker.clone(), refusals.clone());
    let gateway = Gateway::new(config, None, |deliver| async move {
        Ok::<_, anyhow::Error>(Arc::new(SlowBus { inner: b.connect(deliver), delay, refusals: r }) as Arc<dyn Bus>)
    })
    .await
    .expect("gateway starts");
    let listener = gateway.bind().await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = gateway.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    Node { gateway, addr, broker, refusals }
}

fn subscribe(id: u32, channel: &str) -> String {
    format!(r#"{{"id":{id},"subscribe":{{"channel":"{channel}"}}}}"#)
}

fn unsubscribe(id: u32, channel: &str) -> String {
    format!(r#"{{"id":{id},"unsubscribe":{{"channel":"{channel}"}}}}"#)
}

/// The next frame, with the time it arrived: text as JSON, a pong as `{"pong":true}`.
async fn next(ws: &mut RawWs) -> (Instant, serde_json::Value) {
    loop {
        let frame = tokio::time::timeout(DEADLINE, ws.ws.read_frame()).await.expect("a frame in time").unwrap();
        let at = Instant::now();
        match frame.opcode {
            OpCode::Text => return (at, serde_json::from_slice(&frame.payload).unwrap()),
            OpCode::Pong => return (at, serde_json::json!({"pong": true})),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_delivering_and_answering_while_its_command_waits_on_the_bus() {
    let node = start(Duration::from_secs(2), gateway_config()).await;
    let mut ws = RawWs::connected(node.addr).await;
    ws.text(&subscribe(2, "fast:feed")).await;
    assert!(ws.json().await["subscribe"].is_object());
    // A steady stream from another node of the same broker: one publication every 10 ms.
    let publisher = node.broker.connect(Arc::new(NoDelivery));
    let feed = Channel::parse("fast:feed").unwrap();
    let stream = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tick.tick().await;
            publisher.publish(&feed, Bytes::from_static(b"\"tick\""), PublishOptions::default()).await.unwrap();
        }
    });
    next(&mut ws).await;

    let asked = Instant::now();
    ws.text(&subscribe(3, "slow:a")).await;
    ws.ws.write_frame(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"hi"))).await.unwrap();
    let pinged = Instant::now();
    ws.text(r#"{"id":4,"ping":{}}"#).await;
    let (mut last_pub, mut longest_gap, mut pubs) = (Instant::now(), Duration::ZERO, 0);
    let (mut pong, mut replies) = (None, Vec::new());
    while replies.len() < 2 {
        let (at, frame) = next(&mut ws).await;
        if frame["pub"].is_object() {
            assert_eq!(frame["pub"]["channel"], "fast:feed");
            if replies.is_empty() {
                longest_gap = longest_gap.max(at - last_pub);
                pubs += 1;
            }
            last_pub = at;
        } else if frame["pong"] == true {
            assert!(replies.is_empty(), "the pong comes while the subscribe waits");
            pong = Some(at - pinged);
        } else {
            replies.push((at, frame));
        }
    }
    stream.abort();
    let waited = replies[0].0 - asked;
    assert!(waited >= Duration::from_millis(1900), "the bus did delay the subscribe ({waited:?})");
    assert!(longest_gap < Duration::from_millis(200), "deliveries stalled for {longest_gap:?} during the wait");
    assert!(pubs >= 100, "only {pubs} publications in {waited:?}");
    let pong = pong.expect("a pong");
    assert!(pong < Duration::from_millis(200), "the pong took {pong:?}");
    // Replies keep command order: the ping command's reply comes after the subscribe's.
    assert_eq!(replies[0].1["id"], 3, "{:?}", replies[0].1);
    assert!(replies[0].1["subscribe"].is_object(), "{:?}", replies[0].1);
    assert_eq!(replies[1].1, serde_json::json!({"id": 4, "ping": {}}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_subscribes_overlap_on_the_bus_and_are_answered_in_command_order() {
    let node = start(Duration::from_millis(200), gateway_config()).await;
    let mut ws = RawWs::connected(node.addr).await;
    let started = Instant::now();
    for id in 2..102 {
        ws.text(&subscribe(id, &format!("slow:c{id}"))).await;
    }
    for id in 2..102 {
        let reply = ws.json().await;
        assert_eq!(reply["id"], id, "{reply}");
        assert!(reply["subscribe"].is_object(), "{reply}");
    }
    // Each subscribe waits 200 ms for its confirmation, then 200 ms for its position:
    // one after another, 100 of them would take 40 s.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "100 subscribes took {took:?}");
    assert_eq!(node.gateway.hub().channels(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_session_stops_reading_until_a_command_completes() {
    let config = GatewayConfig { max_pending_commands: 4, ..gateway_config() };
    let node = start(Duration::from_millis(500), config).await;
    let mut ws = RawWs::connected(node.addr).await;
    for id in 2..14 {
        ws.text(&subscribe(id, &format!("slow:c{id}"))).await;
    }
    // Only four commands have run their synchronous part (the hub add); the rest wait in
    // the socket.
    switchboard_tests::eventually("four subscribes in the hub", async || node.gateway.hub().channels() == 4).await;
    // The claim is that nothing more happens while the four wait (500 ms each): there is no
    // condition to wait for, so it gets a window shorter than the wait.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(node.gateway.hub().channels(), 4, "a full session reads no more commands");
    for id in 2..14 {
        let reply = ws.json().await;
        assert_eq!(reply["id"], id, "{reply}");
        assert!(reply["subscribe"].is_object(), "backpressure, not an error: {reply}");
    }
    assert_eq!(node.gateway.hub().channels(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_right_after_a_waiting_subscribe_leaves_the_session_unsubscribed() {
    let node = start(Duration::from_millis(300), gateway_config()).await;
    let mut ws = RawWs::connected(node.addr).await;
    ws.text(&subscribe(2, "slow:a")).await;
    ws.text(&unsubscribe(3, "slow:a")).await;
    let reply = ws.json().await;
    assert!(reply["subscribe"].is_object(), "{reply}");
    assert_eq!(ws.json().await, serde_json::json!({"id": 3, "unsubscribe": {}}));
    let channel = Channel::parse("slow:a").unwrap();
    assert_eq!(node.gateway.hub().subscribers(&channel), 0);
    assert_eq!(node.gateway.bus().subscriptions(), 0, "the bus subscription ended with the last subscriber");
    ws.text(&unsubscribe(4, "slow:a")).await;
    assert_eq!(ws.json().await["error"]["code"], 108, "not subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscribe_undoes_only_its_own_subscription() {
    let node = start(Duration::from_millis(300), gateway_config()).await;
    let channel = Channel::parse("slow:a").unwrap();
    let mut ws = RawWs::connected(node.addr).await;

    // Refused after the client already unsubscribed: nothing comes back.
    node.refusals.store(1, Ordering::SeqCst);
    ws.text(&subscribe(2, "slow:a")).await;
    ws.text(&unsubscribe(3, "slow:a")).await;
    assert_eq!(ws.json().await["error"]["code"], 110);
    assert_eq!(ws.json().await, serde_json::json!({"id": 3, "unsubscribe": {}}));
    assert_eq!(node.gateway.hub().subscribers(&channel), 0);

    // Refused after the client unsubscribed and subscribed again: the second subscription
    // stays.
    node.refusals.store(1, Ordering::SeqCst);
    ws.text(&subscribe(4, "slow:a")).await;
    ws.text(&unsubscribe(5, "slow:a")).await;
    ws.text(&subscribe(6, "slow:a")).await;
    assert_eq!(ws.json().await["error"]["code"], 110);
    assert_eq!(ws.json().await, serde_json::json!({"id": 5, "unsubscribe": {}}));
    assert!(ws.json().await["subscribe"].is_object());
    assert_eq!(node.gateway.hub().subscribers(&channel), 1);
    node.gateway
        .bus()
        .publish(&channel, Bytes::from_static(b"\"still here\""), PublishOptions::default())
        .await
        .unwrap();
    assert_eq!(ws.json().await["pub"]["channel"], "slow:a");

    // Refused with nothing else in between: the hub add is undone.
    node.refusals.store(1, Ordering::SeqCst);
    ws.text(&subscribe(7, "slow:b")).await;
    assert_eq!(ws.json().await["error"]["code"], 110);
    assert_eq!(node.gateway.hub().subscribers(&Channel::parse("slow:b").unwrap()), 0);
}
