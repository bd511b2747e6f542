//! The state one control replica's tasks share: configuration, bus handle, membership,
//! registry, and the signals between them.
//!
//! Locks: `membership` and `registry` are plain mutexes held for short synchronous steps,
//! never across an await and never one inside the other.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchboard_bus::{Address, Bus, Message};
use switchboard_wire::pb;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Status;

use crate::config::ControlConfig;
use crate::membership::{JOINING_HEADER, LEAVE_HEADER, Membership};
use crate::registry::Registry;
use crate::sync::SNAPSHOT_WAIT;

/// Everything a replica's tasks share.
pub(crate) struct Shared {
    pub config: ControlConfig,
    pub id: Arc<str>,
    pub bus: Arc<dyn Bus>,
    pub started_at_ms: i64,
    membership: Mutex<Membership>,
    registry: Mutex<Registry>,
    /// Wakes the rebalancer after the ring changed.
    pub ring_changed: Notify,
    /// The membership version the registry last finished adjusting to (0: not yet joined).
    pub settled: watch::Sender<u64>,
    /// Set when serving stops: open `WatchEvents` streams end.
    pub streams_closed: watch::Sender<bool>,
    /// Set by `Control::stop`: calls that need the ring fail at once.
    pub stopped: AtomicBool,
    /// Gateway snapshot answers merged in full (the last chunk included).
    pub snapshots_merged: AtomicU64,
    /// Open `WatchEvents` streams (at most `api::watch::MAX_WATCHERS`).
    pub watchers: std::sync::atomic::AtomicUsize,
}

/// A spawned task that is aborted when this handle is dropped.
pub(crate) struct Task(JoinHandle<()>);

// === impl Shared ===

impl Shared {
    pub fn new(config: ControlConfig, bus: Arc<dyn Bus>) -> Shared {
        let id: Arc<str> = Arc::from(config.replica_id.as_str());
        Shared {
            membership: Mutex::new(Membership::new(id.clone())),
            registry: Mutex::new(Registry::default()),
            id,
            bus,
            config,
            started_at_ms: unix_ms(),
            ring_changed: Notify::new(),
            settled: watch::Sender::new(0),
            streams_closed: watch::Sender::new(false),
            watchers: std::sync::atomic::AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            snapshots_merged: AtomicU64::new(0),
        }
    }

    pub fn membership(&self) -> MutexGuard<'_, Membership> {
        // A poisoned lock only means a task panicked between two consistent states.
        self.membership.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This replica's heartbeat as of now.
    pub fn heartbeat(&self) -> pb::ControlHeartbeat {
        pb::ControlHeartbeat {
            replica: self.id.to_string(),
            grpc_addr: self.config.grpc_addr.clone(),
            started_at_ms: self.started_at_ms,
            sessions: self.registry().len() as u32,
        }
    }

    pub async fn send_heartbeat(&self) {
        let mut message = Message::proto(&self.heartbeat());
        if !self.membership().is_joined() {
            message = message.with_header(JOINING_HEADER, "1");
        }
        if let Err(e) = self.bus.send(&Address::ControlHeartbeat, message).await {
            tracing::warn!(error = %e, "control heartbeat not sent");
        }
    }

    /// Tells every replica that `replica` left (itself on a graceful stop, or a peer that
    /// stopped answering): a heartbeat of that replica with the leave header.
    pub async fn send_leave(&self, replica: &str) {
        let hb = pb::ControlHeartbeat { replica: replica.to_owned(), ..Default::default() };
        let message = Message::proto(&hb).with_header(LEAVE_HEADER, "1");
        if let Err(e) = self.bus.send(&Address::ControlHeartbeat, message).await {
            tracing::warn!(error = %e, %replica, "leave notice not sent");
        }
    }

    /// Wakes the rebalancer when membership produced a new ring version.
    pub fn ring_changed(&self, version: Option<u64>) {
        if version.is_some() {
            crate::metrics::ring_changed();
            self.ring_changed.notify_one();
        }
    }

    /// Drops `replica` from the ring at once (it did not answer), and tells the others
    /// when it is `certain` (nobody listens for it); returns the membership version to
    /// wait for. A replica dropped by mistake rejoins with its next heartbeat.
    pub async fn mark_dead(&self, replica: &str, certain: bool) -> u64 {
        let changed = self.membership().peer_left(replica);
        if changed.is_some() {
            tracing::warn!(%replica, certain, "replica did not answer: removed from the ring");
            self.ring_changed(changed);
            if certain {
                self.send_leave(replica).await;
            }
        }
        self.membership().version()
    }

    /// Waits until the registry has adjusted to membership `version` (its snapshots
    /// done), or until a query timeout and a snapshot wait passed. Returns whether it did.
    pub async fn wait_settled(&self, version: u64) -> bool {
        let mut settled = self.settled.subscribe();
        let wait = self.config.query_timeout + SNAPSHOT_WAIT;
        matches!(tokio::time::timeout(wait, settled.wait_for(|v| *v >= version)).await, Ok(Ok(_)))
    }

    /// Waits (at most a query timeout) for this replica's first ring, UNAVAILABLE if it is
    /// still joining; then, while a ring change is being applied (shards gained, their
    /// snapshots running), waits for it too, up to a query timeout, and goes on regardless.
    pub async fn ready(&self) -> Result<(), Status> {
        if self.stopped.load(Ordering::Relaxed) {
            return Err(Status::unavailable("control replica stopped"));
        }
        let mut settled = self.settled.subscribe();
        let timeout = self.config.query_timeout;
        if !matches!(tokio::time::timeout(timeout, settled.wait_for(|v| *v > 0)).await, Ok(Ok(_))) {
            return Err(Status::unavailable("control replica is still joining the ring"));
        }
        let version = self.membership().version();
        let _ = tokio::time::timeout(timeout, settled.wait_for(|v| *v >= version)).await;
        Ok(())
    }

    /// Applies one registry event from a shard listener.
    pub fn on_event(&self, ev: &pb::RegistryEvent) {
        let now = Instant::now();
        if !ev.gateway.is_empty() {
            self.membership().gateway_event(&ev.gateway, now);
        }
        self.registry().apply(ev, now);
    }
}

// === impl Task ===

impl Task {
    pub fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Task {
        Task(tokio::spawn(future))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as i64
}
