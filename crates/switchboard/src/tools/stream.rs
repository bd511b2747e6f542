//! `switchboard pub --stream`: every line of stdin published in order over one
//! `PublishStream` call.
//!
//! The lines are read by a thread of their own and sent as they come, at most [`QUEUE`]
//! waiting; the server's answers are read all along, so neither side waits on the other.
//! `--timeout` bounds the open and the wait for each answer.

use std::io::{BufRead, Write};

use anyhow::anyhow;
use switchboard_wire::pb::{self, publish_stream_reply::Result as Outcome};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Code;

use super::api::{Api, failed};
use super::{channel, idempotency_key, json_data};
use crate::UsageError;
use crate::cli::PubArgs;

/// Requests queued towards the server, and lines read ahead of them.
const QUEUE: usize = 1024;
/// The longest `-{line}` suffix a key gets.
const KEY_SUFFIX: usize = 21;

/// Prints `{"line":…,"channel":…,"offset":…,"epoch":…}` per publication, in order; a line
/// whose publish failed is named on stderr and the rest go on (exit status 1 at the end).
/// A line that is not JSON stops the reading: what came before is published and answered,
/// then the tool exits with status 64.
pub async fn publish_stream(args: PubArgs) -> anyhow::Result<()> {
    channel(&args.channel)?;
    let key = idempotency_key(args.idempotency_key.as_deref(), KEY_SUFFIX)?;
    let api = Api::connect(&args.grpc).await?;
    let (tx, mut replies) = api.publish_stream(QUEUE).await?;
    let mut lines = stdin_lines();
    let mut tx = Some(tx);
    let mut pending: Option<pb::PublishStreamRequest> = None;
    let (mut number, mut outstanding, mut published, mut failures) = (0u64, 0u64, 0u64, 0u64);
    let mut bad_line: Option<UsageError> = None;
    // Since when the oldest unanswered request waits, at the latest.
    let mut waiting_since = Instant::now();
    let mut stdout = std::io::stdout().lock();
    loop {
        // A clone for this turn, so that a branch may drop `tx` (closing our side).
        let sender = tx.clone();
        tokio::select! {
            reply = replies.message() => match reply {
                Ok(Some(reply)) => {
                    outstanding = outstanding.saturating_sub(1);
                    waiting_since = Instant::now();
                    match reply.result {
                        Some(Outcome::Ok(p)) => {
                            published += 1;
                            let mut line = serde_json::json!({ "line": reply.id, "channel": args.channel });
                            super::position_fields(&mut line, p.offset, &p.epoch);
                            writeln!(stdout, "{line}")?;
                        }
                        Some(Outcome::Error(e)) => {
                            failures += 1;
                            let code = Code::from_i32(e.code);
                            eprintln!("line {}: {}", reply.id, failed("publish", code, &e.message, ""));
                        }
                        None => return Err(anyhow!("line {}: an answer without a result", reply.id)),
                    }
                }
                Ok(None) => break,
                Err(status) => return Err(api.stream_error("publish stream", status).await),
            },
            line = lines.recv(), if tx.is_some() && pending.is_none() => match line {
                None => tx = None,
                Some(Err(e)) => return Err(anyhow!("cannot read stdin: {e}")),
                Some(Ok(text)) => {
                    number += 1;
                    if text.trim().is_empty() {
                        continue;
                    }
                    match json_data(text.trim()) {
                        Ok(data) => {
                            let idempotency_key = if key.is_empty() { String::new() } else { format!("{key}-{number}") };
                            let channel = args.channel.clone();
                            pending = Some(pb::PublishStreamRequest { id: number, channel, data, idempotency_key });
                        }
                        Err(e) => {
                            bad_line = Some(UsageError(format!("line {number}: {e}")));
                            tx = None;
                        }
                    }
                }
            },
            permit = async { sender.as_ref().expect("checked").reserve().await }, if sender.is_some() && pending.is_some() => {
                match permit {
                    Ok(permit) => {
                        if outstanding == 0 {
                            waiting_since = Instant::now();
                        }
                        permit.send(pending.take().expect("checked"));
                        outstanding += 1;
                    }
                    // The server closed the call: its status comes on the replies.
                    Err(_) => tx = None,
                }
            },
            _ = tokio::time::sleep_until(waiting_since + api.timeout()), if outstanding > 0 => {
                return Err(api.no_answer());
            }
        }
        stdout.flush()?;
    }
    if outstanding > 0 {
        return Err(anyhow!("the stream ended with {outstanding} publications unanswered"));
    }
    if let Some(e) = bad_line {
        return Err(e.into());
    }
    if failures > 0 {
        return Err(anyhow!("{failures} of {} publications failed", failures + published));
    }
    Ok(())
}

/// The lines of stdin, read by a thread (blocking reads, as a terminal or a pipe gives them).
fn stdin_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}
