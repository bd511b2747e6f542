//! The jitter scenario's subscriber: a client whose connection is cut every `--cut-every`
//! (its first cut at a random point of the first interval) for `--offline`, then reconnects
//! and resumes the way its system's recovery story says:
//!
//! - `switchboard`: subscribe with `recover` = the offset and epoch of the last publication
//!   received (or of the last `subscribe` reply), per `docs/protocol.md` "History and
//!   recovery"; an `unsubscribed` push with `resubscribe` is answered the same way;
//! - `socketio`: connection state recovery, the namespace connect carrying the session's
//!   private id and the offset of the last event (`40{"pid":…,"offset":…}`); when the server
//!   answers with a new session, the client joins its room again;
//! - `nats-ws`: subscribe again; NATS has no recovery, so this is the baseline.
//!
//! Each connection of a client goes to the next of the `--url`s, so with several gateways (or
//! Socket.IO processes) a client resumes on another one than it was cut from.
//!
//! A cut is what a network drop looks like to the server: the socket is closed with a reset
//! (`SO_LINGER` 0), no close frame, no FIN handshake. One sequence is kept across all the
//! connections of a client, so whatever recovery missed counts as lost and whatever it
//! repeated as duplicated.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

use crate::Target;
use crate::accounting::{self, Arrival, Percentiles, Stream, Tally, record_ns};
use crate::conn::{self, End, OPEN_TIMEOUT, Outcome, Role};
use crate::payload;
use crate::proto::{Msg, Proto};
use crate::run::{Ctx, Phase};
use crate::ws;

/// Most frames read per wake-up before the task lets others run.
const READS_PER_WAKE: usize = 16;
/// Time between two attempts to reconnect when one failed.
const RETRY: Duration = Duration::from_millis(100);

/// How the jitter scenario cuts its subscribers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cuts {
    pub every: Duration,
    pub offline: Duration,
}

/// What one jitter subscriber went through, besides what it received.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientStats {
    /// Times its connection was cut.
    pub cuts: u32,
    /// Connections after the first that completed their hello (subscribed again).
    pub reconnects: u32,
    /// Reconnects that resumed nothing: the server refused or could not recover
    /// (Switchboard `recovered: false`, Socket.IO a new session), there was no position to
    /// resume from, or the system has no recovery (NATS: every reconnect).
    pub not_recovered: u32,
    /// Switchboard `unsubscribed` pushes (with `resubscribe`), each answered by resuming.
    pub resubscribes: u32,
    /// Connection attempts that failed (each retried after 100 ms).
    pub failed_attempts: u32,
    /// Switchboard: epoch changes seen on the channel.
    pub epoch_changes: u32,
    /// Switchboard: a `subscribe` reply said the namespace keeps no history.
    pub no_history: bool,
    /// Per reconnect: from the end of the offline time to subscribed again, in nanoseconds.
    pub reconnect_ns: Vec<u64>,
}

/// The jitter figures of a run, per client and in all.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JitterReport {
    pub cut_every_s: f64,
    pub offline_s: f64,
    /// Subscribers that connected (the publications owed to each are every publication of
    /// the run: all of them were subscribed before publishing started, and stayed clients
    /// until the end).
    pub clients: u64,
    /// Distinct publications received over publications owed, every client together, in %.
    pub delivery_pct: f64,
    pub delivery_pct_per_client: Spread,
    pub lost_per_client: Spread,
    pub duplicated_per_client: Spread,
    pub reordered_per_client: Spread,
    /// Clients that received every publication once and in order.
    pub clients_complete: u64,
    pub cuts: u64,
    pub reconnects: u64,
    pub not_recovered: u64,
    pub resubscribes: u64,
    pub failed_attempts: u64,
    pub epoch_changes: u64,
    /// Switchboard: the channel's namespace keeps no history, so nothing could be recovered.
    pub no_history: bool,
    /// From the end of the offline time to subscribed again.
    pub reconnect_ms: Percentiles,
}

/// The least, the mean and the most of a figure over the clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

// === impl Spread ===

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let (mut n, mut sum, mut min, mut max) = (0usize, 0.0, f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            n += 1;
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        if n == 0 {
            return Spread::default();
        }
        Spread { min, mean: sum / n as f64, max }
    }
}

/// One client's figures, from its sequence and what it went through: the part of
/// [`JitterReport`] that is per client.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ClientFigures {
    received_unique: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
}

/// Adds up the jitter subscribers' outcomes against `published` publications.
pub fn summarize(cuts: Cuts, published: u64, outcomes: &[Outcome]) -> JitterReport {
    let clients: Vec<(ClientFigures, &ClientStats)> = outcomes
        .iter()
        .filter(|o| o.connected)
        .filter_map(|o| {
            let stats = o.jitter.as_ref()?;
            let lost = o.streams.first().map_or(published, |s| s.lost(published));
            let figures = ClientFigures {
                received_unique: published - lost,
                lost,
                duplicated: o.tally.duplicated,
                reordered: o.tally.reordered,
            };
            Some((figures, stats))
        })
        .collect();
    let pct = |part: u64, whole: u64| if whole == 0 { 100.0 } else { part as f64 * 100.0 / whole as f64 };
    let mut reconnects = accounting::histogram();
    for (_, s) in &clients {
        for &ns in &s.reconnect_ns {
            record_ns(&mut reconnects, ns);
        }
    }
    let sum = |f: fn(&ClientStats) -> u32| clients.iter().map(|(_, s)| u64::from(f(s))).sum::<u64>();
    let owed = published * clients.len() as u64;
    JitterReport {
        cut_every_s: cuts.every.as_secs_f64(),
        offline_s: cuts.offline.as_secs_f64(),
        clients: clients.len() as u64,
        delivery_pct: pct(clients.iter().map(|(f, _)| f.received_unique).sum(), owed),
        delivery_pct_per_client: Spread::of(clients.iter().map(|(f, _)| pct(f.received_unique, published))),
        lost_per_client: Spread::of(clients.iter().map(|(f, _)| f.lost as f64)),
        duplicated_per_client: Spread::of(clients.iter().map(|(f, _)| f.duplicated as f64)),
        reordered_per_client: Spread::of(clients.iter().map(|(f, _)| f.reordered as f64)),
        clients_complete: clients.iter().filter(|(f, _)| f.lost + f.duplicated + f.reordered == 0).count() as u64,
        cuts: sum(|s| s.cuts),
        reconnects: sum(|s| s.reconnects),
        not_recovered: sum(|s| s.not_recovered),
        resubscribes: sum(|s| s.resubscribes),
        failed_attempts: sum(|s| s.failed_attempts),
        epoch_changes: sum(|s| s.epoch_changes),
        no_history: clients.iter().any(|(_, s)| s.no_history),
        reconnect_ms: accounting::percentiles(&reconnects),
    }
}

/// Runs jitter subscriber `index` for the whole run: the first connect (holding `permit`,
/// its latency or error sent on `results`, as every connection of a run does), then serve,
/// cut, stay offline, resume, until the run stops.
pub async fn client(
    ctx: Arc<Ctx>,
    index: usize,
    role: Role,
    permit: OwnedSemaphorePermit,
    results: mpsc::UnboundedSender<Result<Duration, String>>,
) -> Outcome {
    let mut outcome = Outcome { role, ..Outcome::default() };
    let (Some(cuts), Some(channel)) = (ctx.jitter, role.subscribe) else { return outcome };
    let mut client = Client::default();
    let started = Instant::now();
    let first = tokio::time::timeout(OPEN_TIMEOUT, client.open(&ctx, index, channel))
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
    drop(permit);
    let mut link = match first {
        Ok(link) => link,
        Err(e) => {
            ctx.failed.fetch_add(1, Relaxed);
            let _ = results.send(Err(e));
            return outcome;
        }
    };
    outcome.connected = true;
    // A jitter client stays a client while it is offline: what is owed to it does not
    // pause, so it counts as subscribed for the whole run.
    ctx.subscribed[channel].fetch_add(1, Relaxed);
    ctx.connected.fetch_add(1, Relaxed);
    let _ = results.send(Ok(started.elapsed()));
    drop(results);

    let mut phase = ctx.phase.clone();
    let mut next_cut = None;
    'run: loop {
        match client.serve(&ctx, index, &mut link, &mut phase, &mut next_cut, cuts).await {
            Why::Stop => {
                // Say goodbye without waiting for the answer.
                link.proto.close();
                let _ = link.stream.try_write(&link.proto.out);
                break;
            }
            Why::Cut => {
                client.stats.cuts += 1;
                ctx.connected.fetch_sub(1, Relaxed);
                // A reset, as the server sees a network drop: no close frame, no FIN.
                let _ = link.stream.set_zero_linger();
                drop(link);
                if until_stop(&mut phase, tokio::time::sleep(cuts.offline)).await.is_none() {
                    break;
                }
            }
            Why::Lost(end) => {
                tracing::debug!(index, ?end, "connection lost; resuming");
                ctx.connected.fetch_sub(1, Relaxed);
                drop(link);
            }
        }
        let back = Instant::now();
        loop {
            let attempt = tokio::time::timeout(OPEN_TIMEOUT, client.open(&ctx, index, channel));
            match until_stop(&mut phase, attempt).await {
                None => break 'run,
                Some(Ok(Ok(l))) => {
                    link = l;
                    ctx.connected.fetch_add(1, Relaxed);
                    client.stats.reconnects += 1;
                    client.stats.reconnect_ns.push(back.elapsed().as_nanos() as u64);
                    break;
                }
                Some(Ok(Err(e))) => tracing::debug!(index, error = %e, "reconnect failed"),
                Some(Err(_)) => tracing::debug!(index, "reconnect timed out"),
            }
            client.stats.failed_attempts += 1;
            if until_stop(&mut phase, tokio::time::sleep(RETRY)).await.is_none() {
                break 'run;
            }
        }
    }
    outcome.streams = vec![client.stream];
    outcome.tally = client.tally;
    outcome.jitter = Some(client.stats);
    outcome
}

/// Runs `f` unless the run stops first (`None`).
async fn until_stop<F: Future>(phase: &mut watch::Receiver<Phase>, f: F) -> Option<F::Output> {
    tokio::select! {
        out = f => Some(out),
        _ = phase.wait_for(|p| *p == Phase::Stop) => None,
    }
}

/// Why serving a connection ended.
#[derive(Debug)]
enum Why {
    Stop,
    Cut,
    /// The server closed the connection, or asked for a resubscribe.
    Lost(End),
}

/// One connection of a client.
struct Link {
    stream: TcpStream,
    /// Bytes of an incomplete frame.
    rbuf: Vec<u8>,
    proto: Proto,
}

// === impl Link ===

impl Link {
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.proto.out.is_empty() {
            self.stream.write_all(&self.proto.out).await?;
            self.proto.out.clear();
        }
        Ok(())
    }
}

/// Where a client resumes from.
#[derive(Debug, Default)]
struct Resume {
    /// Switchboard: the offset and epoch of the last publication received, or of the last
    /// `subscribe` reply before any.
    offset: Option<u64>,
    epoch: String,
    /// Socket.IO: the session's private id and the offset of the last event received.
    pid: String,
    sio_offset: String,
}

/// What a client keeps across its connections.
#[derive(Debug, Default)]
struct Client {
    stream: Stream,
    tally: Tally,
    resume: Resume,
    stats: ClientStats,
    /// Connections that completed their hello.
    connections: u32,
}

/// What a hello step waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Nothing,
    Reply(u32),
    Ready,
}

// === impl Client ===

impl Client {
    /// Dials, upgrades and subscribes, resuming when this is not the first connection.
    async fn open(&mut self, ctx: &Ctx, index: usize, channel: usize) -> Result<Link, String> {
        // Each connection goes to the next URL, as a load balancer may send a client that
        // comes back to another gateway (or process) than before.
        let at = index + self.connections as usize;
        let url = &ctx.urls[at % ctx.urls.len()];
        let mut stream = conn::dial(ctx, at).await.map_err(|e| format!("connect to {}: {e}", url.authority))?;
        let leftover = ws::upgrade(&mut stream, url, ctx.target.subprotocol()).await.map_err(|e| e.to_string())?;
        let mut link = Link { stream, rbuf: Vec::new(), proto: Proto::new(ctx.target) };
        let name = ctx.channels[channel].as_str();
        let resuming = self.connections > 0;
        let wait = match ctx.target {
            Target::Switchboard => {
                let recover = self.resume.offset.filter(|_| resuming).map(|o| (o, self.resume.epoch.as_str()));
                Wait::Reply(link.proto.switchboard_resume(name, &ctx.connect, recover))
            }
            Target::NatsWs => {
                link.proto.hello(Some(name), &ctx.connect);
                Wait::Ready
            }
            Target::Socketio => {
                if resuming && !self.resume.pid.is_empty() && !self.resume.sio_offset.is_empty() {
                    link.proto.socketio_resume(&self.resume.pid, &self.resume.sio_offset);
                } else {
                    link.proto.hello(None, &ctx.connect);
                }
                Wait::Ready
            }
            Target::Floor => return Err("the floor has no subscriptions to resume".into()),
        };
        let mut recovered = self.step(ctx, index, &mut link, &leftover, wait).await?;
        if ctx.target == Target::Socketio && !recovered {
            let id = link.proto.socketio_join(name).expect("a socket.io connection");
            self.step(ctx, index, &mut link, &[], Wait::Reply(id)).await?;
        }
        if ctx.target == Target::NatsWs {
            recovered = false;
        }
        if resuming && !recovered {
            self.stats.not_recovered += 1;
        }
        self.connections += 1;
        Ok(link)
    }

    /// Sends what the hello queued and reads until `wait` is answered, recording every
    /// publication that arrives meanwhile. Returns whether the answer says the session or
    /// subscription was recovered.
    async fn step(
        &mut self,
        ctx: &Ctx,
        index: usize,
        link: &mut Link,
        leftover: &[u8],
        wait: Wait,
    ) -> Result<bool, String> {
        let mut seen = Seen::new(ctx, index, wait);
        if !leftover.is_empty() {
            let used = link.proto.process(leftover, &mut |m| seen.msg(self, m)).map_err(|e| e.0.to_owned())?;
            link.rbuf.extend_from_slice(&leftover[used..]);
        }
        loop {
            link.flush().await.map_err(|e| e.to_string())?;
            if let Some(done) = seen.done.take() {
                seen.settle();
                return done.map(|()| seen.recovered);
            }
            if let Some(end) = seen.end.take() {
                return Err(format!("connection ended during the hello: {end:?}"));
            }
            link.stream.readable().await.map_err(|e| e.to_string())?;
            self.read_ready(link, &mut seen);
            seen.settle();
        }
    }

    /// Reads publications until the run stops, the cut is due (while publishing), or the
    /// connection is lost.
    async fn serve(
        &mut self,
        ctx: &Ctx,
        index: usize,
        link: &mut Link,
        phase: &mut watch::Receiver<Phase>,
        next_cut: &mut Option<Instant>,
        cuts: Cuts,
    ) -> Why {
        loop {
            let now_phase = *phase.borrow_and_update();
            match now_phase {
                Phase::Stop => return Why::Stop,
                Phase::Publish if next_cut.is_none() => {
                    *next_cut = Some(Instant::now() + cuts.every.mul_f64(fastrand::f64()));
                }
                _ => {}
            }
            let cut_at = next_cut.filter(|_| now_phase == Phase::Publish);
            tokio::select! {
                changed = phase.changed() => if changed.is_err() { return Why::Stop },
                ready = link.stream.readable() => {
                    if let Err(e) = ready {
                        return Why::Lost(End::Error(e.to_string()));
                    }
                    if let Some(end) = self.pump(ctx, index, link) {
                        return Why::Lost(end);
                    }
                }
                _ = tokio::time::sleep_until(cut_at.unwrap_or_else(Instant::now).into()), if cut_at.is_some() => {
                    *next_cut = cut_at.map(|at| at + cuts.every);
                    return Why::Cut;
                }
            }
            if let Err(e) = link.flush().await {
                return Why::Lost(End::Error(e.to_string()));
            }
        }
    }

    /// Reads and handles whatever is ready; how the connection ended, if it did.
    fn pump(&mut self, ctx: &Ctx, index: usize, link: &mut Link) -> Option<End> {
        let mut seen = Seen::new(ctx, index, Wait::Nothing);
        self.read_ready(link, &mut seen);
        seen.settle();
        seen.end
    }

    /// Reads what the socket has (up to `READS_PER_WAKE` reads) and hands each message to
    /// `seen`; an end of stream or a read error is left in `seen.end`.
    fn read_ready(&mut self, link: &mut Link, seen: &mut Seen<'_>) {
        for _ in 0..READS_PER_WAKE {
            match conn::read_some(&link.stream, &mut link.rbuf, &mut link.proto, &mut |m| seen.msg(self, m)) {
                Ok(0) => {
                    seen.end.get_or_insert(End::Eof);
                    return;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    seen.end.get_or_insert(End::Error(e.to_string()));
                    return;
                }
            }
        }
    }
}

/// What a batch of reads brought, handled message by message.
struct Seen<'a> {
    ctx: &'a Ctx,
    index: usize,
    wait: Wait,
    done: Option<Result<(), String>>,
    recovered: bool,
    end: Option<End>,
    delivered: u64,
    unique: u64,
}

// === impl Seen ===

impl<'a> Seen<'a> {
    fn new(ctx: &'a Ctx, index: usize, wait: Wait) -> Seen<'a> {
        Seen { ctx, index, wait, done: None, recovered: false, end: None, delivered: 0, unique: 0 }
    }

    /// Adds the batch's deliveries to the run's counters.
    fn settle(&mut self) {
        let ctx = self.ctx;
        if self.delivered > 0 {
            ctx.delivered.fetch_add(std::mem::take(&mut self.delivered), Relaxed);
        }
        if self.unique > 0 {
            ctx.unique.fetch_add(std::mem::take(&mut self.unique), Relaxed);
        }
    }

    fn msg(&mut self, client: &mut Client, m: Msg<'_>) {
        let target = self.ctx.target;
        match m {
            Msg::Data(data) => {
                if target == Target::Switchboard && data.starts_with(b"{\"unsubscribed\":") {
                    client.stats.resubscribes += 1;
                    self.end.get_or_insert(End::Closed { code: None, slow: false });
                    return;
                }
                let Some(stamp) = payload::decode(data) else { return };
                match target {
                    Target::Switchboard => {
                        if let Some((offset, epoch)) = switchboard_position(data) {
                            client.moved_to(offset, epoch);
                        }
                    }
                    Target::Socketio => {
                        if let Some(offset) = socketio_offset(data) {
                            client.resume.sio_offset.clear();
                            client.resume.sio_offset.push_str(offset);
                        }
                    }
                    Target::NatsWs | Target::Floor => {}
                }
                let mut h = self.ctx.hist.shard(self.index).lock().unwrap();
                record_ns(&mut h, payload::now_ns().saturating_sub(stamp.t));
                drop(h);
                let arrival = client.stream.record(stamp.s);
                client.tally.count(arrival);
                self.delivered += 1;
                if arrival != Arrival::Duplicate {
                    self.unique += 1;
                }
            }
            Msg::Reply { id, error, body } if self.wait == Wait::Reply(id) => {
                self.wait = Wait::Nothing;
                if error {
                    self.done = Some(Err(format!("refused: {}", String::from_utf8_lossy(body))));
                    return;
                }
                if target == Target::Switchboard {
                    let reply = SubscribeReply::parse(body);
                    self.recovered = reply.recovered;
                    client.stats.no_history |= !reply.history;
                    if let (Some(offset), Some(epoch), false) = (reply.offset, reply.epoch, reply.recovered) {
                        // Not recovered: what was missed is gone, and live publications
                        // follow this position. Recovered: the publications after the
                        // position asked for follow the reply, so the position stays.
                        if client.resume.offset.is_none() || client.resume.epoch != epoch {
                            client.moved_to(offset, epoch);
                        }
                    }
                }
                self.done = Some(Ok(()));
            }
            Msg::Ready(body) if self.wait == Wait::Ready => {
                self.wait = Wait::Nothing;
                if target == Target::Socketio {
                    let pid = json_string(body, b"\"pid\":\"").unwrap_or("");
                    self.recovered = !pid.is_empty() && pid == client.resume.pid;
                    client.resume.pid.clear();
                    client.resume.pid.push_str(pid);
                }
                self.done = Some(Ok(()));
            }
            Msg::Refused(text) => {
                if self.wait != Wait::Nothing {
                    self.wait = Wait::Nothing;
                    self.done = Some(Err(String::from_utf8_lossy(text).into_owned()));
                }
            }
            Msg::Closed { code, slow } => {
                self.end.get_or_insert(End::Closed { code, slow });
            }
            Msg::Reply { .. } | Msg::Ready(_) => {}
        }
    }
}

impl Client {
    /// The channel's position moved to `offset` in `epoch`.
    fn moved_to(&mut self, offset: u64, epoch: &str) {
        if self.resume.epoch != epoch {
            if !self.resume.epoch.is_empty() {
                self.stats.epoch_changes += 1;
            }
            self.resume.epoch.clear();
            self.resume.epoch.push_str(epoch);
        }
        self.resume.offset = Some(offset);
    }
}

/// The offset and epoch of a Switchboard `pub` push (`{"pub":{"channel":…,"offset":N,
/// "epoch":"E","data":…}}`); `None` in a live-only namespace, which gives neither. Channel
/// names cannot hold a quote, so the first `"offset":` is the push's own.
fn switchboard_position(push: &[u8]) -> Option<(u64, &str)> {
    let head = &push[..find(push, b"\"data\"").or_else(|| find(push, b"\"b64data\""))?];
    Some((json_number(head, b"\"offset\":")?, json_string(head, b"\"epoch\":\"")?))
}

/// What a Switchboard `subscribe` reply says.
#[derive(Debug, Default, PartialEq, Eq)]
struct SubscribeReply<'a> {
    offset: Option<u64>,
    epoch: Option<&'a str>,
    recovered: bool,
    history: bool,
}

// === impl SubscribeReply ===

impl<'a> SubscribeReply<'a> {
    fn parse(reply: &'a [u8]) -> SubscribeReply<'a> {
        SubscribeReply {
            offset: json_number(reply, b"\"offset\":"),
            epoch: json_string(reply, b"\"epoch\":\""),
            recovered: find(reply, b"\"recovered\":true").is_some(),
            history: find(reply, b"\"history\":true").is_some(),
        }
    }
}

/// The offset a Socket.IO server with connection state recovery appends to an event, as
/// its last argument: `42["m",{…},"OFFSET"]`.
fn socketio_offset(event: &[u8]) -> Option<&str> {
    let inner = event.strip_suffix(b"\"]")?;
    let open = inner.iter().rposition(|&b| b == b'"')?;
    let before = &inner[..open];
    if !before.ends_with(b",") {
        return None;
    }
    let offset = std::str::from_utf8(&inner[open + 1..]).ok()?;
    (!offset.is_empty()).then_some(offset)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The unsigned number after the first `key` (which includes the colon).
fn json_number(text: &[u8], key: &[u8]) -> Option<u64> {
    let rest = &text[find(text, key)? + key.len()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// The string after the first `key` (which includes the opening quote), up to its closing
/// quote; escapes are not expected (epochs and session ids are plain).
fn json_string<'t>(text: &'t [u8], key: &[u8]) -> Option<&'t str> {
    let rest = &text[find(text, key)? + key.len()..];
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

#[cfg(test)]
mod tests;
