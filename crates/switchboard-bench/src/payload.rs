//! The bytes every publication carries: a send timestamp and a sequence number, padded to
//! the requested size, as `{"t":<ns>,"s":<seq>,"p":"<padding>"}`.
//!
//! When a channel has more than one publisher (rooms with client publish, fan-in), the
//! payload also names its publisher, `{"t":…,"s":…,"k":<publisher>,"p":"…"}`, because order
//! is only promised per publisher.
//! `t` counts nanoseconds since [`epoch`], an instant shared by every task of the generator;
//! it stays far below 2^53, so a peer that re-encodes the JSON in JavaScript keeps it exact.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The instant `t` counts from: the first time any part of the generator asked for it.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Send time, nanoseconds since [`epoch`].
    pub t: u64,
    /// Sequence number on its stream, from 1.
    pub s: u64,
    /// The publisher, when the channel has several; 0 otherwise.
    pub k: u32,
}

/// Appends the payload for `stamp` to `out`, padded so it is `size` bytes long (or as short
/// as it can be, when `size` is smaller than the stamp itself). `multi` writes `"k"`.
pub fn encode(out: &mut Vec<u8>, stamp: Stamp, multi: bool, size: usize) {
    use std::io::Write as _;
    let start = out.len();
    let _ = write!(out, "{{\"t\":{},\"s\":{}", stamp.t, stamp.s);
    if multi {
        let _ = write!(out, ",\"k\":{}", stamp.k);
    }
    out.extend_from_slice(b",\"p\":\"");
    let used = out.len() - start + 2;
    out.resize(out.len() + size.saturating_sub(used), b'x');
    out.extend_from_slice(b"\"}");
}

/// Finds the first payload inside `frame` (a push, an event or a raw message that embeds
/// it) and reads its stamp; `None` when there is none. Allocates nothing.
pub fn decode(frame: &[u8]) -> Option<Stamp> {
    const HEAD: &[u8] = b"{\"t\":";
    let at = find(frame, HEAD)?;
    let mut rest = &frame[at + HEAD.len()..];
    let t = number(&mut rest)?;
    rest = rest.strip_prefix(b",\"s\":")?;
    let s = number(&mut rest)?;
    let k = match rest.strip_prefix(b",\"k\":") {
        Some(mut r) => u32::try_from(number(&mut r)?).ok()?,
        None => 0,
    };
    Some(Stamp { t, s, k })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads an unsigned decimal at the front of `rest` and advances past it.
fn number(rest: &mut &[u8]) -> Option<u64> {
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in &rest[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    *rest = &rest[digits..];
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_payloads_have_the_requested_size_and_decode_back() {
        let cases: &[(&str, Stamp, bool, usize)] = &[
            ("a hundred bytes", Stamp { t: 123_456_789, s: 1, k: 0 }, false, 100),
            ("a large payload", Stamp { t: 1, s: 99, k: 0 }, false, 4096),
            ("with a publisher", Stamp { t: 5, s: 7, k: 42 }, true, 100),
            ("the largest numbers", Stamp { t: u64::MAX, s: u64::MAX, k: u32::MAX }, true, 200),
        ];
        for (name, stamp, multi, size) in cases {
            let mut out = Vec::new();
            encode(&mut out, *stamp, *multi, *size);
            assert_eq!(out.len(), *size, "{name}");
            let value: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(value["s"], stamp.s, "{name}");
            assert_eq!(decode(&out), Some(*stamp), "{name}");
        }
    }

    #[test]
    fn a_size_below_the_stamp_gives_the_shortest_payload() {
        let mut out = Vec::new();
        encode(&mut out, Stamp { t: 10, s: 2, k: 0 }, false, 1);
        assert_eq!(out, br#"{"t":10,"s":2,"p":""}"#);
    }

    #[test]
    fn stamps_are_found_inside_what_each_system_sends() {
        let cases: &[(&str, &[u8], Option<Stamp>)] = &[
            (
                "a switchboard push",
                br#"{"pub":{"channel":"bench:b","offset":3,"epoch":"ab12cd34","data":{"t":77,"s":3,"p":"xx"}}}"#,
                Some(Stamp { t: 77, s: 3, k: 0 }),
            ),
            ("a socket.io event", br#"42["m",{"t":8,"s":9,"k":2,"p":""}]"#, Some(Stamp { t: 8, s: 9, k: 2 })),
            ("a raw nats message", br#"{"t":1,"s":1,"p":"x"}"#, Some(Stamp { t: 1, s: 1, k: 0 })),
            ("a reply without a payload", br#"{"id":4,"publish":{"offset":1,"epoch":"x"}}"#, None),
            ("a truncated payload", br#"{"t":12,"s""#, None),
            ("a number too long", br#"{"t":123456789012345678901,"s":1}"#, None),
            ("a number past u64", br#"{"t":18446744073709551616,"s":1}"#, None),
        ];
        for (name, frame, want) in cases {
            assert_eq!(decode(frame), *want, "{name}");
        }
    }
}
