//! The gateway: the HTTP/WebSocket edge. It terminates client connections, speaks client
//! protocol v1, keeps each session's state in memory only, and subscribes to the bus on
//! behalf of its local sessions through the hub (one bus subscription per channel).
//!
//! Architecture invariant: the gateway never formats a bus subject or talks to NATS; it
//! holds a `dyn Bus`. Data flows bus → [`Deliver`] → hub → outboxes → session writers.

pub mod auth;
mod channels;
pub mod client_ip;
pub mod config;
mod deliver;
mod echo;
mod http;
mod limits;
pub mod metrics;
mod node;
pub mod origin;
pub mod permissions;
mod session;
mod socket;
mod tls;
pub mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_bus::{Bus, BusError, Deliver};
use switchboard_hub::Hub;
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
    verifier: auth::Verifier,
    interest: Arc<channels::Channels>,
    node: Arc<node::NodeAgent>,
    metrics: metrics::Metrics,
    limits: limits::Limits,
    prometheus: Option<PrometheusHandle>,
    /// The `wss` certificate (reloaded when its files change), when TLS is on.
    tls: Option<switchboard_tls::ServerTls>,
    next_session: AtomicU64,
    /// Four random characters that tag this process's session ids.
    boot: String,
    connections: AtomicUsize,
    /// HTTP connections not (or not yet) upgraded to WebSocket.
    http_connections: AtomicUsize,
    /// Flips to true when the node starts draining.
    draining: watch::Sender<bool>,
}

// === impl Gateway ===

impl Gateway {
    /// Builds a gateway whose bus node is made by `connect` from the gateway's deliverer;
    /// with `config.tls`, loads the certificate first (and keeps reloading it).
    pub async fn new<F, Fut, E>(
        config: GatewayConfig,
        prometheus: Option<PrometheusHandle>,
        connect: F,
    ) -> Result<Self, E>
    where
        F: FnOnce(Arc<dyn Deliver>) -> Fut,
        Fut: Future<Output = Result<Arc<dyn Bus>, E>>,
        E: From<BusError> + From<switchboard_tls::TlsError>,
    {
        // Before the bus: a certificate that cannot be read fails without a connection made.
        let tls = config.tls.as_ref().map(|files| switchboard_tls::ServerTls::load(files, tls::ALPN)).transpose()?;
        let metrics = metrics::Metrics::new();
        let verifier = auth::Verifier::new(config.auth.clone()).map_err(BusError::Invalid)?;
        let interest = Arc::new(channels::Channels::new());
        let hub = Arc::new(Hub::new(interest.clone()));
        let deliver = Arc::new(deliver::HubDeliver::new(hub.clone(), interest.clone(), metrics.clone()));
        let bus = connect(deliver.clone()).await?;
        interest.set_bus(bus.clone());
        let node = node::NodeAgent::start(&config.node_id, bus.clone(), hub.clone()).await?;
        let _ = deliver.node.set(Arc::downgrade(&node));
        let limits = limits::Limits::new(&config, &metrics);
        Ok(Gateway {
            shared: Arc::new(Shared {
                config,
                hub,
                bus,
                verifier,
                interest,
                node,
                metrics,
                limits,
                prometheus,
                tls,
                next_session: AtomicU64::new(1),
                boot: config::random_node_id()[1..5].to_owned(),
                connections: AtomicUsize::new(0),
                http_connections: AtomicUsize::new(0),
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
        if let Ok(addr) = listener.local_addr() {
            self.shared.node.set_http_addr(addr.to_string());
        }
        http::serve(self.shared.clone(), listener).await
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `listener` (the admin port) until the
    /// returned future is dropped; they also stay on the client port.
    pub async fn serve_admin(&self, listener: TcpListener) {
        http::serve_admin(self.shared.clone(), listener).await
    }

    /// Starts draining: `/readyz` fails, new connections are refused, and every session is
    /// asked to reconnect (close 4001) at a random moment within the drain window. Resolves
    /// once every session has ended.
    pub async fn drain(&self) {
        self.shared.draining.send_replace(true);
        self.shared.node.set_draining().await;
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

    /// Connections still speaking HTTP (not, or not yet, upgraded to WebSocket).
    pub fn http_connections(&self) -> usize {
        self.shared.http_connections.load(Ordering::Relaxed)
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
