//! The NATS bus: gateways and control replicas on one NATS cluster.
//!
//! Channel publications: one NATS subscription per channel per node (the gateway does the
//! interest counting), each with a small task that hands publications to the node's
//! [`Deliver`]. A live-only channel's publish is one core NATS publish on the channel's
//! subject; a history channel's is a JetStream publish, stored and then republished by its
//! stream on the same subject (see [`streams`]). No process sequences anything. A channel
//! event is a core NATS publish on the same subject with an [`EVENT_HEADER`], which no
//! stream stores; the channel's task hands it to [`Deliver::event`] outside the continuity.
//!
//! async-nats reconnects by itself and re-establishes every subscription; while it is not
//! connected, [`Bus::is_ready`] is false and requests fail as unavailable.
//!
//! Start-up is bounded: [`NatsBus::connect`] waits at most `connect_timeout` for the first
//! connection and then fails with one line naming every URL and why it could not be reached.
//!
//! A server that stops answering without closing the connection (frozen, partitioned) is
//! found by a liveness round trip every `ping_interval`: a request to the node's probe
//! subject, which nobody listens to, so the server itself answers "no responders". After
//! `max_missed_pongs` round trips in a row without an answer the connection counts as dead:
//! the bus reports not ready, refuses requests, and reconnects (to another server of the
//! pool when there is one). async-nats's own pings, every 60 s by default, would take
//! minutes to notice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, ServerAddr, client::RequestErrorKind, connection::State};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};
use futures_util::stream::StreamExt;
use switchboard_wire::Channel;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::metrics::BusMetrics;

mod security;
mod streams;
use crate::subjects::{Address, Subjects};
use crate::{
    BusError, Channels, Deliver, HistoryPage, HistoryQuery, Inbox, Incoming, MAX_BATCH, Message, Messages, Namespaces,
    Position, Publication, PublishOptions, ReplyTo,
};
pub use security::{NatsAuth, NatsTls};
use streams::{Continuity, Next, REMOVED_HEADER, Streams};

/// The header that marks a channel event ([`Channels::publish_event`]) on a channel's live
/// subject: a core NATS message there, never in a stream. Publications never carry it (a
/// live-only one has no headers, a republished one has its stream's), so telling them
/// apart costs a publication nothing.
pub const EVENT_HEADER: &str = "Sb-Event";

/// The same connection error is logged at most once per this interval (with a count).
const REPEAT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How to reach NATS.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URLs (`nats://host:port`); any one is enough, the rest are for failover.
    pub urls: Vec<String>,
    /// Subject prefix (see `subjects`).
    pub prefix: String,
    /// Connection name shown by the server (the node id).
    pub name: String,
    /// Time allowed for a request (publish, queries). Default 5 s.
    pub request_timeout: Duration,
    /// How long [`NatsBus::connect`] waits for the first connection before it fails.
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// Interval between liveness round trips to the server. Default 2 s.
    pub ping_interval: Duration,
    /// Round trips in a row without an answer after which the connection counts as dead
    /// (not ready, then a reconnect). Default 2: a frozen server is noticed within
    /// `ping_interval * (max_missed_pongs + 1)`, 6 s with the defaults.
    pub max_missed_pongs: u32,
    /// TLS towards the servers. Default: TLS only when a server asks for it.
    pub tls: NatsTls,
    /// Credentials for the servers. Default none.
    pub auth: NatsAuth,
    /// Which namespaces keep history (one JetStream stream each). Default: none.
    pub namespaces: Namespaces,
    /// Replicas of each history stream: 1 for a single server, 3 in a cluster. Default 1.
    pub history_replicas: usize,
}

impl NatsConfig {
    pub fn new(urls: Vec<String>, name: impl Into<String>) -> Self {
        NatsConfig {
            urls,
            prefix: crate::subjects::DEFAULT_PREFIX.into(),
            name: name.into(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(2),
            max_missed_pongs: 2,
            tls: NatsTls::default(),
            auth: NatsAuth::default(),
            namespaces: Namespaces::default(),
            history_replicas: 1,
        }
    }

    /// Checks the timers; the message names the field.
    pub fn validate(&self) -> Result<(), BusError> {
        let invalid = |m: &str| Err(BusError::Invalid(m.to_owned()));
        if self.urls.is_empty() {
            return invalid("no nats url given");
        }
        for u in &self.urls {
            u.parse::<ServerAddr>().map_err(|e| BusError::Invalid(format!("nats url {u:?}: {e}")))?;
        }
        if self.connect_timeout.is_zero() {
            return invalid("nats connect_timeout must be positive");
        }
        if self.ping_interval < Duration::from_millis(100) {
            return invalid("nats ping_interval must be at least 100ms");
        }
        if self.max_missed_pongs == 0 {
            return invalid("nats max_missed_pongs must be at least 1");
        }
        if !(1..=5).contains(&self.history_replicas) {
            return invalid("nats history_replicas must be from 1 to 5");
        }
        self.tls.validate()?;
        self.auth.validate()
    }
}

/// A node's handle on the NATS bus.
pub struct NatsBus {
    client: async_nats::Client,
    subjects: Subjects,
    deliver: Arc<dyn Deliver>,
    channels: Mutex<HashMap<Channel, JoinHandle<()>>>,
    streams: Arc<Streams>,
    /// Fault injection for the tests: republished messages to drop as if lost on the way.
    #[cfg(feature = "conformance")]
    lose: Arc<std::sync::atomic::AtomicUsize>,
    request_timeout: Duration,
    /// This node's probe subject: liveness round trips, and the barrier after a subscribe.
    probe: String,
    /// Set while the liveness round trips go unanswered (see the module doc).
    stalled: Arc<AtomicBool>,
    watchdog: JoinHandle<()>,
    metrics: BusMetrics,
}

// === impl NatsBus ===

impl NatsBus {
    /// Connects, waiting at most `config.connect_timeout` for the first connection; later
    /// losses are retried in the background without end.
    pub async fn connect(config: NatsConfig, deliver: Arc<dyn Deliver>) -> Result<NatsBus, BusError> {
        config.validate()?;
        let subjects = Subjects::new(&config.prefix).map_err(|e| BusError::Invalid(e.to_string()))?;
        let addrs = config
            .urls
            .iter()
            .map(|u| u.parse::<ServerAddr>().map_err(|e| BusError::Invalid(format!("nats url {u:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let metrics = BusMetrics::new();
        let log = Arc::new(EventLog::new(&config.name, &config.urls, metrics.clone()));
        let events = log.clone();
        let options = security::apply(async_nats::ConnectOptions::new(), &config.tls, &config.auth).await?;
        let client = options
            .name(&config.name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .ping_interval(config.ping_interval)
            .connection_timeout(config.ping_interval.saturating_mul(2).max(Duration::from_secs(2)))
            .event_callback(move |event| {
                let log = events.clone();
                async move { log.event(event) }
            })
            .connect(addrs.clone())
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + config.connect_timeout;
        while client.connection_state() != State::Connected {
            // Wrong credentials do not get better by waiting: say so at once.
            if log.refused_credentials() {
                return Err(BusError::Unavailable(format!(
                    "{} refused the credentials (authorization violation)",
                    config.urls.join(",")
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                let why = unreachable_reasons(&config.urls, &addrs, &config.tls).await;
                return Err(BusError::Unavailable(format!(
                    "cannot reach NATS within {:?}: {why}",
                    config.connect_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stalled = Arc::new(AtomicBool::new(false));
        let probe = subjects.address(&Address::Probe(Arc::from(config.name.as_str()))).map_err(invalid)?;
        let watchdog = tokio::spawn(run_watchdog(
            client.clone(),
            probe.clone(),
            config.ping_interval,
            config.max_missed_pongs,
            stalled.clone(),
            metrics.clone(),
        ));
        metrics.connected.set(1.0);
        let streams = Arc::new(Streams::new(
            client.clone(),
            subjects.clone(),
            config.namespaces.clone(),
            config.history_replicas,
            config.request_timeout,
            metrics.clone(),
        ));
        if let Err(e) = streams.ensure_all().await {
            watchdog.abort();
            return Err(e);
        }
        Ok(NatsBus {
            client,
            subjects,
            deliver,
            channels: Mutex::new(HashMap::new()),
            streams,
            #[cfg(feature = "conformance")]
            lose: Arc::default(),
            request_timeout: config.request_timeout,
            probe,
            stalled,
            watchdog,
            metrics,
        })
    }

    /// Fails fast while NATS is unreachable: a request would otherwise wait its whole
    /// timeout in async-nats's queue, stalling the session that made it.
    fn connected(&self) -> Result<(), BusError> {
        match self.client.connection_state() {
            State::Connected if self.stalled.load(Ordering::Relaxed) => {
                Err(BusError::Unavailable("the nats server stopped answering; reconnecting".into()))
            }
            State::Connected => Ok(()),
            State::Disconnected => Err(BusError::Unavailable("nats is disconnected; reconnecting".into())),
            State::Pending => Err(BusError::Unavailable("nats is connecting".into())),
        }
    }

    /// Fault injection (tests only): the next `n` republished messages of history channels
    /// that reach this node are dropped, as core NATS may drop them on the way, so that the
    /// gap filling is seen at work.
    #[cfg(feature = "conformance")]
    pub fn lose_next(&self, n: usize) {
        self.lose.store(n, Ordering::Relaxed);
    }

    /// The underlying client (for tests and tools that speak NATS directly).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        self.watchdog.abort();
        for (_, t) in self.channels.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            t.abort();
        }
    }
}

fn to_headers(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(k.as_str(), v.as_str());
    }
    map
}

fn from_nats(msg: async_nats::Message) -> Incoming {
    let headers = msg
        .headers
        .map(|h| h.iter().flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.as_str().to_owned()))).collect())
        .unwrap_or_default();
    Incoming { message: Message { payload: msg.payload, headers }, reply: msg.reply.map(|r| ReplyTo(r.to_string())) }
}

/// Publishes `message` on `subject`, with headers only when it has some.
fn publish(client: async_nats::Client, subject: String, message: Message) -> BoxFuture<'static, Result<(), BusError>> {
    async move {
        if message.headers.is_empty() {
            client.publish(subject, message.payload).await
        } else {
            client.publish_with_headers(subject, to_headers(&message.headers), message.payload).await
        }
        .map_err(unavailable)
    }
    .boxed()
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

fn invalid(e: impl std::fmt::Display) -> BusError {
    BusError::Invalid(e.to_string())
}

/// Logs the client's connection events with the servers named, once per kind of trouble
/// and interval rather than once per reconnect attempt.
/// It also keeps the connection metrics.
struct EventLog {
    name: String,
    servers: String,
    last: Mutex<Option<(String, Instant, u64)>>,
    /// A server answered the credentials with an authorization violation.
    refused: AtomicBool,
    metrics: BusMetrics,
    /// Set at the first loss: every later `Connected` is a reconnect.
    lost_once: AtomicBool,
}

impl EventLog {
    fn new(name: &str, urls: &[String], metrics: BusMetrics) -> Self {
        EventLog {
            name: name.to_owned(),
            servers: urls.join(","),
            last: Mutex::new(None),
            refused: AtomicBool::new(false),
            metrics,
            lost_once: AtomicBool::new(false),
        }
    }

    fn refused_credentials(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    fn event(&self, event: async_nats::Event) {
        let (node, servers) = (&self.name, &self.servers);
        match event {
            async_nats::Event::Connected => {
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.metrics.connected.set(1.0);
                if self.lost_once.load(Ordering::Relaxed) {
                    self.metrics.reconnects.increment(1);
                }
                tracing::info!(node, servers, "connected to nats");
            }
            async_nats::Event::Disconnected => {
                self.metrics.connected.set(0.0);
                self.metrics.disconnects.increment(1);
                self.lost_once.store(true, Ordering::Relaxed);
                tracing::warn!(node, servers, "lost the nats connection; reconnecting")
            }
            // During a connect, async-nats reports the server's `-ERR 'Authorization
            // Violation'` as a client error of that kind; later, as a server error.
            async_nats::Event::ServerError(async_nats::ServerError::AuthorizationViolation) => {
                self.refused.store(true, Ordering::Relaxed);
                tracing::warn!(node, servers, "nats refused the credentials (authorization violation)");
            }
            async_nats::Event::ClientError(e) => {
                if matches!(&e, async_nats::ClientError::Other(kind) if kind == "authorization violation") {
                    self.refused.store(true, Ordering::Relaxed);
                }
                let what = e.to_string();
                let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                match &mut *last {
                    Some((text, at, repeats)) if *text == what && at.elapsed() < REPEAT_LOG_INTERVAL => *repeats += 1,
                    _ => {
                        // How often the previous error came again since it was logged.
                        match last.as_ref().map_or(0, |(_, _, n)| *n) {
                            0 => tracing::warn!(node, servers, error = %what, "cannot reach nats; retrying"),
                            repeats => {
                                tracing::warn!(node, servers, error = %what, repeats, "cannot reach nats; retrying")
                            }
                        }
                        *last = Some((what, Instant::now(), 0));
                    }
                }
            }
            async_nats::Event::SlowConsumer(sid) => {
                // The client dropped what did not fit in the subscription's queue.
                crate::metrics::dropped("nats_subscription");
                tracing::warn!(node, servers, sid, "a nats subscription fell behind; messages dropped")
            }
            other => tracing::info!(node, servers, event = %other, "nats"),
        }
    }
}

/// Why none of `urls` answers, one reason per URL, from a plain TCP connect to each (the
/// client's own error says only "IO error").
async fn unreachable_reasons(urls: &[String], addrs: &[ServerAddr], tls: &NatsTls) -> String {
    let mut reasons = Vec::new();
    for (url, addr) in urls.iter().zip(addrs) {
        let target = (addr.host().to_owned(), addr.port());
        let why = match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(target)).await {
            Ok(Ok(_)) => match security::tls_failure(addr, tls).await {
                Some(why) => why,
                None => "accepts TCP connections but does not answer the NATS handshake".to_owned(),
            },
            Ok(Err(e)) => strip_os_error(&e.to_string()),
            Err(_) => "no answer to a TCP connect within 1s".to_owned(),
        };
        reasons.push(format!("{url}: {why}"));
    }
    reasons.join("; ")
}

/// Returns once the server has processed everything this client sent before: a request
/// to the probe subject, which the server itself answers with "no responders" after it
/// has read every earlier operation of the connection (a server handles one connection's
/// operations in order). `Client::flush` is not that: it only writes the buffer to the
/// socket, so a subscription "flushed" may not be registered yet when another client
/// publishes. Bounded by `timeout`, since while NATS is down it would wait for the
/// reconnect.
async fn server_round_trip(client: &async_nats::Client, probe: String, timeout: Duration) -> Result<(), BusError> {
    let request = async_nats::Request::new().payload(Bytes::new()).timeout(Some(timeout));
    match client.send_request(probe, request).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
        Err(e) if e.kind() == RequestErrorKind::TimedOut => Err(BusError::Timeout),
        Err(e) => Err(unavailable(e)),
    }
}

/// `Connection refused (os error 111)` → `connection refused`.
fn strip_os_error(s: &str) -> String {
    let s = s.split(" (os error").next().unwrap_or(s);
    let mut c = s.chars();
    c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
}

/// Sends a liveness round trip every `interval`; after `max_missed` in a row go
/// unanswered, marks the connection stalled and makes the client reconnect. Each round
/// also sets the `connected` gauge from what it found.
async fn run_watchdog(
    client: async_nats::Client,
    probe: String,
    interval: Duration,
    max_missed: u32,
    stalled: Arc<AtomicBool>,
    metrics: BusMetrics,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut missed = 0;
    loop {
        tick.tick().await;
        let up = client.connection_state() == State::Connected && !stalled.load(Ordering::Relaxed);
        metrics.connected.set(if up { 1.0 } else { 0.0 });
        if client.connection_state() != State::Connected {
            // Readiness follows the connection state meanwhile; start afresh on the next one.
            missed = 0;
            stalled.store(false, Ordering::Relaxed);
            continue;
        }
        if server_round_trip(&client, probe.clone(), interval).await.is_ok() {
            missed = 0;
            stalled.store(false, Ordering::Relaxed);
            continue;
        }
        // Unless the connection dropped meanwhile (async-nats is on it), this one went
        // unanswered.
        if client.connection_state() == State::Connected {
            missed += 1;
            if missed >= max_missed {
                tracing::warn!(missed, "the nats server stopped answering; reconnecting");
                stalled.store(true, Ordering::Relaxed);
                metrics.stalls.increment(1);
                metrics.connected.set(0.0);
                missed = 0;
                let _ = client.force_reconnect().await;
            }
        }
    }
}

impl Channels for NatsBus {
    fn publish(
        &self,
        channel: &Channel,
        data: Bytes,
        options: PublishOptions,
    ) -> BoxFuture<'static, Result<Option<Position>, BusError>> {
        if let Err(e) = self.connected() {
            return ready(Err(e)).boxed();
        }
        let Some(key) = self.streams.history_key(channel) else {
            let subject = self.streams.live_subject(channel);
            return publish(self.client.clone(), subject, Message::new(data)).map(|r| r.map(|()| None)).boxed();
        };
        let (streams, channel, key) = (self.streams.clone(), channel.clone(), key.to_owned());
        async move { streams.publish(&channel, &key, data, &options).await.map(Some) }.boxed()
    }

    fn subscribe(&self, channel: &Channel) -> BoxFuture<'static, Result<(), BusError>> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if channels.contains_key(channel) {
            return ready(Ok(())).boxed();
        }
        let (confirm, confirmed) = oneshot::channel();
        let subject = self.streams.live_subject(channel);
        let key = self.streams.history_key(channel).map(str::to_owned);
        let (client, deliver, streams) = (self.client.clone(), self.deliver.clone(), self.streams.clone());
        let (timeout, probe, channel_name) = (self.request_timeout, self.probe.clone(), channel.clone());
        #[cfg(feature = "conformance")]
        let lose = self.lose.clone();
        let task = tokio::spawn(async move {
            let mut sub = match client.subscribe(subject).await {
                Ok(sub) => sub,
                Err(e) => {
                    let _ = confirm.send(Err(unavailable(e)));
                    return;
                }
            };
            // Confirmed once the server has the subscription (async-nats re-subscribes by
            // itself on reconnect).
            let _ = confirm.send(server_round_trip(&client, probe, timeout).await);
            let mut continuity = match key {
                Some(key) => Some(Continuity::new(channel_name.clone(), key, streams).await),
                None => None,
            };
            let mut batch = Vec::new();
            while let Some(mut msg) = sub.next().await {
                // Take what else async-nats already read off the socket: one call, one piece
                // per subscriber in the hub.
                loop {
                    // A channel event, in its place among the publications but outside the
                    // continuity. Only a message without a publication's headers (none when
                    // live-only, the stream's when republished) is looked at for one.
                    let mut event = None;
                    match &mut continuity {
                        None if msg.headers.is_some() && is_event(&msg) => event = Some(msg.payload),
                        None => batch.push(Publication {
                            channel: channel_name.clone(),
                            offset: 0,
                            epoch: Arc::from(""),
                            data: msg.payload,
                        }),
                        Some(c) => 'one: {
                            let Some((offset, prev, removed)) = republished(&msg) else {
                                if is_event(&msg) {
                                    event = Some(msg.payload);
                                } else {
                                    tracing::warn!(channel = %channel_name, "a message without its stream headers dropped");
                                }
                                break 'one;
                            };
                            #[cfg(feature = "conformance")]
                            if lose.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                                break 'one;
                            }
                            match c.next(offset, prev, removed, msg.payload).await {
                                Next::Deliver(ps) => batch.extend(ps),
                                Next::Interrupted(ps) => {
                                    for chunk in batch.chunks(MAX_BATCH) {
                                        deliver.deliver(chunk).await;
                                    }
                                    batch.clear();
                                    deliver.interrupted(&channel_name);
                                    batch.extend(ps);
                                }
                            }
                        }
                    }
                    if let Some(event) = event {
                        for chunk in batch.chunks(MAX_BATCH) {
                            deliver.deliver(chunk).await;
                        }
                        batch.clear();
                        deliver.event(&channel_name, event);
                    }
                    if batch.len() >= MAX_BATCH {
                        break;
                    }
                    match sub.next().now_or_never() {
                        Some(Some(next)) => msg = next,
                        _ => break,
                    }
                }
                for chunk in batch.chunks(MAX_BATCH) {
                    deliver.deliver(chunk).await;
                }
                batch.clear();
            }
        });
        channels.insert(channel.clone(), task);
        async move { confirmed.await.unwrap_or_else(|_| Err(BusError::Unavailable("subscription task ended".into()))) }
            .boxed()
    }

    fn unsubscribe(&self, channel: &Channel) {
        if let Some(task) = self.channels.lock().unwrap_or_else(|p| p.into_inner()).remove(channel) {
            // Dropping the subscriber inside the task unsubscribes on the server.
            task.abort();
        }
    }

    fn publish_event(&self, channel: &Channel, event: Bytes) -> BoxFuture<'static, Result<(), BusError>> {
        if let Err(e) = self.connected() {
            return ready(Err(e)).boxed();
        }
        // On the live subject, whatever the namespace: a stream stores only its `hist`
        // subjects, so the event is never stored and takes no sequence.
        let subject = self.streams.live_subject(channel);
        let message = Message { payload: event, headers: vec![(EVENT_HEADER.to_owned(), "1".to_owned())] };
        publish(self.client.clone(), subject, message)
    }

    fn position(&self, channel: &Channel) -> BoxFuture<'static, Result<Option<Position>, BusError>> {
        let Some(key) = self.streams.history_key(channel) else { return ready(Ok(None)).boxed() };
        if let Err(e) = self.connected() {
            return ready(Err(e)).boxed();
        }
        let (streams, channel, key) = (self.streams.clone(), channel.clone(), key.to_owned());
        async move { streams.position(&channel, &key).await.map(Some) }.boxed()
    }

    fn history(&self, channel: &Channel, query: HistoryQuery) -> BoxFuture<'static, Result<HistoryPage, BusError>> {
        let Some(key) = self.streams.history_key(channel) else { return ready(Err(BusError::NoHistory)).boxed() };
        if let Err(e) = self.connected() {
            return ready(Err(e)).boxed();
        }
        let (streams, channel, key) = (self.streams.clone(), channel.clone(), key.to_owned());
        async move { streams.page(&channel, &key, &query, None).await }.boxed()
    }

    fn remove_history(&self, channel: &Channel) -> BoxFuture<'static, Result<(), BusError>> {
        let Some(key) = self.streams.history_key(channel) else { return ready(Err(BusError::NoHistory)).boxed() };
        if let Err(e) = self.connected() {
            return ready(Err(e)).boxed();
        }
        let (streams, channel, key) = (self.streams.clone(), channel.clone(), key.to_owned());
        async move { streams.remove(&channel, &key).await }.boxed()
    }

    fn subscriptions(&self) -> usize {
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn is_ready(&self) -> bool {
        self.connected().is_ok()
    }
}

/// Whether `msg` is a channel event (see [`EVENT_HEADER`]).
fn is_event(msg: &async_nats::Message) -> bool {
    msg.headers.as_ref().is_some_and(|h| h.get(EVENT_HEADER).is_some())
}

/// A republished message's `Nats-Sequence`, `Nats-Last-Sequence` and removal marker.
fn republished(msg: &async_nats::Message) -> Option<(u64, u64, bool)> {
    let headers = msg.headers.as_ref()?;
    let number = |name| headers.get_last(name).and_then(|v| v.as_str().parse::<u64>().ok());
    let offset = number(async_nats::header::NATS_SEQUENCE)?;
    let prev = number(async_nats::header::NATS_LAST_SEQUENCE).unwrap_or(0);
    Some((offset, prev, headers.get(REMOVED_HEADER).is_some()))
}

impl Messages for NatsBus {
    fn send(&self, to: &Address, message: Message) -> BoxFuture<'static, Result<(), BusError>> {
        match self.subjects.address(to) {
            Ok(subject) => publish(self.client.clone(), subject, message),
            Err(e) => ready(Err(invalid(e))).boxed(),
        }
    }

    fn request(
        &self,
        to: &Address,
        message: Message,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Message, BusError>> {
        if let Err(e) = self.connected() {
            return ready(Err(e)).boxed();
        }
        let subject = match self.subjects.address(to) {
            Ok(s) => s,
            Err(e) => return ready(Err(invalid(e))).boxed(),
        };
        let client = self.client.clone();
        let mut request = async_nats::Request::new().payload(message.payload).timeout(Some(timeout));
        if !message.headers.is_empty() {
            request = request.headers(to_headers(&message.headers));
        }
        let timer = self.metrics.request.clone();
        async move {
            let started = Instant::now();
            let reply = client.send_request(subject, request).await;
            timer.record(started.elapsed());
            let reply = reply.map_err(|e| match e.kind() {
                RequestErrorKind::NoResponders => BusError::NoResponders,
                RequestErrorKind::TimedOut => BusError::Timeout,
                _ => unavailable(e),
            })?;
            Ok(from_nats(reply).message)
        }
        .boxed()
    }

    fn request_many(&self, to: &Address, message: Message) -> BoxFuture<'static, Result<Inbox, BusError>> {
        let subject = match self.subjects.address(to) {
            Ok(s) => s,
            Err(e) => return ready(Err(invalid(e))).boxed(),
        };
        let client = self.client.clone();
        async move {
            let inbox = client.new_inbox();
            let sub = client.subscribe(inbox.clone()).await.map_err(unavailable)?;
            client
                .publish_with_reply_and_headers(subject, inbox, to_headers(&message.headers), message.payload)
                .await
                .map_err(unavailable)?;
            // The server answers "no responders" with a status message on the inbox.
            let stream = sub
                .take_while(|m| ready(m.status != Some(async_nats::StatusCode::NO_RESPONDERS)))
                .map(from_nats)
                .boxed();
            Ok(Inbox::new(stream))
        }
        .boxed()
    }

    fn listen(&self, at: &Address, queue: Option<&str>) -> BoxFuture<'static, Result<Inbox, BusError>> {
        let subject = match self.subjects.address(at) {
            Ok(s) => s,
            Err(e) => return ready(Err(invalid(e))).boxed(),
        };
        let (client, queue, timeout) = (self.client.clone(), queue.map(str::to_owned), self.request_timeout);
        let probe = self.probe.clone();
        async move {
            let sub = match queue {
                Some(q) => client.queue_subscribe(subject, q).await,
                None => client.subscribe(subject).await,
            }
            .map_err(unavailable)?;
            server_round_trip(&client, probe, timeout).await?;
            Ok(Inbox::new(sub.map(from_nats).boxed()))
        }
        .boxed()
    }

    fn reply(&self, to: &ReplyTo, message: Message) -> BoxFuture<'static, Result<(), BusError>> {
        publish(self.client.clone(), to.0.clone(), message)
    }
}
