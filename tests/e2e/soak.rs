//! The soak: steady mixed load on a local cluster (3 routed NATS nodes with JetStream and R3
//! streams, 2 control replicas, 3 gateways behind a balancer) for `SOAK` (default 2 minutes,
//! the variant `make test` runs; `make soak` runs an hour), sampling the RSS and open files of
//! every process every 10 s. The load: a broadcast channel that every broadcast client holds,
//! rooms of a few clients each with a backend publisher, a room fed by a client's publishes,
//! and churn (sessions that connect, subscribe, publish once and leave, all along).
//!
//! It asserts zero lost, duplicated or reordered publications in every group, that the
//! registry counts exactly the live sessions once churn stops, and a bound on each process's
//! growth after the warm-up; it prints the growth per hour of every process and the
//! delivery totals (`--nocapture`), which `docs/performance.md` records for the hour-long run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_client::{Client, ClientConfig};
use switchboard_tests::balancer::{Balancer, Lane};
use switchboard_tests::fleet::{Fleet, Publisher, Summary};
use switchboard_tests::nats::NatsCluster;
use switchboard_tests::procs::{self, Proc, wait_ready};
use switchboard_tests::sampler::{self, Sampler};
use switchboard_tests::{eventually, grpc};
use switchboard_wire::pb;

const BROADCAST_CLIENTS: usize = 120;
const BROADCAST_RATE: f64 = 10.0;
const ROOMS: usize = 8;
const ROOM_CLIENTS: usize = 8;
const ROOM_RATE: f64 = 2.0;
const TALK_CLIENTS: usize = 10;
const TALK_RATE: f64 = 4.0;
/// Churn sessions per second (each connects, subscribes, publishes once and leaves).
const CHURN_RATE: f64 = 4.0;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// `SOAK` as a duration: `90s`, `10m`, `1h`, or plain seconds; default 2 minutes.
fn soak_duration() -> Duration {
    let Ok(text) = std::env::var("SOAK") else { return Duration::from_secs(120) };
    let text = text.trim();
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = num.parse().unwrap_or_else(|_| panic!("SOAK={text}: expected e.g. 90s, 10m, 1h"));
    Duration::from_secs(match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("SOAK={text}: expected e.g. 90s, 10m, 1h"),
    })
}

/// The configuration file of the soak's processes: `chat` keeps history, on 3 replicas.
fn config_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("sb-{}-soak.toml", std::process::id()));
    std::fs::write(
        &path,
        "[nats]\nhistory_replicas = 3\n[channels.namespaces.chat]\nhistory_size = 10000\nhistory_ttl = \"1h\"\n",
    )
    .unwrap();
    path
}

fn client_config(lane: &Lane, user: &str) -> ClientConfig {
    let mut c = ClientConfig::new(lane.ws_url());
    c.token = procs::token(user);
    c
}

/// Sessions that connect, subscribe, publish once and leave, at `rate` per second, until
/// `stop`; counts the cycles that completed and those that failed.
fn churn(
    lane: Lane,
    rate: f64,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            i += 1;
            let config = client_config(&lane, &format!("churn-{}", i % 50)).reconnect(false);
            let (done, failed) = (done.clone(), failed.clone());
            tokio::spawn(async move {
                let cycle = async {
                    let client = Client::connect(config).await.ok()?;
                    client.subscribe("chat:soak-churn").await.ok()?;
                    client.publish("chat:soak-churn", Bytes::from_static(b"1")).await.ok()?;
                    client.close().await;
                    Some(())
                };
                match tokio::time::timeout(Duration::from_secs(10), cycle).await {
                    Ok(Some(())) => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            });
        }
    })
}

/// Sessions the registry counts, by listing them page by page (every replica's shards).
async fn registry_sessions(api: &mut switchboard_tests::Api) -> Option<usize> {
    let (mut n, mut page_token) = (0, String::new());
    loop {
        let req = pb::ListSessionsRequest { page_size: 1000, page_token, ..Default::default() };
        let r = api.list_sessions(req).await.ok()?.into_inner();
        n += r.sessions.len();
        if r.next_page_token.is_empty() {
            return Some(n);
        }
        page_token = r.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_of_mixed_load_loses_nothing_and_does_not_grow() {
    let total = soak_duration();
    let warm_up = (total / 4).min(Duration::from_secs(120));
    let config = config_file();
    let config_arg = config.display().to_string();
    let extra = ["--config", config_arg.as_str()];

    let nats = NatsCluster::start(3);
    let urls = nats.urls();
    let controls: Vec<Proc> = ["c1", "c2"].iter().map(|id| procs::control(id, &urls, &extra)).collect();
    let gateways: Vec<Proc> = ["g1", "g2", "g3"].iter().map(|id| procs::gateway(id, &urls, &extra)).collect();
    wait_ready(controls[0].addr(), gateways.len(), controls.len()).await;
    let mut apis = Vec::new();
    for c in &controls {
        apis.push(grpc(c.addr()).await);
    }

    let lb = Balancer::start(&gateways.iter().map(|g| g.addr()).collect::<Vec<_>>());
    let lanes = lb.lanes(4);
    let lane = |i: usize| lanes[i % lanes.len()];

    let mut pids: Vec<(String, u32)> =
        (0..nats.len()).map(|i| (format!("nats-{i}"), nats.node(i).pid().unwrap())).collect();
    pids.extend(controls.iter().chain(&gateways).map(|p| (p.name.clone(), p.pid().unwrap())));
    let sampler = Sampler::start(pids, SAMPLE_EVERY);
    let started = Instant::now();

    // The groups, each a fleet on its channels with its publishers.
    let broadcast = Fleet::connect(BROADCAST_CLIENTS, &["chat:soak-broadcast"], |i| {
        client_config(&lane(i), &format!("b{}", i % 40))
    })
    .await;
    let mut rooms = Vec::new();
    for r in 0..ROOMS {
        let channel = format!("chat:soak-room-{r}");
        let fleet =
            Fleet::connect(ROOM_CLIENTS, &[channel.as_str()], |i| client_config(&lane(i + r), &format!("r{r}-{i}")))
                .await;
        rooms.push((channel, fleet));
    }
    let talk = Fleet::connect(TALK_CLIENTS, &["chat:soak-talk"], |i| client_config(&lane(i), &format!("t{i}"))).await;

    let mut publishers =
        vec![Publisher::start("chat:soak-broadcast", apis.clone(), BROADCAST_RATE, Duration::from_secs(20))];
    for (channel, _) in &rooms {
        publishers.push(Publisher::start(channel, apis.clone(), ROOM_RATE, Duration::from_secs(20)));
    }
    let talker = Client::connect(client_config(&lane(0), "talker")).await.expect("the talker connects");
    publishers.push(Publisher::start_client("chat:soak-talk", talker, TALK_RATE));

    let stop_churn = Arc::new(AtomicBool::new(false));
    let (churned, churn_failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let churner = churn(lane(1), CHURN_RATE, stop_churn.clone(), churned.clone(), churn_failed.clone());

    // The soak itself is a window of time under load (nothing to wait for but the clock),
    // with a progress line a minute, so a long run shows it is alive.
    while started.elapsed() < total {
        let left = total.saturating_sub(started.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(60))).await;
        eprintln!(
            "soak: {:>5}s of {}s, {} published, {} churn sessions",
            started.elapsed().as_secs(),
            total.as_secs(),
            publishers.iter().map(|p| p.published()).sum::<usize>(),
            churned.load(Ordering::Relaxed)
        );
    }

    stop_churn.store(true, Ordering::Relaxed);
    let _ = churner.await;
    for p in &mut publishers {
        p.stop().await;
    }
    let series = sampler.stop();
    let elapsed = started.elapsed();

    // Every group caught up, then the figures.
    let all: Vec<&Publisher> = publishers.iter().collect();
    let mut summaries: Vec<Summary> = Vec::new();
    let _ = broadcast.settle(&all, Duration::from_secs(30)).await;
    summaries.push(broadcast.summary("soak broadcast", &all[..1]));
    for (i, (_, fleet)) in rooms.iter().enumerate() {
        let _ = fleet.settle(&all[1 + i..2 + i], Duration::from_secs(30)).await;
        summaries.push(fleet.summary(&format!("soak room {i}"), &all[1 + i..2 + i]));
    }
    let _ = talk.settle(&all[all.len() - 1..], Duration::from_secs(30)).await;
    summaries.push(talk.summary("soak client publish", &all[all.len() - 1..]));

    let live = broadcast.len() + rooms.iter().map(|(_, f)| f.len()).sum::<usize>() + talk.len();
    let mut api = apis[0].clone();
    let registry = registry_sessions(&mut api).await;

    let growth: Vec<sampler::Growth> = series.iter().map(|s| sampler::growth(s, warm_up)).collect();
    println!(
        "soak: {} s, warm-up {} s, samples every {} s",
        elapsed.as_secs(),
        warm_up.as_secs(),
        SAMPLE_EVERY.as_secs()
    );
    for g in &growth {
        println!("soak: {}", g.line());
    }
    for s in &summaries {
        println!("{s}");
    }
    println!(
        "soak: churn {} sessions ({} failed); registry {:?} of {live} live sessions (churn stopped)",
        churned.load(Ordering::Relaxed),
        churn_failed.load(Ordering::Relaxed),
        registry
    );

    for s in &summaries {
        s.assert_lossless();
    }
    assert_eq!(churn_failed.load(Ordering::Relaxed), 0, "every churn session connected, subscribed and published");
    // Churn has stopped: the registry counts exactly the sessions still open.
    eventually("the registry counts exactly the live sessions", || {
        let mut api = api.clone();
        async move { registry_sessions(&mut api).await == Some(live) }
    })
    .await;
    for g in &growth {
        // A leak bound, not a tight one: after the warm-up a process may still grow into
        // caches and arenas, but not without limit; the hour-long run's slopes are what
        // docs/performance.md records.
        let slack_kib = if g.name.starts_with("nats") { 96 * 1024 } else { 32 * 1024 };
        assert!(g.rss_end_kib <= g.rss_start_kib + slack_kib, "{}", g.line());
        assert!(g.fds_end <= g.fds_start + 32, "{}", g.line());
    }

    // Everyone leaves: the registry ends at zero.
    let (mut broadcast, mut talk) = (broadcast, talk);
    broadcast.close().await;
    talk.close().await;
    for (_, fleet) in &mut rooms {
        fleet.close().await;
    }
    eventually("the registry empties when everyone left", || {
        let mut api = api.clone();
        async move { registry_sessions(&mut api).await == Some(0) }
    })
    .await;
    drop(lb);
}
