//! The admin HTTP endpoint of processes without one of their own (`switchboard control`):
//! `/metrics` (Prometheus text), `/healthz` (the process is up), `/readyz` (ready to serve:
//! `200 ready`, or `503` with what the process waits for, such as `bus unavailable`).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

/// Serves the admin routes on `listener` until the task is dropped; `ready` says whether
/// the process is ready, or what it waits for.
pub async fn serve(
    listener: TcpListener,
    prometheus: PrometheusHandle,
    ready: impl Fn() -> Result<(), &'static str> + Clone + Send + Sync + 'static,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (prometheus, ready) = (prometheus.clone(), ready.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (prometheus, ready) = (prometheus.clone(), ready.clone());
                async move {
                    let (status, body) = match req.uri().path() {
                        "/metrics" => (StatusCode::OK, prometheus.render()),
                        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
                        "/readyz" => match ready() {
                            Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                        },
                        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
                    };
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    *resp.status_mut() = status;
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
