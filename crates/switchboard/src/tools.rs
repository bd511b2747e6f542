//! Client tools: `switchboard sub` over WebSocket, and `pub` (`pub --stream` in [`stream`]),
//! `history` and `history-remove` ([`history`]), `sessions`, `presence`, `send` and
//! `disconnect` through the gRPC API, each with a deadline (`--timeout`).
//!
//! What a tool can check before contacting a server (a channel name, DATA that is not JSON)
//! fails as a [`UsageError`] (exit status 64); everything else is a runtime failure (1),
//! said in one line that names the address and, where it can tell, what answered there.

mod api;
mod history;
mod stream;

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard_client::{Client, ClientConfig, ClientError, Event, NotWebSocket, backoff};
use switchboard_wire::pb;
use switchboard_wire::{Channel, CloseCode, Encoding};
use tokio::time::Instant;

use crate::UsageError;
use crate::cli::{DisconnectArgs, PresenceArgs, PubArgs, SendArgs, SessionsArgs, SubArgs};
use api::Api;
pub use history::{history, history_remove};
pub use stream::publish_stream;

/// Prints one JSON line per publication: `{"channel":…,"offset":…,"epoch":…,"data":…}`
/// (`offset` and `epoch` only for a channel with history)
/// (`b64data` instead of `data` when the data is not JSON).
pub async fn sub(args: SubArgs) -> anyhow::Result<()> {
    let channels = args.channels.iter().map(|c| channel(c)).collect::<Result<Vec<_>, _>>()?;
    let encoding = if args.protobuf { Encoding::Protobuf } else { Encoding::Json };
    let mut config = ClientConfig::new(&args.url).encoding(encoding);
    if let Some(ca) = &args.ca {
        // Checked here so a CA file that cannot be used is a usage error, not a retry.
        switchboard_tls::load_roots(ca).map_err(|e| UsageError(format!("--ca: {e}")))?;
        config.ca_file = Some(ca.clone());
    }
    config.token = args.token.clone();
    config.connect_timeout = args.timeout;
    config.request_timeout = args.timeout;
    let mut client = connect(&config).await?;
    for channel in &channels {
        client.subscribe(channel.as_str()).await.map_err(|e| match e {
            ClientError::Timeout => no_answer(&args.url, args.timeout, "a gateway"),
            e => anyhow!("cannot subscribe to {channel}: {e}"),
        })?;
    }
    let mut stdout = std::io::stdout().lock();
    let mut seen = 0u64;
    if args.count == Some(0) {
        client.close().await;
        return Ok(());
    }
    while let Some(event) = client.next_event().await {
        match event {
            Event::Publication(p) => {
                writeln!(stdout, "{}", publication_line(&p))?;
                stdout.flush()?;
                seen += 1;
                if args.count.is_some_and(|n| seen >= n) {
                    break;
                }
            }
            Event::Disconnected { code: Some(code), reason, reconnecting: true } => {
                eprintln!("disconnected: {code}{}, reconnecting", space_before(reason_or_table(code, &reason)));
            }
            Event::Disconnected { code: None, reconnecting: true, .. } => eprintln!("connection lost, reconnecting"),
            Event::Disconnected { code: Some(code), reason, reconnecting: false } => {
                bail!("{} closed the session: {}", args.url, close_text(code, &reason));
            }
            Event::Disconnected { code: None, reconnecting: false, .. } => bail!("lost the connection to {}", args.url),
            Event::Connected { session } => tracing::info!(%session, "connected"),
            Event::Message(data) => tracing::info!(data = %String::from_utf8_lossy(&data), "message from a backend"),
            Event::Subscribed { channel, .. } => tracing::info!(%channel, "subscribed by a backend"),
            Event::Unsubscribed { channel } => tracing::info!(%channel, "unsubscribed by a backend"),
            Event::Join { channel, client } => {
                writeln!(stdout, "{}", join_leave_line("join", &channel, &client))?;
                stdout.flush()?;
            }
            Event::Leave { channel, client } => {
                writeln!(stdout, "{}", join_leave_line("leave", &channel, &client))?;
                stdout.flush()?;
            }
            Event::Resubscribed { channel, recovered: true } => {
                tracing::info!(%channel, "resubscribed; every missed publication follows")
            }
            Event::Resubscribed { channel, recovered: false } => {
                eprintln!("{channel}: resubscribed, but publications missed meanwhile are no longer kept");
            }
        }
    }
    client.close().await;
    Ok(())
}

/// The JSON line `sub` prints for a publication.
pub fn publication_line(p: &pb::Publication) -> String {
    use base64::Engine as _;
    let mut line = serde_json::json!({ "channel": p.channel });
    position_fields(&mut line, p.offset, &p.epoch);
    match serde_json::from_slice::<&RawValue>(&p.data) {
        Ok(raw) => line["data"] = serde_json::from_str(raw.get()).expect("valid json"),
        Err(_) => line["b64data"] = base64::engine::general_purpose::STANDARD.encode(&p.data).into(),
    }
    line.to_string()
}

/// Adds `offset` and `epoch` to `line` when the publication was stored (a namespace with
/// history); a live-only one has neither.
pub fn position_fields(line: &mut serde_json::Value, offset: u64, epoch: &str) {
    if offset != 0 || !epoch.is_empty() {
        line["offset"] = offset.into();
        line["epoch"] = epoch.into();
    }
}

/// Publishes through gRPC and prints `{"channel":…,"offset":…,"epoch":…}` (the position
/// only when the namespace keeps history).
pub async fn publish(args: PubArgs) -> anyhow::Result<()> {
    channel(&args.channel)?;
    let data = json_data(args.data.as_deref().unwrap_or_default())?;
    let idempotency_key = idempotency_key(args.idempotency_key.as_deref(), 0)?;
    let req = pb::PublishApiRequest { channel: args.channel.clone(), data, idempotency_key };
    let api = Api::connect(&args.grpc).await?;
    let reply = api
        .call("publish", |mut c| {
            let req = req.clone();
            async move { c.publish(req).await }
        })
        .await?;
    let mut line = serde_json::json!({ "channel": args.channel });
    position_fields(&mut line, reply.offset, &reply.epoch);
    println!("{line}");
    Ok(())
}

/// One JSON line for a session.
pub fn session_line(s: &pb::SessionInfo) -> String {
    let mut line = serde_json::json!({
        "session": s.session,
        "user": s.user,
        "gateway": s.gateway,
        "channels": s.channels,
        "connected_at_ms": s.connected_at_ms,
        "client": s.client_name,
    });
    if let Some(info) = json_value(&s.info) {
        line["info"] = info;
    }
    line.to_string()
}

/// The JSON line `sub` prints for a `join` or `leave` push:
/// `{"join":{"channel":…,"client":{"session":…,"user":…,"info":…}}}`.
pub fn join_leave_line(kind: &str, channel: &str, c: &pb::ClientInfo) -> String {
    let mut client = serde_json::json!({ "session": c.session, "user": c.user });
    if let Some(info) = json_value(&c.info) {
        client["info"] = info;
    }
    serde_json::json!({ kind: { "channel": channel, "client": client } }).to_string()
}

/// A token claim's JSON text as a value (`None` when empty or not JSON).
fn json_value(bytes: &[u8]) -> Option<serde_json::Value> {
    (!bytes.is_empty()).then(|| serde_json::from_slice(bytes).ok()).flatten()
}

/// `switchboard sessions`: every session (or one user's), one JSON line each.
pub async fn sessions(args: SessionsArgs) -> anyhow::Result<()> {
    let api = Api::connect(&args.grpc).await?;
    let mut page_token = String::new();
    loop {
        let req = pb::ListSessionsRequest {
            user: args.user.clone().unwrap_or_default(),
            page_size: 1000,
            page_token: page_token.clone(),
        };
        let page = api
            .call("list sessions", |mut c| {
                let req = req.clone();
                async move { c.list_sessions(req).await }
            })
            .await?;
        for s in &page.sessions {
            println!("{}", session_line(s));
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}

/// `switchboard presence CHANNEL`: the channel's sessions, one JSON line each.
pub async fn presence(args: PresenceArgs) -> anyhow::Result<()> {
    channel(&args.channel)?;
    let api = Api::connect(&args.grpc).await?;
    let req = pb::PresenceRequest { channel: args.channel };
    let reply = api
        .call("presence", |mut c| {
            let req = req.clone();
            async move { c.presence(req).await }
        })
        .await?;
    for s in &reply.sessions {
        println!("{}", session_line(s));
    }
    Ok(())
}

/// `switchboard send --user U | --session S DATA`: prints `{"sent":true,"sessions":1}`, or
/// `{"sent":true}` for a user, whose sessions are not counted (SendToUser is fire and forget).
pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let data = json_data(&args.data)?;
    let line = match (args.target.session, args.target.user) {
        (Some(session), _) => {
            let api = Api::connect(&args.grpc).await?;
            let req = pb::SendToSessionRequest { session, data };
            let reply = api
                .call("send", |mut c| {
                    let req = req.clone();
                    async move { c.send_to_session(req).await }
                })
                .await?;
            serde_json::json!({ "sent": true, "sessions": reply.sessions })
        }
        (None, Some(user)) => {
            let api = Api::connect(&args.grpc).await?;
            let req = pb::SendToUserRequest { user, data };
            api.call("send", |mut c| {
                let req = req.clone();
                async move { c.send_to_user(req).await }
            })
            .await?;
            serde_json::json!({ "sent": true })
        }
        (None, None) => return Err(UsageError("give --session or --user".into()).into()),
    };
    println!("{line}");
    Ok(())
}

/// `switchboard disconnect --user U | --session S`.
pub async fn disconnect(args: DisconnectArgs) -> anyhow::Result<()> {
    use pb::disconnect_request::Target;
    let target = match (args.target.session, args.target.user) {
        (Some(s), _) => Target::Session(s),
        (None, Some(u)) => Target::User(u),
        (None, None) => return Err(UsageError("give --session or --user".into()).into()),
    };
    if !(4000..=4999).contains(&args.code) {
        return Err(UsageError(format!("--code {} is outside 4000..=4999", args.code)).into());
    }
    let api = Api::connect(&args.grpc).await?;
    let req = pb::DisconnectRequest { target: Some(target), code: args.code, reason: args.reason };
    api.call("disconnect", |mut c| {
        let req = req.clone();
        async move { c.disconnect(req).await }
    })
    .await?;
    println!("{}", serde_json::json!({ "disconnected": true }));
    Ok(())
}

/// Connects, retrying what may pass (a temporary error reply, a close code that allows
/// reconnecting) with backoff until `config.connect_timeout` has passed.
async fn connect(config: &ClientConfig) -> anyhow::Result<Client> {
    let deadline = Instant::now() + config.connect_timeout;
    let mut attempt = 0;
    loop {
        let mut this = config.clone();
        this.connect_timeout = deadline.saturating_duration_since(Instant::now());
        let e = match Client::connect(this).await {
            Ok(client) => return Ok(client),
            Err(e) => e,
        };
        let delay = backoff(config, attempt);
        if !e.is_temporary() || Instant::now() + delay >= deadline {
            return Err(connect_error(&config.url, config.connect_timeout, e));
        }
        tracing::debug!(error = %e, attempt, "connect failed, retrying");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// A failed connect as one line a person can act on.
fn connect_error(url: &str, timeout: Duration, e: ClientError) -> anyhow::Error {
    let wrong_path = url.parse::<hyper::Uri>().is_ok_and(|u| u.path() != "/ws");
    match e {
        ClientError::Url(_) => UsageError(e.to_string()).into(),
        ClientError::Timeout => no_answer(url, timeout, "a gateway"),
        ClientError::Handshake { found: NotWebSocket::Status { code, reason }, .. } if wrong_path => {
            anyhow!("{code} {reason} at {url}: the WebSocket endpoint is /ws")
        }
        ClientError::Handshake { found: NotWebSocket::Http2, .. } => {
            anyhow!("{e} (is this the gRPC port? a gateway's WebSocket URL is like ws://127.0.0.1:8080/ws)")
        }
        ClientError::Handshake { found: NotWebSocket::Nats, .. } => {
            anyhow!("{e} (is this the NATS port? a gateway's WebSocket URL is like ws://127.0.0.1:8080/ws)")
        }
        ClientError::Closed { code, reason } => anyhow!("{url} closed the session: {}", close_text(code, &reason)),
        ClientError::Disconnected => anyhow!("{url} dropped the connection during connect"),
        ClientError::Server { .. } => anyhow!("{url} refused the connect command: {e}"),
        e => anyhow!(e),
    }
}

/// `4501 unauthorized (the connect token was rejected; not retrying)`.
fn close_text(code: u16, reason: &str) -> String {
    let retry = if CloseCode::should_reconnect(code) { "gave up retrying" } else { "not retrying" };
    match CloseCode::from_code(code) {
        Some(c) => {
            let mut why = c.description.trim_end_matches('.').to_owned();
            if let Some(first) = why.get_mut(..1) {
                first.make_ascii_lowercase();
            }
            format!("{code}{} ({why}; {retry})", space_before(reason_or_table(code, reason)))
        }
        None => format!("{code}{} ({retry})", space_before(reason)),
    }
}

/// The close reason, or the table's for the code when the close frame carried none.
fn reason_or_table(code: u16, reason: &str) -> &str {
    match CloseCode::from_code(code) {
        Some(c) if reason.is_empty() => c.reason,
        _ => reason,
    }
}

fn space_before(s: &str) -> String {
    if s.is_empty() { String::new() } else { format!(" {s}") }
}

/// The expiry of `--timeout`, naming what should have answered.
fn no_answer(url: &str, timeout: Duration, what: &str) -> anyhow::Error {
    anyhow!("no answer from {url} within {} (is {what} or switchboard dev running there?)", human(timeout))
}

/// A duration as the flags take it: `5s`, `250ms`, `1.5s`.
pub(crate) fn human(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) && d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// A channel name checked against the grammar before anything is sent.
fn channel(s: &str) -> Result<Channel, UsageError> {
    Channel::parse(s).map_err(|e| UsageError(format!("invalid channel {s:?}: {e}")))
}

/// `--idempotency-key` checked as the API takes it (at most 256 bytes, no control
/// characters), with room for `suffix` more bytes; empty when not given.
fn idempotency_key(key: Option<&str>, suffix: usize) -> Result<String, UsageError> {
    let key = key.unwrap_or_default();
    let max = switchboard_control::MAX_IDEMPOTENCY_KEY_BYTES - suffix;
    if key.len() > max {
        return Err(UsageError(format!("--idempotency-key is longer than {max} bytes")));
    }
    if key.chars().any(char::is_control) {
        return Err(UsageError("--idempotency-key has a control character".into()));
    }
    Ok(key.to_owned())
}

/// DATA checked to be one JSON value before anything is sent.
fn json_data(s: &str) -> Result<Bytes, UsageError> {
    match serde_json::from_str::<&RawValue>(s) {
        Ok(_) => Ok(Bytes::from(s.to_owned())),
        Err(e) => Err(UsageError(format!("DATA must be one JSON value, e.g. '{{\"text\":\"hi\"}}' ({e})"))),
    }
}
