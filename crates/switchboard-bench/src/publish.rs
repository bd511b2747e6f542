//! Publishers that are not connections of the run: the gRPC API (unary calls, or one
//! `PublishStream`) and a plain NATS client. Each owns some streams (channel, publisher `k`)
//! and publishes them in turn at its share of the rate, one call after another, so that
//! each stream's order is the order of the calls; on a `PublishStream` a publication is
//! sent without waiting for its answer, and the server keeps each channel's order.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_wire::pb::{self, switchboard_api_client::SwitchboardApiClient};

use tokio::sync::mpsc;

use crate::payload::{self, Stamp};
use crate::run::{Ctx, Phase};

/// Paces publications at a fixed rate, or lets them through as fast as possible (rate 0).
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    /// Seconds between publications; `None` for as fast as possible.
    interval: Option<f64>,
    sent: u64,
}

// === impl Pacer ===

impl Pacer {
    /// `jitter` starts the schedule at a random point within the first interval, so that
    /// many publishers with the same rate do not all fire at once.
    pub fn new(rate: f64, jitter: bool) -> Pacer {
        Pacer::starting(Instant::now(), rate, if jitter { fastrand::f64() } else { 0.0 })
    }

    fn starting(now: Instant, rate: f64, phase: f64) -> Pacer {
        let interval = (rate > 0.0).then(|| 1.0 / rate);
        let start = now + Duration::from_secs_f64(interval.unwrap_or(0.0) * phase);
        Pacer { start, interval, sent: 0 }
    }

    /// When the next publication is due.
    pub fn next_at(&self) -> Instant {
        match self.interval {
            Some(i) => self.start + Duration::from_secs_f64(i * self.sent as f64),
            None => self.start,
        }
    }

    /// How many publications are due at `now`.
    pub fn due(&self, now: Instant) -> u64 {
        match self.interval {
            None => u64::MAX,
            Some(_) if now < self.start => 0,
            // The epsilon keeps 9.999999 from counting as 9 when exactly 10 are due.
            Some(i) => (((now - self.start).as_secs_f64() / i + 1e-9) as u64 + 1).saturating_sub(self.sent),
        }
    }

    pub fn sent(&mut self, n: u64) {
        self.sent += n;
    }
}

/// The ways publications leave the generator outside subscriber connections.
pub enum Publisher {
    Grpc(SwitchboardApiClient<tonic::transport::Channel>),
    /// The requests of one `PublishStream`; a task reads the answers and counts the errors.
    GrpcStream {
        requests: mpsc::Sender<pb::PublishStreamRequest>,
        next_id: u64,
    },
    Nats(async_nats::Client),
}

/// Requests of a `PublishStream` queued before the publisher waits (the server bounds what
/// it holds itself).
const STREAM_QUEUE: usize = 1024;

// === impl Publisher ===

impl Publisher {
    /// Opens a `PublishStream`; its answers' errors count in `ctx.publish_errors`.
    pub async fn stream(
        mut api: SwitchboardApiClient<tonic::transport::Channel>,
        ctx: Arc<Ctx>,
    ) -> anyhow::Result<Publisher> {
        let (requests, rx) = mpsc::channel(STREAM_QUEUE);
        let mut replies = api
            .publish_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| anyhow::anyhow!("cannot open a PublishStream: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        tokio::spawn(async move {
            let mut failures = 0u64;
            loop {
                match replies.message().await {
                    Ok(Some(pb::PublishStreamReply {
                        result: Some(pb::publish_stream_reply::Result::Ok(_)), ..
                    })) => {}
                    Ok(Some(reply)) => {
                        ctx.publish_errors.fetch_add(1, Relaxed);
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(?reply, "publish failed");
                        }
                    }
                    Ok(None) => return,
                    Err(status) => {
                        tracing::warn!(code = ?status.code(), message = status.message(), "the PublishStream ended");
                        return;
                    }
                }
            }
        });
        Ok(Publisher::GrpcStream { requests, next_id: 0 })
    }

    async fn publish(&mut self, channel: &str, data: Bytes) -> Result<(), String> {
        match self {
            Publisher::GrpcStream { requests, next_id } => {
                *next_id += 1;
                let req =
                    pb::PublishStreamRequest { id: *next_id, channel: channel.to_owned(), data, ..Default::default() };
                requests.send(req).await.map_err(|_| "the PublishStream ended".to_owned())
            }
            Publisher::Grpc(api) => api
                .publish(pb::PublishApiRequest { channel: channel.to_owned(), data, ..Default::default() })
                .await
                .map(drop)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message())),
            Publisher::Nats(nats) => nats.publish(channel.to_owned(), data).await.map_err(|e| e.to_string()),
        }
    }

    async fn finish(&mut self) {
        match self {
            Publisher::Nats(nats) => {
                let _ = nats.flush().await;
            }
            // Closing the requests ends the stream once the server answered them all.
            Publisher::GrpcStream { requests, .. } => drop(std::mem::replace(requests, mpsc::channel(1).0)),
            Publisher::Grpc(_) => {}
        }
    }
}

/// Publishes `streams` (channel index, publisher `k`) in turn at `rate` per second in all,
/// from the start of the publish phase to its end.
pub async fn run(ctx: Arc<Ctx>, mut publisher: Publisher, streams: Vec<(usize, u32)>, rate: f64) {
    let mut phase = ctx.phase.clone();
    if phase.wait_for(|p| *p != Phase::Connect).await.map(|p| *p != Phase::Publish).unwrap_or(true) {
        return;
    }
    let mut pacer = Pacer::new(rate, false);
    let mut body = Vec::with_capacity(ctx.payload + 64);
    let mut turn = 0usize;
    let mut failures_in_a_row = 0u32;
    while *ctx.phase.borrow() == Phase::Publish {
        let now = Instant::now();
        if pacer.due(now) == 0 {
            tokio::select! {
                _ = tokio::time::sleep_until(pacer.next_at().into()) => {}
                _ = phase.changed() => {}
            }
            continue;
        }
        let (channel, k) = streams[turn % streams.len()];
        turn += 1;
        let counter = &ctx.published[channel][k as usize];
        let seq = counter.load(Relaxed) + 1;
        body.clear();
        payload::encode(&mut body, Stamp { t: payload::now_ns(), s: seq, k }, ctx.multi, ctx.payload);
        match publisher.publish(&ctx.channels[channel], Bytes::copy_from_slice(&body)).await {
            Ok(()) => {
                counter.store(seq, Relaxed);
                failures_in_a_row = 0;
            }
            Err(e) => {
                ctx.publish_errors.fetch_add(1, Relaxed);
                failures_in_a_row += 1;
                if failures_in_a_row == 1 {
                    tracing::warn!(error = %e, "publish failed");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        pacer.sent(1);
    }
    publisher.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_lets_through_what_is_due() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // (name, rate, phase, publications already sent, now, want due)
        let cases: &[(&str, f64, f64, u64, Instant, u64)] = &[
            ("the first is due at once", 100.0, 0.0, 0, t0, 1),
            ("ten milliseconds at 1000/s make eleven", 1000.0, 0.0, 0, ms(10), 11),
            ("what was sent is not due again", 1000.0, 0.0, 11, ms(10), 0),
            ("a late start owes nothing yet", 10.0, 0.5, 0, ms(10), 0),
            ("a late start owes one once it begins", 10.0, 0.5, 0, ms(50), 1),
            ("as fast as possible is always due", 0.0, 0.0, 5, t0, u64::MAX),
        ];
        for (name, rate, phase, sent, now, want) in cases {
            let mut pacer = Pacer::starting(t0, *rate, *phase);
            pacer.sent(*sent);
            assert_eq!(pacer.due(*now), *want, "{name}");
        }
        let mut pacer = Pacer::starting(t0, 100.0, 0.0);
        pacer.sent(3);
        assert_eq!(pacer.next_at(), ms(30));
    }
}
