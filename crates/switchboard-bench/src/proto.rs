//! What each system under test speaks over its WebSocket: how a connection says hello and
//! subscribes, how a publication arrives, how a client publishes, and which keep-alives must
//! be answered. Everything here is synchronous and works on borrowed bytes.
//!
//! - `switchboard`: protocol v1 in JSON text frames (see `docs/protocol.md`).
//! - `nats-ws`: the NATS text protocol (`CONNECT`, `SUB`, `PING`/`PONG`, `MSG`) in binary
//!   frames, which may split or join protocol messages anywhere.
//! - `socketio`: Engine.IO v4 / Socket.IO v5 text packets: `0{…}` open, `40` namespace
//!   connect, `42["event",…]` events, `43<id>[…]` acks, `2`/`3` ping/pong.
//! - `floor`: no protocol at all: every text frame is a publication, in both directions.

use crate::Target;
use crate::ws::{self, Frame, FrameError};

/// Something a connection received that its owner cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg<'a> {
    /// A message that may carry a payload (a publication, an event, a NATS `MSG` body).
    Data(&'a [u8]),
    /// The answer to request `id` (a switchboard reply, a Socket.IO ack); `body` is the whole
    /// message.
    Reply { id: u32, error: bool, body: &'a [u8] },
    /// The server acknowledged the session (NATS `PONG`, Socket.IO `40{…}`, which is `body`).
    Ready(&'a [u8]),
    /// The server refused something or reported an error (NATS `-ERR`, Socket.IO `44`).
    Refused(&'a [u8]),
    /// The server ended the session. `slow` is true for a slow-consumer policy (close 4002,
    /// NATS `-ERR 'Slow Consumer…'`).
    Closed { code: Option<u16>, slow: bool },
}

/// Per-connection protocol state that outlives one read: an unfinished fragmented message,
/// NATS bytes that did not make a whole protocol message yet, and frames to send back.
#[derive(Debug)]
pub struct Proto {
    pub target: Target,
    fragments: Vec<u8>,
    fragment_opcode: u8,
    carry: Vec<u8>,
    /// Frames waiting to be written (keep-alive answers, commands).
    pub out: Vec<u8>,
    next_id: u32,
}

// === impl Proto ===

impl Proto {
    pub fn new(target: Target) -> Proto {
        Proto { target, fragments: Vec::new(), fragment_opcode: 0, carry: Vec::new(), out: Vec::new(), next_id: 1 }
    }

    /// Parses every complete frame at the front of `buf`, handing what matters to `sink`.
    /// Returns how many bytes were consumed; the rest is an incomplete frame.
    pub fn process(&mut self, buf: &[u8], sink: &mut impl FnMut(Msg<'_>)) -> Result<usize, FrameError> {
        let mut at = 0;
        while let Some((frame, used)) = ws::parse(&buf[at..])? {
            at += used;
            self.on_frame(frame, sink)?;
        }
        Ok(at)
    }

    fn on_frame(&mut self, frame: Frame<'_>, sink: &mut impl FnMut(Msg<'_>)) -> Result<(), FrameError> {
        match frame.opcode {
            ws::TEXT | ws::BINARY if frame.fin && self.fragments.is_empty() => self.on_message(frame.payload, sink),
            ws::TEXT | ws::BINARY => {
                self.fragment_opcode = frame.opcode;
                self.fragments.clear();
                self.fragments.extend_from_slice(frame.payload);
            }
            ws::CONTINUATION => {
                if self.fragment_opcode == 0 {
                    return Err(FrameError("continuation without a first fragment"));
                }
                self.fragments.extend_from_slice(frame.payload);
                if frame.fin {
                    let message = std::mem::take(&mut self.fragments);
                    self.fragment_opcode = 0;
                    self.on_message(&message, sink);
                }
            }
            ws::PING => ws::encode(&mut self.out, ws::PONG, frame.payload),
            ws::CLOSE => {
                let code = ws::close_code(frame.payload);
                sink(Msg::Closed { code, slow: code == Some(4002) });
            }
            _ => {}
        }
        Ok(())
    }

    fn on_message(&mut self, msg: &[u8], sink: &mut impl FnMut(Msg<'_>)) {
        match self.target {
            Target::Switchboard => switchboard_message(msg, sink),
            Target::Socketio => socketio_message(msg, &mut self.out, sink),
            Target::Floor => sink(Msg::Data(msg)),
            Target::NatsWs => {
                if self.carry.is_empty() {
                    let used = nats_messages(msg, &mut self.out, sink);
                    self.carry.extend_from_slice(&msg[used..]);
                } else {
                    let mut carry = std::mem::take(&mut self.carry);
                    carry.extend_from_slice(msg);
                    let used = nats_messages(&carry, &mut self.out, sink);
                    carry.drain(..used);
                    self.carry = carry;
                }
            }
        }
    }

    /// Queues the first words of a session: connect (and subscribe to `channel`). What comes
    /// back is awaited by [`Proto::hello_done`]; Socket.IO subscribes in a second step.
    pub fn hello(&mut self, channel: Option<&str>, connect: &str) -> Hello {
        match self.target {
            Target::Switchboard => {
                self.command("connect", connect);
                match channel {
                    Some(c) => {
                        let id = self.command("subscribe", &format!("{{\"channel\":\"{c}\"}}"));
                        Hello::Reply(id)
                    }
                    None => Hello::Reply(1),
                }
            }
            Target::NatsWs => {
                let mut text = String::from(
                    "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false,\"protocol\":1,\"name\":\"switchboard-bench\"}\r\n",
                );
                if let Some(c) = channel {
                    text.push_str(&format!("SUB {c} 1\r\n"));
                }
                text.push_str("PING\r\n");
                ws::encode(&mut self.out, ws::BINARY, text.as_bytes());
                Hello::Ready
            }
            Target::Socketio => {
                ws::encode(&mut self.out, ws::TEXT, b"40");
                Hello::Ready
            }
            // The upgrade alone subscribes.
            Target::Floor => Hello::Done,
        }
    }

    /// Queues a Switchboard hello that subscribes to `channel` resuming after `recover`
    /// (offset, epoch), as `docs/protocol.md` "History and recovery" says; returns the
    /// subscribe's request id.
    pub fn switchboard_resume(&mut self, channel: &str, connect: &str, recover: Option<(u64, &str)>) -> u32 {
        self.command("connect", connect);
        match recover {
            Some((offset, epoch)) => self.command(
                "subscribe",
                &format!("{{\"channel\":\"{channel}\",\"recover\":{{\"offset\":{offset},\"epoch\":\"{epoch}\"}}}}"),
            ),
            None => self.command("subscribe", &format!("{{\"channel\":\"{channel}\"}}")),
        }
    }

    /// Queues a Socket.IO namespace connect that asks for connection state recovery with the
    /// session's private id and the offset of the last event received (`40{"pid":…,"offset":…}`).
    pub fn socketio_resume(&mut self, pid: &str, offset: &str) {
        ws::encode(&mut self.out, ws::TEXT, format!("40{{\"pid\":\"{pid}\",\"offset\":\"{offset}\"}}").as_bytes());
    }

    /// The Socket.IO `sub` event, with an ack id; `None` for the other targets.
    pub fn socketio_join(&mut self, room: &str) -> Option<u32> {
        (self.target == Target::Socketio).then(|| {
            let id = self.take_id();
            ws::encode(&mut self.out, ws::TEXT, format!("42{id}[\"sub\",\"{room}\"]").as_bytes());
            id
        })
    }

    /// Queues a client publication of `payload` (JSON) to `channel`.
    pub fn publish(&mut self, channel: &str, payload: &[u8], scratch: &mut Vec<u8>) {
        scratch.clear();
        match self.target {
            Target::Switchboard => {
                let id = self.take_id();
                scratch.extend_from_slice(
                    format!("{{\"id\":{id},\"publish\":{{\"channel\":\"{channel}\",\"data\":").as_bytes(),
                );
                scratch.extend_from_slice(payload);
                scratch.extend_from_slice(b"}}");
                ws::encode(&mut self.out, ws::TEXT, scratch);
            }
            Target::Socketio => {
                scratch.extend_from_slice(format!("42[\"pub\",\"{channel}\",").as_bytes());
                scratch.extend_from_slice(payload);
                scratch.push(b']');
                ws::encode(&mut self.out, ws::TEXT, scratch);
            }
            Target::Floor => ws::encode(&mut self.out, ws::TEXT, payload),
            Target::NatsWs => {
                scratch.extend_from_slice(format!("PUB {channel} {}\r\n", payload.len()).as_bytes());
                scratch.extend_from_slice(payload);
                scratch.extend_from_slice(b"\r\n");
                ws::encode(&mut self.out, ws::BINARY, scratch);
            }
        }
    }

    /// Queues a close frame (1000).
    pub fn close(&mut self) {
        ws::encode(&mut self.out, ws::CLOSE, &1000u16.to_be_bytes());
    }

    fn command(&mut self, name: &str, body: &str) -> u32 {
        let id = self.take_id();
        ws::encode(&mut self.out, ws::TEXT, format!("{{\"id\":{id},\"{name}\":{body}}}").as_bytes());
        id
    }

    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Whether the hello is complete after `msg`; an error when it was refused.
    pub fn hello_done(hello: Hello, msg: &Msg<'_>) -> Result<bool, String> {
        match (hello, msg) {
            (Hello::Done, _) => Ok(true),
            (Hello::Reply(want), Msg::Reply { id, error, .. }) if *id == want => {
                if *error {
                    Err(format!("request {id} refused"))
                } else {
                    Ok(true)
                }
            }
            (Hello::Ready, Msg::Ready(_)) => Ok(true),
            (_, Msg::Refused(text)) => Err(String::from_utf8_lossy(text).into_owned()),
            (_, Msg::Closed { code, .. }) => Err(format!("closed with {code:?}")),
            _ => Ok(false),
        }
    }
}

/// What completes a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hello {
    /// The reply (or ack) with this id.
    Reply(u32),
    /// The server's acknowledgement of the session.
    Ready,
    /// Nothing to wait for.
    Done,
}

/// `{"id":N,…}` is a reply (an error if it holds `"error"`); anything else may be a push.
fn switchboard_message(msg: &[u8], sink: &mut impl FnMut(Msg<'_>)) {
    if let Some(rest) = msg.strip_prefix(b"{\"id\":") {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let id = std::str::from_utf8(&rest[..digits]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        let error = rest[digits..].starts_with(b",\"error\"");
        sink(Msg::Reply { id, error, body: msg });
    } else {
        sink(Msg::Data(msg));
    }
}

fn socketio_message(msg: &[u8], out: &mut Vec<u8>, sink: &mut impl FnMut(Msg<'_>)) {
    match msg {
        b"2" => ws::encode(out, ws::TEXT, b"3"),
        [b'4', b'2', ..] => sink(Msg::Data(msg)),
        [b'4', b'0', ..] => sink(Msg::Ready(msg)),
        [b'4', b'3', rest @ ..] => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let id = std::str::from_utf8(&rest[..digits]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
            sink(Msg::Reply { id, error: false, body: msg });
        }
        [b'4', b'4', ..] => sink(Msg::Refused(msg)),
        [b'4', b'1', ..] | [b'1', ..] => sink(Msg::Closed { code: None, slow: false }),
        _ => {}
    }
}

/// Parses whole NATS protocol messages from `buf`; returns how many bytes were used.
fn nats_messages(buf: &[u8], out: &mut Vec<u8>, sink: &mut impl FnMut(Msg<'_>)) -> usize {
    let mut at = 0;
    while let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") {
        let line = &buf[at..at + eol];
        if line.starts_with(b"MSG ") || line.starts_with(b"HMSG ") {
            let size = line
                .rsplit(|b| *b == b' ')
                .next()
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            let body = at + eol + 2;
            if buf.len() < body + size + 2 {
                break;
            }
            sink(Msg::Data(&buf[body..body + size]));
            at = body + size + 2;
            continue;
        }
        match line {
            b"PING" => ws::encode(out, ws::BINARY, b"PONG\r\n"),
            b"PONG" => sink(Msg::Ready(line)),
            _ if line.starts_with(b"-ERR") => {
                if line.windows(4).any(|w| w.eq_ignore_ascii_case(b"slow")) {
                    sink(Msg::Closed { code: None, slow: true });
                } else {
                    sink(Msg::Refused(line));
                }
            }
            _ => {}
        }
        at += eol + 2;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Server frames as a server sends them (unmasked).
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            f.push(payload.len() as u8);
        } else {
            f.push(126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    #[derive(Debug, PartialEq)]
    enum Got {
        Data(String),
        Reply(u32, bool),
        Ready,
        Refused(String),
        Closed(Option<u16>, bool),
    }

    fn run(target: Target, chunks: &[Vec<u8>]) -> (Vec<Got>, Vec<u8>) {
        let mut proto = Proto::new(target);
        let mut got = Vec::new();
        let mut pending = Vec::new();
        for chunk in chunks {
            pending.extend_from_slice(chunk);
            let used = proto
                .process(&pending, &mut |m| {
                    got.push(match m {
                        Msg::Data(d) => Got::Data(String::from_utf8_lossy(d).into()),
                        Msg::Reply { id, error, .. } => Got::Reply(id, error),
                        Msg::Ready(_) => Got::Ready,
                        Msg::Refused(t) => Got::Refused(String::from_utf8_lossy(t).into()),
                        Msg::Closed { code, slow } => Got::Closed(code, slow),
                    })
                })
                .unwrap();
            pending.drain(..used);
        }
        (got, proto.out)
    }

    #[test]
    fn each_target_reports_what_its_server_sends() {
        let pushed = br#"{"pub":{"channel":"bench:b","offset":1,"epoch":"e","data":{"t":1,"s":1,"p":""}}}"#;
        let nats = b"INFO {}\r\nPONG\r\nMSG bench.b 1 20\r\n{\"t\":1,\"s\":1,\"p\":\"\"}\r\n".to_vec();
        type Case = (&'static str, Target, Vec<Vec<u8>>, Vec<Got>);
        let cases: Vec<Case> = vec![
            (
                "switchboard replies, errors and pushes",
                Target::Switchboard,
                vec![
                    server_frame(true, ws::TEXT, br#"{"id":1,"connect":{"session":"s"}}"#),
                    server_frame(true, ws::TEXT, br#"{"id":2,"error":{"code":104}}"#),
                    server_frame(true, ws::TEXT, pushed),
                ],
                vec![Got::Reply(1, false), Got::Reply(2, true), Got::Data(String::from_utf8_lossy(pushed).into())],
            ),
            (
                "a slow consumer close",
                Target::Switchboard,
                vec![server_frame(true, ws::CLOSE, b"\x0f\xa2slow consumer")],
                vec![Got::Closed(Some(4002), true)],
            ),
            (
                "a message in two fragments",
                Target::Switchboard,
                vec![server_frame(false, ws::TEXT, b"{\"pub\":"), server_frame(true, ws::CONTINUATION, b"{}}")],
                vec![Got::Data("{\"pub\":{}}".into())],
            ),
            (
                "a frame split across reads",
                Target::Switchboard,
                {
                    let f = server_frame(true, ws::TEXT, br#"{"id":7,"ping":{}}"#);
                    vec![f[..5].to_vec(), f[5..].to_vec()]
                },
                vec![Got::Reply(7, false)],
            ),
            (
                "nats messages split across frames",
                Target::NatsWs,
                vec![server_frame(true, ws::BINARY, &nats[..30]), server_frame(true, ws::BINARY, &nats[30..])],
                vec![Got::Ready, Got::Data(r#"{"t":1,"s":1,"p":""}"#.into())],
            ),
            (
                "nats errors",
                Target::NatsWs,
                vec![server_frame(
                    true,
                    ws::BINARY,
                    b"-ERR 'Authorization Violation'\r\n-ERR 'Slow Consumer Detected'\r\n",
                )],
                vec![Got::Refused("-ERR 'Authorization Violation'".into()), Got::Closed(None, true)],
            ),
            (
                "socket.io open, connect, ack and event",
                Target::Socketio,
                vec![
                    server_frame(true, ws::TEXT, br#"0{"sid":"x","pingInterval":25000}"#),
                    server_frame(true, ws::TEXT, br#"40{"sid":"y"}"#),
                    server_frame(true, ws::TEXT, b"431[true]"),
                    server_frame(true, ws::TEXT, br#"42["m",{"t":1,"s":1,"p":""}]"#),
                    server_frame(true, ws::TEXT, b"41"),
                ],
                vec![
                    Got::Ready,
                    Got::Reply(1, false),
                    Got::Data(r#"42["m",{"t":1,"s":1,"p":""}]"#.into()),
                    Got::Closed(None, false),
                ],
            ),
        ];
        for (name, target, chunks, want) in cases {
            assert_eq!(run(target, &chunks).0, want, "{name}");
        }
    }

    #[test]
    fn keepalives_are_answered() {
        type Case = (&'static str, Target, Vec<u8>, u8, &'static [u8]);
        let cases: Vec<Case> = vec![
            ("a websocket ping", Target::Switchboard, server_frame(true, ws::PING, b"hb"), ws::PONG, b"hb"),
            ("a nats ping", Target::NatsWs, server_frame(true, ws::BINARY, b"PING\r\n"), ws::BINARY, b"PONG\r\n"),
            ("an engine.io ping", Target::Socketio, server_frame(true, ws::TEXT, b"2"), ws::TEXT, b"3"),
        ];
        for (name, target, frame, opcode, payload) in cases {
            let (_, out) = run(target, &[frame]);
            assert_eq!(out[0] & 0x0F, opcode, "{name}");
            let mask = &out[2..6];
            let unmasked: Vec<u8> = out[6..].iter().enumerate().map(|(i, b)| b ^ mask[i & 3]).collect();
            assert_eq!(unmasked, payload, "{name}");
        }
    }

    /// The text of every client frame in `out`, unmasked.
    fn client_texts(out: &[u8]) -> Vec<String> {
        let mut texts = Vec::new();
        let mut at = 0;
        while at < out.len() {
            let len = (out[at + 1] & 0x7F) as usize;
            assert!(len < 126, "short frames only");
            let mask = &out[at + 2..at + 6];
            let payload = &out[at + 6..at + 6 + len];
            texts.push(String::from_utf8(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]).collect()).unwrap());
            at += 6 + len;
        }
        texts
    }

    #[test]
    fn resuming_hellos_carry_the_position() {
        let mut sb = Proto::new(Target::Switchboard);
        let id = sb.switchboard_resume("hist:r-0", "{}", Some((57, "e1")));
        assert_eq!(id, 2);
        assert_eq!(
            client_texts(&sb.out),
            [
                r#"{"id":1,"connect":{}}"#,
                r#"{"id":2,"subscribe":{"channel":"hist:r-0","recover":{"offset":57,"epoch":"e1"}}}"#
            ]
        );
        let mut fresh = Proto::new(Target::Switchboard);
        fresh.switchboard_resume("hist:r-0", "{}", None);
        assert_eq!(client_texts(&fresh.out)[1], r#"{"id":2,"subscribe":{"channel":"hist:r-0"}}"#);
        let mut sio = Proto::new(Target::Socketio);
        sio.socketio_resume("p1", "1-0");
        assert_eq!(client_texts(&sio.out), [r#"40{"pid":"p1","offset":"1-0"}"#]);
    }
}
