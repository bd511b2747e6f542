//! A run, in phases: plan the connections and channels of a scenario; connect them all
//! (measuring connect latency); let the server settle and read its memory; publish for the
//! duration; wait for deliveries in flight; stop everything and count.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::accounting::{self, SharedHistogram};
use crate::conn::{self, Outcome, PublishRole, Role};
use crate::jitter;
use crate::publish::{self, Publisher};
use crate::report::{self, Report};
use crate::sysinfo;
use crate::ws::WsUrl;
use crate::{BenchArgs, PublishVia, Scenario, Target};

pub use count::Counts;

/// Where a run is; connections and publishers watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Publish,
    /// Publishing stopped; deliveries in flight still count.
    Drain,
    Stop,
}

/// What every connection and publisher of a run shares.
#[derive(Debug)]
pub struct Ctx {
    pub target: Target,
    /// The `connect` command's body (`{}`, or with a token).
    pub connect: String,
    /// Payload size in bytes.
    pub payload: usize,
    /// Payloads name their publisher (`"k"`).
    pub multi: bool,
    pub urls: Vec<WsUrl>,
    /// The resolved address of each URL.
    pub addrs: Vec<SocketAddr>,
    /// Source addresses to bind; one means let the kernel choose.
    pub sources: Vec<Ipv4Addr>,
    /// Channel names, as the target spells them.
    pub channels: Vec<String>,
    /// `[channel][k]`: the last sequence number published on each stream.
    pub published: Vec<Vec<AtomicU64>>,
    /// Subscribers per channel that are connected now.
    pub subscribed: Vec<AtomicU64>,
    pub hist: SharedHistogram,
    pub delivered: AtomicU64,
    /// Connections whose publishing schedule runs; each stops it when it sees `Drain`.
    pub publishing: AtomicU64,
    pub publish_errors: AtomicU64,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub phase: watch::Receiver<Phase>,
    /// `jitter`: how subscribers are cut.
    pub jitter: Option<jitter::Cuts>,
    /// `jitter`: deliveries that were not duplicates (what the drain waits for).
    pub unique: AtomicU64,
}

/// The connections and channels of a scenario.
#[derive(Debug, Clone)]
pub struct Plan {
    pub channels: Vec<String>,
    /// Publishers (`k` values) per channel.
    pub publishers_per_channel: Vec<u32>,
    /// One role per connection.
    pub roles: Vec<Role>,
    /// Streams published from outside the connections (gRPC, NATS).
    pub external: Vec<(usize, u32)>,
    /// Publications per second of the external streams, in all.
    pub external_rate: f64,
    pub multi: bool,
}

/// Plans `args.scenario`; channel names carry `run_id` so runs never share a channel.
pub fn plan(args: &BenchArgs, run_id: &str) -> anyhow::Result<Plan> {
    let name = |i: usize| match args.target {
        Target::Switchboard => format!("{}:{run_id}-{i}", args.namespace),
        Target::NatsWs => format!("bench.{run_id}.{i}"),
        Target::Socketio | Target::Floor => format!("{run_id}-{i}"),
    };
    let n = args.subscribers;
    // Socket.IO and the floor publish through a connection of their own.
    let via_client = args.publish_via == PublishVia::Client || matches!(args.target, Target::Socketio | Target::Floor);
    let sub = |channel: usize| Role { subscribe: Some(channel), publish: None };
    let mut plan = Plan {
        channels: vec![name(0)],
        publishers_per_channel: vec![1],
        roles: Vec::new(),
        external: Vec::new(),
        external_rate: args.rate,
        multi: false,
    };
    match args.scenario {
        Scenario::Broadcast | Scenario::Fanin | Scenario::Jitter => {
            // One channel: `n` subscribers and one publisher (broadcast, jitter), or one
            // subscriber and many publishers (fan-in). Each publisher is a stream of its own (`k`).
            let (subscribers, p) = match args.scenario {
                Scenario::Broadcast => (n, args.publishers.unwrap_or(1).max(1)),
                Scenario::Jitter => (n, 1),
                _ => (1, args.publishers.unwrap_or(100).max(1)),
            };
            plan.multi = p > 1;
            plan.publishers_per_channel = vec![p as u32];
            plan.roles = vec![sub(0); subscribers];
            if via_client {
                // Publishing connections write at their pace without waiting for replies.
                let rate = args.rate / p as f64;
                plan.roles.extend(
                    (0..p).map(|j| Role {
                        subscribe: None,
                        publish: Some(PublishRole { channel: 0, k: j as u32, rate }),
                    }),
                );
            } else {
                plan.external = (0..p).map(|j| (0, j as u32)).collect();
            }
        }
        Scenario::Rooms => {
            let k = args.rooms_size.max(1);
            let rooms = n.div_ceil(k);
            plan.channels = (0..rooms).map(name).collect();
            if via_client {
                let rate = args.rate / n as f64;
                plan.multi = true;
                plan.publishers_per_channel = (0..rooms).map(|r| (n - r * k).min(k) as u32).collect();
                plan.roles = (0..n)
                    .map(|i| Role {
                        subscribe: Some(i / k),
                        publish: Some(PublishRole { channel: i / k, k: (i % k) as u32, rate }),
                    })
                    .collect();
            } else {
                plan.publishers_per_channel = vec![1; rooms];
                plan.roles = (0..n).map(|i| sub(i / k)).collect();
                plan.external = (0..rooms).map(|r| (r, 0)).collect();
            }
        }
        Scenario::Idle => plan.roles = vec![sub(0); n],
        Scenario::Connect => plan.roles = vec![Role::default(); n],
    }
    Ok(plan)
}

/// Runs a benchmark and returns its report (also written to `--json` when given).
pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    check(&args)?;
    let fd_limit = sysinfo::raise_fd_limit().context("cannot raise the open-files limit")?;
    let mut warnings = Vec::new();
    let run_id: String = std::iter::repeat_with(fastrand::alphanumeric).take(6).collect();
    let plan = plan(&args, &run_id)?;
    if plan.roles.len() as u64 + 64 > fd_limit {
        warnings.push(format!("{} connections but only {fd_limit} open files allowed", plan.roles.len()));
    }
    let mut urls = Vec::new();
    let mut addrs = Vec::new();
    for url in &args.url {
        let mut parsed = WsUrl::parse(url).map_err(anyhow::Error::msg)?;
        if args.target == Target::Socketio && parsed.path == "/" {
            parsed.path = "/socket.io/?EIO=4&transport=websocket".into();
        }
        let addr = tokio::net::lookup_host((parsed.host.as_str(), parsed.port))
            .await
            .with_context(|| format!("cannot resolve {url}"))?
            .min_by_key(|a| !a.is_ipv4())
            .with_context(|| format!("{url} resolves to nothing"))?;
        urls.push(parsed);
        addrs.push(addr);
    }
    let sources: Vec<Ipv4Addr> = (1..=args.sources).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    if sources.len() > 1 && addrs.iter().any(|a| !a.ip().is_loopback() || !a.is_ipv4()) {
        bail!("--sources spreads over 127.0.0.x, so every --url must be an IPv4 loopback address");
    }

    let (phase_tx, phase) = watch::channel(Phase::Connect);
    let connect = match &args.token {
        Some(t) => serde_json::json!({ "token": t }).to_string(),
        None => "{}".to_owned(),
    };
    let ctx = Arc::new(Ctx {
        target: args.target,
        connect,
        payload: args.payload,
        multi: plan.multi,
        urls,
        addrs,
        sources,
        channels: plan.channels.clone(),
        published: plan.publishers_per_channel.iter().map(|&k| (0..k).map(|_| AtomicU64::new(0)).collect()).collect(),
        subscribed: plan.channels.iter().map(|_| AtomicU64::new(0)).collect(),
        hist: SharedHistogram::new(16),
        delivered: AtomicU64::new(0),
        publishing: AtomicU64::new(0),
        publish_errors: AtomicU64::new(0),
        connected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        phase,
        jitter: (args.scenario == Scenario::Jitter)
            .then_some(jitter::Cuts { every: args.cut_every, offline: args.offline }),
        unique: AtomicU64::new(0),
    });

    let publishers = start_publishers(&args, &ctx, &plan).await?;
    let progress = (!args.quiet).then(|| tokio::spawn(crate::progress::run(ctx.clone(), plan.roles.len())));

    // Connect.
    let server_before = sysinfo::sample_all(&args.server_pid);
    let generator_before = sysinfo::sample(None).unwrap_or_default();
    let (results_tx, mut results) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let connect_start = Instant::now();
    for (index, role) in plan.roles.iter().enumerate() {
        if args.connect_rate > 0.0 {
            let at = connect_start + Duration::from_secs_f64(index as f64 / args.connect_rate);
            tokio::time::sleep_until(at.into()).await;
        }
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let (ctx, role, results_tx) = (ctx.clone(), *role, results_tx.clone());
        if ctx.jitter.is_some() && role.subscribe.is_some() {
            tasks.spawn(jitter::client(ctx, index, role, permit, results_tx));
            continue;
        }
        tasks.spawn(async move {
            let started = Instant::now();
            let opened = tokio::time::timeout(conn::OPEN_TIMEOUT, conn::open(&ctx, index, &role))
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
            drop(permit);
            let mut outcome = Outcome { role, ..Outcome::default() };
            match opened {
                Ok(c) => {
                    outcome.connected = true;
                    if let Some(ch) = role.subscribe {
                        ctx.subscribed[ch].fetch_add(1, Relaxed);
                    }
                    ctx.connected.fetch_add(1, Relaxed);
                    let _ = results_tx.send(Ok(started.elapsed()));
                    c.serve(&ctx, index, &mut outcome).await;
                    if let (Some(ch), Some(_)) = (role.subscribe, &outcome.end) {
                        ctx.subscribed[ch].fetch_sub(1, Relaxed);
                    }
                }
                Err(e) => {
                    ctx.failed.fetch_add(1, Relaxed);
                    let _ = results_tx.send(Err(e));
                }
            }
            outcome
        });
    }
    drop(results_tx);
    let mut connect_hist = accounting::histogram();
    let mut connect_errors: Vec<String> = Vec::new();
    let mut last_connected = connect_start;
    while let Some(result) = results.recv().await {
        match result {
            Ok(latency) => {
                accounting::record_ns(&mut connect_hist, latency.as_nanos() as u64);
                last_connected = Instant::now();
            }
            Err(e) if connect_errors.len() < 5 && !connect_errors.contains(&e) => connect_errors.push(e),
            Err(_) => {}
        }
        if connect_hist.len() + ctx.failed.load(Relaxed) >= plan.roles.len() as u64 {
            break;
        }
    }
    let connect_seconds = (last_connected - connect_start).as_secs_f64();
    let connected = ctx.connected.load(Relaxed);
    let connect_failures = ctx.failed.load(Relaxed);
    if connect_failures > 0 {
        warnings.push(format!("{connect_failures} connections failed: {}", connect_errors.join("; ")));
    }
    let generator_connected = sysinfo::sample(None).unwrap_or_default();
    let server_after_connect = sysinfo::sample_all(&args.server_pid);

    // Settle (idle: hold), then read the server's memory.
    let hold = if args.scenario == Scenario::Idle { args.duration } else { args.settle };
    tokio::time::sleep(hold).await;
    let server_connected = sysinfo::sample_all(&args.server_pid);
    let generator_held = sysinfo::sample(None).unwrap_or_default();

    // Publish, then drain.
    let publishing =
        matches!(args.scenario, Scenario::Broadcast | Scenario::Rooms | Scenario::Fanin | Scenario::Jitter);
    let mut publish_seconds = 0.0;
    let measure_start = Instant::now();
    if publishing && connected > 0 {
        let _ = phase_tx.send(Phase::Publish);
        tokio::time::sleep(args.duration).await;
        let _ = phase_tx.send(Phase::Drain);
        publish_seconds = measure_start.elapsed().as_secs_f64();
        for p in publishers {
            if tokio::time::timeout(Duration::from_secs(10), p).await.is_err() {
                warnings.push("a publisher did not stop within 10 s".into());
            }
        }
        // A connection may publish once more before it sees `Drain`; until every one has
        // stopped, what is expected is not final, and the drain below could end too early.
        let deadline = Instant::now() + Duration::from_secs(10);
        while ctx.publishing.load(Relaxed) > 0 {
            if Instant::now() >= deadline {
                warnings.push("a publishing connection did not stop within 10 s".into());
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Jitter clients still offline come back and recover in the drain: it waits for every
        // one to be connected again, and counts what they are owed without duplicates, which
        // recovery may bring.
        let deadline = Instant::now() + args.drain;
        let arrived = || if ctx.jitter.is_some() { ctx.unique.load(Relaxed) } else { ctx.delivered.load(Relaxed) };
        let away = || ctx.jitter.is_some() && ctx.connected.load(Relaxed) < connected;
        while (arrived() < expected_now(&ctx) || away()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let measure_seconds = measure_start.elapsed().as_secs_f64();
    let server_end = sysinfo::sample_all(&args.server_pid);
    let generator_end = sysinfo::sample(None).unwrap_or_default();

    // Stop and count.
    let _ = phase_tx.send(Phase::Stop);
    let mut outcomes = Vec::with_capacity(plan.roles.len());
    let collect = async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(outcome) = joined {
                outcomes.push(outcome);
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(15), collect).await.is_err() {
        warnings.push("some connections did not stop within 15 s; their counts are missing".into());
        tasks.abort_all();
    }
    if let Some(p) = progress {
        let _ = p.await;
    }

    let counts = count::count(&ctx, &plan, &outcomes);
    let jitter = ctx.jitter.map(|cuts| jitter::summarize(cuts, ctx.published[0][0].load(Relaxed), &outcomes));
    if jitter.as_ref().is_some_and(|j| j.no_history) {
        warnings.push(format!(
            "the namespace {:?} keeps no history: subscribers resubscribed without recovery",
            args.namespace
        ));
    }
    let (generator_cpu, generator_wall) = match args.scenario {
        Scenario::Connect => (generator_connected.cpu_seconds - generator_before.cpu_seconds, connect_seconds),
        Scenario::Idle => (generator_held.cpu_seconds - generator_connected.cpu_seconds, hold.as_secs_f64()),
        _ => (generator_end.cpu_seconds - generator_held.cpu_seconds, measure_seconds),
    };
    let server = (!args.server_pid.is_empty()).then(|| report::ServerCost {
        processes: args
            .server_pid
            .iter()
            .map(|&pid| report::ServerProcess {
                pid,
                cpus: sysinfo::cpus_allowed(Some(pid)).unwrap_or_default(),
                command: sysinfo::command_line(pid).unwrap_or_default(),
            })
            .collect(),
        rss_bytes_before: server_before.rss_bytes,
        rss_bytes_connected: server_connected.rss_bytes,
        rss_bytes_end: server_end.rss_bytes,
        cpu_seconds_connecting: server_after_connect.cpu_seconds - server_before.cpu_seconds,
        cpu_seconds_measured: server_end.cpu_seconds - server_connected.cpu_seconds,
    });
    let inputs = report::Inputs {
        args: &args,
        plan: &plan,
        warnings,
        connected,
        connect_failures,
        connect_seconds,
        connect_latency: accounting::percentiles(&connect_hist),
        latency: accounting::percentiles(&ctx.hist.merged()),
        publications: ctx.published.iter().flatten().map(|p| p.load(Relaxed)).sum(),
        publish_errors: ctx.publish_errors.load(Relaxed),
        publish_seconds,
        counts,
        server,
        generator_cpu,
        generator_wall,
        jitter,
    };
    let report = Report::build(inputs);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report)
}

fn check(args: &BenchArgs) -> anyhow::Result<()> {
    if args.url.is_empty() {
        bail!("--url: at least one WebSocket URL");
    }
    if ![args.rate, args.connect_rate].iter().all(|r| *r >= 0.0 && r.is_finite()) {
        bail!("--rate and --connect-rate must be zero or positive numbers");
    }
    if args.subscribers == 0 && args.scenario != Scenario::Fanin {
        bail!("--subscribers must be at least 1");
    }
    if args.payload > 16 << 20 {
        bail!("--payload is at most 16 MiB");
    }
    if args.target != Target::Switchboard && matches!(args.scenario, Scenario::Rooms | Scenario::Fanin) {
        bail!("--target {} runs the broadcast, jitter, idle and connect scenarios only", args.target.name());
    }
    if args.scenario == Scenario::Jitter {
        if args.target == Target::Floor {
            bail!(
                "--target floor has no subscriptions to resume: jitter runs against switchboard, socketio or nats-ws"
            );
        }
        if args.offline.is_zero() || args.offline >= args.cut_every {
            bail!("--offline must be above zero and below --cut-every");
        }
    }
    let ns = &args.namespace;
    if ns.is_empty() || ns.len() > 64 || !ns.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        bail!("--namespace: 1 to 64 of A-Z a-z 0-9 _ - (got {ns:?})");
    }
    if args.target != Target::Switchboard && ns != "bench" {
        bail!("--namespace is for --target switchboard only");
    }
    if !sysinfo::has_proc() && !args.server_pid.is_empty() {
        bail!("--server-pid needs /proc");
    }
    Ok(())
}

/// Starts the publishers that are not connections; they wait for the publish phase.
async fn start_publishers(
    args: &BenchArgs,
    ctx: &Arc<Ctx>,
    plan: &Plan,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    if plan.external.is_empty() {
        return Ok(Vec::new());
    }
    // gRPC calls are sequential per publisher (to keep each stream's order), so many
    // streams go over several publishers sharing one HTTP/2 connection.
    let groups = match (args.target, args.publish_via) {
        (Target::Switchboard, PublishVia::Grpc) => plan.external.len().min(8),
        _ => 1,
    };
    let grpc = match (args.target, args.publish_via) {
        (Target::Switchboard, PublishVia::Grpc | PublishVia::GrpcStream) => Some(
            switchboard_wire::pb::switchboard_api_client::SwitchboardApiClient::connect(args.grpc.clone())
                .await
                .with_context(|| format!("cannot connect to the gRPC API at {}", args.grpc))?,
        ),
        _ => None,
    };
    let mut handles = Vec::new();
    for g in 0..groups {
        let streams: Vec<(usize, u32)> = plan.external.iter().copied().skip(g).step_by(groups).collect();
        let rate = plan.external_rate * streams.len() as f64 / plan.external.len() as f64;
        let publisher = match (args.target, &grpc) {
            (Target::Switchboard, Some(api)) if args.publish_via == PublishVia::GrpcStream => {
                Publisher::stream(api.clone(), ctx.clone()).await?
            }
            (Target::Switchboard, Some(api)) => Publisher::Grpc(api.clone()),
            (Target::NatsWs, _) => Publisher::Nats(
                async_nats::connect(&args.nats)
                    .await
                    .with_context(|| format!("cannot connect to NATS at {}", args.nats))?,
            ),
            _ => bail!("{} publishes through a connection", args.target.name()),
        };
        handles.push(tokio::spawn(publish::run(ctx.clone(), publisher, streams, rate)));
    }
    Ok(handles)
}

/// Deliveries owed so far to the subscribers still connected.
fn expected_now(ctx: &Ctx) -> u64 {
    ctx.published
        .iter()
        .zip(&ctx.subscribed)
        .map(|(streams, subs)| streams.iter().map(|p| p.load(Relaxed)).sum::<u64>() * subs.load(Relaxed))
        .sum()
}

mod count;

#[cfg(test)]
mod tests;
