//! The JSON encoding of client protocol v1. Field names are the protobuf field names.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{DecodeError, check_command};
use crate::codes::ErrorCode;
use crate::pb::{self, command::Command as C, reply::Reply as R};

/// Whether `data` is one valid JSON value (what the JSON encoding can embed as is).
pub fn is_json(data: &[u8]) -> bool {
    serde_json::from_slice::<&RawValue>(data).is_ok()
}

// === commands ===

#[derive(Deserialize, Serialize, Default)]
struct JsonConnect {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    token: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    version: String,
}

#[derive(Deserialize, Serialize)]
struct JsonChannel {
    #[serde(default)]
    channel: String,
}

#[derive(Deserialize, Serialize)]
struct JsonSubscribe {
    #[serde(default)]
    channel: String,
    #[serde(default, deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    recover: Option<JsonOffset>,
}

#[derive(Deserialize, Serialize)]
struct JsonHistory {
    #[serde(default)]
    channel: String,
    #[serde(default, deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    since: Option<JsonOffset>,
    #[serde(default, skip_serializing_if = "is_zero")]
    limit: u32,
    #[serde(default, skip_serializing_if = "is_false")]
    reverse: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn position(p: JsonOffset) -> pb::StreamPosition {
    pb::StreamPosition { offset: p.offset, epoch: p.epoch }
}

fn json_offset(p: &pb::StreamPosition) -> JsonOffset {
    JsonOffset { offset: p.offset, epoch: p.epoch.clone() }
}

#[derive(Deserialize, Serialize)]
struct JsonPublish<'a> {
    #[serde(default)]
    channel: String,
    /// Present (even as `null`) or absent: `Option` alone would read `null` as absent.
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn present_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Empty>, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| Some(Empty {}))
}

#[derive(Deserialize, Serialize, Default)]
struct Empty {}

#[derive(Deserialize, Serialize)]
struct JsonSend<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize, Serialize)]
struct JsonRpc<'a> {
    #[serde(default)]
    method: String,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize, Serialize, Default)]
struct JsonCommand<'a> {
    #[serde(default)]
    id: u32,
    #[serde(default, deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    connect: Option<JsonConnect>,
    #[serde(default, deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    subscribe: Option<JsonSubscribe>,
    #[serde(default, deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    unsubscribe: Option<JsonChannel>,
    #[serde(default, deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    history: Option<JsonHistory>,
    #[serde(borrow, default, deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    publish: Option<JsonPublish<'a>>,
    #[serde(default, deserialize_with = "present_empty", skip_serializing_if = "Option::is_none")]
    ping: Option<Empty>,
    #[serde(borrow, default, deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    send: Option<JsonSend<'a>>,
    #[serde(borrow, default, deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    rpc: Option<JsonRpc<'a>>,
    #[serde(default, deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    refresh: Option<JsonRefresh>,
    #[serde(default, deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    presence: Option<JsonChannel>,
    #[serde(default, deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    presence_stats: Option<JsonChannel>,
}

#[derive(Deserialize, Serialize, Default)]
struct JsonRefresh {
    #[serde(default)]
    token: String,
}

/// A command member that must be a JSON object, or `null` (absent). serde's derive would
/// also read a struct from an array (`"subscribe":["ch"]`), which the protocol does not
/// allow.
fn object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    match <Option<&'de RawValue>>::deserialize(d)? {
        None => Ok(None),
        Some(raw) if raw.get().starts_with('{') => {
            serde_json::from_str(raw.get()).map(Some).map_err(serde::de::Error::custom)
        }
        Some(_) => Err(serde::de::Error::custom("a command member must be an object")),
    }
}

#[derive(Deserialize)]
struct JustId {
    #[serde(default)]
    id: u32,
}

pub(super) fn decode_command(payload: &[u8]) -> Result<pb::Command, DecodeError> {
    // A command is an object; serde's derive would also read one from an array.
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(DecodeError {
            id: None,
            code: ErrorCode::BAD_REQUEST,
            message: "a command must be a JSON object".into(),
        });
    }
    let parsed: JsonCommand<'_> = match serde_json::from_slice(payload) {
        Ok(c) => c,
        Err(e) => {
            // Keep the session when the frame is a JSON object with an id: the error goes
            // back as a reply. Anything else is not a command at all.
            let id = serde_json::from_slice::<JustId>(payload).ok().map(|j| j.id).filter(|&id| id != 0);
            return Err(DecodeError { id, code: ErrorCode::BAD_REQUEST, message: format!("invalid command: {e}") });
        }
    };
    let id = parsed.id;
    // Without an id (0) there is nothing to reply to: the frame is not a command.
    let bad = |message: &str| DecodeError {
        id: Some(id).filter(|&id| id != 0),
        code: ErrorCode::BAD_REQUEST,
        message: message.into(),
    };
    let mut commands = Vec::with_capacity(1);
    if let Some(c) = parsed.connect {
        commands.push(C::Connect(pb::ConnectRequest { token: c.token, name: c.name, version: c.version }));
    }
    if let Some(c) = parsed.subscribe {
        commands.push(C::Subscribe(pb::SubscribeRequest { channel: c.channel, recover: c.recover.map(position) }));
    }
    if let Some(h) = parsed.history {
        commands.push(C::History(pb::HistoryRequest {
            channel: h.channel,
            since: h.since.map(position),
            limit: h.limit,
            reverse: h.reverse,
        }));
    }
    if let Some(c) = parsed.unsubscribe {
        commands.push(C::Unsubscribe(pb::UnsubscribeRequest { channel: c.channel }));
    }
    if let Some(p) = parsed.publish {
        let data = p.data.ok_or_else(|| bad("publish.data is required"))?;
        commands.push(C::Publish(pb::PublishRequest {
            channel: p.channel,
            data: Bytes::copy_from_slice(data.get().as_bytes()),
        }));
    }
    if parsed.ping.is_some() {
        commands.push(C::Ping(pb::PingRequest {}));
    }
    if let Some(p) = parsed.send {
        let data = p.data.ok_or_else(|| bad("send.data is required"))?;
        commands.push(C::Send(pb::SendRequest { data: raw_bytes(data) }));
    }
    if let Some(p) = parsed.rpc {
        let data = p.data.ok_or_else(|| bad("rpc.data is required"))?;
        commands.push(C::Rpc(pb::RpcRequest { method: p.method, data: raw_bytes(data) }));
    }
    if let Some(r) = parsed.refresh {
        commands.push(C::Refresh(pb::RefreshRequest { token: r.token }));
    }
    if let Some(p) = parsed.presence {
        commands.push(C::Presence(pb::PresenceRequest { channel: p.channel }));
    }
    if let Some(p) = parsed.presence_stats {
        commands.push(C::PresenceStats(pb::PresenceStatsRequest { channel: p.channel }));
    }
    if commands.len() > 1 && id != 0 {
        return Err(bad("a command object carries exactly one command"));
    }
    check_command(pb::Command { id, command: commands.pop() })
}

fn raw_bytes(raw: &RawValue) -> Bytes {
    Bytes::copy_from_slice(raw.get().as_bytes())
}

pub(super) fn encode_command(cmd: &pb::Command, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let mut json = JsonCommand { id: cmd.id, ..Default::default() };
    let not_json = |e: serde_json::Error| DecodeError {
        id: Some(cmd.id),
        code: ErrorCode::BAD_REQUEST,
        message: format!("data is not JSON: {e}"),
    };
    let raw;
    match &cmd.command {
        None => {}
        Some(C::Connect(c)) => {
            json.connect =
                Some(JsonConnect { token: c.token.clone(), name: c.name.clone(), version: c.version.clone() })
        }
        Some(C::Subscribe(s)) => {
            json.subscribe =
                Some(JsonSubscribe { channel: s.channel.clone(), recover: s.recover.as_ref().map(json_offset) })
        }
        Some(C::History(h)) => {
            json.history = Some(JsonHistory {
                channel: h.channel.clone(),
                since: h.since.as_ref().map(json_offset),
                limit: h.limit,
                reverse: h.reverse,
            })
        }
        Some(C::Unsubscribe(s)) => json.unsubscribe = Some(JsonChannel { channel: s.channel.clone() }),
        Some(C::Publish(p)) => {
            raw = serde_json::from_slice::<&RawValue>(&p.data).map_err(not_json)?;
            json.publish = Some(JsonPublish { channel: p.channel.clone(), data: Some(raw) });
        }
        Some(C::Ping(_)) => json.ping = Some(Empty {}),
        Some(C::Send(p)) => {
            raw = serde_json::from_slice::<&RawValue>(&p.data).map_err(not_json)?;
            json.send = Some(JsonSend { data: Some(raw) });
        }
        Some(C::Rpc(p)) => {
            raw = serde_json::from_slice::<&RawValue>(&p.data).map_err(not_json)?;
            json.rpc = Some(JsonRpc { method: p.method.clone(), data: Some(raw) });
        }
        Some(C::Refresh(r)) => json.refresh = Some(JsonRefresh { token: r.token.clone() }),
        Some(C::Presence(p)) => json.presence = Some(JsonChannel { channel: p.channel.clone() }),
        Some(C::PresenceStats(p)) => json.presence_stats = Some(JsonChannel { channel: p.channel.clone() }),
    }
    serde_json::to_writer(out, &json).expect("writing to a Vec cannot fail");
    Ok(())
}

// === replies ===

#[derive(Serialize, Deserialize)]
struct JsonError {
    code: u32,
    message: String,
    #[serde(default)]
    temporary: bool,
}

#[derive(Serialize, Deserialize)]
struct JsonConnectResult {
    session: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    ping_interval: u32,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    expires_at: u64,
}

#[derive(Serialize, Deserialize)]
struct JsonRefreshResult {
    #[serde(default)]
    expires_at: u64,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

#[derive(Serialize, Deserialize)]
struct JsonOffset {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    epoch: String,
}

#[derive(Serialize, Deserialize)]
struct JsonSubscribeResult {
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    offset: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    epoch: String,
    #[serde(default, skip_serializing_if = "is_false")]
    recovered: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    history: bool,
}

#[derive(Serialize, Deserialize)]
struct JsonHistoryResult<'a> {
    #[serde(borrow)]
    publications: Vec<JsonPublication<'a>>,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    epoch: String,
    #[serde(default)]
    continuous: bool,
}

/// A publication: `offset` and `epoch` are left out in a live-only namespace.
#[derive(Serialize, Deserialize)]
struct JsonPublication<'a> {
    channel: &'a str,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    offset: u64,
    #[serde(default, skip_serializing_if = "str::is_empty")]
    epoch: &'a str,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b64data: Option<String>,
}

/// Data embedded as a JSON value when it is one, otherwise as base64.
#[derive(Serialize, Deserialize, Default)]
struct JsonData<'a> {
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b64data: Option<String>,
}

impl<'a> JsonData<'a> {
    fn embed(data: &'a [u8]) -> Self {
        match serde_json::from_slice::<&RawValue>(data) {
            Ok(raw) => JsonData { data: Some(raw), b64data: None },
            Err(_) => JsonData { data: None, b64data: Some(BASE64.encode(data)) },
        }
    }

    fn extract(self) -> Result<Bytes, DecodeError> {
        match (self.data, self.b64data) {
            (Some(raw), _) => Ok(raw_bytes(raw)),
            (None, Some(b64)) => BASE64.decode(b64).map(Bytes::from).map_err(|e| DecodeError {
                id: None,
                code: ErrorCode::BAD_REQUEST,
                message: format!("invalid b64data: {e}"),
            }),
            (None, None) => Ok(Bytes::new()),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct JsonSubscribed {
    channel: String,
    #[serde(default)]
    epoch: String,
    #[serde(default)]
    offset: u64,
}

#[derive(Serialize, Deserialize)]
struct JsonUnsubscribed {
    channel: String,
    #[serde(default, skip_serializing_if = "is_false")]
    resubscribe: bool,
}

/// A session in presence answers and join/leave pushes: `info` embedded as a JSON value,
/// left out when the token had none (or it is not JSON, which a token claim always is).
#[derive(Serialize, Deserialize)]
struct JsonClientInfo<'a> {
    #[serde(default)]
    session: String,
    #[serde(default)]
    user: String,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    info: Option<&'a RawValue>,
}

#[derive(Serialize, Deserialize)]
struct JsonPresenceResult<'a> {
    #[serde(borrow, default)]
    clients: Vec<JsonClientInfo<'a>>,
}

#[derive(Serialize, Deserialize)]
struct JsonPresenceStatsResult {
    #[serde(default)]
    sessions: u32,
    #[serde(default)]
    users: u32,
}

/// A `join` or `leave` push.
#[derive(Serialize, Deserialize)]
struct JsonJoinLeave<'a> {
    channel: String,
    #[serde(borrow)]
    client: JsonClientInfo<'a>,
}

fn json_client(c: &pb::ClientInfo) -> JsonClientInfo<'_> {
    let info = if c.info.is_empty() { None } else { serde_json::from_slice::<&RawValue>(&c.info).ok() };
    JsonClientInfo { session: c.session.clone(), user: c.user.clone(), info }
}

fn client_from_json(c: JsonClientInfo<'_>) -> pb::ClientInfo {
    pb::ClientInfo { session: c.session, user: c.user, info: c.info.map(raw_bytes).unwrap_or_default() }
}

#[derive(Serialize, Deserialize)]
struct JsonReply<'a> {
    #[serde(default, skip_serializing_if = "is_zero")]
    id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<JsonError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect: Option<JsonConnectResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscribe: Option<JsonSubscribeResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unsubscribe: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publish: Option<JsonOffset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ping: Option<Empty>,
    #[serde(borrow, rename = "pub", skip_serializing_if = "Option::is_none")]
    publication: Option<JsonPublication<'a>>,
    #[serde(rename = "send", skip_serializing_if = "Option::is_none")]
    send_result: Option<Empty>,
    #[serde(borrow, rename = "rpc", skip_serializing_if = "Option::is_none")]
    rpc_result: Option<JsonData<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    message: Option<JsonData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscribed: Option<JsonSubscribed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unsubscribed: Option<JsonUnsubscribed>,
    #[serde(rename = "refresh", skip_serializing_if = "Option::is_none")]
    refresh_result: Option<JsonRefreshResult>,
    #[serde(borrow, rename = "history", skip_serializing_if = "Option::is_none")]
    history_result: Option<JsonHistoryResult<'a>>,
    #[serde(borrow, rename = "presence", skip_serializing_if = "Option::is_none")]
    presence_result: Option<JsonPresenceResult<'a>>,
    #[serde(rename = "presence_stats", skip_serializing_if = "Option::is_none")]
    presence_stats_result: Option<JsonPresenceStatsResult>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    join: Option<JsonJoinLeave<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    leave: Option<JsonJoinLeave<'a>>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl JsonReply<'_> {
    fn new(id: u32) -> Self {
        JsonReply {
            id,
            error: None,
            connect: None,
            subscribe: None,
            unsubscribe: None,
            publish: None,
            ping: None,
            publication: None,
            send_result: None,
            rpc_result: None,
            message: None,
            subscribed: None,
            unsubscribed: None,
            refresh_result: None,
            history_result: None,
            presence_result: None,
            presence_stats_result: None,
            join: None,
            leave: None,
        }
    }
}

pub(super) fn encode_reply(reply: &pb::Reply, out: &mut Vec<u8>) {
    let mut json = JsonReply::new(reply.id);
    match &reply.reply {
        None => {}
        Some(R::Error(e)) => {
            json.error = Some(JsonError { code: e.code, message: e.message.clone(), temporary: e.temporary })
        }
        Some(R::Connect(c)) => {
            json.connect = Some(JsonConnectResult {
                session: c.session.clone(),
                user: c.user.clone(),
                version: c.version.clone(),
                ping_interval: c.ping_interval,
                expires_at: c.expires_at,
            })
        }
        Some(R::Subscribe(s)) => {
            json.subscribe = Some(JsonSubscribeResult {
                offset: s.offset,
                epoch: s.epoch.clone(),
                recovered: s.recovered,
                history: s.history,
            })
        }
        Some(R::History(h)) => {
            json.history_result = Some(JsonHistoryResult {
                publications: h.publications.iter().map(json_publication).collect(),
                offset: h.offset,
                epoch: h.epoch.clone(),
                continuous: h.continuous,
            })
        }
        Some(R::Unsubscribe(_)) => json.unsubscribe = Some(Empty {}),
        Some(R::Publish(p)) => json.publish = Some(JsonOffset { offset: p.offset, epoch: p.epoch.clone() }),
        Some(R::Ping(_)) => json.ping = Some(Empty {}),
        Some(R::Pub(p)) => json.publication = Some(json_publication(p)),
        Some(R::Send(_)) => json.send_result = Some(Empty {}),
        Some(R::Rpc(r)) => json.rpc_result = Some(JsonData::embed(&r.data)),
        Some(R::Message(m)) => json.message = Some(JsonData::embed(&m.data)),
        Some(R::Subscribed(s)) => {
            json.subscribed =
                Some(JsonSubscribed { channel: s.channel.clone(), epoch: s.epoch.clone(), offset: s.offset })
        }
        Some(R::Unsubscribed(u)) => {
            json.unsubscribed = Some(JsonUnsubscribed { channel: u.channel.clone(), resubscribe: u.resubscribe })
        }
        Some(R::Refresh(r)) => json.refresh_result = Some(JsonRefreshResult { expires_at: r.expires_at }),
        Some(R::Presence(p)) => {
            json.presence_result = Some(JsonPresenceResult { clients: p.clients.iter().map(json_client).collect() })
        }
        Some(R::PresenceStats(p)) => {
            json.presence_stats_result = Some(JsonPresenceStatsResult { sessions: p.sessions, users: p.users })
        }
        Some(R::Join(j)) => json.join = Some(json_join_leave(&j.channel, j.client.as_ref())),
        Some(R::Leave(l)) => json.leave = Some(json_join_leave(&l.channel, l.client.as_ref())),
    }
    serde_json::to_writer(out, &json).expect("writing to a Vec cannot fail");
}

fn json_join_leave<'a>(channel: &str, client: Option<&'a pb::ClientInfo>) -> JsonJoinLeave<'a> {
    let client = match client {
        Some(c) => json_client(c),
        None => JsonClientInfo { session: String::new(), user: String::new(), info: None },
    };
    JsonJoinLeave { channel: channel.to_owned(), client }
}

fn json_publication(p: &pb::Publication) -> JsonPublication<'_> {
    let raw = serde_json::from_slice::<&RawValue>(&p.data).ok();
    JsonPublication {
        channel: &p.channel,
        offset: p.offset,
        epoch: &p.epoch,
        data: raw,
        b64data: if raw.is_none() { Some(BASE64.encode(&p.data)) } else { None },
    }
}

fn publication_from_json(p: JsonPublication<'_>) -> Result<pb::Publication, DecodeError> {
    let data = match (p.data, p.b64data) {
        (Some(raw), _) => Bytes::copy_from_slice(raw.get().as_bytes()),
        (None, Some(b64)) => BASE64.decode(b64).map(Bytes::from).map_err(|e| DecodeError {
            id: None,
            code: ErrorCode::BAD_REQUEST,
            message: format!("invalid b64data: {e}"),
        })?,
        (None, None) => Bytes::new(),
    };
    Ok(pb::Publication { channel: p.channel.to_owned(), offset: p.offset, epoch: p.epoch.to_owned(), data })
}

pub(super) fn decode_reply(payload: &[u8]) -> Result<pb::Reply, DecodeError> {
    let json: JsonReply<'_> = serde_json::from_slice(payload).map_err(|e| DecodeError {
        id: None,
        code: ErrorCode::BAD_REQUEST,
        message: format!("invalid reply: {e}"),
    })?;
    let reply = if let Some(e) = json.error {
        Some(R::Error(pb::Error { code: e.code, message: e.message, temporary: e.temporary }))
    } else if let Some(c) = json.connect {
        Some(R::Connect(pb::ConnectResult {
            session: c.session,
            user: c.user,
            version: c.version,
            ping_interval: c.ping_interval,
            expires_at: c.expires_at,
        }))
    } else if let Some(s) = json.subscribe {
        Some(R::Subscribe(pb::SubscribeResult {
            offset: s.offset,
            epoch: s.epoch,
            recovered: s.recovered,
            history: s.history,
        }))
    } else if let Some(h) = json.history_result {
        Some(R::History(pb::HistoryResult {
            publications: h.publications.into_iter().map(publication_from_json).collect::<Result<_, _>>()?,
            offset: h.offset,
            epoch: h.epoch,
            continuous: h.continuous,
        }))
    } else if json.unsubscribe.is_some() {
        Some(R::Unsubscribe(pb::UnsubscribeResult {}))
    } else if let Some(p) = json.publish {
        Some(R::Publish(pb::PublishResult { offset: p.offset, epoch: p.epoch }))
    } else if json.ping.is_some() {
        Some(R::Ping(pb::PingResult {}))
    } else if let Some(p) = json.publication {
        Some(R::Pub(publication_from_json(p)?))
    } else if json.send_result.is_some() {
        Some(R::Send(pb::SendResult {}))
    } else if let Some(r) = json.rpc_result {
        Some(R::Rpc(pb::RpcResult { data: r.extract()? }))
    } else if let Some(m) = json.message {
        Some(R::Message(pb::ServerMessage { data: m.extract()? }))
    } else if let Some(s) = json.subscribed {
        Some(R::Subscribed(pb::Subscribed { channel: s.channel, epoch: s.epoch, offset: s.offset }))
    } else if let Some(u) = json.unsubscribed {
        Some(R::Unsubscribed(pb::Unsubscribed { channel: u.channel, resubscribe: u.resubscribe }))
    } else if let Some(p) = json.presence_result {
        Some(R::Presence(pb::PresenceResult { clients: p.clients.into_iter().map(client_from_json).collect() }))
    } else if let Some(p) = json.presence_stats_result {
        Some(R::PresenceStats(pb::PresenceStatsResult { sessions: p.sessions, users: p.users }))
    } else if let Some(j) = json.join {
        Some(R::Join(pb::Join { channel: j.channel, client: Some(client_from_json(j.client)) }))
    } else if let Some(l) = json.leave {
        Some(R::Leave(pb::Leave { channel: l.channel, client: Some(client_from_json(l.client)) }))
    } else {
        json.refresh_result.map(|r| R::Refresh(pb::RefreshResult { expires_at: r.expires_at }))
    };
    Ok(pb::Reply { id: json.id, reply })
}
