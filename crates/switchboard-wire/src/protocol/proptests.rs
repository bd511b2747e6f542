//! Property tests of both command decoders: any input is survived, and encoding then
//! decoding a command gives the command back.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::pb::command::Command as C;

/// JSON values whose object keys come from `key`.
fn json_value(key: BoxedStrategy<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u32>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn any_key() -> BoxedStrategy<String> {
    any::<String>().boxed()
}

/// Keys a command object may carry, and now and then another.
fn command_key() -> BoxedStrategy<String> {
    let known = prop::sample::select(vec![
        "id",
        "connect",
        "subscribe",
        "unsubscribe",
        "publish",
        "ping",
        "send",
        "rpc",
        "channel",
        "data",
        "method",
        "token",
        "name",
        "version",
    ]);
    prop_oneof![8 => known.prop_map(String::from), 1 => any::<String>()].boxed()
}

/// A command; `data` makes the payloads (any bytes for protobuf, JSON text for JSON).
fn command(data: BoxedStrategy<Bytes>) -> impl Strategy<Value = pb::Command> {
    let s = any::<String>;
    let command = prop_oneof![
        (s(), s(), s()).prop_map(|(token, name, version)| C::Connect(pb::ConnectRequest { token, name, version })),
        (s(), prop::option::of((any::<u64>(), s()))).prop_map(|(channel, recover)| C::Subscribe(
            pb::SubscribeRequest {
                channel,
                recover: recover.map(|(offset, epoch)| pb::StreamPosition { offset, epoch }),
            }
        )),
        (s(), prop::option::of((any::<u64>(), s())), any::<u32>(), any::<bool>()).prop_map(
            |(channel, since, limit, reverse)| C::History(pb::HistoryRequest {
                channel,
                since: since.map(|(offset, epoch)| pb::StreamPosition { offset, epoch }),
                limit,
                reverse,
            })
        ),
        s().prop_map(|channel| C::Unsubscribe(pb::UnsubscribeRequest { channel })),
        (s(), data.clone()).prop_map(|(channel, data)| C::Publish(pb::PublishRequest { channel, data })),
        Just(C::Ping(pb::PingRequest {})),
        data.clone().prop_map(|data| C::Send(pb::SendRequest { data })),
        (s(), data).prop_map(|(method, data)| C::Rpc(pb::RpcRequest { method, data })),
    ];
    (1..=u32::MAX, command).prop_map(|(id, command)| pb::Command { id, command: Some(command) })
}

fn json_data() -> BoxedStrategy<Bytes> {
    json_value(any_key()).prop_map(|v| Bytes::from(serde_json::to_vec(&v).unwrap())).boxed()
}

fn any_data() -> BoxedStrategy<Bytes> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from).boxed()
}

/// A decoded command is well formed, and encodes to bytes that decode to it again.
fn check_decoded(enc: Encoding, decoded: Result<pb::Command, DecodeError>) -> Result<(), TestCaseError> {
    match decoded {
        Ok(cmd) => {
            prop_assert!(cmd.id != 0 && cmd.command.is_some(), "{cmd:?}");
            let mut buf = Vec::new();
            enc.encode_command(&cmd, &mut buf).map_err(|e| TestCaseError::fail(e.message))?;
            prop_assert_eq!(enc.decode_command(&buf), Ok(cmd));
        }
        Err(e) => prop_assert!(e.id != Some(0), "{e:?}"),
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_either_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for enc in [Encoding::Json, Encoding::Protobuf] {
            check_decoded(enc, enc.decode_command(&bytes))?;
        }
    }

    #[test]
    fn command_shaped_json_never_panics(value in json_value(command_key())) {
        let text = serde_json::to_vec(&value).unwrap();
        check_decoded(Encoding::Json, Encoding::Json.decode_command(&text))?;
    }

    #[test]
    fn json_commands_round_trip(cmd in command(json_data())) {
        let mut buf = Vec::new();
        Encoding::Json.encode_command(&cmd, &mut buf).unwrap();
        prop_assert_eq!(Encoding::Json.decode_command(&buf), Ok(cmd));
    }

    #[test]
    fn protobuf_commands_round_trip(cmd in command(any_data())) {
        let mut buf = Vec::new();
        Encoding::Protobuf.encode_command(&cmd, &mut buf).unwrap();
        prop_assert_eq!(Encoding::Protobuf.decode_command(&buf), Ok(cmd));
    }
}

/// Found by `command_shaped_json_never_panics`: a command without an id whose payload was
/// refused came back as an error with id 0, which the gateway sent as a reply with id 0 (a
/// push) instead of closing the session as for any other frame without an id.
#[test]
fn a_refused_command_without_an_id_is_not_a_command() {
    for text in
        [r#"{"publish":[]}"#, r#"{"publish":{"channel":"a"}}"#, r#"{"send":{}}"#, r#"{"id":0,"rpc":{"method":"m"}}"#]
    {
        let err = Encoding::Json.decode_command(text.as_bytes()).unwrap_err();
        assert_eq!((err.id, err.code), (None, ErrorCode::BAD_REQUEST), "{text}");
    }
}
