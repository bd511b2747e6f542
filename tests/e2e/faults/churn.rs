//! Churn: thousands of sessions come and go while publishing goes on; the registry keeps
//! counting exactly the live ones.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use switchboard_client::Client;
use switchboard_wire::pb;

use super::{CHANNEL, Cluster, client_config, finish};
use switchboard_tests::eventually_within;

/// Every session in the registry, page by page.
async fn registry_sessions(api: &mut switchboard_tests::Api) -> Result<usize, tonic::Status> {
    let (mut n, mut token) = (0, String::new());
    loop {
        let req = pb::ListSessionsRequest { user: String::new(), page_size: 1000, page_token: token };
        let page = api.list_sessions(req).await?.into_inner();
        n += page.sessions.len();
        if page.next_page_token.is_empty() {
            return Ok(n);
        }
        token = page.next_page_token;
    }
}

/// The sessions the gateways report to control (`Info`).
async fn info_sessions(api: &mut switchboard_tests::Api) -> Result<u64, tonic::Status> {
    let info = api.info(pb::InfoRequest {}).await?.into_inner();
    Ok(info.gateways.iter().map(|g| u64::from(g.sessions)).sum())
}

/// 2,000 sessions connect, subscribe and leave (half cleanly, half by dropping the
/// socket) within a minute while a steady fleet receives every publication; then the
/// registry (ListSessions, and Info's per-gateway counts) holds exactly the steady fleet's
/// sessions, and none once it has left too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_2000_sessions_while_publishing_leaves_an_exact_registry() {
    let c = Cluster::start(2).await;
    let steady = c.scale.clients / 2;
    let (mut fleet, _lanes) = c.fleet_of(steady).await;
    let mut publisher = c.publisher().await;
    let churners = 2000;
    let lane = c.lb.lane();
    let started = Instant::now();
    let failures: Vec<String> = futures_util::stream::iter(0..churners)
        .map(|i| {
            let mut config = client_config(&lane, 100_000 + i);
            config.reconnect = false;
            async move {
                let client = Client::connect(config).await.map_err(|e| format!("connect: {e}"))?;
                let subscribed = client.subscribe(CHANNEL).await.map_err(|e| format!("subscribe: {e}"));
                if i % 2 == 0 {
                    client.close().await;
                } else {
                    drop(client); // the socket just goes
                }
                subscribed.map(|_| ())
            }
        })
        .buffer_unordered(16)
        .filter_map(|r: Result<(), String>| async move { r.err() })
        .collect()
        .await;
    let churned = started.elapsed();
    println!(
        "faults: churn: {churners} sessions connected, subscribed and left in {churned:?} ({} failed)",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "every churning session connects and subscribes: {:?}",
        &failures[..failures.len().min(5)]
    );
    assert!(churned < Duration::from_secs(60), "the churn took {churned:?}");
    publisher.wait_more(c.scale.count(c.scale.steady), c.scale.steady * 3).await.unwrap();
    let s = finish("churn", &fleet, &mut publisher).await;

    let mut api = c.apis().await.remove(0);
    let mut last = (0, 0);
    eventually_within(&format!("the registry holds the {steady} live sessions"), Duration::from_secs(30), async || {
        last = (registry_sessions(&mut api).await.unwrap_or(0), info_sessions(&mut api).await.unwrap_or(0));
        last == (steady, steady as u64)
    })
    .await;
    fleet.close().await;
    eventually_within("the registry is empty after everyone left", Duration::from_secs(30), async || {
        last = (registry_sessions(&mut api).await.unwrap_or(1), info_sessions(&mut api).await.unwrap_or(1));
        last == (0, 0)
    })
    .await;
    s.assert_lossless();
}
