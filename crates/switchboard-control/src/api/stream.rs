//! `PublishStream`: many publishes on one call, each channel's in arrival order.
//!
//! One task per stream reads the requests and keeps a queue per channel: a channel's next
//! request is handed to `Bus::publish` only once the previous one's publish returned, so the
//! bus stores (and delivers) a channel's publications in the order the client sent them,
//! while different channels publish concurrently. Every request gets one reply, with the
//! client's `id`; replies of different channels come in the order their publishes finish,
//! not in request order. A request that is invalid or whose publish fails gets an error
//! reply and the stream goes on; the next request of the same channel is still published.
//!
//! Back-pressure: the task stops reading while [`MAX_STREAM_IN_FLIGHT`] requests (or
//! [`MAX_STREAM_IN_FLIGHT_BYTES`] of data) wait for their reply, and while the client does
//! not read its replies ([`REPLY_BUFFER`] queued), so a fast client is slowed down by HTTP/2
//! flow control instead of being buffered without bound.
//!
//! The stream ends once the client has closed its side and every request was answered
//! (OK), with the error of a request the transport could not decode, or with UNAVAILABLE
//! when the server stops (after answering what was in flight). Each request is counted in
//! `switchboard_control_api_requests_total{method="PublishStream"}` with its own code, and
//! its time from arrival to reply.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use switchboard_bus::{BusError, Position, PublishOptions};
use switchboard_wire::Channel;
use switchboard_wire::pb::{self, publish_stream_reply::Result as Outcome};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::{Api, bus_status, error, parse_channel, position, publish_options};
use crate::metrics;

/// Requests of one stream read but not yet answered, at most; the stream stops reading
/// until one is answered.
pub const MAX_STREAM_IN_FLIGHT: usize = 1024;
/// Bytes of data of one stream read but not yet answered, at most (a larger request still
/// goes through, alone).
pub const MAX_STREAM_IN_FLIGHT_BYTES: usize = 16 << 20;
/// Replies queued for a client that does not read them before the stream stops working.
const REPLY_BUFFER: usize = 256;

type Replies = mpsc::Sender<Result<pb::PublishStreamReply, Status>>;

/// A request waiting for its channel's previous publish.
struct Waiting {
    id: u64,
    data: Bytes,
    options: PublishOptions,
    arrived: Instant,
}

/// A finished publish: its channel, request id, arrival, data size, and outcome.
type Done = (Channel, u64, Instant, usize, Result<Option<Position>, BusError>);

// === impl Api ===

impl Api {
    /// Serves one stream of requests (`Streaming` from tonic, or any stream in tests).
    pub(crate) fn publish_stream_of<S>(&self, requests: S) -> ReceiverStream<Result<pb::PublishStreamReply, Status>>
    where
        S: Stream<Item = Result<pb::PublishStreamRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(REPLY_BUFFER);
        tokio::spawn(self.clone().run_stream(requests, tx));
        ReceiverStream::new(rx)
    }

    async fn run_stream<S>(self, mut requests: S, tx: Replies)
    where
        S: Stream<Item = Result<pb::PublishStreamRequest, Status>> + Send + Unpin + 'static,
    {
        let mut closed = self.shared.streams_closed.subscribe();
        // The channels with a publish running, each with the requests waiting behind it.
        let mut busy: HashMap<Channel, VecDeque<Waiting>> = HashMap::new();
        let mut running: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
        let (mut in_flight, mut bytes) = (0usize, 0usize);
        let mut reading = true;
        let mut end: Option<Status> = None;
        loop {
            if !reading && in_flight == 0 {
                break;
            }
            let room = in_flight < MAX_STREAM_IN_FLIGHT && (bytes < MAX_STREAM_IN_FLIGHT_BYTES || in_flight == 0);
            tokio::select! {
                biased;
                _ = tx.closed() => return,
                Some((channel, id, arrived, size, result)) = running.next(), if !running.is_empty() => {
                    in_flight -= 1;
                    bytes -= size;
                    if let Some(next) = busy.get_mut(&channel).and_then(VecDeque::pop_front) {
                        running.push(self.start(channel.clone(), next));
                    } else {
                        busy.remove(&channel);
                    }
                    let outcome = result.map(position).map_err(bus_status);
                    if !reply(&tx, id, arrived, outcome).await {
                        return;
                    }
                }
                _ = async { drop(closed.wait_for(|c| *c).await) }, if reading => {
                    reading = false;
                    end = Some(Status::unavailable("control replica is shutting down"));
                }
                next = requests.next(), if reading && room => {
                    let req = match next {
                        Some(Ok(req)) => req,
                        Some(Err(status)) => {
                            reading = false;
                            end = Some(status);
                            continue;
                        }
                        None => {
                            reading = false;
                            continue;
                        }
                    };
                    let arrived = Instant::now();
                    let (channel, options) = match parse_channel(&req.channel)
                        .and_then(|c| Ok((c, publish_options(req.idempotency_key)?)))
                    {
                        Ok(valid) => valid,
                        Err(status) => {
                            if !reply(&tx, req.id, arrived, Err(status)).await {
                                return;
                            }
                            continue;
                        }
                    };
                    in_flight += 1;
                    bytes += req.data.len();
                    let waiting = Waiting { id: req.id, data: req.data, options, arrived };
                    match busy.get_mut(&channel) {
                        Some(queue) => queue.push_back(waiting),
                        None => {
                            busy.insert(channel.clone(), VecDeque::new());
                            running.push(self.start(channel, waiting));
                        }
                    }
                }
            }
        }
        if let Some(status) = end {
            let _ = tx.send(Err(status)).await;
        }
    }

    /// Starts one request's publish.
    fn start(&self, channel: Channel, w: Waiting) -> BoxFuture<'static, Done> {
        let api = self.clone();
        Box::pin(async move {
            let size = w.data.len();
            let result = api.publish_to(&channel, w.data, w.options).await;
            (channel, w.id, w.arrived, size, result)
        })
    }
}

/// Sends one request's reply and counts it; false once the client is gone.
async fn reply(tx: &Replies, id: u64, arrived: Instant, outcome: Result<pb::PublishApiResponse, Status>) -> bool {
    let code = outcome.as_ref().map_or_else(Status::code, |_| Code::Ok);
    metrics::api_request("PublishStream", code, arrived.elapsed());
    let result = match outcome {
        Ok(p) => Outcome::Ok(p),
        Err(status) => Outcome::Error(error(&status)),
    };
    tx.send(Ok(pb::PublishStreamReply { id, result: Some(result) })).await.is_ok()
}
