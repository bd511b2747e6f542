//! Who is alive: the control replicas (their heartbeats, and the ring over them) and the
//! gateways (their heartbeats and leases).
//!
//! Timing, with the defaults (1 s heartbeats, 3 s replica lease, 10 s gateway lease):
//! - a replica heartbeats at start and then every `heartbeat_interval`; a peer that sees
//!   an unknown replica answers at once with its own heartbeat, so a newcomer learns the
//!   cluster in one round trip; the newcomer claims shards only after a join window of
//!   `min(heartbeat_interval, 500 ms)`, so it does not briefly claim the whole ring;
//! - until then its heartbeats carry the `switchboard-joining` header and the others keep
//!   it out of their rings (they do not drop shards nobody serves yet); at the end of the
//!   window it counts every replica it knows, joining ones included (replicas started
//!   together agree), and heartbeats at once without the header, which brings it into
//!   the others' rings;
//! - a peer silent for `replica_lease` leaves the ring; one that stops gracefully, or that
//!   a query found dead, leaves at once (a leave notice: a heartbeat of that replica with
//!   the `switchboard-leave` header);
//! - a gateway silent for `gateway_lease` is expired and its sessions dropped; a gateway
//!   seen for the first time, again after expiry, or with a new `started_at_ms` (it
//!   restarted) is asked for a snapshot of the owned shards;
//! - leases are checked every quarter of the shortest lease (at most every heartbeat).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use switchboard_bus::Inbox;
use switchboard_wire::pb;
use tokio::time::{Instant, MissedTickBehavior};

use crate::metrics::{self, Gauges};
use crate::ring::{Owners, ShardSet};
use crate::state::Shared;
use crate::sync::{Target, snapshot};

/// The message header that turns a control heartbeat into a leave notice.
pub const LEAVE_HEADER: &str = "switchboard-leave";

/// The message header on the heartbeats of a replica still in its join window.
pub const JOINING_HEADER: &str = "switchboard-joining";

/// The longest a starting replica waits to hear its peers before claiming shards.
pub const JOIN_WINDOW_MAX: Duration = Duration::from_millis(500);

/// The live replicas and gateways as this replica sees them.
pub(crate) struct Membership {
    id: Arc<str>,
    joined: bool,
    peers: HashMap<Arc<str>, Peer>,
    gateways: HashMap<Arc<str>, Gateway>,
    owners: Owners,
    version: u64,
}

/// A live peer replica.
pub(crate) struct Peer {
    pub last_seen: Instant,
    pub heartbeat: pb::ControlHeartbeat,
    /// Whether it is in the ring (it finished joining, or was joining when we did).
    in_ring: bool,
}

/// A gateway known from its heartbeats, or only from its events so far.
struct Gateway {
    last_seen: Instant,
    heartbeat: Option<pb::GatewayHeartbeat>,
}

/// What a gateway heartbeat told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GatewaySeen {
    Known,
    /// First heard of (or again after expiry): ask it for a snapshot.
    New,
    /// Restarted (new `started_at_ms`): forget its old sessions, then ask for a snapshot.
    Restarted,
}

// === impl Membership ===

impl Membership {
    pub fn new(id: Arc<str>) -> Self {
        Membership {
            id,
            joined: false,
            peers: HashMap::new(),
            gateways: HashMap::new(),
            owners: Owners::default(),
            version: 0,
        }
    }

    /// Ends the join window: from now on the ring is computed. Returns the new version.
    pub fn join(&mut self) -> Option<u64> {
        self.joined = true;
        for p in self.peers.values_mut() {
            p.in_ring = true;
        }
        self.recompute()
    }

    /// Whether the join window ended.
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Records a peer's heartbeat (`joining`: it is still in its join window); returns
    /// whether the peer is new, and the new ring version if it entered the ring.
    pub fn peer_heartbeat(&mut self, hb: pb::ControlHeartbeat, joining: bool, now: Instant) -> (bool, Option<u64>) {
        if hb.replica.is_empty() || *hb.replica == *self.id {
            return (false, None);
        }
        let (new, entered) = match self.peers.entry(Arc::from(hb.replica.as_str())) {
            Entry::Occupied(mut e) => {
                let p = e.get_mut();
                let entered = !joining && !p.in_ring;
                *p = Peer { last_seen: now, heartbeat: hb, in_ring: p.in_ring || !joining };
                (false, entered)
            }
            Entry::Vacant(e) => {
                e.insert(Peer { last_seen: now, heartbeat: hb, in_ring: !joining });
                (true, !joining)
            }
        };
        (new, if entered { self.recompute() } else { None })
    }

    /// Removes a peer; `Some(version)` when it was in the ring.
    pub fn peer_left(&mut self, replica: &str) -> Option<u64> {
        if self.peers.remove(replica)?.in_ring { self.recompute() } else { None }
    }

    /// Records a gateway's heartbeat.
    pub fn gateway_heartbeat(&mut self, hb: pb::GatewayHeartbeat, now: Instant) -> GatewaySeen {
        let seen = match self.gateways.get(hb.gateway.as_str()).map(|g| g.heartbeat.as_ref()) {
            None | Some(None) => GatewaySeen::New,
            Some(Some(old)) if old.started_at_ms != 0 && old.started_at_ms != hb.started_at_ms => {
                GatewaySeen::Restarted
            }
            Some(Some(_)) => GatewaySeen::Known,
        };
        self.gateways.insert(Arc::from(hb.gateway.as_str()), Gateway { last_seen: now, heartbeat: Some(hb) });
        seen
    }

    /// Notes a gateway that sent an event: one never heard of gets a lease of its own,
    /// so its records go away if it never heartbeats.
    pub fn gateway_event(&mut self, gateway: &str, now: Instant) {
        if !self.gateways.contains_key(gateway) {
            self.gateways.insert(Arc::from(gateway), Gateway { last_seen: now, heartbeat: None });
        }
    }

    /// Removes the peers and gateways whose lease ran out; returns the new ring version
    /// if peers left, and the expired gateways.
    pub fn expire(
        &mut self,
        now: Instant,
        replica_lease: Duration,
        gateway_lease: Duration,
    ) -> (Option<u64>, Vec<Arc<str>>) {
        let before = self.live_replicas().len();
        self.peers.retain(|_, p| now.duration_since(p.last_seen) < replica_lease);
        let version = if self.live_replicas().len() < before { self.recompute() } else { None };
        let expired: Vec<Arc<str>> = self
            .gateways
            .iter()
            .filter(|(_, g)| now.duration_since(g.last_seen) >= gateway_lease)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.gateways.remove(id);
        }
        (version, expired)
    }

    /// The live replicas, this one included, sorted.
    pub fn live_replicas(&self) -> Vec<Arc<str>> {
        let peers = self.peers.iter().filter(|(_, p)| p.in_ring).map(|(id, _)| id.clone());
        let mut ids: Vec<Arc<str>> = peers.chain([self.id.clone()]).collect();
        ids.sort();
        ids
    }

    pub fn peer(&self, id: &str) -> Option<&Peer> {
        self.peers.get(id)
    }

    /// The owner of `shard` in the current ring (`None` before joining).
    pub fn owner(&self, shard: u16) -> Option<Arc<str>> {
        self.owners.owner(shard).cloned()
    }

    pub fn owners(&self) -> &Owners {
        &self.owners
    }

    /// The shards this replica owns in the current ring.
    pub fn owned(&self) -> ShardSet {
        self.owners.owned_by(&self.id).into_iter().collect()
    }

    /// Increases with every change of the ring's members (0 before joining).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Gateways known from heartbeats.
    pub fn live_gateways(&self) -> Vec<Arc<str>> {
        self.gateways.iter().filter(|(_, g)| g.heartbeat.is_some()).map(|(id, _)| id.clone()).collect()
    }

    /// The latest heartbeat of every gateway heard within `fresh`, sorted by id.
    pub fn gateway_heartbeats(&self, now: Instant, fresh: Duration) -> Vec<pb::GatewayHeartbeat> {
        let mut out: Vec<pb::GatewayHeartbeat> = self
            .gateways
            .values()
            .filter(|g| now.duration_since(g.last_seen) < fresh)
            .filter_map(|g| g.heartbeat.clone())
            .collect();
        out.sort_by(|a, b| a.gateway.cmp(&b.gateway));
        out
    }

    /// Gateways known from heartbeats, as `Info` shows them, sorted by id.
    pub fn gateway_infos(&self, now: Instant) -> Vec<pb::GatewayInfo> {
        let mut out: Vec<pb::GatewayInfo> = self
            .gateways
            .values()
            .filter_map(|g| {
                let hb = g.heartbeat.as_ref()?;
                Some(pb::GatewayInfo {
                    id: hb.gateway.clone(),
                    http_addr: hb.http_addr.clone(),
                    sessions: hb.sessions,
                    channels: hb.channels,
                    started_at_ms: hb.started_at_ms,
                    last_seen_ms_ago: now.duration_since(g.last_seen).as_millis() as u64,
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn recompute(&mut self) -> Option<u64> {
        if !self.joined {
            return None;
        }
        self.owners = Owners::compute(&self.live_replicas());
        self.version += 1;
        Some(self.version)
    }
}

// === tasks ===

/// Sends this replica's heartbeat every `heartbeat_interval`, the first one at once.
pub(crate) async fn run_heartbeats(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.heartbeat_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.send_heartbeat().await;
    }
}

/// Tracks peer replicas from their heartbeats and leave notices.
pub(crate) async fn run_peer_listener(shared: Arc<Shared>, mut inbox: Inbox) {
    while let Some(incoming) = inbox.next().await {
        let Ok(hb) = incoming.message.decode::<pb::ControlHeartbeat>() else { continue };
        let about_us = *hb.replica == *shared.id;
        if incoming.message.header(LEAVE_HEADER).is_some() {
            if about_us {
                // A peer took us for dead: correct it now rather than at our next heartbeat.
                shared.send_heartbeat().await;
            } else {
                let left = shared.membership().peer_left(&hb.replica);
                if left.is_some() {
                    tracing::info!(replica = %hb.replica, "replica left the ring");
                }
                shared.ring_changed(left);
            }
            continue;
        }
        if about_us {
            if hb.started_at_ms != shared.started_at_ms {
                tracing::error!(replica = %hb.replica, "another control replica uses this replica's id");
            }
            continue;
        }
        let replica = hb.replica.clone();
        let joining = incoming.message.header(JOINING_HEADER).is_some();
        let (new, version) = shared.membership().peer_heartbeat(hb, joining, Instant::now());
        if version.is_some() {
            tracing::info!(%replica, "replica entered the ring");
            shared.ring_changed(version);
        }
        if new {
            // The newcomer learns about us now rather than at our next heartbeat.
            shared.send_heartbeat().await;
        }
    }
}

/// Tracks gateways from their heartbeats; asks new (or restarted) ones for a snapshot.
pub(crate) async fn run_gateway_listener(shared: Arc<Shared>, mut inbox: Inbox) {
    while let Some(incoming) = inbox.next().await {
        let Ok(hb) = incoming.message.decode::<pb::GatewayHeartbeat>() else { continue };
        if hb.gateway.is_empty() {
            continue;
        }
        let gateway: Arc<str> = Arc::from(hb.gateway.as_str());
        let seen = shared.membership().gateway_heartbeat(hb, Instant::now());
        if seen == GatewaySeen::Known {
            continue;
        }
        if seen == GatewaySeen::Restarted {
            let dropped = shared.registry().forget_gateway(&gateway);
            tracing::info!(%gateway, dropped, "gateway restarted: its old sessions dropped");
        }
        let owned = shared.registry().owned();
        if !owned.is_empty() {
            let shared = shared.clone();
            tokio::spawn(async move {
                snapshot(&shared, owned, Target::Gateway(gateway)).await;
            });
        }
    }
}

/// Ends the join window, then expires peers and gateways and sets the gauges.
pub(crate) async fn run_sweeper(shared: Arc<Shared>) {
    let config = &shared.config;
    tokio::time::sleep(config.heartbeat_interval.min(JOIN_WINDOW_MAX)).await;
    let joined = shared.membership().join();
    shared.ring_changed(joined);
    shared.send_heartbeat().await;
    let every = (config.replica_lease.min(config.gateway_lease) / 4)
        .min(config.heartbeat_interval)
        .max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let (left, expired, gone) = {
            let mut m = shared.membership();
            let before = m.live_replicas().len();
            let (left, expired) = m.expire(now, config.replica_lease, config.gateway_lease);
            (left, expired, before.saturating_sub(m.live_replicas().len()))
        };
        if left.is_some() {
            metrics::replicas_expired(gone);
            tracing::warn!(gone, "replicas silent past their lease left the ring");
        }
        shared.ring_changed(left);
        for gateway in &expired {
            let dropped = shared.registry().drop_gateway(gateway);
            metrics::gateway_expired();
            tracing::warn!(%gateway, dropped, "gateway silent past its lease: its sessions dropped");
        }
        let (replicas, gateways) = {
            let m = shared.membership();
            (m.live_replicas().len(), m.live_gateways().len())
        };
        let (owned_shards, sessions) = {
            let mut r = shared.registry();
            r.sweep(now);
            (r.owned().len(), r.len())
        };
        Gauges { replicas, gateways, owned_shards, sessions }.set();
    }
}
