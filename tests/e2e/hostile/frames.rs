//! RFC 6455 frames written byte by byte after a normal upgrade: each malformed frame closes
//! its session with the code the RFC names (`1002`, `1003`, `1007`, `1009`), and frames
//! that are odd but legal are served.

use bytes::Bytes;
use switchboard_gateway::GatewayConfig;
use switchboard_tests::{DEADLINE, client, eventually, gateway_config, grpc, start_dev};
use switchboard_wire::{Encoding, pb};

use super::{BINARY, CLOSE, CONTINUATION, FIN, PING, PONG, RawTcp, Server, TEXT, frame, header, unmasked};

/// The message size limit of the node the cases run against.
pub(super) const MAX_MESSAGE: usize = 1024;

/// What the server does with a case's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Closes the session with this code, sending nothing before the close frame.
    Close(u16),
    /// Answers with this frame and goes on.
    Frame(u8, Vec<u8>),
    /// Answers with a text frame containing this.
    Reply(&'static str),
}

pub(super) struct Case {
    pub name: String,
    /// The subprotocol offered in the upgrade (JSON when none).
    pub subprotocol: Option<&'static str>,
    /// What the client writes after the upgrade, in one go.
    pub bytes: Vec<u8>,
    pub want: Outcome,
}

/// Every case, for a node whose `max_message_size` is [`MAX_MESSAGE`].
pub(super) fn cases() -> Vec<Case> {
    use Outcome::{Close, Reply};
    let case = |name: &str, bytes: Vec<u8>, want| Case { name: name.into(), subprotocol: None, bytes, want };
    let cat = |parts: &[Vec<u8>]| parts.concat();
    let close_with = |code: u16| frame(FIN | CLOSE, &code.to_be_bytes());
    let mut cases = vec![
        case("an unmasked text frame", unmasked(FIN | TEXT, b"{}"), Close(1002)),
        case("an unmasked close frame", unmasked(FIN | CLOSE, &1000u16.to_be_bytes()), Close(1002)),
        case("a fragmented ping", frame(PING, b"p"), Close(1002)),
        case("a ping of 126 bytes", frame(FIN | PING, &[b'p'; 126]), Close(1002)),
        case("a close of 126 bytes", frame(FIN | CLOSE, &[b'c'; 126]), Close(1002)),
        case("a continuation without a start", frame(FIN | CONTINUATION, b"{}"), Close(1002)),
        case(
            "a new data frame while a fragmented message is open",
            cat(&[frame(TEXT, b"{"), frame(FIN | TEXT, b"{}")]),
            Close(1002),
        ),
        case("invalid UTF-8 in a text frame", frame(FIN | TEXT, b"{\"a\":\"\xff\"}"), Close(1007)),
        case("an overlong UTF-8 encoding", frame(FIN | TEXT, b"\"\xc0\xaf\""), Close(1007)),
        case("a UTF-16 surrogate in UTF-8", frame(FIN | TEXT, b"\"\xed\xa0\x80\""), Close(1007)),
        case(
            "invalid UTF-8 split across fragments",
            cat(&[frame(TEXT, b"\"\xce"), frame(FIN | CONTINUATION, b"A\"")]),
            Close(1007),
        ),
        case("invalid UTF-8 in a message that never ends (failing fast)", frame(TEXT, b"ok\xff"), Close(1007)),
        case("a length field claiming 2^62 bytes", header(FIN | TEXT, 1 << 62, true), Close(1009)),
        case("a length field with the top bit set (2^63)", header(FIN | TEXT, 1 << 63, true), Close(1002)),
        case(
            "a continuation claiming 2^64 - 16 bytes mid-message",
            cat(&[frame(TEXT, b"{"), header(FIN | CONTINUATION, u64::MAX - 15, true)]),
            Close(1002),
        ),
        case(
            "a continuation claiming 2^62 bytes mid-message",
            cat(&[frame(TEXT, b"{"), header(FIN | CONTINUATION, 1 << 62, true)]),
            Close(1009),
        ),
        case("a close frame with a 1-byte payload", frame(FIN | CLOSE, &[0x03]), Close(1002)),
        case("a close reason that is not UTF-8", frame(FIN | CLOSE, b"\x03\xe8\xff"), Close(1007)),
        case(
            "a message over --max-message-size in one frame",
            frame(FIN | TEXT, &[b' '; MAX_MESSAGE + 1]),
            Close(1009),
        ),
        case(
            "a message over --max-message-size in fragments",
            cat(&[
                frame(TEXT, &[b' '; 400]),
                frame(CONTINUATION, &[b' '; 400]),
                frame(FIN | CONTINUATION, &[b' '; 400]),
            ]),
            Close(1009),
        ),
        case("a binary frame on a JSON session", frame(FIN | BINARY, b"\x08\x01"), Close(1003)),
        Case {
            name: "a text frame on a protobuf session".into(),
            subprotocol: Some("switchboard.v1.proto"),
            bytes: frame(FIN | TEXT, b"{}"),
            want: Close(1003),
        },
        // Odd but legal: served.
        case("a ping of 125 bytes", frame(FIN | PING, &[b'p'; 125]), Outcome::Frame(PONG, vec![b'p'; 125])),
        case(
            "a pong nobody asked for, then a ping",
            cat(&[frame(FIN | PONG, b"unasked"), frame(FIN | PING, b"after")]),
            Outcome::Frame(PONG, b"after".to_vec()),
        ),
        case(
            "a ping between the fragments of a message",
            cat(&[
                frame(TEXT, b"{\"id\":1,"),
                frame(FIN | PING, b"mid"),
                frame(FIN | CONTINUATION, b"\"connect\":{}}"),
            ]),
            Outcome::Frame(PONG, b"mid".to_vec()),
        ),
        case(
            "a character split across fragments",
            cat(&[frame(TEXT, b"{\"id\":1,\"connect\":{\"name\":\"\xce"), frame(FIN | CONTINUATION, b"\xba\"}}")]),
            Reply("\"connect\":{\"session\""),
        ),
        case("a close with code 3000", close_with(3000), Close(3000)),
        case("a close without a code", frame(FIN | CLOSE, b""), Close(1000)),
    ];
    for (bit, name) in [(0x40, "RSV1"), (0x20, "RSV2"), (0x10, "RSV3")] {
        cases.push(case(&format!("reserved bit {name} set"), frame(FIN | bit | TEXT, b"{}"), Close(1002)));
    }
    for opcode in (3..=7).chain(11..=15) {
        cases.push(case(&format!("opcode {opcode}"), frame(FIN | opcode, b"{}"), Close(1002)));
    }
    // Codes a close frame may not carry (RFC 6455 §7.4).
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        cases.push(case(&format!("a close with code {code}"), close_with(code), Close(1002)));
    }
    cases
}

/// Runs `case` on a fresh connection to `addr` and checks its outcome.
pub(super) async fn check(addr: std::net::SocketAddr, case: &Case) {
    let extra = case.subprotocol.map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n")).unwrap_or_default();
    let mut ws = RawTcp::upgrade(addr, &extra).await;
    // The server may close before it has read everything: its close frame is the answer.
    let _ = ws.send(&case.bytes).await;
    let name = &case.name;
    match &case.want {
        Outcome::Close(code) => {
            let (before, got) = ws.until_close().await;
            assert!(before.is_empty(), "{name}: frames before the close: {before:?}");
            assert_eq!(got, Some(*code), "{name}");
        }
        Outcome::Frame(opcode, payload) => {
            assert_eq!(ws.next().await, Server::Frame(*opcode, payload.clone()), "{name}");
        }
        Outcome::Reply(part) => match ws.next().await {
            Server::Frame(TEXT, p) => {
                let text = String::from_utf8(p).unwrap();
                assert!(text.contains(part), "{name}: {text}");
            }
            other => panic!("{name}: expected a reply, got {other:?}"),
        },
    }
}

#[tokio::test]
async fn malformed_frames_close_with_the_code_the_rfc_names() {
    let node = start_dev(GatewayConfig { max_message_size: MAX_MESSAGE, ..gateway_config() }).await;
    let mut neighbour = client(node.http, Encoding::Json).await;
    neighbour.subscribe("frames:n").await.unwrap();
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    println!("{} frame cases", cases.len());
    for case in &cases {
        check(node.http, case).await;
    }
    // Nobody else noticed, and every bad session is gone.
    let mut api = grpc(node.grpc).await;
    api.publish(pb::PublishApiRequest {
        channel: "frames:n".into(),
        data: Bytes::from_static(b"1"),
        ..Default::default()
    })
    .await
    .unwrap();
    let p = tokio::time::timeout(DEADLINE, neighbour.next_publication()).await.unwrap().unwrap();
    assert_eq!(p.data, "1");
    eventually("the hostile sessions are gone", async || node.gateway.connections() == 1).await;
}
