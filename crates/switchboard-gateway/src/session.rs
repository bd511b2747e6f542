//! One WebSocket session: a single task that reads client frames, runs their commands,
//! writes queued frames, pings, and enforces the session's timeouts.
//!
//! Writes come first in the loop: everything queued in the session's outbox is taken at
//! once and written with one vectored system call, so a burst of publications costs one
//! write per connection rather than one per frame.
//!
//! No branch of the loop awaits the bus. A command runs its synchronous part (checks, the
//! hub, the channel list) at once, in arrival order; what it waits for on the bus is
//! polled as one more branch beside the socket and the outbox ([`in_flight`]), and ends in
//! a [`Done`] the session finishes in command order: the reply, and for a subscribe the
//! registry event or, when the bus refused, undoing the hub add. At
//! `max_pending_commands` waiting, the session stops reading its socket until one ends.

mod in_flight;

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use switchboard_hub::frame;
use switchboard_hub::outbox::Taken;
use switchboard_hub::{Outbox, Subscriber};
use switchboard_wire::pb::{self, command::Command as C, reply::Reply as R};
use switchboard_wire::{Channel, ChannelError, CloseCode, DecodeError, Encoding, ErrorCode};
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;
use tracing::field::Empty;

use switchboard_bus::{Address, BusError, HistoryPage, HistoryQuery, Position, PublishOptions};

use crate::Shared;
use crate::auth::{Claims, Grants};
use crate::limits::{Admit, Client, Flow};
use crate::node::{SessionCommand, SessionHandle, now_ms};
use crate::permissions::Op;
use crate::socket::Socket;

use crate::ws::{FrameReader, Message, ReadError};
use in_flight::{InFlight, Wait};

/// Most frames written in one vectored write.
const MAX_IOV: usize = 64;
/// The write buffer a flush keeps for the next batch, in frames (32 bytes each).
const MAX_KEPT_FRAMES: usize = 1024;
/// Publications a `history` command returns when it names no limit, and the most it may.
const DEFAULT_HISTORY_LIMIT: u32 = 100;
const MAX_HISTORY_LIMIT: u32 = 1000;
/// Time allowed to flush a close frame and hear the client's close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

type CommandResult = Result<R, Refusal>;
/// Why a command was not run: its error code and message.
type Refusal = (ErrorCode, String);

/// Who asked for a command: the client, with the command's id, or a backend, whose
/// subscribe and unsubscribe are told to the client as pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asker {
    Client(u32),
    Backend,
}

/// Whether [`Session::read`] reads the socket before it handles what the reader holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    Yes,
    No,
}

/// What a command ends with once its wait on the bus is over, finished by the session in
/// command order ([`Session::complete`]).
enum Done {
    /// A client command's reply.
    Reply(u32, CommandResult),
    /// A subscribe's confirmation and position (none in a live-only namespace): the session
    /// keeps the subscription (its registry event) or undoes it, and replies.
    Subscribe { asker: Asker, channel: Channel, position: Result<Option<Position>, BusError> },
    /// A subscribe resuming from `since`: the history read after it, to join with.
    Recover { id: u32, channel: Channel, since: Position, page: Result<HistoryPage, BusError> },
    /// An unsubscribe, already out of the hub: its registry event and its reply.
    Unsubscribe { asker: Asker, channel: Channel },
}

/// How a session ends.
enum End {
    /// The server closes with this code.
    Close(CloseCode),
    /// A backend asked to close with this code and reason.
    CloseWith(u16, String),
    /// The client sent a close frame (with this code, if any).
    ClientClosed(Option<u16>),
    /// The connection broke; nothing more can be sent.
    Gone,
}

struct Session {
    shared: Arc<Shared>,
    stream: Arc<Socket>,
    reader: FrameReader,
    sub: Arc<Subscriber>,
    handle: Arc<SessionHandle>,
    /// Set by the connect command.
    session_id: Option<Box<str>>,
    user: String,
    /// A token that came with the upgrade request (header or URL), for `connect`.
    upgrade_token: Option<Box<str>>,
    /// What the session's token grants (boxed, and only when it grants something: an idle
    /// session stays small), and when it expires (Unix seconds, 0: never).
    grants: Option<Box<Grants>>,
    expires_at: u64,
    /// `rpc` commands waiting for a backend.
    pending_rpcs: Arc<AtomicUsize>,
    channels: Vec<Channel>,
    /// Frames taken from the outbox and not yet fully written; `pending[..head]` are done.
    pending: Vec<Bytes>,
    head: usize,
    last_seen: Instant,
    /// The client's address, and the per-address and per-user counts it holds.
    client: Client,
    /// The session's message and byte rate buckets.
    flow: Flow,
    /// Commands waiting on the bus and registry events going out; `None` while nothing
    /// waits (see [`in_flight`]).
    in_flight: Option<Box<InFlight>>,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    stream: Socket,
    initial: Bytes,
    encoding: Encoding,
    client: Client,
    upgrade_token: Option<String>,
) {
    shared.metrics.connections_total.increment(1);
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let config = &shared.config;
    // Shared with the outbox, which writes to it directly while nothing is queued (see
    // `switchboard_hub::outbox`).
    let stream = Arc::new(stream);
    let outbox = Outbox::with_sink(config.max_queue_bytes, stream.clone());
    let sub = Arc::new(Subscriber { id, encoding, outbox });
    let mut session = Session {
        reader: FrameReader::with_initial(config.max_message_size, &initial),
        handle: Arc::new(SessionHandle::new(sub.clone())),
        sub,
        shared: shared.clone(),
        stream,
        session_id: None,
        user: String::new(),
        upgrade_token: upgrade_token.map(String::into_boxed_str),
        grants: None,
        expires_at: 0,
        pending_rpcs: Arc::new(AtomicUsize::new(0)),
        channels: Vec::new(),
        pending: Vec::new(),
        head: 0,
        last_seen: Instant::now(),
        client,
        flow: Flow::default(),
        in_flight: None,
    };
    tracing::trace!(client = %session.client.ip, "session started");
    // The bytes that came with the handshake share hyper's read buffer (~8 KiB): copied
    // into the reader above, they must not be kept alive for the whole session.
    drop(initial);
    let end = session.serve().await;
    // The commands still waiting are dropped: the channels they added are in `channels`,
    // left below. The events still going out (registry events, which `session_down`
    // supersedes, and joins and leaves, which it does not) go out before it.
    let events = in_flight::take_events(&mut session.in_flight);
    session.in_flight = None;
    let label = match &end {
        End::Close(code) => code.code.to_string(),
        End::CloseWith(..) => "backend".to_owned(),
        End::ClientClosed(_) => "client".to_owned(),
        End::Gone => "gone".to_owned(),
    };
    Box::pin(session.finish(end)).await;
    for channel in std::mem::take(&mut session.channels) {
        shared.hub.unsubscribe(&channel, id);
        shared.interest.abandon_join(&channel, id);
    }
    if let Some(session_id) = &session.session_id {
        Box::pin(session_down(&shared, session_id, events)).await;
    }
    shared.connections.fetch_sub(1, Ordering::AcqRel);
    metrics::counter!(crate::metrics::DISCONNECTS_TOTAL, "code" => label).increment(1);
}

/// Finishes sending what the session had going out (within [`CLOSE_GRACE`]), unregisters
/// it, and sends the `leave` of each channel it was subscribed to (as the registry had
/// them) whose namespace has `join_leave`.
async fn session_down(shared: &Shared, session_id: &str, events: VecDeque<BoxFuture<'static, ()>>) {
    if !events.is_empty() {
        let sent = async {
            for event in events {
                event.await;
            }
        };
        if tokio::time::timeout(CLOSE_GRACE, sent).await.is_err() {
            tracing::debug!("a session's last events were not all sent in time");
        }
    }
    let Some(record) = shared.node.session_down(session_id).await else { return };
    let leaves: Vec<_> = record
        .channels
        .iter()
        .filter_map(|c| Channel::parse(c).ok())
        .filter(|c| shared.config.channels.join_leave(c))
        .map(|c| shared.bus.publish_event(&c, join_leave(&c, session_id, &record.user, &record.info, false)))
        .collect();
    for r in futures_util::future::join_all(leaves).await {
        if let Err(e) = r {
            tracing::debug!(error = %e, "leave not sent");
        }
    }
}

// === impl Session ===

impl Session {
    async fn serve(&mut self) -> End {
        // Only the timers, not a clone of the whole config: this future lives as long as
        // the session.
        let (ping_interval, pong_timeout, drain_window) = {
            let c = &self.shared.config;
            (c.ping_interval, c.pong_timeout, c.drain_window)
        };
        let mut draining = self.shared.draining.subscribe();
        let drained = async { draining.wait_for(|d| *d).await.map(|_| ()) };
        tokio::pin!(drained);
        let connect_deadline = Instant::now() + self.shared.config.handshake_timeout;
        let mut next_ping = Instant::now() + ping_interval;
        // Set when a ping goes out: by then something must have arrived from the client.
        let mut pong_deadline: Option<(Instant, Instant)> = None;
        let mut drain_at: Option<Instant> = None;
        let timer = sleep_until(connect_deadline);
        tokio::pin!(timer);
        // Set by a branch that has messages to handle (see below the select).
        let mut messages = None;
        loop {
            let expiry = self.expiry();
            let wake = [
                Some(next_ping),
                pong_deadline.map(|(_, deadline)| deadline),
                self.session_id.is_none().then_some(connect_deadline),
                drain_at,
                expiry,
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("next_ping is always set");
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            // Every branch but the timers is a plain poll that leaves the waker in one slot
            // (the outbox, the command queue, the socket's readiness): nothing is inserted
            // into or removed from a waiter list on each turn, which is most of what a
            // delivery costs outside the kernel.
            tokio::select! {
                biased;
                taken = poll_fn(|cx| self.sub.outbox.poll_take(cx, &mut self.pending)), if self.pending.is_empty() => {
                    if taken == Taken::Overflowed {
                        self.shared.metrics.slow_consumer();
                        return End::Close(CloseCode::SLOW_CONSUMER);
                    }
                    if self.flush().is_err() {
                        return End::Gone;
                    }
                }
                r = poll_fn(|cx| self.stream.poll_write_ready(cx)), if !self.pending.is_empty() => {
                    if r.is_err() || self.flush().is_err() {
                        return End::Gone;
                    }
                }
                // A client that stops reading leaves the writer waiting for writability,
                // possibly forever (it may still send pings); the queue behind it overflows
                // meanwhile, and that alone ends the session.
                () = poll_fn(|cx| self.sub.outbox.poll_overflow(cx)), if !self.pending.is_empty() => {
                    self.shared.metrics.slow_consumer();
                    return End::Close(CloseCode::SLOW_CONSUMER);
                }
                // TLS only: records a write encrypted but the socket did not take yet.
                _ = poll_fn(|cx| self.stream.poll_backlog(cx)), if self.stream.is_tls() => return End::Gone,
                // Taken even while the session is full, so a disconnect is never held up;
                // the handle's own bound (`MAX_QUEUED_COMMANDS`) bounds these.
                commands = poll_fn(|cx| self.handle.poll_commands(cx)) => {
                    for command in commands {
                        if let Some(end) = self.on_backend_command(command) {
                            return end;
                        }
                    }
                }
                // What woke is small: the command that is over waits in the box.
                () = poll_fn(|cx| in_flight::poll(&mut self.in_flight, cx)), if self.in_flight.is_some() => {
                    if let Some(done) = in_flight::take(&mut self.in_flight) {
                        self.complete(done);
                    }
                    // Room again: the messages the reader kept while the session was full.
                    if self.reader.held_bytes() > 0 && !self.is_full() {
                        messages = Some(Fill::No);
                    }
                }
                // Not while full: backpressure, the client's further commands wait in the
                // socket.
                r = poll_fn(|cx| self.stream.poll_read_ready(cx)), if !self.is_full() => {
                    if r.is_err() {
                        return End::Gone;
                    }
                    messages = Some(Fill::Yes);
                }
                _ = &mut timer => {
                    let now = Instant::now();
                    if self.session_id.is_none() && now >= connect_deadline {
                        self.shared.metrics.limit_connect_timeout.increment(1);
                        return End::Close(CloseCode::CONNECT_TIMEOUT);
                    }
                    if drain_at.is_some_and(|t| now >= t) {
                        return End::Close(CloseCode::SHUTDOWN);
                    }
                    if expiry.is_some_and(|t| now >= t) {
                        self.shared.metrics.limit_token_expired.increment(1);
                        return End::Close(CloseCode::TOKEN_EXPIRED);
                    }
                    if let Some((sent, deadline)) = pong_deadline && now >= deadline {
                        if self.last_seen < sent {
                            self.shared.metrics.limit_pong_timeout.increment(1);
                            return End::Close(CloseCode::NO_PONG);
                        }
                        pong_deadline = None;
                    }
                    if now >= next_ping {
                        self.trim();
                        self.sub.outbox.push(frame::control(frame::OPCODE_PING, b""));
                        next_ping = now + ping_interval;
                        if pong_deadline.is_none() {
                            pong_deadline = Some((now, now + pong_timeout));
                        }
                    }
                }
                _ = &mut drained, if drain_at.is_none() => {
                    let spread = drain_window.as_millis() as u64;
                    drain_at = Some(Instant::now() + Duration::from_millis(fastrand::u64(0..=spread)));
                }
            }
            // One await for both branches that hand messages over, outside the select: boxed,
            // since command handling is the deepest state machine in the session, and an
            // idle session should not carry room for it.
            if let Some(fill) = messages.take()
                && let Some(end) = Box::pin(self.read(fill)).await
            {
                return end;
            }
        }
    }

    /// Reads what the socket has (with [`Fill::Yes`]), then handles the complete messages
    /// the reader holds until the session is full: the rest stay in the reader until a
    /// waiting command ends.
    async fn read(&mut self, fill: Fill) -> Option<End> {
        if fill == Fill::Yes {
            match self.reader.fill(|buf| self.stream.try_read_buf(buf)) {
                Ok(true) => self.last_seen = Instant::now(),
                Ok(false) => return None,
                Err(e) => return Some(self.read_failed(e)),
            }
        }
        while !self.is_full() {
            match self.reader.next_message() {
                Ok(Some(message)) => {
                    if let Some(end) = self.on_message(message).await {
                        return Some(end);
                    }
                }
                Ok(None) => return None,
                Err(e) => return Some(self.read_failed(e)),
            }
        }
        None
    }

    fn read_failed(&self, e: ReadError) -> End {
        match e {
            ReadError::Io(_) | ReadError::Eof => End::Gone,
            ReadError::Protocol(why) => {
                tracing::debug!(why, "websocket protocol error");
                End::Close(CloseCode::PROTOCOL_ERROR)
            }
            ReadError::InvalidUtf8 => End::Close(CloseCode::INVALID_PAYLOAD),
            ReadError::TooBig(_) => {
                self.shared.metrics.limit_message_size.increment(1);
                End::Close(CloseCode::MESSAGE_TOO_BIG)
            }
        }
    }

    async fn on_message(&mut self, message: Message) -> Option<End> {
        let encoding = self.sub.encoding;
        match message {
            Message::Text(payload) if encoding == Encoding::Json => self.on_data(&payload).await,
            Message::Binary(payload) if encoding == Encoding::Protobuf => self.on_data(&payload).await,
            Message::Text(_) | Message::Binary(_) => Some(End::Close(CloseCode::UNSUPPORTED_DATA)),
            Message::Ping(payload) => {
                self.sub.outbox.push(frame::control(frame::OPCODE_PONG, &payload));
                None
            }
            Message::Pong => None,
            Message::Close(code, _) => Some(End::ClientClosed(code)),
        }
    }

    /// Runs a client message if the session's rates admit it (`limits`); a refused one
    /// is answered error 109 and not run.
    async fn on_data(&mut self, payload: &[u8]) -> Option<End> {
        match self.shared.limits.admit_message(&mut self.flow, self.last_seen, payload.len()) {
            Admit::Run => self.on_command(payload).await,
            Admit::Close => Some(End::Close(CloseCode::RATE_LIMITED)),
            Admit::Refuse(why) => {
                self.shared.metrics.messages_received.increment(1);
                match self.sub.encoding.decode_command(payload) {
                    Ok(pb::Command { id, .. }) | Err(DecodeError { id: Some(id), .. }) => {
                        self.then(Done::Reply(id, Err((ErrorCode::LIMIT_EXCEEDED, why.into()))))
                    }
                    Err(DecodeError { id: None, .. }) => Some(End::Close(CloseCode::BAD_REQUEST)),
                }
            }
        }
    }

    async fn on_command(&mut self, payload: &[u8]) -> Option<End> {
        self.shared.metrics.messages_received.increment(1);
        let cmd = match self.sub.encoding.decode_command(payload) {
            Ok(cmd) => cmd,
            Err(DecodeError { id: Some(id), code, message }) => {
                return self.then(Done::Reply(id, Err((code, message))));
            }
            Err(DecodeError { id: None, message, .. }) => {
                tracing::debug!(%message, "frame is not a command");
                return Some(End::Close(CloseCode::BAD_REQUEST));
            }
        };
        let command = cmd.command.expect("decode_command checks the command is known");
        if self.session_id.is_some()
            && let C::Subscribe(pb::SubscribeRequest { channel, .. })
            | C::Publish(pb::PublishRequest { channel, .. })
            | C::History(pb::HistoryRequest { channel, .. })
            | C::Presence(pb::PresenceRequest { channel })
            | C::PresenceStats(pb::PresenceStatsRequest { channel }) = &command
            && let Err(e) = self.shared.limits.check_channel_len(channel)
        {
            return self.then(Done::Reply(cmd.id, Err(e)));
        }
        let id = cmd.id;
        let result = match command {
            C::Connect(c) => {
                let started = std::time::Instant::now();
                let span = tracing::info_span!("connect", conn = self.sub.id, session = Empty, user = Empty);
                let connected = self.connect(c).instrument(span).await;
                self.shared.metrics.connect.record(started.elapsed());
                match connected {
                    Ok(result) => result,
                    Err(end) => return Some(end),
                }
            }
            _ if self.session_id.is_none() => Err((ErrorCode::NOT_CONNECTED, "send connect first".into())),
            C::Subscribe(s) => match self.subscribe(Asker::Client(id), &s.channel, s.recover) {
                Ok(wait) => return self.start(wait),
                Err(e) => Err(e),
            },
            C::History(h) => match self.history(id, h) {
                Ok(wait) => return self.start(wait),
                Err(e) => Err(e),
            },
            C::Presence(p) => match self.presence(id, &p.channel, false) {
                Ok(wait) => return self.start(wait),
                Err(e) => Err(e),
            },
            C::PresenceStats(p) => match self.presence(id, &p.channel, true) {
                Ok(wait) => return self.start(wait),
                Err(e) => Err(e),
            },
            C::Refresh(r) => self.refresh(r).await,
            C::Unsubscribe(u) => match self.unsubscribe(Asker::Client(id), &u.channel) {
                Ok(done) => return self.then(done),
                Err(e) => Err(e),
            },
            C::Publish(p) => match self.publish(id, &p.channel, p.data) {
                Ok(wait) => return self.start(wait),
                Err(e) => Err(e),
            },
            C::Ping(_) => Ok(R::Ping(pb::PingResult {})),
            C::Send(s) => return self.start(self.upstream_send(id, s.data)),
            C::Rpc(r) => match self.upstream_rpc(id, r) {
                // The reply goes out when the backend answers.
                Ok(()) => return None,
                Err(e) => Err(e),
            },
        };
        self.then(Done::Reply(id, result))
    }

    /// Starts a command's wait on the bus behind those still waiting (see [`in_flight`]).
    /// Returns `None`, for `on_command`'s convenience.
    fn start(&mut self, wait: Wait) -> Option<End> {
        match in_flight::start(&mut self.in_flight, wait) {
            Some(done) => self.complete(done),
            None => self.count_if_full(),
        }
        None
    }

    /// Finishes a command that needed no bus, after those still waiting. Returns `None`.
    fn then(&mut self, done: Done) -> Option<End> {
        match in_flight::then(&mut self.in_flight, done) {
            Some(done) => self.complete(done),
            None => self.count_if_full(),
        }
        None
    }

    /// Whether `max_pending_commands` commands and events wait: the socket is not read.
    fn is_full(&self) -> bool {
        self.in_flight.as_ref().is_some_and(|w| w.len() >= self.shared.config.max_pending_commands)
    }

    /// Counts the session reaching its limit of waiting commands (once per time it does).
    fn count_if_full(&self) {
        if self.in_flight.as_ref().is_some_and(|w| w.len() == self.shared.config.max_pending_commands) {
            self.shared.metrics.limit_pending_commands.increment(1);
        }
    }

    /// Finishes a command whose wait is over; called in command order.
    fn complete(&mut self, done: Done) {
        match done {
            Done::Reply(id, result) => self.reply(id, result),
            Done::Subscribe { asker, channel, position } => self.subscribed(asker, channel, position),
            Done::Recover { id, channel, since, page } => self.recovered(id, channel, since, page),
            Done::Unsubscribe { asker, channel } => {
                self.record_change(&channel, false);
                match asker {
                    Asker::Client(id) => self.reply(id, Ok(R::Unsubscribe(pb::UnsubscribeResult {}))),
                    Asker::Backend => self
                        .push(R::Unsubscribed(pb::Unsubscribed { channel: channel.to_string(), resubscribe: false })),
                }
                self.announce(&channel, false);
            }
        }
    }

    /// Records a subscription change in the node agent and sends its registry event after
    /// the session's earlier ones.
    fn record_change(&mut self, channel: &Channel, subscribed: bool) {
        let session = self.session_id.as_deref().unwrap_or_default();
        if let Some(event) = self.shared.node.channel_change(session, channel, subscribed) {
            in_flight::send(&mut self.in_flight, event);
            self.count_if_full();
        }
    }

    /// With `join_leave` on the channel's namespace, sends its `join` or `leave` to every
    /// subscriber in the cluster, after the session's earlier registry events and
    /// announcements (so a session's join and leave go out in order). Called once the
    /// subscribe reply is queued, so the session's own `join` comes after it.
    fn announce(&mut self, channel: &Channel, join: bool) {
        if !self.shared.config.channels.join_leave(channel) {
            return;
        }
        let session = self.session_id.as_deref().unwrap_or_default();
        let info = self.handle.info.get().cloned().unwrap_or_default();
        let sent = self.shared.bus.publish_event(channel, join_leave(channel, session, &self.user, &info, join));
        in_flight::send(
            &mut self.in_flight,
            async move {
                if let Err(e) = sent.await {
                    tracing::debug!(error = %e, "join or leave not sent");
                }
            }
            .boxed(),
        );
        self.count_if_full();
    }

    /// Runs what a backend asked of this session; a subscribe or unsubscribe the session
    /// cannot take (a duplicate, a limit) is dropped without a push.
    fn on_backend_command(&mut self, command: SessionCommand) -> Option<End> {
        match command {
            SessionCommand::Disconnect(code, reason) => Some(End::CloseWith(code, reason)),
            SessionCommand::Subscribe(channel) => match self.subscribe(Asker::Backend, channel.as_str(), None) {
                Ok(wait) => self.start(wait),
                Err(_) => None,
            },
            SessionCommand::Unsubscribe(channel) => match self.unsubscribe(Asker::Backend, channel.as_str()) {
                Ok(done) => self.then(done),
                Err(_) => None,
            },
            SessionCommand::Interrupted(channel) => {
                // Publications were lost on their way here: the client subscribes again
                // from the last one it received.
                if let Some(i) = self.channels.iter().position(|c| c == &channel) {
                    self.channels.swap_remove(i);
                    self.shared.hub.unsubscribe(&channel, self.sub.id);
                    self.shared.interest.abandon_join(&channel, self.sub.id);
                    self.record_change(&channel, false);
                    self.push(R::Unsubscribed(pb::Unsubscribed { channel: channel.to_string(), resubscribe: true }));
                    self.announce(&channel, false);
                }
                None
            }
        }
    }

    fn push(&self, push: R) {
        self.reply(0, Ok(push));
    }

    fn upstream_message(&self, data: Bytes) -> switchboard_bus::Message {
        switchboard_bus::Message::new(data)
            .with_header("Sb-Session", self.session_id.as_deref().unwrap_or_default())
            .with_header("Sb-User", self.user.clone())
            .with_header("Sb-Gateway", self.shared.config.node_id.clone())
            .with_header("Sb-Encoding", if self.sub.encoding.is_text() { "json" } else { "protobuf" })
    }

    fn upstream_send(&self, id: u32, data: Bytes) -> Wait {
        let sent = self.shared.bus.send(&Address::UpstreamSend, self.upstream_message(data));
        async move {
            let result = match sent.await {
                Ok(()) => Ok(R::Send(pb::SendResult {})),
                Err(e) => Err((ErrorCode::UNAVAILABLE, e.to_string())),
            };
            Done::Reply(id, result)
        }
        .boxed()
    }

    /// Starts an rpc; its reply is queued when the backend answers or the time is up.
    fn upstream_rpc(&self, id: u32, req: pb::RpcRequest) -> Result<(), Refusal> {
        if !switchboard_bus::subjects::is_token(&req.method) {
            return Err((ErrorCode::BAD_REQUEST, "rpc.method must be 1-128 characters of [A-Za-z0-9_-]".into()));
        }
        let limit = self.shared.config.max_pending_rpcs;
        if self.pending_rpcs.fetch_add(1, Ordering::AcqRel) >= limit {
            self.pending_rpcs.fetch_sub(1, Ordering::AcqRel);
            self.shared.metrics.limit_pending_rpcs.increment(1);
            return Err((ErrorCode::LIMIT_EXCEEDED, format!("at most {limit} rpcs may wait per session")));
        }
        let method: Arc<str> = Arc::from(req.method.as_str());
        let request = self.shared.bus.request(
            &Address::UpstreamRpc(method.clone()),
            self.upstream_message(req.data),
            self.shared.config.rpc_timeout,
        );
        let (sub, pending, timeouts) =
            (self.sub.clone(), self.pending_rpcs.clone(), self.shared.metrics.limit_rpc_timeout.clone());
        tokio::spawn(async move {
            let result = match request.await {
                Ok(m) => match m.header("Sb-Error") {
                    Some(e) => Err((ErrorCode::BACKEND_ERROR, e.to_owned())),
                    None => Ok(R::Rpc(pb::RpcResult { data: m.payload })),
                },
                Err(BusError::NoResponders) => {
                    Err((ErrorCode::UNAVAILABLE, format!("no backend serves rpc method {method:?}")))
                }
                Err(BusError::Timeout) => {
                    timeouts.increment(1);
                    Err((ErrorCode::TIMEOUT, "the backend did not answer in time".into()))
                }
                Err(e) => Err((ErrorCode::UNAVAILABLE, e.to_string())),
            };
            pending.fetch_sub(1, Ordering::AcqRel);
            let reply = match result {
                Ok(r) => pb::Reply { id, reply: Some(r) },
                Err((code, message)) => switchboard_wire::protocol::error_reply(id, code, message),
            };
            let encoding = sub.encoding;
            sub.outbox.push(frame::encode(encoding, |buf| encoding.encode_reply(&reply, buf)));
        });
        Ok(())
    }

    fn reply(&self, id: u32, result: CommandResult) {
        self.sub.outbox.push(reply_frame(self.sub.encoding, id, result));
    }

    /// Authenticates and registers the session; a rejected token ends it (4501).
    async fn connect(&mut self, req: pb::ConnectRequest) -> Result<CommandResult, End> {
        if self.session_id.is_some() {
            return Ok(Err((ErrorCode::ALREADY_CONNECTED, "this session is connected".into())));
        }
        let token = if req.token.is_empty() {
            self.upgrade_token.take().map(String::from).unwrap_or_default()
        } else {
            req.token.clone()
        };
        let auth = &self.shared.config.auth;
        let claims = if !auth.checks_tokens() || (token.is_empty() && auth.allow_anonymous) {
            // No keys: every session is anonymous, whatever it sends.
            Claims::default()
        } else {
            match self.shared.verifier.verify(&token).await {
                // User ids travel in bus subjects: an unbounded one could cut the gateway
                // off its bus.
                Ok(claims) if claims.user.len() > self.shared.config.max_user_id_len => {
                    tracing::debug!(len = claims.user.len(), "connect token refused: its sub is too long");
                    self.shared.metrics.limit_user_id.increment(1);
                    return Err(End::Close(CloseCode::UNAUTHORIZED));
                }
                Ok(claims) => claims,
                Err(e) => {
                    tracing::debug!(error = %e, "connect token rejected");
                    crate::metrics::Metrics::auth_failure(e.reason());
                    self.shared.metrics.limit_token.increment(1);
                    return Err(End::Close(CloseCode::UNAUTHORIZED));
                }
            }
        };
        let user = claims.user.clone();
        // Kept in the handle (on the heap): an idle session's task does not grow.
        let info = claims.info.clone().unwrap_or_default();
        let _ = self.handle.info.set(info.clone());
        self.grants = (!claims.grants.is_empty()).then(|| Box::new(claims.grants));
        self.expires_at = claims.expires_at;
        self.shared.limits.hold_user(&mut self.client, &user).map_err(End::Close)?;
        // The boot tag keeps ids unique across restarts of a gateway with the same node id.
        let session = format!("{}-{}{:x}", self.shared.config.node_id, self.shared.boot, self.sub.id);
        self.session_id = Some(session.clone().into());
        self.user = user.clone();
        let span = tracing::Span::current();
        span.record("session", session.as_str());
        span.record("user", user.as_str());
        tracing::debug!("connected");
        let record = pb::SessionRecord {
            session: session.clone(),
            gateway: self.shared.config.node_id.clone(),
            user: user.clone(),
            channels: Vec::new(),
            connected_at_ms: now_ms(),
            client_name: req.name,
            client_version: req.version,
            seq: 0,
            info,
        };
        self.shared.node.session_up(record, self.handle.clone()).await;
        Ok(Ok(R::Connect(pb::ConnectResult {
            session,
            user,
            version: env!("CARGO_PKG_VERSION").into(),
            ping_interval: self.shared.config.ping_interval.as_secs() as u32,
            expires_at: self.expires_at,
        })))
    }

    /// When the session's token expires, with the verifier's leeway, as a timer instant.
    fn expiry(&self) -> Option<Instant> {
        if self.expires_at == 0 {
            return None;
        }
        let left = self.expires_at.saturating_sub(now_ms() as u64 / 1000);
        Some(Instant::now() + Duration::from_secs(left) + self.shared.config.auth.leeway)
    }

    /// What the session's token grants.
    fn grants(&self) -> &Grants {
        static NONE: Grants = Grants::NONE;
        self.grants.as_deref().unwrap_or(&NONE)
    }

    /// A new token for the same user: its grants and expiry replace the current ones.
    async fn refresh(&mut self, req: pb::RefreshRequest) -> CommandResult {
        if !self.shared.config.auth.checks_tokens() {
            return Err((ErrorCode::BAD_REQUEST, "this gateway does not check tokens".into()));
        }
        let claims = match self.shared.verifier.verify(&req.token).await {
            Ok(c) => c,
            Err(e) => {
                crate::metrics::Metrics::auth_failure(e.reason());
                self.shared.metrics.limit_token.increment(1);
                return Err((ErrorCode::PERMISSION_DENIED, format!("refresh token refused: {e}")));
            }
        };
        if claims.user != self.user {
            return Err((ErrorCode::PERMISSION_DENIED, "the refresh token is for another user".into()));
        }
        self.grants = (!claims.grants.is_empty()).then(|| Box::new(claims.grants));
        self.expires_at = claims.expires_at;
        Ok(R::Refresh(pb::RefreshResult { expires_at: self.expires_at }))
    }

    /// A subscribe's synchronous part: the checks (a backend's subscribe skips the channel
    /// rules), the hub add and the channel list; what it returns waits for the bus's
    /// confirmation and the channel's position, and [`Session::subscribed`] finishes it.
    /// With `recover`, the session joins the hub from `u64::MAX` and the wait reads the
    /// history after the position ([`crate::channels`]); [`Session::recovered`] finishes it.
    fn subscribe(&mut self, asker: Asker, name: &str, recover: Option<pb::StreamPosition>) -> Result<Wait, Refusal> {
        let channel = parse_channel(name)?;
        let span = tracing::debug_span!("subscribe", session = self.session_id.as_deref(), channel = name);
        if asker != Asker::Backend {
            self.shared.config.channels.check(Op::Subscribe, &channel, &self.user, self.grants()).map_err(denied)?;
        }
        if self.channels.contains(&channel) {
            return Err((ErrorCode::ALREADY_SUBSCRIBED, format!("already subscribed to {channel}")));
        }
        if !self.shared.bus.is_ready() {
            return Err((ErrorCode::UNAVAILABLE, "the bus is unreachable; try again".into()));
        }
        if self.channels.len() >= self.shared.config.max_subscriptions {
            self.shared.metrics.limit_subscriptions.increment(1);
            return Err((
                ErrorCode::LIMIT_EXCEEDED,
                format!("at most {} subscriptions per session", self.shared.config.max_subscriptions),
            ));
        }
        let from = if recover.is_some() { u64::MAX } else { 0 };
        self.shared.hub.subscribe_from(&channel, &self.sub, from);
        self.channels.push(channel.clone());
        let (confirmed, bus) = (self.shared.interest.confirmed(&channel), self.shared.bus.clone());
        if let (Some(since), Asker::Client(id)) = (recover, asker) {
            let since = Position { offset: since.offset, epoch: Arc::from(since.epoch) };
            let (channels, sub, limit) = (self.shared.interest.clone(), self.sub.id, self.shared.config.max_recovery);
            return Ok(async move {
                let page = match confirmed.await {
                    Ok(()) => {
                        channels.begin_join(&channel, sub, limit);
                        let query = HistoryQuery { since: Some(since.clone()), limit, reverse: false };
                        bus.history(&channel, query).await
                    }
                    Err(e) => Err(e),
                };
                tracing::debug!(read = page.is_ok(), "subscribed, history read");
                Done::Recover { id, channel, since, page }
            }
            .instrument(span)
            .boxed());
        }
        Ok(async move {
            let position = match confirmed.await {
                Ok(()) => bus.position(&channel).await,
                Err(e) => Err(e),
            };
            tracing::debug!(confirmed = position.is_ok(), "subscribed");
            Done::Subscribe { asker, channel, position }
        }
        .instrument(span)
        .boxed())
    }

    /// Finishes a subscribe, in command order. Its reply never promises a subscription the
    /// bus has not confirmed. The subscription it added may be gone (unsubscribed while it
    /// waited, perhaps subscribed again since): only the one it added, the same `Channel`
    /// value, gets its registry event or, when the bus failed, is undone.
    fn subscribed(&mut self, asker: Asker, channel: Channel, position: Result<Option<Position>, BusError>) {
        let held = self.channels.iter().position(|c| c.is_same(&channel));
        let joined = held.is_some() && position.is_ok();
        let result = match position {
            Ok(p) => {
                if held.is_some() {
                    self.record_change(&channel, true);
                }
                Ok(p)
            }
            Err(e) => {
                if let Some(i) = held {
                    self.channels.swap_remove(i);
                    self.shared.hub.unsubscribe(&channel, self.sub.id);
                }
                Err((ErrorCode::UNAVAILABLE, e.to_string()))
            }
        };
        let at = |p: &Option<Position>| p.as_ref().map_or((0, String::new()), |p| (p.offset, p.epoch.to_string()));
        match (asker, result) {
            (Asker::Client(id), result) => self.reply(
                id,
                result.map(|p| {
                    let (offset, epoch) = at(&p);
                    R::Subscribe(pb::SubscribeResult { epoch, offset, recovered: false, history: p.is_some() })
                }),
            ),
            (Asker::Backend, Ok(p)) => {
                let (offset, epoch) = at(&p);
                self.push(R::Subscribed(pb::Subscribed { channel: channel.to_string(), epoch, offset }))
            }
            (Asker::Backend, Err(_)) => {}
        }
        if joined {
            self.announce(&channel, true);
        }
    }

    /// Finishes a subscribe that resumes from `since`, in command order: the reply, then
    /// every publication after `since` (from the history, then from what reached the
    /// gateway meanwhile), then live ones ([`crate::channels::Channels::join`]). Only the
    /// subscription it added (the same `Channel` value) is joined or undone.
    fn recovered(&mut self, id: u32, channel: Channel, since: Position, page: Result<HistoryPage, BusError>) {
        let held = self.channels.iter().position(|c| c.is_same(&channel));
        let channels = self.shared.interest.clone();
        let Some(i) = held else {
            channels.abandon_join(&channel, self.sub.id);
            return self.reply(id, Err((ErrorCode::UNAVAILABLE, "unsubscribed while recovering".into())));
        };
        let joined = match page {
            Ok(mut page) => {
                // A page cut at the limit may not reach the live ones: not continuous.
                if page.publications.len() >= self.shared.config.max_recovery
                    && page.publications.last().is_some_and(|p| p.offset < page.latest.offset)
                {
                    self.shared.metrics.limit_recovery.increment(1);
                    page.continuous = false;
                    page.publications.clear();
                }
                let encoding = self.sub.encoding;
                channels.join(&self.shared.hub, &self.sub, &channel, &since, page, |joined| {
                    let result = R::Subscribe(pb::SubscribeResult {
                        epoch: joined.position.epoch.to_string(),
                        offset: joined.position.offset,
                        recovered: joined.recovered,
                        history: true,
                    });
                    reply_frame(encoding, id, Ok(result))
                })
            }
            Err(BusError::NoHistory) => {
                // Nothing to resume in a live-only namespace: a plain subscription.
                channels.abandon_join(&channel, self.sub.id);
                self.shared.hub.set_from(&channel, self.sub.id, 0);
                self.record_change(&channel, true);
                let result = pb::SubscribeResult { recovered: false, history: false, ..Default::default() };
                self.reply(id, Ok(R::Subscribe(result)));
                return self.announce(&channel, true);
            }
            Err(e) => Err(e),
        };
        match joined {
            Ok(j) => {
                match j.recovered {
                    true => self.shared.metrics.recoveries.increment(1),
                    false => self.shared.metrics.recoveries_failed.increment(1),
                }
                self.record_change(&channel, true);
                self.announce(&channel, true);
            }
            Err(e) => {
                channels.abandon_join(&channel, self.sub.id);
                self.channels.swap_remove(i);
                self.shared.hub.unsubscribe(&channel, self.sub.id);
                self.reply(id, Err((ErrorCode::UNAVAILABLE, e.to_string())));
            }
        }
    }

    /// A `history` command, for a session that may subscribe to the channel or whose token
    /// grants its history.
    fn history(&self, id: u32, req: pb::HistoryRequest) -> Result<Wait, Refusal> {
        let channel = parse_channel(&req.channel)?;
        self.shared.config.channels.check(Op::History, &channel, &self.user, self.grants()).map_err(denied)?;
        let limit = match req.limit {
            0 => DEFAULT_HISTORY_LIMIT,
            n if n > MAX_HISTORY_LIMIT => {
                return Err((ErrorCode::BAD_REQUEST, format!("history.limit must be at most {MAX_HISTORY_LIMIT}")));
            }
            n => n,
        };
        let since = req.since.map(|p| Position { offset: p.offset, epoch: Arc::from(p.epoch) });
        let query = HistoryQuery { since, limit: limit as usize, reverse: req.reverse };
        let read = self.shared.bus.history(&channel, query);
        Ok(async move {
            let result = match read.await {
                Ok(page) => Ok(R::History(pb::HistoryResult {
                    publications: page
                        .publications
                        .into_iter()
                        .map(|p| pb::Publication {
                            channel: req.channel.clone(),
                            offset: p.offset,
                            epoch: p.epoch.to_string(),
                            data: p.data,
                        })
                        .collect(),
                    epoch: page.latest.epoch.to_string(),
                    offset: page.latest.offset,
                    continuous: page.continuous,
                })),
                Err(BusError::NoHistory) => Err((ErrorCode::NO_HISTORY, format!("{channel} keeps no history"))),
                Err(e) => Err((ErrorCode::UNAVAILABLE, e.to_string())),
            };
            Done::Reply(id, result)
        }
        .boxed())
    }

    /// A `presence` or `presence_stats` (`stats`) command, for a session that may
    /// subscribe to a channel of a namespace with `presence` (or whose token grants its
    /// presence): one question to any control replica over the bus, which gathers the
    /// answer from the whole registry.
    fn presence(&self, id: u32, name: &str, stats: bool) -> Result<Wait, Refusal> {
        let channel = parse_channel(name)?;
        let rules = &self.shared.config.channels;
        rules.check(Op::Presence, &channel, &self.user, self.grants()).map_err(denied)?;
        if !rules.rules(&channel).is_some_and(|r| r.presence) {
            return Err((ErrorCode::NO_PRESENCE, format!("the namespace of {channel} has no presence")));
        }
        let query = pb::PresenceQuery { channel: channel.to_string(), stats_only: stats };
        let timeout = self.shared.config.presence_timeout;
        let asked = self.shared.bus.request(&Address::Presence, switchboard_bus::Message::proto(&query), timeout);
        let timeouts = self.shared.metrics.limit_presence_timeout.clone();
        Ok(async move {
            let unavailable = |why: String| Err((ErrorCode::UNAVAILABLE, why));
            let result = match asked.await.map(|m| m.decode::<pb::PresenceAnswer>()) {
                Ok(Ok(a)) if !a.error.is_empty() => unavailable(format!("the registry could not answer: {}", a.error)),
                Ok(Ok(a)) if stats => {
                    Ok(R::PresenceStats(pb::PresenceStatsResult { sessions: a.session_count, users: a.users }))
                }
                Ok(Ok(a)) => Ok(R::Presence(pb::PresenceResult {
                    clients: a
                        .sessions
                        .into_iter()
                        .map(|r| pb::ClientInfo { session: r.session, user: r.user, info: r.info })
                        .collect(),
                })),
                Ok(Err(e)) => unavailable(format!("an undecodable presence answer: {e}")),
                Err(BusError::Timeout) => {
                    timeouts.increment(1);
                    unavailable(format!("no control replica answered within {timeout:?}"))
                }
                Err(BusError::NoResponders) => unavailable("no control replica is reachable".into()),
                Err(e) => unavailable(e.to_string()),
            };
            Done::Reply(id, result)
        }
        .boxed())
    }

    /// An unsubscribe leaves the hub at once, even while its subscribe still waits; its
    /// registry event and reply follow in command order.
    fn unsubscribe(&mut self, asker: Asker, name: &str) -> Result<Done, Refusal> {
        let channel = parse_channel(name)?;
        let Some(i) = self.channels.iter().position(|c| c == &channel) else {
            return Err((ErrorCode::NOT_SUBSCRIBED, format!("not subscribed to {channel}")));
        };
        self.channels.swap_remove(i);
        self.shared.hub.unsubscribe(&channel, self.sub.id);
        self.shared.interest.abandon_join(&channel, self.sub.id);
        Ok(Done::Unsubscribe { asker, channel })
    }

    /// A publish's checks, then its bus request, made now (publications of one session
    /// reach the bus in command order); the reply waits for the position.
    fn publish(&self, id: u32, name: &str, data: Bytes) -> Result<Wait, Refusal> {
        let channel = parse_channel(name)?;
        if !self.shared.config.client_publish {
            return Err((ErrorCode::PERMISSION_DENIED, "clients may not publish on this gateway".into()));
        }
        self.shared.config.channels.check(Op::Publish, &channel, &self.user, self.grants()).map_err(denied)?;
        let span = tracing::debug_span!("publish", session = self.session_id.as_deref(), channel = name);
        let published = self.shared.bus.publish(&channel, data, PublishOptions::default());
        Ok(async move {
            let result = match published.await {
                Ok(p) => {
                    let (offset, epoch) = p.map_or((0, String::new()), |p| (p.offset, p.epoch.to_string()));
                    Ok(R::Publish(pb::PublishResult { offset, epoch }))
                }
                Err(e) => Err((ErrorCode::UNAVAILABLE, e.to_string())),
            };
            tracing::debug!(stored = result.is_ok(), "published");
            Done::Reply(id, result)
        }
        .instrument(span)
        .boxed())
    }

    /// Frees the write buffers a burst left behind (called once per ping interval).
    fn trim(&mut self) {
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
        self.sub.outbox.trim();
    }

    /// Writes as much of `pending` as the socket takes now.
    fn flush(&mut self) -> io::Result<()> {
        while self.head < self.pending.len() {
            let frames = &self.pending[self.head..];
            let result = if let [frame] = frames {
                // The common case at low rates: one frame, no slices to set up.
                self.stream.try_write(frame)
            } else {
                let end = frames.len().min(MAX_IOV);
                // On the stack: a flush allocates nothing.
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                for (slot, frame) in slices.iter_mut().zip(&frames[..end]) {
                    *slot = IoSlice::new(frame);
                }
                self.stream.try_write_vectored(&slices[..end])
            };
            let mut written = match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            while written > 0 {
                let first = &mut self.pending[self.head];
                if written >= first.len() {
                    written -= first.len();
                    self.head += 1;
                } else {
                    first.advance(written);
                    written = 0;
                }
            }
        }
        self.pending.clear();
        self.head = 0;
        // The emptied buffer goes back to the outbox on the next take (no allocation per
        // batch); an outsized one from a rare burst is not kept. Quiet connections free
        // both buffers at the next ping (`Session::trim`).
        if self.pending.capacity() > MAX_KEPT_FRAMES {
            self.pending = Vec::new();
        }
        Ok(())
    }

    /// Ends the session on the wire: writes what is queued and a close frame, then waits
    /// briefly for the client's close (or the connection's end).
    async fn finish(&mut self, end: End) {
        // Replies and pushes queued before the end still go out ahead of the close frame.
        if !matches!(end, End::Close(CloseCode::SLOW_CONSUMER)) {
            let _ = self.sub.outbox.take(&mut self.pending);
        }
        self.sub.outbox.close();
        let (code, reason) = match &end {
            End::Gone => return,
            End::Close(code) => (code.code, code.reason),
            End::CloseWith(code, reason) => (*code, reason.as_str()),
            // Echo the client's code, as RFC 6455 §5.5.1 asks.
            End::ClientClosed(code) => (code.unwrap_or(1000), ""),
        };
        let close = frame::close(code, reason);
        let client_closed = matches!(end, End::ClientClosed(_));
        if matches!(end, End::Close(CloseCode::SLOW_CONSUMER)) {
            // What is queued is what the client could not take; do not wait on it. The
            // frame being written may be partly out already: it is finished, or the close
            // frame would land inside it.
            self.pending.truncate((self.head + 1).min(self.pending.len()));
        }
        self.pending.push(close);
        let deadline = Instant::now() + CLOSE_GRACE;
        while self.head < self.pending.len() || self.stream.has_backlog() {
            if self.flush().is_err() || self.stream.flush_backlog().is_err() {
                return;
            }
            if (self.head < self.pending.len() || self.stream.has_backlog())
                && tokio::time::timeout_at(deadline, self.stream.writable()).await.is_err()
            {
                return;
            }
        }
        if client_closed {
            return;
        }
        // Wait for the client's close frame; discard anything else it still sends.
        while let Ok(Ok(())) = tokio::time::timeout_at(deadline, self.stream.readable()).await {
            match self.reader.fill(|buf| self.stream.try_read_buf(buf)) {
                Ok(_) => {}
                Err(_) => return,
            }
            loop {
                match self.reader.next_message() {
                    Ok(Some(Message::Close(..))) | Err(_) => return,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                }
            }
        }
    }
}

/// A reply (or an error) as a frame in the session's encoding.
fn reply_frame(encoding: Encoding, id: u32, result: CommandResult) -> Bytes {
    let reply = match result {
        Ok(r) => pb::Reply { id, reply: Some(r) },
        Err((code, message)) => switchboard_wire::protocol::error_reply(id, code, message),
    };
    frame::encode(encoding, |buf| encoding.encode_reply(&reply, buf))
}

/// A `join` or `leave` push as a channel event's bytes: the client protocol's `Reply`, in
/// protobuf, which every receiving gateway re-encodes once per encoding.
fn join_leave(channel: &Channel, session: &str, user: &str, info: &Bytes, join: bool) -> Bytes {
    let client = Some(pb::ClientInfo { session: session.to_owned(), user: user.to_owned(), info: info.clone() });
    let channel = channel.to_string();
    let reply = if join { R::Join(pb::Join { channel, client }) } else { R::Leave(pb::Leave { channel, client }) };
    Bytes::from(prost::Message::encode_to_vec(&pb::Reply { id: 0, reply: Some(reply) }))
}

fn denied(why: String) -> Refusal {
    (ErrorCode::PERMISSION_DENIED, why)
}

fn parse_channel(name: &str) -> Result<Channel, Refusal> {
    Channel::parse(name).map_err(|e| match e {
        ChannelError::Empty => (ErrorCode::BAD_REQUEST, "channel is required".into()),
        e => (ErrorCode::INVALID_CHANNEL, format!("{e}: {name:?}")),
    })
}

#[cfg(test)]
mod tests;
