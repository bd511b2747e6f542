//! The limits per client (item 6 of issue 10): connections per client IP and per user, the
//! upgrade rate per client IP, message and byte rates per session, channel name length, the
//! `Origin` allowlist, the client IP behind trusted proxies, and a handshake whose headers
//! trickle in. Each case names its expected outcome; counts held by a connection come back
//! when it ends; each refusal is counted under its `limit` label.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchboard_gateway::GatewayConfig;
use switchboard_gateway::auth::AuthConfig;
use switchboard_tests::procs::{SECRET, token};
use switchboard_tests::{DEADLINE, RawWs, Received, client, eventually, gateway_config, start_dev, start_dev_metered};
use switchboard_wire::Encoding;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An upgrade request for `/ws` with `extra` header lines (each ending in `\r\n`): the
/// response status, its head, and the connection, still open.
async fn upgrade(addr: SocketAddr, extra: &str) -> (u16, String, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(DEADLINE, s.read(&mut byte)).await.expect("a response") {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head, s)
}

fn xff(ip: &str) -> String {
    format!("X-Forwarded-For: {ip}\r\n")
}

#[tokio::test]
async fn connections_per_client_ip_are_limited_and_told_apart_behind_trusted_proxies() {
    struct Case {
        name: &'static str,
        trusted: &'static [&'static str],
        hold: String,
        probe: String,
        want: u16,
    }
    let loopback: &[&str] = &["127.0.0.1"];
    let cases = [
        Case {
            name: "a third connection from one address",
            trusted: &[],
            hold: "".into(),
            probe: "".into(),
            want: 429,
        },
        Case {
            name: "a header from an untrusted peer is ignored",
            trusted: &[],
            hold: xff("203.0.113.7"),
            probe: xff("198.51.100.2"),
            want: 429,
        },
        Case {
            name: "behind a trusted proxy, another client",
            trusted: loopback,
            hold: xff("203.0.113.7"),
            probe: xff("198.51.100.2"),
            want: 101,
        },
        Case {
            name: "behind a trusted proxy, the same client",
            trusted: loopback,
            hold: xff("203.0.113.7"),
            probe: xff("203.0.113.7"),
            want: 429,
        },
        Case {
            name: "Forwarded names the same client",
            trusted: loopback,
            hold: xff("203.0.113.7"),
            probe: "Forwarded: for=203.0.113.7;proto=https\r\n".into(),
            want: 429,
        },
        Case {
            name: "the rightmost hop that is not trusted is the client",
            trusted: loopback,
            hold: xff("203.0.113.7"),
            probe: xff("203.0.113.7, 10.0.0.9"),
            want: 101,
        },
        Case {
            name: "trusted inner proxies are skipped",
            trusted: &["127.0.0.1", "10.0.0.0/8"],
            hold: xff("203.0.113.7"),
            probe: xff("203.0.113.7, 10.0.0.9"),
            want: 429,
        },
        Case {
            name: "IPv6 clients count by their /64",
            trusted: loopback,
            hold: xff("2001:db8::1"),
            probe: xff("2001:db8::ffff"),
            want: 429,
        },
        Case {
            name: "another IPv6 /64",
            trusted: loopback,
            hold: xff("2001:db8::1"),
            probe: xff("2001:db8:0:1::1"),
            want: 101,
        },
    ];
    for case in cases {
        let (node, metrics) = start_dev_metered(GatewayConfig {
            max_connections_per_ip: 2,
            trusted_proxies: case.trusted.iter().map(|s| s.to_string()).collect(),
            ..gateway_config()
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let (status, head, s) = upgrade(node.http, &case.hold).await;
            assert_eq!(status, 101, "{}: the first two: {head}", case.name);
            held.push(s);
        }
        let (status, head, _probe) = upgrade(node.http, &case.probe).await;
        assert_eq!(status, case.want, "{}: {head}", case.name);
        metrics.expect_limit_hits("connections_per_ip", u64::from(case.want == 429)).await;
    }
}

#[tokio::test]
async fn a_connection_that_ends_gives_its_address_count_back() {
    let (node, metrics) = start_dev_metered(GatewayConfig { max_connections_per_ip: 2, ..gateway_config() }).await;
    let a = RawWs::connected(node.http).await;
    let _b = RawWs::connected(node.http).await;
    let (status, head, _) = upgrade(node.http, "").await;
    assert_eq!(status, 429, "{head}");
    metrics.expect_limit_hits("connections_per_ip", 1).await;
    drop(a);
    eventually("a new connection from the address is taken", || async { upgrade(node.http, "").await.0 == 101 }).await;
}

async fn connect_as(addr: SocketAddr, user: &str) -> (RawWs, serde_json::Value) {
    let mut ws = RawWs::connect(addr, None).await;
    ws.text(&format!(r#"{{"id":1,"connect":{{"token":"{}"}}}}"#, token(user))).await;
    let reply = match ws.recv().await {
        Received::Text(t) => serde_json::from_str(&t).unwrap(),
        Received::Close(code, reason) => serde_json::json!({"close": code, "reason": reason}),
        other => panic!("{other:?}"),
    };
    (ws, reply)
}

#[tokio::test]
async fn a_user_over_its_session_limit_is_closed_with_4007_until_one_ends() {
    let config = GatewayConfig { auth: AuthConfig::hmac(SECRET), max_connections_per_user: 2, ..gateway_config() };
    let (node, metrics) = start_dev_metered(config).await;
    let (first, reply) = connect_as(node.http, "alice").await;
    assert!(reply["connect"]["session"].is_string(), "{reply}");
    let (_second, reply) = connect_as(node.http, "alice").await;
    assert!(reply["connect"]["session"].is_string(), "{reply}");
    let (_, reply) = connect_as(node.http, "alice").await;
    assert_eq!(reply, serde_json::json!({"close": 4007, "reason": "too many connections"}));
    let (_bob, reply) = connect_as(node.http, "bob").await;
    assert!(reply["connect"]["session"].is_string(), "another user is not affected: {reply}");
    metrics.expect_limit_hits("connections_per_user", 1).await;
    drop(first);
    eventually("alice may connect again", || async {
        connect_as(node.http, "alice").await.1["connect"]["session"].is_string()
    })
    .await;
}

#[tokio::test]
async fn upgrades_faster_than_the_rate_per_ip_get_429_with_retry_after() {
    let (node, metrics) = start_dev_metered(GatewayConfig {
        connect_rate_per_ip: 2,
        connect_burst_per_ip: 3,
        trusted_proxies: vec!["127.0.0.1".into()],
        ..gateway_config()
    })
    .await;
    let client = xff("203.0.113.7");
    for i in 0..3 {
        assert_eq!(upgrade(node.http, &client).await.0, 101, "burst upgrade {i}");
    }
    let started = Instant::now();
    let (status, head, _) = upgrade(node.http, &client).await;
    assert_eq!(status, 429, "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after: 1\r\n"), "{head}");
    assert_eq!(upgrade(node.http, &xff("198.51.100.2")).await.0, 101, "another client has its own bucket");
    // One upgrade's worth of time (500 ms) later, the client may upgrade once more.
    tokio::time::sleep(Duration::from_millis(550).saturating_sub(started.elapsed())).await;
    assert_eq!(upgrade(node.http, &client).await.0, 101);
    assert_eq!(upgrade(node.http, &client).await.0, 429);
    metrics.expect_limit_hits("connect_rate", 2).await;
}

#[tokio::test]
async fn messages_over_the_session_rates_get_109_and_a_flood_is_closed_with_4008() {
    struct Case {
        name: &'static str,
        config: GatewayConfig,
        /// One command; `{id}` is replaced by its id.
        command: String,
        /// Replies before the first refusal (the connect included), then refusals.
        ok: usize,
        refused: usize,
        /// The `limit` label its refusals are counted under.
        limit: &'static str,
    }
    let publish = |n: usize| format!(r#"{{"id":{{id}},"publish":{{"channel":"n:c","data":"{}"}}}}"#, "x".repeat(n));
    let cases = [
        Case {
            name: "1 message per second, a burst of 5",
            config: GatewayConfig { max_messages_per_sec: 1, message_burst: 5, ..gateway_config() },
            command: r#"{"id":{id},"ping":{}}"#.into(),
            ok: 5,
            refused: 5,
            limit: "message_rate",
        },
        Case {
            name: "1 KiB per second, a burst of 2 KiB",
            config: GatewayConfig {
                max_message_size: 1024,
                max_bytes_per_sec: 1024,
                bytes_burst: 2048,
                ..gateway_config()
            },
            command: publish(900),
            // connect (22 bytes) and two publishes of ~950 bytes; then two refused.
            ok: 3,
            refused: 2,
            limit: "byte_rate",
        },
    ];
    for case in cases {
        let (node, metrics) = start_dev_metered(case.config).await;
        let neighbour = client(node.http, Encoding::Json).await;
        let mut ws = RawWs::connected(node.http).await;
        // Send everything without reading; the replies come back in order.
        for id in 2..40 {
            ws.text(&case.command.replace("{id}", &id.to_string())).await;
        }
        for id in 2..=case.ok {
            let reply = ws.json().await;
            assert_eq!(reply["id"], id, "{}: {reply}", case.name);
            assert!(reply.get("error").is_none(), "{}: message {id} passes: {reply}", case.name);
        }
        for id in case.ok + 1..=case.ok + case.refused {
            let reply = ws.json().await;
            assert_eq!(reply["id"], id, "{}: {reply}", case.name);
            assert_eq!(reply["error"]["code"], 109, "{}: message {id} is refused: {reply}", case.name);
        }
        match ws.recv().await {
            Received::Close(code, reason) => {
                assert_eq!((code, reason.as_str()), (4008, "rate limited"), "{}", case.name)
            }
            other => panic!("{}: expected close 4008, got {other:?}", case.name),
        }
        // Every refused message is counted, the one that closed the session too.
        metrics.expect_limit_hits(case.limit, case.refused as u64 + 1).await;
        neighbour.ping().await.expect("the neighbour is unaffected");
        drop(neighbour);
    }
}

#[tokio::test]
async fn a_session_that_slows_down_to_its_rate_is_served_again() {
    let node = start_dev(GatewayConfig { max_messages_per_sec: 20, message_burst: 2, ..gateway_config() }).await;
    let mut ws = RawWs::connected(node.http).await;
    ws.text(r#"{"id":2,"ping":{}}"#).await;
    assert_eq!(ws.json().await, serde_json::json!({"id":2,"ping":{}}));
    ws.text(r#"{"id":3,"ping":{}}"#).await;
    assert_eq!(ws.json().await["error"]["code"], 109);
    tokio::time::sleep(Duration::from_millis(120)).await;
    ws.text(r#"{"id":4,"ping":{}}"#).await;
    assert_eq!(ws.json().await, serde_json::json!({"id":4,"ping":{}}), "one message's worth of time later");
}

#[tokio::test]
async fn channel_names_longer_than_the_setting_get_104() {
    let (node, metrics) = start_dev_metered(GatewayConfig { max_channel_len: 10, ..gateway_config() }).await;
    let mut ws = RawWs::connected(node.http).await;
    let cases: &[(&str, &str)] = &[
        (r#"{"subscribe":{"channel":"n:1234567"}}"#, "subscribe"),
        (r#"{"subscribe":{"channel":"n:12345678"}}"#, "subscribe"),
        (r#"{"subscribe":{"channel":"n:123456789"}}"#, "104"),
        (r#"{"publish":{"channel":"n:12345678","data":1}}"#, "publish"),
        (r#"{"publish":{"channel":"n:123456789","data":1}}"#, "104"),
        (r#"{"unsubscribe":{"channel":"n:123456789"}}"#, "108"),
    ];
    for (i, (command, want)) in cases.iter().enumerate() {
        let id = i + 2;
        ws.text(&command.replacen('{', &format!(r#"{{"id":{id},"#), 1)).await;
        let mut reply = ws.json().await;
        while reply.get("pub").is_some() {
            reply = ws.json().await;
        }
        assert_eq!(reply["id"], id, "{command}: {reply}");
        let got = match reply.get("error") {
            Some(e) => e["code"].to_string(),
            None => reply.as_object().unwrap().keys().find(|k| *k != "id").unwrap().clone(),
        };
        assert_eq!(got, *want, "{command}: {reply}");
    }
    // The subscribe and the publish; an unsubscribe of a channel not held is 108, not a limit.
    metrics.expect_limit_hits("channel_len", 2).await;
}

#[tokio::test]
async fn upgrades_from_origins_not_allowed_get_403() {
    let (node, metrics) = start_dev_metered(GatewayConfig {
        allowed_origins: vec!["https://app.example.com".into(), "https://*.example.org".into()],
        ..gateway_config()
    })
    .await;
    let cases: &[(Option<&str>, u16)] = &[
        (None, 101),
        (Some("https://app.example.com"), 101),
        (Some("https://APP.example.com:443"), 101),
        (Some("https://a.b.example.org"), 101),
        (Some("https://evil.example.net"), 403),
        (Some("http://app.example.com"), 403),
        (Some("https://app.example.com:8443"), 403),
        (Some("https://example.org"), 403),
        (Some("null"), 403),
    ];
    for (origin, want) in cases {
        let extra = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
        let (status, head, _) = upgrade(node.http, &extra).await;
        assert_eq!(status, *want, "{origin:?}: {head}");
    }
    let refused = cases.iter().filter(|(_, want)| *want == 403).count() as u64;
    metrics.expect_limit_hits("origin", refused).await;
}

#[tokio::test]
async fn a_handshake_whose_headers_trickle_in_is_cut_within_the_handshake_timeout() {
    let timeout = Duration::from_secs(2);
    let (node, metrics) = start_dev_metered(GatewayConfig { handshake_timeout: timeout, ..gateway_config() }).await;
    let request = format!("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\n");
    let started = Instant::now();
    let stream = TcpStream::connect(node.http).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // One byte every 500 ms, while watching for the server to close.
    let trickle = tokio::spawn(async move {
        let mut sent = 0;
        for b in request.bytes() {
            if write.write_all(&[b]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        sent
    });
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(timeout + Duration::from_secs(3), read.read(&mut buf))
        .await
        .expect("the server cut the connection")
        .unwrap_or(0);
    let cut = started.elapsed();
    trickle.abort();
    println!("a trickling handshake was cut after {cut:?} (handshake timeout {timeout:?})");
    assert_eq!(n, 0, "closed without a response: {:?}", String::from_utf8_lossy(&buf[..n]));
    assert!(cut >= timeout - Duration::from_millis(100), "cut after {cut:?}, before the timeout");
    assert!(cut < timeout + Duration::from_secs(1), "cut after {cut:?}");
    metrics.expect_limit_hits("header_timeout", 1).await;
    // Nobody else noticed.
    client(node.http, Encoding::Json).await.ping().await.unwrap();
}

#[test]
fn the_flags_default_to_the_config_defaults() {
    use clap::{CommandFactory, FromArgMatches};
    use switchboard::cli::{Cli, Command};
    use switchboard::config::Explicit;
    let settings = |argv: &[&str]| {
        let matches = Cli::command().get_matches_from(argv);
        let Command::Dev(args) = Cli::from_arg_matches(&matches).unwrap().command else { unreachable!() };
        switchboard::config::dev(&args, &Explicit::from_matches(&matches)).unwrap().gateway
    };
    let flags = settings(&["switchboard", "dev"]);
    let d = GatewayConfig::default();
    assert_eq!(flags.max_connections_per_ip, d.max_connections_per_ip);
    assert_eq!(flags.max_connections_per_user, d.max_connections_per_user);
    assert_eq!(
        (flags.connect_rate_per_ip, flags.connect_burst_per_ip),
        (d.connect_rate_per_ip, d.connect_burst_per_ip)
    );
    assert_eq!((flags.max_messages_per_sec, flags.message_burst), (d.max_messages_per_sec, d.message_burst));
    assert_eq!((flags.max_bytes_per_sec, flags.bytes_burst), (d.max_bytes_per_sec, d.bytes_burst));
    assert_eq!(flags.max_channel_len, d.max_channel_len);
    assert_eq!(flags.max_pending_commands, d.max_pending_commands);
    assert_eq!(flags.allowed_origins, d.allowed_origins);
    assert_eq!(flags.trusted_proxies, d.trusted_proxies);
    let flags = settings(&["switchboard", "dev", "--trusted-proxies=", "--allowed-origins", "https://a.example,*"]);
    assert!(flags.trusted_proxies.is_empty(), "an empty list trusts nobody");
    assert_eq!(flags.allowed_origins, ["https://a.example", "*"]);
}

#[test]
fn protocol_md_lists_exactly_the_limit_labels_the_gateway_counts() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let line =
        doc.lines().find_map(|l| l.strip_prefix("The label values are exactly: ")).expect("the list is in protocol.md");
    let mut documented: Vec<&str> = line.trim_end_matches('.').split(", ").map(|l| l.trim_matches('`')).collect();
    let mut counted = switchboard_gateway::metrics::LIMITS.to_vec();
    documented.sort();
    counted.sort();
    assert_eq!(documented, counted, "docs/protocol.md's limit labels against switchboard_gateway::metrics::LIMITS");
}
