//! Rust client library for Switchboard's client protocol v1: connect, subscribe, publish,
//! receive publications, and reconnect after a drop with exponential backoff and jitter
//! (re-subscribing what the client held).
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_client::ClientError> {
//! use switchboard_client::{Client, ClientConfig, Event};
//! let mut client = Client::connect(ClientConfig::new("ws://127.0.0.1:8080/ws")).await?;
//! client.subscribe("chat:lobby").await?;
//! client.publish("chat:lobby", br#"{"text":"hi"}"#.to_vec().into()).await?;
//! while let Some(event) = client.next_event().await {
//!     if let Event::Publication(p) = event { println!("{} #{}", p.channel, p.offset) }
//! }
//! # Ok(()) }
//! ```

mod conn;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use switchboard_wire::Encoding;
use switchboard_wire::pb::{self, command::Command as C, reply::Reply as R};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub use conn::SpawnExecutor;
pub use switchboard_wire::pb::Publication;

/// How to reach a gateway and how to behave.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ws://host:port/ws`, or `wss://host:port/ws` for TLS.
    pub url: String,
    pub encoding: Encoding,
    /// Sent with the connect command.
    pub token: String,
    /// Client name sent with the connect command.
    pub name: String,
    /// Reconnect after a drop (when the close code allows it). Default true.
    pub reconnect: bool,
    /// First reconnect delay; doubles per failed attempt up to `max_backoff`, with full
    /// jitter. Defaults 100 ms and 10 s.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Time allowed for a command's reply; [`Client::subscribe`] retries a temporary error
    /// within it. Default 10 s.
    pub request_timeout: Duration,
    /// Time allowed for one connection attempt: the TCP connect, the WebSocket upgrade, the
    /// connect command and the re-subscribes. Default 10 s.
    pub connect_timeout: Duration,
    /// Events buffered before the connection stops reading (back-pressure). Default 1024.
    pub event_buffer: usize,
    /// For `wss`: a PEM file of the CA certificates to trust instead of the system's roots
    /// (read at every connection attempt, so a renewed bundle is picked up). Default unset.
    pub ca_file: Option<PathBuf>,
    /// For `wss`: the whole rustls configuration (roots, client certificate, ALPN); takes
    /// precedence over `ca_file`. Default unset: the system's roots, or `ca_file`.
    pub tls: Option<Arc<switchboard_tls::rustls::ClientConfig>>,
}

impl ClientConfig {
    pub fn new(url: impl Into<String>) -> Self {
        ClientConfig {
            url: url.into(),
            encoding: Encoding::Json,
            token: String::new(),
            name: "switchboard-client-rs".into(),
            reconnect: true,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            event_buffer: 1024,
            ca_file: None,
            tls: None,
        }
    }

    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    pub fn reconnect(mut self, reconnect: bool) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// Trusts the CA certificates in the PEM file at `path` for `wss` (instead of the
    /// system's roots).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }
}

/// Something that happened on the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Publication(Publication),
    /// Data a backend sent to this session (or its user).
    Message(Bytes),
    /// A backend subscribed this session to a channel.
    Subscribed {
        channel: String,
        epoch: String,
        offset: u64,
    },
    /// A backend unsubscribed this session from a channel.
    Unsubscribed {
        channel: String,
    },
    /// A session subscribed to a channel of a namespace with `join_leave` (this session's
    /// own subscribe included, after its reply).
    Join {
        channel: String,
        client: pb::ClientInfo,
    },
    /// A session stopped being subscribed to such a channel.
    Leave {
        channel: String,
        client: pb::ClientInfo,
    },
    /// After a reconnect (or the server asking for it), a channel with history was
    /// subscribed again from the last publication received: `recovered` says whether every
    /// publication missed meanwhile follows this event, in order; when false, the history
    /// no longer covers the gap and the application should reload what the channel feeds.
    Resubscribed {
        channel: String,
        recovered: bool,
    },
    /// (Re)connected as this session; subscriptions have been restored.
    Connected {
        session: String,
    },
    /// The connection ended with this close code (None when it broke without one);
    /// `reconnecting` is false once the client gives up (or was told not to come back).
    Disconnected {
        code: Option<u16>,
        reason: String,
        reconnecting: bool,
    },
}

/// A failed client operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The URL is not a `ws://` or `wss://host:port/path` URL.
    #[error("invalid url {0}")]
    Url(String),
    /// `wss`: the TLS setup (`why` names a CA file that cannot be used) or the handshake
    /// (`why` is e.g. `invalid peer certificate: UnknownIssuer`) failed.
    #[error("tls with {url} failed: {why}")]
    Tls { url: String, why: String },
    /// No connection to the gateway's address (`why` is e.g. `connection refused`).
    #[error("cannot connect to {url}: {why}")]
    Connect { url: String, why: String },
    /// Something answered at the address, but not with a WebSocket upgrade.
    #[error("{url} did not upgrade to WebSocket: got {found}")]
    Handshake { url: String, found: NotWebSocket },
    /// The server closed the session while it was being set up, with this close code
    /// (1005 when the close frame had none); `CloseCode::should_reconnect` says whether
    /// trying again may help.
    #[error("the server closed the session: {code}{}", space_before(.reason))]
    Closed { code: u16, reason: String },
    #[error("server error {code}: {message}")]
    Server { code: u32, message: String, temporary: bool },
    #[error("not connected")]
    Disconnected,
    #[error("no reply in time")]
    Timeout,
    #[error("{0}")]
    Encode(String),
}

impl ClientError {
    /// The server's error code, when the server refused the command.
    pub fn code(&self) -> Option<u32> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: a temporary error reply, or a close code
    /// that allows reconnecting.
    pub fn is_temporary(&self) -> bool {
        match self {
            ClientError::Server { temporary, .. } => *temporary,
            ClientError::Closed { code, .. } => switchboard_wire::CloseCode::should_reconnect(*code),
            _ => false,
        }
    }
}

/// What answered a WebSocket upgrade request instead of `101 Switching Protocols`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotWebSocket {
    /// An HTTP/1 response with another status, e.g. `404 Not Found` for a wrong path.
    #[error("HTTP {code} {reason}")]
    Status { code: u16, reason: String },
    /// HTTP/2 frames: an HTTP/2-only server, such as a gRPC API.
    #[error("HTTP/2 frames")]
    Http2,
    /// A NATS server's `INFO` greeting.
    #[error("a NATS greeting")]
    Nats,
    /// The connection closed before any answer.
    #[error("no answer before the connection closed")]
    Closed,
    /// Anything else, described or quoted.
    #[error("{0}")]
    Other(String),
}

impl NotWebSocket {
    /// Classifies the first bytes of an answer that does not (yet) look like HTTP/1:
    /// `None` while `head` may still become an HTTP/1 response or needs more bytes.
    fn classify(head: &[u8]) -> Option<NotWebSocket> {
        const HTTP: &[u8] = b"HTTP/";
        const INFO: &[u8] = b"INFO ";
        let prefix = |p: &[u8]| head.starts_with(p) || p.starts_with(head);
        if head.is_empty() || prefix(HTTP) {
            return None;
        }
        if prefix(INFO) {
            return (head.len() >= INFO.len()).then_some(NotWebSocket::Nats);
        }
        // An HTTP/2 server speaks first: a SETTINGS (or GOAWAY) frame on stream 0.
        if head[0] == 0 && head.len() < 9 {
            return None;
        }
        if head.len() >= 9 && matches!(head[3], 4 | 7) && head[5..9] == [0; 4] {
            return Some(NotWebSocket::Http2);
        }
        let shown = &head[..head.len().min(40)];
        Some(NotWebSocket::Other(format!("\"{}\"", shown.escape_ascii())))
    }
}

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<pb::Reply>>>>;

/// A connection to a gateway. Commands may be sent from several tasks through `&self`;
/// events are read with [`Client::next_event`].
pub struct Client {
    shared: Arc<conn::Shared>,
    events: mpsc::Receiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

// === impl Client ===

impl Client {
    /// Connects and sends the connect command, within `config.connect_timeout`. Fails if
    /// the first attempt fails; later drops are retried in the background when
    /// `config.reconnect` is set, until a close code says not to.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let (tx, events) = mpsc::channel(config.event_buffer.max(1));
        let shared = Arc::new(conn::Shared {
            config,
            next_id: AtomicU32::new(1),
            pending: Pending::default(),
            writer: tokio::sync::Mutex::new(None),
            channels: Mutex::new(BTreeMap::new()),
            session: Mutex::new(String::new()),
        });
        let first = conn::open(&shared).await?;
        let task = tokio::spawn(conn::run(shared.clone(), first, tx));
        Ok(Client { shared, events, task })
    }

    /// The current session id.
    pub fn session(&self) -> String {
        self.shared.session.lock().unwrap().clone()
    }

    /// The next event; `None` once the connection is gone for good.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next publication, skipping other events; `None` once the connection is gone.
    pub async fn next_publication(&mut self) -> Option<Publication> {
        loop {
            match self.events.recv().await? {
                Event::Publication(p) => return Some(p),
                _ => continue,
            }
        }
    }

    /// Subscribes to `channel`. A temporary error (e.g. `110` while NATS reconnects) is
    /// retried with [`backoff`] until `request_timeout` has passed since the call; then the
    /// last error is returned. [`Client::subscribe_once`] does not retry. After a
    /// reconnect the client subscribes again by itself, resuming a channel with history
    /// from the last publication it received ([`Event::Resubscribed`]).
    pub async fn subscribe(&self, channel: &str) -> Result<pb::SubscribeResult, ClientError> {
        self.subscribe_from(channel, None).await
    }

    /// Subscribes to `channel` resuming from `position` (an offset and epoch the
    /// application kept, e.g. across restarts): the reply's `recovered` says whether every
    /// publication after it follows, in order.
    pub async fn subscribe_from(
        &self,
        channel: &str,
        position: Option<pb::StreamPosition>,
    ) -> Result<pb::SubscribeResult, ClientError> {
        let config = &self.shared.config;
        let deadline = Instant::now() + config.request_timeout;
        let mut attempt = 0;
        let mut last = None;
        loop {
            match self.subscribe_until(channel, position.clone(), deadline).await {
                Err(e @ ClientError::Server { temporary: true, .. }) => {
                    let delay = backoff(config, attempt);
                    if Instant::now() + delay >= deadline {
                        return Err(e);
                    }
                    tracing::debug!(%channel, error = %e, attempt, "subscribe failed, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                    last = Some(e);
                }
                // A retry cut short by the deadline: the server's own answer says more.
                Err(ClientError::Timeout) if last.is_some() => return Err(last.expect("checked")),
                result => return result,
            }
        }
    }

    /// Subscribes to `channel` in one attempt: the server's answer as it is.
    pub async fn subscribe_once(&self, channel: &str) -> Result<pb::SubscribeResult, ClientError> {
        self.subscribe_until(channel, None, Instant::now() + self.shared.config.request_timeout).await
    }

    async fn subscribe_until(
        &self,
        channel: &str,
        recover: Option<pb::StreamPosition>,
        deadline: Instant,
    ) -> Result<pb::SubscribeResult, ClientError> {
        let cmd = C::Subscribe(pb::SubscribeRequest { channel: channel.into(), recover });
        // Held from now, so that publications pushed before the reply move its position.
        let fresh = self.shared.channels.lock().unwrap().insert(channel.to_owned(), None).is_none();
        let result = match self.shared.request_until(cmd, deadline).await {
            Ok(R::Subscribe(r)) => Ok(r),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        };
        match &result {
            Ok(r) => self.shared.started(channel, r),
            Err(_) if fresh => {
                self.shared.channels.lock().unwrap().remove(channel);
            }
            Err(_) => {}
        }
        result
    }

    /// Part of a channel's history: after `since` (before it with `reverse`), at most
    /// `limit` (0: the server's default, 100).
    pub async fn history(
        &self,
        channel: &str,
        since: Option<pb::StreamPosition>,
        limit: u32,
        reverse: bool,
    ) -> Result<pb::HistoryResult, ClientError> {
        let cmd = C::History(pb::HistoryRequest { channel: channel.into(), since, limit, reverse });
        match self.shared.request(cmd).await? {
            R::History(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Who is subscribed to `channel` (a namespace with `presence`; error 114 otherwise).
    pub async fn presence(&self, channel: &str) -> Result<Vec<pb::ClientInfo>, ClientError> {
        match self.shared.request(C::Presence(pb::PresenceRequest { channel: channel.into() })).await? {
            R::Presence(r) => Ok(r.clients),
            other => Err(unexpected(other)),
        }
    }

    /// How many sessions, and distinct users, are subscribed to `channel`.
    pub async fn presence_stats(&self, channel: &str) -> Result<pb::PresenceStatsResult, ClientError> {
        match self.shared.request(C::PresenceStats(pb::PresenceStatsRequest { channel: channel.into() })).await? {
            R::PresenceStats(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// The position the client would resume `channel` from after a reconnect.
    pub fn position(&self, channel: &str) -> Option<pb::StreamPosition> {
        self.shared.channels.lock().unwrap().get(channel).cloned().flatten()
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.shared.channels.lock().unwrap().remove(channel);
        match self.shared.request(C::Unsubscribe(pb::UnsubscribeRequest { channel: channel.into() })).await? {
            R::Unsubscribe(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Publishes `data` (JSON text when the encoding is JSON).
    pub async fn publish(&self, channel: &str, data: Bytes) -> Result<pb::PublishResult, ClientError> {
        match self.shared.request(C::Publish(pb::PublishRequest { channel: channel.into(), data })).await? {
            R::Publish(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Sends data upstream to backends (fire and forget; JSON text with the JSON encoding).
    pub async fn send(&self, data: Bytes) -> Result<(), ClientError> {
        match self.shared.request(C::Send(pb::SendRequest { data })).await? {
            R::Send(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Calls a backend method and returns its answer.
    pub async fn rpc(&self, method: &str, data: Bytes) -> Result<Bytes, ClientError> {
        match self.shared.request(C::Rpc(pb::RpcRequest { method: method.into(), data })).await? {
            R::Rpc(r) => Ok(r.data),
            other => Err(unexpected(other)),
        }
    }

    /// An application-level ping (a round trip through the gateway).
    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.shared.request(C::Ping(pb::PingRequest {})).await? {
            R::Ping(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Closes the connection (code 1000) and stops reconnecting.
    pub async fn close(self) {
        self.shared.close().await;
        self.task.abort();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `" reason"`, or nothing for an empty reason.
fn space_before(reason: &str) -> String {
    if reason.is_empty() { String::new() } else { format!(" {reason}") }
}

fn unexpected(reply: R) -> ClientError {
    ClientError::Encode(format!("unexpected reply: {reply:?}"))
}

/// The reconnect delay before attempt `attempt` (0-based): full jitter over an exponential
/// ceiling, `rand(0, min(max, min * 2^attempt))`, never below `min / 2`.
pub fn backoff(config: &ClientConfig, attempt: u32) -> Duration {
    let ceiling = config.min_backoff.saturating_mul(1u32 << attempt.min(20)).min(config.max_backoff);
    let floor = config.min_backoff / 2;
    let span = ceiling.saturating_sub(floor);
    floor + span.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests;
