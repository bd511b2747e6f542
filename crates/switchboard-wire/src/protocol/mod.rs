//! Client protocol v1 codec: commands from clients and replies/pushes from the server, in
//! the JSON encoding (text frames, the default) or the protobuf encoding (binary frames,
//! negotiated with the `switchboard.v1.proto` subprotocol).
//!
//! Both encodings decode into and encode from the same generated types (`pb::Command`,
//! `pb::Reply`), so the gateway handles one model. Publication data is bytes; the JSON
//! encoding embeds it as a JSON value when it is valid JSON and as base64 in `b64data`
//! otherwise.

mod json;

use bytes::Bytes;
use prost::Message;

use crate::codes::ErrorCode;
use crate::pb;

pub use json::is_json;

/// The subprotocol name a client offers for the JSON encoding (also the default).
pub const SUBPROTOCOL_JSON: &str = "switchboard.v1.json";
/// The subprotocol name a client offers for the protobuf encoding.
pub const SUBPROTOCOL_PROTOBUF: &str = "switchboard.v1.proto";

/// How a session's frames are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// JSON objects in text frames.
    Json,
    /// Protobuf messages in binary frames.
    Protobuf,
}

/// A frame that could not be decoded into a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The command id, when it could be read: the error then goes back as a reply and the
    /// session continues. Without one the frame is not a command at all and the session is
    /// closed with `CloseCode::BAD_REQUEST`.
    pub id: Option<u32>,
    pub code: ErrorCode,
    pub message: String,
}

// === impl Encoding ===

impl Encoding {
    /// Picks the encoding from the subprotocols a client offered, in its order of
    /// preference. Returns the encoding and the subprotocol to echo back, if any.
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> (Encoding, Option<&'static str>) {
        for p in offered {
            match p.trim() {
                SUBPROTOCOL_JSON => return (Encoding::Json, Some(SUBPROTOCOL_JSON)),
                SUBPROTOCOL_PROTOBUF => return (Encoding::Protobuf, Some(SUBPROTOCOL_PROTOBUF)),
                _ => {}
            }
        }
        (Encoding::Json, None)
    }

    /// The subprotocol name for this encoding.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Json => SUBPROTOCOL_JSON,
            Encoding::Protobuf => SUBPROTOCOL_PROTOBUF,
        }
    }

    /// Whether frames of this encoding are text frames (otherwise binary).
    pub fn is_text(self) -> bool {
        self == Encoding::Json
    }

    /// Decodes one client command from a frame payload.
    pub fn decode_command(self, payload: &[u8]) -> Result<pb::Command, DecodeError> {
        match self {
            Encoding::Json => json::decode_command(payload),
            Encoding::Protobuf => decode_command_protobuf(payload),
        }
    }

    /// Appends the encoding of a reply or push to `out`.
    pub fn encode_reply(self, reply: &pb::Reply, out: &mut Vec<u8>) {
        match self {
            Encoding::Json => json::encode_reply(reply, out),
            Encoding::Protobuf => reply.encode(out).expect("a Vec grows as needed"),
        }
    }

    /// Appends the encoding of a command to `out` (the client side). In the JSON encoding a
    /// publish's data must be valid JSON.
    pub fn encode_command(self, cmd: &pb::Command, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        match self {
            Encoding::Json => json::encode_command(cmd, out),
            Encoding::Protobuf => {
                cmd.encode(out).expect("a Vec grows as needed");
                Ok(())
            }
        }
    }

    /// Decodes a reply or push (the client side).
    pub fn decode_reply(self, payload: &[u8]) -> Result<pb::Reply, DecodeError> {
        match self {
            Encoding::Json => json::decode_reply(payload),
            Encoding::Protobuf => pb::Reply::decode(payload).map_err(|e| DecodeError {
                id: None,
                code: ErrorCode::BAD_REQUEST,
                message: format!("invalid protobuf reply: {e}"),
            }),
        }
    }
}

fn decode_command_protobuf(payload: &[u8]) -> Result<pb::Command, DecodeError> {
    let cmd = pb::Command::decode(payload).map_err(|e| DecodeError {
        id: None,
        code: ErrorCode::BAD_REQUEST,
        message: format!("invalid protobuf command: {e}"),
    })?;
    check_command(cmd)
}

/// Checks what both encodings require of every command: a non-zero id and a known command.
fn check_command(cmd: pb::Command) -> Result<pb::Command, DecodeError> {
    if cmd.id == 0 {
        return Err(DecodeError {
            id: None,
            code: ErrorCode::BAD_REQUEST,
            message: "command id is missing or zero".into(),
        });
    }
    if cmd.command.is_none() {
        return Err(DecodeError {
            id: Some(cmd.id),
            code: ErrorCode::UNKNOWN_COMMAND,
            message: "unknown command".into(),
        });
    }
    Ok(cmd)
}

// === constructors used on both sides ===

/// A reply carrying an error.
pub fn error_reply(id: u32, code: ErrorCode, message: impl Into<String>) -> pb::Reply {
    pb::Reply {
        id,
        reply: Some(pb::reply::Reply::Error(pb::Error {
            code: code.code,
            message: message.into(),
            temporary: code.temporary,
        })),
    }
}

/// A push of one publication.
pub fn publication_push(channel: &str, offset: u64, epoch: &str, data: Bytes) -> pb::Reply {
    pb::Reply {
        id: 0,
        reply: Some(pb::reply::Reply::Pub(pb::Publication {
            channel: channel.to_owned(),
            offset,
            epoch: epoch.to_owned(),
            data,
        })),
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
