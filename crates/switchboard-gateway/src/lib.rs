//! The gateway: the HTTP/WebSocket edge. It terminates client connections, speaks client
//! protocol v1, keeps each session's state in memory only, and subscribes to the bus on
//! behalf of its local sessions through the hub (one bus subscription per channel).
//!
//! Architecture invariant: the gateway never formats a bus subject or talks to NATS; it
//! holds a `dyn Bus`. Data flows bus → [`Deliver`] → hub → outboxes → session writers.

pub mod config;
mod http;
pub mod metrics;
mod session;
pub mod ws;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_bus::{Bus, Deliver, Publication};
use switchboard_hub::{Hub, Interest};
use switchboard_wire::Channel;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::GatewayConfig;

/// A running gateway's handle. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

/// What every session and the HTTP layer share.
pub(crate) struct Shared {
    config: GatewayConfig,
    hub: Arc<Hub>,
    bus: Arc<dyn Bus>,
    metrics: metrics::Metrics,
    prometheus: Option<PrometheusHandle>,
    next_session: AtomicU64,
    connections: AtomicUsize,
    /// Flips to true when the node starts draining.
    draining: watch::Sender<bool>,
}

/// Forwards the hub's interest changes to the bus (set once the bus exists).
struct BusInterest(OnceLock<Arc<dyn Bus>>);

impl Interest for BusInterest {
    fn first_subscriber(&self, channel: &Channel) {
        if let Some(bus) = self.0.get() {
            let confirm = bus.subscribe(channel);
            let channel = channel.clone();
            tokio::spawn(async move {
                if let Err(e) = confirm.await {
                    tracing::warn!(%channel, error = %e, "bus subscription failed");
                }
            });
        }
    }

    fn last_unsubscribed(&self, channel: &Channel) {
        if let Some(bus) = self.0.get() {
            bus.unsubscribe(channel);
        }
    }
}

/// Hands bus deliveries to the hub.
struct HubDeliver {
    hub: Arc<Hub>,
    metrics: metrics::Metrics,
}

impl Deliver for HubDeliver {
    fn deliver(&self, p: Publication) {
        let d = self.hub.deliver(&p.channel, p.offset, &p.epoch, &p.data);
        self.metrics.publications.increment(1);
        self.metrics.deliveries.increment(d.queued as u64);
    }
}

// === impl Gateway ===

impl Gateway {
    /// Builds a gateway whose bus node is made by `connect` from the gateway's deliverer.
    pub async fn new<F, Fut, E>(
        config: GatewayConfig,
        prometheus: Option<PrometheusHandle>,
        connect: F,
    ) -> Result<Self, E>
    where
        F: FnOnce(Arc<dyn Deliver>) -> Fut,
        Fut: Future<Output = Result<Arc<dyn Bus>, E>>,
    {
        let metrics = metrics::Metrics::new();
        let interest = Arc::new(BusInterest(OnceLock::new()));
        let hub = Arc::new(Hub::new(interest.clone()));
        let bus = connect(Arc::new(HubDeliver { hub: hub.clone(), metrics: metrics.clone() })).await?;
        let _ = interest.0.set(bus.clone());
        Ok(Gateway {
            shared: Arc::new(Shared {
                config,
                hub,
                bus,
                metrics,
                prometheus,
                next_session: AtomicU64::new(1),
                connections: AtomicUsize::new(0),
                draining: watch::channel(false).0,
            }),
        })
    }

    /// Binds the configured listen address.
    pub async fn bind(&self) -> std::io::Result<TcpListener> {
        TcpListener::bind(self.shared.config.listen).await
    }

    /// Serves HTTP and WebSocket on `listener` until [`Gateway::drain`] has finished.
    pub async fn serve(&self, listener: TcpListener) {
        http::serve(self.shared.clone(), listener).await
    }

    /// Starts draining: `/readyz` fails, new connections are refused, and every session is
    /// asked to reconnect (close 4001) at a random moment within the drain window. Resolves
    /// once every session has ended.
    pub async fn drain(&self) {
        self.shared.draining.send_replace(true);
        let window = self.shared.config.drain_window + self.shared.config.pong_timeout;
        let deadline = tokio::time::Instant::now() + window;
        while self.connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Open sessions on this node.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// The hub (for introspection: channels and local subscriber counts).
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// This node's bus handle.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.shared.bus
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.shared.config
    }
}
