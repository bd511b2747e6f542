//! The client protocol: frames that look like commands but are not, JSON built to hurt a
//! parser, channels that are invalid or forbidden, and floods from clients that never read.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use switchboard_client::{Client, ClientConfig, Event};
use switchboard_gateway::GatewayConfig;
use switchboard_gateway::permissions::{Access, ChannelRules, NamespaceRules, UnknownNamespaces};
use switchboard_tests::{DEADLINE, RawWs, Received, client, eventually, gateway_config, start_dev, ws_url};
use switchboard_wire::{Channel, Encoding};

use super::{CLOSE, FIN, RawTcp, Server, TEXT, frame};

/// What the gateway answers a command frame with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    /// An error reply with this code; the session goes on.
    Error(u32),
    /// A reply with this result member.
    Result(&'static str),
    /// The session is closed with this code.
    Close(u16),
}

/// Sends `frame` on `ws` and checks the answer.
pub(super) async fn expect(ws: &mut RawWs, what: &str, frame: &str, want: Want) {
    ws.text(frame).await;
    let got = ws.recv().await;
    match (want, &got) {
        (Want::Close(code), Received::Close(c, _)) => assert_eq!(*c, code, "{what}"),
        (Want::Error(code), Received::Text(t)) => {
            let reply: serde_json::Value = serde_json::from_str(t).unwrap();
            assert_eq!(reply["error"]["code"], code, "{what}: {reply}");
        }
        (Want::Result(member), Received::Text(t)) => {
            let reply: serde_json::Value = serde_json::from_str(t).unwrap();
            assert!(reply[member].is_object(), "{what}: {reply}");
        }
        _ => panic!("{what}: want {want:?}, got {got:?}"),
    }
}

/// `n` nested arrays around `inner`.
fn nested(n: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(n), "]".repeat(n))
}

#[tokio::test]
async fn commands_built_to_hurt_a_parser_get_the_documented_answer() {
    let node = start_dev(gateway_config()).await;
    let neighbour = client(node.http, Encoding::Json).await;
    let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let digits = "9".repeat(1000);
    let cases: Vec<(&str, String, Want)> = vec![
        // Commands must be objects: an array would be read as the command's fields.
        ("a subscribe that is an array", r#"{"id":3,"subscribe":["ch"]}"#.into(), Want::Error(102)),
        ("a publish that is an array", r#"{"id":4,"publish":["ch",1]}"#.into(), Want::Error(102)),
        ("an unsubscribe that is a string", r#"{"id":5,"unsubscribe":"ch"}"#.into(), Want::Error(102)),
        ("an rpc that is an array", r#"{"id":6,"rpc":[1]}"#.into(), Want::Error(102)),
        ("an array with a command's fields", r#"[2,null,{},{"channel":"x"}]"#.into(), Want::Close(4500)),
        ("an array after whitespace", " [1,{}]".into(), Want::Close(4500)),
        // Nesting: no stack is spent on data, and a parser's recursion limit is not a crash.
        ("10,000-deep arrays as the frame", nested(10_000, ""), Want::Close(4500)),
        (
            "10,000-deep arrays as publish data",
            format!(r#"{{"id":7,"publish":{{"channel":"deep:a","data":{}}}}}"#, nested(10_000, "1")),
            Want::Result("publish"),
        ),
        (
            "10,000-deep objects in an unknown member (skipped without recursing)",
            format!(r#"{{"id":8,"x":{deep_objects},"ping":{{}}}}"#),
            Want::Result("ping"),
        ),
        (
            "10,000-deep arrays as a channel",
            format!(r#"{{"id":9,"subscribe":{{"channel":{}}}}}"#, nested(10_000, "")),
            Want::Error(102),
        ),
        // Numbers.
        ("the largest id", r#"{"id":4294967295,"ping":{}}"#.into(), Want::Result("ping")),
        ("an id over u32", r#"{"id":4294967296,"ping":{}}"#.into(), Want::Close(4500)),
        ("an id of 1000 digits", format!(r#"{{"id":{digits},"ping":{{}}}}"#), Want::Close(4500)),
        ("an id of 1e999", r#"{"id":1e999,"ping":{}}"#.into(), Want::Close(4500)),
        ("a negative id", r#"{"id":-1,"ping":{}}"#.into(), Want::Close(4500)),
        ("a fractional id", r#"{"id":1.5,"ping":{}}"#.into(), Want::Close(4500)),
        ("id 0", r#"{"id":0,"ping":{}}"#.into(), Want::Close(4500)),
        (
            "1e999 as publish data",
            r#"{"id":10,"publish":{"channel":"num:a","data":1e999}}"#.into(),
            Want::Result("publish"),
        ),
        (
            "a 1000-digit number as publish data",
            format!(r#"{{"id":11,"publish":{{"channel":"num:a","data":{digits}}}}}"#),
            Want::Result("publish"),
        ),
        ("a number as a channel", r#"{"id":12,"subscribe":{"channel":1e999}}"#.into(), Want::Error(102)),
        // Duplicate keys.
        ("a repeated id", r#"{"id":1,"id":2,"ping":{}}"#.into(), Want::Close(4500)),
        ("a repeated command member", r#"{"id":13,"ping":{},"ping":{}}"#.into(), Want::Error(102)),
        ("two commands in one object", r#"{"id":14,"ping":{},"subscribe":{"channel":"a"}}"#.into(), Want::Error(102)),
        (
            "a repeated channel member",
            r#"{"id":15,"subscribe":{"channel":"a","channel":"b"}}"#.into(),
            Want::Error(102),
        ),
        // Wrong types.
        ("an id that is a string", r#"{"id":"1","ping":{}}"#.into(), Want::Close(4500)),
        ("an id that is true", r#"{"id":true,"ping":{}}"#.into(), Want::Close(4500)),
        ("an id that is null", r#"{"id":null,"ping":{}}"#.into(), Want::Close(4500)),
        ("a channel that is an object", r#"{"id":16,"subscribe":{"channel":{}}}"#.into(), Want::Error(102)),
        ("a token that is a number", r#"{"id":17,"refresh":{"token":1}}"#.into(), Want::Error(102)),
        ("an rpc method that is a number", r#"{"id":18,"rpc":{"method":7,"data":1}}"#.into(), Want::Error(102)),
        ("a publish without data", r#"{"id":19,"publish":{"channel":"a"}}"#.into(), Want::Error(102)),
        (
            "a lone surrogate escape in a channel",
            r#"{"id":20,"subscribe":{"channel":"\ud800"}}"#.into(),
            Want::Error(102),
        ),
        // Not one JSON object.
        ("a byte-order mark before the object", "\u{feff}{\"id\":21,\"ping\":{}}".into(), Want::Close(4500)),
        ("trailing garbage", r#"{"id":22,"ping":{}} x"#.into(), Want::Close(4500)),
        ("two objects in one frame", r#"{"id":23,"ping":{}}{"id":24,"ping":{}}"#.into(), Want::Close(4500)),
        ("an unterminated string", r#"{"id":25,"ping":{},"x":"#.into(), Want::Close(4500)),
        ("an empty frame", String::new(), Want::Close(4500)),
    ];
    let mut subscriber = RawWs::connected(node.http).await;
    subscriber.text(r#"{"id":2,"subscribe":{"channel":"deep:a"}}"#).await;
    assert!(subscriber.json().await["subscribe"].is_object());
    for (what, frame, want) in &cases {
        let mut ws = RawWs::connected(node.http).await;
        expect(&mut ws, what, frame, *want).await;
    }
    // The deep publication reached its subscriber as it was sent.
    match subscriber.recv().await {
        Received::Text(t) => assert!(t.contains(&nested(10_000, "1")), "{} bytes", t.len()),
        other => panic!("expected the deep publication, got {other:?}"),
    }
    neighbour.ping().await.expect("the neighbour is unaffected");
}

#[tokio::test]
async fn invalid_channels_get_104_and_forbidden_ones_103() {
    let ns = |subscribe, publish| NamespaceRules { subscribe, publish, ..Default::default() };
    let channels = ChannelRules {
        default: ns(Access::Anyone, Access::Nobody),
        namespaces: HashMap::from([
            ("locked".into(), ns(Access::Nobody, Access::Nobody)),
            ("members".into(), ns(Access::Authenticated, Access::Authenticated)),
            ("vip".into(), ns(Access::Granted, Access::Granted)),
            ("notes".into(), ns(Access::Anyone, Access::Anyone)),
        ]),
        unknown_namespaces: UnknownNamespaces::Refuse,
    };
    let node = start_dev(GatewayConfig { channels, ..gateway_config() }).await;
    let sub = |c: &str| serde_json::json!({"id": 5, "subscribe": {"channel": c}}).to_string();
    let publish = |c: &str| serde_json::json!({"id": 6, "publish": {"channel": c, "data": 1}}).to_string();
    let cases: Vec<(&str, String, Want)> = vec![
        ("an empty channel", sub(""), Want::Error(102)),
        ("256 bytes", sub(&"a".repeat(256)), Want::Error(104)),
        ("60 KiB", sub(&"a".repeat(60 * 1024)), Want::Error(104)),
        ("an empty namespace", sub(":name"), Want::Error(104)),
        ("a namespace of 65 characters", sub(&format!("{}:x", "n".repeat(65))), Want::Error(104)),
        ("an empty name", sub("ns:"), Want::Error(104)),
        ("whitespace", sub("a b"), Want::Error(104)),
        ("a * wildcard", sub("news.*"), Want::Error(104)),
        ("a > wildcard", sub("news.>"), Want::Error(104)),
        ("a second :", sub("ns:a:b"), Want::Error(104)),
        ("a . in the namespace", sub("n.s:a"), Want::Error(104)),
        ("not ASCII", sub("ns:café"), Want::Error(104)),
        ("the escape character", sub("ns:a%2E"), Want::Error(104)),
        ("a NUL byte", sub("ns:a\u{0}b"), Want::Error(104)),
        ("a publish on an invalid channel", publish("news.>"), Want::Error(104)),
        ("invalid is checked before forbidden", sub("locked:a b"), Want::Error(104)),
        ("a namespace nobody may subscribe to", sub("locked:x"), Want::Error(103)),
        ("a namespace for users, anonymously", sub("members:x"), Want::Error(103)),
        ("a namespace for grants, without a token", sub("vip:x"), Want::Error(103)),
        ("a namespace that is not configured", sub("nowhere:x"), Want::Error(103)),
        ("another user's personal channel", sub("notes:#alice"), Want::Error(103)),
        ("a publish the default rules refuse", publish("lobby"), Want::Error(103)),
        ("a publish on a namespace that is not configured", publish("nowhere:x"), Want::Error(103)),
        ("a channel anyone may subscribe to", sub("lobby"), Want::Result("subscribe")),
    ];
    let mut ws = RawWs::connected(node.http).await;
    for (what, frame, want) in &cases {
        expect(&mut ws, what, frame, *want).await;
    }
    expect(&mut ws, "the session goes on", r#"{"id":7,"ping":{}}"#, Want::Result("ping")).await;
}

#[tokio::test]
async fn commands_before_connect_get_105() {
    let node = start_dev(gateway_config()).await;
    let mut ws = RawWs::connect(node.http, None).await;
    let cases = [
        ("refresh before connect", r#"{"id":2,"refresh":{"token":"x.y.z"}}"#),
        ("subscribe before connect", r#"{"id":3,"subscribe":{"channel":"a"}}"#),
        ("publish before connect", r#"{"id":4,"publish":{"channel":"a","data":1}}"#),
        ("rpc before connect", r#"{"id":5,"rpc":{"method":"m","data":1}}"#),
    ];
    for (what, frame) in cases {
        expect(&mut ws, what, frame, Want::Error(105)).await;
    }
    expect(&mut ws, "connect", r#"{"id":6,"connect":{}}"#, Want::Result("connect")).await;
    // A gateway that checks no tokens has nothing to refresh.
    expect(&mut ws, "refresh without keys", r#"{"id":7,"refresh":{"token":"x.y.z"}}"#, Want::Error(102)).await;
}

#[tokio::test]
async fn ten_thousand_subscribes_get_109_past_the_limit_and_the_session_goes_on() {
    let node = start_dev(gateway_config()).await;
    let limit = node.gateway.config().max_subscriptions;
    assert_eq!(limit, 512, "the default");
    let mut ws = RawWs::connected(node.http).await;
    let mut codes: HashMap<u64, usize> = HashMap::new();
    // In batches, reading between them: the replies alone would fill the outbound queue.
    for batch in 0..20 {
        for i in batch * 500..(batch + 1) * 500 {
            ws.text(&format!(r#"{{"id":{},"subscribe":{{"channel":"many:{i}"}}}}"#, i + 10)).await;
        }
        for i in batch * 500..(batch + 1) * 500 {
            let reply = ws.json().await;
            assert_eq!(reply["id"], i + 10, "replies in order");
            *codes.entry(reply["error"]["code"].as_u64().unwrap_or(0)).or_default() += 1;
        }
    }
    assert_eq!(codes, HashMap::from([(0, limit), (109, 10_000 - limit)]));
    expect(&mut ws, "the session goes on", r#"{"id":1,"ping":{}}"#, Want::Result("ping")).await;
    assert_eq!(node.gateway.hub().subscribers(&Channel::parse("many:0").unwrap()), 1);
    drop(ws);
    eventually("the subscriptions are released", async || node.gateway.hub().channels() == 0).await;
}

/// What became of a client that wrote a flood of commands before reading anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flooded {
    /// Every reply came, in order.
    KeptUp,
    /// The session was closed as a slow consumer.
    SlowConsumer,
    /// The connection was cut (the close frame did not fit the socket in time).
    Cut,
}

/// Connects on `ws`, writes `n` pipelined commands (ids 3 to n + 2, each built by
/// `command(id)`) without reading, then reads until every reply came or the session ended.
pub(super) async fn flood(ws: &mut RawTcp, n: u64, command: impl Fn(u64) -> String) -> Flooded {
    ws.send(&frame(FIN | TEXT, br#"{"id":1,"connect":{}}"#)).await.unwrap();
    let bytes: Vec<u8> = (3..n + 3).flat_map(|id| frame(FIN | TEXT, command(id).as_bytes())).collect();
    // The gateway reads on while it cannot write: the flood is taken, or the session is
    // closed, but the writer is never left hanging.
    let wrote =
        tokio::time::timeout(Duration::from_secs(20), ws.send(&bytes)).await.expect("the gateway reads or closes");
    let mut next = 3;
    loop {
        match ws.next().await {
            Server::Frame(TEXT, t) => {
                let v: serde_json::Value = serde_json::from_slice(&t).unwrap();
                match v["id"].as_u64() {
                    Some(id) if id >= 3 => {
                        assert_eq!(id, next, "replies in order");
                        next += 1;
                        if id == n + 2 {
                            assert!(wrote.is_ok());
                            return Flooded::KeptUp;
                        }
                    }
                    _ => {}
                }
            }
            Server::Frame(CLOSE, p) => {
                assert_eq!(p[..2], 4002u16.to_be_bytes(), "closed as a slow consumer");
                return Flooded::SlowConsumer;
            }
            Server::Frame(..) => {}
            Server::Eof => return Flooded::Cut,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_floods_without_reading_end_the_flooder_or_are_served_and_spare_its_neighbours() {
    // An outbound queue of 8 MiB (the default is 1 MiB): the subscribed neighbour reads as
    // fast as it can, but shares this process's two threads with the gateway and the
    // flooders, so on a busy machine it may lag; 8 MiB (4,000 publications) is its room.
    // The flooder that subscribes itself pushes back 32 MiB, far more than the queue and
    // the kernel's socket buffers hold together.
    let node = start_dev(GatewayConfig { max_queue_bytes: 8 << 20, ..gateway_config() }).await;
    // A bystander pings all along; its worst round trip is the measure of "unaffected".
    let bystander = client(node.http, Encoding::Json).await;
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                bystander.ping().await.unwrap();
                worst = worst.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            worst
        }
    });
    // Its connection keeps reading the socket while the checks below catch up (room for all
    // 21,000 publications of the floods), so on a busy machine it is the test's loop that
    // lags, not the socket: the gateway must keep up with a reader, not with the test.
    let mut config = ClientConfig::new(ws_url(node.http)).reconnect(false);
    config.event_buffer = 32_768;
    let mut neighbour = Client::connect(config).await.expect("the neighbour connects");
    neighbour.subscribe("chat:flood").await.unwrap();
    // It reads every publication the floods make, in order, without a gap, to the end.
    let reader = tokio::spawn(async move {
        let mut expected = 1;
        loop {
            let next = tokio::time::timeout(DEADLINE, neighbour.next_event()).await.expect("a publication in time");
            let p = match next {
                Some(Event::Publication(p)) => p,
                Some(Event::Disconnected { code, reason, .. }) => {
                    panic!("the neighbour was closed ({code:?} {reason}) after {} publications", expected - 1)
                }
                Some(_) => continue,
                None => panic!("the neighbour's connection ended after {} publications", expected - 1),
            };
            assert_eq!(p.offset, expected, "no gap");
            if p.data == "\"end\"" {
                return expected;
            }
            expected += 1;
        }
    });
    let data = format!("\"{}\"", "f".repeat(2048));
    let ping = |id: u64| format!(r#"{{"id":{id},"ping":{{}}}}"#);
    let publish = |id: u64| format!(r#"{{"id":{id},"publish":{{"channel":"chat:flood","data":{data}}}}}"#);
    let publish_from_subscriber = |id: u64| {
        if id == 3 { r#"{"id":3,"subscribe":{"channel":"chat:flood"}}"#.to_owned() } else { publish(id) }
    };
    // (what, how many commands, the command, the outcomes allowed): 2 MiB of replies may fit
    // the queue and the kernel's socket buffers, 32 MiB of publications pushed back do not.
    type Command<'a> = &'a dyn Fn(u64) -> String;
    let floods: Vec<(&str, u64, Command, &[Flooded])> = vec![
        ("100,000 pings", 100_000, &ping, &[Flooded::KeptUp, Flooded::SlowConsumer, Flooded::Cut]),
        ("5,000 publishes of 2 KiB", 5_000, &publish, &[Flooded::KeptUp, Flooded::SlowConsumer, Flooded::Cut]),
        (
            "16,000 publishes of 2 KiB to a channel the flooder is subscribed to",
            16_000,
            &publish_from_subscriber,
            &[Flooded::SlowConsumer, Flooded::Cut],
        ),
    ];
    for (what, n, command, allowed) in floods {
        let mut ws = RawTcp::upgrade(node.http, "").await;
        let started = Instant::now();
        let outcome = flood(&mut ws, n, command).await;
        println!("{what}: {outcome:?} in {:?}", started.elapsed());
        assert!(allowed.contains(&outcome), "{what}: {outcome:?}");
    }
    let mut api = switchboard_tests::grpc(node.grpc).await;
    api.publish(switchboard_wire::pb::PublishApiRequest {
        channel: "chat:flood".into(),
        data: bytes::Bytes::from_static(b"\"end\""),
        ..Default::default()
    })
    .await
    .unwrap();
    let received = reader.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let worst = pinger.await.unwrap();
    println!("the subscribed neighbour received all {received} publications; the bystander's worst ping {worst:?}");
    assert!(worst < Duration::from_secs(1), "the bystander waited {worst:?} for a ping");
    eventually("every session is gone", async || node.gateway.connections() == 0).await;
}
