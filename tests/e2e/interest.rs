//! Interest counting: one bus subscription per channel per gateway.

use switchboard_tests::{client, eventually, gateway_config, start_dev};
use switchboard_wire::Encoding;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_local_subscribers_hold_one_bus_subscription_and_leaving_releases_it() {
    let node = start_dev(gateway_config()).await;
    let bus = node.gateway.bus().clone();
    assert_eq!(bus.subscriptions(), 0);
    let mut clients = Vec::new();
    for chunk in 0..10 {
        let batch = futures_util::future::join_all((0..100).map(|_| async {
            let c = client(node.http, Encoding::Json).await;
            c.subscribe("crowd:one").await.unwrap();
            c
        }))
        .await;
        clients.extend(batch);
        assert_eq!(bus.subscriptions(), 1, "after {} subscribers", (chunk + 1) * 100);
    }
    assert_eq!(node.gateway.hub().subscribers(&"crowd:one".parse().unwrap()), 1000);
    // Half leave by unsubscribing, half by disconnecting.
    let (unsub, close) = clients.split_at(500);
    for c in unsub {
        c.unsubscribe("crowd:one").await.unwrap();
    }
    assert_eq!(bus.subscriptions(), 1);
    let close: Vec<_> = close.iter().map(|c| c.session()).collect();
    drop(clients);
    eventually("every session has left", async || node.gateway.connections() == 0).await;
    assert_eq!(bus.subscriptions(), 0, "{} sessions closed and the bus subscription remains", close.len());
    assert_eq!(node.gateway.hub().channels(), 0);
}
