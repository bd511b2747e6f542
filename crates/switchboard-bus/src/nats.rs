//! The NATS bus: gateways and control replicas on one NATS cluster.
//!
//! Channel publications: one NATS subscription per channel per node (the hub upstream does
//! the interest counting), each with a small task that decodes and hands publications to
//! the node's [`Deliver`]. A publish goes as a request to the sequencer of the channel's
//! shard (`{p}.seq.{shard}`, served by the control replica that owns the shard), which
//! stamps the next offset, publishes the publication on the channel subject, and answers
//! with the position; one task per shard keeps each channel's publications in offset order.
//!
//! async-nats reconnects by itself and re-establishes every subscription; while it is not
//! connected, [`Bus::is_ready`] is false and requests fail as unavailable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, ServerAddr, client::RequestErrorKind, connection::State};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};
use futures_util::stream::StreamExt;
use prost::Message as _;
use switchboard_wire::Channel;
use switchboard_wire::pb;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::shard::shard;
use crate::subjects::{Address, Subjects};
use crate::{Bus, BusError, Deliver, Inbox, Incoming, MAX_BATCH, Message, Position, Publication, ReplyTo, new_epoch};

/// How long `connect` waits for the first connection before returning anyway.
const INITIAL_CONNECT_WAIT: Duration = Duration::from_secs(2);

/// A sequencer forgets a channel idle for this long; its next publication opens a new epoch.
const SEQUENCER_IDLE: Duration = Duration::from_secs(600);

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
}

impl NatsConfig {
    pub fn new(urls: Vec<String>, name: impl Into<String>) -> Self {
        NatsConfig {
            urls,
            prefix: crate::subjects::DEFAULT_PREFIX.into(),
            name: name.into(),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// A node's handle on the NATS bus.
pub struct NatsBus {
    client: async_nats::Client,
    subjects: Subjects,
    deliver: Arc<dyn Deliver>,
    channels: Mutex<HashMap<Channel, JoinHandle<()>>>,
    sequencer: Mutex<HashMap<u16, JoinHandle<()>>>,
    request_timeout: Duration,
}

// === impl NatsBus ===

impl NatsBus {
    /// Connects (retrying in the background if no server answers yet).
    pub async fn connect(config: NatsConfig, deliver: Arc<dyn Deliver>) -> Result<NatsBus, BusError> {
        let subjects = Subjects::new(&config.prefix).map_err(|e| BusError::Invalid(e.to_string()))?;
        let addrs = config
            .urls
            .iter()
            .map(|u| u.parse::<ServerAddr>().map_err(|e| BusError::Invalid(format!("nats url {u:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if addrs.is_empty() {
            return Err(BusError::Invalid("no nats url given".into()));
        }
        let name = config.name.clone();
        let client = async_nats::ConnectOptions::new()
            .name(&config.name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(move |event| {
                let name = name.clone();
                async move { tracing::info!(node = %name, %event, "nats") }
            })
            .connect(addrs)
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        // The client connects in the background (so a node starts while NATS is down); give
        // it a moment, so that a node started next to a running NATS is ready at once.
        let deadline = tokio::time::Instant::now() + INITIAL_CONNECT_WAIT;
        while client.connection_state() != State::Connected && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(NatsBus {
            client,
            subjects,
            deliver,
            channels: Mutex::new(HashMap::new()),
            sequencer: Mutex::new(HashMap::new()),
            request_timeout: config.request_timeout,
        })
    }

    /// Fails fast while NATS is unreachable: a request would otherwise wait its whole
    /// timeout in async-nats's queue, stalling the session that made it.
    fn connected(&self) -> Result<(), BusError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            state => Err(BusError::Unavailable(format!("nats is {state:?}"))),
        }
    }

    /// The underlying client (for tests and tools that speak NATS directly).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    fn sequencer_request(
        &self,
        channel: &Channel,
        req: pb::SequencerRequest,
    ) -> BoxFuture<'static, Result<Position, BusError>> {
        if let Err(e) = self.connected() {
            return ready(Err(e)).boxed();
        }
        let shard = shard(channel.as_str());
        let subject = self.subjects.address(&Address::Sequencer(shard));
        let request =
            async_nats::Request::new().payload(req.encode_to_vec().into()).timeout(Some(self.request_timeout));
        let client = self.client.clone();
        async move {
            let reply = client.send_request(subject, request).await.map_err(|e| match e.kind() {
                RequestErrorKind::NoResponders => {
                    tracing::debug!(shard, "no sequencer serves the shard: is a control replica running?");
                    BusError::NoResponders
                }
                RequestErrorKind::TimedOut => BusError::Timeout,
                _ => BusError::Unavailable(e.to_string()),
            })?;
            let r = pb::SequencerReply::decode(reply.payload).map_err(|e| BusError::Invalid(e.to_string()))?;
            Ok(Position { offset: r.offset, epoch: Arc::from(r.epoch) })
        }
        .boxed()
    }
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        for (_, t) in self.channels.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            t.abort();
        }
        for (_, t) in self.sequencer.lock().unwrap_or_else(|p| p.into_inner()).drain() {
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

impl Bus for NatsBus {
    fn publish(&self, channel: &Channel, data: Bytes) -> BoxFuture<'static, Result<Position, BusError>> {
        let publication = pb::BusPublication { channel: channel.to_string(), offset: 0, epoch: String::new(), data };
        self.sequencer_request(
            channel,
            pb::SequencerRequest { op: Some(pb::sequencer_request::Op::Publish(publication)) },
        )
    }

    fn subscribe(&self, channel: &Channel) -> BoxFuture<'static, Result<(), BusError>> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if channels.contains_key(channel) {
            return ready(Ok(())).boxed();
        }
        let (confirm, confirmed) = oneshot::channel();
        let subject = self.subjects.publication(channel);
        let (client, deliver, channel_name) = (self.client.clone(), self.deliver.clone(), channel.clone());
        let timeout = self.request_timeout;
        let task = tokio::spawn(async move {
            let mut sub = match client.subscribe(subject).await {
                Ok(sub) => sub,
                Err(e) => {
                    let _ = confirm.send(Err(unavailable(e)));
                    return;
                }
            };
            // Confirmed once the server has the subscription; while NATS is down that waits,
            // so it is bounded (async-nats re-subscribes by itself on reconnect).
            let flushed = match tokio::time::timeout(timeout, client.flush()).await {
                Ok(r) => r.map_err(unavailable),
                Err(_) => Err(BusError::Timeout),
            };
            let _ = confirm.send(flushed);
            let mut epoch: Arc<str> = Arc::from("");
            let mut batch = Vec::new();
            while let Some(mut msg) = sub.next().await {
                // Take what else async-nats already read off the socket: one call, one piece
                // per subscriber in the hub.
                loop {
                    match pb::BusPublication::decode(msg.payload) {
                        Ok(p) => {
                            if *epoch != *p.epoch {
                                epoch = Arc::from(p.epoch);
                            }
                            batch.push(Publication {
                                channel: channel_name.clone(),
                                offset: p.offset,
                                epoch: epoch.clone(),
                                data: p.data,
                            });
                        }
                        Err(_) => tracing::warn!(channel = %channel_name, "undecodable publication dropped"),
                    }
                    if batch.len() == MAX_BATCH {
                        break;
                    }
                    match sub.next().now_or_never() {
                        Some(Some(next)) => msg = next,
                        _ => break,
                    }
                }
                if !batch.is_empty() {
                    deliver.deliver(&batch).await;
                    batch.clear();
                }
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

    fn position(&self, channel: &Channel) -> BoxFuture<'static, Result<Position, BusError>> {
        self.sequencer_request(
            channel,
            pb::SequencerRequest { op: Some(pb::sequencer_request::Op::Position(channel.to_string())) },
        )
    }

    fn subscriptions(&self) -> usize {
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn is_ready(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    fn set_sequencer_shards(&self, shards: &[u16]) {
        let mut running = self.sequencer.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|shard, task| {
            let keep = shards.contains(shard);
            if !keep {
                task.abort();
            }
            keep
        });
        for &shard in shards {
            running.entry(shard).or_insert_with(|| {
                let subject = self.subjects.address(&Address::Sequencer(shard));
                tokio::spawn(run_sequencer(self.client.clone(), self.subjects.clone(), subject))
            });
        }
    }

    fn send(&self, to: &Address, message: Message) -> BoxFuture<'static, Result<(), BusError>> {
        publish(self.client.clone(), self.subjects.address(to), message)
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
        let (client, subject) = (self.client.clone(), self.subjects.address(to));
        let mut request = async_nats::Request::new().payload(message.payload).timeout(Some(timeout));
        if !message.headers.is_empty() {
            request = request.headers(to_headers(&message.headers));
        }
        async move {
            let reply = client.send_request(subject, request).await.map_err(|e| match e.kind() {
                RequestErrorKind::NoResponders => BusError::NoResponders,
                RequestErrorKind::TimedOut => BusError::Timeout,
                _ => unavailable(e),
            })?;
            Ok(from_nats(reply).message)
        }
        .boxed()
    }

    fn request_many(&self, to: &Address, message: Message) -> BoxFuture<'static, Result<Inbox, BusError>> {
        let (client, subject) = (self.client.clone(), self.subjects.address(to));
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
        let (client, subject, queue) = (self.client.clone(), self.subjects.address(at), queue.map(str::to_owned));
        async move {
            let sub = match queue {
                Some(q) => client.queue_subscribe(subject, q).await,
                None => client.subscribe(subject).await,
            }
            .map_err(unavailable)?;
            client.flush().await.map_err(unavailable)?;
            Ok(Inbox::new(sub.map(from_nats).boxed()))
        }
        .boxed()
    }

    fn reply(&self, to: &ReplyTo, message: Message) -> BoxFuture<'static, Result<(), BusError>> {
        publish(self.client.clone(), to.0.clone(), message)
    }
}

/// A channel's sequence as its sequencer keeps it.
struct Sequence {
    offset: u64,
    epoch: String,
    last_used: Instant,
}

/// Serves one shard's sequencer subject until aborted.
async fn run_sequencer(client: async_nats::Client, subjects: Subjects, subject: String) {
    let mut sub = match client.queue_subscribe(subject.clone(), "seq".into()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%subject, error = %e, "cannot serve sequencer shard");
            return;
        }
    };
    let mut sequences: HashMap<String, Sequence> = HashMap::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(60));
    loop {
        let msg = tokio::select! {
            m = sub.next() => match m {
                Some(m) => m,
                None => return,
            },
            _ = sweep.tick() => {
                sequences.retain(|_, s| s.last_used.elapsed() < SEQUENCER_IDLE);
                continue;
            }
        };
        let Some(reply) = msg.reply else { continue };
        let Ok(req) = pb::SequencerRequest::decode(msg.payload) else { continue };
        let (name, publication) = match req.op {
            Some(pb::sequencer_request::Op::Publish(p)) => (p.channel.clone(), Some(p)),
            Some(pb::sequencer_request::Op::Position(c)) => (c, None),
            None => continue,
        };
        let Ok(channel) = Channel::parse(&name) else { continue };
        let seq = sequences.entry(name).or_insert_with(|| Sequence {
            offset: 0,
            epoch: new_epoch().to_string(),
            last_used: Instant::now(),
        });
        seq.last_used = Instant::now();
        if let Some(mut p) = publication {
            seq.offset += 1;
            p.offset = seq.offset;
            p.epoch = seq.epoch.clone();
            if let Err(e) = client.publish(subjects.publication(&channel), p.encode_to_vec().into()).await {
                tracing::warn!(error = %e, "publication not sent");
                seq.offset -= 1;
                continue;
            }
        }
        let answer = pb::SequencerReply { offset: seq.offset, epoch: seq.epoch.clone() };
        let _ = client.publish(reply, answer.encode_to_vec().into()).await;
    }
}
