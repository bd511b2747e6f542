//! Keeps the registry in step with the ring: listens to the registry events of the owned
//! shards, asks gateways for snapshots of shards it gains, and drops shards it loses.
//!
//! On a ring change the rebalancer, one task, in order: hands the owned set to the registry
//! (dropping the records of lost shards),
//! stops listening to lost shards, starts listening to gained ones (confirmed before the
//! next step, so no event published after a gateway takes its snapshot is missed), then
//! requests a snapshot of the gained shards from every gateway and merges the answers until
//! every gateway known from heartbeats sent its last chunk, or [`SNAPSHOT_WAIT`] passed.
//! Then it marks the ring version settled (what a retried query waits for) and the gained
//! shards complete: until then, answers from this replica do not claim to cover them. A
//! gateway that did not finish answering is asked once more on its own, and the shards
//! count as complete when that ends, whatever came.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::join_all;
use switchboard_bus::{Address, BusError, Inbox, Message};
use switchboard_wire::pb;
use tokio::time::Instant;

use crate::metrics;
use crate::ring::ShardSet;
use crate::state::{Shared, Task};

/// The longest a snapshot request waits for the gateways' answers.
pub const SNAPSHOT_WAIT: Duration = Duration::from_secs(2);

/// After a shard listener could not be set up, the rebalancer tries again this much later.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// Whom a snapshot request goes to.
pub(crate) enum Target {
    /// Every gateway (`Address::Gateways`).
    All,
    /// One gateway (`Address::Node`).
    Gateway(Arc<str>),
}

/// Follows ring changes until aborted; the shard listeners live (and die) with it.
pub(crate) async fn run_rebalancer(shared: Arc<Shared>) {
    let mut listeners: HashMap<u16, Task> = HashMap::new();
    let mut settled = 0;
    loop {
        shared.ring_changed.notified().await;
        let (version, owned) = {
            let m = shared.membership();
            (m.version(), m.owned())
        };
        if version == settled && listeners.len() == owned.len() {
            continue;
        }
        rebalance(&shared, &mut listeners, owned).await;
        if listeners.len() < owned.len() {
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(LISTEN_RETRY).await;
                shared.ring_changed.notify_one();
            });
        }
        settled = version;
        shared.settled.send_replace(version);
    }
}

async fn rebalance(shared: &Arc<Shared>, listeners: &mut HashMap<u16, Task>, owned: ShardSet) {
    let shards: Vec<u16> = owned.iter().collect();
    listeners.retain(|s, _| owned.contains(*s));
    let gained: Vec<u16> = shards.iter().copied().filter(|s| !listeners.contains_key(s)).collect();
    let (dropped, epoch) = {
        // Under the registry lock, serialized with `Control::stop`.
        let mut registry = shared.registry();
        if shared.stopped.load(Ordering::Relaxed) {
            return;
        }
        let dropped = registry.set_owned(owned);
        (dropped, registry.gaining(gained.iter().copied().collect()))
    };
    let inboxes = join_all(gained.iter().map(|&s| shared.bus.listen(&Address::Registry(s), None))).await;
    let mut listening = ShardSet::default();
    for (&s, inbox) in gained.iter().zip(inboxes) {
        match inbox {
            Ok(inbox) => {
                listeners.insert(s, Task::spawn(listen_shard(shared.clone(), inbox)));
                listening.insert(s);
            }
            Err(e) => tracing::warn!(shard = s, error = %e, "cannot listen to registry shard; retrying"),
        }
    }
    tracing::info!(owned = owned.len(), gained = gained.len(), dropped, "registry shards rebalanced");
    let missing = snapshot(shared, listening, Target::All).await;
    if missing.is_empty() {
        shared.registry().mark_complete(listening, epoch);
        return;
    }
    // Gateways that did not finish answering are asked once more each; then the shards
    // count as complete whatever came (answers cannot wait for a gateway forever).
    let shared = shared.clone();
    tokio::spawn(async move {
        join_all(missing.into_iter().map(|g| snapshot(&shared, listening, Target::Gateway(g)))).await;
        shared.registry().mark_complete(listening, epoch);
    });
}

/// Applies the events of one shard.
async fn listen_shard(shared: Arc<Shared>, mut inbox: Inbox) {
    while let Some(incoming) = inbox.next().await {
        match incoming.message.decode::<pb::RegistryEvent>() {
            Ok(ev) => shared.on_event(&ev),
            Err(e) => tracing::debug!(error = %e, "undecodable registry event dropped"),
        }
    }
}

/// Asks `target` for the sessions of `shards` and merges the answers (see the module
/// doc); returns once every expected gateway answered in full or [`SNAPSHOT_WAIT`] passed,
/// with the gateways that did not finish answering.
pub(crate) async fn snapshot(shared: &Shared, shards: ShardSet, target: Target) -> Vec<Arc<str>> {
    if shards.is_empty() {
        return Vec::new();
    }
    let (address, mut expected): (Address, HashSet<Arc<str>>) = match target {
        Target::All => (Address::Gateways, shared.membership().live_gateways().into_iter().collect()),
        Target::Gateway(g) => (Address::Node(g.clone()), [g].into()),
    };
    let request = pb::SnapshotRequest { shards: shards.iter().map(u32::from).collect() };
    metrics::snapshot_sent();
    let mut inbox = match shared.bus.request_many(&address, Message::proto(&request)).await {
        Ok(inbox) => inbox,
        Err(BusError::NoResponders) => return Vec::new(),
        Err(e) => {
            tracing::warn!(error = %e, "snapshot request not sent");
            return expected.into_iter().collect();
        }
    };
    let deadline = Instant::now() + SNAPSHOT_WAIT;
    // Per gateway that answered but has not sent its last chunk: sessions listed so far,
    // and the (lowest) sequence number its chunks carried.
    let mut partial: HashMap<String, (HashSet<String>, u64)> = HashMap::new();
    let (mut merged, mut removed) = (0, 0);
    while !expected.is_empty() || !partial.is_empty() {
        let Ok(Some(incoming)) = tokio::time::timeout_at(deadline, inbox.next()).await else { break };
        let Ok(chunk) = incoming.message.decode::<pb::SnapshotChunk>() else { continue };
        if chunk.gateway.is_empty() {
            continue;
        }
        let (seen, seq) = partial.entry(chunk.gateway.clone()).or_insert_with(|| (HashSet::new(), chunk.seq));
        seen.extend(chunk.sessions.iter().map(|r| r.session.clone()));
        *seq = (*seq).min(chunk.seq);
        merged += shared.registry().merge_snapshot(&chunk.gateway, chunk.sessions, &shards);
        if chunk.last {
            let (seen, seq) = partial.remove(&chunk.gateway).expect("inserted above");
            removed += shared.registry().remove_absent(&chunk.gateway, &shards, &seen, seq, Instant::now());
            expected.remove(chunk.gateway.as_str());
            shared.snapshots_merged.fetch_add(1, Ordering::Relaxed);
        }
    }
    tracing::debug!(shards = shards.len(), merged, removed, "snapshot merged");
    let missing: Vec<Arc<str>> = expected.into_iter().chain(partial.into_keys().map(Arc::from)).collect();
    if !missing.is_empty() {
        tracing::warn!(?missing, "snapshot incomplete: gateways did not finish answering in time");
    }
    missing
}
