//! The NATS bus passes the same conformance suite as the in-process bus, against a real
//! `nats-server` with JetStream.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use switchboard_bus::conformance::{Cluster, bus_conformance, namespaces};
use switchboard_bus::{Bus, Deliver, NatsBus, NatsConfig};
use switchboard_tests::nats::NatsServer;

struct NatsCluster {
    url: String,
}

impl NatsCluster {
    fn config(&self) -> NatsConfig {
        let mut config = NatsConfig::new(vec![self.url.clone()], "conformance");
        config.namespaces = namespaces();
        config
    }
}

impl Cluster for NatsCluster {
    fn node(&self, deliver: Arc<dyn Deliver>) -> BoxFuture<'_, Arc<dyn Bus>> {
        async move { Arc::new(NatsBus::connect(self.config(), deliver).await.unwrap()) as Arc<dyn Bus> }.boxed()
    }

    fn lose_history<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        async move {
            let client = async_nats::connect(&self.url).await.unwrap();
            let js = async_nats::jetstream::new(client);
            js.delete_stream(format!("sb~{key}")).await.unwrap();
        }
        .boxed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_bus_passes_the_conformance_suite() {
    let server = NatsServer::start();
    bus_conformance(&NatsCluster { url: server.url() }).await;
}
