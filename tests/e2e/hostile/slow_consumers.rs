//! Consumers that stop reading: closed within a bound whatever they do meanwhile (4002
//! when the close frame can still be written), counted as `outbound_queue` limit hits,
//! their subscriptions and slot released.

use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use switchboard_gateway::GatewayConfig;
use switchboard_tests::{RawWs, Received, client, eventually, gateway_config, grpc, start_dev_metered};
use switchboard_wire::{Channel, Encoding, pb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_that_never_read_but_keep_pinging_are_closed_and_released() {
    let (node, metrics) = start_dev_metered(GatewayConfig { max_queue_bytes: 64 * 1024, ..gateway_config() }).await;
    assert_eq!(metrics.limit_hits("outbound_queue"), 0);
    let channel = Channel::parse("chat:slow").unwrap();
    let mut fast = client(node.http, Encoding::Json).await;
    fast.subscribe("chat:slow").await.unwrap();
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut ws = RawWs::connected(node.http).await;
        ws.text(r#"{"id":2,"subscribe":{"channel":"chat:slow"}}"#).await;
        assert!(ws.json().await["subscribe"].is_object());
        slow.push(ws);
    }
    assert_eq!(node.gateway.hub().subscribers(&channel), 21);
    // They never read again, but ping every 200 ms: they look alive.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = tokio::spawn({
        let stop = stop.clone();
        async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for ws in &mut slow {
                    let _ = ws.ws.write_frame(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"p"))).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            slow
        }
    });
    let reader = tokio::spawn(async move {
        while let Some(p) = fast.next_publication().await {
            if p.data.len() < 8 {
                return p.offset;
            }
        }
        0
    });
    let mut api = grpc(node.grpc).await;
    let payload = Bytes::from(format!("\"{}\"", "x".repeat(16 * 1024)));
    let started = Instant::now();
    // Publish until every slow subscriber is gone (kernel buffers take a few MiB first).
    // Paced, so that the reading subscriber keeps up even on a loaded machine.
    while node.gateway.hub().subscribers(&channel) > 1 {
        api.publish(pb::PublishApiRequest { channel: "chat:slow".into(), data: payload.clone(), ..Default::default() })
            .await
            .unwrap();
        assert!(!reader.is_finished(), "the reading subscriber was closed");
        assert!(started.elapsed() < Duration::from_secs(20), "slow subscribers still subscribed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();
    println!("20 silent pinging subscribers closed within {took:?}");
    eventually("their sessions ended and their slots came back", async || node.gateway.connections() == 1).await;
    api.publish(pb::PublishApiRequest {
        channel: "chat:slow".into(),
        data: Bytes::from_static(b"\"end\""),
        ..Default::default()
    })
    .await
    .unwrap();
    let last = tokio::time::timeout(switchboard_tests::DEADLINE, reader).await.unwrap().unwrap();
    assert!(last > 20, "the reading subscriber kept receiving to the end ({last})");
    assert_eq!(metrics.limit_hits("outbound_queue"), 20, "each close is counted once: {}", metrics.render());
    // Now they read: what is left in their sockets (the kernel's buffers of publications),
    // then how the gateway ended them.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut closed, mut dropped) = (0, 0);
    for mut ws in pinger.await.unwrap() {
        let end = loop {
            match ws.recv().await {
                Received::Text(_) | Received::Binary(_) => continue,
                end => break end,
            }
        };
        match end {
            Received::Close(4002, _) => closed += 1,
            Received::Eof => dropped += 1,
            other => panic!("a slow consumer ended with {other:?}, not 4002 or its socket dropped"),
        }
    }
    println!("slow consumers: {closed} read a 4002 close, {dropped} found their socket dropped");
}
