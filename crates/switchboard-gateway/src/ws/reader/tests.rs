use super::*;

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(fin, opcode, payload, MASK)
}

/// A client frame masked with `mask`.
pub(super) fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![(fin as u8) << 7 | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn read_all(max: usize, bytes: &[u8]) -> Result<Vec<Message>, ReadError> {
    let mut r = FrameReader::with_initial(max, bytes);
    let mut out = Vec::new();
    while let Some(m) = r.next_message()? {
        out.push(m);
    }
    Ok(out)
}

#[test]
fn whole_and_fragmented_messages_are_reassembled() {
    let mut bytes = frame(true, 0x1, b"hello");
    bytes.extend(frame(false, 0x2, b"ab"));
    bytes.extend(frame(true, 0x9, b"p"));
    bytes.extend(frame(false, 0x0, b"cd"));
    bytes.extend(frame(true, 0x0, b"ef"));
    bytes.extend(frame(true, 0xA, b""));
    bytes.extend(frame(true, 0x8, &[0x03, 0xE8, b'b', b'y', b'e']));
    assert_eq!(
        read_all(1024, &bytes).unwrap(),
        [
            Message::Text(Bytes::from_static(b"hello")),
            Message::Ping(Bytes::from_static(b"p")),
            Message::Binary(Bytes::from_static(b"abcdef")),
            Message::Pong,
            Message::Close(Some(1000), Bytes::from_static(b"bye")),
        ]
    );
}

#[test]
fn extended_lengths_are_read() {
    for len in [126usize, 65535, 65536] {
        let payload = vec![b'x'; len];
        let got = read_all(1 << 20, &frame(true, 0x2, &payload)).unwrap();
        assert_eq!(got, [Message::Binary(Bytes::from(payload))]);
    }
}

#[test]
fn a_frame_split_across_reads_waits_for_the_rest() {
    let bytes = frame(true, 0x1, b"split me");
    let mut r = FrameReader::with_initial(1024, &bytes[..5]);
    assert_eq!(r.next_message().unwrap(), None);
    assert!(r.is_mid_message());
    r.buf.extend_from_slice(&bytes[5..]);
    assert_eq!(r.next_message().unwrap(), Some(Message::Text(Bytes::from_static(b"split me"))));
    assert!(!r.is_mid_message());
    assert_eq!(r.next_message().unwrap(), None);
    assert_eq!(r.held_bytes(), 0, "an idle reader holds no buffer");
}

#[test]
fn violations_map_to_their_errors() {
    let unmasked = vec![0x81, 0x01, b'a'];
    let mut bad_utf8 = frame(true, 0x1, &[0xff, 0xfe]);
    bad_utf8.truncate(bad_utf8.len());
    type Case = (&'static str, Vec<u8>, fn(&ReadError) -> bool);
    let cases: Vec<Case> = vec![
        ("unmasked", unmasked, |e| matches!(e, ReadError::Protocol(_))),
        (
            "rsv bits",
            {
                let mut f = frame(true, 0x1, b"a");
                f[0] |= 0x40;
                f
            },
            |e| matches!(e, ReadError::Protocol(_)),
        ),
        ("opcode 3", frame(true, 0x3, b""), |e| matches!(e, ReadError::Protocol(_))),
        ("fragmented ping", frame(false, 0x9, b""), |e| matches!(e, ReadError::Protocol(_))),
        ("long ping", frame(true, 0x9, &[0; 126]), |e| matches!(e, ReadError::Protocol(_))),
        ("lone continuation", frame(true, 0x0, b"a"), |e| matches!(e, ReadError::Protocol(_))),
        ("interleaved", [frame(false, 0x1, b"a"), frame(true, 0x1, b"b")].concat(), |e| {
            matches!(e, ReadError::Protocol(_))
        }),
        ("bad utf8", bad_utf8, |e| matches!(e, ReadError::InvalidUtf8)),
        ("too big", frame(true, 0x2, &[0; 101]), |e| matches!(e, ReadError::TooBig(100))),
        ("too big in pieces", [frame(false, 0x2, &[0; 60]), frame(true, 0x0, &[0; 60])].concat(), |e| {
            matches!(e, ReadError::TooBig(100))
        }),
        ("close 1 byte", frame(true, 0x8, &[3]), |e| matches!(e, ReadError::Protocol(_))),
        ("close 1005", frame(true, 0x8, &[0x03, 0xED]), |e| matches!(e, ReadError::Protocol(_))),
        ("close 5000", frame(true, 0x8, &[0x13, 0x88]), |e| matches!(e, ReadError::Protocol(_))),
        ("close bad reason", frame(true, 0x8, &[0x03, 0xE8, 0xff]), |e| matches!(e, ReadError::InvalidUtf8)),
    ];
    for (name, bytes, check) in cases {
        let err = read_all(100, &bytes).unwrap_err();
        assert!(check(&err), "{name}: {err:?}");
    }
}

#[test]
fn a_huge_declared_length_is_refused_before_allocating() {
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
    bytes.extend_from_slice(&MASK);
    let mut r = FrameReader::with_initial(1 << 16, &bytes);
    assert!(matches!(r.next_message(), Err(ReadError::TooBig(_))));
    assert!(r.held_bytes() < 1 << 16);
}

#[test]
fn invalid_utf8_fails_at_its_fragment_before_the_message_ends() {
    // 0xF4 0x90 is past U+10FFFF: no continuation can make it valid (Autobahn 6.4.1).
    let bytes = [frame(false, 0x1, b"ok"), frame(false, 0x0, &[0xF4, 0x90, 0x80, 0x80])].concat();
    let mut r = FrameReader::with_initial(1024, &bytes);
    assert!(matches!(r.next_message(), Err(ReadError::InvalidUtf8)));
}

#[test]
fn a_code_point_split_across_fragments_is_valid_text() {
    let euro = "€".as_bytes();
    let bytes =
        [frame(false, 0x1, &[b'a', euro[0]]), frame(false, 0x0, &euro[1..2]), frame(true, 0x0, &euro[2..])].concat();
    assert_eq!(read_all(1024, &bytes).unwrap(), [Message::Text(Bytes::from("a€"))]);
}

/// Found by the `frame_reader` fuzz target: a length near 2^64 overflowed the running total
/// of a fragmented message (a panic with overflow checks; without them the total wrapped,
/// passed the size check, and a later slice of the huge length panicked the session task).
#[test]
fn a_length_with_the_top_bit_set_is_a_protocol_error_even_mid_message() {
    for len in [u64::MAX, u64::MAX - 5, 1 << 63] {
        let mut bytes = frame(false, 0x2, b"a");
        bytes.extend_from_slice(&[0x80, 0x80 | 127]);
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&MASK);
        bytes.extend_from_slice(&[0; 16]);
        let err = read_all(1 << 20, &bytes).unwrap_err();
        assert!(matches!(err, ReadError::Protocol(_)), "{len:#x}: {err:?}");
    }
    // The largest length the RFC allows is only too big.
    let mut bytes = frame(false, 0x2, b"a");
    bytes.extend_from_slice(&[0x80, 0x80 | 127]);
    bytes.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    bytes.extend_from_slice(&MASK);
    assert!(matches!(read_all(1 << 20, &bytes), Err(ReadError::TooBig(_))));
}

#[test]
fn the_first_fuzz_crash_input_is_refused_without_panicking() {
    // fuzz/artifacts/frame_reader/crash-3c099ec4…, without its two control bytes.
    let bytes = [
        0x02, 0x88, 0x8a, 0x0a, 0xfa, 0x70, 0x70, 0x06, 0x04, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x88, 0xfa, 0x09, 0x02, 0x8a, 0x0a, 0x70, 0x70, 0xd0,
        0x70, 0x70, 0x09, 0x0a,
    ];
    assert!(read_all(1024, &bytes).is_err());
}
