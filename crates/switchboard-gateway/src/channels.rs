//! The one owner of this gateway's channel subscriptions: interest counting's effect on the
//! bus (the hub counts, this subscribes and unsubscribes), each bus subscription's
//! confirmation, sessions joining a channel from a position (recovery), and what to do when
//! the bus says publications were lost.
//!
//! Recovery from a position `P`, without a gap or a duplicate at the seam, while the channel
//! keeps receiving publications:
//! 1. the session joins the hub from `u64::MAX` ([`Hub::subscribe_from`]): it receives
//!    nothing yet, but its interest counts, so the bus subscription exists;
//! 2. once the bus confirmed it, the session is registered here ([`Channels::begin_join`]):
//!    from now on every publication of the channel that reaches this gateway is also kept
//!    for it (at most the gateway's `max_recovery`; past that the join fails with a
//!    temporary error and the client tries again);
//! 3. the session reads the history after `P` (anything delivered before step 2 was stored
//!    before the read, so the read has it);
//! 4. the session finishes ([`Channels::join`], synchronous, in the session's task, in
//!    command order): under this component's lock it queues its reply, the history, then
//!    what was kept with an offset above the history's last, and joins the hub from the last
//!    offset it queued. A fan-out running meanwhile skips what it queued; one that starts
//!    later has only newer publications.
//!
//! When the channel's next delivery carries an offset above the joining point, the hub is
//! told to stop filtering ([`Channels::after_fanout`]): a channel's deliveries come one after
//! another, so nothing older can follow.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared as SharedFuture};
use switchboard_bus::{Bus, BusError, HistoryPage, Position, Publication};
use switchboard_hub::{Hub, Interest, Subscriber, frame};
use switchboard_wire::{Channel, protocol};

type Confirmation = SharedFuture<BoxFuture<'static, Result<(), String>>>;

/// See the module doc.
pub(crate) struct Channels {
    bus: OnceLock<Arc<dyn Bus>>,
    /// Bus subscriptions not confirmed yet.
    pending: Mutex<HashMap<Channel, Confirmation>>,
    /// Sessions joining a channel from a position, by channel.
    joining: Mutex<HashMap<Channel, Vec<Joining>>>,
    /// How many entries `joining` holds: the delivery path looks at the map only when some.
    joins: AtomicUsize,
}

struct Joining {
    sub: u64,
    state: JoinState,
}

enum JoinState {
    /// Reading the history; publications that reach the gateway meanwhile (at most `limit`).
    Reading { kept: Vec<Publication>, limit: usize, overflowed: bool },
    /// Joined the hub from this offset; cleared by the channel's next newer delivery.
    Joined(u64),
}

/// How a join ended.
pub(crate) struct Joined {
    /// Whether everything after the position was queued.
    pub recovered: bool,
    /// The position the session's publications continue after.
    pub position: Position,
}

impl Interest for Channels {
    fn first_subscriber(&self, channel: &Channel) {
        if let Some(bus) = self.bus.get() {
            let confirm = bus.subscribe(channel).map(|r| r.map_err(|e| e.to_string())).boxed().shared();
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(channel.clone(), confirm);
        }
    }

    fn last_unsubscribed(&self, channel: &Channel) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(channel);
        if let Some(bus) = self.bus.get() {
            bus.unsubscribe(channel);
        }
    }
}

impl Channels {
    pub(crate) fn new() -> Self {
        Channels {
            bus: OnceLock::new(),
            pending: Mutex::default(),
            joining: Mutex::default(),
            joins: AtomicUsize::new(0),
        }
    }

    /// Set once the bus exists (it is made from the gateway's deliverer, which needs the hub,
    /// which needs this).
    pub(crate) fn set_bus(&self, bus: Arc<dyn Bus>) {
        let _ = self.bus.set(bus);
    }

    /// Resolves once the bus confirmed the channel's subscription (at once when it has).
    /// The confirmation is looked up now, right after the hub add that may have started
    /// it; the future owns what it needs, so a session can poll it beside its socket.
    pub(crate) fn confirmed(
        self: &Arc<Self>,
        channel: &Channel,
    ) -> impl Future<Output = Result<(), BusError>> + Send + 'static {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner()).get(channel).cloned();
        let (channels, channel) = (self.clone(), channel.clone());
        async move {
            let Some(confirm) = pending else { return Ok(()) };
            let result = confirm.await.map_err(BusError::Unavailable);
            if result.is_ok() {
                let mut pending = channels.pending.lock().unwrap_or_else(|p| p.into_inner());
                if pending.get(&channel).is_some_and(|c| c.peek().is_some()) {
                    pending.remove(&channel);
                }
            }
            result
        }
    }

    /// Step 2 of a join: from now on keep the channel's publications for `sub`.
    pub(crate) fn begin_join(&self, channel: &Channel, sub: u64, limit: usize) {
        let mut joining = self.joining.lock().unwrap_or_else(|p| p.into_inner());
        let entries = joining.entry(channel.clone()).or_default();
        entries.retain(|j| j.sub != sub);
        entries.push(Joining { sub, state: JoinState::Reading { kept: Vec::new(), limit, overflowed: false } });
        self.joins.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets a join that will not finish (the session unsubscribed or ended).
    pub(crate) fn abandon_join(&self, channel: &Channel, sub: u64) {
        if self.joins.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut joining = self.joining.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entries) = joining.get_mut(channel) {
            let before = entries.len();
            entries.retain(|j| j.sub != sub);
            self.joins.fetch_sub(before - entries.len(), Ordering::Relaxed);
            if entries.is_empty() {
                joining.remove(channel);
            }
        }
    }

    /// Step 4 of a join: queues `reply` (made from how the join ends), then the history
    /// after `since`, then what was kept meanwhile, and joins the hub after the last of them.
    /// `Err` when the session's keep buffer overflowed (it stays joined from `u64::MAX`;
    /// the caller unsubscribes it).
    pub(crate) fn join(
        &self,
        hub: &Hub,
        sub: &Subscriber,
        channel: &Channel,
        since: &Position,
        page: HistoryPage,
        reply: impl FnOnce(&Joined) -> Bytes,
    ) -> Result<Joined, BusError> {
        let mut joining = self.joining.lock().unwrap_or_else(|p| p.into_inner());
        let entries = joining.get_mut(channel);
        let Some(entry) = entries.and_then(|e| e.iter_mut().find(|j| j.sub == sub.id)) else {
            return Err(BusError::Unavailable("the join was abandoned".into()));
        };
        let JoinState::Reading { kept, overflowed, .. } = &mut entry.state else {
            return Err(BusError::Unavailable("joined already".into()));
        };
        if *overflowed {
            drop(joining);
            self.abandon_join(channel, sub.id);
            return Err(BusError::Unavailable("too many publications arrived while recovering; try again".into()));
        }
        let kept = std::mem::take(kept);
        // The history covers everything up to its last publication (or up to `since` when
        // it is empty); without continuity the session starts at the channel's latest.
        let (history, mut last) = match page.continuous {
            true => {
                let last = page.publications.last().map_or(since.offset, |p| p.offset);
                (page.publications, last)
            }
            false => (Vec::new(), page.latest.offset),
        };
        let joined = Joined {
            recovered: page.continuous,
            position: Position { offset: last.max(page.latest.offset), epoch: page.latest.epoch.clone() },
        };
        let encoding = sub.encoding;
        let _ = sub.outbox.push(reply(&joined));
        let fresh = kept.into_iter().filter(|p| p.offset > last).collect::<Vec<_>>();
        for p in history.iter().chain(&fresh) {
            let push = protocol::publication_push(channel.as_str(), p.offset, &p.epoch, p.data.clone());
            let _ = sub.outbox.push(frame::encode(encoding, |buf| encoding.encode_reply(&push, buf)));
            last = last.max(p.offset);
        }
        hub.set_from(channel, sub.id, last);
        entry.state = JoinState::Joined(last);
        Ok(joined)
    }

    /// Before a channel's publications are fanned out: keeps them for the sessions reading
    /// its history.
    pub(crate) fn before_fanout(&self, run: &[Publication]) {
        if self.joins.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut joining = self.joining.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entries) = joining.get_mut(&run[0].channel) else { return };
        for j in entries {
            if let JoinState::Reading { kept, limit, overflowed } = &mut j.state {
                if kept.len() + run.len() > *limit {
                    *overflowed = true;
                    kept.clear();
                } else if !*overflowed {
                    kept.extend_from_slice(run);
                }
            }
        }
    }

    /// After a channel's publications were fanned out: sessions that joined below their
    /// last offset need no filtering any more.
    pub(crate) fn after_fanout(&self, hub: &Hub, run: &[Publication]) {
        if self.joins.load(Ordering::Relaxed) == 0 {
            return;
        }
        let newest = run.last().map_or(0, |p| p.offset);
        let channel = &run[0].channel;
        let mut joining = self.joining.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entries) = joining.get_mut(channel) else { return };
        let before = entries.len();
        entries.retain(|j| match j.state {
            JoinState::Joined(from) if newest > from => {
                hub.set_from(channel, j.sub, 0);
                false
            }
            _ => true,
        });
        self.joins.fetch_sub(before - entries.len(), Ordering::Relaxed);
        if entries.is_empty() {
            joining.remove(channel);
        }
    }
}
