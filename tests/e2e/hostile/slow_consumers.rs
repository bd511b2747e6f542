//! Consumers that stop reading: closed within a bound whatever they do meanwhile, their
//! subscriptions and slot released.

use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use switchboard_gateway::GatewayConfig;
use switchboard_tests::{RawWs, client, eventually, gateway_config, grpc, start_dev};
use switchboard_wire::{Channel, Encoding, pb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_that_never_read_but_keep_pinging_are_closed_and_released() {
    let node = start_dev(GatewayConfig { max_queue_bytes: 64 * 1024, ..gateway_config() }).await;
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
    let pinger = tokio::spawn(async move {
        loop {
            for ws in &mut slow {
                let _ = ws.ws.write_frame(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"p"))).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
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
    pinger.abort();
}
