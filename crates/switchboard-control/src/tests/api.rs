//! The backend API: reads through either replica, commands to gateways, event streams,
//! status codes, and serving over a socket.

use bytes::Bytes;
use switchboard_bus::{Address, MemoryBroker};
use switchboard_wire::pb::{self, gateway_command::Action, gateway_command::Target};
use switchboard_wire::pb::{disconnect_request, server_subscribe_request, switchboard_api_server::SwitchboardApi};
use tokio_stream::StreamExt;
use tonic::{Code, Request, Status};

use super::fake_gateway::record_user_commands;
use super::*;

/// A case name, what the call returned, and what it should.
type Case = (&'static str, Result<(), Code>, Result<(), Code>);

/// Awaits an API call and keeps only its status code.
macro_rules! code {
    ($call:expr) => {
        $call.await.map(drop).map_err(|e: Status| e.code())
    };
}

fn req<T>(t: T) -> Request<T> {
    Request::new(t)
}

fn ids(sessions: &[pb::SessionInfo]) -> Vec<String> {
    sessions.iter().map(|s| s.session.clone()).collect()
}

#[tokio::test]
async fn either_replica_answers_reads_of_the_whole_registry() {
    let broker = MemoryBroker::new();
    let replicas = cluster(&broker, &["c1", "c2"]).await;
    let (g1, g2) = (gateway(&broker, "g1").await, gateway(&broker, "g2").await);
    let alice1 = g1.connect("alice", &["news"]).await;
    let alice2 = g2.connect("alice", &["chat:1"]).await;
    let bob = g1.connect("bob", &["chat:1"]).await;
    let anonymous = g2.connect("", &["news"]).await;
    eventually("4 sessions registered", || total_sessions(&replicas) == 4).await;

    for r in &replicas {
        let api = r.api();
        for (session, gateway, user) in [(&alice1, "g1", "alice"), (&alice2, "g2", "alice"), (&bob, "g1", "bob")] {
            let info = api.get_session(req(pb::GetSessionRequest { session: session.clone() })).await.unwrap();
            let info = info.into_inner();
            assert_eq!((info.gateway.as_str(), info.user.as_str()), (gateway, user), "{} {session}", r.id());
        }
        let list = api.list_sessions(req(pb::ListSessionsRequest { user: "alice".into(), ..Default::default() }));
        assert_eq!(ids(&list.await.unwrap().into_inner().sessions), sorted(vec![alice1.clone(), alice2.clone()]));
        let presence = api.presence(req(pb::PresenceRequest { channel: "chat:1".into() })).await.unwrap();
        assert_eq!(ids(&presence.into_inner().sessions), sorted(vec![alice2.clone(), bob.clone()]));
        let stats = api.presence_stats(req(pb::PresenceRequest { channel: "news".into() })).await.unwrap();
        assert_eq!(stats.into_inner(), pb::PresenceStatsResponse { sessions: 2, users: 1 }, "{anonymous} is no user");
        for (pattern, want) in [("", vec![("chat:1", 2, 2), ("news", 2, 1)]), ("ch*", vec![("chat:1", 2, 2)])] {
            let got = api.channels(req(pb::ChannelsRequest { pattern: pattern.into() })).await.unwrap().into_inner();
            let got: Vec<(&str, u32, u32)> =
                got.channels.iter().map(|c| (c.channel.as_str(), c.sessions, c.users)).collect();
            assert_eq!(got, want, "{} {pattern:?}", r.id());
        }
    }
}

#[tokio::test]
async fn list_sessions_pages_in_session_id_order() {
    let broker = MemoryBroker::new();
    let replicas = cluster(&broker, &["c1", "c2"]).await;
    let g = gateway(&broker, "g1").await;
    let mut all = Vec::new();
    for _ in 0..7 {
        all.push(g.connect("alice", &[]).await);
    }
    g.connect("bob", &[]).await;
    eventually("8 sessions registered", || total_sessions(&replicas) == 8).await;
    let api = replicas[0].api();
    let (mut token, mut pages) = (String::new(), Vec::new());
    loop {
        let request = pb::ListSessionsRequest { user: "alice".into(), page_size: 3, page_token: token.clone() };
        let page = api.list_sessions(req(request)).await.unwrap().into_inner();
        pages.push(ids(&page.sessions));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), sorted(all.clone()));
    // An empty user pages through every session, across both replicas' shards.
    let (mut token, mut everyone) = (String::new(), Vec::new());
    loop {
        let request = pb::ListSessionsRequest { user: String::new(), page_size: 3, page_token: token.clone() };
        let page = api.list_sessions(req(request)).await.unwrap().into_inner();
        assert!(page.sessions.len() <= 3);
        everyone.extend(ids(&page.sessions));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(everyone.len(), 8);
    assert!(everyone.windows(2).all(|w| w[0] < w[1]), "pages are in session id order without repeats");
}

#[tokio::test]
async fn bad_requests_get_the_documented_status_codes() {
    let broker = MemoryBroker::new();
    let c1 = replica(&broker, "c1").await;
    let g = gateway(&broker, "g1").await;
    let s = g.connect("alice", &[]).await;
    eventually("the session registered", || c1.session_count() == 1).await;
    let api = c1.api();
    let disconnect = |target, code, reason: &str| pb::DisconnectRequest { target, code, reason: reason.into() };
    let session = |s: &str| Some(disconnect_request::Target::Session(s.into()));
    let sub = |target, channel: &str| pb::ServerSubscribeRequest { target, channel: channel.into() };
    let send = |s: &str| pb::SendToSessionRequest { session: s.into(), data: Bytes::new() };
    let list =
        |user: &str, page_size| pb::ListSessionsRequest { user: user.into(), page_size, page_token: String::new() };
    use Code::{InvalidArgument as Invalid, NotFound};
    let cases: Vec<Case> = vec![
        ("get an empty session", code!(api.get_session(req(pb::GetSessionRequest::default()))), Err(Invalid)),
        (
            "get an unknown session",
            code!(api.get_session(req(pb::GetSessionRequest { session: "g1-ffff".into() }))),
            Err(NotFound),
        ),
        ("list every session", code!(api.list_sessions(req(list("", 0)))), Ok(())),
        ("list 1001 per page", code!(api.list_sessions(req(list("alice", 1001)))), Err(Invalid)),
        ("list 1000 per page", code!(api.list_sessions(req(list("alice", 1000)))), Ok(())),
        ("presence of no channel", code!(api.presence(req(pb::PresenceRequest::default()))), Err(Invalid)),
        (
            "presence of a bad channel",
            code!(api.presence_stats(req(pb::PresenceRequest { channel: "a b".into() }))),
            Err(Invalid),
        ),
        ("send to an empty session", code!(api.send_to_session(req(send("")))), Err(Invalid)),
        ("send to a session without a gateway", code!(api.send_to_session(req(send("nodash")))), Err(Invalid)),
        ("send to a session with an empty gateway", code!(api.send_to_session(req(send("-abc")))), Err(Invalid)),
        ("send to an empty user", code!(api.send_to_user(req(pb::SendToUserRequest::default()))), Err(Invalid)),
        // Ids that would make a subject NATS cannot carry are refused at once.
        (
            "send to a 5,000-byte user",
            code!(api.send_to_user(req(pb::SendToUserRequest { user: "u".repeat(5000), data: Bytes::new() }))),
            Err(Invalid),
        ),
        (
            "send to a 257-byte user",
            code!(api.send_to_user(req(pb::SendToUserRequest { user: "u".repeat(257), data: Bytes::new() }))),
            Err(Invalid),
        ),
        ("send to a 5,000-byte session", code!(api.send_to_session(req(send(&"g".repeat(5000))))), Err(Invalid)),
        (
            "disconnect a 5,000-byte user",
            code!(api.disconnect(req(disconnect(Some(disconnect_request::Target::User(".".repeat(5000))), 0, "")))),
            Err(Invalid),
        ),
        (
            "get a 5,000-byte session",
            code!(api.get_session(req(pb::GetSessionRequest { session: format!("{}-1", "g".repeat(5000)) }))),
            Err(Invalid),
        ),
        ("list a 5,000-byte user's sessions", code!(api.list_sessions(req(list(&"u".repeat(5000), 0)))), Err(Invalid)),
        ("disconnect nobody", code!(api.disconnect(req(disconnect(None, 0, "")))), Err(Invalid)),
        ("disconnect with code 3999", code!(api.disconnect(req(disconnect(session(&s), 3999, "")))), Err(Invalid)),
        ("disconnect with code 5000", code!(api.disconnect(req(disconnect(session(&s), 5000, "")))), Err(Invalid)),
        (
            "disconnect with a 124-byte reason",
            code!(api.disconnect(req(disconnect(session(&s), 4000, &"x".repeat(124))))),
            Err(Invalid),
        ),
        (
            "disconnect with a 123-byte reason",
            code!(api.disconnect(req(disconnect(session(&s), 4999, &"x".repeat(123))))),
            Ok(()),
        ),
        (
            "subscribe to a bad channel",
            code!(api.subscribe(req(sub(Some(server_subscribe_request::Target::Session(s.clone())), "a>b")))),
            Err(Invalid),
        ),
        ("unsubscribe nobody", code!(api.unsubscribe(req(sub(None, "news")))), Err(Invalid)),
        (
            "unsubscribe an empty user",
            code!(api.unsubscribe(req(sub(Some(server_subscribe_request::Target::User("".into())), "news")))),
            Err(Invalid),
        ),
        ("publish to no channel", code!(api.publish(req(pb::PublishApiRequest::default()))), Err(Invalid)),
        ("broadcast to no channel", code!(api.broadcast(req(pb::BroadcastRequest::default()))), Err(Invalid)),
    ];
    for (name, got, want) in cases {
        assert_eq!(got, want, "{name}");
    }
}

#[tokio::test]
async fn session_commands_reach_the_gateway_and_its_answers_map_to_status_codes() {
    let broker = MemoryBroker::new();
    // The mute gateway's case waits a whole query timeout.
    let c1 = replica_with(&broker, ControlConfig { query_timeout: SHORT_LEASE, ..config("c1") }).await;
    let g = gateway(&broker, "g1").await;
    let s = g.connect("alice", &[]).await;
    // A gateway that listens but never answers.
    let _mute = c1.shared().bus.listen(&Address::Node("gmute".into()), None).await.unwrap();
    let api = c1.api();
    let send =
        |session: &str| req(pb::SendToSessionRequest { session: session.into(), data: Bytes::from_static(b"hi") });
    let subscribe = |channel: &str| {
        let target = Some(server_subscribe_request::Target::Session(s.clone()));
        req(pb::ServerSubscribeRequest { target, channel: channel.into() })
    };
    let cases: Vec<Case> = vec![
        ("send to a connected session", code!(api.send_to_session(send(&s))), Ok(())),
        ("send to an unknown session", code!(api.send_to_session(send("g1-ffff"))), Err(Code::NotFound)),
        ("send to an unknown gateway", code!(api.send_to_session(send("gx-0001"))), Err(Code::NotFound)),
        ("send to a mute gateway", code!(api.send_to_session(send("gmute-1"))), Err(Code::DeadlineExceeded)),
        ("a subscribe the gateway refuses", code!(api.subscribe(subscribe("forbidden:x"))), {
            Err(Code::FailedPrecondition)
        }),
        ("a subscribe", code!(api.subscribe(subscribe("news"))), Ok(())),
    ];
    for (name, got, want) in cases {
        assert_eq!(got, want, "{name}");
    }
    let target = Some(disconnect_request::Target::Session(s.clone()));
    api.disconnect(req(pb::DisconnectRequest { target, code: 0, reason: "bye".into() })).await.unwrap();
    let last = g.commands().pop().unwrap();
    assert_eq!(last.target, Some(Target::Session(s)));
    assert_eq!(last.action, Some(Action::Disconnect(pb::DisconnectAction { code: 4005, reason: "bye".into() })));
}

#[tokio::test]
async fn user_commands_go_to_the_users_subject() {
    let broker = MemoryBroker::new();
    let c1 = replica(&broker, "c1").await;
    let g = gateway(&broker, "g1").await;
    let _listening = record_user_commands(&g, &["alice"]).await;
    let api = c1.api();
    let user = || Some(disconnect_request::Target::User("alice".into()));
    let sent = api.send_to_user(req(pb::SendToUserRequest { user: "alice".into(), data: Bytes::from_static(b"hi") }));
    assert_eq!(sent.await.unwrap().into_inner().sessions, 0);
    api.disconnect(req(pb::DisconnectRequest { target: user(), code: 4500, reason: String::new() })).await.unwrap();
    let target = Some(server_subscribe_request::Target::User("alice".into()));
    api.unsubscribe(req(pb::ServerSubscribeRequest { target, channel: "news".into() })).await.unwrap();
    eventually("3 user commands", || g.commands().len() == 3).await;
    let actions: Vec<Option<Action>> = g.commands().into_iter().map(|c| c.action).collect();
    assert_eq!(
        actions,
        [
            Some(Action::Send(Bytes::from_static(b"hi"))),
            Some(Action::Disconnect(pb::DisconnectAction { code: 4500, reason: String::new() })),
            Some(Action::Unsubscribe("news".into())),
        ]
    );
    assert!(g.commands().iter().all(|c| c.target == Some(Target::User("alice".into()))));
}

#[tokio::test]
async fn watch_events_streams_every_registry_event_as_a_session_event() {
    use pb::session_event::Kind;
    let broker = MemoryBroker::new();
    let c1 = replica(&broker, "c1").await;
    let g = gateway(&broker, "g1").await;
    let mut stream = c1.api().watch_events(req(pb::WatchEventsRequest {})).await.unwrap().into_inner();
    let s = g.connect("alice", &[]).await;
    g.subscribe(&s, "news").await;
    g.unsubscribe(&s, "news").await;
    g.disconnect(&s).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let e = tokio::time::timeout(Duration::from_secs(1), stream.next()).await.unwrap().unwrap().unwrap();
        assert_eq!((e.session.as_str(), e.user.as_str(), e.gateway.as_str()), (s.as_str(), "alice", "g1"));
        assert!(e.at_ms > 0);
        got.push((Kind::try_from(e.kind).unwrap(), e.channel));
    }
    let want = [(Kind::Connect, ""), (Kind::Subscribe, "news"), (Kind::Unsubscribe, "news"), (Kind::Disconnect, "")];
    assert_eq!(got, want.map(|(k, c)| (k, c.to_string())));
}

// Paused time: the sleep below ends only once every task is idle, so the forwarder has
// filled the queue before the first read.
#[tokio::test(start_paused = true)]
async fn a_watcher_that_falls_behind_gets_resource_exhausted() {
    let broker = MemoryBroker::new();
    let c1 = replica(&broker, "c1").await;
    let g = gateway(&broker, "g1").await;
    let mut stream = c1.api().watch_events(req(pb::WatchEventsRequest {})).await.unwrap().into_inner();
    let s = g.connect("alice", &[]).await;
    for i in 0..1100 {
        g.subscribe(&s, &format!("c{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let read = async {
        let mut delivered = 0;
        loop {
            match stream.next().await {
                Some(Ok(_)) => delivered += 1,
                Some(Err(status)) => return (delivered, status.code()),
                None => panic!("the stream ended without an error"),
            }
        }
    };
    let (delivered, end) = tokio::time::timeout(Duration::from_secs(2), read).await.expect("the stream went on");
    assert_eq!((delivered, end), (1023, Code::ResourceExhausted));
}

#[tokio::test]
async fn a_replica_serves_a_bounded_number_of_watchers_and_frees_their_places() {
    let broker = MemoryBroker::new();
    let c1 = replica(&broker, "c1").await;
    let api = c1.api();
    let mut open = Vec::new();
    for _ in 0..crate::api::MAX_WATCHERS {
        open.push(api.watch_events(req(pb::WatchEventsRequest {})).await.unwrap().into_inner());
    }
    let refused = api.watch_events(req(pb::WatchEventsRequest {})).await.expect_err("one too many");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    // A client that goes away gives its place back.
    drop(open.pop());
    let max = crate::api::MAX_WATCHERS;
    eventually("a place was freed", || c1.shared().watchers.load(std::sync::atomic::Ordering::Acquire) < max).await;
    assert!(api.watch_events(req(pb::WatchEventsRequest {})).await.is_ok());
}

#[tokio::test]
async fn info_lists_the_gateways_and_replicas_with_their_load() {
    let broker = MemoryBroker::new();
    let replicas = cluster(&broker, &["c1", "c2"]).await;
    let g = gateway(&broker, "g1").await;
    for _ in 0..9 {
        g.connect("u", &[]).await;
    }
    eventually("9 sessions registered", || total_sessions(&replicas) == 9).await;
    let api = replicas[0].api();
    let mut info = pb::InfoResponse::default();
    for _ in 0..100 {
        info = api.info(req(pb::InfoRequest {})).await.unwrap().into_inner();
        // c2's count comes with its heartbeats.
        if info.replicas.iter().map(|r| r.sessions).sum::<u32>() == 9
            && info.gateways.first().is_some_and(|g| g.sessions == 9)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replicas: Vec<(&str, &str, u32)> =
        info.replicas.iter().map(|r| (r.id.as_str(), r.grpc_addr.as_str(), r.shards)).collect();
    assert_eq!(
        replicas.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        [("c1", "c1.control:9090"), ("c2", "c2.control:9090")]
    );
    assert_eq!(replicas.iter().map(|r| r.2).sum::<u32>(), 256);
    assert_eq!(info.replicas.iter().map(|r| r.sessions).sum::<u32>(), 9);
    assert!(info.replicas.iter().all(|r| r.started_at_ms > 0));
    let gw = &info.gateways[..];
    assert_eq!((gw.len(), gw[0].id.as_str(), gw[0].sessions, gw[0].http_addr.as_str()), (1, "g1", 9, "g1:8080"));
    assert!(gw[0].last_seen_ms_ago < 500, "{}", gw[0].last_seen_ms_ago);
}

#[tokio::test]
async fn serve_answers_health_and_the_api_over_a_socket_and_ends_watchers_on_shutdown() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let broker = MemoryBroker::new();
    let c1 = replica(&broker, "c1").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = c1.clone();
    let server = tokio::spawn(async move { serving.serve(listener, async { drop(stopped.await) }).await });
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let status = HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(status.into_inner().status(), ServingStatus::Serving);
    let mut api = pb::switchboard_api_client::SwitchboardApiClient::new(channel);
    let info = api.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.replicas[0].id, "c1");
    let mut events = api.watch_events(pb::WatchEventsRequest {}).await.unwrap().into_inner();

    stop.send(()).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(1), events.message()).await.unwrap();
    assert_eq!(end.unwrap_err().code(), Code::Unavailable);
    tokio::time::timeout(Duration::from_secs(1), server).await.unwrap().unwrap().unwrap();
    c1.stop().await;
}

#[tokio::test]
async fn a_presence_too_large_for_one_bus_message_arrives_whole_from_every_replica() {
    let broker = MemoryBroker::new();
    let replicas = cluster(&broker, &["c1", "c2"]).await;
    let g = gateway(&broker, "g1").await;
    // About 250 bytes a record: each replica's answer takes more than one part.
    let user = "u".repeat(200);
    for _ in 0..3000 {
        g.connect(&user, &["busy"]).await;
    }
    eventually("3000 sessions registered", || total_sessions(&replicas) == 3000).await;
    assert!(replicas.iter().all(|r| r.session_count() * 250 > crate::queries::PART_BYTES));
    for r in &replicas {
        let stats = r.api().presence_stats(req(pb::PresenceRequest { channel: "busy".into() })).await.unwrap();
        assert_eq!(stats.into_inner(), pb::PresenceStatsResponse { sessions: 3000, users: 1 }, "{}", r.id());
        // The user's sessions sit in both replicas' shards: still one user.
        let channels = r.api().channels(req(pb::ChannelsRequest { pattern: "busy".into() })).await.unwrap();
        let counts: Vec<_> = channels.into_inner().channels.iter().map(|c| (c.sessions, c.users)).collect();
        assert_eq!(counts, [(3000, 1)], "{}", r.id());
    }
}

#[tokio::test]
async fn a_gateways_presence_question_is_answered_from_the_whole_registry_by_one_replica() {
    use switchboard_bus::{Message, Messages};
    let broker = MemoryBroker::new();
    let replicas = cluster(&broker, &["c1", "c2"]).await;
    let (g1, g2) = (gateway(&broker, "g1").await, gateway(&broker, "g2").await);
    let alice1 = g1.connect("alice", &["chat:1"]).await;
    let alice2 = g2.connect("alice", &["chat:1"]).await;
    let anonymous = g2.connect("", &["chat:1", "news"]).await;
    eventually("3 sessions registered", || total_sessions(&replicas) == 3).await;
    let asker = broker.connect(std::sync::Arc::new(switchboard_bus::NoDelivery));
    let ask = |channel: &str, stats_only: bool| {
        let query = pb::PresenceQuery { channel: channel.into(), stats_only };
        let asked = asker.request(&Address::Presence, Message::proto(&query), std::time::Duration::from_secs(5));
        async move { asked.await.unwrap().decode::<pb::PresenceAnswer>().unwrap() }
    };
    let answer = ask("chat:1", false).await;
    let got: Vec<_> = answer.sessions.iter().map(|r| (r.session.clone(), r.user.clone(), r.info.clone())).collect();
    let want = |s: &String, u: &str| (s.clone(), u.to_owned(), Bytes::from(format!("{{\"name\":\"{u}\"}}")));
    let mut expected = vec![want(&alice1, "alice"), want(&alice2, "alice"), want(&anonymous, "")];
    expected.sort();
    assert_eq!(got, expected);
    assert!(answer.sessions.iter().all(|r| r.gateway.is_empty() && r.channels.is_empty()), "only what a client sees");
    assert_eq!((answer.session_count, answer.users, answer.error.as_str()), (3, 1, ""));
    let stats = ask("chat:1", true).await;
    assert_eq!((stats.sessions.len(), stats.session_count, stats.users), (0, 3, 1));
    assert!(!ask("bad channel", false).await.error.is_empty(), "an invalid channel is an error");
}
