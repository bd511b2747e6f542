//! A tiny gateway for control's tests: holds sessions in a map, publishes their registry
//! events with increasing seq, heartbeats, answers snapshot requests and commands, all on
//! the in-process bus, the way the real gateway does per bus.proto.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use switchboard_bus::shard::shard;
use switchboard_bus::{Address, Bus, Inbox, MemoryBroker, Message, NoDelivery};
use switchboard_wire::pb::{self, gateway_command::Action, gateway_command::Target, registry_event::Event};
use tokio::task::JoinHandle;

use crate::state::unix_ms;

/// Records per snapshot chunk: small, so larger answers come in several parts.
const CHUNK: usize = 16;

pub struct FakeGateway {
    pub id: String,
    bus: Arc<dyn Bus>,
    state: Arc<Mutex<State>>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    seq: u64,
    next_id: u64,
    started_at_ms: i64,
    sessions: BTreeMap<String, pb::SessionRecord>,
    heartbeating: bool,
    snapshot_delay: Duration,
    snapshot_requests: usize,
    snapshots_answered: usize,
    commands: Vec<pb::GatewayCommand>,
}

// === impl FakeGateway ===

impl FakeGateway {
    /// Starts answering on the bus and heartbeating every `heartbeat` (unless `silent`).
    pub async fn start(broker: &MemoryBroker, id: &str, heartbeat: Duration, silent: bool) -> FakeGateway {
        let bus: Arc<dyn Bus> = Arc::new(broker.connect(Arc::new(NoDelivery)));
        let state =
            Arc::new(Mutex::new(State { heartbeating: !silent, started_at_ms: unix_ms(), ..Default::default() }));
        let mut tasks = Vec::new();
        for address in [Address::Node(id.into()), Address::Gateways] {
            let inbox = bus.listen(&address, None).await.unwrap();
            tasks.push(tokio::spawn(serve(id.to_owned(), bus.clone(), state.clone(), inbox)));
        }
        let (gid, hb_bus, hb_state) = (id.to_owned(), bus.clone(), state.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(heartbeat);
            loop {
                tick.tick().await;
                let hb = {
                    let s = lock(&hb_state);
                    if !s.heartbeating {
                        continue;
                    }
                    pb::GatewayHeartbeat {
                        gateway: gid.clone(),
                        sessions: s.sessions.len() as u32,
                        http_addr: format!("{gid}:8080"),
                        started_at_ms: s.started_at_ms,
                        channels: 0,
                        draining: false,
                    }
                };
                hb_bus.send(&Address::GatewayHeartbeat, Message::proto(&hb)).await.unwrap();
            }
        }));
        FakeGateway { id: id.to_owned(), bus, state, tasks }
    }

    /// Connects a session (announced with a `connected` event); returns its id.
    pub async fn connect(&self, user: &str, channels: &[&str]) -> String {
        let record = self.add(user, channels);
        self.publish(&record.session, Event::Connected(record.clone())).await;
        record.session
    }

    /// Connects a session without announcing it (as if the event was lost).
    pub fn connect_quietly(&self, user: &str, channels: &[&str]) -> String {
        self.add(user, channels).session
    }

    pub async fn subscribe(&self, session: &str, channel: &str) {
        let (user, _) = self.change(session, |r| r.channels.push(channel.into()));
        let c = pb::ChannelChange { session: session.into(), channel: channel.into(), user };
        self.publish(session, Event::Subscribed(c)).await;
    }

    pub async fn unsubscribe(&self, session: &str, channel: &str) {
        let (user, _) = self.change(session, |r| r.channels.retain(|c| c != channel));
        let c = pb::ChannelChange { session: session.into(), channel: channel.into(), user };
        self.publish(session, Event::Unsubscribed(c)).await;
    }

    pub async fn disconnect(&self, session: &str) {
        let r = lock(&self.state).sessions.remove(session).expect("a session of this gateway");
        self.publish(session, Event::Disconnected(pb::SessionGone { session: session.into(), user: r.user })).await;
    }

    /// Ends a session without announcing it (as if the disconnect event was lost).
    pub fn forget_quietly(&self, session: &str) {
        let mut s = lock(&self.state);
        s.sessions.remove(session).expect("a session of this gateway");
        s.seq += 1;
    }

    /// Forgets every session and starts again at seq 0 with a new start time, announcing
    /// nothing (a crash and restart).
    pub fn restart(&self) {
        let mut s = lock(&self.state);
        s.sessions.clear();
        s.seq = 0;
        s.started_at_ms += 1;
    }

    pub fn set_heartbeating(&self, on: bool) {
        lock(&self.state).heartbeating = on;
    }

    /// Snapshots are taken when requested but answered this much later.
    pub fn set_snapshot_delay(&self, delay: Duration) {
        lock(&self.state).snapshot_delay = delay;
    }

    pub fn snapshot_requests(&self) -> usize {
        lock(&self.state).snapshot_requests
    }

    pub fn snapshots_answered(&self) -> usize {
        lock(&self.state).snapshots_answered
    }

    pub fn sessions(&self) -> Vec<String> {
        lock(&self.state).sessions.keys().cloned().collect()
    }

    /// The commands received so far (for sessions, and for the users of
    /// [`record_user_commands`]).
    pub fn commands(&self) -> Vec<pb::GatewayCommand> {
        lock(&self.state).commands.clone()
    }

    fn add(&self, user: &str, channels: &[&str]) -> pb::SessionRecord {
        let mut s = lock(&self.state);
        s.seq += 1;
        s.next_id += 1;
        let record = pb::SessionRecord {
            session: format!("{}-{:04x}", self.id, s.next_id),
            gateway: self.id.clone(),
            user: user.into(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            connected_at_ms: unix_ms(),
            client_name: "fake".into(),
            client_version: "1".into(),
            seq: s.seq,
            info: bytes::Bytes::from(format!("{{\"name\":\"{user}\"}}")),
        };
        s.sessions.insert(record.session.clone(), record.clone());
        record
    }

    /// Changes a session's record; returns its user and the new seq.
    fn change(&self, session: &str, f: impl FnOnce(&mut pb::SessionRecord)) -> (String, u64) {
        let mut s = lock(&self.state);
        s.seq += 1;
        let seq = s.seq;
        let r = s.sessions.get_mut(session).expect("a session of this gateway");
        f(r);
        r.seq = seq;
        (r.user.clone(), seq)
    }

    async fn publish(&self, session: &str, event: Event) {
        let ev = {
            let s = lock(&self.state);
            pb::RegistryEvent { gateway: self.id.clone(), seq: s.seq, at_ms: unix_ms(), event: Some(event) }
        };
        self.bus.send(&Address::Registry(shard(session)), Message::proto(&ev)).await.unwrap();
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Answers snapshot requests and commands arriving at one address.
async fn serve(id: String, bus: Arc<dyn Bus>, state: Arc<Mutex<State>>, mut inbox: Inbox) {
    while let Some(incoming) = inbox.next().await {
        let Some(reply_to) = incoming.reply else { continue };
        // As the real gateway tells them apart: a command always carries an action.
        let command = incoming.message.decode::<pb::GatewayCommand>().ok().filter(|c| c.action.is_some());
        if let Some(command) = &command
            && let Some(Action::Shed(shed)) = &command.action
        {
            // Recorded, and taken on in full; the test moves sessions itself.
            lock(&state).commands.push(command.clone());
            let reply = pb::GatewayCommandReply { sessions: shed.sessions, error: String::new() };
            bus.reply(&reply_to, Message::proto(&reply)).await.unwrap();
            continue;
        }
        if let Some(command) = command
            && let Some(Target::Session(session)) = &command.target
        {
            lock(&state).commands.push(command.clone());
            let reply = apply_command(&state, session, command.action.clone());
            bus.reply(&reply_to, Message::proto(&reply)).await.unwrap();
            continue;
        }
        let Ok(request) = incoming.message.decode::<pb::SnapshotRequest>() else { continue };
        let (records, seq, delay) = {
            let mut s = lock(&state);
            s.snapshot_requests += 1;
            let wanted = |r: &&pb::SessionRecord| {
                request.shards.is_empty() || request.shards.contains(&(shard(&r.session) as u32))
            };
            (s.sessions.values().filter(wanted).cloned().collect::<Vec<_>>(), s.seq, s.snapshot_delay)
        };
        let (bus, state, id) = (bus.clone(), state.clone(), id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let chunks: Vec<&[pb::SessionRecord]> =
                if records.is_empty() { vec![&[]] } else { records.chunks(CHUNK).collect() };
            let n = chunks.len();
            for (i, chunk) in chunks.into_iter().enumerate() {
                let c = pb::SnapshotChunk { gateway: id.clone(), seq, sessions: chunk.to_vec(), last: i + 1 == n };
                bus.reply(&reply_to, Message::proto(&c)).await.unwrap();
            }
            lock(&state).snapshots_answered += 1;
        });
    }
}

fn apply_command(state: &Mutex<State>, session: &str, action: Option<Action>) -> pb::GatewayCommandReply {
    let mut s = lock(state);
    if !s.sessions.contains_key(session) {
        return pb::GatewayCommandReply { sessions: 0, error: String::new() };
    }
    match action {
        Some(Action::Subscribe(ch)) if ch.starts_with("forbidden:") => {
            pb::GatewayCommandReply { sessions: 0, error: "permission denied".into() }
        }
        Some(Action::Disconnect(_)) => {
            // Announcing the disconnect is the test's business (it calls `disconnect`).
            s.sessions.get_mut(session).unwrap().client_name = "closing".into();
            pb::GatewayCommandReply { sessions: 1, error: String::new() }
        }
        _ => pb::GatewayCommandReply { sessions: 1, error: String::new() },
    }
}

/// Listens at the user subjects of `users` and keeps what arrives (user commands).
pub async fn record_user_commands(gateway: &FakeGateway, users: &[&str]) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for user in users {
        let mut inbox = gateway.bus.listen(&Address::User((*user).into()), None).await.unwrap();
        let state = gateway.state.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(incoming) = inbox.next().await {
                if let Ok(c) = incoming.message.decode::<pb::GatewayCommand>() {
                    lock(&state).commands.push(c);
                }
            }
        }));
    }
    tasks
}
