//! Bad input on the client protocol gets a documented error reply or close code, and harms
//! no one else: the neighbour keeps receiving and the server keeps serving.

use std::time::Duration;

use bytes::Bytes;
use switchboard_gateway::GatewayConfig;
use switchboard_tests::{RawWs, Received, client, eventually, gateway_config, grpc, start_dev};
use switchboard_wire::Encoding;
use switchboard_wire::pb;

/// Error replies: the session stays open.
#[tokio::test]
async fn malformed_commands_get_error_replies_and_the_session_goes_on() {
    let node = start_dev(GatewayConfig { max_subscriptions: 3, ..gateway_config() }).await;
    let mut neighbour = client(node.http, Encoding::Json).await;
    neighbour.subscribe("n:c").await.unwrap();

    let mut ws = RawWs::connect(node.http, Some("switchboard.v1.json")).await;
    ws.text(r#"{"id":1,"subscribe":{"channel":"n:c"}}"#).await;
    assert_eq!(ws.json().await["error"]["code"], 105, "commands before connect are refused");
    ws.text(r#"{"id":2,"connect":{}}"#).await;
    assert!(ws.json().await["connect"]["session"].is_string());
    let cases: &[(&str, u32)] = &[
        (r#"{"id":3,"frobnicate":{}}"#, 101),
        (r#"{"id":4}"#, 101),
        (r#"{"id":5,"subscribe":{}}"#, 102),
        (r#"{"id":6,"subscribe":{"channel":7}}"#, 102),
        (r#"{"id":7,"publish":{"channel":"n:c"}}"#, 102),
        (r#"{"id":8,"subscribe":{"channel":"bad channel"}}"#, 104),
        (r#"{"id":9,"subscribe":{"channel":"n:*"}}"#, 104),
        (r#"{"id":10,"publish":{"channel":"n:>","data":1}}"#, 104),
        (r#"{"id":11,"connect":{}}"#, 106),
        (r#"{"id":12,"unsubscribe":{"channel":"n:c"}}"#, 108),
    ];
    for (cmd, code) in cases {
        ws.text(cmd).await;
        let reply = ws.json().await;
        let id: u64 = serde_json::from_str::<serde_json::Value>(cmd).unwrap()["id"].as_u64().unwrap();
        assert_eq!(reply["id"], id, "{cmd}: {reply}");
        assert_eq!(reply["error"]["code"], *code, "{cmd}: {reply}");
        assert!(reply["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    for (id, ch) in [(20, "n:a"), (21, "n:b"), (22, "n:c")] {
        ws.text(&format!(r#"{{"id":{id},"subscribe":{{"channel":"{ch}"}}}}"#)).await;
        assert!(ws.json().await["subscribe"].is_object());
    }
    ws.text(r#"{"id":23,"subscribe":{"channel":"n:c"}}"#).await;
    assert_eq!(ws.json().await["error"]["code"], 107, "already subscribed");
    ws.text(r#"{"id":24,"subscribe":{"channel":"n:d"}}"#).await;
    assert_eq!(ws.json().await["error"]["code"], 109, "over the subscription limit");
    ws.text(r#"{"id":25,"ping":{}}"#).await;
    assert_eq!(ws.json().await, serde_json::json!({"id":25,"ping":{}}), "the session still works");

    let mut api = grpc(node.grpc).await;
    api.publish(pb::PublishApiRequest {
        channel: "n:c".into(),
        data: Bytes::from_static(b"\"ok\""),
        ..Default::default()
    })
    .await
    .unwrap();
    let p = tokio::time::timeout(switchboard_tests::DEADLINE, neighbour.next_publication()).await.unwrap().unwrap();
    assert_eq!(p.data, "\"ok\"");
    assert_eq!(ws.json().await["pub"]["data"], "ok");
}

/// Frames that are not commands, or break the protocol: the session is closed with the
/// documented code; neighbours are untouched.
#[tokio::test]
async fn frames_that_are_not_commands_close_with_the_documented_code() {
    let node = start_dev(GatewayConfig { max_message_size: 1024, ..gateway_config() }).await;
    let mut neighbour = client(node.http, Encoding::Json).await;
    neighbour.subscribe("n:c").await.unwrap();
    let big = format!(r#"{{"id":2,"publish":{{"channel":"n:c","data":"{}"}}}}"#, "x".repeat(2000));

    struct Case {
        name: &'static str,
        protocol: Option<&'static str>,
        text: Option<String>,
        binary: Option<Vec<u8>>,
        close: u16,
    }
    let cases = [
        Case { name: "malformed json", protocol: None, text: Some("{not json".into()), binary: None, close: 4500 },
        Case {
            name: "json without an id",
            protocol: None,
            text: Some(r#"{"ping":{}}"#.into()),
            binary: None,
            close: 4500,
        },
        Case { name: "json array", protocol: None, text: Some("[1,2]".into()), binary: None, close: 4500 },
        Case { name: "oversized message", protocol: None, text: Some(big), binary: None, close: 1009 },
        Case { name: "binary frame on json", protocol: None, text: None, binary: Some(vec![1, 2, 3]), close: 1003 },
        Case {
            name: "text frame on protobuf",
            protocol: Some("switchboard.v1.proto"),
            text: Some("{}".into()),
            binary: None,
            close: 1003,
        },
        Case {
            name: "protobuf garbage",
            protocol: Some("switchboard.v1.proto"),
            text: None,
            binary: Some(vec![0xff, 0xff, 0xff]),
            close: 4500,
        },
    ];
    for case in cases {
        let mut ws = RawWs::connect(node.http, case.protocol).await;
        if let Some(t) = &case.text {
            ws.text(t).await;
        }
        if let Some(b) = &case.binary {
            ws.binary(b).await;
        }
        match ws.recv().await {
            Received::Close(code, _) => assert_eq!(code, case.close, "{}", case.name),
            other => panic!("{}: expected close {}, got {other:?}", case.name, case.close),
        }
    }
    let mut api = grpc(node.grpc).await;
    api.publish(pb::PublishApiRequest { channel: "n:c".into(), data: Bytes::from_static(b"1"), ..Default::default() })
        .await
        .unwrap();
    let p = tokio::time::timeout(switchboard_tests::DEADLINE, neighbour.next_publication()).await.unwrap().unwrap();
    assert_eq!(p.data, "1", "the neighbour still receives");
    RawWs::connected(node.http).await;
    eventually("the bad sessions are gone", async || node.gateway.connections() == 1).await;
}

#[tokio::test]
async fn a_session_that_never_connects_is_closed_after_the_handshake_timeout() {
    let node = start_dev(GatewayConfig { handshake_timeout: Duration::from_millis(300), ..gateway_config() }).await;
    let mut ws = RawWs::connect(node.http, None).await;
    ws.expect_close(4003).await;
}

#[tokio::test]
async fn a_client_that_answers_no_ping_is_closed_after_the_pong_timeout() {
    let config = GatewayConfig {
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_millis(200),
        ..gateway_config()
    };
    let node = start_dev(config).await;
    let mut deaf = RawWs::connect(node.http, None).await;
    deaf.ws.set_auto_pong(false);
    let mut deaf = RawWs::connected_with(deaf).await;
    // A client that answers pings (the client library does) outlives many intervals.
    let alive = client(node.http, Encoding::Json).await;
    let started = std::time::Instant::now();
    deaf.expect_close(4004).await;
    assert!(started.elapsed() < Duration::from_secs(3), "closed {:?} after going silent", started.elapsed());
    // By now the responsive client has lived through the same ping and pong timeout.
    alive.ping().await.expect("the responsive client is still connected");
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_closed_as_a_slow_consumer() {
    let node = start_dev(GatewayConfig { max_queue_bytes: 64 * 1024, ..gateway_config() }).await;
    let mut fast = client(node.http, Encoding::Json).await;
    fast.subscribe("chat:s").await.unwrap();
    // The slow session subscribes, then never reads again.
    let mut slow = RawWs::connected(node.http).await;
    slow.text(r#"{"id":2,"subscribe":{"channel":"chat:s"}}"#).await;
    assert!(slow.json().await["subscribe"].is_object());
    let mut api = grpc(node.grpc).await;
    let payload = Bytes::from(format!("\"{}\"", "x".repeat(16 * 1024)));
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < 400 {
            let p = tokio::time::timeout(switchboard_tests::DEADLINE, fast.next_publication()).await.unwrap().unwrap();
            assert_eq!(p.offset, n + 1, "the fast reader misses nothing");
            n += 1;
        }
    });
    for _ in 0..400 {
        api.publish(pb::PublishApiRequest { channel: "chat:s".into(), data: payload.clone(), ..Default::default() })
            .await
            .unwrap();
    }
    reader.await.unwrap();
    // The kernel buffers some; past them and the 64 KiB queue the session is closed: with
    // 4002 when the close frame still fits the socket within the close grace, else the
    // connection is dropped.
    loop {
        match slow.recv().await {
            Received::Close(code, _) => {
                assert_eq!(code, 4002);
                break;
            }
            Received::Eof => break,
            _ => continue,
        }
    }
    let channel = switchboard_wire::Channel::parse("chat:s").unwrap();
    eventually("the slow session left the channel", async || node.gateway.hub().subscribers(&channel) == 0).await;
}

#[tokio::test]
async fn connections_over_the_node_limit_get_503() {
    let node = start_dev(GatewayConfig { max_connections: 2, ..gateway_config() }).await;
    let _a = client(node.http, Encoding::Json).await;
    let _b = client(node.http, Encoding::Json).await;
    let err = switchboard_client::Client::connect(switchboard_client::ClientConfig::new(switchboard_tests::ws_url(
        node.http,
    )))
    .await
    .err()
    .expect("the third connection is refused");
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn client_publish_can_be_turned_off() {
    let node = start_dev(GatewayConfig { client_publish: false, ..gateway_config() }).await;
    let c = client(node.http, Encoding::Json).await;
    let err = c.publish("a:b", Bytes::from_static(b"1")).await.unwrap_err();
    assert_eq!(err.code(), Some(103));
}
