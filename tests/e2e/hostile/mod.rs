//! The hostile-input suite: inputs that once knocked a gateway out or inflated it, or that
//! a fuzzer or an attacker would try, each with its expected outcome, and a check that
//! everyone else is unaffected. One file per family; `aftermath.rs` runs a family against a
//! real `switchboard dev` process and checks that it still serves and gave its memory back.

mod aftermath;
mod auth;
mod frames;
mod handshake;
mod identifiers;
mod limits;
mod protocol;
mod slow_consumers;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchboard_tests::{DEADLINE, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The sample key of RFC 6455 §1.3, and the accept value the server must answer it with.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Sends `request` as is and returns what the server answered: its response head (and
/// whatever came with it), or everything until it closed; empty when it closed without a
/// response. Waits at most 5 s.
async fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before everything is written: that is an answer too.
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        // A response on a kept-alive connection (or a 101) does not end with the connection.
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// An upgrade request for `/ws` with `key` and any extra header lines.
fn upgrade_request(key: &str, extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{extra}\r\n"
    )
}

/// The resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

// === frames by hand ===

const FIN: u8 = 0x80;
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame: `b0` is the first byte (FIN, RSV bits and opcode).
fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(b0, payload.len() as u64, true);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// A frame as a client must not send it: without a mask.
fn unmasked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(b0, payload.len() as u64, false);
    out.extend_from_slice(payload);
    out
}

/// A frame header claiming `len` payload bytes, in the shortest length form.
fn header(b0: u8, len: u64, masked: bool) -> Vec<u8> {
    let m = if masked { 0x80 } else { 0 };
    let mut out = vec![b0];
    match len {
        0..=125 => out.push(m | len as u8),
        126..=0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&MASK);
    }
    out
}

/// What the server sent on a [`RawTcp`] connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Server {
    /// A frame: its opcode and payload (the server never fragments).
    Frame(u8, Vec<u8>),
    /// The connection ended.
    Eof,
}

/// A WebSocket client on a bare TCP socket: it does the upgrade by hand with [`KEY`], then
/// writes whatever bytes it is given, so it can send what no WebSocket library would.
struct RawTcp {
    s: TcpStream,
    buf: Vec<u8>,
}

// === impl RawTcp ===

impl RawTcp {
    /// Upgrades `/ws` with `extra` header lines, checking the `101` and its accept value.
    async fn upgrade(addr: SocketAddr, extra: &str) -> RawTcp {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(upgrade_request(KEY, extra).as_bytes()).await.unwrap();
        let mut raw = RawTcp { s, buf: Vec::new() };
        let end = loop {
            if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(raw.fill().await, "the connection ended during the handshake");
        };
        let head = String::from_utf8_lossy(&raw.buf[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains(&format!("sec-websocket-accept: {}", ACCEPT.to_ascii_lowercase())), "{head}");
        raw.buf.drain(..end);
        raw
    }

    /// Writes `bytes`; an error means the server already closed.
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes).await
    }

    /// Reads more bytes; false at the end of the connection.
    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        match tokio::time::timeout(DEADLINE, self.s.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("nothing from the server within {DEADLINE:?}"),
        }
    }

    /// The next frame from the server.
    async fn next(&mut self) -> Server {
        loop {
            if let Some((opcode, payload, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Server::Frame(opcode, payload);
            }
            if !self.fill().await {
                return Server::Eof;
            }
        }
    }

    /// Reads until the server's close frame: its code (`1005` for none), or `None` when the
    /// connection ended without one. Other frames before it are returned too.
    async fn until_close(&mut self) -> (Vec<Server>, Option<u16>) {
        let mut before = Vec::new();
        loop {
            match self.next().await {
                Server::Frame(CLOSE, p) => {
                    return (before, Some(if p.len() >= 2 { u16::from_be_bytes([p[0], p[1]]) } else { 1005 }));
                }
                Server::Eof => return (before, None),
                other => before.push(other),
            }
        }
    }
}

/// A complete unmasked server frame at the start of `buf`: opcode, payload, bytes used.
fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    assert_eq!(b1 & 0x80, 0, "server frames are not masked");
    assert_ne!(b0 & FIN, 0, "the server never fragments");
    let (len, at) = match b1 & 0x7F {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize, 10),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    Some((b0 & 0x0F, payload, at + len))
}

// === a real process ===

/// A real `switchboard dev` process, so its RSS is its own; killed on drop.
struct DevProcess {
    child: Child,
    addr: SocketAddr,
    grpc: SocketAddr,
}

impl DevProcess {
    /// Starts `switchboard dev` on free ports with `args`, and waits until it listens. The
    /// limits per client address and the message rates are off: every test client comes
    /// from 127.0.0.1, as fast as it can (the limits have tests of their own).
    async fn spawn(args: &[&str]) -> DevProcess {
        let (http, grpc) = (free_port(), free_port());
        let (addr, grpc): (SocketAddr, SocketAddr) =
            (format!("127.0.0.1:{http}").parse().unwrap(), format!("127.0.0.1:{grpc}").parse().unwrap());
        let child = Command::new(switchboard_tests::binary())
            .args(["dev", "--no-page", "--listen", &addr.to_string(), "--grpc-listen", &grpc.to_string()])
            .args(["--max-connections-per-ip", "0", "--connect-rate-per-ip", "0"])
            .args(["--max-messages-per-sec", "0", "--max-bytes-per-sec", "0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let dev = DevProcess { child, addr, grpc };
        switchboard_tests::eventually("dev listens", || async { TcpStream::connect(addr).await.is_ok() }).await;
        dev
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
