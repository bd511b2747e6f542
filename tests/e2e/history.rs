//! The backend side of history over real sockets: `History`, `HistoryRemove`, idempotency
//! keys and `PublishStream` against a control replica on a real JetStream `nats-server`,
//! and the `history`, `history-remove` and `pub --stream` tools against one on the
//! in-process bus. Namespace `h` keeps history, everything else is live-only.
//!
//! `switchboard dev` cannot be given history yet (the config file has no namespace history
//! keys), so the control replicas here are built in-process with their namespaces set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_bus::conformance::Recorder;
use switchboard_bus::{Bus, Channels, HistoryLimits, Namespaces, NatsBus, NatsConfig, NoDelivery};
use switchboard_control::{Control, ControlConfig};
use switchboard_tests::nats::NatsServer;
use switchboard_tests::{DEADLINE, grpc, start_api};
use switchboard_wire::Channel;
use switchboard_wire::pb::{self, publish_stream_reply::Result as Outcome};
use tokio_stream::StreamExt;
use tonic::Code;

use crate::cli::kit::{run, run_with_stdin};

fn namespaces() -> Namespaces {
    let limits = HistoryLimits { size: 10_000, ttl: Duration::from_secs(3600) };
    Namespaces { default: None, namespaces: BTreeMap::from([("h".into(), Some(limits))]) }
}

/// A control replica on `nats` serving its API on a free port, and a second bus node that
/// subscribes to `channels` and records what it receives.
struct OnNats {
    grpc: SocketAddr,
    received: Arc<Recorder>,
    _control: Control,
    _subscriber: NatsBus,
    _serving: tokio::task::JoinHandle<()>,
}

async fn on_nats(nats: &NatsServer, channels: &[&str]) -> OnNats {
    let config = || {
        let mut config = NatsConfig::new(vec![nats.url()], "history-e2e");
        config.namespaces = namespaces();
        config
    };
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(config(), Arc::new(NoDelivery)).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = listener.local_addr().unwrap();
    let control = Control::start(ControlConfig::new("c1", grpc.to_string()), bus).await.unwrap();
    let serving = control.clone();
    let serving = tokio::spawn(async move { serving.serve(listener, std::future::pending()).await.unwrap() });
    let received = Arc::new(Recorder::default());
    let subscriber = NatsBus::connect(config(), received.clone()).await.unwrap();
    for c in channels {
        subscriber.subscribe(&Channel::parse(c).unwrap()).await.unwrap();
    }
    OnNats { grpc, received, _control: control, _subscriber: subscriber, _serving: serving }
}

fn publish(channel: &str, data: &str, key: &str) -> pb::PublishApiRequest {
    pb::PublishApiRequest { channel: channel.into(), data: Bytes::from(data.to_owned()), idempotency_key: key.into() }
}

fn history(channel: &str, since: Option<&pb::PublishApiResponse>, limit: u32, reverse: bool) -> pb::HistoryApiRequest {
    let since = since.map(|p| pb::HistoryPosition { offset: p.offset, epoch: p.epoch.clone() });
    pb::HistoryApiRequest { channel: channel.into(), since, limit, reverse }
}

fn offsets(page: &pb::HistoryApiResponse) -> Vec<u64> {
    page.publications.iter().map(|p| p.offset).collect()
}

fn ok(outcome: &Outcome) -> &pb::PublishApiResponse {
    match outcome {
        Outcome::Ok(p) => p,
        Outcome::Error(e) => panic!("{e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_stream_on_jetstream_keeps_one_channels_order_at_a_high_rate() {
    let nats = NatsServer::start();
    let node = on_nats(&nats, &["h:fast"]).await;
    let mut api = grpc(node.grpc).await;
    let n = 2000u64;
    let requests = tokio_stream::iter(0..n).map(|id| pb::PublishStreamRequest {
        id,
        channel: "h:fast".into(),
        data: Bytes::from(id.to_string()),
        idempotency_key: String::new(),
    });
    let started = Instant::now();
    let mut replies = api.publish_stream(requests).await.unwrap().into_inner();
    let mut answered = Vec::new();
    while let Some(reply) = tokio::time::timeout(DEADLINE, replies.next()).await.expect("a reply in time") {
        let reply = reply.unwrap();
        answered.push((reply.id, ok(reply.result.as_ref().unwrap()).offset));
    }
    let took = started.elapsed();
    eprintln!("PublishStream on JetStream: {n} to one channel in {took:?}, {:.0}/s", n as f64 / took.as_secs_f64());
    assert_eq!(answered.len() as u64, n, "every request is answered once");
    assert!(answered.iter().map(|a| a.0).eq(0..n), "one channel's replies come in request order");
    assert!(answered.windows(2).all(|w| w[0].1 < w[1].1), "offsets increase in request order");
    let delivered = node.received.wait_for(&Channel::parse("h:fast").unwrap(), n as usize).await;
    let data: Vec<String> = delivered.iter().map(|p| String::from_utf8(p.data.to_vec()).unwrap()).collect();
    assert_eq!(data, (0..n).map(|i| i.to_string()).collect::<Vec<_>>(), "delivered in the order sent");
    assert_eq!(
        delivered.iter().map(|p| p.offset).collect::<Vec<_>>(),
        answered.iter().map(|a| a.1).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_idempotency_keys_and_stream_errors_on_jetstream() {
    let nats = NatsServer::start();
    let node = on_nats(&nats, &["h:k", "h:k2"]).await;
    let mut api = grpc(node.grpc).await;

    let first = api.publish(publish("h:k", "1", "order-17")).await.unwrap().into_inner();
    let retry = api.publish(publish("h:k", "1", "order-17")).await.unwrap().into_inner();
    assert_eq!(retry, first, "a retry with the same key is answered with the first one's position");
    let elsewhere = api.publish(publish("h:k2", "1", "order-17")).await.unwrap().into_inner();
    let mut positions = vec![first.clone()];
    for i in 2..=5 {
        positions.push(api.publish(publish("h:k", &i.to_string(), "")).await.unwrap().into_inner());
    }
    let delivered = node.received.wait_for(&Channel::parse("h:k").unwrap(), 5).await;
    assert_eq!(
        delivered.iter().map(|p| p.offset).collect::<Vec<_>>(),
        positions.iter().map(|p| p.offset).collect::<Vec<_>>(),
        "the key's publication is delivered once"
    );
    assert_eq!(node.received.wait_for(&Channel::parse("h:k2").unwrap(), 1).await[0].offset, elsewhere.offset);

    let all = api.history(history("h:k", None, 0, false)).await.unwrap().into_inner();
    assert_eq!(offsets(&all), positions.iter().map(|p| p.offset).collect::<Vec<_>>(), "stored once, in order");
    assert!(all.continuous);
    assert_eq!(all.latest.as_ref().map(|l| l.offset), Some(positions[4].offset));
    let back = api.history(history("h:k", None, 2, true)).await.unwrap().into_inner();
    assert_eq!(offsets(&back), [positions[4].offset, positions[3].offset]);
    let after = api.history(history("h:k", Some(&positions[1]), 2, false)).await.unwrap().into_inner();
    assert_eq!(offsets(&after), [positions[2].offset, positions[3].offset]);
    assert!(after.continuous);
    let status = api.history(history("live", None, 0, false)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    api.history_remove(pb::HistoryRemoveApiRequest { channel: "h:k".into() }).await.unwrap();
    let gone = api.history(history("h:k", Some(&positions[1]), 0, false)).await.unwrap().into_inner();
    assert!(gone.publications.is_empty() && !gone.continuous, "{gone:?}");
    let next = api.publish(publish("h:k", "6", "")).await.unwrap().into_inner();
    assert!(next.offset > positions[4].offset);

    // A bad request in a stream gets its own error; the others are published.
    let requests = vec![
        pb::PublishStreamRequest {
            id: 1,
            channel: "h:k2".into(),
            data: Bytes::from_static(b"1"),
            ..Default::default()
        },
        pb::PublishStreamRequest { id: 2, channel: "bad channel".into(), ..Default::default() },
        pb::PublishStreamRequest {
            id: 3,
            channel: "h:k2".into(),
            data: Bytes::from_static(b"3"),
            ..Default::default()
        },
    ];
    let mut replies = api.publish_stream(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut got = BTreeMap::new();
    while let Some(reply) = tokio::time::timeout(DEADLINE, replies.next()).await.unwrap() {
        let reply = reply.unwrap();
        got.insert(reply.id, reply.result.unwrap());
    }
    assert!(matches!(&got[&2], Outcome::Error(e) if e.code == Code::InvalidArgument as i32), "{got:?}");
    assert!(ok(&got[&3]).offset > ok(&got[&1]).offset, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_tools_print_publish_and_remove_end_to_end() {
    let node = start_api(namespaces()).await;
    let grpc = format!("http://{}", node.grpc);
    let tool = |args: Vec<String>, input: Option<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match input {
                Some(input) => run_with_stdin(&args, &input),
                None => run(&args),
            }
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let lines =
        |out: &str| out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>();

    // pub --stream: 500 lines in order, one answer line each.
    let input: String = (1..=500).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let out = tool(args(&["pub", "--grpc", &grpc, "--stream", "h:cli"]), Some(input)).await.unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let acks = lines(&out.stdout);
    assert_eq!(acks.len(), 500);
    assert!(acks.iter().enumerate().all(|(i, a)| a["line"] == i + 1 && a["channel"] == "h:cli"), "{acks:?}");
    let offsets: Vec<u64> = acks.iter().map(|a| a["offset"].as_u64().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets increase");
    let epoch = acks[0]["epoch"].as_str().unwrap().to_owned();

    // history: as sub prints them, oldest first; paged past 1000 when asked for more.
    let out = tool(args(&["history", "--grpc", &grpc, "--limit", "3", "h:cli"]), None).await.unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let got = lines(&out.stdout);
    assert_eq!(got[0], serde_json::json!({"channel": "h:cli", "offset": offsets[0], "epoch": epoch, "data": {"n": 1}}));
    assert_eq!(got.len(), 3);
    let since = offsets[9].to_string();
    let cases: [(&[&str], Vec<u64>); 3] = [
        (&["--since", &since, "--epoch", &epoch, "--limit", "2"], offsets[10..12].to_vec()),
        (&["--since", &since, "--epoch", &epoch, "--limit", "2", "--reverse"], vec![offsets[8], offsets[7]]),
        (&["--reverse", "--limit", "1"], vec![offsets[499]]),
    ];
    for (extra, want) in cases {
        let out = tool([args(&["history", "--grpc", &grpc, "h:cli"]), args(extra)].concat(), None).await.unwrap();
        assert_eq!(out.code, Some(0), "{extra:?}: {}", out.stderr);
        let got: Vec<u64> = lines(&out.stdout).iter().map(|l| l["offset"].as_u64().unwrap()).collect();
        assert_eq!(got, want, "{extra:?}");
        assert!(out.stderr.is_empty(), "{extra:?}: {}", out.stderr);
    }
    let input: String = (1..=1100).map(|i| format!("{i}\n")).collect();
    let out = tool(args(&["pub", "--grpc", &grpc, "--stream", "h:many"]), Some(input)).await.unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = tool(args(&["history", "--grpc", &grpc, "--limit", "1050", "h:many"]), None).await.unwrap();
    assert_eq!(lines(&out.stdout).len(), 1050, "two pages: {}", out.stderr);

    // A position of another epoch: the oldest kept, and a note on stderr.
    let out =
        tool(args(&["history", "--grpc", &grpc, "--since", "3", "--epoch", "other", "--limit", "1", "h:cli"]), None)
            .await
            .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(lines(&out.stdout)[0]["offset"], offsets[0]);
    assert!(out.stderr.contains("not continuous from offset 3"), "{}", out.stderr);

    // pub --idempotency-key: a retry lands where the first did, and is kept once.
    let keyed = || tool(args(&["pub", "--grpc", &grpc, "--idempotency-key", "k-1", "h:key", "1"]), None);
    let (a, b) = (keyed().await.unwrap(), keyed().await.unwrap());
    assert_eq!((a.code, b.code), (Some(0), Some(0)), "{} {}", a.stderr, b.stderr);
    assert_eq!(a.stdout, b.stdout);
    let out = tool(args(&["history", "--grpc", &grpc, "h:key"]), None).await.unwrap();
    assert_eq!(lines(&out.stdout).len(), 1);

    // history-remove, then nothing is kept.
    let out = tool(args(&["history-remove", "--grpc", &grpc, "h:cli"]), None).await.unwrap();
    assert_eq!((out.code, out.stdout.trim()), (Some(0), r#"{"removed":true}"#), "{}", out.stderr);
    let out = tool(args(&["history", "--grpc", &grpc, "h:cli"]), None).await.unwrap();
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), ""), "{}", out.stderr);

    // Exit statuses: refused by the server 1, refused before asking 64.
    let long_key = "k".repeat(257);
    let cases: [(&[&str], Option<&str>, i32, &str); 7] = [
        (
            &["history", "--grpc", &grpc, "live"],
            None,
            1,
            "FAILED_PRECONDITION: channel \"live\": its namespace keeps no history",
        ),
        (&["history-remove", "--grpc", &grpc, "live"], None, 1, "keeps no history"),
        (&["history", "--grpc", &grpc, "a b"], None, 64, "invalid channel"),
        (&["history", "--grpc", &grpc, "--since", "1", "h:x"], None, 64, "--epoch"),
        (&["pub", "--grpc", &grpc, "--idempotency-key", &long_key, "h:x", "1"], None, 64, "longer than 256 bytes"),
        (
            &["pub", "--grpc", &grpc, "--stream", "h:x"],
            Some("1\nnot json\n3\n"),
            64,
            "line 2: DATA must be one JSON value",
        ),
        (&["pub", "--grpc", &grpc, "--stream", "h:x", "1"], Some(""), 64, "cannot be used with"),
    ];
    for (a, input, code, message) in cases {
        let out = tool(args(a), input.map(str::to_owned)).await.unwrap();
        assert_eq!(out.code, Some(code), "{a:?}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{a:?}: {:?} lacks {message:?}", out.stderr);
    }
    // The lines before the bad one were published, the ones after not.
    let out = tool(args(&["history", "--grpc", &grpc, "h:x"]), None).await.unwrap();
    let data: Vec<serde_json::Value> = lines(&out.stdout).iter().map(|l| l["data"].clone()).collect();
    assert_eq!(data, [serde_json::json!(1)]);
}
