//! Control replicas and fake gateways on the in-process bus: membership and the ring
//! ([`cluster`]), snapshots ([`snapshots`]), and the API's answers and status codes
//! ([`api`]), history, idempotency keys and ordered publishing ([`history`]), and who may call it, with keys and over TLS ([`secure`]). Short heartbeats
//! and leases keep every test well under two seconds.

mod api;
mod balance;
mod cluster;
mod fake_gateway;
mod history;
mod secure;
mod snapshots;

use std::sync::Arc;
use std::time::Duration;

use switchboard_bus::{Bus, MemoryBroker, NoDelivery};
use tokio::time::Instant;

use crate::{Control, ControlConfig};

pub(crate) use fake_gateway::FakeGateway;

/// Gateway heartbeat interval in the tests.
pub(crate) const GATEWAY_HEARTBEAT: Duration = Duration::from_millis(50);
/// Replica and gateway leases, and the query timeout, in most tests: twenty heartbeats,
/// so a loaded machine does not expire anyone by mistake.
pub(crate) const LEASE: Duration = Duration::from_secs(1);
/// The lease in the tests that watch one run out.
pub(crate) const SHORT_LEASE: Duration = Duration::from_millis(300);
/// The longest any condition is waited for.
const DEADLINE: Duration = Duration::from_secs(2);

pub(crate) fn config(id: &str) -> ControlConfig {
    ControlConfig {
        replica_id: id.into(),
        grpc_addr: format!("{id}.control:9090"),
        heartbeat_interval: Duration::from_millis(50),
        replica_lease: LEASE,
        gateway_lease: LEASE,
        query_timeout: LEASE,
        ..ControlConfig::default()
    }
}

/// Starts a replica on its own bus node.
pub(crate) async fn replica(broker: &MemoryBroker, id: &str) -> Control {
    replica_with(broker, config(id)).await
}

pub(crate) async fn replica_with(broker: &MemoryBroker, config: ControlConfig) -> Control {
    let bus: Arc<dyn Bus> = Arc::new(broker.connect(Arc::new(NoDelivery)));
    Control::start(config, bus).await.unwrap()
}

/// Starts replicas and waits until each sees all of them and settled its shards.
pub(crate) async fn cluster(broker: &MemoryBroker, ids: &[&str]) -> Vec<Control> {
    cluster_with(broker, ids.iter().map(|id| config(id)).collect()).await
}

pub(crate) async fn cluster_with(broker: &MemoryBroker, configs: Vec<ControlConfig>) -> Vec<Control> {
    let want: Vec<String> = sorted(configs.iter().map(|c| c.replica_id.clone()).collect());
    let mut replicas = Vec::new();
    for config in configs {
        replicas.push(replica_with(broker, config).await);
    }
    eventually("every replica to see the whole cluster and settle", || {
        replicas.iter().all(|r| r.is_ready() && sorted(r.live_replicas()) == want)
            && replicas.iter().map(|r| r.owned_shards().len()).sum::<usize>() == 256
    })
    .await;
    replicas
}

/// Starts a heartbeating fake gateway.
pub(crate) async fn gateway(broker: &MemoryBroker, id: &str) -> FakeGateway {
    FakeGateway::start(broker, id, GATEWAY_HEARTBEAT, false).await
}

/// Waits until `cond` holds, polling; panics after [`DEADLINE`].
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sessions held by all `replicas` together.
pub(crate) fn total_sessions(replicas: &[Control]) -> usize {
    replicas.iter().map(Control::session_count).sum()
}

pub(crate) fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}
