//! The HTTP side of the gateway: the accept loop, the routes, and the WebSocket upgrade.
//!
//! Routes: `GET /ws` (WebSocket, client protocol v1), `GET /healthz` (the process is up),
//! `GET /readyz` (the node is not draining, the bus is reachable, and a control replica was
//! heard within 3 s; otherwise `503` saying which), `GET /metrics` (Prometheus text format),
//! `GET /` (the demo page, when enabled), `GET /chat/` (the chat example and the JS SDK,
//! with the page; see `demo`), `GET /demo/token` (dev only, see `demo`), and `GET /echo` (the RFC 6455 echo endpoint for
//! the Autobahn TestSuite, only when `GatewayConfig::echo` is on).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use switchboard_wire::Encoding;
use tokio::net::{TcpListener, TcpStream};

use crate::Shared;
use crate::limits::Refusal;
use crate::session;
use crate::socket::Socket;

type Body = Full<Bytes>;

const PAGE: &str = include_str!("page.html");

/// HTTP connections a node holding `max_connections` still accepts, to answer them `503`;
/// past that a new connection is closed at once.
pub(crate) const FULL_NODE_SLACK: usize = 64;

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut draining = shared.draining.subscribe();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = async { draining.wait_for(|d| *d).await.map(|_| ()) } => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Connections still in HTTP (before or without an upgrade) count against the limit
        // too: each may hold a request head of up to `max_header_bytes` meanwhile. A full
        // node still takes a few more, to answer their upgrades `503`.
        let open = shared.connections.load(Ordering::Acquire) + shared.http_connections.load(Ordering::Acquire);
        if open >= shared.config.max_connections + FULL_NODE_SLACK {
            shared.metrics.limit_connections.increment(1);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        shared.http_connections.fetch_add(1, Ordering::AcqRel);
        let accepted = Instant::now();
        tokio::spawn(async move {
            match &shared.tls {
                None => serve_http(&shared, stream, peer, accepted).await,
                Some(tls) => {
                    if let Some(stream) = crate::tls::accept(&shared, tls, stream, peer).await {
                        serve_http(&shared, stream, peer, accepted).await;
                    }
                }
            }
            shared.http_connections.fetch_sub(1, Ordering::AcqRel);
        });
    }
    // Keep the drain going until the sessions have left.
    drop(listener);
}

/// Serves HTTP/1.1 on one connection (plain TCP, or TLS after its handshake).
async fn serve_http<IO>(shared: &Arc<Shared>, io: IO, peer: SocketAddr, accepted: Instant)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(|req| route(shared.clone(), peer, req, accepted));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.handshake_timeout)
        .max_header_size(shared.config.max_header_bytes)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        if e.is_parse_too_large() {
            shared.metrics.limit_header_bytes.increment(1);
        } else if e.is_timeout() {
            shared.metrics.limit_header_timeout.increment(1);
        }
        tracing::debug!(%peer, error = %e, "http connection ended with an error");
    }
}

/// `accepted`: when the connection's TCP accept returned (for the handshake histogram).
async fn route(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
    accepted: Instant,
) -> Result<Response<Body>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/ws") => upgrade(shared, peer, req, accepted),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => readyz(&shared),
        (&Method::GET, "/metrics") if shared.config.metrics_on_listen => metrics(&shared),
        (&Method::GET, "/metrics") => text(StatusCode::NOT_FOUND, "metrics are served on the admin port\n"),
        (&Method::GET, "/echo") if shared.config.echo => crate::echo::upgrade(req),
        (&Method::GET, "/") if shared.config.serve_page => {
            let mut r = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            r
        }
        (&Method::GET, p) if shared.config.serve_page && (p == "/chat" || p.starts_with("/chat/")) => {
            crate::demo::chat_file(p).unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n"))
        }
        (&Method::GET, "/demo/token") => match &shared.config.demo_tokens {
            Some(demo) => crate::demo::token(demo, req.uri().query()),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
        (_, "/ws" | "/healthz" | "/readyz" | "/metrics") => text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
}

/// Serves only `/metrics`, `/healthz` and `/readyz` (the admin port, `--admin-listen`),
/// with the same answers as the client port, until the task is dropped. Unlike the client
/// port it keeps serving while the node drains, so the drain can be watched.
pub(crate) async fn serve_admin(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req: Request<Incoming>| {
                let shared = shared.clone();
                async move {
                    let resp = match (req.method(), req.uri().path()) {
                        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
                        (&Method::GET, "/readyz") => readyz(&shared),
                        (&Method::GET, "/metrics") => metrics(&shared),
                        (_, "/healthz" | "/readyz" | "/metrics") => text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
                        _ => text(StatusCode::NOT_FOUND, "not found\n"),
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(shared.config.handshake_timeout)
                .max_header_size(shared.config.max_header_bytes)
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
        });
    }
}

/// `200 ready`, or `503` saying what the node waits for.
fn readyz(shared: &Shared) -> Response<Body> {
    if *shared.draining.borrow() {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if !shared.bus.is_ready() {
        text(StatusCode::SERVICE_UNAVAILABLE, "bus unavailable\n")
    } else if !shared.node.control_reachable() {
        text(StatusCode::SERVICE_UNAVAILABLE, "waiting for a control replica (none heard on the bus for 3s)\n")
    } else {
        text(StatusCode::OK, "ready\n")
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn metrics(shared: &Shared) -> Response<Body> {
    let Some(handle) = &shared.prometheus else {
        return text(StatusCode::NOT_FOUND, "metrics are not enabled\n");
    };
    // Gauges that are cheaper to read at scrape time than to maintain per operation.
    shared.metrics.connections.set(shared.connections.load(Ordering::Relaxed) as f64);
    shared.metrics.channels.set(shared.hub.channels() as f64);
    shared.metrics.bus_subscriptions.set(shared.bus.subscriptions() as f64);
    let (queued, subscriptions) = shared.node.queue_and_subscriptions();
    shared.metrics.outbound_queue_bytes.set(queued as f64);
    shared.metrics.subscriptions.set(subscriptions as f64);
    let mut r = Response::new(Full::new(Bytes::from(handle.render())));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

/// The token of an `Authorization: Bearer …` header.
fn bearer_token(req: &Request<Incoming>) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The token in query parameter `param` of the upgrade URL, when one is configured.
fn query_token(req: &Request<Incoming>, param: Option<&str>) -> Option<String> {
    let param = param?;
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        // Tokens are base64url and dots: nothing to percent-decode.
        (k == param && !v.is_empty()).then(|| v.to_owned())
    })
}

fn refused(refusal: Refusal) -> Response<Body> {
    let mut r = text(refusal.status, refusal.body);
    if let Some(secs) = refusal.retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// What RFC 6455 §4.2.1 asks of an upgrade that hyper and fastwebsockets do not check:
/// HTTP/1.1, a `Host` header, and a `Sec-WebSocket-Key` of 16 bytes in base64
/// (fastwebsockets only checks that the key is there). The answer is the `400`'s body.
fn handshake_problem(req: &Request<Incoming>) -> Option<&'static str> {
    use base64::Engine as _;
    if req.version() != hyper::Version::HTTP_11 {
        return Some("bad websocket handshake: HTTP/1.1 is required\n");
    }
    if !req.headers().contains_key(header::HOST) {
        return Some("bad websocket handshake: a Host header is required\n");
    }
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY)?;
    let valid = base64::engine::general_purpose::STANDARD.decode(key.as_bytes()).is_ok_and(|k| k.len() == 16);
    (!valid).then_some("bad websocket handshake: Sec-WebSocket-Key must be 16 bytes in base64\n")
}

fn upgrade(shared: Arc<Shared>, peer: SocketAddr, mut req: Request<Incoming>, accepted: Instant) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        shared.metrics.limit_handshake.increment(1);
        let mut r = text(StatusCode::UPGRADE_REQUIRED, "this endpoint speaks WebSocket\n");
        r.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return r;
    }
    if *shared.draining.borrow() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    // Origin, upgrade rate and connections of the client's address (see `limits`); the
    // client holds its per-address count until the session ends.
    let client = match shared.limits.admit_upgrade(peer.ip(), req.headers()) {
        Ok(client) => client,
        Err(refusal) => return refused(refusal),
    };
    // Reserve the connection slot now, so a burst cannot overshoot the limit.
    let open = shared.connections.fetch_add(1, Ordering::AcqRel);
    if open >= shared.config.max_connections {
        shared.connections.fetch_sub(1, Ordering::AcqRel);
        shared.metrics.limit_connections.increment(1);
        return text(StatusCode::SERVICE_UNAVAILABLE, "too many connections\n");
    }
    let offered = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let (encoding, subprotocol) = Encoding::negotiate(offered);
    // A token may come with the upgrade (clients that can set headers, or a URL parameter
    // where configured); one in `connect` takes precedence.
    let token = bearer_token(&req).or_else(|| query_token(&req, shared.config.auth.query_param.as_deref()));
    if let Some(problem) = handshake_problem(&req) {
        shared.connections.fetch_sub(1, Ordering::AcqRel);
        shared.metrics.limit_handshake.increment(1);
        return text(StatusCode::BAD_REQUEST, problem);
    }
    // Take hyper's upgrade handle ourselves: the session reads and writes the raw socket.
    // fastwebsockets checks the key and version and builds the 101 response; its own
    // upgrade future (which would allocate a WebSocket we do not use) is dropped unused.
    let on_upgrade = hyper::upgrade::on(&mut req);
    let response = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok((response, _unused)) => response,
        Err(e) => {
            shared.connections.fetch_sub(1, Ordering::AcqRel);
            shared.metrics.limit_handshake.increment(1);
            let mut r = Response::new(Full::new(Bytes::from(format!("bad websocket handshake: {e}\n"))));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
    };
    let (mut parts, _) = response.into_parts();
    if let Some(p) = subprotocol {
        parts.headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    let task = async move {
        let stream = match on_upgrade.await {
            Ok(upgraded) => match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => Some((Socket::Plain(parts.io.into_inner()), parts.read_buf)),
                Err(upgraded) => crate::tls::downcast(upgraded),
            },
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                None
            }
        };
        match stream {
            Some((stream, initial)) => {
                shared.metrics.handshake.record(accepted.elapsed());
                session::run(shared, stream, initial, encoding, client, token).await
            }
            None => {
                shared.connections.fetch_sub(1, Ordering::AcqRel);
            }
        }
    };
    tokio::spawn(task);
    Response::from_parts(parts, Full::new(Bytes::new()))
}
