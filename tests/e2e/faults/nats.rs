//! NATS faults: the node a gateway is connected to, and the node leading the history
//! stream, each lost for good (SIGKILL) and frozen (SIGSTOP: its sockets stay open and
//! answer nothing, which a kill on loopback would hide) then thawed.

use std::time::{Duration, Instant};

use super::{Cluster, blocking, finish};
use switchboard_tests::eventually_within;
use switchboard_tests::readyz;

/// The history stream of namespace `chat`.
const STREAM: &str = "sb~chat";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// The node gateway g0 is connected to.
    GatewaysNode,
    /// The node leading the stream's replicas.
    StreamLeader,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Kill,
    Freeze,
}

/// The name of the node leading `stream`, asked of the running nodes but `skip`.
fn stream_leader(c: &Cluster, skip: Option<usize>) -> Option<String> {
    (0..c.nats.len()).filter(|&i| Some(i) != skip && c.nats.node(i).is_running()).find_map(|i| {
        let jsz = c.nats.node(i).monitor("/jsz?accounts=true&streams=true").ok()?;
        jsz["account_details"].as_array()?.iter().find_map(|a| {
            let streams = a["stream_detail"].as_array()?;
            let s = streams.iter().find(|s| s["name"] == STREAM)?;
            s["cluster"]["leader"].as_str().filter(|l| !l.is_empty()).map(str::to_owned)
        })
    })
}

fn index_of(c: &Cluster, name: &str) -> usize {
    (0..c.nats.len()).find(|&i| c.nats.node(i).name() == name).unwrap_or_else(|| panic!("no node {name}"))
}

async fn nats_fault(target: Target, fault: Fault) {
    let mut c = Cluster::start(2).await;
    let (fleet, _lanes) = c.fleet().await;
    let mut publisher = c.publisher().await;
    publisher.wait_more(c.scale.count(c.scale.steady), c.scale.steady * 3).await.unwrap();

    let victim = match target {
        Target::GatewaysNode => {
            let mut on = None;
            eventually_within("g0 is on a NATS node", Duration::from_secs(10), async || {
                on = c.nats.node_of("g0");
                on.is_some()
            })
            .await;
            on.unwrap()
        }
        Target::StreamLeader => {
            let mut leader = None;
            eventually_within("the stream has a leader", Duration::from_secs(10), async || {
                leader = stream_leader(&c, None);
                leader.is_some()
            })
            .await;
            index_of(&c, &leader.unwrap())
        }
    };
    let name = c.nats.node(victim).name().to_owned();
    let leader_before = stream_leader(&c, None);
    let at = Instant::now();
    match fault {
        Fault::Kill => blocking(|| c.nats.kill(victim)),
        Fault::Freeze => c.nats.node(victim).freeze(),
    }
    // The cluster works around the node: a new stream leader is elected (when it led) and
    // every gateway is ready on a live node.
    let mut leader_after = None;
    eventually_within("the stream has a leader on a live node", Duration::from_secs(30), async || {
        leader_after = stream_leader(&c, Some(victim));
        leader_after.as_deref().is_some_and(|l| l != name)
    })
    .await;
    for g in &c.gateways {
        let addr = g.addr();
        eventually_within(&format!("{} is ready on a live node", g.name), Duration::from_secs(30), async || {
            readyz(addr).await
        })
        .await;
    }
    let healed = at.elapsed();
    publisher.wait_more(c.scale.count(c.scale.steady), c.scale.steady * 3 + Duration::from_secs(20)).await.unwrap();
    if fault == Fault::Freeze {
        c.nats.node(victim).thaw();
        // The thawed node rejoins; publishing goes on across its return.
        blocking(|| c.nats.wait_routes());
        publisher.wait_more(c.scale.count(c.scale.steady), c.scale.steady * 3 + Duration::from_secs(20)).await.unwrap();
    }
    let scenario = format!(
        "NATS {} of {}",
        if fault == Fault::Kill { "SIGKILL" } else { "freeze" },
        if target == Target::GatewaysNode { "g0's node" } else { "the stream leader" }
    );
    let s = finish(&scenario, &fleet, &mut publisher).await;
    println!(
        "faults: {scenario}: node {name}, stream leader {leader_before:?} then {leader_after:?}, \
         a live leader and every gateway ready after {healed:?}"
    );
    s.assert_lossless();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_nats_node_a_gateway_is_on_loses_nothing() {
    nats_fault(Target::GatewaysNode, Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_nats_node_a_gateway_is_on_loses_nothing() {
    nats_fault(Target::GatewaysNode, Fault::Freeze).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_stream_leader_loses_nothing() {
    nats_fault(Target::StreamLeader, Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_stream_leader_loses_nothing() {
    nats_fault(Target::StreamLeader, Fault::Freeze).await;
}
