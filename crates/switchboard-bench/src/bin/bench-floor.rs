//! `bench-floor`: the minimal WebSocket broadcaster that the benchmark suite measures
//! Switchboard against (issue 4's "floor"). It does the least a broadcaster can do, so its
//! figures bound what any design on this machine can reach:
//!
//! - one thread, no channels, no protocol, no authentication, no limits but a backlog cap;
//! - every text or binary message a client sends is framed once and written to every other
//!   connection;
//! - frames that arrived while the broadcaster was busy (from every publisher) leave in one
//!   write per connection, written straight from the fan-out loop (the only buffering is
//!   what a socket refuses).
//!
//! ```text
//! bench-floor --listen 127.0.0.1:9000
//! switchboard bench broadcast --target floor --url ws://127.0.0.1:9000/
//! ```
//!
//! Fragmented messages and extensions are not supported; the load generator sends neither.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use base64::Engine as _;
use clap::Parser;
use sha1::{Digest, Sha1};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Bytes read per system call (a per-thread buffer, not per connection).
const READ_CHUNK: usize = 64 * 1024;
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Debug, Parser)]
#[command(version, about = "The minimal WebSocket broadcaster the benchmark suite uses as its floor")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Bytes a connection may have unwritten before it is dropped as a slow consumer.
    #[arg(long, default_value_t = 16 << 20)]
    max_backlog: usize,
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
    static ROUND: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind(args.listen).await?;
        println!("bench-floor listening on ws://{}/", listener.local_addr()?);
        let floor = Rc::new(Floor {
            conns: RefCell::new(Vec::new()),
            round: RefCell::new(Vec::new()),
            round_ready: Notify::new(),
            max_backlog: args.max_backlog,
        });
        tokio::task::spawn_local(broadcaster(floor.clone()));
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of file descriptors or similar: keep serving who is connected.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::task::spawn_local(serve(floor.clone(), stream));
        }
    })
}

struct Floor {
    conns: RefCell<Vec<Rc<Conn>>>,
    /// Frames read since the last broadcast, with the connection each came from (a frame
    /// is not echoed to its sender).
    round: RefCell<Vec<(Rc<Conn>, Vec<u8>)>>,
    round_ready: Notify,
    max_backlog: usize,
}

/// Writes each round to every connection: one write per connection for everything that
/// arrived since the previous round (the task runs after the readers that filled it).
async fn broadcaster(floor: Rc<Floor>) {
    loop {
        floor.round_ready.notified().await;
        let round = std::mem::take(&mut *floor.round.borrow_mut());
        let mut frames = Vec::new();
        for (_, bytes) in &round {
            frames.extend_from_slice(bytes);
        }
        for conn in floor.conns.borrow().iter() {
            if !round.iter().any(|(from, _)| Rc::ptr_eq(from, conn)) {
                conn.send(&frames, floor.max_backlog);
            } else {
                // A publisher gets the others' frames only.
                let others: Vec<u8> = round
                    .iter()
                    .filter(|(from, _)| !Rc::ptr_eq(from, conn))
                    .flat_map(|(_, b)| b.iter().copied())
                    .collect();
                if !others.is_empty() {
                    conn.send(&others, floor.max_backlog);
                }
            }
        }
    }
}

struct Conn {
    stream: TcpStream,
    /// What the socket refused; empty (and unallocated) while the client keeps up.
    backlog: RefCell<Vec<u8>>,
    /// Index in `Floor::conns`.
    slot: Cell<usize>,
    dead: Cell<bool>,
    wake: Notify,
}

impl Floor {
    fn add(&self, conn: &Rc<Conn>) {
        let mut conns = self.conns.borrow_mut();
        conn.slot.set(conns.len());
        conns.push(conn.clone());
    }

    fn remove(&self, conn: &Conn) {
        let mut conns = self.conns.borrow_mut();
        let i = conn.slot.get();
        conns.swap_remove(i);
        if let Some(moved) = conns.get(i) {
            moved.slot.set(i);
        }
    }

    /// Queues `frames` from `from` for the next round.
    fn broadcast(&self, from: &Rc<Conn>, frames: &[u8]) {
        self.round.borrow_mut().push((from.clone(), frames.to_vec()));
        self.round_ready.notify_one();
    }
}

impl Conn {
    /// Writes `bytes` now if nothing is waiting, else queues them behind what is.
    fn send(&self, bytes: &[u8], max_backlog: usize) {
        if self.dead.get() {
            return;
        }
        let mut backlog = self.backlog.borrow_mut();
        let written = if backlog.is_empty() {
            match self.stream.try_write(bytes) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(_) => return self.kill(),
            }
        } else {
            0
        };
        if written < bytes.len() {
            if backlog.len() + bytes.len() - written > max_backlog {
                *backlog = Vec::new();
                return self.kill();
            }
            backlog.extend_from_slice(&bytes[written..]);
            self.wake.notify_one();
        }
    }

    fn kill(&self) {
        self.dead.set(true);
        self.wake.notify_one();
    }

    /// Writes what the socket takes of the backlog.
    fn drain(&self) -> io::Result<()> {
        let mut backlog = self.backlog.borrow_mut();
        match self.stream.try_write(&backlog) {
            Ok(n) => {
                backlog.drain(..n);
                if backlog.is_empty() {
                    *backlog = Vec::new();
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }
}

async fn serve(floor: Rc<Floor>, mut stream: TcpStream) {
    let Ok(mut partial) = handshake(&mut stream).await else { return };
    let conn = Rc::new(Conn {
        stream,
        backlog: RefCell::new(Vec::new()),
        slot: Cell::new(0),
        dead: Cell::new(false),
        wake: Notify::new(),
    });
    // No await between the 101 (written by `handshake`) and here: the client cannot have
    // read its upgrade before it is registered for broadcasts.
    floor.add(&conn);
    if !partial.is_empty() {
        let buf = std::mem::take(&mut partial);
        if !on_bytes(&floor, &conn, buf, &mut partial) {
            conn.kill();
        }
    }
    while !conn.dead.get() {
        let pending_write = !conn.backlog.borrow().is_empty();
        tokio::select! {
            biased;
            _ = conn.wake.notified() => {}
            r = conn.stream.writable(), if pending_write => {
                if r.is_err() || conn.drain().is_err() {
                    conn.kill();
                }
            }
            r = conn.stream.readable() => {
                if r.is_err() || !read(&floor, &conn, &mut partial) {
                    conn.kill();
                }
            }
        }
    }
    floor.remove(&conn);
}

/// Reads what is there and handles every complete frame. False when the connection ends.
fn read(floor: &Floor, conn: &Rc<Conn>, partial: &mut Vec<u8>) -> bool {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let n = match conn.stream.try_read(&mut scratch) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        };
        if partial.is_empty() {
            let used = frames(floor, conn, &mut scratch[..n]);
            match used {
                Some(used) => {
                    partial.extend_from_slice(&scratch[used..n]);
                    true
                }
                None => false,
            }
        } else {
            partial.extend_from_slice(&scratch[..n]);
            drop(scratch);
            let buf = std::mem::take(partial);
            on_bytes(floor, conn, buf, partial)
        }
    })
}

/// Handles the frames in `buf`, leaving an incomplete one in `partial`.
fn on_bytes(floor: &Floor, conn: &Rc<Conn>, mut buf: Vec<u8>, partial: &mut Vec<u8>) -> bool {
    match frames(floor, conn, &mut buf) {
        Some(used) => {
            buf.drain(..used);
            if !buf.is_empty() {
                *partial = buf;
            }
            true
        }
        None => false,
    }
}

/// Handles every complete client frame at the front of `buf` and broadcasts the data ones
/// together. Returns the bytes used, or `None` when the connection must end.
fn frames(floor: &Floor, conn: &Rc<Conn>, buf: &mut [u8]) -> Option<usize> {
    let mut at = 0;
    let mut ok = true;
    ROUND.with(|round| {
        let mut round = round.borrow_mut();
        round.clear();
        while let Some((opcode, start, len)) = parse(&mut buf[at..]) {
            let payload = &buf[at + start..at + start + len];
            match opcode {
                0x1 | 0x2 => frame(&mut round, opcode, payload),
                0x9 => {
                    let mut pong = Vec::new();
                    frame(&mut pong, 0xA, payload);
                    conn.send(&pong, floor.max_backlog);
                }
                0x8 => {
                    let mut close = Vec::new();
                    frame(&mut close, 0x8, &payload[..payload.len().min(2)]);
                    conn.send(&close, floor.max_backlog);
                    ok = false;
                }
                _ => {}
            }
            at += start + len;
            if !ok {
                break;
            }
        }
        if !round.is_empty() {
            floor.broadcast(conn, &round);
        }
        if round.capacity() > READ_CHUNK * 4 {
            *round = Vec::new();
        }
    });
    ok.then_some(at)
}

/// Parses and unmasks the client frame at the front of `buf`: (opcode, payload start,
/// payload length), or `None` while it is incomplete.
fn parse(buf: &mut [u8]) -> Option<(u8, usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0F;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut head) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let mask = if masked {
        let mask: [u8; 4] = buf.get(head..head + 4)?.try_into().ok()?;
        head += 4;
        Some(mask)
    } else {
        None
    };
    let payload = buf.get_mut(head..head.checked_add(len)?)?;
    if let Some(mask) = mask {
        // Only a complete frame is unmasked, and it is consumed at once: never twice.
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
    }
    Some((opcode, head, len))
}

/// Appends an unmasked server frame.
fn frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Reads the upgrade request and writes the `101`. Returns bytes read past the request.
async fn handshake(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let (key, used) = loop {
        stream.readable().await?;
        let mut chunk = [0u8; 1024];
        match stream.try_read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(used)) => {
                let key = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"));
                let key = key.ok_or_else(|| io::Error::other("not a websocket upgrade"))?;
                break (key.value.to_vec(), used);
            }
            Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => {}
            _ => return Err(io::Error::other("bad upgrade request")),
        }
    };
    let mut sha = Sha1::new();
    sha.update(&key);
    sha.update(WS_GUID.as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    Ok(buf.split_off(used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_are_unmasked_once_complete() {
        // "Hello" masked with 37 fa 21 3d (RFC 6455 §5.7).
        let mut frame = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(parse(&mut frame[..10]), None, "incomplete");
        assert_eq!(&frame[6..10], [0x7f, 0x9f, 0x4d, 0x51], "an incomplete frame stays masked");
        assert_eq!(parse(&mut frame), Some((1, 6, 5)));
        assert_eq!(&frame[6..], b"Hello");
        let mut out = Vec::new();
        super::frame(&mut out, 1, b"Hello");
        assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
    }
}
