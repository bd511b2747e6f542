//! The control service: the backend gRPC API (`switchboard.v1.SwitchboardApi`, with the
//! standard gRPC health service and server reflection beside it) and the session registry.
//!
//! A [`Control`] replica, from [`Control::start`]:
//! - heartbeats, tracks its peers and computes the consistent-hash ring over them
//!   (`membership`, `ring`); it owns the registry shards the ring gives it;
//! - keeps the sessions of its shards from the gateways' registry events and snapshots
//!   (`sync`, `registry`), and drops a gateway's sessions when its lease runs out;
//! - answers its peers' queries about those shards, and asks theirs (`queries`);
//! - when it owns shard 0, asks loaded gateways to move some sessions to the others
//!   (`balance`);
//! - serves the API ([`Control::serve`], `api`), from any replica.
//!
//! Architecture invariant: control reaches gateways and its peers only through the bus; it
//! never opens a connection to a gateway, and it stores nothing: the registry is soft state
//! the gateways can always rebuild.

mod api;
mod auth;
pub mod balance;
mod config;
mod membership;
pub mod metrics;
mod queries;
mod registry;
mod ring;
mod state;
mod sync;
mod tls;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use switchboard_bus::{Address, Bus};
use switchboard_wire::pb::switchboard_api_server::SwitchboardApiServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codegen::http::Response;

pub use api::{
    Api, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT, MAX_IDEMPOTENCY_KEY_BYTES, MAX_STREAM_IN_FLIGHT,
    MAX_STREAM_IN_FLIGHT_BYTES,
};
pub use auth::{ApiKeys, MIN_API_KEY_LEN, read_keys_file};
pub use balance::BalanceConfig;
pub use config::{ControlConfig, MAX_GATEWAY_LEASE, StartError, random_replica_id};
pub use membership::{JOIN_WINDOW_MAX, JOINING_HEADER, LEAVE_HEADER};
pub use registry::TOMBSTONE_TTL;
pub use ring::VNODES;
pub use sync::SNAPSHOT_WAIT;

use state::{Shared, Task};

/// How often the gRPC health status is brought in line with the bus's state.
const HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// One control replica: a cheap handle (clones share the replica). Its background tasks
/// run until [`Control::stop`], or until the last handle (and any [`Api`] being served) is
/// dropped, which aborts them without a leave notice, as a crash would.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<Task>>,
    /// The gRPC listener's TLS, when on (reloaded when its files change).
    tls: Option<switchboard_tls::ServerTls>,
    /// Who may call `SwitchboardApi`.
    auth: Arc<auth::ApiAuth>,
}

// === impl Control ===

impl Control {
    /// Validates `config`, starts listening on the bus (peer heartbeats, gateway
    /// heartbeats, queries for this replica) and spawns the background tasks. The replica
    /// claims its shards after a join window of `min(heartbeat_interval, 500 ms)`; calls
    /// that need the ring wait for it.
    pub async fn start(config: ControlConfig, bus: Arc<dyn Bus>) -> Result<Control, StartError> {
        config.validate()?;
        let tls = config.tls.as_ref().map(|files| switchboard_tls::ServerTls::load(files, tls::ALPN)).transpose();
        let tls = tls.map_err(|e| StartError::Config(format!("tls: {e}")))?;
        let keys = auth::KeyRing::load(&config.api_keys).map_err(StartError::Config)?;
        let client_certs = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        let auth = Arc::new(auth::ApiAuth::new(keys, client_certs));
        let shared = Arc::new(Shared::new(config, bus.clone()));
        let peers = bus.listen(&Address::ControlHeartbeat, None).await?;
        let gateways = bus.listen(&Address::GatewayHeartbeat, None).await?;
        let queries = bus.listen(&Address::Replica(shared.id.clone()), None).await?;
        let presence = bus.listen(&Address::Presence, Some("control")).await?;
        let tasks = vec![
            Task::spawn(membership::run_peer_listener(shared.clone(), peers)),
            Task::spawn(membership::run_gateway_listener(shared.clone(), gateways)),
            Task::spawn(queries::run_query_server(shared.clone(), queries)),
            Task::spawn(api::run_presence_server(shared.clone(), presence)),
            Task::spawn(sync::run_rebalancer(shared.clone())),
            Task::spawn(membership::run_heartbeats(shared.clone())),
            Task::spawn(membership::run_sweeper(shared.clone())),
            Task::spawn(balance::run_balance(shared.clone())),
        ];
        tracing::info!(replica = %shared.id, "control replica started");
        Ok(Control { inner: Arc::new(Inner { shared, tasks: Mutex::new(tasks), tls, auth }) })
    }

    /// This replica's id.
    pub fn id(&self) -> &str {
        &self.inner.shared.id
    }

    /// The backend API of this replica, to serve or to call directly.
    pub fn api(&self) -> Api {
        Api::new(self.clone())
    }

    /// Serves the backend API, health and (unless turned off) reflection on `listener`
    /// until `shutdown` resolves; then open `WatchEvents` streams end with UNAVAILABLE so
    /// the server can finish. With `tls` configured, every connection is TLS; with API keys
    /// or a client CA, `SwitchboardApi` calls without a valid key or client certificate get
    /// UNAUTHENTICATED. Does not stop the replica: call [`Control::stop`] after.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let (health, health_service) = tonic_health::server::health_reporter();
        // The standard gRPC health check says what the API can do: NOT_SERVING (overall and
        // for `SwitchboardApi`) while every call but `Info` would answer UNAVAILABLE, that
        // is while the bus is down or the replica stopped; checked every HEALTH_INTERVAL.
        let serving = self.clone();
        let api_serves = move || serving.api_serves().is_ok();
        let report = async move |serves: bool| {
            use tonic_health::ServingStatus::{NotServing, Serving};
            let status = if serves { Serving } else { NotServing };
            health.set_service_status("", status).await;
            health.set_service_status(<SwitchboardApiServer<Api> as tonic::server::NamedService>::NAME, status).await;
        };
        let mut serves = api_serves();
        report(serves).await;
        // A task set aborts its tasks when dropped: the watch ends with `serve`.
        let mut health_watch = tokio::task::JoinSet::new();
        health_watch.spawn(async move {
            let mut tick = tokio::time::interval(HEALTH_INTERVAL);
            loop {
                tick.tick().await;
                if api_serves() != serves {
                    serves = !serves;
                    report(serves).await;
                }
            }
        });
        // Both reflection versions: grpcurl before 1.8.8 and Python's grpcio-reflection speak
        // only v1alpha. Each lists both, so either version shows the whole server.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(switchboard_wire::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection()
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("the embedded descriptor sets are valid");
        let reflection_v1alpha = reflection()
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .expect("the embedded descriptor sets are valid");
        let shared = self.inner.shared.clone();
        shared.streams_closed.send_replace(false);
        let shutdown = async move {
            shutdown.await;
            shared.streams_closed.send_replace(true);
        };
        let on = self.inner.shared.config.reflection;
        let api = auth::Authenticated::new(SwitchboardApiServer::new(self.api()), self.inner.auth.clone());
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .layer(tower::util::MapResponseLayer::new(too_large_is_resource_exhausted))
            .add_service(health_service)
            .add_optional_service(on.then_some(reflection_v1))
            .add_optional_service(on.then_some(reflection_v1alpha))
            .add_service(api);
        match &self.inner.tls {
            None => router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown).await,
            Some(tls) => router.serve_with_incoming_shutdown(tls::incoming(listener, tls.clone()), shutdown).await,
        }
    }

    /// The registry shards this replica holds, ascending.
    pub fn owned_shards(&self) -> Vec<u16> {
        self.inner.shared.registry().owned().iter().collect()
    }

    /// The replicas in this replica's ring, itself included, sorted.
    pub fn live_replicas(&self) -> Vec<String> {
        self.inner.shared.membership().live_replicas().iter().map(|id| id.to_string()).collect()
    }

    /// Gateway snapshot answers merged in full since start.
    pub fn snapshots_merged(&self) -> u64 {
        self.inner.shared.snapshots_merged.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sessions held in the owned shards.
    pub fn session_count(&self) -> usize {
        self.inner.shared.registry().len()
    }

    /// Whether the replica serves: it was not stopped, its bus is connected (NATS answers
    /// its liveness round trips), and it joined the ring and settled its first shards.
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// [`Control::is_ready`], with what the replica waits for when it is not: the text its
    /// `/readyz` answers.
    pub fn readiness(&self) -> Result<(), &'static str> {
        self.api_serves()?;
        if *self.inner.shared.settled.borrow() == 0 {
            return Err("joining the ring (no shards settled yet)");
        }
        Ok(())
    }

    /// Whether the API can do its work: not while the replica is stopped, nor while its bus
    /// is down, when every call but `Info` answers UNAVAILABLE (`Api::gated`). The gRPC
    /// health check says this; `/readyz` says it and whether the replica joined the ring.
    fn api_serves(&self) -> Result<(), &'static str> {
        let shared = &self.inner.shared;
        if shared.stopped.load(Ordering::Relaxed) {
            Err("stopped")
        } else if !shared.bus.is_ready() {
            Err("bus unavailable")
        } else {
            Ok(())
        }
    }

    /// Stops the replica: its tasks end (heartbeats, listeners, queries),
    /// its peers get a leave notice and take its shards over at once, and it drops its
    /// registry. Calls on its [`Api`] that need the ring fail afterwards.
    pub async fn stop(&self) {
        let shared = &self.inner.shared;
        {
            // Under the registry lock, so a rebalance running right now cannot undo this.
            let mut registry = shared.registry();
            shared.stopped.store(true, Ordering::Relaxed);
            registry.set_owned(Default::default());
        }
        drop(std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())));
        shared.streams_closed.send_replace(true);
        shared.send_leave(&shared.id).await;
        tracing::info!(replica = %shared.id, "control replica stopped");
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }
}

/// tonic answers a request over its size limit with `OUT_OF_RANGE`, in the headers or (for a
/// unary call) in the trailers; gRPC's convention, and what clients act on, is
/// `RESOURCE_EXHAUSTED`.
fn too_large_is_resource_exhausted<B>(response: Response<B>) -> Response<TooLarge<B>> {
    let (mut parts, body) = response.into_parts();
    TooLarge::<B>::fix(&mut parts.headers);
    Response::from_parts(parts, TooLarge(body))
}

/// A response body whose trailers get [`too_large_is_resource_exhausted`]'s rewrite.
struct TooLarge<B>(B);

impl<B> TooLarge<B> {
    fn fix(headers: &mut tonic::codegen::http::HeaderMap) {
        let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
            && headers.get("grpc-message").is_some_and(|m| m.as_bytes().windows(11).any(|w| w == b"too%20large"));
        if too_large {
            headers.insert("grpc-status", tonic::codegen::http::HeaderValue::from_static("8"));
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for TooLarge<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.0).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(mut frame))) = polled {
            if let Some(trailers) = frame.trailers_mut() {
                Self::fix(trailers);
            }
            return std::task::Poll::Ready(Some(Ok(frame)));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

#[cfg(test)]
mod tests;
