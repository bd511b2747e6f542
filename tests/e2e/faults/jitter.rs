//! Jitter: every client's network drops every ~15 s for ~2 s, at its own phase, while
//! publications flow.

use std::time::Duration;

use super::{Cluster, finish};

/// Each client's lane is cut (its connection closed, reconnects refused for 2 s) every
/// 15 s from a random phase, while the publisher goes on: every client receives every
/// acknowledged publication, once, in order, recovering each gap from the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cut_off_every_15_s_for_2_s_receive_every_publication_in_order() {
    let c = Cluster::start(2).await;
    let (fleet, lanes) = c.fleet().await;
    let mut publisher = c.publisher().await;
    let (period, offline) = (Duration::from_secs(15), Duration::from_secs(2));
    // Long enough that every client is cut at least once.
    let run = if c.scale.long { Duration::from_secs(180) } else { period + offline * 2 };
    let lb = std::sync::Arc::new(c.lb);
    let cutting: Vec<_> = lanes
        .iter()
        .map(|lane| {
            let (lb, lane) = (lb.clone(), lane.index);
            let phase = period.mul_f64(fastrand::f64());
            tokio::spawn(async move {
                tokio::time::sleep(phase).await;
                loop {
                    lb.cut(lane, offline);
                    tokio::time::sleep(period).await;
                }
            })
        })
        .collect();
    publisher.wait_more(c.scale.count(run), run * 2).await.unwrap();
    for task in &cutting {
        task.abort();
    }
    fleet.wait_all_present(Duration::from_secs(30)).await.unwrap();
    publisher.wait_more(c.scale.count(Duration::from_secs(1)), Duration::from_secs(10)).await.unwrap();
    let s = finish("jitter", &fleet, &mut publisher).await;
    s.assert_lossless();
    let cut: std::collections::BTreeSet<usize> = fleet.reconnects().iter().map(|r| r.client).collect();
    assert_eq!(cut.len(), fleet.len(), "every client was cut off at least once");
}
