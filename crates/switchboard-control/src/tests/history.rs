//! History, idempotency keys and `PublishStream` on the in-process bus, with namespace `h`
//! keeping history and everything else live-only.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use switchboard_bus::conformance::Recorder;
use switchboard_bus::{
    BusError, Channels, HistoryLimits, HistoryPage, HistoryQuery, Namespaces, Position, PublishOptions,
};
use switchboard_wire::Channel;
use switchboard_wire::pb::{self, publish_stream_reply::Result as Outcome, switchboard_api_server::SwitchboardApi};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Status};

use super::*;
use crate::api::{MAX_HISTORY_LIMIT, MAX_STREAM_IN_FLIGHT};

/// `h:` keeps 5,000 publications per channel for an hour; the rest is live-only.
fn broker() -> MemoryBroker {
    let limits = HistoryLimits { size: 5000, ttl: Duration::from_secs(3600) };
    MemoryBroker::with_namespaces(Namespaces {
        default: None,
        namespaces: BTreeMap::from([("h".into(), Some(limits))]),
    })
}

fn publish(channel: &str, data: &str, key: &str) -> Request<pb::PublishApiRequest> {
    Request::new(pb::PublishApiRequest {
        channel: channel.into(),
        data: Bytes::from(data.to_owned()),
        idempotency_key: key.into(),
    })
}

fn history(channel: &str, since: Option<&pb::PublishApiResponse>, limit: u32, reverse: bool) -> pb::HistoryApiRequest {
    let since = since.map(|p| pb::HistoryPosition { offset: p.offset, epoch: p.epoch.clone() });
    pb::HistoryApiRequest { channel: channel.into(), since, limit, reverse }
}

fn offsets(page: &pb::HistoryApiResponse) -> Vec<u64> {
    page.publications.iter().map(|p| p.offset).collect()
}

async fn subscriber(broker: &MemoryBroker, channels: &[&str]) -> (switchboard_bus::MemoryBus, Arc<Recorder>) {
    let received = Arc::new(Recorder::default());
    let node = broker.connect(received.clone());
    for c in channels {
        node.subscribe(&Channel::parse(c).unwrap()).await.unwrap();
    }
    (node, received)
}

#[tokio::test]
async fn history_pages_forward_back_and_from_a_position_with_a_default_and_a_cap() {
    let broker = broker();
    let c1 = replica(&broker, "c1").await;
    let api = c1.api();
    let mut positions = Vec::new();
    for i in 0..1200 {
        positions.push(api.publish(publish("h:a", &i.to_string(), "")).await.unwrap().into_inner());
    }
    let all: Vec<u64> = positions.iter().map(|p| p.offset).collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "offsets increase");
    let page = |req| async { api.history(Request::new(req)).await.unwrap().into_inner() };

    let first = page(history("h:a", None, 0, false)).await;
    assert_eq!(offsets(&first), all[..100], "limit 0 is the default, 100, from the oldest");
    assert_eq!(first.publications[0].data, Bytes::from_static(b"0"));
    assert!(first.continuous, "always continuous without since");
    let latest = first.latest.clone().unwrap();
    assert_eq!((latest.offset, latest.epoch.as_str()), (all[1199], positions[0].epoch.as_str()));

    let capped = page(history("h:a", None, 5000, false)).await;
    assert_eq!(capped.publications.len(), MAX_HISTORY_LIMIT as usize, "a larger limit is cut to the cap");

    let newest = page(history("h:a", None, 3, true)).await;
    assert_eq!(offsets(&newest), [all[1199], all[1198], all[1197]], "reverse: newest first");

    let after = page(history("h:a", Some(&positions[9]), 5, false)).await;
    assert_eq!(offsets(&after), all[10..15], "since: what follows the position");
    assert!(after.continuous);
    let before = page(history("h:a", Some(&positions[9]), 3, true)).await;
    assert_eq!(offsets(&before), [all[8], all[7], all[6]], "since with reverse: what precedes it");

    let elsewhere = pb::PublishApiResponse { offset: all[9], epoch: "another".into() };
    let lost = page(history("h:a", Some(&elsewhere), 2, false)).await;
    assert!(!lost.continuous, "a position of another epoch is not continued");
    assert_eq!(offsets(&lost), all[..2], "but the oldest kept are returned");
}

#[tokio::test]
async fn history_remove_empties_the_channel_and_later_offsets_are_larger() {
    let broker = broker();
    let c1 = replica(&broker, "c1").await;
    let api = c1.api();
    let mut last = pb::PublishApiResponse::default();
    for i in 0..3 {
        last = api.publish(publish("h:r", &i.to_string(), "")).await.unwrap().into_inner();
    }
    let other = api.publish(publish("h:other", "1", "")).await.unwrap().into_inner();
    api.history_remove(Request::new(pb::HistoryRemoveApiRequest { channel: "h:r".into() })).await.unwrap();
    let empty = api.history(Request::new(history("h:r", None, 0, false))).await.unwrap().into_inner();
    assert!(empty.publications.is_empty(), "{empty:?}");
    let after = api.history(Request::new(history("h:r", Some(&last), 0, false))).await.unwrap().into_inner();
    assert!(!after.continuous, "a position from before the removal is no longer continuous");
    let next = api.publish(publish("h:r", "3", "")).await.unwrap().into_inner();
    assert!(next.offset > last.offset, "{} after {}", next.offset, last.offset);
    let kept = api.history(Request::new(history("h:other", None, 0, false))).await.unwrap().into_inner();
    assert_eq!(offsets(&kept), [other.offset], "other channels keep theirs");
}

#[tokio::test]
async fn history_calls_get_the_documented_status_codes() {
    let broker = broker();
    let c1 = replica(&broker, "c1").await;
    let api = c1.api();
    let remove = |c: &str| Request::new(pb::HistoryRemoveApiRequest { channel: c.into() });
    let cases: Vec<Case> = vec![
        ("history of a live-only channel", code(api.history(Request::new(history("live", None, 0, false)))).await, {
            Err(Code::FailedPrecondition)
        }),
        ("history of a bad channel", code(api.history(Request::new(history("a b", None, 0, false)))).await, {
            Err(Code::InvalidArgument)
        }),
        ("history of no channel", code(api.history(Request::new(history("", None, 0, false)))).await, {
            Err(Code::InvalidArgument)
        }),
        (
            "history of an empty history channel",
            code(api.history(Request::new(history("h:x", None, 0, false)))).await,
            { Ok(()) },
        ),
        ("remove a live-only channel's history", code(api.history_remove(remove("news"))).await, {
            Err(Code::FailedPrecondition)
        }),
        (
            "remove a bad channel's history",
            code(api.history_remove(remove("news.>"))).await,
            Err(Code::InvalidArgument),
        ),
        ("remove a history channel's", code(api.history_remove(remove("h:x"))).await, Ok(())),
    ];
    for (name, got, want) in cases {
        assert_eq!(got, want, "{name}");
    }
    let status = api.history(Request::new(history("live", None, 0, false))).await.unwrap_err();
    assert!(status.message().contains("keeps no history"), "{status:?}");
}

/// A case name, what the call returned, and what it should.
type Case = (&'static str, Result<(), Code>, Result<(), Code>);

async fn code<T>(call: impl Future<Output = Result<T, Status>>) -> Result<(), Code> {
    call.await.map(drop).map_err(|e| e.code())
}

#[tokio::test]
async fn a_retried_publish_with_the_same_key_is_stored_and_delivered_once() {
    let broker = broker();
    let c1 = replica(&broker, "c1").await;
    let (_node, received) = subscriber(&broker, &["h:k", "h:k2", "live:k"]).await;
    let api = c1.api();
    let first = api.publish(publish("h:k", "1", "order-17")).await.unwrap().into_inner();
    let retry = api.publish(publish("h:k", "1", "order-17")).await.unwrap().into_inner();
    assert_eq!(retry, first, "the retry is answered with the first one's position");
    let elsewhere = api.publish(publish("h:k2", "1", "order-17")).await.unwrap().into_inner();
    let other_key = api.publish(publish("h:k", "2", "order-18")).await.unwrap().into_inner();
    assert!(other_key.offset > first.offset);
    // Broadcast takes the key for each channel: h:k has it already, h:k3 not yet.
    let broadcast = pb::BroadcastRequest {
        channels: vec!["h:k".into(), "h:k3".into()],
        data: Bytes::from_static(b"1"),
        idempotency_key: "order-17".into(),
    };
    let results = api.broadcast(Request::new(broadcast)).await.unwrap().into_inner().results;
    assert_eq!(results[0].result, Some(pb::broadcast_result::Result::Ok(first.clone())));
    // A live-only namespace ignores keys: both are delivered.
    for _ in 0..2 {
        api.publish(publish("live:k", "1", "order-17")).await.unwrap();
    }
    eventually("the deliveries", || received.of("live:k").len() == 2 && received.of("h:k2").len() == 1).await;
    let delivered: Vec<u64> = received.of("h:k").iter().map(|p| p.offset).collect();
    assert_eq!(delivered, [first.offset, other_key.offset], "one delivery per key");
    assert_eq!(received.of("h:k2")[0].offset, elsewhere.offset, "the same key on another channel is another publish");
    let kept = api.history(Request::new(history("h:k", None, 0, false))).await.unwrap().into_inner();
    assert_eq!(offsets(&kept), [first.offset, other_key.offset], "and stored once");

    let long = "k".repeat(crate::api::MAX_IDEMPOTENCY_KEY_BYTES + 1);
    let max = "k".repeat(crate::api::MAX_IDEMPOTENCY_KEY_BYTES);
    let cases = [(long.as_str(), Err(Code::InvalidArgument)), ("a\nb", Err(Code::InvalidArgument)), (&max, Ok(()))];
    for (key, want) in cases {
        assert_eq!(code(api.publish(publish("h:k", "1", key))).await, want, "key of {} bytes", key.len());
        let broadcast =
            pb::BroadcastRequest { channels: vec!["h:k".into()], data: Bytes::new(), idempotency_key: key.into() };
        assert_eq!(code(api.broadcast(Request::new(broadcast))).await, want, "broadcast, key of {} bytes", key.len());
    }
}

fn stream_request(id: u64, channel: &str, data: &str) -> pb::PublishStreamRequest {
    pb::PublishStreamRequest {
        id,
        channel: channel.into(),
        data: Bytes::from(data.to_owned()),
        idempotency_key: String::new(),
    }
}

/// Reads `n` replies, by id.
async fn replies(
    stream: &mut ReceiverStream<Result<pb::PublishStreamReply, Status>>,
    n: usize,
) -> HashMap<u64, Outcome> {
    let mut got = HashMap::new();
    while got.len() < n {
        let reply = tokio::time::timeout(DEADLINE, stream.next()).await.expect("a reply in time").expect("open");
        let reply = reply.expect("no stream error");
        assert!(got.insert(reply.id, reply.result.expect("a result")).is_none(), "one reply per request");
    }
    got
}

fn ok(outcome: &Outcome) -> &pb::PublishApiResponse {
    match outcome {
        Outcome::Ok(p) => p,
        Outcome::Error(e) => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn publish_stream_keeps_each_channels_order_and_answers_every_request() {
    let broker = broker();
    let c1 = replica(&broker, "c1").await;
    let (_node, received) = subscriber(&broker, &["h:s", "h:t", "live:s"]).await;
    let (tx, rx) = mpsc::channel(16);
    let mut out = c1.api().publish_stream_of(ReceiverStream::new(rx));
    let channels = ["h:s", "h:s", "h:s", "h:t", "live:s"];
    let n = 2500u64;
    let sending = tokio::spawn(async move {
        for id in 0..n {
            let channel = channels[id as usize % channels.len()];
            tx.send(Ok(stream_request(id, channel, &id.to_string()))).await.unwrap();
        }
    });
    let got = replies(&mut out, n as usize).await;
    sending.await.unwrap();
    assert!(
        tokio::time::timeout(DEADLINE, out.next()).await.unwrap().is_none(),
        "the stream ends once all are answered"
    );
    for channel in ["h:s", "h:t"] {
        let ids: Vec<u64> = (0..n).filter(|id| channels[*id as usize % channels.len()] == channel).collect();
        let answered: Vec<u64> = ids.iter().map(|id| ok(&got[id]).offset).collect();
        assert!(answered.windows(2).all(|w| w[0] < w[1]), "{channel}: offsets increase in request order");
        eventually("every delivery", || received.of(channel).len() == ids.len()).await;
        let delivered: Vec<u64> = received.of(channel).iter().map(|p| p.offset).collect();
        assert_eq!(delivered, answered, "{channel}: delivered in request order, at the answered offsets");
        let data: Vec<String> =
            received.of(channel).iter().map(|p| String::from_utf8(p.data.to_vec()).unwrap()).collect();
        assert_eq!(data, ids.iter().map(u64::to_string).collect::<Vec<_>>(), "{channel}");
    }
    eventually("the live-only deliveries", || received.of("live:s").len() == 500).await;
    let live: Vec<String> = received.of("live:s").iter().map(|p| String::from_utf8(p.data.to_vec()).unwrap()).collect();
    let want: Vec<String> = (0..n).filter(|id| id % 5 == 4).map(|id| id.to_string()).collect();
    assert_eq!(live, want, "a live-only channel keeps the stream's order too");
    assert!(got.iter().filter(|(id, _)| *id % 5 == 4).all(|(_, o)| ok(o).offset == 0), "live-only: no offset");
}

#[tokio::test]
async fn a_bad_request_in_a_stream_gets_its_own_error_and_the_stream_goes_on() {
    let broker = broker();
    let c1 = replica(&broker, "c1").await;
    let too_long = pb::PublishStreamRequest {
        idempotency_key: "k".repeat(crate::api::MAX_IDEMPOTENCY_KEY_BYTES + 1),
        ..stream_request(3, "h:b", "3")
    };
    let requests = vec![
        Ok(stream_request(1, "h:b", "1")),
        Ok(stream_request(2, "a b", "2")),
        Ok(too_long),
        Ok(stream_request(4, "h:b", "4")),
    ];
    let mut out = c1.api().publish_stream_of(tokio_stream::iter(requests));
    let got = replies(&mut out, 4).await;
    for id in [2, 3] {
        assert!(
            matches!(&got[&id], Outcome::Error(e) if e.code == Code::InvalidArgument as i32),
            "{id}: {:?}",
            got[&id]
        );
    }
    assert!(ok(&got[&4]).offset > ok(&got[&1]).offset);
    assert!(tokio::time::timeout(DEADLINE, out.next()).await.unwrap().is_none());

    // A transport error ends the stream with it, after the requests before it are answered.
    let requests = vec![Ok(stream_request(1, "h:b", "5")), Err(Status::internal("cannot decode"))];
    let mut out = c1.api().publish_stream_of(tokio_stream::iter(requests));
    assert!(ok(&replies(&mut out, 1).await[&1]).offset > 0);
    let end = tokio::time::timeout(DEADLINE, out.next()).await.unwrap().unwrap().unwrap_err();
    assert_eq!(end.code(), Code::Internal);
}

/// A bus whose publishes wait for a permit: shows which publishes have started.
struct Gated {
    inner: switchboard_bus::MemoryBus,
    gate: Arc<Semaphore>,
    started: Arc<Mutex<Vec<String>>>,
}

impl Channels for Gated {
    fn publish(
        &self,
        channel: &Channel,
        data: Bytes,
        options: PublishOptions,
    ) -> BoxFuture<'static, Result<Option<Position>, BusError>> {
        self.started.lock().unwrap().push(channel.to_string());
        let (gate, publish) = (self.gate.clone(), self.inner.publish(channel, data, options));
        async move {
            gate.acquire().await.unwrap().forget();
            publish.await
        }
        .boxed()
    }
    fn subscribe(&self, channel: &Channel) -> BoxFuture<'static, Result<(), BusError>> {
        self.inner.subscribe(channel)
    }
    fn unsubscribe(&self, channel: &Channel) {
        self.inner.unsubscribe(channel)
    }
    fn publish_event(&self, channel: &Channel, event: Bytes) -> BoxFuture<'static, Result<(), BusError>> {
        self.inner.publish_event(channel, event)
    }
    fn position(&self, channel: &Channel) -> BoxFuture<'static, Result<Option<Position>, BusError>> {
        self.inner.position(channel)
    }
    fn history(&self, channel: &Channel, query: HistoryQuery) -> BoxFuture<'static, Result<HistoryPage, BusError>> {
        self.inner.history(channel, query)
    }
    fn remove_history(&self, channel: &Channel) -> BoxFuture<'static, Result<(), BusError>> {
        self.inner.remove_history(channel)
    }
    fn subscriptions(&self) -> usize {
        self.inner.subscriptions()
    }
    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }
}

switchboard_bus::delegate_messages!(Gated, inner);

#[tokio::test]
async fn a_stream_publishes_one_request_per_channel_at_a_time_and_stops_reading_when_full() {
    let broker = broker();
    let (gate, started) = (Arc::new(Semaphore::new(0)), Arc::new(Mutex::new(Vec::new())));
    let bus = Gated { inner: broker.connect(Arc::new(NoDelivery)), gate: gate.clone(), started: started.clone() };
    let c1 = Control::start(config("c1"), Arc::new(bus)).await.unwrap();
    let (_node, received) = subscriber(&broker, &["h:one"]).await;
    let read = Arc::new(AtomicUsize::new(0));
    let counted = read.clone();
    let total = MAX_STREAM_IN_FLIGHT + 500;
    let requests = tokio_stream::iter(0..total as u64).map(move |id| {
        counted.fetch_add(1, Ordering::SeqCst);
        // Three channels, then everything on h:one.
        let channel = match id {
            0 => "h:two",
            1 => "h:three",
            _ => "h:one",
        };
        Ok(stream_request(id, channel, &id.to_string()))
    });
    let mut out = c1.api().publish_stream_of(requests);
    eventually("the stream to fill up", || read.load(Ordering::SeqCst) >= MAX_STREAM_IN_FLIGHT).await;
    // Nothing to wait for here: the claim is that nothing more happens, so it is given a
    // window (while the gate holds every publish).
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(read.load(Ordering::SeqCst), MAX_STREAM_IN_FLIGHT, "no more read while the in-flight are unanswered");
    let mut first = sorted(started.lock().unwrap().clone());
    first.dedup();
    assert_eq!(started.lock().unwrap().len(), 3, "one publish per channel at a time: {first:?}");
    assert_eq!(first, ["h:one", "h:three", "h:two"], "the channels publish concurrently");
    gate.add_permits(Semaphore::MAX_PERMITS / 2);
    let got = replies(&mut out, total).await;
    assert_eq!(read.load(Ordering::SeqCst), total);
    let answered: Vec<u64> = (2..total as u64).map(|id| ok(&got[&id]).offset).collect();
    assert!(answered.windows(2).all(|w| w[0] < w[1]), "offsets increase in request order");
    eventually("every delivery", || received.of("h:one").len() == total - 2).await;
}
