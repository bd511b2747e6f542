//! Control faults: a replica SIGKILLed while publishing goes through both.

use std::time::Duration;

use super::{Cluster, blocking, finish};

/// SIGKILL of one of two control replicas while the publisher goes through both in turn: a
/// publish to the dead one fails or times out and is retried with the same idempotency
/// key on the other, so it is stored once; the registry's shards move to the survivor;
/// clients, which talk to gateways only, see nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_control_replica_while_publishing_through_both_loses_nothing() {
    let mut c = Cluster::start(2).await;
    let (fleet, _lanes) = c.fleet().await;
    let mut publisher = c.publisher().await;
    publisher.wait_more(c.scale.count(c.scale.steady), c.scale.steady * 3).await.unwrap();
    blocking(|| c.controls[0].kill());
    publisher.wait_more(c.scale.count(c.scale.steady), c.scale.steady * 3 + Duration::from_secs(30)).await.unwrap();
    let s = finish("control SIGKILL", &fleet, &mut publisher).await;
    s.assert_lossless();
    assert!(s.publish_retries > 0, "some publishes went to the killed replica and were retried");
    assert_eq!(s.reconnects, 0, "clients are not affected by a control replica");
}
