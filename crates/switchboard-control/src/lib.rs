//! The control service: the backend gRPC API (`switchboard.v1.SwitchboardApi`), with the
//! standard gRPC health service and server reflection beside it.
//!
//! Architecture invariant: control reaches gateways only through the bus; it never opens a
//! connection to a gateway.

mod api;

use std::future::Future;
use std::sync::Arc;

use switchboard_bus::Bus;
use switchboard_wire::pb::switchboard_api_server::SwitchboardApiServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub use api::Api;

/// Serves the backend API, health and reflection on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    bus: Arc<dyn Bus>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<SwitchboardApiServer<Api>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(switchboard_wire::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    let incoming = TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(SwitchboardApiServer::new(Api::new(bus)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
