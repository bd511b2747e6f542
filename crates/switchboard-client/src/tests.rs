//! The client against scripted servers on loopback: what it reports when something other
//! than a gateway answers, when a gateway closes during connect, and how it retries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

#[test]
fn backoff_grows_to_the_ceiling_with_jitter() {
    let config = ClientConfig::new("ws://x");
    for attempt in 0..30 {
        let d = backoff(&config, attempt);
        let ceiling = (config.min_backoff * 2u32.pow(attempt.min(20))).min(config.max_backoff);
        assert!(d >= config.min_backoff / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
    }
    let late: Vec<_> = (0..50).map(|_| backoff(&config, 10)).collect();
    assert!(late.iter().any(|d| *d > Duration::from_secs(2)), "the ceiling is reached");
    assert!(late.windows(2).any(|w| w[0] != w[1]), "delays are jittered");
}

#[tokio::test]
async fn what_answers_instead_of_an_upgrade_is_named() {
    // A gRPC server speaks first with a SETTINGS frame; NATS greets with INFO.
    let settings: &[u8] = &[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
    let cases: [(&[u8], NotWebSocket); 5] = [
        (
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            NotWebSocket::Status { code: 404, reason: "Not Found".into() },
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi", NotWebSocket::Status { code: 200, reason: "OK".into() }),
        (settings, NotWebSocket::Http2),
        (b"INFO {\"server_id\":\"x\"}\r\n", NotWebSocket::Nats),
        (b"SSH-2.0-OpenSSH_9.6\r\n", NotWebSocket::Other("\"SSH-2.0-OpenSSH_9.6\\r\\n\"".into())),
    ];
    for (answer, expected) in cases {
        let addr = answering(answer).await;
        let url = format!("ws://{addr}/ws");
        match Client::connect(config(addr)).await.err().expect("no session") {
            ClientError::Handshake { url: u, found } => assert_eq!((u, found), (url, expected)),
            other => panic!("{expected:?}: got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_refused_connection_says_so_once_with_the_url() {
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let err = Client::connect(config(addr)).await.err().expect("nothing listens");
    assert_eq!(err.to_string(), format!("cannot connect to ws://{addr}/ws: connection refused"));
}

#[tokio::test]
async fn a_silent_server_times_out_within_the_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut config = config(addr);
    config.connect_timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = Client::connect(config).await.err().expect("no answer");
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_close_during_connect_is_reported_with_its_code_and_reason() {
    let addr = gateway(|cmd, _| match cmd.get("connect") {
        Some(_) => Answer::Close(4501, "unauthorized"),
        None => Answer::Reply(json!({})),
    })
    .await;
    let err = Client::connect(config(addr)).await.err().expect("token rejected");
    match &err {
        ClientError::Closed { code, reason } => assert_eq!((*code, reason.as_str()), (4501, "unauthorized")),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.to_string(), "the server closed the session: 4501 unauthorized");
    assert!(!err.is_temporary(), "4501 says not to reconnect");
}

#[tokio::test]
async fn subscribe_retries_a_temporary_error_and_not_a_permanent_one() {
    let unavailable = json!({"code": 110, "message": "no responders", "temporary": true});
    let invalid = json!({"code": 104, "message": "invalid channel name", "temporary": false});
    // (errors before success, the error, whether subscribe succeeds, attempts seen)
    let cases = [(2, unavailable.clone(), true, 3), (1, invalid, false, 1), (usize::MAX, unavailable, false, 0)];
    for (failures, error, succeeds, attempts) in cases {
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let addr = gateway(move |cmd, id| {
            if cmd.get("connect").is_some() {
                return Answer::Reply(
                    json!({"id": id, "connect": {"session": "s1", "user": "", "version": "t", "ping_interval": 25}}),
                );
            }
            if counter.fetch_add(1, Ordering::SeqCst) < failures {
                return Answer::Reply(json!({"id": id, "error": error}));
            }
            Answer::Reply(json!({"id": id, "subscribe": {"offset": 0, "epoch": "e"}}))
        })
        .await;
        let mut config = config(addr);
        config.min_backoff = Duration::from_millis(10);
        config.request_timeout = Duration::from_millis(500);
        let client = Client::connect(config).await.unwrap();
        let result = client.subscribe("t:a").await;
        assert_eq!(result.is_ok(), succeeds, "{failures} failures: {result:?}");
        let seen = seen.load(Ordering::SeqCst);
        if failures == usize::MAX {
            assert!(seen > 2, "retried until the request timeout, {seen} attempts");
            assert_eq!(result.unwrap_err().code(), Some(110), "the last error is returned");
        } else {
            assert_eq!(seen, attempts, "{failures} failures");
        }
    }
}

fn config(addr: SocketAddr) -> ClientConfig {
    ClientConfig::new(format!("ws://{addr}/ws")).reconnect(false)
}

/// A server that answers every connection's request with `answer` and then holds it open.
async fn answering(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                read_head(&mut s).await;
                s.write_all(answer).await.unwrap();
                let _ = s.read(&mut [0; 1]).await;
            });
        }
    });
    addr
}

enum Answer {
    Reply(Value),
    Close(u16, &'static str),
}

/// A scripted gateway: upgrades, then answers each JSON command with `answer(command, id)`.
async fn gateway(answer: impl Fn(&Value, u64) -> Answer + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                read_head(&mut s).await;
                let upgrade = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
                s.write_all(upgrade.as_bytes()).await.unwrap();
                let mut ws = WebSocket::after_handshake(s, Role::Server);
                while let Ok(frame) = ws.read_frame().await {
                    if frame.opcode != OpCode::Text {
                        continue;
                    }
                    let cmd: Value = serde_json::from_slice(&frame.payload).unwrap();
                    let id = cmd["id"].as_u64().unwrap();
                    let sent = match answer(&cmd, id) {
                        Answer::Reply(v) => {
                            ws.write_frame(Frame::text(Payload::Owned(v.to_string().into_bytes()))).await
                        }
                        Answer::Close(code, reason) => ws.write_frame(Frame::close(code, reason.as_bytes())).await,
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn read_head(s: &mut TcpStream) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0; 1];
        if s.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
}
