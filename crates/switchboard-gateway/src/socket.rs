//! A session's socket: plain TCP, or TLS driven in place.
//!
//! The session and its outbox use the socket without blocking and from several threads:
//! `try_write` from the hub's fan-out (a direct write, under the outbox's lock),
//! `try_write_vectored` and `try_read_buf` from the session task, and readiness polls that
//! keep one waker each. A `tokio_rustls` stream offers none of that, so for `wss` the
//! session's [`Socket`] holds the TCP stream and the rustls `ServerConnection` under a
//! mutex of its own, and does the same non-blocking operations through it ([`TlsSocket`]):
//! a write encrypts into rustls and hands the records to the TCP socket at once; a read
//! takes what the TCP socket has, decrypts it, and returns the plaintext. No task or
//! buffer is added per connection; plain `ws` pays one `match` per call.
//!
//! The one thing TLS adds is a backlog: records rustls encrypted that the TCP socket did
//! not take. Plaintext handed to a write is consumed once encrypted, so the write reports
//! it written, and someone must send the records later. While a backlog waits, every write
//! takes nothing (`WouldBlock`), so nothing overtakes it and the outbox queues for the
//! session as it does for a full TCP socket; and the session polls [`Socket::poll_backlog`]
//! in its loop, which sends the backlog when the TCP socket is writable. A write that
//! leaves a backlog behind wakes the session, which may be waiting on its outbox only.
//! The backlog is bounded by rustls's buffer limit (64 KiB): a write never encrypts more
//! than it can hold.
//!
//! Lock order: the outbox's lock, then the socket's; the socket's lock is never held while
//! the outbox is locked from here.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use switchboard_hub::Sink;
use switchboard_tls::rustls::ServerConnection;
use tokio::net::TcpStream;

/// A session's socket (see the module documentation).
pub(crate) enum Socket {
    Plain(TcpStream),
    /// Boxed: a rustls connection is over a kilobyte, which a plain socket must not carry.
    Tls(Box<TlsSocket>),
}

/// TCP with a rustls server connection whose handshake is done.
pub(crate) struct TlsSocket {
    tcp: TcpStream,
    state: Mutex<TlsState>,
}

struct TlsState {
    conn: ServerConnection,
    /// The session, to be woken when a write leaves a backlog (set by `poll_backlog`).
    flusher: Option<Waker>,
    /// Plaintext may wait in rustls while the TCP socket is not readable (set at the start:
    /// the upgrade may have left some there).
    read_pending: bool,
}

// === impl Socket ===

impl Socket {
    /// A TLS socket from a connection whose handshake (and HTTP upgrade) is done.
    pub(crate) fn tls(tcp: TcpStream, conn: ServerConnection) -> Socket {
        Socket::Tls(Box::new(TlsSocket {
            tcp,
            state: Mutex::new(TlsState { conn, flusher: None, read_pending: true }),
        }))
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Socket::Tls(_))
    }

    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => tcp.try_write(buf),
            Socket::Tls(tls) => tls.write_with(|w| w.write(buf)),
        }
    }

    /// Like [`Socket::try_write`], from several buffers in order.
    pub(crate) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => tcp.try_write_vectored(bufs),
            Socket::Tls(tls) => tls.write_with(|w| w.write_vectored(bufs)),
        }
    }

    /// Appends what can be read now (plaintext, for TLS) to `buf`: `Ok(0)` at the end of
    /// the stream, `WouldBlock` when nothing is there.
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => tcp.try_read_buf(buf),
            Socket::Tls(tls) => tls.read(buf),
        }
    }

    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Plain(tcp) => tcp.poll_read_ready(cx),
            Socket::Tls(tls) => {
                if tls.lock().read_pending {
                    return Poll::Ready(Ok(()));
                }
                tls.tcp.poll_read_ready(cx)
            }
        }
    }

    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Plain(tcp) => tcp.poll_write_ready(cx),
            Socket::Tls(tls) => tls.tcp.poll_write_ready(cx),
        }
    }

    pub(crate) async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_read_ready(cx)).await
    }

    pub(crate) async fn writable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write_ready(cx)).await
    }

    /// Sends TLS records a write left behind, as the TCP socket takes them; ready only when
    /// the socket failed. Plain TCP has no backlog: always pending, registering nothing.
    pub(crate) fn poll_backlog(&self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self {
            Socket::Plain(_) => Poll::Pending,
            Socket::Tls(tls) => tls.poll_backlog(cx),
        }
    }

    /// Whether TLS records wait to be sent.
    pub(crate) fn has_backlog(&self) -> bool {
        match self {
            Socket::Plain(_) => false,
            Socket::Tls(tls) => tls.lock().conn.wants_write(),
        }
    }

    /// Sends what the TCP socket takes of the backlog now.
    pub(crate) fn flush_backlog(&self) -> io::Result<()> {
        match self {
            Socket::Plain(_) => Ok(()),
            Socket::Tls(tls) => tls.lock().flush(&tls.tcp),
        }
    }
}

impl Sink for Socket {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        Socket::try_write(self, buf)
    }
}

// === impl TlsSocket ===

impl TlsSocket {
    fn lock(&self) -> std::sync::MutexGuard<'_, TlsState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encrypts what `write` gives rustls and sends the records; takes nothing while an
    /// earlier backlog waits.
    fn write_with(&self, write: impl FnOnce(&mut dyn Write) -> io::Result<usize>) -> io::Result<usize> {
        let mut s = self.lock();
        s.flush(&self.tcp)?;
        if s.conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = write(&mut s.conn.writer())?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // The plaintext is consumed: an error sending its records is the next write's.
        let sent = s.flush(&self.tcp);
        let wake = if s.conn.wants_write() { s.flusher.take() } else { None };
        drop(s);
        if let Some(w) = wake {
            w.wake();
        }
        sent.map(|()| n)
    }

    /// Reads and decrypts until there is plaintext, the end, or nothing more to read.
    fn read(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut s = self.lock();
        s.read_pending = false;
        loop {
            let mut taken = 0;
            let mut reader = s.conn.reader();
            // Whether the stream ended (cleanly or not) behind the plaintext taken.
            let ended = loop {
                match std::io::BufRead::fill_buf(&mut reader) {
                    // A close_notify, and everything before it was read.
                    Ok([]) => break true,
                    Ok(chunk) => {
                        let n = chunk.len();
                        buf.extend_from_slice(chunk);
                        std::io::BufRead::consume(&mut reader, n);
                        taken += n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    // The TCP stream ended without a close_notify.
                    Err(_) if taken > 0 => break true,
                    Err(e) => return Err(e),
                }
            };
            if taken > 0 {
                // The end is reported by the next read, which must come although the TCP
                // socket may never be readable again.
                s.read_pending = ended;
                return Ok(taken);
            }
            if ended {
                return Ok(0);
            }
            // `Ok(0)`, the TCP stream's end, is found by the next turn's `fill_buf`.
            s.conn.read_tls(&mut TcpIo(&self.tcp))?;
            if let Err(e) = s.conn.process_new_packets() {
                // rustls queued an alert saying why; send what the socket takes.
                let _ = s.flush(&self.tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Reading may have produced records to send (a key update's answer).
            if s.conn.wants_write() {
                s.flush(&self.tcp)?;
                if s.conn.wants_write()
                    && let Some(w) = s.flusher.take()
                {
                    w.wake();
                }
            }
        }
    }

    fn poll_backlog(&self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let mut s = self.lock();
        loop {
            if !s.conn.wants_write() {
                match &mut s.flusher {
                    Some(w) => w.clone_from(cx.waker()),
                    None => s.flusher = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            if let Err(e) = s.flush(&self.tcp) {
                return Poll::Ready(e);
            }
            if !s.conn.wants_write() {
                continue;
            }
            match self.tcp.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(e),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl TlsState {
    /// Sends queued records until the TCP socket is full (not an error) or they are out.
    fn flush(&mut self, tcp: &TcpStream) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut TcpIo(tcp)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The non-blocking TCP stream as the `std::io` traits rustls reads and writes with.
struct TcpIo<'a>(&'a TcpStream);

impl Read for TcpIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TcpIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
