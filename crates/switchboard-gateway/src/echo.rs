//! The RFC 6455 echo endpoint at `GET /echo`, for the Autobahn TestSuite
//! (`tests/tools/autobahn.sh`, `docs/conformance.md`).
//!
//! Served only when [`GatewayConfig::echo`](crate::GatewayConfig::echo) is on (`switchboard
//! dev --test-echo-endpoint`), never in production. It exists so that the conformance suite
//! drives the production WebSocket code through a real socket: the same upgrade as `/ws`,
//! [`FrameReader`] for every client frame and `switchboard_hub::frame` for every server
//! frame. It knows no sessions, protocol, limits or bus: each text or binary message goes
//! back as one frame, a ping gets its pong, and the connection ends with a close frame whose
//! code says why (the client's own code, or 1002/1007/1009 from the reader's error).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use switchboard_hub::frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ws::{FrameReader, Message, ReadError};

/// Largest message echoed: above Autobahn's largest (16 MiB, cases 9.*), so they are
/// meaningful; beyond it the reader's limit closes with 1009.
pub(crate) const MAX_MESSAGE: usize = 64 << 20;

/// How long to wait for the client's close frame (or EOF) after ours.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers the upgrade request and spawns the echo loop on the upgraded socket.
pub(crate) fn upgrade(mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    // As for `/ws` (see `http.rs`): hyper's upgrade handle is ours, fastwebsockets only
    // checks the key and version and builds the 101.
    let on_upgrade = hyper::upgrade::on(&mut req);
    let response = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok((response, _unused)) => response,
        Err(e) => {
            let mut r = Response::new(Full::new(Bytes::from(format!("bad websocket handshake: {e}\n"))));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
    };
    tokio::spawn(async move {
        match on_upgrade.await.map(|u| u.downcast::<TokioIo<TcpStream>>()) {
            Ok(Ok(parts)) => run(parts.io.into_inner(), parts.read_buf).await,
            Ok(Err(_)) => tracing::debug!("echo: upgraded connection is not a TCP stream"),
            Err(e) => tracing::debug!(error = %e, "echo: upgrade failed"),
        }
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// Echoes messages until the client closes or breaks the protocol.
async fn run(mut stream: TcpStream, initial: Bytes) {
    let mut reader = FrameReader::with_initial(MAX_MESSAGE, &initial);
    let code = loop {
        let message = match reader.next_message() {
            Ok(Some(message)) => message,
            Ok(None) => {
                if stream.readable().await.is_err() {
                    return;
                }
                match reader.fill(|buf| stream.try_read_buf(buf)) {
                    Ok(_) => continue,
                    Err(e) => match close_code(&e) {
                        Some(code) => break code,
                        None => return,
                    },
                }
            }
            Err(e) => match close_code(&e) {
                Some(code) => break code,
                None => return,
            },
        };
        let out = match message {
            Message::Text(data) => frame::encode_opcode(frame::OPCODE_TEXT, |b| b.extend_from_slice(&data)),
            Message::Binary(data) => frame::encode_opcode(frame::OPCODE_BINARY, |b| b.extend_from_slice(&data)),
            Message::Ping(data) => frame::control(frame::OPCODE_PONG, &data),
            Message::Pong => continue,
            // The reader has checked the code; echo it (RFC 6455 §5.5.1).
            Message::Close(code, _) => break code.unwrap_or(1000),
        };
        if stream.write_all(&out).await.is_err() {
            return;
        }
    };
    close(stream, code).await;
}

/// The close code for a read error, or `None` when the connection is already gone.
fn close_code(e: &ReadError) -> Option<u16> {
    match e {
        ReadError::Io(_) | ReadError::Eof => None,
        ReadError::Protocol(_) => Some(1002),
        ReadError::InvalidUtf8 => Some(1007),
        ReadError::TooBig(_) => Some(1009),
    }
}

/// Sends the close frame, then ends the TCP connection from our side first (RFC 6455 §7.1.1)
/// without resetting it: a socket closed with unread input sends RST, which can destroy the
/// close frame before the client reads it. So half-close, then drain until EOF or timeout.
async fn close(mut stream: TcpStream, code: u16) {
    if stream.write_all(&frame::close(code, "")).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let mut scratch = [0u8; 4096];
    let drain = async {
        while let Ok(n) = stream.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
}
