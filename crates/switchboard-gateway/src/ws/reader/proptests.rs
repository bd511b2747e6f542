//! Property tests of the frame reader: any input is survived, and valid client frame
//! sequences decode to their messages however they are fragmented and chunked.

use proptest::prelude::*;
use proptest::sample::Index;

use super::tests::client_frame;
use super::*;

/// Decodes `bytes` delivered in `chunks` (cycled), until the first error. Returns the
/// messages and the error, if any.
fn decode_chunked(max: usize, bytes: &[u8], chunks: &[usize]) -> (Vec<Message>, Option<String>) {
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
    }
    (out, None)
}

/// One step of a client's stream.
#[derive(Debug, Clone)]
enum Step {
    /// A data message, cut into fragments at `cuts`, with a ping between two fragments.
    Data {
        text: bool,
        payload: Vec<u8>,
        cuts: Vec<Index>,
        ping_after: Option<(Index, Vec<u8>)>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn control_payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=125)
}

fn data_payload() -> impl Strategy<Value = (bool, Vec<u8>)> {
    let text = prop::collection::vec(any::<char>(), 0..200).prop_map(|c| (true, String::from_iter(c).into_bytes()));
    let binary = prop::collection::vec(any::<u8>(), 0..400).prop_map(|b| (false, b));
    // Now and then a payload that needs the 64-bit length form.
    let large = (any::<bool>(), 65_536usize..70_000).prop_map(|(text, n)| (text, vec![b'z'; n]));
    prop_oneof![10 => text, 10 => binary, 1 => large]
}

fn step() -> impl Strategy<Value = Step> {
    let data = (
        data_payload(),
        prop::collection::vec(any::<Index>(), 0..5),
        prop::option::of((any::<Index>(), control_payload())),
    )
        .prop_map(|((text, payload), cuts, ping_after)| Step::Data { text, payload, cuts, ping_after });
    prop_oneof![6 => data, 1 => control_payload().prop_map(Step::Ping), 1 => control_payload().prop_map(Step::Pong)]
}

fn close_code() -> impl Strategy<Value = u16> {
    prop_oneof![prop::sample::select(vec![1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011]), 3000u16..5000]
}

/// The wire bytes of `steps` (then a close, if any) and the messages a reader must return.
fn encode(steps: &[Step], close: &Option<(u16, String)>, masks: &[[u8; 4]]) -> (Vec<u8>, Vec<Message>) {
    let mut masks = masks.iter().copied().cycle();
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for step in steps {
        match step {
            Step::Data { text, payload, cuts, ping_after } => {
                let mut at: Vec<usize> = cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
                at.sort_unstable();
                let bounds: Vec<usize> = std::iter::once(0).chain(at).chain(std::iter::once(payload.len())).collect();
                let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &payload[w[0]..w[1]]).collect();
                let ping_at =
                    ping_after.as_ref().filter(|_| pieces.len() > 1).map(|(i, p)| (i.index(pieces.len() - 1), p));
                for (i, piece) in pieces.iter().enumerate() {
                    let opcode = if i > 0 {
                        0x0
                    } else if *text {
                        0x1
                    } else {
                        0x2
                    };
                    bytes.extend(client_frame(i + 1 == pieces.len(), opcode, piece, masks.next().unwrap()));
                    if let Some((_, ping)) = ping_at.filter(|(j, _)| *j == i) {
                        bytes.extend(client_frame(true, 0x9, ping, masks.next().unwrap()));
                        want.push(Message::Ping(Bytes::copy_from_slice(ping)));
                    }
                }
                let data = Bytes::copy_from_slice(payload);
                want.push(if *text { Message::Text(data) } else { Message::Binary(data) });
            }
            Step::Ping(p) => {
                bytes.extend(client_frame(true, 0x9, p, masks.next().unwrap()));
                want.push(Message::Ping(Bytes::copy_from_slice(p)));
            }
            Step::Pong(p) => {
                bytes.extend(client_frame(true, 0xA, p, masks.next().unwrap()));
                want.push(Message::Pong);
            }
        }
    }
    if let Some((code, reason)) = close {
        let payload = [&code.to_be_bytes()[..], reason.as_bytes()].concat();
        bytes.extend(client_frame(true, 0x8, &payload, masks.next().unwrap()));
        want.push(Message::Close(Some(*code), Bytes::copy_from_slice(reason.as_bytes())));
    }
    (bytes, want)
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![4 => 1usize..16, 2 => 16usize..512, 1 => 512usize..100_000], 1..8)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_decode_alike_however_chunked(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        chunks in chunk_sizes(),
    ) {
        let whole = decode_chunked(1024, &bytes, &[usize::MAX]);
        prop_assert_eq!(decode_chunked(1024, &bytes, &chunks), whole);
    }

    #[test]
    fn valid_client_frames_decode_to_their_messages(
        steps in prop::collection::vec(step(), 0..8),
        close in prop::option::of((close_code(), "[a-zA-Z0-9 ]{0,20}|\\PC{0,30}")),
        masks in prop::collection::vec(any::<[u8; 4]>(), 1..8),
        chunks in chunk_sizes(),
    ) {
        let close = close.map(|(code, mut reason)| {
            while reason.len() > 123 {
                reason.pop();
            }
            (code, reason)
        });
        let (bytes, want) = encode(&steps, &close, &masks);
        let mut r = FrameReader::new(1 << 20);
        let mut got = Vec::new();
        let mut rest = &bytes[..];
        for &n in chunks.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at(n.min(rest.len()));
            rest = later;
            r.feed(now);
            while let Some(m) = r.next_message().map_err(|e| TestCaseError::fail(e.to_string()))? {
                got.push(m);
            }
        }
        prop_assert_eq!(got, want);
        prop_assert!(!r.is_mid_message());
        prop_assert_eq!(r.held_bytes(), 0, "an idle reader holds no buffer");
    }

    #[test]
    fn invalid_utf8_in_any_fragment_fails_the_message(
        prefix in "\\PC{0,20}",
        bad in prop::sample::select(vec![&[0xFFu8][..], &[0xC0, 0x80], &[0xED, 0xA0, 0x80], &[0xF4, 0x90, 0x80, 0x80]]),
        suffix in "\\PC{0,20}",
        cut in any::<Index>(),
    ) {
        let payload = [prefix.as_bytes(), bad, suffix.as_bytes()].concat();
        let at = cut.index(payload.len() + 1);
        let bytes = [client_frame(false, 0x1, &payload[..at], [1, 2, 3, 4]), client_frame(true, 0x0, &payload[at..], [5, 6, 7, 8])].concat();
        let (got, err) = decode_chunked(1024, &bytes, &[usize::MAX]);
        prop_assert!(got.is_empty());
        prop_assert_eq!(err, Some(ReadError::InvalidUtf8.to_string()));
    }
}
