//! `wss`: the TLS handshake before HTTP, and the TLS session taken over by the WebSocket
//! session after the upgrade (see `socket.rs` for how a session drives it).
//!
//! The certificate comes from [`ServerTls`], which reloads it when its files change; each
//! handshake takes the configuration current at that moment, and sessions keep theirs.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use switchboard_tls::ServerTls;
use switchboard_tls::tokio_rustls::server::TlsStream;
use tokio::net::TcpStream;

use crate::Shared;
use crate::socket::Socket;

/// ALPN for the WebSocket listener: HTTP/1.1 only (an upgrade needs it).
pub(crate) const ALPN: &[&[u8]] = &[b"http/1.1"];

/// The TLS handshake, within the handshake timeout (which then bounds the request head
/// too); `None` when it fails or takes too long.
pub(crate) async fn accept(
    shared: &Arc<Shared>,
    tls: &ServerTls,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let handshake = tls.acceptor().accept(stream);
    match tokio::time::timeout(shared.config.handshake_timeout, handshake).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "tls handshake failed");
            None
        }
        Err(_) => {
            shared.metrics.limit_header_timeout.increment(1);
            tracing::debug!(%peer, "tls handshake timed out");
            None
        }
    }
}

/// The socket and the bytes hyper read past the request, from an upgraded TLS connection.
pub(crate) fn downcast(upgraded: Upgraded) -> Option<(Socket, Bytes)> {
    let parts = upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>().ok()?;
    let (tcp, conn) = parts.io.into_inner().into_inner();
    Some((Socket::tls(tcp, conn), parts.read_buf))
}
