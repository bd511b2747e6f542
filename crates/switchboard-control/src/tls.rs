//! The gRPC API over TLS: accepted connections go through the handshake of the current
//! [`ServerTls`] configuration (reloaded when its files change) before tonic sees them.
//!
//! tonic's own `ServerTlsConfig` is fixed at start-up; handing tonic already-encrypted
//! streams keeps certificate rotation working for gRPC too. Handshakes run concurrently,
//! each in its own task and within [`HANDSHAKE_TIMEOUT`], so a client that stalls in one
//! holds up no other.

use std::io;
use std::time::Duration;

use switchboard_tls::ServerTls;
use switchboard_tls::tokio_rustls::server::TlsStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

/// ALPN for gRPC: HTTP/2.
pub(crate) const ALPN: &[&[u8]] = &[b"h2"];

/// Time a client has to finish the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS connections accepted on `listener`, as tonic takes them (`Connected`, so a
/// call can see its client certificate). The accept loop ends when the stream is dropped.
pub(crate) fn incoming(listener: TcpListener, tls: ServerTls) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "grpc accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (tls.acceptor(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "grpc tls handshake failed"),
                    Err(_) => tracing::debug!(%peer, "grpc tls handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
