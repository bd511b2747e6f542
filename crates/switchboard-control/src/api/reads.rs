//! Reads of the registry: one session from its shard's owner; a user's sessions, a
//! channel's presence and the channel list from every replica, merged; the cluster's
//! members from this replica's membership.
//!
//! While shards move, two replicas may briefly both report a session: merges keep one
//! record per session (the one with the highest seq).

use std::collections::{BTreeMap, HashSet};

use switchboard_bus::shard::shard;
use switchboard_wire::pb::{self, control_query::Query};
use tokio::time::Instant;
use tonic::Status;

use std::sync::Arc;

use switchboard_bus::{Inbox, Message};
use tokio::sync::Semaphore;

use super::{Api, parse_channel};
use crate::state::Shared;

/// Sessions per `ListSessions` page when the request leaves it 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest `ListSessions` page.
pub const MAX_PAGE_SIZE: u32 = 1000;

// === impl Api ===

impl Api {
    pub(super) async fn session(&self, req: pb::GetSessionRequest) -> Result<pb::SessionInfo, Status> {
        super::commands::session_gateway(&req.session)?;
        let reply = self.shared.ask_owner(shard(&req.session), Query::GetSession(req.session.clone())).await?;
        match reply.sessions.into_iter().find(|r| r.session == req.session) {
            Some(r) => Ok(info(r)),
            None => Err(Status::not_found("session not found")),
        }
    }

    pub(super) async fn sessions_of(&self, req: pb::ListSessionsRequest) -> Result<pb::ListSessionsResponse, Status> {
        let size = match req.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(Status::invalid_argument(format!("page_size {n} is above {MAX_PAGE_SIZE}")));
            }
            n => n,
        } as usize;
        let query = if req.user.is_empty() {
            // Every replica sends its first page; the merge keeps the first `size`, plus one
            // to know whether another page follows.
            Query::AllSessions(pb::SessionPage { after: req.page_token.clone(), limit: size as u32 + 1 })
        } else {
            super::commands::check_user(&req.user)?;
            Query::UserSessions(req.user)
        };
        let replies = self.shared.gather(query).await?;
        let all = merge(replies.into_iter().flat_map(|r| r.sessions));
        let mut rest =
            all.range::<str, _>((std::ops::Bound::Excluded(req.page_token.as_str()), std::ops::Bound::Unbounded));
        let sessions: Vec<pb::SessionInfo> = rest.by_ref().take(size).map(|(_, r)| info(r.clone())).collect();
        let next_page_token = match (rest.next(), sessions.last()) {
            (Some(_), Some(last)) => last.session.clone(),
            _ => String::new(),
        };
        Ok(pb::ListSessionsResponse { sessions, next_page_token })
    }

    pub(super) async fn presence_of(&self, req: pb::PresenceRequest) -> Result<pb::PresenceResponse, Status> {
        let sessions = self.presence_records(&req.channel).await?;
        Ok(pb::PresenceResponse { sessions: sessions.into_values().map(info).collect() })
    }

    pub(super) async fn stats_of(&self, req: pb::PresenceRequest) -> Result<pb::PresenceStatsResponse, Status> {
        let sessions = self.presence_records(&req.channel).await?;
        let users: HashSet<&str> = sessions.values().map(|r| r.user.as_str()).filter(|u| !u.is_empty()).collect();
        Ok(pb::PresenceStatsResponse { sessions: sessions.len() as u32, users: users.len() as u32 })
    }

    /// Channels with counts. Sessions are summed over the replicas (each holds its own
    /// shards'); users are the union of the replicas' user hashes, so a user whose sessions
    /// sit in shards of several replicas counts once.
    pub(super) async fn channel_counts(&self, req: pb::ChannelsRequest) -> Result<pb::ChannelsResponse, Status> {
        let replies = self.shared.gather(Query::Channels(req.pattern)).await?;
        let mut merged: BTreeMap<String, (u32, HashSet<u64>)> = BTreeMap::new();
        for c in replies.into_iter().flat_map(|r| r.channels) {
            let (sessions, users) = merged.entry(c.channel).or_default();
            *sessions += c.sessions;
            users.extend(c.user_hashes);
        }
        let channels = merged
            .into_iter()
            .map(|(channel, (sessions, users))| pb::ChannelInfo { channel, sessions, users: users.len() as u32 })
            .collect();
        Ok(pb::ChannelsResponse { channels })
    }

    pub(super) fn cluster_info(&self) -> pb::InfoResponse {
        let shared = &self.shared;
        let sessions = shared.registry().len() as u32;
        let m = shared.membership();
        let replicas = m
            .live_replicas()
            .into_iter()
            .map(|id| {
                let shards = m.owners().owned_by(&id).len() as u32;
                match m.peer(&id) {
                    Some(p) => pb::ReplicaInfo {
                        id: id.to_string(),
                        grpc_addr: p.heartbeat.grpc_addr.clone(),
                        shards,
                        sessions: p.heartbeat.sessions,
                        started_at_ms: p.heartbeat.started_at_ms,
                    },
                    None => pb::ReplicaInfo {
                        id: id.to_string(),
                        grpc_addr: shared.config.grpc_addr.clone(),
                        shards,
                        sessions,
                        started_at_ms: shared.started_at_ms,
                    },
                }
            })
            .collect();
        pb::InfoResponse { gateways: m.gateway_infos(Instant::now()), replicas }
    }

    async fn presence_records(&self, channel: &str) -> Result<BTreeMap<String, pb::SessionRecord>, Status> {
        presence_records(&self.shared, channel).await
    }
}

/// The sessions subscribed to `channel`, from every replica, one record each.
async fn presence_records(shared: &Shared, channel: &str) -> Result<BTreeMap<String, pb::SessionRecord>, Status> {
    let channel = parse_channel(channel)?;
    let replies = shared.gather(Query::Presence(channel.to_string())).await?;
    Ok(merge(replies.into_iter().flat_map(|r| r.sessions)))
}

/// Answers the gateways' presence questions (a client's `presence` and `presence_stats`)
/// on `{p}.presence`, in the queue group `control`: one replica answers each, from the
/// whole registry as the gRPC `Presence` does. At most [`MAX_PRESENCE_IN_FLIGHT`] are
/// answered at once; more wait in the bus's queue.
pub(crate) async fn run_presence_server(shared: Arc<Shared>, mut inbox: Inbox) {
    let limit = Arc::new(Semaphore::new(MAX_PRESENCE_IN_FLIGHT));
    while let Some(incoming) = inbox.next().await {
        let Some(reply) = incoming.reply else { continue };
        let Ok(permit) = limit.clone().acquire_owned().await else { return };
        let shared = shared.clone();
        tokio::spawn(async move {
            let answer = match incoming.message.decode::<pb::PresenceQuery>() {
                Ok(q) => presence_answer(&shared, q).await,
                Err(e) => {
                    pb::PresenceAnswer { error: format!("undecodable presence query: {e}"), ..Default::default() }
                }
            };
            if let Err(e) = shared.bus.reply(&reply, Message::proto(&answer)).await {
                tracing::debug!(error = %e, "presence answer not sent");
            }
            drop(permit);
        });
    }
}

/// Presence questions one replica answers at once.
pub const MAX_PRESENCE_IN_FLIGHT: usize = 64;

async fn presence_answer(shared: &Shared, q: pb::PresenceQuery) -> pb::PresenceAnswer {
    let records = match presence_records(shared, &q.channel).await {
        Ok(records) => records,
        Err(status) => return pb::PresenceAnswer { error: status.message().to_owned(), ..Default::default() },
    };
    let users: HashSet<&str> = records.values().map(|r| r.user.as_str()).filter(|u| !u.is_empty()).collect();
    let (session_count, users) = (records.len() as u32, users.len() as u32);
    let sessions = match q.stats_only {
        true => Vec::new(),
        // What a client may see of a session: no gateway, channels or client name.
        false => records
            .into_values()
            .map(|r| pb::SessionRecord { session: r.session, user: r.user, info: r.info, ..Default::default() })
            .collect(),
    };
    pb::PresenceAnswer { sessions, session_count, users, error: String::new() }
}

/// One record per session (the highest seq), ordered by session id.
fn merge(records: impl Iterator<Item = pb::SessionRecord>) -> BTreeMap<String, pb::SessionRecord> {
    let mut out: BTreeMap<String, pb::SessionRecord> = BTreeMap::new();
    for r in records {
        match out.get(&r.session) {
            Some(held) if held.seq >= r.seq => {}
            _ => {
                out.insert(r.session.clone(), r);
            }
        }
    }
    out
}

fn info(r: pb::SessionRecord) -> pb::SessionInfo {
    pb::SessionInfo {
        session: r.session,
        gateway: r.gateway,
        user: r.user,
        channels: r.channels,
        connected_at_ms: r.connected_at_ms,
        client_name: r.client_name,
        client_version: r.client_version,
        info: r.info,
    }
}
