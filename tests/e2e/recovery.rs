//! Lose nothing: a client that comes back resumes each channel from its last publication,
//! in order, without a gap or a duplicate at the seam, while publishing goes on; a gap on
//! the way from JetStream to a gateway is filled before later publications; a position the
//! history no longer covers says so (`recovered: false`). On the in-process bus and on
//! real `nats-server` processes with JetStream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard::dev::{Dev, DevConfig};
use switchboard_bus::conformance::Recorder;
use switchboard_bus::{Channels, HistoryLimits, Namespaces, NatsBus, NatsConfig, NoDelivery, PublishOptions};
use switchboard_client::{Client, ClientConfig, Event};
use switchboard_tests::nats::NatsServer;
use switchboard_tests::procs::{self, wait_ready};
use switchboard_tests::{DEADLINE, eventually, gateway_config, grpc, ws_url};
use switchboard_wire::{Channel, pb};

async fn next_event(c: &mut Client) -> Event {
    tokio::time::timeout(DEADLINE, c.next_event()).await.expect("an event in time").expect("connection open")
}

async fn next_publication(c: &mut Client) -> pb::Publication {
    tokio::time::timeout(DEADLINE, c.next_publication()).await.expect("a publication in time").expect("open")
}

fn request(channel: &str, data: String) -> pb::PublishApiRequest {
    pb::PublishApiRequest { channel: channel.into(), data: Bytes::from(data), ..Default::default() }
}

fn text(p: &pb::Publication) -> String {
    String::from_utf8(p.data.to_vec()).unwrap()
}

/// What `recorder` received on `channel`, as text.
fn texts(recorder: &Recorder, channel: &Channel) -> Vec<String> {
    recorder.on(channel).iter().map(|p| String::from_utf8(p.data.to_vec()).unwrap()).collect()
}

/// Namespaces for these tests: `chat` keeps 10,000 per channel, `tiny` 3.
fn namespaces() -> Namespaces {
    let mut n = switchboard_tests::namespaces();
    n.namespaces.insert("tiny".into(), Some(HistoryLimits { size: 3, ttl: Duration::from_secs(3600) }));
    n
}

/// One NATS server with JetStream, one control replica and one gateway, as processes.
struct Cluster {
    nats: NatsServer,
    _control: procs::Proc,
    gateway: procs::Proc,
    api: switchboard_tests::Api,
}

async fn cluster() -> Cluster {
    let nats = NatsServer::start();
    let urls = vec![nats.url()];
    let control = procs::control("c1", &urls, &[]);
    let gateway = procs::gateway("g1", &urls, &[]);
    wait_ready(control.addr(), 1, 1).await;
    let api = grpc(control.addr()).await;
    Cluster { nats, _control: control, gateway, api }
}

async fn dev() -> Dev {
    let config = DevConfig {
        gateway: gateway_config(),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        api_keys: Default::default(),
        api_tls: None,
        reflection: true,
        namespaces: namespaces(),
    };
    Dev::start(config, None).await.expect("dev node starts")
}

/// A client gone while 1,000 publications are made comes back with its last position and
/// gets exactly those 1,000, in order, then live ones.
async fn a_client_back_from_away_gets_exactly_what_it_missed(
    ws: String,
    api: &mut switchboard_tests::Api,
    token: &str,
) {
    let channel = "chat:away";
    let mut config = ClientConfig::new(&ws).reconnect(false);
    config.token = token.to_owned();
    let mut first = Client::connect(config.clone()).await.unwrap();
    let started = first.subscribe(channel).await.unwrap();
    assert!(started.history, "chat keeps history");
    api.publish(request(channel, "\"before\"".into())).await.unwrap();
    let seen = next_publication(&mut first).await;
    let position = first.position(channel).expect("a position to resume from");
    assert_eq!((position.offset, &position.epoch), (seen.offset, &seen.epoch));
    first.close().await;

    let mut acked = Vec::new();
    for i in 0..1000 {
        acked.push(api.publish(request(channel, format!("{i}"))).await.unwrap().into_inner().offset);
    }
    let mut back = Client::connect(config).await.unwrap();
    let reply = back.subscribe_from(channel, Some(position)).await.unwrap();
    assert!(reply.recovered, "{reply:?}");
    for (i, offset) in acked.iter().enumerate() {
        let p = next_publication(&mut back).await;
        assert_eq!((text(&p), p.offset), (i.to_string(), *offset), "publication {i}");
    }
    api.publish(request(channel, "\"live\"".into())).await.unwrap();
    let live = next_publication(&mut back).await;
    assert_eq!(text(&live), "\"live\"", "the first publication after the missed ones is the live one, once");
    assert!(live.offset > *acked.last().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_dev_a_client_back_from_away_gets_exactly_what_it_missed() {
    let node = dev().await;
    let mut api = grpc(node.grpc).await;
    a_client_back_from_away_gets_exactly_what_it_missed(ws_url(node.http), &mut api, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_jetstream_a_client_back_from_away_gets_exactly_what_it_missed() {
    let mut c = cluster().await;
    a_client_back_from_away_gets_exactly_what_it_missed(ws_url(c.gateway.addr()), &mut c.api, &procs::token("ann"))
        .await;
}

/// The client library reconnects by itself after a drop and resumes from its position while
/// publications keep coming: every one arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_client_reconnects_and_resumes_while_publishing_goes_on() {
    let node = dev().await;
    let mut config = ClientConfig::new(ws_url(node.http));
    config.min_backoff = Duration::from_millis(20);
    config.max_backoff = Duration::from_millis(100);
    let mut client = Client::connect(config).await.unwrap();
    client.subscribe("chat:steady").await.unwrap();
    let session = client.session();
    let publishing = {
        let mut api = grpc(node.grpc).await;
        tokio::spawn(async move {
            for i in 0..2000 {
                api.publish(request("chat:steady", format!("{i}"))).await.unwrap();
            }
        })
    };
    let mut got = Vec::new();
    let mut resubscribed = None;
    let mut dropped = false;
    while got.len() < 2000 {
        match next_event(&mut client).await {
            Event::Publication(p) => {
                got.push(text(&p).parse::<u32>().unwrap());
                if got.len() == 500 && !dropped {
                    // A backend closes the session with a code that lets it come back.
                    let mut api = grpc(node.grpc).await;
                    let target = Some(pb::disconnect_request::Target::Session(session.clone()));
                    api.disconnect(pb::DisconnectRequest { target, code: 4000, reason: "test".into() }).await.unwrap();
                    dropped = true;
                }
            }
            Event::Resubscribed { channel, recovered } => resubscribed = Some((channel, recovered)),
            _ => {}
        }
    }
    publishing.await.unwrap();
    assert_eq!(resubscribed, Some(("chat:steady".to_owned(), true)), "resumed after the drop");
    assert_eq!(got, (0..2000).collect::<Vec<_>>(), "every publication once, in order");
}

/// A position the history no longer covers (trimmed past it by size) is not recovered: the
/// reply says so and only live publications follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_trimmed_away_is_not_recovered() {
    let node = dev().await;
    let mut api = grpc(node.grpc).await;
    let mut client = Client::connect(ClientConfig::new(ws_url(node.http)).reconnect(false)).await.unwrap();
    let first = api.publish(request("tiny:t", "0".into())).await.unwrap().into_inner();
    for i in 1..6 {
        api.publish(request("tiny:t", format!("{i}"))).await.unwrap();
    }
    let since = pb::StreamPosition { offset: first.offset, epoch: first.epoch.clone() };
    let reply = client.subscribe_from("tiny:t", Some(since)).await.unwrap();
    assert!(!reply.recovered && reply.history, "{reply:?}");
    api.publish(request("tiny:t", "\"live\"".into())).await.unwrap();
    assert_eq!(text(&next_publication(&mut client).await), "\"live\"", "nothing from the history follows");
    // Another epoch is not recovered either.
    let stranger = pb::StreamPosition { offset: first.offset, epoch: "another".into() };
    let reply = client.subscribe_from("chat:other", Some(stranger)).await.unwrap();
    assert!(!reply.recovered, "{reply:?}");
}

/// Core NATS between the stream and a gateway may drop a message: the next one shows the
/// gap (its predecessor is not the last one delivered), and the missing ones are read from
/// the stream and delivered first, in order. When they are gone from the stream too, the
/// node is told, and delivery goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_lost_on_the_way_is_filled_from_the_stream_before_later_ones() {
    let server = NatsServer::start();
    let mut config = NatsConfig::new(vec![server.url()], "gap");
    config.namespaces = namespaces();
    let seen = Recorder::new();
    let node = NatsBus::connect(config.clone(), seen.clone()).await.unwrap();
    let publisher = NatsBus::connect(config, Arc::new(NoDelivery)).await.unwrap();
    let publish =
        |c: &Channel, data: &str| publisher.publish(c, Bytes::from(data.to_owned()), PublishOptions::default());

    let c: Channel = "chat:gap".parse().unwrap();
    node.subscribe(&c).await.unwrap();
    publish(&c, "0").await.unwrap();
    eventually("the first arrives", async || texts(&seen, &c).len() == 1).await;
    node.lose_next(2);
    for i in 1..=4 {
        publish(&c, &i.to_string()).await.unwrap();
    }
    eventually("all five arrive", async || texts(&seen, &c).len() >= 5).await;
    assert_eq!(texts(&seen, &c), ["0", "1", "2", "3", "4"], "the two lost ones came from the stream, in order");
    assert!(seen.interruptions().is_empty());

    // `tiny` keeps 3: four lost, then trimmed from the stream before the gap shows.
    let t: Channel = "tiny:gap".parse().unwrap();
    node.subscribe(&t).await.unwrap();
    publish(&t, "0").await.unwrap();
    eventually("the first arrives", async || texts(&seen, &t).len() == 1).await;
    node.lose_next(4);
    for i in 1..=5 {
        publish(&t, &i.to_string()).await.unwrap();
    }
    eventually("the node is told", async || !seen.interruptions().is_empty()).await;
    eventually("delivery goes on", async || texts(&seen, &t).last().map(String::as_str) == Some("5")).await;
    assert_eq!(seen.interruptions(), std::slice::from_ref(&t));
    assert_eq!(texts(&seen, &t), ["0", "5"], "what is gone is not invented");
}

/// A history stream deleted behind Switchboard's back is created again by the next publish,
/// with a new epoch: a position from before is not recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_stream_is_a_new_epoch_and_old_positions_are_not_recovered() {
    let Cluster { nats, _control: _kept, gateway: g1, mut api } = cluster().await;
    let before = api.publish(request("chat:epoch", "1".into())).await.unwrap().into_inner();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.delete_stream("sb~chat").await.unwrap();
    let after = api.publish(request("chat:epoch", "2".into())).await.unwrap().into_inner();
    assert_ne!(after.epoch, before.epoch, "the stream was lost: a new epoch");
    let mut config = ClientConfig::new(ws_url(g1.addr())).reconnect(false);
    config.token = procs::token("ann");
    let client = Client::connect(config).await.unwrap();
    let since = pb::StreamPosition { offset: before.offset, epoch: before.epoch };
    let reply = client.subscribe_from("chat:epoch", Some(since)).await.unwrap();
    assert!(!reply.recovered, "{reply:?}");
    assert_eq!(reply.epoch, after.epoch);
}

/// Publishes `data` on `channel` with an idempotency key through the first replica of
/// `apis` that answers, retrying the same key on the others until one does: a publish whose
/// answer was lost with its replica is not stored twice.
async fn publish_somewhere(
    apis: &mut [switchboard_tests::Api],
    channel: &str,
    data: String,
    key: String,
) -> pb::PublishApiResponse {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut i = 0;
    loop {
        let api = &mut apis[i % apis.len()];
        let req = pb::PublishApiRequest {
            channel: channel.into(),
            data: Bytes::from(data.clone()),
            idempotency_key: key.clone(),
        };
        match tokio::time::timeout(Duration::from_secs(2), api.publish(req)).await {
            Ok(Ok(r)) => return r.into_inner(),
            _ if tokio::time::Instant::now() < deadline => i += 1,
            other => panic!("no replica took the publish: {other:?}"),
        }
    }
}

/// Every control replica is killed in turn (SIGKILL) while publications go on through
/// whichever answers: nothing sequences in control any more, so the epoch never changes,
/// offsets keep increasing, and the subscriber gets every publication once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_control_replica_in_turn_loses_no_offset_and_no_publication() {
    let nats = NatsServer::start();
    let urls = vec![nats.url()];
    let mut c1 = procs::control("c1", &urls, &[]);
    let mut c2 = procs::control("c2", &urls, &[]);
    let g1 = procs::gateway("g1", &urls, &[]);
    wait_ready(c1.addr(), 1, 2).await;
    let mut client = procs::user_client(&g1, "ann").await;
    client.subscribe("chat:kill").await.unwrap();
    let mut apis = vec![grpc(c1.addr()).await, grpc(c2.addr()).await];
    let mut acked = Vec::new();
    let mut c3 = None;
    for i in 0..300u32 {
        match i {
            100 => c1.kill(),
            150 => {
                let c = procs::control("c3", &urls, &[]);
                apis.push(grpc(c.addr()).await);
                c3 = Some(c);
            }
            200 => c2.kill(),
            _ => {}
        }
        acked.push(publish_somewhere(&mut apis, "chat:kill", i.to_string(), format!("k-{i}")).await);
    }
    assert!(acked.iter().all(|a| a.epoch == acked[0].epoch), "the epoch changed while replicas died");
    assert!(acked.windows(2).all(|w| w[1].offset > w[0].offset), "offsets did not keep increasing");
    for (i, a) in acked.iter().enumerate() {
        let p = next_publication(&mut client).await;
        assert_eq!((text(&p), p.offset, &p.epoch), (i.to_string(), a.offset, &a.epoch), "publication {i}");
    }
    drop(c3);
}

/// History needs JetStream: a node configured with a history namespace on a NATS without
/// JetStream does not start, saying so in one line, rather than delivering unstored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_without_jetstream_refuses_to_start_saying_why() {
    let server = NatsServer::start_with("jetstream: disabled");
    let mut config = NatsConfig::new(vec![server.url()], "no-js");
    config.connect_timeout = Duration::from_secs(3);
    config.namespaces = namespaces();
    let started = std::time::Instant::now();
    let err = NatsBus::connect(config, Arc::new(NoDelivery)).await.err().expect("no start without JetStream");
    let err = err.to_string();
    assert!(err.contains("cannot create or update JetStream stream sb~chat"), "{err}");
    assert!(err.contains("need JetStream"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

/// Streams follow the namespace configuration: a node that starts with other limits
/// updates its namespace's stream (same epoch, the history kept), one with the same leaves
/// it as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_namespace_configuration_updates_its_stream_and_keeps_its_history() {
    let server = NatsServer::start();
    let mut config = NatsConfig::new(vec![server.url()], "streams");
    config.namespaces = namespaces();
    let first = NatsBus::connect(config.clone(), Arc::new(NoDelivery)).await.unwrap();
    let c: Channel = "chat:config".parse().unwrap();
    let p = first.publish(&c, Bytes::from_static(b"1"), PublishOptions::default()).await.unwrap().unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let per_subject =
        async || js.get_stream("sb~chat").await.unwrap().info().await.unwrap().config.max_messages_per_subject;
    assert_eq!(per_subject().await, 10_000);
    let mut smaller = config.clone();
    smaller
        .namespaces
        .namespaces
        .insert("chat".into(), Some(HistoryLimits { size: 5, ttl: Duration::from_secs(3600) }));
    let second = NatsBus::connect(smaller, Arc::new(NoDelivery)).await.unwrap();
    assert_eq!(per_subject().await, 5, "the stream follows the new limits");
    let q = second.publish(&c, Bytes::from_static(b"2"), PublishOptions::default()).await.unwrap().unwrap();
    assert_eq!(q.epoch, p.epoch, "updating a stream is not losing it");
    let page =
        second.history(&c, switchboard_bus::HistoryQuery { since: None, limit: 10, reverse: false }).await.unwrap();
    assert_eq!(page.publications.len(), 2, "the history was kept");
}

/// A client further behind than `max_recovery` is told `recovered: false` (the limit is
/// counted), and gets only live publications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_further_behind_than_max_recovery_is_not_recovered() {
    let gateway = switchboard_gateway::GatewayConfig { max_recovery: 5, ..gateway_config() };
    let (node, metrics) = switchboard_tests::start_dev_metered(gateway).await;
    let mut api = grpc(node.grpc).await;
    let first = api.publish(request("chat:far", "0".into())).await.unwrap().into_inner();
    for i in 1..=6 {
        api.publish(request("chat:far", format!("{i}"))).await.unwrap();
    }
    let mut client = Client::connect(ClientConfig::new(ws_url(node.http)).reconnect(false)).await.unwrap();
    let since = pb::StreamPosition { offset: first.offset, epoch: first.epoch };
    assert!(!client.subscribe_from("chat:far", Some(since.clone())).await.unwrap().recovered, "6 missed, limit 5");
    metrics.expect_limit_hits("recovery", 1).await;
    api.publish(request("chat:far", "\"live\"".into())).await.unwrap();
    assert_eq!(text(&next_publication(&mut client).await), "\"live\"");
    // At the limit it is recovered.
    let mut near = Client::connect(ClientConfig::new(ws_url(node.http)).reconnect(false)).await.unwrap();
    let latest = api.publish(request("chat:near", "a".into())).await.unwrap().into_inner();
    for i in 0..5 {
        api.publish(request("chat:near", format!("{i}"))).await.unwrap();
    }
    let since = pb::StreamPosition { offset: latest.offset, epoch: latest.epoch };
    assert!(near.subscribe_from("chat:near", Some(since)).await.unwrap().recovered);
    assert_eq!(text(&next_publication(&mut near).await), "0");
    metrics.expect_limit_hits("recovery", 1).await;
}
