//! The HTTP handshake: bounded request heads (`431`), requests that are not WebSocket
//! upgrades (`426`, `405`), keys, versions and heads that break RFC 6455 §4.2.1 (`400`), and
//! connections that never finish their request.

use std::time::{Duration, Instant};

use switchboard_gateway::GatewayConfig;
use switchboard_tests::{client, gateway_config, start_dev, start_dev_metered};
use switchboard_wire::Encoding;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{DevProcess, KEY, raw_http, upgrade_request};

#[tokio::test]
async fn request_heads_and_keys_get_the_documented_status() {
    let (node, metrics) = start_dev_metered(gateway_config()).await;
    let big = |n: usize| format!("X-Big: {}\r\n", "a".repeat(n));
    let many = (0..120).map(|i| format!("X-{i}: v\r\n")).collect::<String>();
    let kib_lines = (0..64).map(|i| format!("X-{i}: {}\r\n", "k".repeat(1020))).collect::<String>();
    let plain = upgrade_request(KEY, "");
    let no_host = plain.replace("Host: x\r\n", "");
    let long_line = plain.replace("GET /ws ", &format!("GET /ws?{} ", "q".repeat(20 * 1024)));
    // (what, request, the response's first bytes; "" = closed without a response)
    let cases: Vec<(&str, String, &str)> = vec![
        ("a plain upgrade", plain.clone(), "HTTP/1.1 101"),
        (
            "Firefox's Connection: keep-alive, Upgrade",
            plain.replace("Connection: Upgrade", "Connection: keep-alive, Upgrade"),
            "HTTP/1.1 101",
        ),
        ("header values in another case", plain.replace("Upgrade: websocket", "Upgrade: WebSocket"), "HTTP/1.1 101"),
        ("a head of 12 KiB", upgrade_request(KEY, &big(12 * 1024)), "HTTP/1.1 101"),
        ("a head of 20 KiB", upgrade_request(KEY, &big(20 * 1024)), "HTTP/1.1 431"),
        ("one 64 KiB header line", upgrade_request(KEY, &big(64 * 1024)), "HTTP/1.1 431"),
        ("64 KiB in 64 header lines", upgrade_request(KEY, &kib_lines), "HTTP/1.1 431"),
        ("120 header lines", upgrade_request(KEY, &many), "HTTP/1.1 431"),
        ("a request line of 20 KiB", long_line, "HTTP/1.1 431"),
        ("a key of 3 bytes", upgrade_request("YWJj", ""), "HTTP/1.1 400"),
        ("a key of 15 bytes", upgrade_request("MDEyMzQ1Njc4OWFiY2Rl", ""), "HTTP/1.1 400"),
        ("a key that is not base64", upgrade_request("not base64 at all!!!", ""), "HTTP/1.1 400"),
        ("no key", plain.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""), "HTTP/1.1 400"),
        ("version 12", plain.replace("Version: 13", "Version: 12"), "HTTP/1.1 400"),
        ("no version", plain.replace("Sec-WebSocket-Version: 13\r\n", ""), "HTTP/1.1 400"),
        ("HTTP/1.0", plain.replace("HTTP/1.1", "HTTP/1.0"), "HTTP/1.0 400"),
        ("no Host", no_host, "HTTP/1.1 400"),
        ("a POST", plain.replace("GET", "POST"), "HTTP/1.1 405"),
        ("a lowercase get (methods are case-sensitive)", plain.replace("GET", "get"), "HTTP/1.1 405"),
        ("Upgrade: h2c", plain.replace("Upgrade: websocket", "Upgrade: h2c"), "HTTP/1.1 426"),
        ("no Upgrade header", plain.replace("Upgrade: websocket\r\n", ""), "HTTP/1.1 426"),
        ("Connection: close", plain.replace("Connection: Upgrade", "Connection: close"), "HTTP/1.1 426"),
        ("garbage before the request", format!("\x00\x01garbage\r\n{plain}"), "HTTP/1.1 400"),
        ("a header line without a colon", upgrade_request(KEY, "no colon here\r\n"), "HTTP/1.1 400"),
        ("HTTP/2.0 in the request line", plain.replace("HTTP/1.1", "HTTP/2.0"), "HTTP/1.1 400"),
        ("the HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(), ""),
    ];
    let wants: Vec<&str> = cases.iter().map(|(_, _, want)| *want).collect();
    for (what, request, want) in cases {
        let got = raw_http(node.http, request.as_bytes()).await;
        if want.is_empty() {
            assert!(got.is_empty(), "{what}: want no response, got {:?}", got.lines().next());
        } else {
            assert!(got.starts_with(want), "{what}: want {want}, got {:?}", got.lines().next());
        }
    }
    // Each 431 is counted under `header_bytes`.
    let heads_too_large = wants.iter().filter(|want| want.starts_with("HTTP/1.1 431")).count() as u64;
    metrics.expect_limit_hits("header_bytes", heads_too_large).await;
    // Each 400 and 426 the `/ws` route answers under `handshake`: all of them but the three
    // requests hyper cannot parse, which never reach a route (the garbage, the header line
    // without a colon, HTTP/2.0 in the request line).
    let refused = wants.iter().filter(|want| want.ends_with(" 400") || want.ends_with(" 426")).count() as u64 - 3;
    metrics.expect_limit_hits("handshake", refused).await;
    // Nobody else noticed.
    let c = client(node.http, Encoding::Json).await;
    c.ping().await.unwrap();
}

#[tokio::test]
async fn a_head_that_trickles_in_is_cut_at_the_handshake_timeout() {
    let timeout = Duration::from_secs(2);
    let node = start_dev(GatewayConfig { handshake_timeout: timeout, ..gateway_config() }).await;
    // Slowloris: one byte of a valid upgrade every 500 ms, never reaching its end in time.
    let started = Instant::now();
    let s = TcpStream::connect(node.http).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for b in upgrade_request(KEY, "").bytes() {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut out = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut out)).await.expect("cut in time");
    let took = started.elapsed();
    trickle.abort();
    println!("a trickling head was cut after {took:?}");
    assert_eq!(n.unwrap_or(0), 0, "closed without a response: {:?}", String::from_utf8_lossy(&out));
    assert!(took >= timeout - Duration::from_millis(100), "not before the timeout: {took:?}");
    assert!(took < timeout + Duration::from_millis(750), "within the timeout: {took:?}");
    let c = client(node.http, Encoding::Json).await;
    c.ping().await.unwrap();
}

#[tokio::test]
async fn connections_still_in_http_count_against_the_node_limit() {
    let node = start_dev(GatewayConfig { max_connections: 2, ..gateway_config() }).await;
    // Connections that send part of a head and wait: each may hold up to the head bound.
    let mut held = Vec::new();
    for _ in 0..2 + 64 {
        let mut s = TcpStream::connect(node.http).await.unwrap();
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        held.push(s);
    }
    switchboard_tests::eventually("the gateway counted them all", async || node.gateway.http_connections() == 66).await;
    // Past the limit and its slack, a new connection is closed at once, without a response.
    let started = Instant::now();
    let mut s = TcpStream::connect(node.http).await.unwrap();
    let _ = s.write_all(upgrade_request(KEY, "").as_bytes()).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("closed at once").unwrap_or(0);
    assert_eq!(n, 0, "no response: {:?}", String::from_utf8_lossy(&buf[..n]));
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(held);
    // Once they are gone the node takes connections again.
    switchboard_tests::eventually("a client connects again", || async {
        switchboard_client::Client::connect(
            switchboard_client::ClientConfig::new(switchboard_tests::ws_url(node.http)).reconnect(false),
        )
        .await
        .is_ok()
    })
    .await;
}

#[tokio::test]
async fn hoarded_request_heads_are_cut_and_the_memory_comes_back() {
    let dev = DevProcess::spawn(&[]).await;
    let addr = dev.addr;
    let before = dev.rss_kib();
    let mut after_rounds = Vec::new();
    for _round in 0..3 {
        // 500 connections each sending 128 KiB of headers that never end (the issue's
        // attack sent 382 KiB from 1,000): each is cut at 16 KiB with a 431.
        let mut tasks = Vec::new();
        for _ in 0..500 {
            tasks.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let _ = s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await;
                let line = format!("X-Hoard: {}\r\n", "h".repeat(1000));
                for _ in 0..128 {
                    if s.write_all(line.as_bytes()).await.is_err() {
                        break;
                    }
                }
                let mut out = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
                String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431")
            }));
        }
        let mut refused = 0;
        for t in tasks {
            refused += t.await.unwrap() as usize;
        }
        // A connection reset before the 431 was read is cut all the same.
        assert!(refused > 0, "heads over the bound are answered 431");
        // The cut connections are freed as their tasks end: wait for it, within the deadline.
        switchboard_tests::eventually("the round's memory comes back", || async {
            dev.rss_kib().saturating_sub(before) < 48 * 1024
        })
        .await;
        after_rounds.push(dev.rss_kib());
    }
    println!("RSS before {before} KiB, after each round {after_rounds:?} KiB");
    let grown = after_rounds.iter().max().unwrap().saturating_sub(before);
    // Unbounded, one round held ~377 MiB; bounded, a round holds at most 500 x 16 KiB.
    assert!(grown < 48 * 1024, "RSS grew by {grown} KiB");
    let ratchet = after_rounds[2].saturating_sub(after_rounds[0]);
    assert!(ratchet < 16 * 1024, "RSS kept growing round after round: {after_rounds:?}");
}
