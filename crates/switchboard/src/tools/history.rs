//! `switchboard history` and `switchboard history-remove`.

use std::io::Write;

use switchboard_control::MAX_HISTORY_LIMIT;
use switchboard_wire::pb;

use super::api::Api;
use super::{channel, publication_line};
use crate::cli::{HistoryArgs, HistoryRemoveArgs};

/// Prints up to `--limit` publications, one JSON line each as `sub` prints them, reading
/// pages of at most [`MAX_HISTORY_LIMIT`]; says on stderr when the history does not
/// continue from `--since`.
pub async fn history(args: HistoryArgs) -> anyhow::Result<()> {
    channel(&args.channel)?;
    let api = Api::connect(&args.grpc).await?;
    let mut since = match (args.since, args.epoch) {
        (Some(offset), Some(epoch)) => Some(pb::HistoryPosition { offset, epoch }),
        _ => None,
    };
    let mut stdout = std::io::stdout().lock();
    let mut left = args.limit;
    while left > 0 {
        let limit = left.min(u64::from(MAX_HISTORY_LIMIT)) as u32;
        let req =
            pb::HistoryApiRequest { channel: args.channel.clone(), since: since.clone(), limit, reverse: args.reverse };
        let page = api
            .call("history", |mut c| {
                let req = req.clone();
                async move { c.history(req).await }
            })
            .await?;
        if !page.continuous
            && let Some(from) = &since
        {
            let kept = if args.reverse { "newest" } else { "oldest" };
            eprintln!(
                "history: not continuous from offset {} of epoch {:?} (trimmed or removed since, or another epoch); \
                 printing the {kept} kept",
                from.offset, from.epoch
            );
        }
        for p in &page.publications {
            let p = pb::Publication {
                channel: args.channel.clone(),
                offset: p.offset,
                epoch: p.epoch.clone(),
                data: p.data.clone(),
            };
            writeln!(stdout, "{}", publication_line(&p))?;
        }
        stdout.flush()?;
        let got = page.publications.len() as u64;
        let Some(last) = page.publications.last() else { break };
        if got < u64::from(limit) {
            break;
        }
        left -= got;
        since = Some(pb::HistoryPosition { offset: last.offset, epoch: last.epoch.clone() });
    }
    Ok(())
}

/// Removes the channel's history and prints `{"removed":true}`.
pub async fn history_remove(args: HistoryRemoveArgs) -> anyhow::Result<()> {
    channel(&args.channel)?;
    let api = Api::connect(&args.grpc).await?;
    let req = pb::HistoryRemoveApiRequest { channel: args.channel };
    api.call("history remove", |mut c| {
        let req = req.clone();
        async move { c.history_remove(req).await }
    })
    .await?;
    println!("{}", serde_json::json!({ "removed": true }));
    Ok(())
}
