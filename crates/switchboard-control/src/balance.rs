//! Balance after a membership change: moves clients from gateways holding more than their
//! share of the sessions to the others, by asking the loaded gateways to close some of
//! their sessions (4009 "rebalance") so their clients reconnect through the load balancer.
//!
//! Rules, with the defaults of [`BalanceConfig`]:
//! - exactly one replica decides: the owner of shard [`DECIDER_SHARD`] in the ring; a
//!   replica loss or a new replica moves the duty with the shard. A replica that becomes
//!   the decider waits one window and `settle` before its first round, since it does not
//!   know what the previous decider asked;
//! - every `interval` (5 s) the decider reads the latest heartbeats (sessions, start time,
//!   draining) of the gateways heard within 3 s (one that exited drops out of the round
//!   then, long before its lease) and runs [`Balancer::round`], which calls the pure
//!   [`decide`];
//! - a round is held while any gateway drains (a rollout is moving clients already, and a
//!   client moved now could land on the next gateway to drain), while any gateway is younger
//!   than `warmup` (15 s: it may not be in the load balancer's rotation yet, and a young
//!   gateway is never asked to shed what a drain just sent it), and until `window` and
//!   `settle` (2 s) passed since the last round that asked (its clients are still moving, and
//!   the heartbeats must show where they went): no gateway is asked twice within a window;
//! - otherwise, when some gateway's sessions differ from the mean by more than
//!   `tolerance_percent` (10%) of the mean and by at least `min_difference` (10), every
//!   gateway above the mean is asked to close its excess times `n / k` (`n` gateways, `k`
//!   of them below the mean: a load balancer that spreads reconnects evenly sends
//!   `1 - k / n` of them back to the gateways above the mean), capped at
//!   `max_share_percent` (25%) of its sessions per round;
//! - the gateway picks that many sessions at random and closes each at a random moment
//!   within `window` (10 s), so reconnects spread out.
//!
//! With an even load balancer, a gateway added to `n - 1` equal ones is within 10% of the
//! mean after about five rounds (three at `max_share_percent` 50%): `decide`'s tests
//! simulate it.
//! Clients with recovery lose nothing: they resume each history channel where they were.

use std::sync::Arc;
use std::time::Duration;

use switchboard_bus::{Address, Message};
use switchboard_wire::pb;
use tokio::time::{Instant, MissedTickBehavior};

use crate::metrics;
use crate::state::{Shared, unix_ms};

/// The registry shard whose owner runs the rounds.
pub const DECIDER_SHARD: u16 = 0;

/// Time after a window for the last reconnects to land and the gateways' heartbeats (one a
/// second) to count them, before the next round reads the loads: the default of
/// [`BalanceConfig::settle`].
pub const SETTLE: Duration = Duration::from_secs(2);

/// A gateway heard from longer ago than this is left out of a round (it is likely gone;
/// its lease drops it later).
const FRESH: Duration = Duration::from_secs(3);

/// How sessions are balanced across gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceConfig {
    /// Run rounds at all. Default true.
    pub enabled: bool,
    /// How often the deciding replica looks at the loads. Default 5 s.
    pub interval: Duration,
    /// A gateway is out of balance when its sessions differ from the mean by more than
    /// this percentage of the mean (and by `min_difference`). Default 10.
    pub tolerance_percent: u32,
    /// ... and by at least this many sessions, so small clusters do not churn. Default 10.
    pub min_difference: u32,
    /// The most of a gateway's sessions one round asks to move, in percent. Default 25.
    pub max_share_percent: u32,
    /// A gateway spreads the closes of one round over this window; no round follows
    /// within it. Default 10 s.
    pub window: Duration,
    /// Rounds wait while a gateway is younger than this. Default 15 s.
    pub warmup: Duration,
    /// Added to `window` before the next round: two of the gateways' heartbeats (they beat
    /// every second), so the loads show where the moved clients went. Not a configuration
    /// key: it follows the gateway's fixed heartbeat; tests shorten it. Default [`SETTLE`].
    pub settle: Duration,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            enabled: true,
            interval: Duration::from_secs(5),
            tolerance_percent: 10,
            min_difference: 10,
            max_share_percent: 25,
            window: Duration::from_secs(10),
            warmup: Duration::from_secs(15),
            settle: SETTLE,
        }
    }
}

impl BalanceConfig {
    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("balance.interval must be positive".into());
        }
        if self.tolerance_percent == 0 || self.tolerance_percent > 100 {
            return Err(format!("balance.tolerance_percent ({}) must be 1 to 100", self.tolerance_percent));
        }
        if self.max_share_percent == 0 || self.max_share_percent > 100 {
            return Err(format!("balance.max_share_percent ({}) must be 1 to 100", self.max_share_percent));
        }
        if self.window > Duration::from_millis(u32::MAX as u64) {
            return Err(format!("balance.window ({:?}) is too long", self.window));
        }
        Ok(())
    }
}

/// One gateway's load as its latest heartbeat told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayLoad {
    pub gateway: Arc<str>,
    pub sessions: u32,
    /// Since the gateway process started.
    pub age: Duration,
    pub draining: bool,
}

/// A gateway asked to move this many of its sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub gateway: Arc<str>,
    pub sessions: u32,
}

/// Why a round asked nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Fewer than two gateways.
    TooFew,
    /// A gateway drains.
    Draining,
    /// A gateway is younger than the warm-up.
    Warming,
    /// The clients of the last round (or of the previous decider's) may still be moving.
    Moving,
    /// Every gateway is within the tolerance (or the minimum difference).
    Balanced,
}

/// What the loads call for, membership being steady: the pure part of a round.
pub fn decide(loads: &[GatewayLoad], c: &BalanceConfig) -> Result<Vec<Ask>, Hold> {
    if loads.len() < 2 {
        return Err(Hold::TooFew);
    }
    if loads.iter().any(|g| g.draining) {
        return Err(Hold::Draining);
    }
    if loads.iter().any(|g| g.age < c.warmup) {
        return Err(Hold::Warming);
    }
    let n = loads.len() as f64;
    let mean = loads.iter().map(|g| g.sessions as f64).sum::<f64>() / n;
    let out = |s: u32| {
        let d = (s as f64 - mean).abs();
        d > mean * c.tolerance_percent as f64 / 100.0 && d >= c.min_difference as f64
    };
    if !loads.iter().any(|g| out(g.sessions)) {
        return Err(Hold::Balanced);
    }
    let below = loads.iter().filter(|g| (g.sessions as f64) < mean).count().max(1) as f64;
    let asks: Vec<Ask> = loads
        .iter()
        .filter(|g| g.sessions as f64 > mean)
        .filter_map(|g| {
            let want = ((g.sessions as f64 - mean) * n / below).round() as u64;
            let cap = g.sessions as u64 * c.max_share_percent as u64 / 100;
            let sessions = want.min(cap) as u32;
            (sessions > 0).then(|| Ask { gateway: g.gateway.clone(), sessions })
        })
        .collect();
    if asks.is_empty() { Err(Hold::Balanced) } else { Ok(asks) }
}

/// The decider's memory between rounds.
#[derive(Debug)]
pub struct Balancer {
    config: BalanceConfig,
    /// No round before this: the last asked clients may still be moving.
    quiet_until: Instant,
}

// === impl Balancer ===

impl Balancer {
    /// A replica that just became the decider: its first round comes after one window and
    /// `settle`, in case the previous decider has just asked.
    pub fn new(config: BalanceConfig, now: Instant) -> Self {
        let quiet_until = now + config.window + config.settle;
        Balancer { config, quiet_until }
    }

    /// One round at `now`: the asks to send, or why there are none.
    pub fn round(&mut self, loads: &[GatewayLoad], now: Instant) -> Result<Vec<Ask>, Hold> {
        if now < self.quiet_until {
            return Err(Hold::Moving);
        }
        let asks = decide(loads, &self.config)?;
        self.quiet_until = now + self.config.window + self.config.settle;
        Ok(asks)
    }
}

/// The gateways' loads from this replica's membership, leaving out those not heard lately.
fn loads(shared: &Shared) -> Vec<GatewayLoad> {
    let now_ms = unix_ms();
    let heard = shared.membership().gateway_heartbeats(Instant::now(), FRESH);
    heard
        .into_iter()
        .map(|hb| GatewayLoad {
            gateway: Arc::from(hb.gateway.as_str()),
            sessions: hb.sessions,
            age: Duration::from_millis(now_ms.saturating_sub(hb.started_at_ms).max(0) as u64),
            draining: hb.draining,
        })
        .collect()
}

/// Runs rounds every `interval` while this replica owns [`DECIDER_SHARD`].
pub(crate) async fn run_balance(shared: Arc<Shared>) {
    let config = shared.config.balance.clone();
    if !config.enabled {
        return;
    }
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut balancer: Option<Balancer> = None;
    loop {
        tick.tick().await;
        let deciding = shared.membership().owner(DECIDER_SHARD).is_some_and(|o| o == shared.id);
        if !deciding {
            balancer = None;
            continue;
        }
        let now = Instant::now();
        let b = balancer.get_or_insert_with(|| {
            tracing::info!(replica = %shared.id, "this replica now balances sessions across gateways");
            Balancer::new(config.clone(), now)
        });
        let loads = loads(&shared);
        let asks = match b.round(&loads, now) {
            Ok(asks) => asks,
            Err(hold) => {
                tracing::trace!(?hold, "balance: no round");
                continue;
            }
        };
        metrics::balance_round();
        for ask in asks {
            tracing::info!(gateway = %ask.gateway, sessions = ask.sessions, "balance: asking a gateway to move sessions");
            shed(&shared, ask, config.window).await;
        }
    }
}

/// Sends one ask to its gateway's node subject and counts what the gateway took on.
async fn shed(shared: &Shared, ask: Ask, window: Duration) {
    let command = pb::GatewayCommand {
        target: None,
        action: Some(pb::gateway_command::Action::Shed(pb::ShedAction {
            sessions: ask.sessions,
            window_ms: window.as_millis() as u32,
        })),
    };
    let to = Address::Node(ask.gateway.clone());
    let sent = shared.bus.request(&to, Message::proto(&command), shared.config.query_timeout).await;
    match sent.map(|m| m.decode::<pb::GatewayCommandReply>()) {
        Ok(Ok(reply)) if reply.error.is_empty() => metrics::balance_asked(reply.sessions),
        Ok(Ok(reply)) => tracing::info!(gateway = %ask.gateway, error = %reply.error, "balance: gateway declined"),
        Ok(Err(e)) => tracing::warn!(gateway = %ask.gateway, error = %e, "balance: undecodable reply"),
        Err(e) => tracing::warn!(gateway = %ask.gateway, error = %e, "balance: ask not delivered"),
    }
}

#[cfg(test)]
mod tests;
