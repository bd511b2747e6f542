//! Queries between control replicas: each answers `ControlQuery`s about the shards it
//! owns at `Address::Replica(id)`; any replica answers an API call by asking the owner of
//! a session's shard, or every live replica (scatter-gather) and merging.
//!
//! A replica that does not answer within `query_timeout`, or that nobody listens for, is
//! dropped from the ring at once, and the call is retried once after this replica's
//! registry settled on the new ring, snapshots included: a call made just after a replica
//! died answers from the shards' new owners. When nobody listens for it (it is certainly
//! gone) the other replicas are told too; a mere timeout (perhaps only slow) is not spread.
//!
//! Every reply says which shards it covers (the [`SHARDS_HEADER`]: the answering
//! registry's complete shards, owned and snapshotted, when it answered). An answer is only used when the replies cover
//! every shard exactly once (for `GetSession`: the session's shard); while shards move and
//! they do not, the call asks again every [`COVERAGE_RETRY`] for up to a query timeout,
//! then fails with UNAVAILABLE rather than answer from part of the registry.
//!
//! A reply can be large (the presence of a busy channel), so it travels in parts of about
//! [`PART_BYTES`], each but the last carrying the [`MORE_HEADER`] header.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use prost::Message as _;
use switchboard_bus::shard::SHARDS;
use switchboard_bus::{Address, BusError, Inbox, Message};
use switchboard_wire::pb::{self, control_query::Query};
use tokio::time::Instant;
use tonic::Status;

use crate::registry::Registry;
use crate::ring::ShardSet;
use crate::state::Shared;

/// The header on every part of a query reply but the last.
pub const MORE_HEADER: &str = "switchboard-more";
/// The header on the last part of a query reply: the shards it covers, as 64 hex digits.
pub const SHARDS_HEADER: &str = "switchboard-shards";
/// The size a reply part is cut at: well under NATS's default 1 MiB payload limit.
pub const PART_BYTES: usize = 256 * 1024;
/// How often a call asks again while the replies do not cover the shards.
pub const COVERAGE_RETRY: Duration = Duration::from_millis(25);

/// A reply and the shards it covers (`None`: the replica did not say).
type Covered = (pb::ControlQueryReply, Option<ShardSet>);

/// Why a peer gave no answer.
enum AskError {
    /// Nobody listens for it: it is gone.
    NoResponders,
    /// It did not answer within the query timeout: dead, or too slow to count on.
    Timeout,
    /// Anything else (the bus is down, a garbled reply): fail the call.
    Failed(Status),
}

/// Serves queries from peers until the inbox closes.
pub(crate) async fn run_query_server(shared: Arc<Shared>, mut inbox: Inbox) {
    while let Some(incoming) = inbox.next().await {
        let Some(reply_to) = incoming.reply else { continue };
        let (reply, covered) = match incoming.message.decode::<pb::ControlQuery>() {
            Ok(q) => answer(&shared.registry(), &q),
            Err(e) => {
                tracing::debug!(error = %e, "undecodable control query");
                (pb::ControlQueryReply::default(), ShardSet::default())
            }
        };
        let parts = split(reply);
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            let message = Message::proto(&part);
            let message = match i < last {
                true => message.with_header(MORE_HEADER, "1"),
                false => message.with_header(SHARDS_HEADER, covered.to_hex()),
            };
            if let Err(e) = shared.bus.reply(&reply_to, message).await {
                tracing::debug!(error = %e, "control query reply not sent");
                break;
            }
        }
    }
}

/// Answers a query from the local registry; also returns the shards the answer covers
/// (those owned and complete).
pub(crate) fn answer(registry: &Registry, q: &pb::ControlQuery) -> (pb::ControlQueryReply, ShardSet) {
    let mut reply = pb::ControlQueryReply::default();
    match &q.query {
        Some(Query::GetSession(s)) => reply.sessions.extend(registry.get(s)),
        Some(Query::UserSessions(u)) => reply.sessions = registry.user_sessions(u),
        Some(Query::Presence(c)) => reply.sessions = registry.presence(c),
        Some(Query::Channels(p)) => reply.channels = registry.channels(p),
        Some(Query::AllSessions(page)) => reply.sessions = registry.page(&page.after, page.limit as usize),
        None => {}
    }
    (reply, registry.complete())
}

/// Cuts a reply into parts of about [`PART_BYTES`] (at least one part).
fn split(reply: pb::ControlQueryReply) -> Vec<pb::ControlQueryReply> {
    let mut parts = Vec::new();
    let (mut part, mut size) = (pb::ControlQueryReply::default(), 0);
    let mut cut = |part: &mut pb::ControlQueryReply, size: &mut usize, n: usize| {
        if *size > 0 && *size + n > PART_BYTES {
            parts.push(std::mem::take(part));
            *size = 0;
        }
        *size += n;
    };
    for r in reply.sessions {
        cut(&mut part, &mut size, r.encoded_len() + 4);
        part.sessions.push(r);
    }
    for c in reply.channels {
        cut(&mut part, &mut size, c.encoded_len() + 4);
        part.channels.push(c);
    }
    parts.push(part);
    parts
}

// === impl Shared ===

impl Shared {
    /// Asks every live replica (this one without a bus hop); one reply per replica,
    /// together covering every shard once.
    pub async fn gather(&self, query: Query) -> Result<Vec<pb::ControlQueryReply>, Status> {
        self.ready().await?;
        let query = pb::ControlQuery { query: Some(query) };
        let (mut retried, mut moving_since) = (false, None);
        loop {
            let replicas = self.membership().live_replicas();
            let results = join_all(replicas.iter().map(|r| self.ask(r, &query))).await;
            let (mut replies, mut gone) = (Vec::with_capacity(replicas.len()), Vec::new());
            let (mut covered, mut overlap, mut unknown) = (ShardSet::default(), false, false);
            for (replica, result) in replicas.iter().zip(results) {
                match result {
                    Ok((reply, shards)) => {
                        match shards {
                            Some(shards) => overlap |= covered.merge(&shards),
                            None => unknown = true,
                        }
                        replies.push(reply);
                    }
                    Err(AskError::NoResponders) => gone.push((replica.clone(), true)),
                    Err(AskError::Timeout) => gone.push((replica.clone(), false)),
                    Err(AskError::Failed(status)) => return Err(status),
                }
            }
            if !gone.is_empty() {
                if retried {
                    return Err(unanswered(&gone));
                }
                self.after_deaths(&gone).await;
                retried = true;
                continue;
            }
            if unknown || (covered.len() == SHARDS as usize && !overlap) {
                return Ok(replies);
            }
            self.shards_moving(&mut moving_since).await?;
        }
    }

    /// Asks the owner of `shard` (this replica without a bus hop).
    pub async fn ask_owner(&self, shard: u16, query: Query) -> Result<pb::ControlQueryReply, Status> {
        self.ready().await?;
        let query = pb::ControlQuery { query: Some(query) };
        let (mut retried, mut moving_since) = (false, None);
        loop {
            let owner = self.membership().owner(shard).unwrap_or_else(|| self.id.clone());
            let certain = match self.ask(&owner, &query).await {
                Ok((reply, shards)) if shards.is_none_or(|s| s.contains(shard)) => return Ok(reply),
                Ok(_) => {
                    self.shards_moving(&mut moving_since).await?;
                    continue;
                }
                Err(AskError::Failed(status)) => return Err(status),
                Err(AskError::NoResponders) => true,
                Err(AskError::Timeout) => false,
            };
            if retried {
                return Err(unanswered(&[(owner, certain)]));
            }
            self.after_deaths(&[(owner, certain)]).await;
            retried = true;
        }
    }

    /// Waits before asking again while the replies did not cover the shards; fails once
    /// that lasted a query timeout.
    async fn shards_moving(&self, since: &mut Option<Instant>) -> Result<(), Status> {
        let since = *since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.config.query_timeout {
            return Err(Status::unavailable("registry shards are moving between control replicas; try again"));
        }
        tokio::time::sleep(COVERAGE_RETRY).await;
        Ok(())
    }

    async fn ask(&self, replica: &Arc<str>, query: &pb::ControlQuery) -> Result<Covered, AskError> {
        if *replica == self.id {
            let (reply, shards) = answer(&self.registry(), query);
            return Ok((reply, Some(shards)));
        }
        let deadline = Instant::now() + self.config.query_timeout;
        let address = Address::Replica(replica.clone());
        let mut inbox = match self.bus.request_many(&address, Message::proto(query)).await {
            Ok(inbox) => inbox,
            Err(BusError::NoResponders) => return Err(AskError::NoResponders),
            Err(e) => return Err(AskError::Failed(Status::unavailable(e.to_string()))),
        };
        let mut reply = pb::ControlQueryReply::default();
        loop {
            let incoming = match tokio::time::timeout_at(deadline, inbox.next()).await {
                Ok(Some(incoming)) => incoming,
                // The NATS bus ends the inbox when nobody listens.
                Ok(None) => return Err(AskError::NoResponders),
                Err(_) => return Err(AskError::Timeout),
            };
            let part: pb::ControlQueryReply = incoming
                .message
                .decode()
                .map_err(|e| AskError::Failed(Status::internal(format!("bad reply from {replica}: {e}"))))?;
            reply.sessions.extend(part.sessions);
            reply.channels.extend(part.channels);
            if incoming.message.header(MORE_HEADER).is_none() {
                let shards = incoming.message.header(SHARDS_HEADER).and_then(ShardSet::from_hex);
                return Ok((reply, shards));
            }
        }
    }

    /// Drops unresponsive replicas from the ring (telling the others about those certainly
    /// gone) and waits until the registry settled.
    async fn after_deaths(&self, gone: &[(Arc<str>, bool)]) {
        let mut version = 0;
        for (replica, certain) in gone {
            version = version.max(self.mark_dead(replica, *certain).await);
        }
        self.wait_settled(version).await;
    }
}

fn unanswered(gone: &[(Arc<str>, bool)]) -> Status {
    let names: Vec<&str> = gone.iter().map(|(g, _)| &**g).collect();
    Status::unavailable(format!("control replicas did not answer: {}", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_replies_are_cut_into_parts_that_keep_every_item() {
        let record = |i: usize| pb::SessionRecord {
            session: format!("g1-{i:08x}"),
            user: "u".repeat(200),
            ..Default::default()
        };
        for (records, want_parts) in [(0, 1), (10, 1), (5000, 5)] {
            let reply = pb::ControlQueryReply { sessions: (0..records).map(record).collect(), channels: Vec::new() };
            let parts = split(reply.clone());
            assert_eq!(parts.len(), want_parts, "{records} records");
            assert!(parts.iter().all(|p| p.encoded_len() <= PART_BYTES + 1024));
            let joined: Vec<_> = parts.into_iter().flat_map(|p| p.sessions).collect();
            assert_eq!(joined, reply.sessions);
        }
    }
}
