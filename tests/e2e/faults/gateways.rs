//! Gateway faults: a SIGKILL, and a rolling restart with SIGTERM (drain).

use std::time::{Duration, Instant};

use super::{BALANCED_WITHIN, Cluster, blocking, drain_window, finish};
use switchboard_tests::eventually_within;
use switchboard_tests::readyz;

/// SIGKILL of the gateway a third of the clients are on: they see their connection break
/// (no close frame), the balancer sends their reconnects to the two others, and each
/// resumes from its last publication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_gateway_loses_no_publication() {
    let mut c = Cluster::start(2).await;
    let (fleet, _lanes) = c.fleet().await;
    let on = c.lb.per_backend();
    let victim = (0..on.len()).max_by_key(|&i| on[i]).unwrap();
    let share = on[victim] as f64 / fleet.len() as f64;
    assert!((0.25..=0.45).contains(&share), "the balancer spread the clients {on:?}");
    let mut publisher = c.publisher().await;
    publisher.wait_more(c.scale.count(c.scale.steady), c.scale.steady * 3).await.unwrap();

    let killed_at = Instant::now();
    blocking(|| c.gateways[victim].kill());
    c.lb.set_in_rotation(victim, false); // the Service drops the pod's endpoint
    let noticed =
        switchboard_tests::fleet::wait_for(Duration::from_secs(10), || fleet.reconnects().len() >= on[victim]);
    assert!(noticed.await.is_ok(), "{} of {} clients noticed the kill", fleet.reconnects().len(), on[victim]);
    fleet.wait_all_present(Duration::from_secs(30)).await.unwrap();
    let healed = killed_at.elapsed();
    publisher.wait_more(c.scale.count(c.scale.steady), c.scale.steady * 3).await.unwrap();

    let s = finish("gateway SIGKILL", &fleet, &mut publisher).await;
    println!("faults: gateway SIGKILL: {} clients were on the killed gateway; all back after {healed:?}", on[victim]);
    s.assert_lossless();
    assert!(s.reconnects >= on[victim] as u64, "{} reconnects for {} clients", s.reconnects, on[victim]);
    assert_eq!(c.lb.per_backend()[victim], 0);
}

/// A rolling restart: each gateway in turn leaves the rotation, is sent SIGTERM (it asks
/// its sessions to reconnect, close 4001, at random moments over the drain window) and
/// comes back on its port before the next one goes. Only one gateway's clients are away at
/// a time, their reconnects are spread over the window, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_with_drain_loses_no_publication_and_moves_one_gateway_at_a_time() {
    let mut c = Cluster::start(2).await;
    let (fleet, _lanes) = c.fleet().await;
    let mut publisher = c.publisher().await;
    publisher.wait_more(c.scale.count(c.scale.steady), c.scale.steady * 3).await.unwrap();
    let window = drain_window(&c.scale);

    // (gateway, clients on it, draining from, every client back at)
    let mut steps = Vec::new();
    for g in 0..c.gateways.len() {
        let had = c.lb.per_backend()[g];
        c.lb.set_in_rotation(g, false); // not ready: the Service stops sending it clients
        let from = Instant::now();
        blocking(|| c.gateways[g].terminate());
        blocking(|| c.gateways[g].restart());
        let addr = c.gateways[g].addr();
        eventually_within(&format!("g{g} is ready again"), Duration::from_secs(20), async || readyz(addr).await).await;
        c.lb.set_in_rotation(g, true);
        fleet.wait_all_present(Duration::from_secs(30)).await.unwrap();
        steps.push((g, had, from, Instant::now()));
    }
    // Control evens the sessions out once the last gateway is past its warm-up.
    let rolled = Instant::now();
    let after_rollout = c.lb.per_backend();
    let mean = fleet.len() as f64 / c.gateways.len() as f64;
    let even = |loads: &[usize]| loads.iter().all(|&n| (n as f64 - mean).abs() <= mean * 0.1);
    let balanced = switchboard_tests::fleet::wait_for(BALANCED_WITHIN, || even(&c.lb.per_backend())).await;
    let converged = rolled.elapsed();
    let balanced_loads = c.lb.per_backend();
    publisher.wait_more(c.scale.count(c.scale.steady), c.scale.steady * 3).await.unwrap();
    let s = finish("rolling restart", &fleet, &mut publisher).await;

    let events = c.lb.events();
    let mut figures = Vec::new();
    for &(g, had, from, back) in &steps {
        // Every connection that closed from g's drain until its clients were back was one of g's.
        let during = |e: &&switchboard_tests::balancer::ConnEvent| !e.opened && e.at >= from && e.at <= back;
        let closed: Vec<Instant> = events.iter().filter(during).map(|e| e.at).collect();
        let others: Vec<usize> = events.iter().filter(during).filter(|e| e.backend != g).map(|e| e.backend).collect();
        assert!(others.is_empty(), "while g{g} drained, connections to {others:?} closed too");
        assert_eq!(closed.len(), had, "g{g} had {had} clients, {} left it while it drained", closed.len());
        // Spread over the drain window, not in one burst.
        let first = *closed.iter().min().unwrap();
        let last = *closed.iter().max().unwrap();
        let spread = last - first;
        let tenth = window / 10;
        let burst = closed.iter().map(|t| closed.iter().filter(|u| **u >= *t && **u - *t < tenth).count()).max();
        figures.push(format!("g{g}: {had} clients left over {spread:?}, at most {} in {tenth:?}", burst.unwrap()));
        assert!(spread >= window / 2, "g{g}'s {had} clients left within {spread:?} of a {window:?} window");
        assert!(burst.unwrap() * 100 <= had * 35, "g{g}: {} of {had} clients left within {tenth:?}", burst.unwrap());
    }
    // The clients of a draining gateway were back before the next one drained: at no time
    // were two gateways' clients away.
    for r in fleet.reconnects().into_iter().filter(|r| r.code == Some(4001)) {
        let step = steps.iter().position(|&(_, _, from, back)| r.down_at >= from && r.down_at <= back);
        let step = step.unwrap_or_else(|| panic!("client {} was disconnected outside any drain: {r:?}", r.client));
        if let Some(&(_, _, next, _)) = steps.get(step + 1) {
            assert!(r.up_at.unwrap() < next, "client {} was still away when the next gateway drained", r.client);
        }
    }
    let moved = s.close_codes.get(&Some(4009)).copied().unwrap_or(0);
    println!(
        "faults: rolling restart: {}; sessions per gateway after the rollout {after_rollout:?}, \
         {balanced_loads:?} after {converged:?} ({moved} clients moved by control)",
        figures.join("; ")
    );
    s.assert_lossless();
    assert!(
        balanced.is_ok(),
        "not within 10% of the mean {mean:.0} after {BALANCED_WITHIN:?}: {:?}",
        c.lb.per_backend()
    );
    // A drain closes with 4001, a balance round with 4009 (after the rollout only).
    let codes: Vec<Option<u16>> = s.close_codes.keys().copied().collect();
    assert!(codes.iter().all(|c| [Some(4001), Some(4009)].contains(c)), "close codes {codes:?}");
    let last_step_back = steps.last().unwrap().3;
    assert!(
        fleet.reconnects().iter().filter(|r| r.code == Some(4009)).all(|r| r.down_at > last_step_back),
        "no balance round ran during the rollout"
    );
}
