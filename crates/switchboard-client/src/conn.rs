//! The connection task: opens the WebSocket, reads replies and pushes, and reconnects.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload, WebSocketWrite};
use http_body_util::Empty;
use hyper::Request;
use hyper::header;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use switchboard_wire::CloseCode;
use switchboard_wire::pb::{self, command::Command as C, reply::Reply as R};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::{ClientConfig, ClientError, Event, Pending, backoff};

type Io = TokioIo<Upgraded>;
type Reader = FragmentCollectorRead<ReadHalf<Io>>;
type Writer = WebSocketWrite<WriteHalf<Io>>;

pub(crate) struct Shared {
    pub(crate) config: ClientConfig,
    pub(crate) next_id: AtomicU32,
    pub(crate) pending: Pending,
    pub(crate) writer: tokio::sync::Mutex<Option<Writer>>,
    pub(crate) channels: Mutex<BTreeSet<String>>,
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
    pub(crate) async fn request(&self, cmd: C) -> Result<R, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).max(1);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        if let Err(e) = self.send(pb::Command { id, command: Some(cmd) }).await {
            self.pending.lock().unwrap().remove(&id);
            return Err(e);
        }
        let reply = match tokio::time::timeout(self.config.request_timeout, rx).await {
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

/// Opens a connection, sends connect, and restores subscriptions. Returns the reader.
pub(crate) async fn open(shared: &Arc<Shared>) -> Result<Reader, ClientError> {
    let config = &shared.config;
    let uri: hyper::Uri = config.url.parse().map_err(|e| ClientError::Url(format!("{}: {e}", config.url)))?;
    if uri.scheme_str() != Some("ws") {
        return Err(ClientError::Url(format!("{}: only ws:// URLs are supported", config.url)));
    }
    let host = uri.host().ok_or_else(|| ClientError::Url(format!("{}: no host", config.url)))?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port)).await.map_err(|e| ClientError::Connect(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let req = Request::builder()
        .method("GET")
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, format!("{host}:{port}"))
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .header(header::SEC_WEBSOCKET_KEY, fastwebsockets::handshake::generate_key())
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_PROTOCOL, config.encoding.subprotocol())
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::Url(e.to_string()))?;
    let (ws, _resp) = fastwebsockets::handshake::client(&SpawnExecutor, req, stream)
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let (read, write) = ws.split(tokio::io::split);
    let mut reader = FragmentCollectorRead::new(read);
    *shared.writer.lock().await = Some(write);

    // connect, then re-subscribe, reading replies inline (no reader task runs yet).
    let connect = pb::ConnectRequest { token: config.token.clone(), name: config.name.clone(), version: String::new() };
    match call(shared, &mut reader, C::Connect(connect)).await? {
        R::Connect(c) => *shared.session.lock().unwrap() = c.session,
        other => return Err(ClientError::Encode(format!("unexpected connect reply {other:?}"))),
    }
    let channels: Vec<String> = shared.channels.lock().unwrap().iter().cloned().collect();
    for channel in channels {
        call(shared, &mut reader, C::Subscribe(pb::SubscribeRequest { channel })).await?;
    }
    Ok(reader)
}

/// Sends a command and reads frames until its reply (used before the reader task runs).
async fn call(shared: &Arc<Shared>, reader: &mut Reader, cmd: C) -> Result<R, ClientError> {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed).max(1);
    shared.send(pb::Command { id, command: Some(cmd) }).await?;
    let deadline = tokio::time::Instant::now() + shared.config.request_timeout;
    loop {
        let frame = tokio::time::timeout_at(deadline, read_frame(shared, reader))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|_| ClientError::Disconnected)?;
        let Some(reply) = decode(shared, frame)? else { continue };
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
        Incoming::Close(..) => Err(ClientError::Disconnected),
    }
}

/// Reads until the connection ends, then reconnects while allowed.
pub(crate) async fn run(shared: Arc<Shared>, mut reader: Reader, events: mpsc::Sender<Event>) {
    let session = shared.session.lock().unwrap().clone();
    if events.send(Event::Connected { session }).await.is_err() {
        return;
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
        reader = loop {
            tokio::time::sleep(backoff(&shared.config, attempt)).await;
            attempt = attempt.saturating_add(1);
            match open(&shared).await {
                Ok(r) => break r,
                Err(e) => tracing::debug!(error = %e, attempt, "reconnect failed"),
            }
        };
        let session = shared.session.lock().unwrap().clone();
        if events.send(Event::Connected { session }).await.is_err() {
            return;
        }
    }
}

async fn read_loop(shared: &Shared, reader: &mut Reader, events: &mpsc::Sender<Event>) -> (Option<u16>, String) {
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
        let event = match reply.reply {
            Some(R::Pub(p)) => Event::Publication(p),
            Some(R::Message(m)) => Event::Message(m.data),
            Some(R::Subscribed(s)) => {
                shared.channels.lock().unwrap().insert(s.channel.clone());
                Event::Subscribed { channel: s.channel, epoch: s.epoch, offset: s.offset }
            }
            Some(R::Unsubscribed(u)) => {
                shared.channels.lock().unwrap().remove(&u.channel);
                Event::Unsubscribed { channel: u.channel }
            }
            _ => continue,
        };
        if events.send(event).await.is_err() {
            return (None, "client dropped".into());
        }
    }
}
