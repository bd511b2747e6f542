//! The connection task: opens the WebSocket, reads replies and pushes, and reconnects.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload, Role, WebSocketWrite};
use switchboard_wire::CloseCode;
use switchboard_wire::pb::{self, command::Command as C, reply::Reply as R};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::{ClientConfig, ClientError, Event, NotWebSocket, Pending, backoff};

/// The connection under the WebSocket: TCP for `ws`, TLS over TCP for `wss`.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
type Stream = Box<dyn Io>;

// The read half keeps its buffer: bytes that arrived right behind the upgrade response
// belong to the WebSocket.
type Reader = FragmentCollectorRead<BufReader<ReadHalf<Stream>>>;
type Writer = WebSocketWrite<WriteHalf<Stream>>;

/// Longest HTTP response head the upgrade reads before giving up.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

pub(crate) struct Shared {
    pub(crate) config: ClientConfig,
    pub(crate) next_id: AtomicU32,
    pub(crate) pending: Pending,
    pub(crate) writer: tokio::sync::Mutex<Option<Writer>>,
    /// The channels held, each with the position to resume from (for a channel with
    /// history: the last publication received, or where the subscription started).
    pub(crate) channels: Mutex<BTreeMap<String, Option<pb::StreamPosition>>>,
    pub(crate) session: Mutex<String>,
}

/// Runs hyper's connection futures on tokio (for fastwebsockets' client handshake).
#[derive(Debug, Clone, Copy)]
pub struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

// === impl Shared ===

impl Shared {
    /// A subscription to `channel` started where `r` says: its position, unless the
    /// client already received something newer of the same epoch (publications may come
    /// before the reply).
    pub(crate) fn started(&self, channel: &str, r: &pb::SubscribeResult) {
        let mut channels = self.channels.lock().unwrap();
        let position = channels.entry(channel.to_owned()).or_insert(None);
        match position {
            _ if !r.history => *position = None,
            Some(p) if p.epoch == r.epoch && p.offset >= r.offset => {}
            _ => *position = Some(pb::StreamPosition { offset: r.offset, epoch: r.epoch.clone() }),
        }
    }

    pub(crate) async fn request(&self, cmd: C) -> Result<R, ClientError> {
        self.request_until(cmd, Instant::now() + self.config.request_timeout).await
    }

    /// Sends `cmd` and waits for its reply until `deadline`.
    pub(crate) async fn request_until(&self, cmd: C, deadline: Instant) -> Result<R, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).max(1);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        if let Err(e) = self.send(pb::Command { id, command: Some(cmd) }).await {
            self.pending.lock().unwrap().remove(&id);
            return Err(e);
        }
        let reply = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(ClientError::Disconnected),
            Err(_) => {
                self.pending.lock().unwrap().remove(&id);
                return Err(ClientError::Timeout);
            }
        };
        match reply.reply {
            Some(R::Error(e)) => Err(ClientError::Server { code: e.code, message: e.message, temporary: e.temporary }),
            Some(r) => Ok(r),
            None => Err(ClientError::Encode("empty reply".into())),
        }
    }

    async fn send(&self, cmd: pb::Command) -> Result<(), ClientError> {
        let encoding = self.config.encoding;
        let mut buf = Vec::new();
        encoding.encode_command(&cmd, &mut buf).map_err(|e| ClientError::Encode(e.message))?;
        let opcode = if encoding.is_text() { OpCode::Text } else { OpCode::Binary };
        let mut writer = self.writer.lock().await;
        let w = writer.as_mut().ok_or(ClientError::Disconnected)?;
        w.write_frame(Frame::new(true, opcode, None, Payload::Owned(buf))).await.map_err(|_| ClientError::Disconnected)
    }

    pub(crate) async fn close(&self) {
        if let Some(w) = self.writer.lock().await.as_mut() {
            let _ = w.write_frame(Frame::close(1000, b"")).await;
        }
    }

    fn fail_pending(&self) {
        // Dropping the senders wakes every waiter with `Disconnected`.
        self.pending.lock().unwrap().clear();
    }
}

/// Opens a connection, sends connect, and restores subscriptions (each channel with history
/// resumed from its position), within the connect timeout. Returns the reader, and the
/// events to hand over before anything it reads: one [`Event::Resubscribed`] per channel
/// with history, then whatever was pushed meanwhile.
pub(crate) async fn open(shared: &Arc<Shared>) -> Result<(Reader, Vec<Event>), ClientError> {
    let deadline = Instant::now() + shared.config.connect_timeout;
    tokio::time::timeout_at(deadline, open_until(shared, deadline)).await.map_err(|_| ClientError::Timeout)?
}

async fn open_until(shared: &Arc<Shared>, deadline: Instant) -> Result<(Reader, Vec<Event>), ClientError> {
    let config = &shared.config;
    let url = &config.url;
    let bad_url = |why: &str| ClientError::Url(format!("{url}: {why}"));
    let uri: hyper::Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| bad_url(&e.to_string()))?;
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(bad_url("only ws:// and wss:// URLs are supported")),
    };
    let host = uri.host().ok_or_else(|| bad_url("no host"))?;
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    // Resolve the TLS settings before connecting: a CA file that cannot be used is not
    // worth a connection.
    let connector = tls.then(|| tls_connector(config)).transpose()?;
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| ClientError::Connect { url: url.clone(), why: io_error_text(&e) })?;
    let _ = tcp.set_nodelay(true);
    let stream: Stream = match connector {
        None => Box::new(tcp),
        Some(connector) => {
            // `[::1]` in a URL is the name `::1` to TLS.
            let name = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let name = switchboard_tls::pki_types::ServerName::try_from(name).map_err(|e| bad_url(&e.to_string()))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| ClientError::Tls { url: url.clone(), why: e.to_string() })?;
            Box::new(tls)
        }
    };
    let (read, mut write) = tokio::io::split(stream);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n",
        path = uri.path_and_query().map_or("/", |p| p.as_str()),
        key = fastwebsockets::handshake::generate_key(),
        protocol = config.encoding.subprotocol(),
    );
    let lost = |e: std::io::Error| ClientError::Connect { url: url.clone(), why: io_error_text(&e) };
    write.write_all(request.as_bytes()).await.map_err(lost)?;
    let mut read = BufReader::new(read);
    upgrade_response(&mut read).await.map_err(|found| match found {
        Upgrade::Io(e) => lost(e),
        Upgrade::Not(found) => ClientError::Handshake { url: url.clone(), found },
    })?;
    let (read, write) = fastwebsockets::after_handshake_split(read, write, Role::Client);
    let mut reader = FragmentCollectorRead::new(read);
    *shared.writer.lock().await = Some(write);

    // connect, then re-subscribe, reading replies inline (no reader task runs yet); what is
    // pushed meanwhile is kept, in order, for the application.
    let mut pushed = Vec::new();
    let connect = pb::ConnectRequest { token: config.token.clone(), name: config.name.clone(), version: String::new() };
    match call(shared, &mut reader, C::Connect(connect), deadline, &mut pushed).await? {
        R::Connect(c) => *shared.session.lock().unwrap() = c.session,
        other => return Err(ClientError::Encode(format!("unexpected connect reply {other:?}"))),
    }
    let channels: Vec<_> = shared.channels.lock().unwrap().iter().map(|(c, p)| (c.clone(), p.clone())).collect();
    let mut events = Vec::new();
    for (channel, recover) in channels {
        let resumed = recover.is_some();
        let cmd = C::Subscribe(pb::SubscribeRequest { channel: channel.clone(), recover });
        if let R::Subscribe(r) = call(shared, &mut reader, cmd, deadline, &mut pushed).await? {
            if !r.recovered {
                shared.started(&channel, &r);
            }
            if resumed || r.history {
                events.push(Event::Resubscribed { channel, recovered: r.recovered });
            }
        }
    }
    events.extend(pushed.into_iter().filter_map(|reply| push_event(shared, reply)));
    Ok((reader, events))
}

/// Why the upgrade did not happen.
enum Upgrade {
    Io(std::io::Error),
    Not(NotWebSocket),
}

/// Reads the answer to the upgrade request up to the end of its head, leaving whatever
/// follows in `read`'s buffer; succeeds on `101` with `Upgrade: websocket`.
async fn upgrade_response(read: &mut BufReader<ReadHalf<Stream>>) -> Result<(), Upgrade> {
    let mut head = Vec::new();
    let end = loop {
        let chunk = read.fill_buf().await.map_err(Upgrade::Io)?;
        if chunk.is_empty() {
            return Err(Upgrade::Not(NotWebSocket::classify(&head).unwrap_or(NotWebSocket::Closed)));
        }
        let start = head.len();
        head.extend_from_slice(chunk);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) {
            read.consume(end - start);
            break end;
        }
        let taken = head.len() - start;
        read.consume(taken);
        if let Some(found) = NotWebSocket::classify(&head) {
            return Err(Upgrade::Not(found));
        }
        if head.len() > MAX_RESPONSE_HEAD {
            return Err(Upgrade::Not(NotWebSocket::Other(format!("a response head over {MAX_RESPONSE_HEAD} bytes"))));
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&head[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(Upgrade::Not(NotWebSocket::Other("a malformed HTTP response".into()))),
    }
    let code = response.code.unwrap_or(0);
    if code != 101 {
        let reason = response.reason.unwrap_or("").to_owned();
        return Err(Upgrade::Not(NotWebSocket::Status { code, reason }));
    }
    let upgrade = response.headers.iter().find(|h| h.name.eq_ignore_ascii_case("upgrade"));
    if !upgrade.is_some_and(|h| h.value.eq_ignore_ascii_case(b"websocket")) {
        return Err(Upgrade::Not(NotWebSocket::Other("101 Switching Protocols without Upgrade: websocket".into())));
    }
    Ok(())
}

/// The TLS connector of a `wss` URL: the configured rustls config, or one trusting
/// `ca_file` or the system's roots, offering HTTP/1.1.
fn tls_connector(config: &ClientConfig) -> Result<switchboard_tls::tokio_rustls::TlsConnector, ClientError> {
    let rustls = match &config.tls {
        Some(c) => c.clone(),
        None => Arc::new(
            switchboard_tls::client_config(config.ca_file.as_deref(), &[b"http/1.1"])
                .map_err(|e| ClientError::Tls { url: config.url.clone(), why: e.to_string() })?,
        ),
    };
    Ok(switchboard_tls::tokio_rustls::TlsConnector::from(rustls))
}

/// An I/O error as a person reads it: `connection refused`, without `(os error 111)`.
fn io_error_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::HostUnreachable => "host unreachable".into(),
        K::NetworkUnreachable => "network unreachable".into(),
        K::TimedOut => "timed out".into(),
        K::AddrNotAvailable => "address not available".into(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_owned(),
                None => text,
            }
        }
    }
}

/// Sends a command and reads frames until its reply (used before the reader task runs);
/// pushes read meanwhile go to `pushed`.
async fn call(
    shared: &Arc<Shared>,
    reader: &mut Reader,
    cmd: C,
    deadline: Instant,
    pushed: &mut Vec<pb::Reply>,
) -> Result<R, ClientError> {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed).max(1);
    shared.send(pb::Command { id, command: Some(cmd) }).await?;
    let deadline = deadline.min(Instant::now() + shared.config.request_timeout);
    loop {
        let frame = tokio::time::timeout_at(deadline, read_frame(shared, reader))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|_| ClientError::Disconnected)?;
        let Some(reply) = decode(shared, frame)? else { continue };
        if reply.id == 0 {
            pushed.push(reply);
            continue;
        }
        if reply.id == id {
            return match reply.reply {
                Some(R::Error(e)) => {
                    Err(ClientError::Server { code: e.code, message: e.message, temporary: e.temporary })
                }
                Some(r) => Ok(r),
                None => Err(ClientError::Encode("empty reply".into())),
            };
        }
    }
}

enum Incoming {
    Data(Vec<u8>),
    Close(Option<u16>, String),
}

async fn read_frame(shared: &Shared, reader: &mut Reader) -> Result<Incoming, fastwebsockets::WebSocketError> {
    let mut obligated = |frame: Frame<'static>| async move {
        let mut w = shared.writer.lock().await;
        match w.as_mut() {
            Some(w) => w.write_frame(frame).await,
            None => Ok(()),
        }
    };
    loop {
        let frame = reader.read_frame(&mut obligated).await?;
        match frame.opcode {
            OpCode::Text | OpCode::Binary => return Ok(Incoming::Data(frame.payload.to_vec())),
            OpCode::Close => {
                let p = &frame.payload[..];
                let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                let reason = p.get(2..).map(|r| String::from_utf8_lossy(r).into_owned()).unwrap_or_default();
                return Ok(Incoming::Close(code, reason));
            }
            _ => continue,
        }
    }
}

fn decode(shared: &Shared, frame: Incoming) -> Result<Option<pb::Reply>, ClientError> {
    match frame {
        Incoming::Data(data) => {
            shared.config.encoding.decode_reply(&data).map(Some).map_err(|e| ClientError::Encode(e.message))
        }
        // The close frame's code, or 1005 (no status received) for an empty one.
        Incoming::Close(code, reason) => Err(ClientError::Closed { code: code.unwrap_or(1005), reason }),
    }
}

/// Reads until the connection ends, then reconnects while allowed.
pub(crate) async fn run(shared: Arc<Shared>, first: (Reader, Vec<Event>), events: mpsc::Sender<Event>) {
    let (mut reader, early) = first;
    let session = shared.session.lock().unwrap().clone();
    if events.send(Event::Connected { session }).await.is_err() {
        return;
    }
    for event in early {
        if events.send(event).await.is_err() {
            return;
        }
    }
    loop {
        let (code, reason) = read_loop(&shared, &mut reader, &events).await;
        *shared.writer.lock().await = None;
        shared.fail_pending();
        let reconnecting = shared.config.reconnect && code.is_none_or(CloseCode::should_reconnect);
        let _ = events.send(Event::Disconnected { code, reason, reconnecting }).await;
        if !reconnecting || events.is_closed() {
            return;
        }
        let mut attempt = 0;
        let early;
        (reader, early) = loop {
            tokio::time::sleep(backoff(&shared.config, attempt)).await;
            attempt = attempt.saturating_add(1);
            match open(&shared).await {
                Ok(opened) => break opened,
                // A close code that says not to come back ends the reconnecting.
                Err(ClientError::Closed { code, reason }) if !CloseCode::should_reconnect(code) => {
                    let _ = events.send(Event::Disconnected { code: Some(code), reason, reconnecting: false }).await;
                    return;
                }
                Err(e) => tracing::debug!(error = %e, attempt, "reconnect failed"),
            }
        };
        let session = shared.session.lock().unwrap().clone();
        if events.send(Event::Connected { session }).await.is_err() {
            return;
        }
        for event in early {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

async fn read_loop(shared: &Arc<Shared>, reader: &mut Reader, events: &mpsc::Sender<Event>) -> (Option<u16>, String) {
    loop {
        let frame = match read_frame(shared, reader).await {
            Ok(Incoming::Close(code, reason)) => return (code, reason),
            Ok(frame) => frame,
            Err(e) => return (None, e.to_string()),
        };
        let reply = match decode(shared, frame) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => return (None, e.to_string()),
        };
        if reply.id != 0 {
            if let Some(tx) = shared.pending.lock().unwrap().remove(&reply.id) {
                let _ = tx.send(reply);
            }
            continue;
        }
        if let Some(R::Unsubscribed(u)) = &reply.reply
            && u.resubscribe
        {
            // Publications were lost on their way and the server dropped the subscription:
            // take it again from the last one received.
            tokio::spawn(resubscribe(shared.clone(), u.channel.clone(), events.clone()));
            continue;
        }
        let Some(event) = push_event(shared, reply) else { continue };
        if events.send(event).await.is_err() {
            return (None, "client dropped".into());
        }
    }
}

/// The event a push makes, keeping the channels' positions up to date.
fn push_event(shared: &Shared, reply: pb::Reply) -> Option<Event> {
    Some(match reply.reply? {
        R::Pub(p) => {
            if p.offset != 0
                && let Some(position) = shared.channels.lock().unwrap().get_mut(&p.channel)
            {
                *position = Some(pb::StreamPosition { offset: p.offset, epoch: p.epoch.clone() });
            }
            Event::Publication(p)
        }
        R::Message(m) => Event::Message(m.data),
        R::Subscribed(s) => {
            let position =
                (!s.epoch.is_empty()).then(|| pb::StreamPosition { offset: s.offset, epoch: s.epoch.clone() });
            shared.channels.lock().unwrap().insert(s.channel.clone(), position);
            Event::Subscribed { channel: s.channel, epoch: s.epoch, offset: s.offset }
        }
        R::Unsubscribed(u) => {
            shared.channels.lock().unwrap().remove(&u.channel);
            Event::Unsubscribed { channel: u.channel }
        }
        R::Join(j) => Event::Join { channel: j.channel, client: j.client.unwrap_or_default() },
        R::Leave(l) => Event::Leave { channel: l.channel, client: l.client.unwrap_or_default() },
        _ => return None,
    })
}

/// Subscribes to `channel` again from its position, after the server dropped it.
async fn resubscribe(shared: Arc<Shared>, channel: String, events: mpsc::Sender<Event>) {
    let Some(recover) = shared.channels.lock().unwrap().get(&channel).cloned() else { return };
    let cmd = C::Subscribe(pb::SubscribeRequest { channel: channel.clone(), recover });
    match shared.request(cmd).await {
        Ok(R::Subscribe(r)) => {
            if !r.recovered {
                shared.started(&channel, &r);
            }
            let _ = events.send(Event::Resubscribed { channel, recovered: r.recovered }).await;
        }
        Ok(_) | Err(_) => {
            // The connection is going away; its reconnect resubscribes.
            tracing::debug!(%channel, "resubscribe failed");
        }
    }
}
