//! The session registry of the shards this replica owns: soft state, rebuilt from the
//! gateways' registry events and snapshots, with indexes by user, channel and gateway.
//!
//! Ordering rule: a gateway numbers its events (`seq`, one more per event). A change to a
//! session applies only if its seq is above the seq of what the registry holds for that
//! session, a live record or the tombstone a disconnect left; so a late event or a stale
//! snapshot never undoes a newer change. Records from a gateway are only compared with
//! that gateway's numbers (session ids carry their gateway, so they always are).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use switchboard_bus::shard::{SHARDS, shard};
use switchboard_wire::pb::{self, registry_event::Event};
use tokio::time::Instant;

use crate::ring::ShardSet;

/// How long a disconnect is remembered, to reject older news of the session.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

/// How long a channel change for an unknown session waits for the session's record (from
/// a snapshot in flight).
const PENDING_TTL: Duration = Duration::from_secs(10);
/// Bounds on those waiting changes: sessions, and changes per session.
const MAX_PENDING_SESSIONS: usize = 65_536;
const MAX_PENDING_PER_SESSION: usize = 64;

/// The sessions of the owned shards.
#[derive(Default)]
pub struct Registry {
    owned: ShardSet,
    /// The owned shards whose first snapshot is done: what answers may claim to cover.
    complete: ShardSet,
    /// Counts ownership changes; `gained_at[s]`: the change that last gained shard `s`.
    epoch: u64,
    gained_at: Vec<u64>,
    records: HashMap<Arc<str>, pb::SessionRecord>,
    tombstones: HashMap<Arc<str>, Tombstone>,
    pending: HashMap<Arc<str>, Vec<Pending>>,
    by_user: HashMap<String, BTreeSet<Arc<str>>>,
    by_channel: HashMap<String, HashSet<Arc<str>>>,
    by_gateway: HashMap<String, HashSet<Arc<str>>>,
}

/// A channel change for a session not held (yet), kept for a snapshot record older than it.
struct Pending {
    gateway: String,
    seq: u64,
    channel: String,
    subscribe: bool,
    until: Instant,
}

/// What is left of a disconnected session.
struct Tombstone {
    gateway: String,
    seq: u64,
    until: Instant,
}

// === impl Registry ===

impl Registry {
    /// Sessions held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The shards whose records this registry holds.
    pub fn owned(&self) -> ShardSet {
        self.owned
    }

    /// The owned shards whose sessions are all known (their first snapshot is done).
    pub fn complete(&self) -> ShardSet {
        self.complete
    }

    /// Starts (re)building `shards`: not complete until [`Registry::mark_complete`] with
    /// the returned epoch.
    pub fn gaining(&mut self, shards: ShardSet) -> u64 {
        self.epoch += 1;
        self.gained_at.resize(SHARDS as usize, 0);
        for s in shards.iter() {
            self.gained_at[s as usize] = self.epoch;
            self.complete.remove(s);
        }
        self.epoch
    }

    /// Marks `shards` complete (their snapshot is done), those still owned and not
    /// regained since [`Registry::gaining`] returned `epoch`.
    pub fn mark_complete(&mut self, shards: ShardSet, epoch: u64) {
        for s in shards.iter() {
            if self.owned.contains(s) && self.gained_at.get(s as usize) == Some(&epoch) {
                self.complete.insert(s);
            }
        }
    }

    /// Takes ownership of `owned`, dropping every record and tombstone of the shards no
    /// longer owned; returns how many records were dropped. Shards gained are not complete
    /// (see [`Registry::gaining`]).
    pub fn set_owned(&mut self, owned: ShardSet) -> usize {
        self.complete = self.complete.iter().filter(|s| owned.contains(*s) && self.owned.contains(*s)).collect();
        self.owned = owned;
        let lost: Vec<Arc<str>> = self.records.keys().filter(|s| !owned.contains(shard(s))).cloned().collect();
        self.tombstones.retain(|s, _| owned.contains(shard(s)));
        self.pending.retain(|s, _| owned.contains(shard(s)));
        lost.iter().filter(|s| self.remove(s).is_some()).count()
    }

    /// Applies one live event; returns whether it changed anything.
    pub fn apply(&mut self, ev: &pb::RegistryEvent, now: Instant) -> bool {
        let Some(event) = &ev.event else { return false };
        let session = match event {
            Event::Connected(r) => &r.session,
            Event::Disconnected(g) => &g.session,
            Event::Subscribed(c) | Event::Unsubscribed(c) => &c.session,
        };
        if !self.owned.contains(shard(session)) || !self.is_newer(session, &ev.gateway, ev.seq) {
            return false;
        }
        match event {
            Event::Connected(r) => {
                let mut r = r.clone();
                if !ev.gateway.is_empty() {
                    r.gateway = ev.gateway.clone();
                }
                r.seq = ev.seq;
                self.upsert(r);
            }
            Event::Disconnected(g) => {
                self.remove(&g.session);
                self.bury(&g.session, &ev.gateway, ev.seq, now);
            }
            Event::Subscribed(c) => return self.change_channel(&c.session, &ev.gateway, ev.seq, &c.channel, true, now),
            Event::Unsubscribed(c) => {
                return self.change_channel(&c.session, &ev.gateway, ev.seq, &c.channel, false, now);
            }
        }
        true
    }

    /// Applies the records of one snapshot chunk from `gateway`, for the sessions of
    /// `shards` this replica owns; returns how many were applied.
    pub fn merge_snapshot(&mut self, gateway: &str, records: Vec<pb::SessionRecord>, shards: &ShardSet) -> usize {
        let mut applied = 0;
        for mut r in records {
            let s = shard(&r.session);
            if !shards.contains(s) || !self.owned.contains(s) {
                continue;
            }
            if r.gateway.is_empty() {
                r.gateway = gateway.to_owned();
            }
            if self.is_newer(&r.session, &r.gateway, r.seq) {
                self.upsert(r);
                applied += 1;
            }
        }
        applied
    }

    /// Ends a complete snapshot from `gateway` taken at its sequence `seq`: removes the
    /// gateway's records in `shards` that the snapshot did not list (`seen`), unless they
    /// changed after the snapshot was taken. Returns how many were removed.
    pub fn remove_absent(
        &mut self,
        gateway: &str,
        shards: &ShardSet,
        seen: &HashSet<String>,
        seq: u64,
        now: Instant,
    ) -> usize {
        let Some(sessions) = self.by_gateway.get(gateway) else { return 0 };
        let gone: Vec<Arc<str>> = sessions
            .iter()
            .filter(|s| shards.contains(shard(s)) && !seen.contains(&***s) && self.records[*s].seq <= seq)
            .cloned()
            .collect();
        for s in &gone {
            self.remove(s);
            self.bury(s, gateway, seq, now);
        }
        gone.len()
    }

    /// Forgets everything of `gateway` (it restarted): its records, and its tombstones and
    /// waiting changes, whose sequence numbers belong to its previous life. Returns how
    /// many records.
    pub fn forget_gateway(&mut self, gateway: &str) -> usize {
        self.tombstones.retain(|_, t| t.gateway != gateway);
        self.drop_gateway(gateway)
    }

    /// Drops every record of `gateway` (it stopped heartbeating); returns how many.
    pub fn drop_gateway(&mut self, gateway: &str) -> usize {
        self.pending.retain(|_, p| p.iter().all(|p| p.gateway != gateway));
        let sessions: Vec<Arc<str>> =
            self.by_gateway.get(gateway).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        sessions.iter().filter(|s| self.remove(s).is_some()).count()
    }

    /// Forgets expired tombstones.
    pub fn sweep(&mut self, now: Instant) {
        self.tombstones.retain(|_, t| t.until > now);
        self.pending.retain(|_, p| p.iter().any(|p| p.until > now));
    }

    // --- queries ---

    pub fn get(&self, session: &str) -> Option<pb::SessionRecord> {
        self.records.get(session).cloned()
    }

    /// The sessions of `user`, ordered by session id.
    pub fn user_sessions(&self, user: &str) -> Vec<pb::SessionRecord> {
        self.collect(self.by_user.get(user).into_iter().flatten())
    }

    /// The first `limit` sessions in id order whose id sorts after `after`.
    pub fn page(&self, after: &str, limit: usize) -> Vec<pb::SessionRecord> {
        let mut ids: Vec<&Arc<str>> = self.records.keys().filter(|id| &***id > after).collect();
        ids.sort_unstable();
        ids.truncate(limit);
        self.collect(ids.into_iter())
    }

    /// The sessions subscribed to `channel`, in no particular order.
    pub fn presence(&self, channel: &str) -> Vec<pb::SessionRecord> {
        self.collect(self.by_channel.get(channel).into_iter().flatten())
    }

    /// Per channel matching `pattern` (`*` matches any run; empty matches all): its
    /// sessions and distinct (non-anonymous) users here.
    pub fn channels(&self, pattern: &str) -> Vec<pb::ChannelCount> {
        let mut out: Vec<pb::ChannelCount> = self
            .by_channel
            .iter()
            .filter(|(ch, _)| pattern.is_empty() || glob(pattern, ch))
            .map(|(ch, sessions)| {
                let users: HashSet<&str> =
                    sessions.iter().map(|s| self.records[s].user.as_str()).filter(|u| !u.is_empty()).collect();
                let mut user_hashes: Vec<u64> = users.iter().map(|u| switchboard_bus::shard::hash64(u)).collect();
                user_hashes.sort_unstable();
                pb::ChannelCount {
                    channel: ch.clone(),
                    sessions: sessions.len() as u32,
                    users: users.len() as u32,
                    user_hashes,
                }
            })
            .collect();
        out.sort_by(|a, b| a.channel.cmp(&b.channel));
        out
    }

    fn collect<'a>(&self, sessions: impl Iterator<Item = &'a Arc<str>>) -> Vec<pb::SessionRecord> {
        sessions.filter_map(|s| self.records.get(s).cloned()).collect()
    }

    // --- internals ---

    /// Whether a change numbered `seq` by `gateway` is newer than what is held.
    fn is_newer(&self, session: &str, gateway: &str, seq: u64) -> bool {
        let record = self.records.get(session).map(|r| (r.gateway.as_str(), r.seq));
        let tombstone = self.tombstones.get(session).map(|t| (t.gateway.as_str(), t.seq));
        [record, tombstone].into_iter().flatten().all(|(g, held)| g != gateway || seq > held)
    }

    fn upsert(&mut self, record: pb::SessionRecord) {
        let key: Arc<str> = match self.records.get_key_value(record.session.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(record.session.as_str()),
        };
        self.remove(&key);
        self.tombstones.remove(&key);
        if !record.user.is_empty() {
            self.by_user.entry(record.user.clone()).or_default().insert(key.clone());
        }
        for ch in &record.channels {
            self.by_channel.entry(ch.clone()).or_default().insert(key.clone());
        }
        self.by_gateway.entry(record.gateway.clone()).or_default().insert(key.clone());
        self.records.insert(key.clone(), record);
        self.replay(&key);
    }

    /// Applies (or keeps for later) a subscribe or unsubscribe already checked as newer.
    fn change_channel(
        &mut self,
        session: &str,
        gateway: &str,
        seq: u64,
        channel: &str,
        subscribe: bool,
        now: Instant,
    ) -> bool {
        let Some(key) = self.records.get_key_value(session).map(|(k, _)| k.clone()) else {
            // A snapshot taken before this change may bring the session's record later.
            let room = self.pending.len() < MAX_PENDING_SESSIONS || self.pending.contains_key(session);
            if room {
                let held = self.pending.entry(Arc::from(session)).or_default();
                if held.len() < MAX_PENDING_PER_SESSION {
                    let until = now + PENDING_TTL;
                    held.push(Pending {
                        gateway: gateway.to_owned(),
                        seq,
                        channel: channel.to_owned(),
                        subscribe,
                        until,
                    });
                }
            }
            return false;
        };
        let record = self.records.get_mut(&key).expect("the key was just found");
        record.seq = seq;
        let has = record.channels.iter().any(|ch| ch == channel);
        if subscribe && !has {
            record.channels.push(channel.to_owned());
            self.by_channel.entry(channel.to_owned()).or_default().insert(key);
        } else if !subscribe && has {
            record.channels.retain(|ch| ch != channel);
            unindex(&mut self.by_channel, channel, &key);
        }
        true
    }

    /// Applies the changes that arrived before `session`'s record and are newer than it.
    fn replay(&mut self, session: &Arc<str>) {
        let Some(mut changes) = self.pending.remove(session) else { return };
        changes.sort_by_key(|p| p.seq);
        for p in changes {
            if self.is_newer(session, &p.gateway, p.seq) {
                self.change_channel(session, &p.gateway, p.seq, &p.channel, p.subscribe, p.until);
            }
        }
    }

    fn remove(&mut self, session: &str) -> Option<pb::SessionRecord> {
        let (key, record) = self.records.remove_entry(session)?;
        if let Some(set) = self.by_user.get_mut(&record.user) {
            set.remove(&key);
            if set.is_empty() {
                self.by_user.remove(&record.user);
            }
        }
        for ch in &record.channels {
            unindex(&mut self.by_channel, ch, &key);
        }
        unindex(&mut self.by_gateway, &record.gateway, &key);
        Some(record)
    }

    fn bury(&mut self, session: &str, gateway: &str, seq: u64, now: Instant) {
        self.pending.remove(session);
        let t = Tombstone { gateway: gateway.to_owned(), seq, until: now + TOMBSTONE_TTL };
        match self.tombstones.get_mut(session) {
            Some(old) if old.gateway == gateway && old.seq >= seq => {}
            Some(old) => *old = t,
            None => {
                self.tombstones.insert(Arc::from(session), t);
            }
        }
    }
}

fn unindex(index: &mut HashMap<String, HashSet<Arc<str>>>, key: &str, session: &Arc<str>) {
    if let Some(set) = index.get_mut(key) {
        set.remove(session);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (none
/// included) and every other character itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((bp, bt)) = backtrack {
            pi = bp + 1;
            ti = bt + 1;
            backtrack = Some((bp, bt + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests;
