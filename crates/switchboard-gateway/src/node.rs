//! The gateway's part in the cluster: it tells the control registry about its sessions and
//! carries out the commands backends send to them.
//!
//! - Every session change (connect, disconnect, subscribe, unsubscribe) becomes a
//!   `RegistryEvent` on the registry subject of the session's shard, numbered by one
//!   gateway-wide sequence; the same lock keeps the local session table, so a snapshot
//!   (answered to control replicas that gain shards) is consistent with the numbering.
//! - Commands for one session arrive on the gateway's node address; commands for a user's
//!   sessions arrive on the user's address, which the gateway listens to while it holds at
//!   least one session of that user (interest counting, like channels).
//! - A heartbeat every second lets control replicas expire the gateway's sessions when it
//!   goes away; it carries the session count (control's rebalancer reads it) and whether
//!   the gateway drains.
//! - A `shed` command from control's rebalancer closes that many sessions, picked at
//!   random, with 4009 at random moments over its window (one shed at a time).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use switchboard_bus::shard::shard;
use switchboard_bus::{Address, Bus, Inbox, Incoming, Message};
use switchboard_hub::{Hub, Push, Subscriber, frame};
use switchboard_wire::pb::{self, gateway_command::Action, gateway_command::Target, registry_event::Event};
use switchboard_wire::{Channel, CloseCode, Encoding};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Encoded bytes per snapshot chunk: well under NATS's default 1 MiB payload limit.
const SNAPSHOT_CHUNK_BYTES: usize = 256 * 1024;
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A gateway counts control as reachable while it heard a control replica's heartbeat
/// within this long (three of their heartbeats, as control's own replica lease).
const CONTROL_SILENCE: Duration = Duration::from_secs(3);

/// What a session is asked to do by a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionCommand {
    Disconnect(u16, String),
    Subscribe(Channel),
    Unsubscribe(Channel),
    /// Publications of the channel were lost on their way to this gateway: the session
    /// drops the subscription and asks its client to subscribe again from its position.
    Interrupted(Channel),
}

/// Backend commands (subscribe, unsubscribe) that may wait for one session before more
/// are refused: a backend cannot grow a session's queue without bound while the session
/// waits on the bus.
pub(crate) const MAX_QUEUED_COMMANDS: usize = 1024;

/// A session as the node agent reaches it.
pub(crate) struct SessionHandle {
    pub(crate) sub: Arc<Subscriber>,
    /// The token's `info` claim (JSON text; empty without one), set at connect: what
    /// presence and join/leave show.
    pub(crate) info: OnceLock<bytes::Bytes>,
    commands: Mutex<Commands>,
}

/// Commands for the session, and its task's waker while it waits for some.
#[derive(Default)]
struct Commands {
    queue: Vec<SessionCommand>,
    waiting: Option<Waker>,
}

impl SessionHandle {
    pub(crate) fn new(sub: Arc<Subscriber>) -> Self {
        SessionHandle { sub, info: OnceLock::new(), commands: Mutex::new(Commands::default()) }
    }

    /// Takes the commands queued for the session, or registers its waker for the next one.
    pub(crate) fn poll_commands(&self, cx: &mut Context<'_>) -> Poll<Vec<SessionCommand>> {
        let mut c = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        if c.queue.is_empty() {
            c.waiting.get_or_insert_with(|| cx.waker().clone()).clone_from(cx.waker());
            return Poll::Pending;
        }
        c.waiting = None;
        Poll::Ready(std::mem::take(&mut c.queue))
    }

    /// Queues a command for the session; false when [`MAX_QUEUED_COMMANDS`] already wait
    /// (a disconnect is always queued).
    fn command(&self, command: SessionCommand) -> bool {
        let mut c = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        if c.queue.len() >= MAX_QUEUED_COMMANDS && !matches!(command, SessionCommand::Disconnect(..)) {
            return false;
        }
        c.queue.push(command);
        let waiting = c.waiting.take();
        drop(c);
        if let Some(w) = waiting {
            w.wake();
        }
        true
    }

    /// Queues a `message` push; true if it was queued.
    fn message(&self, data: &bytes::Bytes) -> bool {
        let encoding: Encoding = self.sub.encoding;
        let reply =
            pb::Reply { id: 0, reply: Some(pb::reply::Reply::Message(pb::ServerMessage { data: data.clone() })) };
        self.sub.outbox.push(frame::encode(encoding, |buf| encoding.encode_reply(&reply, buf))) == Push::Queued
    }

    /// Applies a backend's action, or says why the session could not take it.
    fn apply(&self, action: &Action) -> Result<(), &'static str> {
        let queued = match action {
            Action::Send(data) => {
                return self.message(data).then_some(()).ok_or("the session's outbound queue is full");
            }
            Action::Disconnect(d) => self.command(SessionCommand::Disconnect(d.code as u16, d.reason.clone())),
            Action::Shed(_) => return Err("a shed is for the gateway, not a session or user"),
            Action::Subscribe(c) | Action::Unsubscribe(c) => {
                let Ok(channel) = Channel::parse(c) else { return Err("invalid channel name") };
                self.command(if matches!(action, Action::Subscribe(_)) {
                    SessionCommand::Subscribe(channel)
                } else {
                    SessionCommand::Unsubscribe(channel)
                })
            }
        };
        queued.then_some(()).ok_or("the session's command queue is full")
    }
}

/// The gateway's node agent.
pub(crate) struct NodeAgent {
    id: Arc<str>,
    bus: Arc<dyn Bus>,
    hub: Arc<Hub>,
    started_at_ms: i64,
    http_addr: OnceLock<String>,
    /// When a control replica's heartbeat was last heard (ms since the epoch, 0: never).
    control_heard_ms: AtomicI64,
    /// Set when the gateway starts draining; heartbeats say so.
    draining: AtomicBool,
    state: Mutex<State>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The closes of the current `shed` command, while they run.
    shedding: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    seq: u64,
    sessions: HashMap<String, (pb::SessionRecord, Arc<SessionHandle>)>,
    users: HashMap<String, UserInterest>,
}

struct UserInterest {
    sessions: usize,
    task: JoinHandle<()>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

// === impl NodeAgent ===

impl NodeAgent {
    /// Starts listening for commands and snapshot requests, and heartbeating.
    pub(crate) async fn start(
        id: &str,
        bus: Arc<dyn Bus>,
        hub: Arc<Hub>,
    ) -> Result<Arc<Self>, switchboard_bus::BusError> {
        let agent = Arc::new(NodeAgent {
            id: Arc::from(id),
            bus: bus.clone(),
            hub,
            started_at_ms: now_ms(),
            http_addr: OnceLock::new(),
            control_heard_ms: AtomicI64::new(0),
            draining: AtomicBool::new(false),
            // The event sequence starts at the start-up time in microseconds, so it keeps
            // increasing across restarts of a gateway with the same id.
            state: Mutex::new(State { seq: now_ms() as u64 * 1000, ..State::default() }),
            tasks: Mutex::new(Vec::new()),
            shedding: Mutex::new(None),
        });
        let node_inbox = bus.listen(&Address::Node(agent.id.clone()), None).await?;
        let all_inbox = bus.listen(&Address::Gateways, None).await?;
        let mut control_inbox = bus.listen(&Address::ControlHeartbeat, None).await?;
        let mut tasks = Vec::new();
        let weak = Arc::downgrade(&agent);
        tasks.push(tokio::spawn(async move {
            while control_inbox.next().await.is_some() {
                let Some(agent) = weak.upgrade() else { return };
                agent.control_heard_ms.store(now_ms(), Ordering::Relaxed);
            }
        }));
        for inbox in [node_inbox, all_inbox] {
            let weak = Arc::downgrade(&agent);
            tasks.push(tokio::spawn(serve_inbox(weak, inbox)));
        }
        let weak = Arc::downgrade(&agent);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
            loop {
                tick.tick().await;
                let Some(agent) = weak.upgrade() else { return };
                agent.heartbeat().await;
            }
        }));
        *agent.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(agent)
    }

    /// Tells every local session subscribed to `channel` that some of its publications were
    /// lost on the way and cannot be recovered here.
    pub(crate) fn interrupted(&self, channel: &Channel) {
        let handles: Vec<Arc<SessionHandle>> = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state
                .sessions
                .values()
                .filter(|(record, _)| record.channels.iter().any(|c| c == channel.as_str()))
                .map(|(_, handle)| handle.clone())
                .collect()
        };
        tracing::warn!(%channel, sessions = handles.len(), "publications were lost on the way; asking the sessions to resubscribe");
        for handle in handles {
            handle.command(SessionCommand::Interrupted(channel.clone()));
        }
    }

    pub(crate) fn set_http_addr(&self, addr: String) {
        let _ = self.http_addr.set(addr);
    }

    /// Whether a control replica was heard lately: on NATS, subscribe and publish need one
    /// (its sequencers), so until then `/readyz` says what the gateway waits for.
    pub(crate) fn control_reachable(&self) -> bool {
        let heard = self.control_heard_ms.load(Ordering::Relaxed);
        heard > 0 && now_ms().saturating_sub(heard) <= CONTROL_SILENCE.as_millis() as i64
    }

    /// Marks the gateway as draining and says so in a heartbeat at once, so control's
    /// rebalancer holds its rounds without waiting for the next beat.
    pub(crate) async fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.heartbeat().await;
    }

    pub(crate) fn sessions(&self) -> usize {
        self.lock().sessions.len()
    }

    /// The bytes queued to the connected sessions (not yet taken by their writers) and
    /// their channel subscriptions, each summed: read at scrape time, one outbox lock per
    /// session, rather than kept up to date per frame.
    pub(crate) fn queue_and_subscriptions(&self) -> (usize, usize) {
        let st = self.lock();
        st.sessions
            .values()
            .fold((0, 0), |(q, s), (record, handle)| (q + handle.sub.outbox.queued_bytes(), s + record.channels.len()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn heartbeat(&self) {
        let hb = pb::GatewayHeartbeat {
            gateway: self.id.to_string(),
            sessions: self.sessions() as u32,
            http_addr: self.http_addr.get().cloned().unwrap_or_default(),
            started_at_ms: self.started_at_ms,
            channels: self.hub.channels() as u32,
            draining: self.draining.load(Ordering::Relaxed),
        };
        let _ = self.bus.send(&Address::GatewayHeartbeat, Message::proto(&hb)).await;
    }

    /// Sends a registry event: the bus call is made now, the returned future finishes it.
    fn emit(&self, session: &str, seq: u64, event: Event) -> BoxFuture<'static, ()> {
        let e = pb::RegistryEvent { gateway: self.id.to_string(), seq, at_ms: now_ms(), event: Some(event) };
        let sent = self.bus.send(&Address::Registry(shard(session)), Message::proto(&e));
        async move {
            if let Err(err) = sent.await {
                tracing::debug!(error = %err, "registry event not sent");
            }
        }
        .boxed()
    }

    /// Registers a connected session. Returns once the user's address is listened to, so
    /// a `SendToUser` issued after the connect reply reaches the session.
    pub(crate) async fn session_up(self: &Arc<Self>, mut record: pb::SessionRecord, handle: Arc<SessionHandle>) {
        let (seq, ready) = {
            let mut st = self.lock();
            st.seq += 1;
            record.seq = st.seq;
            let mut ready = None;
            if !record.user.is_empty() {
                match st.users.get_mut(&record.user) {
                    Some(u) => u.sessions += 1,
                    None => {
                        let (tx, rx) = oneshot::channel();
                        let task = tokio::spawn(serve_user(Arc::downgrade(self), record.user.clone(), tx));
                        st.users.insert(record.user.clone(), UserInterest { sessions: 1, task });
                        ready = Some(rx);
                    }
                }
            }
            st.sessions.insert(record.session.clone(), (record.clone(), handle));
            (st.seq, ready)
        };
        if let Some(ready) = ready {
            let _ = ready.await;
        }
        let session = record.session.clone();
        self.emit(&session, seq, Event::Connected(record)).await;
    }

    /// Unregisters a session that ended; returns its record as it was (its channels).
    pub(crate) async fn session_down(&self, session: &str) -> Option<pb::SessionRecord> {
        let (seq, record) = {
            let mut st = self.lock();
            let (record, _) = st.sessions.remove(session)?;
            st.seq += 1;
            if let Some(u) = st.users.get_mut(&record.user) {
                u.sessions -= 1;
                if u.sessions == 0 {
                    let u = st.users.remove(&record.user).expect("present");
                    u.task.abort();
                }
            }
            (st.seq, record)
        };
        let gone = pb::SessionGone { session: session.to_owned(), user: record.user.clone() };
        self.emit(session, seq, Event::Disconnected(gone)).await;
        Some(record)
    }

    /// Records a subscription change of a session and returns the sending of its registry
    /// event (`None` for a session not registered). The session polls that future beside
    /// its socket, each after the one before, so its events go out in the order of their
    /// sequence numbers, which the registry's merge rule needs.
    pub(crate) fn channel_change(
        &self,
        session: &str,
        channel: &Channel,
        subscribed: bool,
    ) -> Option<BoxFuture<'static, ()>> {
        let (seq, user) = {
            let mut st = self.lock();
            st.seq += 1;
            let seq = st.seq;
            let (record, _) = st.sessions.get_mut(session)?;
            if subscribed {
                record.channels.push(channel.to_string());
            } else {
                record.channels.retain(|c| c != channel.as_str());
            }
            record.seq = seq;
            (seq, record.user.clone())
        };
        let change = pb::ChannelChange { session: session.to_owned(), channel: channel.to_string(), user };
        let event = if subscribed { Event::Subscribed(change) } else { Event::Unsubscribed(change) };
        Some(self.emit(session, seq, event))
    }

    /// Answers a snapshot request with this gateway's sessions in the asked shards.
    async fn snapshot(&self, req: pb::SnapshotRequest, reply: &switchboard_bus::ReplyTo) {
        let (seq, records) = {
            let st = self.lock();
            let wanted = |s: &str| req.shards.is_empty() || req.shards.contains(&(shard(s) as u32));
            let records: Vec<pb::SessionRecord> =
                st.sessions.values().filter(|(r, _)| wanted(&r.session)).map(|(r, _)| r.clone()).collect();
            (st.seq, records)
        };
        let mut chunks: Vec<Vec<pb::SessionRecord>> = vec![Vec::new()];
        let mut size = 0;
        for r in records {
            let len = prost::Message::encoded_len(&r) + 4;
            if size + len > SNAPSHOT_CHUNK_BYTES && !chunks.last().expect("one chunk").is_empty() {
                chunks.push(Vec::new());
                size = 0;
            }
            size += len;
            chunks.last_mut().expect("one chunk").push(r);
        }
        let n = chunks.len();
        for (i, sessions) in chunks.into_iter().enumerate() {
            let chunk = pb::SnapshotChunk { gateway: self.id.to_string(), seq, sessions, last: i + 1 == n };
            if let Err(e) = self.bus.reply(reply, Message::proto(&chunk)).await {
                tracing::warn!(error = %e, "snapshot chunk not sent");
                return;
            }
        }
    }

    /// Applies a command to the sessions it targets: how many it reached, and why a session
    /// that is here could not take it.
    fn command(&self, cmd: &pb::GatewayCommand) -> pb::GatewayCommandReply {
        let mut reply = pb::GatewayCommandReply::default();
        let Some(action) = &cmd.action else { return reply };
        let handles: Vec<Arc<SessionHandle>> = {
            let st = self.lock();
            match &cmd.target {
                Some(Target::Session(s)) => st.sessions.get(s).map(|(_, h)| h.clone()).into_iter().collect(),
                Some(Target::User(u)) => {
                    st.sessions.values().filter(|(r, _)| &r.user == u).map(|(_, h)| h.clone()).collect()
                }
                None => Vec::new(),
            }
        };
        let mut refused = None;
        for handle in &handles {
            match handle.apply(action) {
                Ok(()) => reply.sessions += 1,
                Err(why) => refused = Some(why),
            }
        }
        if reply.sessions == 0
            && let Some(why) = refused
        {
            reply.error = why.into();
        }
        reply
    }

    /// Starts closing `shed.sessions` sessions picked at random, each with 4009 at a random
    /// moment within `shed.window_ms`; answers how many were picked. Refused while an
    /// earlier shed still runs (two control replicas that both took themselves for the
    /// rebalancer for a moment do not move twice the share).
    ///
    /// Random rather than the most recent sessions: the newest are mostly clients that just
    /// moved here (from a drain or an earlier round), and picking them would move the same
    /// clients again and again; at random, each client is equally unlikely to be moved.
    fn shed(&self, shed: &pb::ShedAction) -> pb::GatewayCommandReply {
        let mut running = self.shedding.lock().unwrap_or_else(|p| p.into_inner());
        if running.as_ref().is_some_and(|t| !t.is_finished()) {
            return pb::GatewayCommandReply { sessions: 0, error: "a rebalance is already under way".into() };
        }
        let picked: Vec<Weak<SessionHandle>> = {
            let st = self.lock();
            let all = st.sessions.values().map(|(_, h)| Arc::downgrade(h));
            fastrand::choose_multiple(all, shed.sessions as usize)
        };
        let window = shed.window_ms as u64;
        let mut at: Vec<(u64, Weak<SessionHandle>)> =
            picked.into_iter().map(|h| (fastrand::u64(0..=window), h)).collect();
        at.sort_unstable_by_key(|(ms, _)| *ms);
        let sessions = at.len() as u32;
        tracing::info!(sessions, window_ms = window, "rebalance: moving sessions to other gateways");
        let start = tokio::time::Instant::now();
        *running = Some(tokio::spawn(async move {
            let code = CloseCode::REBALANCE;
            for (ms, handle) in at {
                tokio::time::sleep_until(start + Duration::from_millis(ms)).await;
                if let Some(handle) = handle.upgrade() {
                    handle.command(SessionCommand::Disconnect(code.code, code.reason.into()));
                }
            }
        }));
        pb::GatewayCommandReply { sessions, error: String::new() }
    }

    async fn on_incoming(&self, incoming: Incoming) {
        // A command always carries an action; anything else on these addresses is a
        // snapshot request (an empty one asks for every shard).
        let cmd = incoming.message.decode::<pb::GatewayCommand>().ok().filter(|c| c.action.is_some());
        match (cmd, &incoming.reply) {
            (Some(cmd), reply) => {
                let answer = match &cmd.action {
                    Some(Action::Shed(shed)) => self.shed(shed),
                    _ => self.command(&cmd),
                };
                if let Some(reply) = reply {
                    let _ = self.bus.reply(reply, Message::proto(&answer)).await;
                }
            }
            (None, Some(reply)) => match incoming.message.decode::<pb::SnapshotRequest>() {
                Ok(req) => self.snapshot(req, reply).await,
                Err(e) => tracing::debug!(error = %e, "undecodable request on the node address"),
            },
            (None, None) => {}
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            t.abort();
        }
        for (_, u) in self.state.lock().unwrap_or_else(|p| p.into_inner()).users.drain() {
            u.task.abort();
        }
        if let Some(t) = self.shedding.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

async fn serve_inbox(agent: std::sync::Weak<NodeAgent>, mut inbox: Inbox) {
    while let Some(incoming) = inbox.next().await {
        let Some(agent) = agent.upgrade() else { return };
        agent.on_incoming(incoming).await;
    }
}

async fn serve_user(agent: std::sync::Weak<NodeAgent>, user: String, ready: oneshot::Sender<()>) {
    let bus = match agent.upgrade() {
        Some(a) => a.bus.clone(),
        None => return,
    };
    let inbox = bus.listen(&Address::User(Arc::from(user.as_str())), None).await;
    let _ = ready.send(());
    match inbox {
        Ok(inbox) => serve_inbox(agent, inbox).await,
        Err(e) => tracing::warn!(error = %e, "cannot listen for user commands"),
    }
}

#[cfg(test)]
mod tests {
    use switchboard_hub::Outbox;

    use super::*;

    #[test]
    fn a_session_takes_a_bounded_number_of_backend_commands_but_always_a_disconnect() {
        let sub = Arc::new(Subscriber { id: 1, encoding: Encoding::Json, outbox: Outbox::new(1 << 20) });
        let handle = SessionHandle::new(sub);
        let subscribe = Action::Subscribe("n:c".into());
        for _ in 0..MAX_QUEUED_COMMANDS {
            assert_eq!(handle.apply(&subscribe), Ok(()));
        }
        assert_eq!(handle.apply(&subscribe), Err("the session's command queue is full"));
        assert_eq!(handle.apply(&Action::Subscribe("bad channel".into())), Err("invalid channel name"));
        let disconnect = Action::Disconnect(pb::DisconnectAction { code: 4005, reason: String::new() });
        assert_eq!(handle.apply(&disconnect), Ok(()));
        let waker = futures_util::task::noop_waker();
        let Poll::Ready(queued) = handle.poll_commands(&mut Context::from_waker(&waker)) else { panic!("queued") };
        assert_eq!(queued.len(), MAX_QUEUED_COMMANDS + 1);
        assert_eq!(handle.apply(&subscribe), Ok(()), "room again once the session took them");
    }

    struct NoInterest;
    impl switchboard_hub::Interest for NoInterest {
        fn first_subscriber(&self, _: &Channel) {}
        fn last_unsubscribed(&self, _: &Channel) {}
    }

    /// The close codes queued for each session so far.
    fn closes(handles: &[Arc<SessionHandle>]) -> Vec<Option<u16>> {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        handles
            .iter()
            .map(|h| match h.poll_commands(&mut cx) {
                Poll::Ready(c) => match c.as_slice() {
                    [SessionCommand::Disconnect(code, reason)] if reason == "rebalance" => Some(*code),
                    other => panic!("unexpected commands {other:?}"),
                },
                Poll::Pending => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_shed_closes_that_many_sessions_with_4009_within_its_window_one_shed_at_a_time() {
        let broker = switchboard_bus::MemoryBroker::new();
        let bus: Arc<dyn Bus> = Arc::new(broker.connect(Arc::new(switchboard_bus::NoDelivery)));
        let agent = NodeAgent::start("g1", bus, Arc::new(Hub::new(Arc::new(NoInterest)))).await.unwrap();
        let mut handles = Vec::new();
        for i in 0..10 {
            let sub = Arc::new(Subscriber { id: i, encoding: Encoding::Json, outbox: Outbox::new(1 << 20) });
            let handle = Arc::new(SessionHandle::new(sub));
            let record = pb::SessionRecord { session: format!("g1-s{i}"), gateway: "g1".into(), ..Default::default() };
            agent.session_up(record, handle.clone()).await;
            handles.push(handle);
        }
        let shed = pb::ShedAction { sessions: 4, window_ms: 1000 };
        assert_eq!(agent.shed(&shed), pb::GatewayCommandReply { sessions: 4, error: String::new() });
        let refused = agent.shed(&shed);
        assert_eq!((refused.sessions, refused.error.as_str()), (0, "a rebalance is already under way"));
        // Paused time: the clock jumps to each close in turn, none after the window.
        tokio::time::sleep(Duration::from_millis(1001)).await;
        let closed = closes(&handles);
        assert_eq!(closed.iter().filter(|c| **c == Some(CloseCode::REBALANCE.code)).count(), 4, "{closed:?}");
        assert_eq!(closed.iter().filter(|c| c.is_none()).count(), 6);
        // The shed is over: another is taken on, and never more than the gateway holds.
        let all = agent.shed(&pb::ShedAction { sessions: 50, window_ms: 0 });
        assert_eq!(all.sessions, 10);
    }
}
