//! The WebSocket frame reader on arbitrary bytes: it never panics, never holds more than a
//! message's worth, and decodes the same whether the bytes arrive at once or in pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_gateway::ws::{FrameReader, Message};

/// Feeds `bytes` in pieces of the sizes in `chunks` (cycled) and collects the messages up
/// to the first error.
fn decode(max: usize, bytes: &[u8], chunks: &[usize]) -> (Vec<Message>, Option<String>) {
    let mut r = FrameReader::new(max);
    let mut out = Vec::new();
    let mut rest = bytes;
    for &n in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at(n.clamp(1, rest.len()));
        rest = later;
        r.feed(now);
        loop {
            match r.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
        // What is held stays within a small multiple of the input plus one message: a
        // declared length is never allocated before its bytes arrive.
        assert!(r.held_bytes() <= 4 * (bytes.len() + max + 14) + 4096, "held {}", r.held_bytes());
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the size limit and the chunking; the rest is the stream.
    let [limit, chunking, bytes @ ..] = data else { return };
    let max = [0, 125, 1024, 65536][*limit as usize % 4];
    let chunks = [1 + (*chunking as usize % 7), 1 + (*chunking as usize / 7) * 3];
    let whole = decode(max, bytes, &[usize::MAX]);
    assert_eq!(decode(max, bytes, &chunks), whole);
});
