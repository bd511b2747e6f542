//! Limits per client: connections per client IP and per user, the upgrade rate per client
//! IP, the `Origin` allowlist, and each session's message and byte rates.
//!
//! Lock rules: the per-IP and per-user counts are sharded maps (`DashMap`) touched once
//! when a connection or session starts and once when it ends (a [`Slot`] dropped), never
//! per message. The upgrade rate is governor's keyed GCRA limiter, also sharded, touched
//! once per upgrade; a task prunes it every second ([`PRUNE_INTERVAL`]) of the addresses
//! whose bucket has refilled, so addresses that stopped trying cost nothing, and an
//! attacker with many addresses holds at most what it sent in the last few seconds.
//! A session's message and byte rates are two small GCRA buckets kept in the session
//! itself ([`Flow`]): a message costs a few integer operations and no shared state.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use hyper::StatusCode;
use hyper::header::{self, HeaderMap};
use metrics::Counter;
use switchboard_wire::{CloseCode, ErrorCode};
use tokio::time::Instant;

use crate::client_ip::{TrustedProxies, limit_key};
use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::origin::Origins;

/// How often the upgrade-rate limiter forgets the addresses whose bucket is full again.
pub(crate) const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// The gateway's limits, built once from the config.
pub(crate) struct Limits {
    trusted: TrustedProxies,
    origins: Origins,
    per_ip: Option<Arc<Counts<IpAddr>>>,
    per_user: Option<Arc<Counts<Box<str>>>>,
    connect_rate: Option<Arc<ConnectRate>>,
    messages: Option<Rate>,
    bytes: Option<Rate>,
    max_channel_len: usize,
    /// Time zero of every session's buckets.
    epoch: Instant,
    hits: Hits,
}

/// Why an upgrade was refused: the HTTP answer.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) body: &'static str,
    /// Seconds, for `Retry-After`.
    pub(crate) retry_after: Option<u64>,
}

/// A connection's client, and the counts it holds until it ends.
pub(crate) struct Client {
    /// Where the connection comes from (see `client_ip`).
    pub(crate) ip: IpAddr,
    _ip: Option<Slot<IpAddr>>,
    user: Option<Slot<Box<str>>>,
}

/// What to do with a client message, by the session's rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Run,
    /// Answer error 109 and do not run it; the text says which rate.
    Refuse(&'static str),
    /// The client kept sending at more than twice a rate: close with 4008.
    Close,
}

/// A session's message and byte buckets (nanoseconds since [`Limits`]' epoch).
#[derive(Debug, Default)]
pub(crate) struct Flow {
    messages: Bucket,
    bytes: Bucket,
}

/// One rate's theoretical arrival times: of what passed, and of what was refused.
#[derive(Debug, Default)]
struct Bucket {
    passed: u64,
    refused: u64,
}

/// A rate with a burst, in units (messages or bytes) per second.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_sec: u64,
    /// How far ahead of now a bucket may run: the burst's worth of time.
    tolerance: u64,
}

/// One holder of a count in [`Counts`]; dropping it gives the count back.
pub(crate) struct Slot<K: Hash + Eq> {
    counts: Arc<Counts<K>>,
    key: K,
}

struct Counts<K: Hash + Eq> {
    max: usize,
    held: DashMap<K, usize>,
}

struct Hits {
    per_ip: Counter,
    per_user: Counter,
    connect_rate: Counter,
    origin: Counter,
    message_rate: Counter,
    byte_rate: Counter,
    channel_len: Counter,
}

// === impl Limits ===

impl Limits {
    /// Builds the limits and, when the upgrade rate is limited, spawns its pruner (which
    /// ends when the limits are dropped).
    pub(crate) fn new(config: &GatewayConfig, metrics: &Metrics) -> Self {
        let connect_rate = NonZeroU32::new(config.connect_rate_per_ip).map(|rate| {
            let burst = NonZeroU32::new(config.connect_burst_per_ip).unwrap_or(NonZeroU32::MIN);
            Arc::new(ConnectRate::new(rate, burst, DefaultClock::default()))
        });
        if let Some(limiter) = &connect_rate {
            tokio::spawn(run_pruner(Arc::downgrade(limiter)));
        }
        fn counts<K: Hash + Eq>(max: usize) -> Option<Arc<Counts<K>>> {
            (max > 0).then(|| Arc::new(Counts { max, held: DashMap::new() }))
        }
        Limits {
            trusted: TrustedProxies::new(&config.trusted_proxies),
            origins: Origins::new(&config.allowed_origins),
            per_ip: counts(config.max_connections_per_ip),
            per_user: counts(config.max_connections_per_user),
            connect_rate,
            messages: Rate::new(u64::from(config.max_messages_per_sec), u64::from(config.message_burst)),
            bytes: Rate::new(config.max_bytes_per_sec, config.bytes_burst),
            max_channel_len: config.max_channel_len,
            epoch: Instant::now(),
            hits: Hits {
                per_ip: metrics.limit_connections_per_ip.clone(),
                per_user: metrics.limit_connections_per_user.clone(),
                connect_rate: metrics.limit_connect_rate.clone(),
                origin: metrics.limit_origin.clone(),
                message_rate: metrics.limit_message_rate.clone(),
                byte_rate: metrics.limit_byte_rate.clone(),
                channel_len: metrics.limit_channel_len.clone(),
            },
        }
    }

    /// Checks an upgrade from `peer`: its origin, its client's upgrade rate, and its
    /// client's connections; on success the client holds its per-IP count until dropped.
    pub(crate) fn admit_upgrade(&self, peer: IpAddr, headers: &HeaderMap) -> Result<Client, Refusal> {
        if !self.origins.allows(headers.get(header::ORIGIN)) {
            self.hits.origin.increment(1);
            return Err(Refusal { status: StatusCode::FORBIDDEN, body: "origin not allowed\n", retry_after: None });
        }
        let ip = self.trusted.client_ip(peer, headers);
        let key = limit_key(ip);
        if let Some(rate) = &self.connect_rate
            && let Err(wait) = rate.check(key)
        {
            self.hits.connect_rate.increment(1);
            return Err(Refusal {
                status: StatusCode::TOO_MANY_REQUESTS,
                body: "too many connection attempts from this address\n",
                retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            });
        }
        let slot = match &self.per_ip {
            None => None,
            Some(counts) => match counts.hold(key) {
                Some(slot) => Some(slot),
                None => {
                    self.hits.per_ip.increment(1);
                    return Err(Refusal {
                        status: StatusCode::TOO_MANY_REQUESTS,
                        body: "too many connections from this address\n",
                        retry_after: None,
                    });
                }
            },
        };
        Ok(Client { ip, _ip: slot, user: None })
    }

    /// Counts a connected session against its user (anonymous sessions are not counted);
    /// the count is held until the client is dropped.
    pub(crate) fn hold_user(&self, client: &mut Client, user: &str) -> Result<(), CloseCode> {
        let Some(counts) = &self.per_user else { return Ok(()) };
        if user.is_empty() || client.user.is_some() {
            return Ok(());
        }
        match counts.hold(user.into()) {
            Some(slot) => {
                client.user = Some(slot);
                Ok(())
            }
            None => {
                self.hits.per_user.increment(1);
                Err(CloseCode::TOO_MANY_CONNECTIONS)
            }
        }
    }

    /// Takes one message of `len` payload bytes, arriving at `now`, from a session's
    /// buckets.
    pub(crate) fn admit_message(&self, flow: &mut Flow, now: Instant, len: usize) -> Admit {
        let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let mut passed = [None, None];
        for (i, (rate, bucket, n)) in
            [(&self.messages, &mut flow.messages, 1), (&self.bytes, &mut flow.bytes, len as u64)]
                .into_iter()
                .enumerate()
        {
            let Some(rate) = rate else { continue };
            match rate.take(bucket.passed, now, n) {
                Some(tat) => passed[i] = Some(tat),
                None => {
                    let (hits, why) = match i {
                        0 => (&self.hits.message_rate, "message rate limit exceeded"),
                        _ => (&self.hits.byte_rate, "byte rate limit exceeded"),
                    };
                    hits.increment(1);
                    // What is refused fills a second bucket at the same rate: a client
                    // that overflows that one too sends at more than twice the rate.
                    return match rate.take(bucket.refused, now, n) {
                        Some(tat) => {
                            bucket.refused = tat;
                            Admit::Refuse(why)
                        }
                        None => Admit::Close,
                    };
                }
            }
        }
        if let Some(tat) = passed[0] {
            flow.messages.passed = tat;
        }
        if let Some(tat) = passed[1] {
            flow.bytes.passed = tat;
        }
        Admit::Run
    }

    /// Whether a client may name `channel` in a subscribe or a publish (error 104 beyond
    /// the configured length).
    pub(crate) fn check_channel_len(&self, channel: &str) -> Result<(), (ErrorCode, String)> {
        if channel.len() <= self.max_channel_len {
            return Ok(());
        }
        self.hits.channel_len.increment(1);
        Err((
            ErrorCode::INVALID_CHANNEL,
            format!("channel name longer than {} bytes ({} bytes)", self.max_channel_len, channel.len()),
        ))
    }
}

// === impl Rate ===

impl Rate {
    /// `None` when the rate is 0 (no limit).
    fn new(per_sec: u64, burst: u64) -> Option<Rate> {
        (per_sec > 0).then(|| {
            let mut rate = Rate { per_sec, tolerance: 0 };
            rate.tolerance = rate.cost(burst.max(1));
            rate
        })
    }

    /// The time `n` units take at this rate, in nanoseconds.
    fn cost(&self, n: u64) -> u64 {
        (u128::from(n) * 1_000_000_000 / u128::from(self.per_sec)).min(u128::from(u64::MAX)) as u64
    }

    /// GCRA: the bucket's next theoretical arrival time if `n` units pass at `now`, or
    /// `None` when that would run more than a burst ahead of now.
    fn take(&self, tat: u64, now: u64, n: u64) -> Option<u64> {
        let next = tat.max(now).saturating_add(self.cost(n));
        (next - now <= self.tolerance).then_some(next)
    }
}

// === impl Counts ===

impl<K: Hash + Eq + Clone> Counts<K> {
    fn hold(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        let mut held = self.held.entry(key.clone()).or_insert(0);
        if *held >= self.max {
            return None;
        }
        *held += 1;
        drop(held);
        Some(Slot { counts: self.clone(), key })
    }
}

impl<K: Hash + Eq> Drop for Slot<K> {
    fn drop(&mut self) {
        self.counts.held.remove_if_mut(&self.key, |_, held| {
            *held -= 1;
            *held == 0
        });
    }
}

// === impl ConnectRate ===

/// Governor's keyed limiter of upgrades per client address, with its clock.
struct ConnectRate<C: Clock = DefaultClock> {
    limiter: RateLimiter<IpAddr, DashMapStateStore<IpAddr>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl<C: Clock + Clone> ConnectRate<C> {
    fn new(per_sec: NonZeroU32, burst: NonZeroU32, clock: C) -> Self {
        let quota = Quota::per_second(per_sec).allow_burst(burst);
        ConnectRate { limiter: RateLimiter::dashmap_with_clock(quota, clock.clone()), clock }
    }

    /// Takes one upgrade of `key`'s, or says how long until one may pass.
    fn check(&self, key: IpAddr) -> Result<(), Duration> {
        self.limiter.check_key(&key).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets every address whose bucket is full again (as good as never seen).
    fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

async fn run_pruner(limiter: Weak<ConnectRate>) {
    let mut tick = tokio::time::interval(PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(limiter) = limiter.upgrade() else { return };
        limiter.prune();
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limits(config: GatewayConfig) -> Limits {
        Limits::new(&config, &Metrics::new())
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_gets_its_burst_then_its_rate_then_is_closed_past_twice_the_rate() {
        let limits = limits(GatewayConfig { max_messages_per_sec: 10, message_burst: 5, ..GatewayConfig::default() });
        let mut flow = Flow::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for i in 0..5 {
            assert_eq!(limits.admit_message(&mut flow, at(0), 10), Admit::Run, "burst message {i}");
        }
        assert_eq!(limits.admit_message(&mut flow, at(0), 10), Admit::Refuse("message rate limit exceeded"));
        // One message's worth (100 ms) later, one more passes.
        assert_eq!(limits.admit_message(&mut flow, at(100), 10), Admit::Run);
        assert!(matches!(limits.admit_message(&mut flow, at(100), 10), Admit::Refuse(_)));
        // Refused messages fill their own bucket: four more fit, the next one closes.
        for _ in 0..4 {
            assert!(matches!(limits.admit_message(&mut flow, at(100), 10), Admit::Refuse(_)));
        }
        assert_eq!(limits.admit_message(&mut flow, at(100), 10), Admit::Close);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_are_limited_apart_from_messages_and_zero_means_no_limit() {
        let limits = limits(GatewayConfig {
            max_messages_per_sec: 0,
            max_bytes_per_sec: 1000,
            bytes_burst: 2000,
            ..GatewayConfig::default()
        });
        let mut flow = Flow::default();
        let now = Instant::now();
        assert_eq!(limits.admit_message(&mut flow, now, 1500), Admit::Run);
        assert_eq!(limits.admit_message(&mut flow, now, 1000), Admit::Refuse("byte rate limit exceeded"));
        assert_eq!(limits.admit_message(&mut flow, now, 500), Admit::Run, "what fits still passes");
        for _ in 0..1000 {
            assert_ne!(limits.admit_message(&mut flow, now + Duration::from_secs(60), 0), Admit::Close);
        }
        let off =
            self::limits(GatewayConfig { max_messages_per_sec: 0, max_bytes_per_sec: 0, ..GatewayConfig::default() });
        let mut flow = Flow::default();
        for _ in 0..10_000 {
            assert_eq!(off.admit_message(&mut flow, now, 65536), Admit::Run);
        }
    }

    #[tokio::test]
    async fn counts_are_given_back_when_their_slots_drop() {
        let limits =
            limits(GatewayConfig { max_connections_per_ip: 2, connect_rate_per_ip: 0, ..GatewayConfig::default() });
        let peer: IpAddr = "198.51.100.4".parse().unwrap();
        let headers = HeaderMap::new();
        let a = limits.admit_upgrade(peer, &headers).unwrap();
        let _b = limits.admit_upgrade(peer, &headers).unwrap();
        assert_eq!(limits.admit_upgrade(peer, &headers).err().unwrap().status, StatusCode::TOO_MANY_REQUESTS);
        assert!(limits.admit_upgrade("198.51.100.5".parse().unwrap(), &headers).is_ok(), "another address");
        drop(a);
        let mut c = limits.admit_upgrade(peer, &headers).unwrap();
        // Users: anonymous is not counted; a user's second session is refused with 4007.
        let users = self::limits(GatewayConfig { max_connections_per_user: 1, ..GatewayConfig::default() });
        assert_eq!(users.hold_user(&mut c, ""), Ok(()));
        assert_eq!(users.hold_user(&mut c, "alice"), Ok(()));
        let mut other = users.admit_upgrade(peer, &headers).unwrap();
        assert_eq!(users.hold_user(&mut other, "alice"), Err(CloseCode::TOO_MANY_CONNECTIONS));
        drop(c);
        assert_eq!(users.hold_user(&mut other, "alice"), Ok(()));
        assert!(users.per_user.as_ref().unwrap().held.len() == 1);
        drop(other);
        assert!(users.per_user.as_ref().unwrap().held.is_empty(), "no entry is left behind");
        assert!(limits.per_ip.as_ref().unwrap().held.len() == 1);
    }

    #[test]
    fn the_upgrade_rate_is_per_address_and_forgets_addresses_that_stopped() {
        let clock = FakeRelativeClock::default();
        let rate = ConnectRate::new(NonZeroU32::new(2).unwrap(), NonZeroU32::new(3).unwrap(), clock.clone());
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        for _ in 0..3 {
            rate.check(a).unwrap();
        }
        let wait = rate.check(a).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        rate.check("203.0.113.2".parse().unwrap()).expect("another address has its own bucket");
        clock.advance(Duration::from_millis(500));
        rate.check(a).unwrap();
        // Ten thousand addresses that tried once each are forgotten once their buckets refill.
        for i in 0..10_000u32 {
            rate.check(IpAddr::from((0x0a00_0000 + i).to_be_bytes())).unwrap();
        }
        assert_eq!(rate.tracked(), 10_002);
        rate.prune();
        assert!(rate.tracked() > 10_000, "the new addresses have not refilled yet");
        clock.advance(Duration::from_secs(2));
        rate.prune();
        assert_eq!(rate.tracked(), 0);
    }

    #[tokio::test]
    async fn channel_names_are_bounded_and_origins_refused_with_403() {
        let limits = limits(GatewayConfig {
            max_channel_len: 5,
            allowed_origins: vec!["https://ok.example".into()],
            ..GatewayConfig::default()
        });
        assert!(limits.check_channel_len("a:bcd").is_ok());
        assert_eq!(limits.check_channel_len("a:bcde").unwrap_err().0, ErrorCode::INVALID_CHANNEL);
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        let refusal = limits.admit_upgrade("127.0.0.1".parse().unwrap(), &headers).err().unwrap();
        assert_eq!(refusal.status, StatusCode::FORBIDDEN);
    }
}
