//! After the storm: a real `switchboard dev` process takes rounds of every frames case and
//! of pipelined floods from many connections at once, then still connects, subscribes and
//! delivers to a normal client, with its resident memory back near where it started.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use switchboard_tests::{DEADLINE, client, eventually, grpc};
use switchboard_wire::{Encoding, pb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frames::{self, MAX_MESSAGE};
use super::{DevProcess, RawTcp, protocol};

/// Connections running the frames family at once, and flooders, in each round.
const CONCURRENT: usize = 25;
const FLOODERS: usize = 20;
const ROUNDS: usize = 3;

/// A normal client connects, subscribes and receives a publication from the API.
async fn serves_normally(dev: &DevProcess, channel: &str) {
    let mut c = client(dev.addr, Encoding::Json).await;
    c.subscribe(channel).await.unwrap();
    let mut api = grpc(dev.grpc).await;
    api.publish(pb::PublishApiRequest {
        channel: channel.into(),
        data: Bytes::from_static(b"\"hello\""),
        ..Default::default()
    })
    .await
    .unwrap();
    let p = tokio::time::timeout(DEADLINE, c.next_publication()).await.unwrap().unwrap();
    assert_eq!(p.data, "\"hello\"");
}

/// The value of the gauge `name` on the node's `/metrics`.
async fn gauge(addr: SocketAddr, name: &str) -> f64 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let line = out.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).expect(name);
    line[name.len()..].trim().parse().unwrap()
}

/// A flooder writing 20,000 pings, or 2,000 publications of 900 bytes pushed back to
/// itself, before it reads anything; every outcome allowed (see `protocol.rs`).
async fn flood(addr: SocketAddr, i: usize) {
    let mut ws = RawTcp::upgrade(addr, "").await;
    let data = format!("\"{}\"", "d".repeat(900));
    if i.is_multiple_of(2) {
        protocol::flood(&mut ws, 20_000, |id| format!(r#"{{"id":{id},"ping":{{}}}}"#)).await;
    } else {
        let channel = format!("after:flood-{i}");
        protocol::flood(&mut ws, 2_000, |id| match id {
            3 => format!(r#"{{"id":3,"subscribe":{{"channel":"{channel}"}}}}"#),
            _ => format!(r#"{{"id":{id},"publish":{{"channel":"{channel}","data":{data}}}}}"#),
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_hostile_rounds_a_dev_process_serves_normally_and_its_memory_comes_back() {
    let dev = DevProcess::spawn(&["--max-message-size", &MAX_MESSAGE.to_string(), "--max-queue-bytes", "65536"]).await;
    // What the first sessions allocate once (runtime, hub, bus) belongs in the baseline.
    serves_normally(&dev, "after:warm").await;
    let before = dev.rss_kib();
    let cases = Arc::new(frames::cases());
    let mut after_rounds = Vec::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut tasks = Vec::new();
        for _ in 0..CONCURRENT {
            let (cases, addr) = (cases.clone(), dev.addr);
            tasks.push(tokio::spawn(async move {
                for case in cases.iter() {
                    frames::check(addr, case).await;
                }
            }));
        }
        for i in 0..FLOODERS {
            tasks.push(tokio::spawn(flood(dev.addr, i)));
        }
        for t in tasks {
            t.await.unwrap();
        }
        eventually("the hostile sessions are gone", async || {
            gauge(dev.addr, "switchboard_gateway_connections").await == 0.0
        })
        .await;
        serves_normally(&dev, &format!("after:round-{round}")).await;
        after_rounds.push(dev.rss_kib());
    }
    let connections = ROUNDS * (CONCURRENT * cases.len() + FLOODERS);
    println!(
        "{connections} hostile connections in {:?}; RSS before {before} KiB, after each round {after_rounds:?} KiB",
        started.elapsed()
    );
    let grown = after_rounds.iter().max().unwrap().saturating_sub(before);
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB");
    // The allocator keeps some of what the first rounds used; the last round adds little.
    let ratchet = after_rounds[ROUNDS - 1].saturating_sub(after_rounds[ROUNDS - 2]);
    assert!(ratchet < 4 * 1024, "RSS kept growing round after round: {after_rounds:?}");
}
