//! Membership, the ring, and what happens when replicas and gateways come and go.

use std::collections::HashSet;

use switchboard_bus::MemoryBroker;
use switchboard_bus::shard::shard;
use switchboard_wire::pb::{self, switchboard_api_server::SwitchboardApi};
use tokio::time::Instant;
use tonic::Request;

use super::*;

#[tokio::test]
async fn replicas_split_the_256_shards_with_no_overlap_and_no_gap() {
    for ids in [&["c1"][..], &["c1", "c2"], &["c1", "c2", "c3"]] {
        let broker = MemoryBroker::new();
        let replicas = cluster(&broker, ids).await;
        let mut seen = HashSet::new();
        for r in &replicas {
            for s in r.owned_shards() {
                assert!(seen.insert(s), "{ids:?}: shard {s} owned twice");
            }
            assert!(!r.owned_shards().is_empty() || ids.len() > 3, "{ids:?}: {} owns nothing", r.id());
        }
        assert_eq!(seen.len(), 256, "{ids:?}: every shard has an owner");
    }
}

#[tokio::test]
async fn events_land_in_the_registry_of_their_shards_owner() {
    let broker = MemoryBroker::new();
    let replicas = cluster(&broker, &["c1", "c2"]).await;
    let g = gateway(&broker, "g1").await;
    let mut sessions = Vec::new();
    for i in 0..20 {
        sessions.push(g.connect(&format!("user{i}"), &["news"]).await);
    }
    eventually("all 20 sessions registered", || total_sessions(&replicas) == 20).await;
    for s in &sessions {
        let holders: Vec<&str> =
            replicas.iter().filter(|r| r.shared().registry().get(s).is_some()).map(|r| r.id()).collect();
        let owner: Vec<&str> =
            replicas.iter().filter(|r| r.owned_shards().contains(&shard(s))).map(|r| r.id()).collect();
        assert_eq!(holders, owner, "{s}");
    }
}

#[tokio::test]
async fn stopping_a_replica_moves_its_shards_to_the_other_which_rebuilds_them_from_snapshots() {
    let broker = MemoryBroker::new();
    let replicas = cluster(&broker, &["c1", "c2"]).await;
    let gateways = [gateway(&broker, "g1").await, gateway(&broker, "g2").await];
    for g in &gateways {
        for i in 0..15 {
            g.connect(&format!("u{i}"), &["chat:lobby"]).await;
        }
    }
    eventually("30 sessions registered", || total_sessions(&replicas) == 30).await;
    let before = total_sessions(&replicas);
    let moved: Vec<String> =
        gateways[0].sessions().into_iter().filter(|s| replicas[1].owned_shards().contains(&shard(s))).collect();
    assert!(!moved.is_empty());

    let stopped_at = Instant::now();
    replicas[1].stop().await;
    let c1 = &replicas[0];
    eventually("c1 to own every shard", || c1.owned_shards().len() == 256 && c1.live_replicas() == ["c1"]).await;
    // The leave notice moves the shards at once, not after the replica lease.
    assert!(stopped_at.elapsed() < LEASE, "took {:?}", stopped_at.elapsed());
    eventually("c1 to rebuild the moved sessions", || c1.session_count() == before).await;
    for s in moved {
        let info = c1.api().get_session(Request::new(pb::GetSessionRequest { session: s.clone() })).await.unwrap();
        assert_eq!(info.into_inner().gateway, "g1");
    }
}

#[tokio::test]
async fn a_call_made_just_after_a_replica_crashed_still_answers() {
    let broker = MemoryBroker::new();
    // The crashed replica's inbox may outlive it for a moment: then the call times out.
    let configs = ["c1", "c2"].map(|id| ControlConfig { query_timeout: SHORT_LEASE, ..config(id) });
    let mut replicas = cluster_with(&broker, configs.to_vec()).await;
    let g = gateway(&broker, "g1").await;
    let mut sessions = Vec::new();
    for _ in 0..12 {
        sessions.push(g.connect("alice", &[]).await);
    }
    eventually("12 sessions registered", || total_sessions(&replicas) == 12).await;
    let on_c2 = sessions.iter().find(|s| replicas[1].owned_shards().contains(&shard(s))).unwrap().clone();

    // Dropping the last handle aborts its tasks: no leave notice, as in a crash.
    drop(replicas.pop());
    let api = replicas[0].api();
    let info = api.get_session(Request::new(pb::GetSessionRequest { session: on_c2.clone() })).await.unwrap();
    assert_eq!(info.into_inner().session, on_c2);
    let list = api
        .list_sessions(Request::new(pb::ListSessionsRequest {
            user: "alice".into(),
            page_size: 0,
            page_token: "".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.sessions.len(), 12);
    assert_eq!(replicas[0].live_replicas(), ["c1"]);
}

#[tokio::test]
async fn a_gateway_that_stops_heartbeating_has_its_sessions_dropped_within_the_lease() {
    let broker = MemoryBroker::new();
    let configs = ["c1", "c2"].map(|id| ControlConfig { gateway_lease: SHORT_LEASE, ..config(id) });
    let replicas = cluster_with(&broker, configs.to_vec()).await;
    let (g1, g2) = (gateway(&broker, "g1").await, gateway(&broker, "g2").await);
    for _ in 0..6 {
        g1.connect("u", &["x"]).await;
    }
    for _ in 0..4 {
        g2.connect("u", &["x"]).await;
    }
    eventually("10 sessions registered", || total_sessions(&replicas) == 10).await;

    g1.set_heartbeating(false);
    let silent_since = Instant::now();
    eventually("g1's sessions dropped", || total_sessions(&replicas) == 4).await;
    // Lease, plus up to one heartbeat already on its way, plus one sweep (a quarter lease).
    let bound = SHORT_LEASE + GATEWAY_HEARTBEAT + SHORT_LEASE / 4 + Duration::from_millis(100);
    assert!(silent_since.elapsed() <= bound, "took {:?}", silent_since.elapsed());
    let info = replicas[0].api().info(Request::new(pb::InfoRequest {})).await.unwrap().into_inner();
    assert_eq!(info.gateways.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(), ["g2"]);

    // Seen again, it is asked for its sessions.
    g1.set_heartbeating(true);
    eventually("g1's sessions back from its snapshot", || total_sessions(&replicas) == 10).await;
}

#[tokio::test]
async fn a_restarted_gateway_loses_the_sessions_of_its_previous_life() {
    let broker = MemoryBroker::new();
    let replicas = cluster(&broker, &["c1", "c2"]).await;
    let g = gateway(&broker, "g1").await;
    for _ in 0..5 {
        g.connect("u", &[]).await;
    }
    eventually("5 sessions registered", || total_sessions(&replicas) == 5).await;
    // Both replicas knew the old life (and asked it for a snapshot once, on its first
    // heartbeat); a real restart outlives every answer of the old process.
    eventually("the old life known", || g.snapshot_requests() == 2 && g.snapshots_answered() == 2).await;
    // A new start time, seq from 0 again, and no disconnect events for the old sessions.
    g.restart();
    let fresh = g.connect("u", &[]).await;
    eventually("only the new session left", || {
        total_sessions(&replicas) == 1 && replicas.iter().any(|r| r.shared().registry().get(&fresh).is_some())
    })
    .await;
}

#[tokio::test]
async fn a_replica_that_joins_takes_its_share_and_calls_meanwhile_see_every_session() {
    let broker = MemoryBroker::new();
    let mut replicas = cluster(&broker, &["c1"]).await;
    let g = gateway(&broker, "g1").await;
    for _ in 0..30 {
        g.connect("alice", &[]).await;
    }
    eventually("30 sessions on c1", || replicas[0].session_count() == 30).await;

    // c2 claims its shards, then waits this long for their sessions.
    g.set_snapshot_delay(Duration::from_millis(100));
    replicas.push(replica(&broker, "c2").await);
    let api = replicas[0].api();
    let list = pb::ListSessionsRequest { user: "alice".into(), page_size: 0, page_token: String::new() };
    // Throughout the join: before c2 claims its shards, while it takes their snapshots, after.
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        let page = api.list_sessions(Request::new(list.clone())).await.unwrap().into_inner();
        assert_eq!(page.sessions.len(), 30);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eventually("c2 to take its share", || replicas[1].session_count() > 0 && replicas[0].live_replicas().len() == 2)
        .await;
    assert_eq!(total_sessions(&replicas), 30);
    assert_eq!(replicas[0].owned_shards().len() + replicas[1].owned_shards().len(), 256);
}
