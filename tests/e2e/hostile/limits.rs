//! The per-session and per-node limits at their bounds: one under is served, one over gets
//! the documented answer, and the session (or the node) goes on. The request-head bound is
//! in `handshake.rs`, the outbound queue in `slow_consumers.rs`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use switchboard_bus::Address;
use switchboard_gateway::GatewayConfig;
use switchboard_gateway::auth::AuthConfig;
use switchboard_tests::{RawWs, Received, eventually, gateway_config, start_dev_metered, ws_url};

use super::frames::{Case, Outcome, check};
use super::protocol::{Want, expect};
use super::{CONTINUATION, FIN, PING, RawTcp, Server, TEXT, frame};

const MAX_MESSAGE: usize = 1024;

/// A connect command of exactly `n` bytes.
fn connect_of(n: usize) -> Vec<u8> {
    let bare = r#"{"id":1,"connect":{"name":""}}"#;
    let c = bare.replace(r#""name":"""#, &format!(r#""name":"{}""#, "n".repeat(n - bare.len())));
    assert_eq!(c.len(), n);
    c.into_bytes()
}

fn token(user: &str) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    let claims = serde_json::json!({"sub": user, "exp": exp});
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"limits")).unwrap()
}

#[tokio::test]
async fn each_session_limit_answers_as_documented_at_its_bound() {
    let (node, metrics) = start_dev_metered(GatewayConfig {
        max_message_size: MAX_MESSAGE,
        max_subscriptions: 3,
        max_pending_rpcs: 4,
        rpc_timeout: Duration::from_secs(1),
        max_user_id_len: 8,
        auth: AuthConfig { allow_anonymous: true, ..AuthConfig::hmac("limits") },
        ..gateway_config()
    })
    .await;

    // Message size: the whole message counts, however it is fragmented.
    let exactly = connect_of(MAX_MESSAGE);
    let (head, tail) = exactly.split_at(MAX_MESSAGE / 2);
    let over = connect_of(MAX_MESSAGE + 1);
    let (over_head, over_tail) = over.split_at(MAX_MESSAGE / 2);
    let case = |name: &str, bytes: Vec<u8>, want| Case { name: name.into(), subprotocol: None, bytes, want };
    for c in [
        case("a message of exactly the maximum", frame(FIN | TEXT, &exactly), Outcome::Reply("\"connect\"")),
        case("one byte over", frame(FIN | TEXT, &over), Outcome::Close(1009)),
        case(
            "exactly the maximum in two fragments",
            [frame(TEXT, head), frame(FIN | CONTINUATION, tail)].concat(),
            Outcome::Reply("\"connect\""),
        ),
        case(
            "one byte over in two fragments",
            [frame(TEXT, over_head), frame(FIN | CONTINUATION, over_tail)].concat(),
            Outcome::Close(1009),
        ),
    ] {
        check(node.http, &c).await;
    }
    metrics.expect_limit_hits("message_size", 2).await;

    // Subscriptions: the bound is on what the session holds now.
    let mut ws = RawWs::connected(node.http).await;
    let sub = |id: u32, c: &str| format!(r#"{{"id":{id},"subscribe":{{"channel":"{c}"}}}}"#);
    let steps: Vec<(&str, String, Want)> = vec![
        ("the first subscription", sub(2, "l:a"), Want::Result("subscribe")),
        ("the second", sub(3, "l:b"), Want::Result("subscribe")),
        ("the third, the limit", sub(4, "l:c"), Want::Result("subscribe")),
        ("one over", sub(5, "l:d"), Want::Error(109)),
        ("an unsubscribe", r#"{"id":6,"unsubscribe":{"channel":"l:a"}}"#.into(), Want::Result("unsubscribe")),
        ("frees a place", sub(7, "l:d"), Want::Result("subscribe")),
        ("the session goes on", r#"{"id":8,"ping":{}}"#.into(), Want::Result("ping")),
    ];
    for (what, frame, want) in &steps {
        expect(&mut ws, what, frame, *want).await;
    }
    metrics.expect_limit_hits("subscriptions", 1).await;

    // Pending rpcs: a backend that listens and never answers.
    let _silent = node.gateway.bus().listen(&Address::UpstreamRpc("silent".into()), None).await.unwrap();
    let rpc = |id: u32, method: &str| format!(r#"{{"id":{id},"rpc":{{"method":"{method}","data":{id}}}}}"#);
    let started = Instant::now();
    expect(&mut ws, "an rpc no backend serves, at once", &rpc(9, "nobody"), Want::Error(110)).await;
    for id in 10..14 {
        ws.text(&rpc(id, "silent")).await;
    }
    expect(&mut ws, "a fifth rpc while four wait", &rpc(14, "silent"), Want::Error(109)).await;
    expect(&mut ws, "the bound comes before the backend is asked", &rpc(15, "nobody"), Want::Error(109)).await;
    assert!(started.elapsed() < Duration::from_millis(500), "answered at once");
    let mut timed_out = Vec::new();
    for _ in 10..14 {
        let reply = ws.json().await;
        assert_eq!(reply["error"]["code"], 112, "{reply}");
        timed_out.push(reply["id"].as_u64().unwrap());
    }
    timed_out.sort();
    assert_eq!(timed_out, [10, 11, 12, 13]);
    ws.text(&rpc(16, "silent")).await;
    assert_eq!(ws.json().await["error"]["code"], 112, "after the timeouts the places are free again");
    metrics.expect_limit_hits("pending_rpcs", 2).await;
    metrics.expect_limit_hits("rpc_timeout", 5).await;

    // User id length.
    for (what, user, want) in [("a user id at the bound", "u".repeat(8), true), ("one byte over", "u".repeat(9), false)]
    {
        let mut ws = RawWs::connect(node.http, None).await;
        ws.text(&serde_json::json!({"id": 1, "connect": {"token": token(&user)}}).to_string()).await;
        match ws.recv().await {
            Received::Text(t) if want => assert!(t.contains(&format!(r#""user":"{user}""#)), "{what}: {t}"),
            Received::Close(4501, _) if !want => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    metrics.expect_limit_hits("user_id", 1).await;
}

#[tokio::test]
async fn a_node_at_its_connection_limit_answers_503_until_a_slot_frees() {
    let (node, metrics) = start_dev_metered(GatewayConfig { max_connections: 3, ..gateway_config() }).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(RawWs::connected(node.http).await);
    }
    let cases = [("a fourth upgrade", "HTTP/1.1 503"), ("and a fifth", "HTTP/1.1 503")];
    for (what, want) in cases {
        let got = super::raw_http(node.http, super::upgrade_request(super::KEY, "").as_bytes()).await;
        assert!(got.starts_with(want), "{what}: {:?}", got.lines().next());
        assert!(got.contains("too many connections"), "{what}: {got}");
    }
    metrics.expect_limit_hits("connections", 2).await;
    drop(held.pop());
    eventually("a freed slot is taken again", || async {
        switchboard_client::Client::connect(switchboard_client::ClientConfig::new(ws_url(node.http)).reconnect(false))
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test]
async fn sessions_that_stay_silent_are_closed_by_their_timers() {
    let short = Duration::from_millis(300);
    // (what, config, whether the client connects first, close code, by when, limit label)
    let cases = [
        (
            "no connect within the handshake timeout",
            GatewayConfig { handshake_timeout: short, ..gateway_config() },
            false,
            4003,
            short,
            "connect_timeout",
        ),
        (
            "no answer to a server ping within the pong timeout",
            GatewayConfig { ping_interval: short, pong_timeout: short, ..gateway_config() },
            true,
            4004,
            short * 2,
            "pong_timeout",
        ),
    ];
    for (what, config, connects, code, by, limit) in cases {
        let (node, metrics) = start_dev_metered(config).await;
        let started = Instant::now();
        let mut ws = RawTcp::upgrade(node.http, "").await;
        if connects {
            ws.send(&frame(FIN | TEXT, br#"{"id":1,"connect":{}}"#)).await.unwrap();
        }
        let (before, got) = ws.until_close().await;
        let took = started.elapsed();
        assert_eq!(got, Some(code), "{what}: {before:?}");
        assert!(took >= by - Duration::from_millis(50) && took < by + Duration::from_millis(700), "{what}: {took:?}");
        if connects {
            assert!(before.iter().any(|f| matches!(f, Server::Frame(PING, _))), "{what}: pinged first: {before:?}");
        }
        metrics.expect_limit_hits(limit, 1).await;
    }
}
