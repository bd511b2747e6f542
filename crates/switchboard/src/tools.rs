//! Client tools: `switchboard sub` and `switchboard pub`.

use std::io::Write;

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard_client::{Client, ClientConfig, Event};
use switchboard_wire::Encoding;
use switchboard_wire::pb::{self, switchboard_api_client::SwitchboardApiClient};

use crate::cli::{DisconnectArgs, PresenceArgs, PubArgs, SendArgs, SessionsArgs, SubArgs};

/// Prints one JSON line per publication: `{"channel":…,"offset":…,"epoch":…,"data":…}`
/// (`b64data` instead of `data` when the data is not JSON).
pub async fn sub(args: SubArgs) -> anyhow::Result<()> {
    let encoding = if args.protobuf { Encoding::Protobuf } else { Encoding::Json };
    let mut config = ClientConfig::new(&args.url).encoding(encoding);
    config.token = args.token.clone();
    let mut client = Client::connect(config).await.with_context(|| format!("cannot connect to {}", args.url))?;
    for channel in &args.channels {
        client.subscribe(channel).await.with_context(|| format!("cannot subscribe to {channel}"))?;
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
            Event::Disconnected { code, reason, reconnecting } => {
                eprintln!("disconnected (code {code:?} {reason}){}", if reconnecting { ", reconnecting" } else { "" });
                if !reconnecting {
                    bail!("connection closed");
                }
            }
            Event::Connected { session } => tracing::info!(%session, "connected"),
            Event::Message(data) => tracing::info!(data = %String::from_utf8_lossy(&data), "message from a backend"),
            Event::Subscribed { channel, .. } => tracing::info!(%channel, "subscribed by a backend"),
            Event::Unsubscribed { channel } => tracing::info!(%channel, "unsubscribed by a backend"),
        }
    }
    client.close().await;
    Ok(())
}

/// The JSON line `sub` prints for a publication.
pub fn publication_line(p: &pb::Publication) -> String {
    use base64::Engine as _;
    let mut line = serde_json::json!({ "channel": p.channel, "offset": p.offset, "epoch": p.epoch });
    match serde_json::from_slice::<&RawValue>(&p.data) {
        Ok(raw) => line["data"] = serde_json::from_str(raw.get()).expect("valid json"),
        Err(_) => line["b64data"] = base64::engine::general_purpose::STANDARD.encode(&p.data).into(),
    }
    line.to_string()
}

/// Publishes through gRPC and prints `{"offset":…,"epoch":…}`.
pub async fn publish(args: PubArgs) -> anyhow::Result<()> {
    serde_json::from_str::<&RawValue>(&args.data).context("DATA must be one JSON value, e.g. '{\"text\":\"hi\"}'")?;
    let mut api = api(&args.grpc.grpc).await?;
    let reply = api
        .publish(pb::PublishApiRequest { channel: args.channel.clone(), data: Bytes::from(args.data.into_bytes()) })
        .await
        .map_err(|s| anyhow::anyhow!("publish failed: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    println!("{}", serde_json::json!({ "channel": args.channel, "offset": reply.offset, "epoch": reply.epoch }));
    Ok(())
}

async fn api(url: &str) -> anyhow::Result<SwitchboardApiClient<tonic::transport::Channel>> {
    SwitchboardApiClient::connect(url.to_owned()).await.with_context(|| format!("cannot connect to {url}"))
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

/// One JSON line for a session.
pub fn session_line(s: &pb::SessionInfo) -> String {
    serde_json::json!({
        "session": s.session,
        "user": s.user,
        "gateway": s.gateway,
        "channels": s.channels,
        "connected_at_ms": s.connected_at_ms,
        "client": s.client_name,
    })
    .to_string()
}

/// `switchboard sessions`: every session (or one user's), one JSON line each.
pub async fn sessions(args: SessionsArgs) -> anyhow::Result<()> {
    let mut api = api(&args.grpc.grpc).await?;
    let mut page_token = String::new();
    loop {
        let page = api
            .list_sessions(pb::ListSessionsRequest {
                user: args.user.clone().unwrap_or_default(),
                page_size: 1000,
                page_token: page_token.clone(),
            })
            .await
            .map_err(status)?
            .into_inner();
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
    let mut api = api(&args.grpc.grpc).await?;
    let reply = api.presence(pb::PresenceRequest { channel: args.channel }).await.map_err(status)?.into_inner();
    for s in &reply.sessions {
        println!("{}", session_line(s));
    }
    Ok(())
}

/// `switchboard send --user U | --session S DATA`.
pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    serde_json::from_str::<&RawValue>(&args.data).context("DATA must be one JSON value")?;
    let mut api = api(&args.grpc.grpc).await?;
    let data = Bytes::from(args.data.into_bytes());
    let sessions = match (args.target.session, args.target.user) {
        (Some(session), _) => {
            api.send_to_session(pb::SendToSessionRequest { session, data }).await.map_err(status)?.into_inner().sessions
        }
        (None, Some(user)) => {
            api.send_to_user(pb::SendToUserRequest { user, data }).await.map_err(status)?.into_inner().sessions
        }
        (None, None) => bail!("give --session or --user"),
    };
    println!("{}", serde_json::json!({ "sent": true, "sessions": sessions }));
    Ok(())
}

/// `switchboard disconnect --user U | --session S`.
pub async fn disconnect(args: DisconnectArgs) -> anyhow::Result<()> {
    use pb::disconnect_request::Target;
    let target = match (args.target.session, args.target.user) {
        (Some(s), _) => Target::Session(s),
        (None, Some(u)) => Target::User(u),
        (None, None) => bail!("give --session or --user"),
    };
    let mut api = api(&args.grpc.grpc).await?;
    api.disconnect(pb::DisconnectRequest { target: Some(target), code: args.code, reason: args.reason })
        .await
        .map_err(status)?;
    println!("{}", serde_json::json!({ "disconnected": true }));
    Ok(())
}
