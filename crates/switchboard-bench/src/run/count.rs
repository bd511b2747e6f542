//! Adding up what every connection saw: losses per stream against what was published,
//! duplicates, reorders, and how connections ended.

use std::sync::atomic::Ordering::Relaxed;

use super::{Ctx, Plan};
use crate::accounting::Tally;
use crate::conn::{End, Outcome};

/// What the outcomes add up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub tally: Tally,
    pub lost: u64,
    pub lost_after_disconnect: u64,
    pub expected: u64,
    pub slow_consumer: u64,
    pub other_disconnects: u64,
    pub disconnect_codes: std::collections::BTreeMap<String, u64>,
}

pub fn count(ctx: &Ctx, plan: &Plan, outcomes: &[Outcome]) -> Counts {
    let mut c = Counts::default();
    for o in outcomes.iter().filter(|o| o.connected) {
        c.tally.add(o.tally);
        match &o.end {
            None => {}
            Some(End::Closed { slow: true, .. }) => c.slow_consumer += 1,
            Some(_) => c.other_disconnects += 1,
        }
        if let Some(end) = &o.end {
            *c.disconnect_codes.entry(other_key(end)).or_default() += 1;
        }
        let Some(ch) = o.role.subscribe else { continue };
        for k in 0..plan.publishers_per_channel[ch] as usize {
            let published = ctx.published[ch][k].load(Relaxed);
            let missing = o.streams.get(k).map_or(published, |s| s.lost(published));
            if missing > 0 {
                tracing::debug!(channel = ch, k, published, missing, stream = ?o.streams.get(k), end = ?o.end, "missing");
            }
            if o.end.is_some() {
                c.lost_after_disconnect += missing;
            } else {
                c.lost += missing;
                c.expected += published;
            }
        }
    }
    c
}

fn other_key(end: &End) -> String {
    match end {
        End::Closed { code: Some(code), .. } => code.to_string(),
        End::Closed { code: None, slow: true } => "slow".into(),
        End::Closed { code: None, slow: false } => "closed".into(),
        End::Eof => "eof".into(),
        End::Error(_) => "error".into(),
    }
}
