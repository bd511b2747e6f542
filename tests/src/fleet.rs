//! Counting machinery for the fault suite and the soak: a [`Fleet`] of client-library
//! sessions (reconnect and recovery on) that subscribe to some channels and count what they
//! receive, and a [`Publisher`] per channel that publishes at a steady rate through the gRPC
//! API with an idempotency key, retrying a failed publish on the next replica within a bound.
//!
//! A publication counts as published when it is acknowledged with its offset. A client
//! should receive every acknowledged publication after the position its first subscribe
//! started from; one it never received is *lost*, one it received twice is *duplicated*, one
//! that came after a later one is *reordered*. [`Summary`] gives those figures with the
//! reconnects and their time (disconnect → every channel resubscribed), and
//! [`Summary::assert_lossless`] fails on any loss, duplicate or reorder.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use switchboard_client::{Client, ClientConfig, Event};
use switchboard_wire::pb;
use tokio::sync::watch;

use crate::Api;

/// How long a client may take to connect and subscribe (retried while it fails).
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);
/// Clients connecting at once.
const CONNECT_CONCURRENCY: usize = 32;
/// Lost offsets shown per client in a failure.
const SHOWN: usize = 8;

/// One reconnect of one client: when its connection ended (and with what close code), and
/// when every channel was subscribed again (`None` while it is still away).
#[derive(Debug, Clone)]
pub struct Reconnect {
    pub client: usize,
    pub down_at: Instant,
    pub code: Option<u16>,
    pub up_at: Option<Instant>,
}

impl Reconnect {
    /// Disconnect → resubscribed, when it came back.
    pub fn took(&self) -> Option<Duration> {
        self.up_at.map(|up| up.duration_since(self.down_at))
    }
}

#[derive(Default)]
struct ChannelTally {
    /// The offset the first subscribe started after: later acknowledged ones are expected.
    start: u64,
    epoch: String,
    seen: BTreeSet<u64>,
    max: u64,
    received: u64,
    duplicated: u64,
    reordered: u64,
    epoch_changes: u64,
}

#[derive(Default)]
struct Tally {
    channels: HashMap<String, ChannelTally>,
    reconnects: Vec<Reconnect>,
    /// Channels still to be resubscribed after the current reconnect.
    awaiting: usize,
    away: bool,
    not_recovered: u64,
    /// Resubscribes the server asked for without a disconnect.
    resubscribes: u64,
    gave_up: bool,
    closed: bool,
}

impl Tally {
    fn on(&mut self, index: usize, event: Event, channels: usize) {
        let now = Instant::now();
        match event {
            Event::Publication(p) => {
                let Some(ch) = self.channels.get_mut(&p.channel) else { return };
                ch.received += 1;
                if !ch.epoch.is_empty() && p.epoch != ch.epoch {
                    ch.epoch_changes += 1;
                    ch.seen.clear();
                    ch.max = 0;
                }
                ch.epoch = p.epoch;
                if !ch.seen.insert(p.offset) {
                    ch.duplicated += 1;
                } else if p.offset < ch.max {
                    ch.reordered += 1;
                }
                ch.max = ch.max.max(p.offset);
            }
            Event::Disconnected { code, reconnecting, .. } => {
                if !self.away {
                    self.reconnects.push(Reconnect { client: index, down_at: now, code, up_at: None });
                }
                self.away = true;
                self.awaiting = channels;
                self.gave_up |= !reconnecting;
            }
            Event::Connected { .. } if self.away && channels == 0 => self.back(now),
            Event::Resubscribed { recovered, .. } => {
                if !recovered {
                    self.not_recovered += 1;
                }
                if self.away {
                    self.awaiting = self.awaiting.saturating_sub(1);
                    if self.awaiting == 0 {
                        self.back(now);
                    }
                } else {
                    self.resubscribes += 1;
                }
            }
            _ => {}
        }
    }

    fn back(&mut self, now: Instant) {
        self.away = false;
        if let Some(r) = self.reconnects.last_mut() {
            r.up_at = Some(now);
        }
    }
}

struct Member {
    tally: Arc<Mutex<Tally>>,
    close: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// N client sessions, each subscribed to every channel of the fleet, counting.
pub struct Fleet {
    channels: Vec<String>,
    members: Vec<Member>,
}

impl Fleet {
    /// Connects `n` clients, client `i` with `config(i)` (reconnect should be on), and
    /// subscribes each to every one of `channels` (namespaces with history). A client that
    /// cannot connect is retried until a deadline, then the call panics.
    pub async fn connect(n: usize, channels: &[&str], config: impl Fn(usize) -> ClientConfig) -> Fleet {
        let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
        let configs: Vec<ClientConfig> = (0..n).map(config).collect();
        let mut members: Vec<(usize, Member)> = futures_util::stream::iter(configs.into_iter().enumerate())
            .map(|(i, config)| {
                let channels = channels.clone();
                async move { (i, join(i, config, channels).await) }
            })
            .buffer_unordered(CONNECT_CONCURRENCY)
            .collect()
            .await;
        members.sort_by_key(|(i, _)| *i);
        Fleet { channels, members: members.into_iter().map(|(_, m)| m).collect() }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every reconnect so far, of every client, in client order.
    pub fn reconnects(&self) -> Vec<Reconnect> {
        self.members.iter().flat_map(|m| m.tally.lock().unwrap().reconnects.clone()).collect()
    }

    /// Clients connected with every channel subscribed (not away).
    pub fn present(&self) -> usize {
        self.members.iter().filter(|m| !m.tally.lock().unwrap().away).count()
    }

    /// Waits until every client is back (no reconnect under way), or fails after `within`.
    pub async fn wait_all_present(&self, within: Duration) -> Result<(), String> {
        wait_for(within, || self.present() == self.len())
            .await
            .map_err(|_| format!("{} of {} clients present after {within:?}", self.present(), self.len()))
    }

    /// Waits until every client has received the last publication `publishers` had
    /// acknowledged on its channel, or gives up after `within` (the summary then shows what
    /// is missing).
    pub async fn settle(&self, publishers: &[&Publisher], within: Duration) -> Result<(), String> {
        let last: Vec<(String, u64)> =
            publishers.iter().filter_map(|p| p.last_offset().map(|o| (p.channel.clone(), o))).collect();
        let behind = || {
            self.members
                .iter()
                .filter(|m| {
                    let t = m.tally.lock().unwrap();
                    !t.gave_up && last.iter().any(|(c, o)| t.channels.get(c).is_some_and(|ch| ch.max < *o))
                })
                .count()
        };
        wait_for(within, || behind() == 0)
            .await
            .map_err(|_| format!("{} clients still behind the last publication after {within:?}", behind()))
    }

    /// Closes every client (a clean leave) and waits for their tasks.
    pub async fn close(&mut self) {
        for m in &mut self.members {
            if let Some(close) = m.close.take() {
                let _ = close.send(());
            }
        }
        for m in &mut self.members {
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut m.task).await;
        }
    }

    /// The figures of this fleet against what `publishers` had acknowledged.
    pub fn summary(&self, scenario: &str, publishers: &[&Publisher]) -> Summary {
        let mut s = Summary { scenario: scenario.to_owned(), clients: self.len(), ..Summary::default() };
        let acked: Vec<(String, Vec<u64>)> =
            publishers.iter().map(|p| (p.channel.clone(), p.acked().iter().map(|a| a.offset).collect())).collect();
        for p in publishers {
            s.published += p.acked().len() as u64;
            s.publish_failed += p.failed();
            s.publish_retries += p.retries();
        }
        let mut took = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            let t = m.tally.lock().unwrap();
            s.not_recovered += t.not_recovered;
            s.resubscribes += t.resubscribes;
            s.gave_up += t.gave_up as u64;
            for r in &t.reconnects {
                s.reconnects += 1;
                *s.close_codes.entry(r.code).or_default() += 1;
                match r.took() {
                    Some(d) => took.push(d),
                    None => s.away += 1,
                }
            }
            for (channel, offsets) in &acked {
                let Some(ch) = t.channels.get(channel) else { continue };
                s.received += ch.received;
                s.duplicated += ch.duplicated;
                s.reordered += ch.reordered;
                s.epoch_changes += ch.epoch_changes;
                let lost: Vec<u64> =
                    offsets.iter().copied().filter(|o| *o > ch.start && !ch.seen.contains(o)).collect();
                if !lost.is_empty() {
                    s.lost += lost.len() as u64;
                    if s.details.len() < SHOWN {
                        let shown: Vec<u64> = lost.iter().copied().take(SHOWN).collect();
                        s.details.push(format!(
                            "client {i} on {channel}: lost {} (first {shown:?}), started after {}, max seen {}",
                            lost.len(),
                            ch.start,
                            ch.max
                        ));
                    }
                }
                if (ch.duplicated > 0 || ch.reordered > 0) && s.details.len() < SHOWN {
                    s.details.push(format!(
                        "client {i} on {channel}: {} duplicated, {} reordered",
                        ch.duplicated, ch.reordered
                    ));
                }
            }
        }
        took.sort();
        let pct = |q: f64| took.get(((took.len() as f64 - 1.0) * q).round() as usize).copied();
        s.reconnect_p50 = pct(0.5);
        s.reconnect_p99 = pct(0.99);
        s.reconnect_max = took.last().copied();
        s
    }

    /// The channels every client holds.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for m in &self.members {
            m.task.abort();
        }
    }
}

/// Connects one client and subscribes it, retrying until [`CONNECT_DEADLINE`].
async fn join(index: usize, config: ClientConfig, channels: Vec<String>) -> Member {
    let deadline = Instant::now() + CONNECT_DEADLINE;
    let (client, tally) = loop {
        match subscribed(&config, &channels).await {
            Ok(joined) => break joined,
            // Expected while the cluster settles; a final failure panics with its cause.
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("client {index} could not connect and subscribe within {CONNECT_DEADLINE:?}: {e}"),
        }
    };
    let tally = Arc::new(Mutex::new(tally));
    let (close, mut closed) = tokio::sync::oneshot::channel();
    let counted = tally.clone();
    let n = channels.len();
    let task = tokio::spawn(async move {
        let mut client = client;
        loop {
            tokio::select! {
                event = client.next_event() => match event {
                    Some(e) => counted.lock().unwrap().on(index, e, n),
                    None => {
                        counted.lock().unwrap().gave_up = true;
                        return;
                    }
                },
                _ = &mut closed => {
                    counted.lock().unwrap().closed = true;
                    client.close().await;
                    return;
                }
            }
        }
    });
    Member { tally, close: Some(close), task }
}

async fn subscribed(config: &ClientConfig, channels: &[String]) -> Result<(Client, Tally), String> {
    let client = Client::connect(config.clone()).await.map_err(|e| e.to_string())?;
    let mut tally = Tally::default();
    for channel in channels {
        let r = client.subscribe(channel).await.map_err(|e| format!("subscribe {channel}: {e}"))?;
        if !r.history {
            return Err(format!("{channel} keeps no history: nothing can be counted"));
        }
        tally.channels.insert(channel.clone(), ChannelTally { start: r.offset, epoch: r.epoch, ..Default::default() });
    }
    Ok((client, tally))
}

/// Polls `done` every 20 ms until it holds, or errs after `within`.
pub async fn wait_for(within: Duration, mut done: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// One acknowledged publication.
#[derive(Debug, Clone)]
pub struct Acked {
    pub seq: u64,
    pub offset: u64,
    pub epoch: String,
    pub at: Instant,
}

#[derive(Default)]
struct PublisherState {
    acked: Vec<Acked>,
    failed: u64,
    retries: u64,
}

/// Publishes `seq` (0, 1, 2, … as JSON numbers) on one channel at a steady rate through
/// the gRPC API, each with its own idempotency key, through `apis` in turn (publishing
/// through every control replica). A publish that fails or takes over 2 s is retried with
/// the same key on the next API until
/// `retry_for` has passed, then counted as failed; publishes stay sequential, so offsets
/// are acknowledged in order.
pub struct Publisher {
    pub channel: String,
    state: Arc<Mutex<PublisherState>>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// How long one attempt of a publish may take before it is retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

impl Publisher {
    /// Starts publishing on `channel` through `apis` (tried in turn) at `rate` per second.
    pub fn start(channel: &str, apis: Vec<Api>, rate: f64, retry_for: Duration) -> Publisher {
        assert!(!apis.is_empty() && rate > 0.0);
        let state = Arc::new(Mutex::new(PublisherState::default()));
        let (stop, mut stopped) = watch::channel(false);
        let run = format!("{:x}", fastrand::u64(..));
        let task = {
            let state = state.clone();
            let channel = channel.to_owned();
            tokio::spawn(async move {
                let mut apis = apis;
                let mut next_api = 0;
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for seq in 0u64.. {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.wait_for(|s| *s) => return,
                    }
                    let key = format!("{run}-{seq}");
                    let given_up = Instant::now() + retry_for;
                    loop {
                        let n = apis.len();
                        let api = &mut apis[next_api % n];
                        let req = pb::PublishApiRequest {
                            channel: channel.clone(),
                            data: Bytes::from(seq.to_string()),
                            idempotency_key: key.clone(),
                        };
                        match tokio::time::timeout(ATTEMPT_TIMEOUT, api.publish(req)).await {
                            Ok(Ok(r)) => {
                                let r = r.into_inner();
                                let acked = Acked { seq, offset: r.offset, epoch: r.epoch, at: Instant::now() };
                                state.lock().unwrap().acked.push(acked);
                                next_api += 1;
                                break;
                            }
                            _ if Instant::now() < given_up => {
                                state.lock().unwrap().retries += 1;
                                next_api += 1;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            _ => {
                                state.lock().unwrap().failed += 1;
                                break;
                            }
                        }
                    }
                }
            })
        };
        Publisher { channel: channel.to_owned(), state, stop, task: Some(task) }
    }

    /// Publishes `seq` on `channel` at `rate` per second from a client session (the client
    /// publish path: the gateway, not the gRPC API). A client publish carries no idempotency
    /// key, so a failed one is counted as failed, not retried (a retry could duplicate), and
    /// one is waited for as long as the client library waits for any reply.
    pub fn start_client(channel: &str, client: Client, rate: f64) -> Publisher {
        assert!(rate > 0.0);
        let state = Arc::new(Mutex::new(PublisherState::default()));
        let (stop, mut stopped) = watch::channel(false);
        let task = {
            let state = state.clone();
            let channel = channel.to_owned();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for seq in 0u64.. {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.wait_for(|s| *s) => break,
                    }
                    // Bounded by the client library's request timeout (10 s by default), not
                    // ATTEMPT_TIMEOUT: a slow answer here is not retried, so it is waited for.
                    match client.publish(&channel, Bytes::from(seq.to_string())).await {
                        Ok(r) => {
                            let acked = Acked { seq, offset: r.offset, epoch: r.epoch, at: Instant::now() };
                            state.lock().unwrap().acked.push(acked);
                        }
                        _ => state.lock().unwrap().failed += 1,
                    }
                }
                client.close().await;
            })
        };
        Publisher { channel: channel.to_owned(), state, stop, task: Some(task) }
    }

    /// Stops after the publish under way (if any) is answered or given up.
    pub async fn stop(&mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn acked(&self) -> Vec<Acked> {
        self.state.lock().unwrap().acked.clone()
    }

    pub fn published(&self) -> usize {
        self.state.lock().unwrap().acked.len()
    }

    pub fn last_offset(&self) -> Option<u64> {
        self.state.lock().unwrap().acked.last().map(|a| a.offset)
    }

    /// Publishes given up after `retry_for`.
    pub fn failed(&self) -> u64 {
        self.state.lock().unwrap().failed
    }

    /// Attempts that failed and were tried again.
    pub fn retries(&self) -> u64 {
        self.state.lock().unwrap().retries
    }

    /// Waits until `n` more publications than now are acknowledged, or errs after `within`.
    pub async fn wait_more(&self, n: usize, within: Duration) -> Result<(), String> {
        let target = self.published() + n;
        wait_for(within, || self.published() >= target)
            .await
            .map_err(|_| format!("{} published, {target} expected within {within:?}", self.published()))
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub scenario: String,
    pub clients: usize,
    /// Acknowledged publications (all channels).
    pub published: u64,
    pub publish_failed: u64,
    pub publish_retries: u64,
    /// Publications received (all clients, all channels, duplicates included).
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub epoch_changes: u64,
    pub reconnects: u64,
    /// Reconnects not back yet when the summary was made.
    pub away: u64,
    pub reconnect_p50: Option<Duration>,
    pub reconnect_p99: Option<Duration>,
    pub reconnect_max: Option<Duration>,
    pub not_recovered: u64,
    pub resubscribes: u64,
    pub gave_up: u64,
    pub close_codes: BTreeMap<Option<u16>, u64>,
    /// The first clients with losses, duplicates or reorders.
    pub details: Vec<String>,
}

impl Summary {
    /// Panics, printing the figures and the details, unless nothing was lost, duplicated or
    /// reordered, every client is back and subscribed from where it was (recovered), and
    /// every publish was acknowledged.
    pub fn assert_lossless(&self) {
        let clean = self.lost == 0
            && self.duplicated == 0
            && self.reordered == 0
            && self.not_recovered == 0
            && self.gave_up == 0
            && self.away == 0
            && self.publish_failed == 0
            && self.published > 0;
        assert!(clean, "{self}\n{}", self.details.join("\n"));
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{}ms", d.as_millis()))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<String> = self
            .close_codes
            .iter()
            .map(|(c, n)| format!("{}:{n}", c.map_or("none".to_owned(), |c| c.to_string())))
            .collect();
        write!(
            f,
            "{}: clients {} published {} (retried {}, failed {}) received {} lost {} duplicated {} reordered {} \
             epoch-changes {} reconnects {} (away {}, codes [{}]) reconnect p50 {} p99 {} max {} not-recovered {} \
             resubscribes {} gave-up {}",
            self.scenario,
            self.clients,
            self.published,
            self.publish_retries,
            self.publish_failed,
            self.received,
            self.lost,
            self.duplicated,
            self.reordered,
            self.epoch_changes,
            self.reconnects,
            self.away,
            codes.join(" "),
            ms(self.reconnect_p50),
            ms(self.reconnect_p99),
            ms(self.reconnect_max),
            self.not_recovered,
            self.resubscribes,
            self.gave_up,
        )
    }
}
