//! The progress line on stderr while a run goes on.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::run::{Ctx, Phase};

/// One line on stderr per second while the run goes on (overwritten in a terminal).
pub async fn run(ctx: Arc<Ctx>, connections: usize) {
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut phase = ctx.phase.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = phase.wait_for(|p| *p == Phase::Stop) => break,
        }
        let delivered = ctx.delivered.load(Relaxed);
        let published: u64 = ctx.published.iter().flatten().map(|p| p.load(Relaxed)).sum();
        let line = format!(
            "[{:>4}s] {:<7} connected {}/{} failed {}  published {}  delivered {} ({}/s)",
            start.elapsed().as_secs(),
            format!("{:?}", *ctx.phase.borrow()).to_lowercase(),
            ctx.connected.load(Relaxed),
            connections,
            ctx.failed.load(Relaxed),
            published,
            delivered,
            delivered - last,
        );
        last = delivered;
        if tty {
            eprint!("\r{line:<100}");
        } else if start.elapsed().as_secs().is_multiple_of(5) {
            eprintln!("{line}");
        }
    }
    if tty {
        eprintln!();
    }
}
