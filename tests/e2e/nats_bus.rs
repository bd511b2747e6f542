//! The NATS bus passes the same conformance suite as the in-process bus, against a real
//! `nats-server`.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use switchboard_bus::conformance::{Cluster, Recorder, bus_conformance};
use switchboard_bus::shard::SHARDS;
use switchboard_bus::{Bus, Deliver, NatsBus, NatsConfig};
use switchboard_tests::nats::NatsServer;

struct NatsCluster {
    url: String,
    /// Serves every sequencer shard, as a lone control replica would.
    _sequencer: NatsBus,
}

impl Cluster for NatsCluster {
    fn node(&self, deliver: Arc<dyn Deliver>) -> BoxFuture<'_, Arc<dyn Bus>> {
        async move {
            let bus = NatsBus::connect(NatsConfig::new(vec![self.url.clone()], "conformance"), deliver).await.unwrap();
            Arc::new(bus) as Arc<dyn Bus>
        }
        .boxed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_bus_passes_the_conformance_suite() {
    let server = NatsServer::start();
    let sequencer = NatsBus::connect(NatsConfig::new(vec![server.url()], "sequencer"), Recorder::new()).await.unwrap();
    sequencer.set_sequencer_shards(&(0..SHARDS).collect::<Vec<_>>());
    // The sequencer's subscriptions are live once a position request is answered.
    let probe = NatsBus::connect(NatsConfig::new(vec![server.url()], "probe"), Recorder::new()).await.unwrap();
    switchboard_tests::eventually("the sequencer answers", || {
        let p = probe.position(&"conf:probe".parse().unwrap());
        async move { p.await.is_ok() }
    })
    .await;
    bus_conformance(&NatsCluster { url: server.url(), _sequencer: sequencer }).await;
}
