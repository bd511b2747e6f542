//! The fan-out: bus deliveries into the hub, and from the hub to every subscriber.
//!
//! Each run of one channel's publications in a batch is encoded once per encoding
//! ([`Hub::fanout`]) and then handed to the subscribers' outboxes in one of two ways:
//!
//! - **Direct** while publications come slower than a fan-out takes: each frame is written
//!   to its socket at once, saving the hand-over to the connection's task (a wake-up and a
//!   poll), which at low rates costs about as much as all the rest of a delivery outside
//!   the kernel. A fan-out to thousands of connections is then thousands of system calls,
//!   so it runs in slices of [`SLICE`] subscribers and yields between them (publishers,
//!   readers and timers sharing the thread keep running), and with several worker threads
//!   it is split into one part per worker.
//! - **Queued** once they come faster (the bus hands over several at once, or the last
//!   batch arrived sooner than a direct fan-out of this size takes, see [`Pace`]): the
//!   frames are queued and each connection's task writes whatever gathered in its outbox
//!   when its turn comes, several frames to a system call. This keeps the cost per
//!   delivery falling as the rate rises, which direct writes of one batch each would not.
//!
//! Either way the next batch is taken from the bus only when this one is done, so each
//! channel's publications reach every subscriber in order.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use futures_util::future::BoxFuture;
use switchboard_bus::{Deliver, Publication};
use switchboard_hub::{Delivery, Fanout, Hub, Item, Write};
use switchboard_wire::Channel;

use crate::channels::Channels;
use crate::metrics::Metrics;
use crate::node::NodeAgent;

/// Subscribers served between two yields (about half a millisecond of direct writes).
const SLICE: usize = 64;
/// Fewest subscribers per part when a fan-out is split over worker threads.
const MIN_PART: usize = 512;

/// Hands bus deliveries to the hub.
pub(crate) struct HubDeliver {
    hub: Arc<Hub>,
    channels: Arc<Channels>,
    /// Who tells the sessions about lost publications (set once the node agent runs).
    pub(crate) node: OnceLock<Weak<NodeAgent>>,
    metrics: Metrics,
    pace: Pace,
}

/// What decides between direct and queued writes: how long ago the previous batch came,
/// against how long a direct fan-out takes per subscriber (measured on the last ones).
/// Shared by every delivery task (the NATS bus runs one per channel), so it is atomics.
struct Pace {
    start: Instant,
    /// When the previous batch arrived, in nanoseconds since `start`.
    last_batch: AtomicU64,
    /// Recent wall time of a direct fan-out per subscriber, in nanoseconds (0 until one
    /// was measured).
    per_subscriber: AtomicU64,
}

impl HubDeliver {
    pub(crate) fn new(hub: Arc<Hub>, channels: Arc<Channels>, metrics: Metrics) -> Self {
        let pace = Pace { start: Instant::now(), last_batch: AtomicU64::new(0), per_subscriber: AtomicU64::new(0) };
        HubDeliver { hub, channels, node: OnceLock::new(), metrics, pace }
    }
}

impl Deliver for HubDeliver {
    fn interrupted(&self, channel: &Channel) {
        if let Some(node) = self.node.get().and_then(Weak::upgrade) {
            node.interrupted(channel);
        }
    }

    /// A `join` or `leave` from some gateway: queued to the local subscribers, encoded once
    /// per encoding ([`Hub::push`]); publications never come this way.
    fn event(&self, channel: &Channel, event: bytes::Bytes) {
        use switchboard_wire::pb::{self, reply::Reply as R};
        match prost::Message::decode(event) {
            // Not counted as deliveries: those are publications.
            Ok(reply @ pb::Reply { reply: Some(R::Join(_) | R::Leave(_)), .. }) => {
                self.hub.push(channel, &reply);
            }
            _ => tracing::debug!(%channel, "a channel event that is not a join or leave dropped"),
        }
    }

    fn deliver<'a>(&'a self, batch: &'a [Publication]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let now = self.pace.now();
            let gap = now.saturating_sub(self.pace.last_batch.swap(now, Ordering::Relaxed));
            // A thread-local draw: no shared counter for the sampling.
            let sampled = fastrand::u32(..crate::metrics::DELIVERY_SAMPLE) == 0;
            let mut wrote_direct = false;
            let workers = tokio::runtime::Handle::current().metrics().num_workers();
            let mut items = Vec::with_capacity(batch.len());
            // Runs of one channel go to the hub together.
            for run in batch.chunk_by(|a, b| a.channel == b.channel) {
                items.clear();
                items.extend(run.iter().map(|p| Item { offset: p.offset, epoch: &p.epoch, data: &p.data }));
                self.channels.before_fanout(run);
                let Some(fanout) = self.hub.fanout(&run[0].channel, &items) else { continue };
                let parts = workers.min(fanout.len() / MIN_PART).max(1);
                let per_part = fanout.len().div_ceil(parts) as u64;
                let direct = batch.len() == 1 && per_part * self.pace.per_subscriber.load(Ordering::Relaxed) <= gap;
                let d = if direct {
                    wrote_direct = true;
                    let started = self.pace.now();
                    let d = fan_out(Arc::new(fanout), parts).await;
                    self.pace.measured((self.pace.now() - started) / per_part);
                    d
                } else {
                    // Queuing is cheap (no system call): done in one go, so the writers
                    // woken by it run after the whole fan-out, each with all it got.
                    fanout.deliver(0..fanout.len(), Write::Queue)
                };
                self.channels.after_fanout(&self.hub, run);
                self.metrics.deliveries.increment(d.queued as u64);
            }
            self.metrics.publications.increment(batch.len() as u64);
            if sampled {
                let took = std::time::Duration::from_nanos(self.pace.now().saturating_sub(now));
                let h = if wrote_direct { &self.metrics.delivery_direct } else { &self.metrics.delivery_queued };
                h.record(took);
            }
        })
    }
}

impl Pace {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Folds in the per-subscriber time of a direct fan-out (a moving average).
    fn measured(&self, ns: u64) {
        let old = self.per_subscriber.load(Ordering::Relaxed);
        let new = if old == 0 { ns } else { (old * 3 + ns) / 4 };
        self.per_subscriber.store(new, Ordering::Relaxed);
    }
}

/// Writes `fanout` directly to all its subscribers, in `parts` parts run on as many
/// worker threads.
async fn fan_out(fanout: Arc<Fanout>, parts: usize) -> Delivery {
    let bounds = |i: usize| i * fanout.len() / parts;
    let others: Vec<_> =
        (1..parts).map(|i| tokio::spawn(write_range(fanout.clone(), bounds(i)..bounds(i + 1)))).collect();
    let mut total = write_range(fanout.clone(), 0..bounds(1)).await;
    for part in others {
        // A part only pushes to outboxes; it cannot fail short of a panic, which the
        // runtime has already reported.
        if let Ok(d) = part.await {
            total += d;
        }
    }
    total
}

/// Writes directly to the subscribers in `range`, yielding every [`SLICE`].
async fn write_range(fanout: Arc<Fanout>, range: Range<usize>) -> Delivery {
    let mut total = Delivery::default();
    let mut start = range.start;
    while start < range.end {
        let end = (start + SLICE).min(range.end);
        total += fanout.deliver(start..end, Write::Direct);
        start = end;
        if start < range.end {
            tokio::task::yield_now().await;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use switchboard_hub::{Interest, Outbox, Sink, Subscriber};
    use switchboard_wire::{Channel, Encoding};

    use super::*;

    struct NoInterest;

    impl Interest for NoInterest {
        fn first_subscriber(&self, _: &Channel) {}
        fn last_unsubscribed(&self, _: &Channel) {}
    }

    /// A socket that takes everything, counting the writes.
    #[derive(Default)]
    struct Socket(Mutex<usize>);

    impl Sink for Socket {
        fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
            *self.0.lock().unwrap() += 1;
            Ok(buf.len())
        }
    }

    fn publications(channel: &Channel, offsets: std::ops::Range<u64>) -> Vec<Publication> {
        offsets
            .map(|offset| Publication { channel: channel.clone(), offset, epoch: "e".into(), data: Bytes::from("1") })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_publications_are_written_directly_and_bursts_are_queued() {
        let hub = Arc::new(Hub::new(Arc::new(NoInterest)));
        let channel = Channel::parse("c").unwrap();
        // Enough subscribers for the direct fan-out to be split over both workers.
        let subs: Vec<_> = (0..2 * MIN_PART as u64 + 1)
            .map(|id| {
                let socket = Arc::new(Socket::default());
                let outbox = Outbox::with_sink(1 << 20, socket.clone());
                let sub = Arc::new(Subscriber { id, encoding: Encoding::Json, outbox });
                hub.subscribe(&channel, &sub);
                (socket, sub)
            })
            .collect();
        let writes_and_queued = |writes: usize, queued: bool| {
            subs.iter()
                .all(|(socket, sub)| *socket.0.lock().unwrap() == writes && (sub.outbox.queued_bytes() > 0) == queued)
        };
        let deliver = HubDeliver::new(hub.clone(), Arc::new(crate::channels::Channels::new()), Metrics::new());

        deliver.deliver(&publications(&channel, 1..2)).await;
        assert!(writes_and_queued(1, false), "one direct write each, nothing queued");

        // Several at once: queued for the writers, nothing written by the fan-out.
        deliver.deliver(&publications(&channel, 2..5)).await;
        assert!(writes_and_queued(1, true));
        for (_, sub) in &subs {
            sub.outbox.take(&mut Vec::new());
            assert!(
                sub.outbox
                    .poll_take(&mut std::task::Context::from_waker(std::task::Waker::noop()), &mut Vec::new())
                    .is_pending()
            );
        }

        // One alone, but sooner after the last than a direct fan-out takes: queued too.
        deliver.pace.per_subscriber.store(std::time::Duration::from_secs(1).as_nanos() as u64, Ordering::Relaxed);
        deliver.deliver(&publications(&channel, 5..6)).await;
        assert!(writes_and_queued(1, true));
    }
}
