//! One WebSocket connection of the generator, served by one task: dial (from a chosen
//! loopback source), upgrade, say hello and subscribe, then read publications until told to
//! stop, publishing too when its role says so.
//!
//! The receive path holds no buffer while idle: it waits for readiness, reads into a
//! per-thread scratch buffer and parses frames in place; only an incomplete frame is copied
//! into the connection's own buffer. Nothing is allocated per message.

use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::accounting::{Stream, Tally, record_ns};
use crate::payload::{self, Stamp};
use crate::proto::{Hello, Msg, Proto};
use crate::publish::Pacer;
use crate::run::{Ctx, Phase};
use crate::ws;

/// Most frames read per wake-up before the task lets others run.
const READS_PER_WAKE: usize = 16;
/// Most publications written per wake-up when publishing as fast as possible.
const BURST: u64 = 64;
/// Publishers per channel a subscriber keeps sequences for.
const MAX_PUBLISHERS: usize = 65_536;
/// Time allowed to dial, upgrade and subscribe.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 * 1024]);
}

/// What a connection does besides holding its socket.
#[derive(Debug, Clone, Copy, Default)]
pub struct Role {
    /// Subscribe to this channel (an index into the plan's channels).
    pub subscribe: Option<usize>,
    /// Publish through this connection.
    pub publish: Option<PublishRole>,
}

#[derive(Debug, Clone, Copy)]
pub struct PublishRole {
    pub channel: usize,
    /// This publisher's number on the channel (the payload's `k`).
    pub k: u32,
    /// Publications per second; 0 is as fast as possible.
    pub rate: f64,
}

/// How a connection ended before it was told to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Closed {
        code: Option<u16>,
        slow: bool,
    },
    /// The TCP connection ended without a close frame.
    Eof,
    Error(String),
}

/// What one connection saw, handed back when its task ends.
#[derive(Debug, Default)]
pub struct Outcome {
    pub role: Role,
    /// The hello completed.
    pub connected: bool,
    /// Per publisher `k` on the subscribed channel.
    pub streams: Vec<Stream>,
    pub tally: Tally,
    /// Set when the connection ended before the run did.
    pub end: Option<End>,
    /// `jitter` subscribers: cuts, reconnects and recoveries.
    pub jitter: Option<crate::jitter::ClientStats>,
}

/// A connection after its upgrade.
pub struct Conn {
    stream: TcpStream,
    /// Bytes of an incomplete frame.
    rbuf: Vec<u8>,
    proto: Proto,
}

/// Opens connection `index` for `role`: dial, upgrade, hello, subscribe.
pub async fn open(ctx: &Ctx, index: usize, role: &Role) -> Result<Conn, String> {
    let url = &ctx.urls[index % ctx.urls.len()];
    let mut stream = dial(ctx, index).await.map_err(|e| format!("connect to {}: {e}", url.authority))?;
    let leftover = ws::upgrade(&mut stream, url, ctx.target.subprotocol()).await.map_err(|e| e.to_string())?;
    let mut conn = Conn { stream, rbuf: leftover, proto: Proto::new(ctx.target) };
    let channel = role.subscribe.map(|c| ctx.channels[c].as_str());
    let hello = conn.proto.hello(channel, &ctx.connect);
    conn.until(hello).await?;
    if let Some(room) = channel
        && let Some(id) = conn.proto.socketio_join(room)
    {
        conn.until(Hello::Reply(id)).await?;
    }
    Ok(conn)
}

pub async fn dial(ctx: &Ctx, index: usize) -> io::Result<TcpStream> {
    let addr = ctx.addrs[index % ctx.addrs.len()];
    let stream = if ctx.sources.len() > 1 {
        let source: Ipv4Addr = ctx.sources[index % ctx.sources.len()];
        let socket = TcpSocket::new_v4()?;
        // Choose the source port at connect time, per 4-tuple, so every source address has
        // the whole ephemeral range for each destination.
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)?;
        socket.bind(SocketAddr::new(source.into(), 0))?;
        socket.connect(addr).await?
    } else {
        TcpStream::connect(addr).await?
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

// === impl Conn ===

impl Conn {
    /// Reads until the hello step `hello` completes, answering keep-alives on the way.
    async fn until(&mut self, hello: Hello) -> Result<(), String> {
        self.flush().await.map_err(|e| e.to_string())?;
        if hello == Hello::Done {
            return Ok(());
        }
        let mut done: Option<Result<(), String>> = None;
        if !self.rbuf.is_empty() {
            let buf = std::mem::take(&mut self.rbuf);
            let mut check = |m: Msg<'_>| check_hello(hello, &m, &mut done);
            let used = self.proto.process(&buf, &mut check).map_err(|e| e.0.to_owned())?;
            self.rbuf = buf[used..].to_vec();
        }
        loop {
            self.flush().await.map_err(|e| e.to_string())?;
            if let Some(result) = done {
                return result;
            }
            self.stream.readable().await.map_err(|e| e.to_string())?;
            loop {
                let mut check = |m: Msg<'_>| check_hello(hello, &m, &mut done);
                match read_some(&self.stream, &mut self.rbuf, &mut self.proto, &mut check) {
                    Ok(0) => return Err("connection closed during the hello".into()),
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.proto.out.is_empty() {
            self.stream.write_all(&self.proto.out).await?;
            self.proto.out.clear();
            if self.proto.out.capacity() > 64 * 1024 {
                self.proto.out = Vec::new();
            }
        }
        Ok(())
    }

    /// Serves the connection until the run stops or the connection ends.
    pub async fn serve(mut self, ctx: &Ctx, index: usize, outcome: &mut Outcome) {
        let role = outcome.role;
        let mut phase = ctx.phase.clone();
        let mut pacer: Option<Pacer> = None;
        let mut scratch = Vec::new();
        let mut body = Vec::new();
        loop {
            let now_phase = *phase.borrow_and_update();
            if now_phase == Phase::Stop {
                break;
            }
            match (role.publish, now_phase, pacer.is_some()) {
                (Some(p), Phase::Publish, false) => {
                    pacer = Some(Pacer::new(p.rate, true));
                    ctx.publishing.fetch_add(1, Relaxed);
                }
                (_, Phase::Drain, true) => {
                    pacer = None;
                    ctx.publishing.fetch_sub(1, Relaxed);
                }
                _ => {}
            }
            let next = pacer.as_ref().map(Pacer::next_at);
            tokio::select! {
                changed = phase.changed() => if changed.is_err() { break },
                ready = self.stream.readable() => {
                    if let Err(e) = ready {
                        outcome.end = Some(End::Error(e.to_string()));
                        break;
                    }
                    if let Some(end) = self.pump(ctx, index, outcome) {
                        outcome.end = Some(end);
                        break;
                    }
                }
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now).into()), if next.is_some() => {
                    let (Some(p), Some(pacer)) = (role.publish, pacer.as_mut()) else { continue };
                    let due = pacer.due(Instant::now()).min(BURST);
                    for _ in 0..due {
                        let seq = ctx.published[p.channel][p.k as usize].load(Relaxed) + 1;
                        body.clear();
                        payload::encode(&mut body, Stamp { t: payload::now_ns(), s: seq, k: p.k }, ctx.multi, ctx.payload);
                        self.proto.publish(&ctx.channels[p.channel], &body, &mut scratch);
                        ctx.published[p.channel][p.k as usize].store(seq, Relaxed);
                    }
                    pacer.sent(due);
                }
            }
            if let Err(e) = self.flush().await {
                outcome.end = Some(End::Error(e.to_string()));
                break;
            }
        }
        if pacer.is_some() {
            ctx.publishing.fetch_sub(1, Relaxed);
        }
        if outcome.end.is_none() {
            // Say goodbye without waiting for the answer.
            self.proto.close();
            let _ = self.stream.try_write(&self.proto.out);
        }
    }

    /// Reads and handles whatever is ready. Returns how the connection ended, if it did.
    fn pump(&mut self, ctx: &Ctx, index: usize, outcome: &mut Outcome) -> Option<End> {
        let end = RefCell::new(None);
        let mut delivered = 0u64;
        let shard = ctx.hist.shard(index);
        let mut guard = None;
        // What a connection that subscribes to nothing receives is no delivery of the run:
        // the floor writes every message to every other connection, publishers included.
        // Counted, it would end the drain before the subscribers got everything.
        let subscribed = outcome.role.subscribe.is_some();
        let mut sink = |m: Msg<'_>| match m {
            Msg::Data(_) if !subscribed => {}
            Msg::Data(data) => {
                let Some(stamp) = payload::decode(data) else { return };
                let k = stamp.k as usize;
                if k >= outcome.streams.len() {
                    if k >= MAX_PUBLISHERS {
                        return;
                    }
                    outcome.streams.resize_with(k + 1, Stream::default);
                }
                let h = guard.get_or_insert_with(|| shard.lock().unwrap());
                record_ns(h, payload::now_ns().saturating_sub(stamp.t));
                outcome.tally.count(outcome.streams[k].record(stamp.s));
                delivered += 1;
            }
            Msg::Reply { error: true, .. } => {
                ctx.publish_errors.fetch_add(1, Relaxed);
            }
            Msg::Closed { code, slow } => *end.borrow_mut() = Some(End::Closed { code, slow }),
            Msg::Refused(text) => {
                tracing::debug!(index, refused = %String::from_utf8_lossy(text), "server refused");
            }
            Msg::Reply { .. } | Msg::Ready(_) => {}
        };
        for _ in 0..READS_PER_WAKE {
            match read_some(&self.stream, &mut self.rbuf, &mut self.proto, &mut sink) {
                Ok(0) => {
                    end.borrow_mut().get_or_insert(End::Eof);
                    break;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    end.borrow_mut().get_or_insert(End::Error(e.to_string()));
                    break;
                }
            }
        }
        drop(guard);
        if delivered > 0 {
            ctx.delivered.fetch_add(delivered, Relaxed);
        }
        end.into_inner()
    }
}

fn check_hello(hello: Hello, m: &Msg<'_>, done: &mut Option<Result<(), String>>) {
    if done.is_none() {
        match Proto::hello_done(hello, m) {
            Ok(true) => *done = Some(Ok(())),
            Ok(false) => {}
            Err(e) => *done = Some(Err(e)),
        }
    }
}

/// One non-blocking read, parsed at once. Returns the bytes read (0 at end of stream) or
/// `WouldBlock` when nothing was ready.
pub fn read_some(
    stream: &TcpStream,
    rbuf: &mut Vec<u8>,
    proto: &mut Proto,
    sink: &mut impl FnMut(Msg<'_>),
) -> io::Result<usize> {
    let bad = |e: ws::FrameError| io::Error::new(io::ErrorKind::InvalidData, e.0);
    SCRATCH.with(|scratch| {
        let scratch = &mut *scratch.borrow_mut();
        let n = stream.try_read(scratch)?;
        if n == 0 {
            return Ok(0);
        }
        if rbuf.is_empty() {
            let used = proto.process(&scratch[..n], sink).map_err(bad)?;
            rbuf.extend_from_slice(&scratch[used..n]);
        } else {
            rbuf.extend_from_slice(&scratch[..n]);
            let used = proto.process(rbuf, sink).map_err(bad)?;
            rbuf.drain(..used);
            if rbuf.is_empty() && rbuf.capacity() > 64 * 1024 {
                *rbuf = Vec::new();
            }
        }
        Ok(n)
    })
}
