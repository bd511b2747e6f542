//! The fault suite: a real cluster (3 routed `nats-server` nodes with JetStream and R3
//! history streams, control replicas, 3 gateways behind a TCP balancer), a few hundred
//! client-library sessions with reconnect and recovery on, and a publisher at a steady rate
//! through the gRPC API. Each scenario injects one fault and asserts that no client lost,
//! duplicated or reordered an acknowledged publication, printing one `faults:` line of
//! figures (collected in docs/reliability.md).
//!
//! Default sizes keep the suite to a few minutes of `make test`; `SWITCHBOARD_FAULTS=long`
//! (`make faults-long`) runs more clients for longer. Scenarios run one at a time (each has
//! its own cluster), so one's fault cannot leak into another and timings are not skewed by
//! a neighbour.

mod churn;
mod control;
mod gateways;
mod jitter;
mod nats;

use std::time::Duration;

use switchboard_client::ClientConfig;
use switchboard_tests::balancer::{Balancer, Lane};
use switchboard_tests::fleet::{Fleet, Publisher, Summary};
use switchboard_tests::nats::NatsCluster;
use switchboard_tests::procs::{self, Proc};
use switchboard_tests::{Api, grpc};

/// The channel every scenario publishes on (namespace `chat` keeps history).
pub const CHANNEL: &str = "chat:faults";

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub clients: usize,
    /// Publications per second.
    pub rate: f64,
    /// Publishing before the fault, and after the cluster is whole again.
    pub steady: Duration,
    pub long: bool,
}

impl Scale {
    /// `SWITCHBOARD_FAULTS=long`: 600 clients, 20 s either side of a fault; else 200
    /// clients, 3 s; 20 publications/s either way (600 clients at 50/s are more deliveries
    /// than a 2-core machine running the whole cluster keeps up with).
    pub fn get() -> Scale {
        if std::env::var("SWITCHBOARD_FAULTS").is_ok_and(|v| v == "long") {
            Scale { clients: 600, rate: 20.0, steady: Duration::from_secs(20), long: true }
        } else {
            Scale { clients: 200, rate: 20.0, steady: Duration::from_secs(3), long: false }
        }
    }

    /// Publications made in `d` at this rate.
    pub fn count(&self, d: Duration) -> usize {
        (self.rate * d.as_secs_f64()) as usize
    }
}

/// Scenarios run one at a time: each starts ~10 processes and a few hundred clients on a
/// 2-core machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fast NATS liveness for every process (a frozen node is noticed within ~1.5 s), as the
/// NATS fault tests use.
const FAST_NATS_PINGS: [&str; 4] = ["--nats-ping-interval", "500ms", "--nats-max-missed-pongs", "2"];

/// Control's balance knobs, quicker than the defaults (5 s rounds, 10 s windows, 15 s warm-up,
/// 25% share) so a rollout's imbalance is corrected within a test: a round every second,
/// 2 s windows, at most half a gateway's sessions per round, and a 5 s warm-up, longer than a
/// rollout step (a 2 s drain and a restart), so no round runs between two steps; a 5-session
/// floor, so 200 clients can come within 10% of their mean (67).
pub const BALANCE: [&str; 10] = [
    "--balance-interval",
    "1s",
    "--balance-window",
    "2s",
    "--balance-warmup",
    "5s",
    "--balance-max-share-percent",
    "50",
    "--balance-min-difference",
    "5",
];

/// The bound within which [`BALANCE`] evens the gateways out after the last restart, as
/// docs/architecture.md gives it: rounds start once no gateway drains and none is younger
/// than the warm-up (5 s), then each takes at most a window + 2 s + an interval (5 s); three
/// rounds suffice at a 50% share with an even balancer, this allows six.
pub const BALANCED_WITHIN: Duration = Duration::from_secs(5 + 6 * 5);

/// The drain window of the gateways (a rolling restart lasts ~3 of them).
pub fn drain_window(scale: &Scale) -> Duration {
    if scale.long { Duration::from_secs(5) } else { Duration::from_secs(2) }
}

/// The processes' configuration: namespace `chat` keeps history in R3 streams.
fn config_file() -> &'static std::path::Path {
    static FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("sb-{}-faults.toml", std::process::id()));
        let text = "[nats]\nhistory_replicas = 3\n\n\
                    [channels.namespaces.chat]\nhistory_size = 10000\nhistory_ttl = \"1h\"\n";
        std::fs::write(&path, text).unwrap();
        path
    })
}

/// A cluster under test, with the balancer standing for the gateways' Service.
pub struct Cluster {
    pub nats: NatsCluster,
    pub controls: Vec<Proc>,
    pub gateways: Vec<Proc>,
    pub lb: Balancer,
    pub scale: Scale,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    /// 3 NATS nodes, `controls` control replicas and 3 gateways, assembled and ready.
    pub async fn start(controls: usize) -> Cluster {
        let serial = ONE_AT_A_TIME.lock().await;
        let scale = Scale::get();
        let nats = blocking(|| NatsCluster::start(3));
        let urls = nats.urls();
        let config = config_file().display().to_string();
        let drain = format!("{}ms", drain_window(&scale).as_millis());
        let (controls, gateways) = blocking(|| {
            let mut common = vec!["--config", config.as_str()];
            common.extend(FAST_NATS_PINGS);
            let mut ctl = common.clone();
            ctl.extend(BALANCE);
            let controls: Vec<Proc> = (1..=controls).map(|i| procs::control(&format!("c{i}"), &urls, &ctl)).collect();
            let mut gw = common.clone();
            // Every client comes from 127.0.0.1 through the balancer: no per-address limits.
            gw.extend([
                "--drain-window",
                drain.as_str(),
                "--connect-rate-per-ip",
                "0",
                "--max-connections-per-ip",
                "0",
            ]);
            let gateways: Vec<Proc> = (0..3).map(|i| procs::gateway(&format!("g{i}"), &urls, &gw)).collect();
            (controls, gateways)
        });
        for c in &controls {
            procs::wait_ready(c.addr(), 3, controls.len()).await;
        }
        let lb = Balancer::start(&gateways.iter().map(Proc::addr).collect::<Vec<_>>());
        Cluster { nats, controls, gateways, lb, scale, _serial: serial }
    }

    /// One gRPC API client per running control replica.
    pub async fn apis(&self) -> Vec<Api> {
        let mut apis = Vec::new();
        for c in self.controls.iter().filter(|c| c.is_running()) {
            apis.push(grpc(c.addr()).await);
        }
        apis
    }

    /// `scale.clients` clients, one balancer lane each, subscribed to [`CHANNEL`].
    pub async fn fleet(&self) -> (Fleet, Vec<Lane>) {
        self.fleet_of(self.scale.clients).await
    }

    pub async fn fleet_of(&self, n: usize) -> (Fleet, Vec<Lane>) {
        let lanes = self.lb.lanes(n);
        let fleet = Fleet::connect(n, &[CHANNEL], |i| client_config(&lanes[i], i)).await;
        (fleet, lanes)
    }

    /// A publisher on [`CHANNEL`] through every running replica, at the scale's rate.
    pub async fn publisher(&self) -> Publisher {
        Publisher::start(CHANNEL, self.apis().await, self.scale.rate, Duration::from_secs(20))
    }
}

/// A client through `lane`: reconnect on, backoff 100 ms doubling to 2 s (full jitter), so
/// a test's reconnects do not wait a production client's 10 s.
pub fn client_config(lane: &Lane, i: usize) -> ClientConfig {
    let mut config = ClientConfig::new(lane.ws_url());
    config.token = procs::token(&format!("u{i}"));
    config.min_backoff = Duration::from_millis(100);
    config.max_backoff = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(5);
    config
}

/// Stops `publisher`, waits until every client has the last acknowledged publication, prints
/// the scenario's figures as one `faults:` line and returns them, lossless or not (the
/// caller asserts).
pub async fn finish(scenario: &str, fleet: &Fleet, publisher: &mut Publisher) -> Summary {
    publisher.stop().await;
    // Clients moved by a balance round at the end are let back first.
    let settled = async {
        fleet.wait_all_present(Duration::from_secs(30)).await?;
        fleet.settle(&[publisher], Duration::from_secs(20)).await?;
        // A balance round may have moved clients again while the last publications arrived.
        fleet.wait_all_present(Duration::from_secs(30)).await
    }
    .await;
    let summary = fleet.summary(scenario, &[publisher]);
    println!("faults: {summary}");
    if let Err(e) = settled {
        panic!("{e}\n{summary}\n{}", summary.details.join("\n"));
    }
    summary
}

/// Runs `f` in a blocking section: process spawns and waits (a SIGTERM'd gateway drains for
/// seconds) block the test's thread, and `block_in_place` hands the worker's other tasks,
/// the clients counting, to another thread meanwhile. The rule against it is for the
/// gateway's and control's tasks; this is the test's own runtime.
#[allow(clippy::disallowed_methods)]
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}
