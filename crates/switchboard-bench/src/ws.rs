//! The client side of RFC 6455, as little of it as a load generator needs: the upgrade
//! request, masked client frames, and a parser for server frames that borrows from the
//! bytes read (no allocation per frame).

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;
pub const CONTINUATION: u8 = 0x0;

/// Where a WebSocket lives: `ws://host:port/path?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `host:port`, as the `Host` header carries it.
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// The path and query, `/` at least.
    pub path: String,
}

// === impl WsUrl ===

impl WsUrl {
    pub fn parse(url: &str) -> Result<WsUrl, String> {
        let rest = url.strip_prefix("ws://").ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("{url}: bad port"))?),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(WsUrl { authority: format!("{host}:{port}"), host: host.to_owned(), port, path })
    }
}

/// Sends the upgrade request on `stream` and reads the `101` response. Returns the bytes
/// that came after the response headers (the first frames, if the server was quick).
pub async fn upgrade(stream: &mut TcpStream, url: &WsUrl, subprotocol: Option<&str>) -> io::Result<Vec<u8>> {
    let key = fastrand::u128(..).to_le_bytes();
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
        url.path,
        url.authority,
        base64_16(&key)
    );
    if let Some(p) = subprotocol {
        req.push_str("Sec-WebSocket-Protocol: ");
        req.push_str(p);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    loop {
        if buf.len() > 16 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "upgrade response headers too long"));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed during the upgrade"));
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                if resp.code != Some(101) {
                    let code = resp.code.unwrap_or(0);
                    let reason = resp.reason.unwrap_or("").to_owned();
                    return Err(io::Error::other(format!("upgrade refused: HTTP {code} {reason}")));
                }
                return Ok(buf.split_off(len));
            }
            Ok(httparse::Status::Partial) => continue,
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad upgrade response: {e}"))),
        }
    }
}

/// Standard base64 of 16 bytes (a `Sec-WebSocket-Key`).
fn base64_16(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(24);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Appends one complete, masked client frame.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = fastrand::u32(..).to_be_bytes();
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

/// One frame from the server, borrowed from the bytes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: u8,
    pub payload: &'a [u8],
}

/// A frame no server should send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub &'static str);

/// Parses the frame at the front of `buf`: `Ok(None)` until it is complete, then the frame
/// and how many bytes it took. Server frames are not masked; a masked one is an error.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[0] & 0x70 != 0 {
        return Err(FrameError("reserved bits set"));
    }
    if buf[1] & 0x80 != 0 {
        return Err(FrameError("masked server frame"));
    }
    let (len, head) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")), 10),
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    let Ok(len) = usize::try_from(len) else { return Err(FrameError("frame too long")) };
    if buf.len() - head < len {
        return Ok(None);
    }
    let frame = Frame { fin: buf[0] & 0x80 != 0, opcode: buf[0] & 0x0F, payload: &buf[head..head + len] };
    Ok(Some((frame, head + len)))
}

/// The code in a close frame's payload, if it has one.
pub fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_into_authority_and_path() {
        let cases: &[(&str, &str, &str)] = &[
            ("ws://127.0.0.1:8080/ws", "127.0.0.1:8080", "/ws"),
            ("ws://127.0.0.1:4222", "127.0.0.1:4222", "/"),
            (
                "ws://localhost/socket.io/?EIO=4&transport=websocket",
                "localhost:80",
                "/socket.io/?EIO=4&transport=websocket",
            ),
            ("ws://h:1?x=1", "h:1", "/?x=1"),
        ];
        for (url, authority, path) in cases {
            let parsed = WsUrl::parse(url).unwrap();
            assert_eq!((parsed.authority.as_str(), parsed.path.as_str()), (*authority, *path), "{url}");
        }
        for bad in ["http://h/ws", "ws://:80/", "ws://h:port/"] {
            assert!(WsUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_base64_of_sixteen_bytes() {
        assert_eq!(base64_16(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA==");
        assert_eq!(base64_16(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    /// Unmasks a client frame the way a server would.
    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        let (len, mut at) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        let mask = &frame[at..at + 4];
        at += 4;
        assert_eq!(frame.len(), at + len);
        (frame[0] & 0x0F, frame[at..].iter().enumerate().map(|(i, b)| b ^ mask[i & 3]).collect())
    }

    #[test]
    fn client_frames_are_masked_and_carry_their_payload() {
        for len in [0usize, 5, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            encode(&mut out, TEXT, &payload);
            assert_eq!(out[0], 0x81, "len {len}");
            assert!(out[1] & 0x80 != 0, "masked, len {len}");
            assert_eq!(unmask(&out), (TEXT, payload), "len {len}");
        }
    }

    #[test]
    fn server_frames_parse_once_complete() {
        let mut long = vec![0x82, 126, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7u8, 256));
        type Parsed<'a> = Result<Option<(Frame<'a>, usize)>, FrameError>;
        let cases: &[(&str, &[u8], Parsed<'_>)] = &[
            ("an empty buffer", &[], Ok(None)),
            ("a text frame", b"\x81\x02hi", Ok(Some((Frame { fin: true, opcode: TEXT, payload: b"hi" }, 4)))),
            ("a partial payload", b"\x81\x05hi", Ok(None)),
            (
                "a close with a code",
                b"\x88\x02\x0f\xa2",
                Ok(Some((Frame { fin: true, opcode: CLOSE, payload: b"\x0f\xa2" }, 4))),
            ),
            ("a first fragment", b"\x01\x01a", Ok(Some((Frame { fin: false, opcode: TEXT, payload: b"a" }, 3)))),
            ("a 16-bit length, partial", &[0x82, 126, 0x01], Ok(None)),
            ("a 16-bit length", &long, Ok(Some((Frame { fin: true, opcode: BINARY, payload: &long[4..] }, 260)))),
            ("a masked frame", b"\x81\x82abcdhi", Err(FrameError("masked server frame"))),
            ("reserved bits", b"\xc1\x00", Err(FrameError("reserved bits set"))),
        ];
        for (name, buf, want) in cases {
            assert_eq!(&parse(buf), want, "{name}");
        }
        assert_eq!(close_code(b"\x0f\xa2slow"), Some(4002));
        assert_eq!(close_code(b""), None);
    }
}
