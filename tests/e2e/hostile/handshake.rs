//! The HTTP handshake: bounded request heads (`431`), keys that are not keys (`400`), and
//! connections that never finish their request.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_gateway::GatewayConfig;
use switchboard_tests::{client, free_port, gateway_config, start_dev};
use switchboard_wire::Encoding;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{raw_http, rss_kib, upgrade_request};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

#[tokio::test]
async fn request_heads_and_keys_get_the_documented_status() {
    let node = start_dev(gateway_config()).await;
    let big = |n: usize| format!("X-Big: {}\r\n", "a".repeat(n));
    let many = (0..120).map(|i| format!("X-{i}: v\r\n")).collect::<String>();
    let cases: Vec<(&str, String, &str)> = vec![
        ("a plain upgrade", upgrade_request(KEY, ""), "HTTP/1.1 101"),
        ("a head of 12 KiB", upgrade_request(KEY, &big(12 * 1024)), "HTTP/1.1 101"),
        ("a head of 20 KiB", upgrade_request(KEY, &big(20 * 1024)), "HTTP/1.1 431"),
        ("one 64 KiB header line", upgrade_request(KEY, &big(64 * 1024)), "HTTP/1.1 431"),
        ("120 header lines", upgrade_request(KEY, &many), "HTTP/1.1 431"),
        ("a key of 3 bytes", upgrade_request("YWJj", ""), "HTTP/1.1 400"),
        ("a key of 15 bytes", upgrade_request("MDEyMzQ1Njc4OWFiY2Rl", ""), "HTTP/1.1 400"),
        ("a key that is not base64", upgrade_request("not base64 at all!!!", ""), "HTTP/1.1 400"),
        ("no key", "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n".into(), "HTTP/1.1 400"),
        ("version 12", upgrade_request(KEY, "").replace("Version: 13", "Version: 12"), "HTTP/1.1 400"),
        ("a POST", upgrade_request(KEY, "").replace("GET", "POST"), "HTTP/1.1 405"),
        ("garbage before the request", format!("\x00\x01garbage\r\n{}", upgrade_request(KEY, "")), "HTTP/1.1 400"),
    ];
    for (what, request, want) in cases {
        let got = raw_http(node.http, request.as_bytes()).await;
        assert!(got.starts_with(want), "{what}: want {want}, got {:?}", got.lines().next());
    }
    // Nobody else noticed.
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

/// A real gateway process, so its RSS is its own.
struct DevProcess(std::process::Child, u16);

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn hoarded_request_heads_are_cut_and_the_memory_comes_back() {
    let (http, grpc) = (free_port(), free_port());
    let child = Command::new(switchboard_tests::binary())
        .args([
            "dev",
            "--no-page",
            "--listen",
            &format!("127.0.0.1:{http}"),
            "--grpc-listen",
            &format!("127.0.0.1:{grpc}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dev = DevProcess(child, http);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", dev.1).parse().unwrap();
    switchboard_tests::eventually("dev listens", || async { TcpStream::connect(addr).await.is_ok() }).await;
    let before = rss_kib(dev.0.id());
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
        tokio::time::sleep(Duration::from_millis(200)).await;
        after_rounds.push(rss_kib(dev.0.id()));
    }
    println!("RSS before {before} KiB, after each round {after_rounds:?} KiB");
    let grown = after_rounds.iter().max().unwrap().saturating_sub(before);
    // Unbounded, one round held ~377 MiB; bounded, a round holds at most 500 x 16 KiB.
    assert!(grown < 48 * 1024, "RSS grew by {grown} KiB");
    let ratchet = after_rounds[2].saturating_sub(after_rounds[0]);
    assert!(ratchet < 16 * 1024, "RSS kept growing round after round: {after_rounds:?}");
}
