use bytes::Bytes;

use super::*;
use crate::pb::{command::Command as C, reply::Reply as R};

fn json(s: &str) -> Result<pb::Command, DecodeError> {
    Encoding::Json.decode_command(s.as_bytes())
}

#[test]
fn json_commands_decode_to_the_protobuf_model() {
    let cases: &[(&str, C)] = &[
        (
            r#"{"id":1,"connect":{"token":"t","name":"n","version":"v"}}"#,
            C::Connect(pb::ConnectRequest { token: "t".into(), name: "n".into(), version: "v".into() }),
        ),
        (r#"{"id":1,"connect":{}}"#, C::Connect(pb::ConnectRequest::default())),
        (
            r#"{"id":1,"subscribe":{"channel":"a:b"}}"#,
            C::Subscribe(pb::SubscribeRequest { channel: "a:b".into(), recover: None }),
        ),
        (
            r#"{"id":1,"subscribe":{"channel":"a:b","recover":{"offset":7,"epoch":"e"}}}"#,
            C::Subscribe(pb::SubscribeRequest {
                channel: "a:b".into(),
                recover: Some(pb::StreamPosition { offset: 7, epoch: "e".into() }),
            }),
        ),
        (
            r#"{"id":1,"history":{"channel":"a:b","since":{"offset":7,"epoch":"e"},"limit":5,"reverse":true}}"#,
            C::History(pb::HistoryRequest {
                channel: "a:b".into(),
                since: Some(pb::StreamPosition { offset: 7, epoch: "e".into() }),
                limit: 5,
                reverse: true,
            }),
        ),
        (
            r#"{"id":1,"unsubscribe":{"channel":"a:b"}}"#,
            C::Unsubscribe(pb::UnsubscribeRequest { channel: "a:b".into() }),
        ),
        (
            r#"{"id":1,"publish":{"channel":"a","data":{"x":[1, 2]}}}"#,
            C::Publish(pb::PublishRequest { channel: "a".into(), data: Bytes::from_static(br#"{"x":[1, 2]}"#) }),
        ),
        (
            r#"{"id":1,"presence":{"channel":"chat:lobby"}}"#,
            C::Presence(pb::PresenceRequest { channel: "chat:lobby".into() }),
        ),
        (
            r#"{"id":1,"presence_stats":{"channel":"chat:lobby"}}"#,
            C::PresenceStats(pb::PresenceStatsRequest { channel: "chat:lobby".into() }),
        ),
        (r#"{"id":1,"ping":{},"future_field":true}"#, C::Ping(pb::PingRequest {})),
        (r#"{"id":1,"ping":null}"#, C::Ping(pb::PingRequest {})),
        (
            r#"{"id":1,"publish":{"channel":"a","data":null}}"#,
            C::Publish(pb::PublishRequest { channel: "a".into(), data: Bytes::from_static(b"null") }),
        ),
    ];
    for (text, want) in cases {
        let cmd = json(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        assert_eq!(cmd.id, 1);
        assert_eq!(cmd.command.as_ref(), Some(want), "{text}");
    }
}

#[test]
fn json_errors_keep_the_id_when_there_is_one() {
    let cases: &[(&str, Option<u32>, ErrorCode)] = &[
        ("not json", None, ErrorCode::BAD_REQUEST),
        ("[1,2]", None, ErrorCode::BAD_REQUEST),
        // serde would read the command struct from an array: [id, connect, subscribe, …].
        (r#"[2,null,null,null,null,{}]"#, None, ErrorCode::BAD_REQUEST),
        (r#"  [7]"#, None, ErrorCode::BAD_REQUEST),
        (r#"{"id":3,"subscribe":["ch"]}"#, Some(3), ErrorCode::BAD_REQUEST),
        (r#"{"id":3,"connect":[]}"#, Some(3), ErrorCode::BAD_REQUEST),
        (r#"{"id":3,"publish":["ch",1]}"#, Some(3), ErrorCode::BAD_REQUEST),
        (r#"{"subscribe":{"channel":"a"}}"#, None, ErrorCode::BAD_REQUEST),
        (r#"{"id":7}"#, Some(7), ErrorCode::UNKNOWN_COMMAND),
        (r#"{"id":7,"frobnicate":{}}"#, Some(7), ErrorCode::UNKNOWN_COMMAND),
        (r#"{"id":7,"subscribe":{"channel":5}}"#, Some(7), ErrorCode::BAD_REQUEST),
        (r#"{"id":7,"publish":{"channel":"a"}}"#, Some(7), ErrorCode::BAD_REQUEST),
        (r#"{"id":7,"ping":{},"subscribe":{"channel":"a"}}"#, Some(7), ErrorCode::BAD_REQUEST),
    ];
    for (text, id, code) in cases {
        let err = json(text).unwrap_err();
        assert_eq!((err.id, err.code), (*id, *code), "{text}: {}", err.message);
    }
}

#[test]
fn replies_round_trip_in_both_encodings() {
    let replies = [
        error_reply(3, ErrorCode::INVALID_CHANNEL, "bad"),
        pb::Reply {
            id: 1,
            reply: Some(R::Connect(pb::ConnectResult {
                session: "s".into(),
                user: "u".into(),
                version: "0.1".into(),
                ping_interval: 25,
                expires_at: 1_900_000_000,
            })),
        },
        pb::Reply {
            id: 2,
            reply: Some(R::Subscribe(pb::SubscribeResult {
                epoch: "e".into(),
                offset: 4,
                recovered: true,
                history: true,
            })),
        },
        pb::Reply { id: 2, reply: Some(R::Subscribe(pb::SubscribeResult::default())) },
        pb::Reply {
            id: 2,
            reply: Some(R::History(pb::HistoryResult {
                publications: vec![
                    pb::Publication {
                        channel: "a".into(),
                        offset: 3,
                        epoch: "e".into(),
                        data: Bytes::from_static(b"1"),
                    },
                    pb::Publication {
                        channel: "a".into(),
                        offset: 5,
                        epoch: "e".into(),
                        data: Bytes::from_static(b"\x01"),
                    },
                ],
                epoch: "e".into(),
                offset: 9,
                continuous: true,
            })),
        },
        pb::Reply { id: 2, reply: Some(R::Unsubscribe(pb::UnsubscribeResult {})) },
        pb::Reply { id: 2, reply: Some(R::Publish(pb::PublishResult { epoch: "e".into(), offset: 5 })) },
        pb::Reply { id: 2, reply: Some(R::Ping(pb::PingResult {})) },
        publication_push("a:b", 9, "e", Bytes::from_static(br#"{"k":"v"}"#)),
        publication_push("a:b", 9, "e", Bytes::from_static(b"\x00\xffnot json")),
        pb::Reply { id: 3, reply: Some(R::Send(pb::SendResult {})) },
        pb::Reply { id: 3, reply: Some(R::Rpc(pb::RpcResult { data: Bytes::from_static(b"{\"ok\":true}") })) },
        pb::Reply { id: 3, reply: Some(R::Rpc(pb::RpcResult { data: Bytes::from_static(b"\x01") })) },
        pb::Reply { id: 0, reply: Some(R::Message(pb::ServerMessage { data: Bytes::from_static(b"[1]") })) },
        pb::Reply {
            id: 0,
            reply: Some(R::Subscribed(pb::Subscribed { channel: "c".into(), epoch: "e".into(), offset: 3 })),
        },
        pb::Reply { id: 0, reply: Some(R::Unsubscribed(pb::Unsubscribed { channel: "c".into(), resubscribe: true })) },
        publication_push("live:c", 0, "", Bytes::from_static(b"1")),
    ];
    for enc in [Encoding::Json, Encoding::Protobuf] {
        for reply in &replies {
            let mut buf = Vec::new();
            enc.encode_reply(reply, &mut buf);
            assert_eq!(&enc.decode_reply(&buf).unwrap(), reply, "{enc:?}");
        }
    }
}

#[test]
fn json_publication_embeds_json_data_and_base64s_the_rest() {
    let mut buf = Vec::new();
    Encoding::Json.encode_reply(&publication_push("c", 1, "e", Bytes::from_static(b"[1,2]")), &mut buf);
    assert_eq!(std::str::from_utf8(&buf).unwrap(), r#"{"pub":{"channel":"c","offset":1,"epoch":"e","data":[1,2]}}"#);
    buf.clear();
    Encoding::Json.encode_reply(&publication_push("c", 1, "e", Bytes::from_static(b"\x01\x02")), &mut buf);
    assert_eq!(
        std::str::from_utf8(&buf).unwrap(),
        r#"{"pub":{"channel":"c","offset":1,"epoch":"e","b64data":"AQI="}}"#
    );
}

#[test]
fn a_live_only_publication_carries_no_offset_or_epoch_in_json() {
    let mut buf = Vec::new();
    Encoding::Json.encode_reply(&publication_push("c", 0, "", Bytes::from_static(b"[1,2]")), &mut buf);
    assert_eq!(std::str::from_utf8(&buf).unwrap(), r#"{"pub":{"channel":"c","data":[1,2]}}"#);
}

#[test]
fn commands_round_trip_in_both_encodings() {
    let cmds = [
        pb::Command {
            id: 1,
            command: Some(C::Connect(pb::ConnectRequest { token: "t".into(), ..Default::default() })),
        },
        pb::Command { id: 2, command: Some(C::Subscribe(pb::SubscribeRequest { channel: "x".into(), recover: None })) },
        pb::Command { id: 3, command: Some(C::Unsubscribe(pb::UnsubscribeRequest { channel: "x".into() })) },
        pb::Command {
            id: 4,
            command: Some(C::Publish(pb::PublishRequest { channel: "x".into(), data: Bytes::from_static(b"{}") })),
        },
        pb::Command { id: 5, command: Some(C::Ping(pb::PingRequest {})) },
        pb::Command { id: 6, command: Some(C::Send(pb::SendRequest { data: Bytes::from_static(b"{\"a\":1}") })) },
        pb::Command {
            id: 7,
            command: Some(C::Rpc(pb::RpcRequest { method: "m".into(), data: Bytes::from_static(b"null") })),
        },
    ];
    for enc in [Encoding::Json, Encoding::Protobuf] {
        for cmd in &cmds {
            let mut buf = Vec::new();
            enc.encode_command(cmd, &mut buf).unwrap();
            assert_eq!(&enc.decode_command(&buf).unwrap(), cmd, "{enc:?}");
        }
    }
}

#[test]
fn protobuf_garbage_is_not_a_command() {
    let err = Encoding::Protobuf.decode_command(b"\xff\xff\xff").unwrap_err();
    assert_eq!((err.id, err.code), (None, ErrorCode::BAD_REQUEST));
}

#[test]
fn subprotocol_negotiation_takes_the_first_known() {
    assert_eq!(
        Encoding::negotiate(["x", "switchboard.v1.proto", "switchboard.v1.json"]),
        (Encoding::Protobuf, Some(SUBPROTOCOL_PROTOBUF))
    );
    assert_eq!(Encoding::negotiate([]), (Encoding::Json, None));
}

#[test]
fn presence_replies_and_join_leave_pushes_are_encoded_as_the_spec_shows_them() {
    let alice = pb::ClientInfo {
        session: "gab12cd-k3j91".into(),
        user: "alice".into(),
        info: br#"{"name":"Alice"}"#[..].into(),
    };
    let anonymous = pb::ClientInfo { session: "gab12cd-k3j92".into(), user: String::new(), info: Bytes::new() };
    let cases: Vec<(pb::Reply, &str)> = vec![
        (
            pb::Reply {
                id: 5,
                reply: Some(R::Presence(pb::PresenceResult { clients: vec![alice.clone(), anonymous.clone()] })),
            },
            r#"{"id":5,"presence":{"clients":[{"session":"gab12cd-k3j91","user":"alice","info":{"name":"Alice"}},{"session":"gab12cd-k3j92","user":""}]}}"#,
        ),
        (
            pb::Reply { id: 6, reply: Some(R::PresenceStats(pb::PresenceStatsResult { sessions: 2, users: 1 })) },
            r#"{"id":6,"presence_stats":{"sessions":2,"users":1}}"#,
        ),
        (
            pb::Reply {
                id: 0,
                reply: Some(R::Join(pb::Join { channel: "chat:lobby".into(), client: Some(alice.clone()) })),
            },
            r#"{"join":{"channel":"chat:lobby","client":{"session":"gab12cd-k3j91","user":"alice","info":{"name":"Alice"}}}}"#,
        ),
        (
            pb::Reply {
                id: 0,
                reply: Some(R::Leave(pb::Leave { channel: "chat:lobby".into(), client: Some(anonymous.clone()) })),
            },
            r#"{"leave":{"channel":"chat:lobby","client":{"session":"gab12cd-k3j92","user":""}}}"#,
        ),
    ];
    for (reply, text) in cases {
        let mut out = Vec::new();
        Encoding::Json.encode_reply(&reply, &mut out);
        assert_eq!(std::str::from_utf8(&out).unwrap(), text);
        assert_eq!(Encoding::Json.decode_reply(&out).unwrap(), reply, "{text} decodes back");
    }
}
