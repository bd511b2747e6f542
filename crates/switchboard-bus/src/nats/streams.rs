//! History on JetStream: one stream per namespace entry with history, its sequence as the
//! publications' offsets, its creation time as their epoch.
//!
//! A history channel's publication is published to `{p}.hist.{key}.{channel}` and waits for
//! the stream's ack, which gives its offset; the stream republishes every stored message
//! (RePublish) on `{p}.pub.{key}.{channel}`, the subject the gateways subscribe to, with the
//! headers `Nats-Sequence` (its offset) and `Nats-Last-Sequence` (the offset of the
//! channel's previous message, 0 when none is kept). Live delivery and history are one
//! order: the stream's.
//!
//! Core NATS between the stream and the gateways is at most once: a channel's delivery task
//! ([`Continuity`]) compares each message's `Nats-Last-Sequence` with the last offset it
//! handed over, reads what is missing from the stream and hands it over first. That read
//! goes to the stream leader: a replica behind it (frozen, partitioned, or slow to apply)
//! would answer a direct get without the messages the gap showed, and the fill would be
//! silently short. Other reads (history, recovery) are direct gets, served by any replica,
//! checked against the leader where a replica behind it would cut them short (see
//! `Streams::page`). A stream that was deleted and recreated starts its sequence
//! again: the task sees offsets go back, reads the new epoch, and starts afresh.
//!
//! Streams are created or updated from the namespace configuration by every node when it
//! connects (idempotent: the same configuration is no change), and created again by a
//! publish that finds its stream gone. Nothing here is kept by control: losing every
//! control replica loses no offset.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use bytes::Bytes;
use switchboard_wire::Channel;

use crate::history::{Kept, continuous};
use crate::metrics::BusMetrics;
use crate::subjects::Subjects;
use crate::{BusError, HistoryLimits, HistoryPage, HistoryQuery, Namespaces, Position, Publication, PublishOptions};

/// Marks the message `remove_history` leaves on a channel after purging it.
pub(crate) const REMOVED_HEADER: &str = "Sb-Removed";

/// How long a node trusts the epoch it read (see `Streams::epoch`).
const EPOCH_MAX_AGE: Duration = Duration::from_secs(5);

/// JetStream's default window for de-duplication by `Nats-Msg-Id`.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The streams of one NATS connection, and what it knows of their epochs.
pub(crate) struct Streams {
    js: jetstream::Context,
    subjects: Subjects,
    namespaces: Namespaces,
    replicas: usize,
    timeout: Duration,
    /// Each stream's epoch, by namespace key, as last read, and when: a publish reads it
    /// again after [`EPOCH_MAX_AGE`], so a stream recreated behind this node is seen.
    epochs: Mutex<HashMap<String, (Arc<str>, Instant)>>,
    metrics: BusMetrics,
}

/// A message of a channel read from its stream.
struct Stored {
    offset: u64,
    data: Bytes,
    removed: bool,
}

impl Streams {
    pub(crate) fn new(
        client: async_nats::Client,
        subjects: Subjects,
        namespaces: Namespaces,
        replicas: usize,
        timeout: Duration,
        metrics: BusMetrics,
    ) -> Self {
        let js = jetstream::ContextBuilder::new().timeout(timeout).build(client);
        Streams { js, subjects, namespaces, replicas, timeout, epochs: Mutex::default(), metrics }
    }

    /// The namespace key `channel` follows when its namespace keeps history.
    pub(crate) fn history_key<'a>(&self, channel: &'a Channel) -> Option<&'a str> {
        self.namespaces.history(channel).map(|_| self.namespaces.key(channel))
    }

    pub(crate) fn live_subject(&self, channel: &Channel) -> String {
        self.subjects.live(self.namespaces.key(channel), channel)
    }

    /// The stream's name: the prefix and the key, `.` written as `~` (a stream name may
    /// have no `.`; neither the prefix nor a namespace has a `~`).
    fn name(&self, key: &str) -> String {
        format!("{}~{key}", self.subjects.prefix().replace('.', "~"))
    }

    fn config(&self, key: &str, limits: HistoryLimits) -> stream::Config {
        let stored = self.subjects.channels_of("hist", key);
        stream::Config {
            name: self.name(key),
            description: Some(format!("Switchboard: history of the channels of namespace entry {key:?}")),
            subjects: vec![stored.clone()],
            max_messages_per_subject: i64::from(limits.size),
            max_age: limits.ttl,
            duplicate_window: DUPLICATE_WINDOW.min(limits.ttl),
            num_replicas: self.replicas,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            allow_direct: true,
            republish: Some(stream::Republish {
                source: stored,
                destination: format!("{}.pub.{key}.{{{{wildcard(1)}}}}", self.subjects.prefix()),
                headers_only: false,
            }),
            ..Default::default()
        }
    }

    /// Creates or updates every stream the configuration names.
    pub(crate) async fn ensure_all(&self) -> Result<(), BusError> {
        for (key, limits) in self.namespaces.with_history() {
            self.ensure(key, limits).await?;
        }
        Ok(())
    }

    async fn ensure(&self, key: &str, limits: HistoryLimits) -> Result<Arc<str>, BusError> {
        let want = self.config(key, limits);
        // Most nodes find the stream as configured: no update (a fleet of gateways
        // restarting does not rewrite it each time).
        if let Ok(mut stream) = self.js.get_stream(&want.name).await
            && let Ok(info) = stream.info().await
            && same_config(&info.config, &want)
        {
            let info = info.clone();
            return Ok(self.remember(key, &info));
        }
        let info = self.js.create_or_update_stream(want).await.map_err(|e| {
            BusError::Unavailable(format!(
                "cannot create or update JetStream stream {}: {e} (namespaces with history need JetStream on the NATS servers)",
                self.name(key)
            ))
        })?;
        Ok(self.remember(key, &info))
    }

    fn remember(&self, key: &str, info: &stream::Info) -> Arc<str> {
        let epoch: Arc<str> = Arc::from(format!("{:x}", info.created.unix_timestamp_nanos()));
        self.epochs.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_owned(), (epoch.clone(), Instant::now()));
        epoch
    }

    /// The stream's epoch as last read, or read now.
    pub(crate) async fn epoch(&self, key: &str) -> Result<Arc<str>, BusError> {
        if let Some((e, read)) = self.epochs.lock().unwrap_or_else(|p| p.into_inner()).get(key)
            && read.elapsed() < EPOCH_MAX_AGE
        {
            return Ok(e.clone());
        }
        self.info(key).await.map(|(epoch, _)| epoch)
    }

    /// Reads the stream's info (and so its current epoch).
    async fn info(&self, key: &str) -> Result<(Arc<str>, stream::State), BusError> {
        let stream = self.js.get_stream_no_info(self.name(key)).await.map_err(unavailable)?;
        let info = stream.get_info().await.map_err(unavailable)?;
        Ok((self.remember(key, &info), info.state))
    }

    pub(crate) async fn publish(
        &self,
        channel: &Channel,
        key: &str,
        data: Bytes,
        options: &PublishOptions,
    ) -> Result<Position, BusError> {
        let subject = self.subjects.stored(key, channel);
        let message = || {
            let m = jetstream::message::PublishMessage::build().payload(data.clone());
            // Keys are per channel; the stream's de-duplication is per stream.
            match &options.idempotency_key {
                Some(k) => m.message_id(format!("{channel} {k}")),
                None => m,
            }
        };
        let started = Instant::now();
        let mut ack = self.ack(&subject, message()).await;
        if matches!(&ack, Err(k) if *k == PublishErrorKind::StreamNotFound)
            && let Some(limits) = self.namespaces.history(channel)
        {
            // Deleted behind our back: recreate it (a new epoch) and publish once more.
            tracing::warn!(stream = %self.name(key), "the history stream is gone; creating it again");
            self.ensure(key, limits).await?;
            ack = self.ack(&subject, message()).await;
        }
        self.metrics.publish.record(started.elapsed());
        let offset = ack.map_err(|kind| match kind {
            PublishErrorKind::TimedOut => BusError::Timeout,
            kind => BusError::Unavailable(format!("JetStream did not store the publication: {kind}")),
        })?;
        Ok(Position { offset, epoch: self.epoch(key).await? })
    }

    async fn ack(&self, subject: &str, message: jetstream::message::PublishMessage) -> Result<u64, PublishErrorKind> {
        let ack = self.js.send_publish(subject.to_owned(), message).await.map_err(|e| e.kind())?;
        match tokio::time::timeout(self.timeout, ack).await {
            Ok(Ok(ack)) => Ok(ack.sequence),
            Ok(Err(e)) => Err(e.kind()),
            Err(_) => Err(PublishErrorKind::TimedOut),
        }
    }

    /// The channel's latest position: its last kept message, or the stream's last sequence.
    pub(crate) async fn position(&self, channel: &Channel, key: &str) -> Result<Position, BusError> {
        let started = Instant::now();
        let stream = self.js.get_stream_no_info(self.name(key)).await.map_err(unavailable)?;
        let position = match stream.direct_get_last_for_subject(self.subjects.stored(key, channel)).await {
            Ok(m) => Position { offset: m.sequence, epoch: self.epoch(key).await? },
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => {
                let (epoch, state) = self.info(key).await?;
                Position { offset: state.last_sequence, epoch }
            }
            Err(e) => return Err(unavailable(e)),
        };
        self.metrics.history.record(started.elapsed());
        Ok(position)
    }

    /// Reads a page of the channel's history (see [`crate::Channels::history`]); with
    /// `until`, nothing after that offset.
    ///
    /// Reads are direct gets, which any replica answers, unless `until` is given: that is a
    /// gap fill, and `until` a message this node has seen republished, which a replica that
    /// is behind the leader (one that was frozen or partitioned, or has not applied the last
    /// messages yet) may not have; so a gap fill reads from the stream leader, which has
    /// everything it republished. Gap fills are rare, so the leader's extra work is too.
    /// Other reads check the channel's last message with the leader unless it is the
    /// stream's last, and ask the leader for a message a replica did not have before it.
    pub(crate) async fn page(
        &self,
        channel: &Channel,
        key: &str,
        query: &HistoryQuery,
        until: Option<u64>,
    ) -> Result<HistoryPage, BusError> {
        let limits = self.namespaces.history(channel).ok_or(BusError::NoHistory)?;
        let started = Instant::now();
        let subject = self.subjects.stored(key, channel);
        let stream = self.js.get_stream_no_info(self.name(key)).await.map_err(unavailable)?;
        let (epoch, state) = self.info(key).await?;
        let from_leader = until.is_some();
        let leader_last = async || match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => Ok(Some(m.sequence)),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        };
        let last = if from_leader {
            leader_last().await?
        } else {
            let direct = match stream.direct_get_last_for_subject(subject.clone()).await {
                Ok(m) => Some(m.sequence),
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => None,
                Err(e) => return Err(unavailable(e)),
            };
            // A replica behind the leader answers with an older last message, and a read up
            // to it would miss what a recovering session must get before the live ones. The
            // stream's last sequence (from the leader) settles it when it is the channel's;
            // otherwise (another channel published since, or the replica is behind) the
            // leader says which is the channel's last.
            if direct == Some(state.last_sequence) { direct } else { leader_last().await? }
        };
        let latest = Position { offset: last.unwrap_or(state.last_sequence), epoch: epoch.clone() };
        let continuous = match &query.since {
            None => true,
            Some(since) if since.epoch != epoch || since.offset > state.last_sequence => false,
            Some(since) => {
                // The common reconnect: nothing missed, `since` is the channel's last message
                // (just read), so no other read is needed.
                let has_since = since.offset > 0
                    && (last == Some(since.offset)
                        || match self.at(&stream, since.offset, from_leader).await? {
                            Some(found) => found == subject,
                            None => false,
                        });
                let kept = if has_since {
                    None
                } else {
                    let first_after = self.next(&stream, &subject, since.offset + 1, from_leader).await?;
                    Some((self.count(&stream, &subject).await?, first_after.is_some_and(|m| m.removed)))
                };
                let (channel_total, first_after_is_marker) = kept.unwrap_or((0, false));
                continuous(
                    since,
                    &Kept {
                        epoch: epoch.clone(),
                        store_first: state.first_sequence,
                        store_last: state.last_sequence,
                        channel_total,
                        size: limits.size,
                        has_since,
                        first_after_is_marker,
                    },
                )
            }
        };
        let since = query.since.as_ref().filter(|_| continuous).map(|p| p.offset);
        let end = until.unwrap_or(u64::MAX).min(last.unwrap_or(0));
        let mut stored = Vec::new();
        let mut from = if query.reverse { 1 } else { since.unwrap_or(0) + 1 };
        let before = if query.reverse { since.unwrap_or(u64::MAX) } else { u64::MAX };
        // Forward reads stop at `limit`; a reverse read walks what is kept (at most the
        // namespace's size) and keeps the newest `limit`.
        while from <= end && (query.reverse || stored.len() < query.limit) {
            let m = match self.next(&stream, &subject, from, from_leader).await? {
                // Nothing from `from` to `end`, which the leader has: the replica is behind.
                None if !from_leader => self.next(&stream, &subject, from, true).await?,
                m => m,
            };
            let Some(m) = m else { break };
            if m.offset > end || m.offset >= before {
                break;
            }
            from = m.offset + 1;
            if !m.removed {
                stored.push(m);
            }
        }
        if query.reverse {
            stored.reverse();
            stored.truncate(query.limit);
        }
        let publications = stored
            .into_iter()
            .map(|m| Publication { channel: channel.clone(), offset: m.offset, epoch: epoch.clone(), data: m.data })
            .collect();
        self.metrics.history.record(started.elapsed());
        Ok(HistoryPage { publications, latest, continuous })
    }

    /// The channel's first message at or after `from`, from any replica or from the leader.
    async fn next(
        &self,
        stream: &stream::Stream<()>,
        subject: &str,
        from: u64,
        from_leader: bool,
    ) -> Result<Option<Stored>, BusError> {
        let m = if from_leader {
            match stream.get_first_raw_message_by_subject(subject, from).await {
                Ok(m) => m,
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => return Ok(None),
                Err(e) => return Err(unavailable(e)),
            }
        } else {
            match stream.direct_get_next_for_subject(subject.to_owned(), Some(from)).await {
                Ok(m) => m,
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(unavailable(e)),
            }
        };
        Ok(Some(Stored { offset: m.sequence, removed: m.headers.get(REMOVED_HEADER).is_some(), data: m.payload }))
    }

    /// The subject of the message at `offset`, if the stream keeps it.
    async fn at(
        &self,
        stream: &stream::Stream<()>,
        offset: u64,
        from_leader: bool,
    ) -> Result<Option<String>, BusError> {
        if from_leader {
            return match stream.get_raw_message(offset).await {
                Ok(m) => Ok(Some(m.subject.to_string())),
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) => Err(unavailable(e)),
            };
        }
        match stream.direct_get(offset).await {
            Ok(m) => Ok(Some(m.subject.to_string())),
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// How many messages the stream keeps for `subject`.
    async fn count(&self, stream: &stream::Stream<()>, subject: &str) -> Result<u64, BusError> {
        use futures_util::TryStreamExt;
        let mut subjects = stream.info_with_subjects(subject).await.map_err(unavailable)?;
        let mut count = 0;
        while let Some((s, n)) = subjects.try_next().await.map_err(unavailable)? {
            if s == subject {
                count += n as u64;
            }
        }
        Ok(count)
    }

    /// Purges the channel and leaves a removal marker, so a position from before is no
    /// longer continuous.
    pub(crate) async fn remove(&self, channel: &Channel, key: &str) -> Result<(), BusError> {
        let subject = self.subjects.stored(key, channel);
        let stream = self.js.get_stream_no_info(self.name(key)).await.map_err(unavailable)?;
        stream.purge().filter(subject.clone()).await.map_err(unavailable)?;
        let marker = jetstream::message::PublishMessage::build().header(REMOVED_HEADER, "1");
        self.ack(&subject, marker).await.map_err(|k| BusError::Unavailable(k.to_string()))?;
        Ok(())
    }
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// Whether a stream's configuration has everything Switchboard sets as it wants it.
fn same_config(have: &stream::Config, want: &stream::Config) -> bool {
    have.subjects == want.subjects
        && have.max_messages_per_subject == want.max_messages_per_subject
        && have.max_age == want.max_age
        && have.duplicate_window == want.duplicate_window
        && have.num_replicas == want.num_replicas
        && have.allow_direct == want.allow_direct
        && have.discard == want.discard
        && have.republish == want.republish
}

/// One history channel's delivery on one node: what it handed over last, and the reads that
/// fill a gap (see the module doc).
pub(crate) struct Continuity {
    channel: Channel,
    key: String,
    streams: Arc<Streams>,
    epoch: Arc<str>,
    /// The last offset handed over (0: none yet).
    last: u64,
}

/// What to do with a message that arrived on a history channel's live subject.
pub(crate) enum Next {
    /// Hand these over, in order.
    Deliver(Vec<Publication>),
    /// Hand these over, after telling the node that some were lost.
    Interrupted(Vec<Publication>),
}

impl Continuity {
    pub(crate) async fn new(channel: Channel, key: String, streams: Arc<Streams>) -> Self {
        let epoch = streams.epoch(&key).await.unwrap_or_else(|_| Arc::from(""));
        Continuity { channel, key, streams, epoch, last: 0 }
    }

    /// Takes one republished message: `offset` (`Nats-Sequence`), `prev`
    /// (`Nats-Last-Sequence`), whether it is a removal marker, and its data.
    pub(crate) async fn next(&mut self, offset: u64, prev: u64, removed: bool, data: Bytes) -> Next {
        let mut interrupted = false;
        let mut out = Vec::new();
        if self.last != 0 && offset <= self.last {
            // Handed over already (it came late, after a gap read took it), unless the
            // stream was recreated and counts from 1 again: then its first message of the
            // channel has no predecessor, and the stream a new epoch.
            if prev != 0 {
                return Next::Deliver(out);
            }
            match self.streams.info(&self.key).await {
                Ok((epoch, _)) if epoch != self.epoch => self.epoch = epoch,
                _ => return Next::Deliver(out),
            }
            interrupted = true;
            self.last = 0;
        }
        if self.last != 0 && prev > self.last {
            let since = Position { offset: self.last, epoch: self.epoch.clone() };
            let query = HistoryQuery { since: Some(since), limit: usize::MAX, reverse: false };
            match self.streams.page(&self.channel, &self.key, &query, Some(prev)).await {
                Ok(page) if page.continuous => {
                    crate::metrics::gap("filled");
                    out.extend(page.publications.into_iter().filter(|p| p.offset < offset));
                }
                Ok(_) | Err(_) => {
                    crate::metrics::gap("lost");
                    interrupted = true;
                }
            }
        }
        self.last = offset;
        if !removed {
            out.push(Publication { channel: self.channel.clone(), offset, epoch: self.epoch.clone(), data });
        }
        if interrupted { Next::Interrupted(out) } else { Next::Deliver(out) }
    }
}
