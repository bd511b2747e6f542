//! Snapshots racing live events: a snapshot is taken when requested but may arrive after
//! events numbered later; the registry must end up as the gateway is.

use std::time::Duration;

use switchboard_bus::MemoryBroker;

use super::*;

/// How late the fake gateways answer snapshots in these tests.
const DELAY: Duration = Duration::from_millis(200);

/// The channels `control` holds for `session` (`None`: not held).
fn channels(control: &Control, session: &str) -> Option<Vec<String>> {
    control.shared().registry().get(session).map(|r| sorted(r.channels))
}

#[tokio::test]
async fn events_numbered_after_a_snapshot_in_flight_win_over_it() {
    type Case = (&'static str, &'static [&'static str], Step, Option<&'static [&'static str]>);
    #[derive(Clone, Copy)]
    enum Step {
        Disconnect,
        Subscribe(&'static str),
        Unsubscribe(&'static str),
    }
    let cases: [Case; 3] = [
        ("a stale snapshot does not resurrect a disconnected session", &[], Step::Disconnect, None),
        ("a subscribe during the snapshot is kept", &[], Step::Subscribe("news"), Some(&["news"])),
        ("an unsubscribe during the snapshot is kept", &["news"], Step::Unsubscribe("news"), Some(&[])),
    ];
    for (name, initial, step, want) in cases {
        let broker = MemoryBroker::new();
        let g = gateway(&broker, "g1").await;
        // Connected before any replica listened: only the snapshot can tell about it.
        let s = g.connect_quietly("alice", initial);
        let other = g.connect_quietly("bob", &[]);
        g.set_snapshot_delay(DELAY);
        let c1 = replica(&broker, "c1").await;
        eventually("the snapshot request", || g.snapshot_requests() >= 1).await;
        match step {
            Step::Disconnect => g.disconnect(&s).await,
            Step::Subscribe(ch) => g.subscribe(&s, ch).await,
            Step::Unsubscribe(ch) => g.unsubscribe(&s, ch).await,
        }
        eventually("the snapshot answered and merged", || c1.is_ready() && g.snapshots_answered() >= 1).await;
        let want = want.map(|w| w.iter().map(|c| c.to_string()).collect::<Vec<_>>());
        assert_eq!(channels(&c1, &s), want, "{name}");
        assert_eq!(channels(&c1, &other), Some(vec![]), "{name}: the other session");
    }
}

#[tokio::test]
async fn a_newer_event_is_not_overwritten_by_an_older_snapshot_record() {
    let broker = MemoryBroker::new();
    let c1 = replica(&broker, "c1").await;
    eventually("c1 ready", || c1.is_ready()).await;
    // Not heartbeating yet: its first heartbeat will make c1 ask it for a snapshot.
    let g = FakeGateway::start(&broker, "g1", GATEWAY_HEARTBEAT, true).await;
    let s = g.connect("alice", &[]).await;
    eventually("the session registered", || channels(&c1, &s).is_some()).await;
    g.set_snapshot_delay(DELAY);
    g.set_heartbeating(true);
    eventually("the snapshot request", || g.snapshot_requests() >= 1).await;
    g.subscribe(&s, "news").await;
    eventually("the subscribe applied", || channels(&c1, &s) == Some(vec!["news".to_string()])).await;
    eventually("the (older) snapshot answer merged", || c1.snapshots_merged() >= 1).await;
    assert_eq!(channels(&c1, &s), Some(vec!["news".to_string()]));
}

#[tokio::test]
async fn sessions_that_ended_unannounced_are_removed_by_the_next_snapshot() {
    let broker = MemoryBroker::new();
    let c1 = replica(&broker, "c1").await;
    eventually("c1 ready", || c1.is_ready()).await;
    let g = FakeGateway::start(&broker, "g1", GATEWAY_HEARTBEAT, true).await;
    let kept = g.connect("alice", &[]).await;
    let lost = g.connect("bob", &[]).await;
    eventually("both registered", || c1.session_count() == 2).await;
    // The gateway forgets `lost` without an event reaching the registry.
    g.forget_quietly(&lost);
    g.set_heartbeating(true);
    eventually("the unannounced end applied", || c1.session_count() == 1).await;
    assert!(channels(&c1, &kept).is_some());
}
