//! Balance after a membership change: a gateway added to a loaded cluster gets its share of
//! the sessions, because control asks the loaded gateways to move some (close 4009), and
//! clients that move lose nothing on a history channel. Real `nats-server` with JetStream,
//! control and three gateways as processes, clients through a round-robin TCP balancer
//! (a Kubernetes Service).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_client::{Client, ClientConfig, Event};
use switchboard_tests::balancer::Balancer;
use switchboard_tests::nats::NatsServer;
use switchboard_tests::procs::{self, wait_ready};
use switchboard_tests::{free_port, grpc};
use switchboard_wire::pb;

/// Clients in the test: 150 per gateway before the third comes, 100 each after.
const CLIENTS: usize = 300;
/// A history channel (namespace `chat` keeps history in the cluster's config file).
const CHANNEL: &str = "chat:balance";
/// The bound within which the cluster must be balanced after the third gateway starts:
/// warm-up (1 s), then rounds every window + settle (2 s + 2 s); three rounds suffice with
/// an even balancer at a 50% share, so this leaves room for a slow machine.
const CONVERGE: Duration = Duration::from_secs(30);

/// What one client saw.
#[derive(Default)]
struct Seen {
    /// The publications' sequence numbers, in arrival order.
    seqs: Vec<u64>,
    /// Close codes of the connections that ended.
    closes: Vec<Option<u16>>,
    /// `recovered` of every resubscription after a reconnect.
    resubscribed: Vec<bool>,
}

fn get(port: u16, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The value of an unlabelled counter in a Prometheus text page.
fn counter(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn gateway_sessions(api: &mut switchboard_tests::Api) -> Vec<(String, u32)> {
    let Ok(info) = api.info(pb::InfoRequest {}).await else { return Vec::new() };
    info.into_inner().gateways.into_iter().map(|g| (g.id, g.sessions)).collect()
}

fn balanced(loads: &[(String, u32)], gateways: usize) -> bool {
    if loads.len() != gateways {
        return false;
    }
    let total: u32 = loads.iter().map(|(_, s)| s).sum();
    let mean = total as f64 / gateways as f64;
    total as usize == CLIENTS && loads.iter().all(|(_, s)| (*s as f64 - mean).abs() <= mean * 0.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_added_to_a_loaded_cluster_gets_its_share_and_moved_clients_lose_nothing() {
    let nats = NatsServer::start();
    let urls = vec![nats.url()];
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let control = procs::control(
        "c1",
        &urls,
        &[
            "--metrics-listen",
            &metrics,
            "--balance-interval",
            "200ms",
            "--balance-window",
            "2s",
            "--balance-warmup",
            "1s",
            "--balance-max-share-percent",
            "50",
        ],
    );
    let g1 = procs::gateway("g1", &urls, &[]);
    let g2 = procs::gateway("g2", &urls, &[]);
    wait_ready(control.addr(), 2, 1).await;
    let mut api = grpc(control.addr()).await;

    let lb = Balancer::start(&[g1.addr(), g2.addr()]);
    let lane = lb.lane();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut config = ClientConfig::new(lane.ws_url());
        config.token = procs::token(&format!("user{i}"));
        let client = Client::connect(config).await.expect("client connects");
        client.subscribe(CHANNEL).await.expect("subscribed");
        clients.push(client);
    }
    let seen: Vec<Arc<Mutex<Seen>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let mut readers = Vec::new();
    for (mut client, seen) in clients.into_iter().zip(seen.iter().cloned()) {
        readers.push(tokio::spawn(async move {
            while let Some(event) = client.next_event().await {
                let mut s = seen.lock().unwrap();
                match event {
                    Event::Publication(p) => s.seqs.push(String::from_utf8_lossy(&p.data).parse().unwrap()),
                    Event::Disconnected { code, .. } => s.closes.push(code),
                    Event::Resubscribed { recovered, .. } => s.resubscribed.push(recovered),
                    _ => {}
                }
            }
        }));
    }
    assert_eq!(lb.per_backend(), [CLIENTS / 2, CLIENTS / 2], "round robin over two gateways");

    // A steady publisher through gRPC, 50 a second, each publication its sequence number.
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (mut api, stop, published) = (api.clone(), stop.clone(), published.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let seq = published.load(Ordering::Relaxed) + 1;
                let request = pb::PublishApiRequest {
                    channel: CHANNEL.into(),
                    data: Bytes::from(seq.to_string()),
                    ..Default::default()
                };
                api.publish(request).await.expect("publish");
                published.store(seq, Ordering::Relaxed);
            }
        })
    };
    switchboard_tests::eventually("every client receives the publisher", async || {
        seen.iter().all(|s| !s.lock().unwrap().seqs.is_empty())
    })
    .await;

    let g3 = procs::gateway("g3", &urls, &[]);
    lb.add_backend(g3.addr());
    let added = Instant::now();
    let mut last = Vec::new();
    while !balanced(&last, 3) {
        assert!(added.elapsed() < CONVERGE, "not balanced within {CONVERGE:?} of the third gateway: {last:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = gateway_sessions(&mut api).await;
    }
    let took = added.elapsed();

    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    let total = published.load(Ordering::Relaxed);
    switchboard_tests::eventually("every client has the last publication", async || {
        seen.iter().all(|s| s.lock().unwrap().seqs.last() == Some(&total))
    })
    .await;
    let want: Vec<u64> = (1..=total).collect();
    let mut moved = 0;
    for (i, s) in seen.iter().enumerate() {
        let s = s.lock().unwrap();
        assert_eq!(s.seqs, want, "client {i}: every publication once, in order ({:?} closes)", s.closes);
        assert!(s.resubscribed.iter().all(|&r| r), "client {i}: every resubscription recovered");
        assert!(s.closes.iter().all(|&c| c == Some(4009)), "client {i} closed otherwise: {:?}", s.closes);
        moved += s.closes.len();
    }
    let page = get(metrics_port, "/metrics");
    let (rounds, asked) = (
        counter(&page, "switchboard_control_balance_rounds_total"),
        counter(&page, "switchboard_control_balance_sessions_asked_total"),
    );
    assert!(
        rounds >= 1 && asked as usize >= moved && moved >= CLIENTS / 3,
        "rounds {rounds}, asked {asked}, moved {moved}"
    );
    eprintln!(
        "balanced {last:?} {:.1} s after the third gateway started: {rounds} rounds, {asked} sessions asked to move, \
         {moved} moved; {total} publications, each received once in order by all {CLIENTS} clients",
        took.as_secs_f64()
    );
    for r in readers {
        r.abort();
    }
}
