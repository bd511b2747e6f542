//! The cluster over real NATS: gateways and control replicas as real processes, killed to
//! test faults.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use switchboard_client::{Client, Event};
use switchboard_tests::nats::{NatsCluster, NatsServer};
use switchboard_tests::procs::{self, Proc, user_client, wait_ready};
use switchboard_tests::{DEADLINE, eventually, grpc};
use switchboard_wire::pb;
use tonic::Code;

type Api = switchboard_tests::Api;

async fn next_event(c: &mut Client) -> Event {
    tokio::time::timeout(DEADLINE, c.next_event()).await.expect("an event in time").expect("connection open")
}

async fn next_publication(c: &mut Client) -> pb::Publication {
    tokio::time::timeout(DEADLINE, c.next_publication()).await.expect("a publication in time").expect("open")
}

async fn next_message(c: &mut Client) -> Bytes {
    loop {
        if let Event::Message(m) = next_event(c).await {
            return m;
        }
    }
}

async fn all_sessions(api: &mut Api) -> Vec<pb::SessionInfo> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = api
            .list_sessions(pb::ListSessionsRequest { user: String::new(), page_size: 1000, page_token: token })
            .await
            .expect("list sessions")
            .into_inner();
        out.extend(page.sessions);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// Waits until the registry (asked through `api`) holds exactly `n` sessions.
async fn wait_sessions(api: &Api, n: usize) {
    eventually(&format!("the registry holds {n} sessions"), || {
        let mut api = api.clone();
        async move { all_sessions(&mut api).await.len() == n }
    })
    .await;
}

struct Two {
    _nats: NatsServer,
    c1: Proc,
    c2: Proc,
    g1: Proc,
    g2: Proc,
}

async fn two_and_two(control_extra: &[&str]) -> Two {
    let nats = NatsServer::start();
    let urls = vec![nats.url()];
    let c1 = procs::control("c1", &urls, control_extra);
    let c2 = procs::control("c2", &urls, control_extra);
    let g1 = procs::gateway("g1", &urls, &[]);
    let g2 = procs::gateway("g2", &urls, &[]);
    wait_ready(c1.addr(), 2, 2).await;
    wait_ready(c2.addr(), 2, 2).await;
    Two { _nats: nats, c1, c2, g1, g2 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_two_gateways_receive_client_and_grpc_publications() {
    let t = two_and_two(&[]).await;
    let mut a = user_client(&t.g1, "ann").await;
    let mut b = user_client(&t.g2, "ben").await;
    a.subscribe("chat:room").await.unwrap();
    b.subscribe("chat:room").await.unwrap();
    let mut acks = vec![a.publish("chat:room", Bytes::from_static(b"\"from a\"")).await.unwrap().offset];
    acks.push(b.publish("chat:room", Bytes::from_static(b"\"from b\"")).await.unwrap().offset);
    for c in [&t.c1, &t.c2] {
        let mut api = grpc(c.addr()).await;
        let data = Bytes::from(format!("\"via {}\"", c.name));
        acks.push(
            api.publish(pb::PublishApiRequest { channel: "chat:room".into(), data, ..Default::default() })
                .await
                .unwrap()
                .into_inner()
                .offset,
        );
    }
    assert!(acks.windows(2).all(|w| w[1] > w[0]), "offsets go up across publishers: {acks:?}");
    for c in [&mut a, &mut b] {
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(next_publication(c).await);
        }
        let data: Vec<_> = got.iter().map(|p| String::from_utf8_lossy(&p.data).into_owned()).collect();
        assert_eq!(data, ["\"from a\"", "\"from b\"", "\"via c1\"", "\"via c2\""]);
        assert_eq!(got.iter().map(|p| p.offset).collect::<Vec<_>>(), acks);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_commands_reach_exactly_the_sessions_they_name() {
    let t = two_and_two(&[]).await;
    let mut alice =
        vec![user_client(&t.g1, "alice").await, user_client(&t.g1, "alice").await, user_client(&t.g2, "alice").await];
    let mut bob = user_client(&t.g2, "bob").await;
    let mut api = grpc(t.c1.addr()).await;
    let mut api2 = grpc(t.c2.addr()).await;

    // SendToUser: every alice session on both gateways, and not bob.
    api.send_to_user(pb::SendToUserRequest { user: "alice".into(), data: Bytes::from_static(b"{\"hi\":\"alice\"}") })
        .await
        .unwrap();
    for c in &mut alice {
        assert_eq!(next_message(c).await, Bytes::from_static(b"{\"hi\":\"alice\"}"));
    }
    // SendToSession: exactly one, through the other replica.
    let r = api2
        .send_to_session(pb::SendToSessionRequest { session: bob.session(), data: Bytes::from_static(b"\"bob only\"") })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.sessions, 1);
    assert_eq!(next_message(&mut bob).await, Bytes::from_static(b"\"bob only\""), "bob got alice's message");
    let err = api
        .send_to_session(pb::SendToSessionRequest { session: "g1-ffff".into(), data: Bytes::new() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = api
        .send_to_session(pb::SendToSessionRequest { session: "gone-1".into(), data: Bytes::new() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "a session of an unknown gateway");

    // Server-side subscribe of a user: bob's session is subscribed and receives the channel.
    api.subscribe(pb::ServerSubscribeRequest {
        target: Some(pb::server_subscribe_request::Target::User("bob".into())),
        channel: "news:bob".into(),
    })
    .await
    .unwrap();
    match next_event(&mut bob).await {
        Event::Subscribed { channel, .. } => assert_eq!(channel, "news:bob"),
        other => panic!("expected a subscribed push, got {other:?}"),
    }
    api.publish(pb::PublishApiRequest {
        channel: "news:bob".into(),
        data: Bytes::from_static(b"1"),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(next_publication(&mut bob).await.channel, "news:bob");

    // Disconnect one session with a code; then all of alice's.
    let one = alice.pop().unwrap();
    let one_id = one.session();
    let mut one = one;
    api.disconnect(pb::DisconnectRequest {
        target: Some(pb::disconnect_request::Target::Session(one_id)),
        code: 4321,
        reason: "bye".into(),
    })
    .await
    .unwrap();
    match next_event(&mut one).await {
        Event::Disconnected { code, reason, .. } => assert_eq!((code, reason.as_str()), (Some(4321), "bye")),
        other => panic!("expected a disconnect, got {other:?}"),
    }
    api2.disconnect(pb::DisconnectRequest {
        target: Some(pb::disconnect_request::Target::User("alice".into())),
        code: 4503,
        reason: String::new(),
    })
    .await
    .unwrap();
    for c in &mut alice {
        match next_event(c).await {
            Event::Disconnected { code, reconnecting, .. } => {
                assert_eq!(code, Some(4503));
                assert!(!reconnecting);
            }
            other => panic!("expected a disconnect, got {other:?}"),
        }
    }
    bob.ping().await.expect("bob is still connected");
    let err = api
        .disconnect(pb::DisconnectRequest {
            target: Some(pb::disconnect_request::Target::User("x".into())),
            code: 1000,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "codes outside 4000-4999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_queries_agree_with_reality_across_gateways() {
    let t = two_and_two(&[]).await;
    let mut api = grpc(t.c1.addr()).await;
    let api2 = grpc(t.c2.addr()).await;
    let a1 = user_client(&t.g1, "ada").await;
    let a2 = user_client(&t.g2, "ada").await;
    let b1 = user_client(&t.g2, "bea").await;
    a1.subscribe("p:room").await.unwrap();
    b1.subscribe("p:room").await.unwrap();
    wait_sessions(&api2, 3).await;

    let s = api.get_session(pb::GetSessionRequest { session: a2.session() }).await.unwrap().into_inner();
    assert_eq!((s.user.as_str(), s.gateway.as_str()), ("ada", "g2"));
    let mut ada = api
        .list_sessions(pb::ListSessionsRequest { user: "ada".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .sessions;
    ada.sort_by(|x, y| x.session.cmp(&y.session));
    let mut want = vec![a1.session(), a2.session()];
    want.sort();
    assert_eq!(ada.iter().map(|s| s.session.clone()).collect::<Vec<_>>(), want);
    let presence = api.presence(pb::PresenceRequest { channel: "p:room".into() }).await.unwrap().into_inner();
    let mut users: Vec<_> = presence.sessions.iter().map(|s| s.user.clone()).collect();
    users.sort();
    assert_eq!(users, ["ada", "bea"]);
    let stats = api.presence_stats(pb::PresenceRequest { channel: "p:room".into() }).await.unwrap().into_inner();
    assert_eq!((stats.sessions, stats.users), (2, 2));
    let channels = api.channels(pb::ChannelsRequest { pattern: "p:*".into() }).await.unwrap().into_inner();
    assert_eq!(channels.channels.iter().map(|c| (c.channel.as_str(), c.sessions)).collect::<Vec<_>>(), [("p:room", 2)]);

    // Leaving is reflected too.
    let gone = a1.session();
    a1.close().await;
    b1.unsubscribe("p:room").await.unwrap();
    eventually("the registry forgets the closed session", || {
        let mut api = api.clone();
        let gone = gone.clone();
        async move {
            matches!(api.get_session(pb::GetSessionRequest { session: gone }).await, Err(s) if s.code() == Code::NotFound)
        }
    })
    .await;
    eventually("presence is empty", || {
        let mut api = api.clone();
        async move {
            api.presence(pb::PresenceRequest { channel: "p:room".into() })
                .await
                .unwrap()
                .into_inner()
                .sessions
                .is_empty()
        }
    })
    .await;
    wait_sessions(&api2, 2).await;
    let err = api.get_session(pb::GetSessionRequest { session: String::new() }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let info = api.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.replicas.iter().map(|r| r.shards).sum::<u32>(), 256, "the ring covers every shard once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_loses_its_sessions_within_the_lease() {
    let mut t = two_and_two(&["--gateway-lease", "2s"]).await;
    let api = grpc(t.c1.addr()).await;
    let mut keep = Vec::new();
    for i in 0..5 {
        keep.push(user_client(&t.g2, &format!("stay{i}")).await);
    }
    let mut doomed = Vec::new();
    for i in 0..7 {
        doomed.push(user_client(&t.g1, &format!("doomed{i}")).await);
    }
    wait_sessions(&api, 12).await;
    t.g1.kill();
    let killed = Instant::now();
    wait_sessions(&api, 5).await;
    let took = killed.elapsed();
    println!("registry dropped the killed gateway's 7 sessions {took:?} after SIGKILL (lease 2s)");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let mut api = api;
    let left = all_sessions(&mut api).await;
    assert!(left.iter().all(|s| s.gateway == "g2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_of_two_control_replicas_keeps_every_call_working_and_every_session_registered() {
    let mut t = two_and_two(&[]).await;
    let mut clients = Vec::new();
    for i in 0..30 {
        let g = if i % 2 == 0 { &t.g1 } else { &t.g2 };
        let c = user_client(g, &format!("u{}", i % 7)).await;
        c.subscribe(&format!("room:{}", i % 3)).await.unwrap();
        clients.push(c);
    }
    let mut api = grpc(t.c2.addr()).await;
    wait_sessions(&api, 30).await;
    t.c1.kill();
    // Every call through the survivor succeeds, right away and after ownership moved.
    let started = Instant::now();
    let sample = clients[3].session();
    for round in 0..2 {
        if round == 1 {
            eventually("the survivor owns the whole ring", || {
                let mut api = api.clone();
                async move {
                    let info = api.info(pb::InfoRequest {}).await.unwrap().into_inner();
                    info.replicas.len() == 1 && info.replicas[0].shards == 256
                }
            })
            .await;
        }
        api.publish(pb::PublishApiRequest {
            channel: "room:0".into(),
            data: Bytes::from_static(b"1"),
            ..Default::default()
        })
        .await
        .unwrap();
        api.get_session(pb::GetSessionRequest { session: sample.clone() }).await.unwrap();
        api.presence(pb::PresenceRequest { channel: "room:1".into() }).await.unwrap();
        api.channels(pb::ChannelsRequest::default()).await.unwrap();
        api.info(pb::InfoRequest {}).await.unwrap();
        let n = all_sessions(&mut api).await.len();
        println!("round {round}: {n} of 30 sessions registered {:?} after the replica died", started.elapsed());
        assert_eq!(n, 30, "no live session is missing");
    }
    let info = api.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.replicas.len(), 1);
    assert_eq!(info.replicas[0].shards, 256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_survive_the_loss_of_their_nats_node() {
    let mut nats = NatsCluster::start(3);
    // g1 knows every node (the NATS client picks one at random); whichever it is on is the
    // one killed, and g2 and control are kept off it, so only g1 loses its node.
    let g1 = procs::gateway("g1", &nats.urls(), &[]);
    let mut on = None;
    eventually("g1 is connected to a NATS node", || {
        on = (0..3).find(|&i| {
            nats.node(i)
                .monitor("/connz")
                .ok()
                .is_some_and(|c| c["connections"].as_array().is_some_and(|cs| cs.iter().any(|c| c["name"] == "g1")))
        });
        futures_util::future::ready(on.is_some())
    })
    .await;
    let doomed = on.unwrap();
    let others: Vec<String> = (0..3).filter(|&i| i != doomed).map(|i| nats.url(i)).collect();
    let c1 = procs::control("c1", &others, &[]);
    let g2 = procs::gateway("g2", &others, &[]);
    wait_ready(c1.addr(), 2, 1).await;
    let mut a = user_client(&g1, "a").await;
    let mut b = user_client(&g2, "b").await;
    a.subscribe("f:x").await.unwrap();
    b.subscribe("f:x").await.unwrap();
    let mut api = grpc(c1.addr()).await;
    // Interest takes a moment to cross NATS routes: publish a marker until both hear it.
    let deadline = Instant::now() + DEADLINE;
    let (mut heard_a, mut heard_b) = (false, false);
    while !(heard_a && heard_b) {
        assert!(Instant::now() < deadline, "the marker never reached both gateways");
        api.publish(pb::PublishApiRequest {
            channel: "f:x".into(),
            data: Bytes::from_static(b"0"),
            ..Default::default()
        })
        .await
        .unwrap();
        heard_a |= tokio::time::timeout(Duration::from_millis(100), a.next_publication()).await.is_ok();
        heard_b |= tokio::time::timeout(Duration::from_millis(100), b.next_publication()).await.is_ok();
    }
    nats.kill(doomed);
    let killed = Instant::now();
    // Publish every 50 ms until g1's subscriber hears again.
    let mut n = 0u32;
    let gap = loop {
        n += 1;
        let _ = api
            .publish(pb::PublishApiRequest {
                channel: "f:x".into(),
                data: Bytes::from(n.to_string()),
                ..Default::default()
            })
            .await;
        match tokio::time::timeout(Duration::from_millis(50), a.next_publication()).await {
            Ok(Some(p)) if p.data != "0" => break killed.elapsed(),
            _ => {}
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "delivery to g1 did not resume:\n{}", g1.log());
    };
    println!("delivery to the gateway whose NATS node died resumed after {gap:?}");
    // b's gateway never lost its node: it kept receiving in order (a live-only channel:
    // the publications' numbers tell the order).
    let mut last = 0;
    while let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(200), b.next_publication()).await {
        let n: u32 = std::str::from_utf8(&p.data).unwrap().parse().unwrap();
        assert!(n > last || (n == 0 && last == 0), "reordered: {n} after {last}");
        last = n;
    }
    assert!(last > 0, "the gateway that kept its node received the publications");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_send_and_rpc_reach_a_backend_queue_group() {
    use futures_util::StreamExt;
    let nats = NatsServer::start();
    let urls = vec![nats.url()];
    let c1 = procs::control("c1", &urls, &[]);
    let g1 = procs::gateway("g1", &urls, &["--rpc-timeout", "500ms"]);
    wait_ready(c1.addr(), 1, 1).await;
    let backend = async_nats::connect(nats.url()).await.unwrap();
    let mut sends = backend.queue_subscribe("sb.up.send", "backends".into()).await.unwrap();
    let mut echo = backend.queue_subscribe("sb.up.rpc.echo", "backends".into()).await.unwrap();
    let _silent = backend.queue_subscribe("sb.up.rpc.silent", "backends".into()).await.unwrap();
    backend.flush().await.unwrap();
    let b2 = backend.clone();
    tokio::spawn(async move {
        while let Some(m) = echo.next().await {
            let mut answer = b"{\"echo\":".to_vec();
            answer.extend_from_slice(&m.payload);
            answer.push(b'}');
            b2.publish(m.reply.unwrap(), answer.into()).await.unwrap();
        }
    });
    let c = user_client(&g1, "carol").await;
    c.send(Bytes::from_static(b"{\"n\":1}")).await.unwrap();
    let m = tokio::time::timeout(DEADLINE, sends.next()).await.unwrap().unwrap();
    assert_eq!(m.payload, "{\"n\":1}");
    let headers = m.headers.unwrap();
    assert_eq!(headers.get("Sb-User").map(|v| v.as_str()), Some("carol"));
    assert_eq!(headers.get("Sb-Session").map(|v| v.as_str().to_owned()), Some(c.session()));
    assert_eq!(headers.get("Sb-Gateway").map(|v| v.as_str()), Some("g1"));

    let answer = c.rpc("echo", Bytes::from_static(b"[1,2]")).await.unwrap();
    assert_eq!(answer, "{\"echo\":[1,2]}");
    // No backend is told apart from a silent one by its code: 110 at once, not 112 later.
    let err = c.rpc("nobody", Bytes::from_static(b"1")).await.unwrap_err();
    assert_eq!(err.code(), Some(110), "{err}");
    let err = c.rpc("silent", Bytes::from_static(b"1")).await.unwrap_err();
    assert_eq!(err.code(), Some(112), "{err}");
    let err = c.rpc("bad.method", Bytes::from_static(b"1")).await.unwrap_err();
    assert_eq!(err.code(), Some(102));
    c.ping().await.expect("the session goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_makes_gateways_unready_fails_commands_fast_and_heals() {
    let mut nats = NatsServer::start();
    let urls = vec![nats.url()];
    let metrics_port = switchboard_tests::free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let c1 = procs::control("c1", &urls, &["--metrics-listen", &metrics_listen]);
    let g1 = procs::gateway("g1", &urls, &[]);
    wait_ready(c1.addr(), 1, 1).await;
    let mut a = user_client(&g1, "a").await;
    a.subscribe("o:x").await.unwrap();
    let ready = switchboard_tests::readyz;
    // Ready once it heard a control replica's heartbeat.
    switchboard_tests::eventually("the gateway is ready", async || ready(g1.addr()).await).await;
    let control_admin: std::net::SocketAddr = metrics_listen.parse().unwrap();
    eventually("control serves /readyz on --metrics-listen", async || ready(control_admin).await).await;
    let metrics = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(control_admin).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    assert!(metrics.contains("switchboard_control_replicas 1"), "{metrics}");
    nats.kill();
    eventually("the gateway reports not ready", || ready(g1.addr()).map(|r| !r)).await;
    let started = Instant::now();
    let err = a.publish("o:x", Bytes::from_static(b"1")).await.unwrap_err();
    assert_eq!(err.code(), Some(110), "{err}");
    let err = a.subscribe_once("o:y").await.unwrap_err();
    assert_eq!(err.code(), Some(110), "{err}");
    // Well under the 5 s request timeout they would otherwise wait in the NATS client.
    assert!(started.elapsed() < Duration::from_secs(3), "commands failed after {:?}", started.elapsed());
    a.ping().await.expect("the session stays open while NATS is away");
    nats.restart();
    eventually("the gateway is ready again", || ready(g1.addr())).await;
    eventually("publishing works again", || {
        let a = &a;
        async move { a.publish("o:x", Bytes::from_static(b"2")).await.is_ok() }
    })
    .await;
    // The subscription made before the outage was re-established by the NATS client.
    let p = next_publication(&mut a).await;
    assert_eq!(p.channel, "o:x");
}
