//! Server-to-client WebSocket frames (RFC 6455 §5.2), encoded into one shareable buffer.
//!
//! A server frame is never masked, so the same bytes serve every connection: the payload is
//! encoded once behind room reserved for the header, then the header is written in front.

use bytes::Bytes;
use switchboard_wire::Encoding;

/// The largest frame header: 2 bytes plus an 8-byte extended length (no mask key).
const MAX_HEADER: usize = 10;

pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_BINARY: u8 = 0x2;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;
pub const OPCODE_PONG: u8 = 0xA;

/// Encodes a complete data frame for `encoding` (text for JSON, binary for protobuf) whose
/// payload `write` appends to the buffer it is given.
pub fn encode(encoding: Encoding, write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let opcode = if encoding.is_text() { OPCODE_TEXT } else { OPCODE_BINARY };
    encode_opcode(opcode, write)
}

/// Encodes a complete, final frame with `opcode` whose payload `write` appends.
pub fn encode_opcode(opcode: u8, write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut buf = Vec::with_capacity(128);
    buf.resize(MAX_HEADER, 0);
    write(&mut buf);
    let start = header(&mut buf, 0, opcode);
    Bytes::from(buf).slice(start..)
}

/// Appends a complete data frame for `encoding` to `out`, which may hold frames already.
pub fn append(out: &mut Vec<u8>, encoding: Encoding, write: impl FnOnce(&mut Vec<u8>)) {
    let opcode = if encoding.is_text() { OPCODE_TEXT } else { OPCODE_BINARY };
    let at = out.len();
    out.resize(at + MAX_HEADER, 0);
    write(out);
    let start = header(out, at, opcode);
    if start > at {
        // Close the gap a short header left (one small move per frame).
        out.copy_within(start.., at);
        out.truncate(out.len() - (start - at));
    }
}

/// Writes the header of the frame whose payload follows `MAX_HEADER` reserved bytes at
/// `at`, right-aligned against the payload. Returns where the frame now starts.
fn header(buf: &mut [u8], at: usize, opcode: u8) -> usize {
    let len = buf.len() - at - MAX_HEADER;
    let h = &mut buf[at..at + MAX_HEADER];
    match len {
        0..=125 => {
            h[8] = 0x80 | opcode;
            h[9] = len as u8;
            at + 8
        }
        126..=0xFFFF => {
            h[6] = 0x80 | opcode;
            h[7] = 126;
            h[8..10].copy_from_slice(&(len as u16).to_be_bytes());
            at + 6
        }
        _ => {
            h[0] = 0x80 | opcode;
            h[1] = 127;
            h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            at
        }
    }
}

/// A close frame with `code` and `reason` (truncated to fit the 125-byte control payload).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    encode_opcode(OPCODE_CLOSE, |buf| {
        buf.extend_from_slice(&code.to_be_bytes());
        buf.extend_from_slice(&reason.as_bytes()[..end]);
    })
}

/// A ping or pong control frame carrying `payload` (at most 125 bytes).
pub fn control(opcode: u8, payload: &[u8]) -> Bytes {
    debug_assert!(payload.len() <= 125);
    encode_opcode(opcode, |buf| buf.extend_from_slice(&payload[..payload.len().min(125)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_use_the_shortest_length_form() {
        for (len, header) in [
            (0usize, vec![0x81, 0]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65535, vec![0x81, 126, 0xFF, 0xFF]),
            (65536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let f = encode(Encoding::Json, |b| b.resize(b.len() + len, b'x'));
            assert_eq!(&f[..header.len()], &header[..], "len {len}");
            assert_eq!(f.len(), header.len() + len);
        }
    }

    #[test]
    fn appended_frames_equal_single_frames_back_to_back() {
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let mut out = Vec::new();
            let mut want = Vec::new();
            for len in [0usize, 3, 125, 126, 300, 65536, 1] {
                append(&mut out, encoding, |b| b.resize(b.len() + len, b'y'));
                want.extend_from_slice(&encode(encoding, |b| b.resize(b.len() + len, b'y')));
            }
            assert_eq!(out, want);
        }
    }

    #[test]
    fn close_frames_carry_code_and_a_truncated_reason() {
        let f = close(4002, &"é".repeat(100));
        assert_eq!(f[0], 0x88);
        assert_eq!(f[1] as usize, f.len() - 2);
        assert!(f.len() - 2 <= 125);
        assert_eq!(&f[2..4], &4002u16.to_be_bytes());
        assert!(std::str::from_utf8(&f[4..]).is_ok());
    }
}
