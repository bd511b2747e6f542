//! Client tools: `switchboard sub` and `switchboard pub`.

use std::io::Write;

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard_client::{Client, ClientConfig, Event};
use switchboard_wire::Encoding;
use switchboard_wire::pb::{self, switchboard_api_client::SwitchboardApiClient};

use crate::cli::{PubArgs, SubArgs};

/// Prints one JSON line per publication: `{"channel":…,"offset":…,"epoch":…,"data":…}`
/// (`b64data` instead of `data` when the data is not JSON).
pub async fn sub(args: SubArgs) -> anyhow::Result<()> {
    let encoding = if args.protobuf { Encoding::Protobuf } else { Encoding::Json };
    let mut client = Client::connect(ClientConfig::new(&args.url).encoding(encoding))
        .await
        .with_context(|| format!("cannot connect to {}", args.url))?;
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
    let mut api = SwitchboardApiClient::connect(args.grpc.clone())
        .await
        .with_context(|| format!("cannot connect to {}", args.grpc))?;
    let reply = api
        .publish(pb::PublishApiRequest { channel: args.channel.clone(), data: Bytes::from(args.data.into_bytes()) })
        .await
        .map_err(|s| anyhow::anyhow!("publish failed: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    println!("{}", serde_json::json!({ "channel": args.channel, "offset": reply.offset, "epoch": reply.epoch }));
    Ok(())
}
