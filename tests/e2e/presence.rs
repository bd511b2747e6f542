//! Presence and join/leave pushes (docs/protocol.md, "presence"), on `switchboard dev` and
//! across two gateways on a real NATS: who is subscribed (with user and the token's `info`),
//! stats counting a user once, `join` and `leave` reaching another gateway's subscriber for
//! every way of subscribing and leaving, errors 114, 103 and 110, and a history channel
//! whose offsets stay contiguous around the pushes.

use std::net::SocketAddr;

use bytes::Bytes;
use serde_json::json;
use switchboard_client::{Client, ClientConfig, ClientError, Event};
use switchboard_gateway::GatewayConfig;
use switchboard_gateway::auth::{AuthConfig, Key, KeyMaterial};
use switchboard_tests::nats::NatsServer;
use switchboard_tests::procs::{self, SECRET, token_with_info, wait_ready};
use switchboard_tests::{Api, DEADLINE, eventually, gateway_config, grpc, presence_rules, start_dev, ws_url};
use switchboard_wire::pb;

/// A session of `user` (its token carrying `info` when given) on the gateway at `addr`.
async fn connect(addr: SocketAddr, user: &str, info: Option<serde_json::Value>) -> Client {
    let mut config = ClientConfig::new(ws_url(addr)).reconnect(false);
    config.token = token_with_info(user, info);
    Client::connect(config).await.expect("client connects")
}

/// The next `join` or `leave` (other events are skipped).
async fn next_join_leave(c: &mut Client) -> (&'static str, String, pb::ClientInfo) {
    loop {
        let event = tokio::time::timeout(DEADLINE, c.next_event()).await.expect("an event in time");
        match event.expect("connection open") {
            Event::Join { channel, client } => return ("join", channel, client),
            Event::Leave { channel, client } => return ("leave", channel, client),
            _ => {}
        }
    }
}

/// What a `join` or `leave` for `session` of `user` on `channel` looks like.
fn push(
    kind: &'static str,
    channel: &str,
    session: &str,
    user: &str,
    info: &str,
) -> (&'static str, String, pb::ClientInfo) {
    let client = pb::ClientInfo { session: session.into(), user: user.into(), info: Bytes::from(info.to_owned()) };
    (kind, channel.to_owned(), client)
}

fn server_code(e: ClientError) -> u32 {
    e.code().unwrap_or_else(|| panic!("a server error, got {e}"))
}

/// Two sessions of alice (one per gateway), a watcher on gateway `b`, and every way in and
/// out of a channel, seen by the watcher; `a` and `b` may be the same gateway.
async fn presence_and_join_leave(a: SocketAddr, b: SocketAddr, api: Api) {
    const ALICE: &str = r#"{"name":"Alice"}"#;
    let alice_info = || Some(json!({"name": "Alice"}));
    let mut watcher = connect(b, "watcher", None).await;
    watcher.subscribe("room:1").await.unwrap();
    let me = watcher.session();
    assert_eq!(next_join_leave(&mut watcher).await, push("join", "room:1", &me, "watcher", ""), "its own join");

    let alice1 = connect(a, "alice", alice_info()).await;
    let alice2 = connect(b, "alice", alice_info()).await;
    let (s1, s2) = (alice1.session(), alice2.session());
    alice1.subscribe("room:1").await.unwrap();
    assert_eq!(next_join_leave(&mut watcher).await, push("join", "room:1", &s1, "alice", ALICE));
    alice2.subscribe("room:1").await.unwrap();
    assert_eq!(next_join_leave(&mut watcher).await, push("join", "room:1", &s2, "alice", ALICE));

    // Presence, asked on either gateway, from the whole registry (which follows the
    // gateways' events, hence `eventually`).
    let mut want = vec![push("", "", &s1, "alice", ALICE).2, push("", "", &s2, "alice", ALICE).2];
    want.push(push("", "", &me, "watcher", "").2);
    want.sort_by(|x, y| x.session.cmp(&y.session));
    for asker in [&alice1, &watcher] {
        eventually("presence lists the three sessions with user and info", async || {
            let mut got = asker.presence("room:1").await.unwrap();
            got.sort_by(|x, y| x.session.cmp(&y.session));
            got == want
        })
        .await;
        let stats = asker.presence_stats("room:1").await.unwrap();
        assert_eq!(stats, pb::PresenceStatsResult { sessions: 3, users: 2 }, "alice counts once");
    }
    // The gRPC API shows the same `info` (and ListSessions too).
    let mut api = api;
    let listed = api.presence(pb::PresenceRequest { channel: "room:1".into() }).await.unwrap().into_inner();
    let info_of =
        |sessions: &[pb::SessionInfo], id: &str| sessions.iter().find(|s| s.session == id).map(|s| s.info.clone());
    assert_eq!(info_of(&listed.sessions, &s1), Some(Bytes::from(ALICE)));
    assert_eq!(info_of(&listed.sessions, &me), Some(Bytes::new()));
    let request = pb::ListSessionsRequest { user: "alice".into(), ..Default::default() };
    let alices = api.list_sessions(request).await.unwrap().into_inner().sessions;
    assert_eq!(info_of(&alices, &s2), Some(Bytes::from(ALICE)));

    // Out and in again, every way, from the other gateway.
    alice1.unsubscribe("room:1").await.unwrap();
    assert_eq!(next_join_leave(&mut watcher).await, push("leave", "room:1", &s1, "alice", ALICE), "unsubscribe");
    let target = || Some(pb::server_subscribe_request::Target::Session(s1.clone()));
    api.subscribe(pb::ServerSubscribeRequest { target: target(), channel: "room:1".into() }).await.unwrap();
    assert_eq!(next_join_leave(&mut watcher).await, push("join", "room:1", &s1, "alice", ALICE), "backend subscribe");
    api.unsubscribe(pb::ServerSubscribeRequest { target: target(), channel: "room:1".into() }).await.unwrap();
    let left = push("leave", "room:1", &s1, "alice", ALICE);
    assert_eq!(next_join_leave(&mut watcher).await, left, "backend unsubscribe");
    alice1.subscribe("room:1").await.unwrap();
    assert_eq!(next_join_leave(&mut watcher).await, push("join", "room:1", &s1, "alice", ALICE));
    alice1.close().await;
    assert_eq!(next_join_leave(&mut watcher).await, left, "disconnect");

    // Errors: a namespace without presence, a channel the session may not subscribe to.
    assert_eq!(server_code(watcher.presence("news:1").await.unwrap_err()), 114);
    assert_eq!(server_code(watcher.presence_stats("news:1").await.unwrap_err()), 114);
    assert_eq!(server_code(watcher.presence("staff:1").await.unwrap_err()), 103);
    assert_eq!(server_code(watcher.presence("bad channel").await.unwrap_err()), 104);

    // A history channel: pushes around a publication take no offset, and a client that
    // resumes from the first publication gets the next one with nothing missing.
    watcher.subscribe("hroom:1").await.unwrap();
    assert_eq!(next_join_leave(&mut watcher).await, push("join", "hroom:1", &me, "watcher", ""));
    let first = alice2.publish("hroom:1", Bytes::from_static(b"1")).await.unwrap();
    // (Read now: waiting for pushes skips publications.)
    let p = tokio::time::timeout(DEADLINE, watcher.next_publication()).await.unwrap().unwrap();
    assert_eq!((p.offset, &p.epoch), (first.offset, &first.epoch));
    let carol = connect(a, "carol", None).await;
    carol.subscribe("hroom:1").await.unwrap();
    assert_eq!(next_join_leave(&mut watcher).await, push("join", "hroom:1", &carol.session(), "carol", ""));
    carol.unsubscribe("hroom:1").await.unwrap();
    assert_eq!(next_join_leave(&mut watcher).await, push("leave", "hroom:1", &carol.session(), "carol", ""));
    let second = alice2.publish("hroom:1", Bytes::from_static(b"2")).await.unwrap();
    assert_eq!((second.offset, &second.epoch), (first.offset + 1, &first.epoch), "the pushes took no offset");
    let p = tokio::time::timeout(DEADLINE, watcher.next_publication()).await.unwrap().unwrap();
    assert_eq!((p.offset, &p.epoch), (second.offset, &second.epoch));
    let mut resuming = connect(a, "resuming", None).await;
    let since = pb::StreamPosition { offset: first.offset, epoch: first.epoch.clone() };
    let reply = resuming.subscribe_from("hroom:1", Some(since.clone())).await.unwrap();
    assert!(reply.recovered, "no gap after the first publication");
    let p = tokio::time::timeout(DEADLINE, resuming.next_publication()).await.unwrap().unwrap();
    assert_eq!((p.offset, p.data), (second.offset, Bytes::from_static(b"2")));
    let page = resuming.history("hroom:1", Some(since), 10, false).await.unwrap();
    assert!(page.continuous);
    assert_eq!(page.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), [second.offset]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_dev_node_presence_lists_subscribers_and_join_leave_reach_every_subscriber() {
    let auth = AuthConfig {
        keys: vec![Key { kid: None, material: KeyMaterial::Hmac(SECRET.as_bytes().to_vec()) }],
        ..AuthConfig::default()
    };
    let dev = start_dev(GatewayConfig { auth, channels: presence_rules(), ..gateway_config() }).await;
    presence_and_join_leave(dev.http, dev.http, grpc(dev.grpc).await).await;
    dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_two_gateways_on_nats_presence_lists_subscribers_and_join_leave_reach_the_other_gateway() {
    let nats = NatsServer::start();
    let urls = vec![nats.url()];
    let c1 = procs::control("c1", &urls, &[]);
    let c2 = procs::control("c2", &urls, &[]);
    let mut g1 = procs::gateway("g1", &urls, &["--drain-window", "500ms"]);
    let g2 = procs::gateway("g2", &urls, &[]);
    wait_ready(c1.addr(), 2, 2).await;
    wait_ready(c2.addr(), 2, 2).await;
    presence_and_join_leave(g1.addr(), g2.addr(), grpc(c2.addr()).await).await;

    // A gateway that drains (SIGTERM) sends the leave of each session it closes.
    let mut watcher = connect(g2.addr(), "watcher", None).await;
    watcher.subscribe("room:2").await.unwrap();
    assert_eq!(next_join_leave(&mut watcher).await.0, "join");
    let dave = connect(g1.addr(), "dave", None).await;
    dave.subscribe("room:2").await.unwrap();
    let joined = push("join", "room:2", &dave.session(), "dave", "");
    assert_eq!(next_join_leave(&mut watcher).await, joined);
    let drained = tokio::task::spawn_blocking(move || g1.terminate());
    let left = push("leave", "room:2", &dave.session(), "dave", "");
    assert_eq!(next_join_leave(&mut watcher).await, left, "drain");
    drained.await.unwrap();
    drop((g2, c1, c2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_without_a_control_replica_is_unavailable_at_once() {
    let nats = NatsServer::start();
    let gateway = procs::gateway("g1", &[nats.url()], &[]);
    let client = alice_once_accepted(&gateway).await;
    let started = std::time::Instant::now();
    let e = client.presence("room:1").await.unwrap_err();
    assert_eq!((e.code(), e.is_temporary()), (Some(110), true), "{e}");
    // No responders is known at once, long before the presence timeout (5 s).
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_that_no_control_replica_answers_in_time_is_unavailable_and_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let nats = NatsServer::start();
    // Something listens where control would, and never answers.
    let silent = async_nats::connect(nats.url()).await.unwrap();
    let _listening = silent.queue_subscribe("sb.presence", "control".into()).await.unwrap();
    silent.flush().await.unwrap();
    let gateway = procs::gateway("g1", &[nats.url()], &["--presence-timeout", "300ms"]);
    let client = alice_once_accepted(&gateway).await;
    let started = std::time::Instant::now();
    let e = client.presence_stats("room:1").await.unwrap_err();
    let took = started.elapsed();
    assert_eq!((e.code(), e.is_temporary()), (Some(110), true), "{e}");
    assert!(took >= std::time::Duration::from_millis(300), "answered after the timeout, not before: {took:?}");
    let mut s = tokio::net::TcpStream::connect(gateway.addr()).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut metrics = String::new();
    s.read_to_string(&mut metrics).await.unwrap();
    let counted =
        metrics.lines().any(|l| l.starts_with("switchboard_gateway_limit_hits_total{limit=\"presence_timeout\"} 1"));
    assert!(counted, "the timeout is counted: {metrics}");
}

/// Alice's session on `gateway`, once it accepts sessions (it may still be connecting to
/// NATS).
async fn alice_once_accepted(gateway: &procs::Proc) -> Client {
    let mut client = None;
    eventually("the gateway accepts sessions", async || {
        let mut config = ClientConfig::new(ws_url(gateway.addr())).reconnect(false);
        config.token = procs::token("alice");
        client = Client::connect(config).await.ok();
        client.is_some()
    })
    .await;
    client.expect("connected")
}
