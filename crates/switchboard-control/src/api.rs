//! The `SwitchboardApi` service: validation and status codes here, the work in
//! [`commands`] (to gateways), [`reads`] (from the registry), [`history`] (channel
//! history), [`stream`] (ordered publishing) and [`watch`] (event streams).
//!
//! Every call is counted in `switchboard_control_api_requests_total{method,code}`; a
//! `PublishStream` counts each of its requests.

mod commands;
mod history;
mod reads;
mod stream;
mod watch;

pub use history::{DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};
pub(crate) use reads::run_presence_server;
pub use stream::{MAX_STREAM_IN_FLIGHT, MAX_STREAM_IN_FLIGHT_BYTES};
#[cfg(test)]
pub(crate) use watch::MAX_WATCHERS;

use std::sync::Arc;

use futures_util::future::join_all;
use switchboard_bus::{BusError, Position, PublishOptions};
use switchboard_wire::Channel;
use switchboard_wire::pb::{self, switchboard_api_server::SwitchboardApi};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::Control;
use crate::metrics;
use crate::state::Shared;

/// The backend API of one control replica. Cheap to clone; call its [`SwitchboardApi`]
/// methods directly in tests, or serve it with [`Control::serve`].
#[derive(Clone)]
pub struct Api {
    shared: Arc<Shared>,
    /// Keeps the replica's tasks running while the API is served.
    _control: Control,
}

impl Api {
    pub(crate) fn new(control: Control) -> Self {
        Api { shared: control.shared().clone(), _control: control }
    }
}

/// The longest idempotency key a publish may carry.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

fn parse_channel(name: &str) -> Result<Channel, Status> {
    Channel::parse(name).map_err(|e| Status::invalid_argument(format!("channel {name:?}: {e}")))
}

/// A publish's options from its `idempotency_key` (empty: none): at most
/// [`MAX_IDEMPOTENCY_KEY_BYTES`], no control characters (the NATS bus carries it in a header).
fn publish_options(key: String) -> Result<PublishOptions, Status> {
    if key.is_empty() {
        return Ok(PublishOptions::default());
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(Status::invalid_argument(format!(
            "idempotency_key is longer than {MAX_IDEMPOTENCY_KEY_BYTES} bytes"
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(Status::invalid_argument("idempotency_key has a control character"));
    }
    Ok(PublishOptions { idempotency_key: Some(key) })
}

fn bus_status(e: BusError) -> Status {
    match e {
        BusError::Unavailable(_) | BusError::NoResponders => Status::unavailable(e.to_string()),
        BusError::Timeout => Status::deadline_exceeded(e.to_string()),
        BusError::Invalid(_) => Status::internal(e.to_string()),
        BusError::NoHistory => Status::failed_precondition(e.to_string()),
    }
}

/// A status as a per-item error of `Broadcast` and `PublishStream`.
fn error(status: &Status) -> pb::BroadcastError {
    pb::BroadcastError { code: status.code() as i32, message: status.message().to_owned() }
}

/// The answer to a publish: where it was stored, or zeros in a live-only namespace.
fn position(p: Option<Position>) -> pb::PublishApiResponse {
    p.map_or_else(Default::default, |p| pb::PublishApiResponse { offset: p.offset, epoch: p.epoch.to_string() })
}

/// Runs one call in its `grpc` span, counts it with its status and time, and wraps its
/// result.
async fn counted<T>(
    method: &'static str,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    let span = tracing::info_span!("grpc", method);
    let started = std::time::Instant::now();
    let result = call.instrument(span.clone()).await;
    let (code, took) = (result.as_ref().map_or_else(Status::code, |_| Code::Ok), started.elapsed());
    metrics::api_request(method, code, took);
    span.in_scope(|| tracing::debug!(code = metrics::code_name(code), took_us = took.as_micros() as u64, "answered"));
    result.map(Response::new)
}

// === impl Api ===

impl Api {
    /// Runs `call` only while the bus is connected: every call but `Info` needs it, and
    /// one made while NATS is unreachable fails at once instead of hanging its caller.
    async fn gated<T>(&self, call: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
        if !self.shared.bus.is_ready() {
            return Err(Status::unavailable(
                "this control replica has no NATS connection; try again or another replica",
            ));
        }
        call.await
    }

    async fn publish_one(&self, req: pb::PublishApiRequest) -> Result<pb::PublishApiResponse, Status> {
        let channel = parse_channel(&req.channel)?;
        let options = publish_options(req.idempotency_key)?;
        self.publish_to(&channel, req.data, options).await.map(position).map_err(bus_status)
    }

    /// Publishes straight to the bus: the bus (JetStream, or the in-process broker) gives
    /// the offset, no replica takes part.
    async fn publish_to(
        &self,
        channel: &Channel,
        data: bytes::Bytes,
        options: PublishOptions,
    ) -> Result<Option<Position>, BusError> {
        self.shared.bus.publish(channel, data, options).await
    }

    async fn broadcast_all(&self, req: pb::BroadcastRequest) -> Result<pb::BroadcastResponse, Status> {
        if req.channels.is_empty() {
            return Err(Status::invalid_argument("channels is empty"));
        }
        // Validate everything first: a broadcast with a bad channel publishes nothing.
        let channels = req.channels.iter().map(|c| parse_channel(c)).collect::<Result<Vec<_>, _>>()?;
        let options = publish_options(req.idempotency_key)?;
        let results = join_all(channels.iter().map(|c| self.publish_to(c, req.data.clone(), options.clone()))).await;
        let results = channels
            .iter()
            .zip(results)
            .map(|(channel, r)| pb::BroadcastResult {
                channel: channel.to_string(),
                result: Some(match r {
                    Ok(p) => pb::broadcast_result::Result::Ok(position(p)),
                    Err(e) => pb::broadcast_result::Result::Error(error(&bus_status(e))),
                }),
            })
            .collect();
        Ok(pb::BroadcastResponse { results })
    }
}

#[tonic::async_trait]
impl SwitchboardApi for Api {
    async fn publish(&self, req: Request<pb::PublishApiRequest>) -> Result<Response<pb::PublishApiResponse>, Status> {
        counted("Publish", self.gated(self.publish_one(req.into_inner()))).await
    }

    async fn broadcast(&self, req: Request<pb::BroadcastRequest>) -> Result<Response<pb::BroadcastResponse>, Status> {
        counted("Broadcast", self.gated(self.broadcast_all(req.into_inner()))).await
    }

    type PublishStreamStream = ReceiverStream<Result<pb::PublishStreamReply, Status>>;

    async fn publish_stream(
        &self,
        req: Request<Streaming<pb::PublishStreamRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        // Counted here only when it cannot start; then each request is counted.
        let started = std::time::Instant::now();
        match self.gated(async { Ok(()) }).await {
            Ok(()) => Ok(Response::new(self.publish_stream_of(req.into_inner()))),
            Err(status) => {
                metrics::api_request("PublishStream", status.code(), started.elapsed());
                Err(status)
            }
        }
    }

    async fn history(&self, req: Request<pb::HistoryApiRequest>) -> Result<Response<pb::HistoryApiResponse>, Status> {
        counted("History", self.gated(self.history_of(req.into_inner()))).await
    }

    async fn history_remove(
        &self,
        req: Request<pb::HistoryRemoveApiRequest>,
    ) -> Result<Response<pb::HistoryRemoveApiResponse>, Status> {
        counted("HistoryRemove", self.gated(self.remove_history_of(req.into_inner()))).await
    }

    async fn send_to_session(
        &self,
        req: Request<pb::SendToSessionRequest>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        counted("SendToSession", self.gated(self.send_session(req.into_inner()))).await
    }

    async fn send_to_user(&self, req: Request<pb::SendToUserRequest>) -> Result<Response<pb::SendResponse>, Status> {
        counted("SendToUser", self.gated(self.send_user(req.into_inner()))).await
    }

    async fn disconnect(
        &self,
        req: Request<pb::DisconnectRequest>,
    ) -> Result<Response<pb::DisconnectResponse>, Status> {
        counted("Disconnect", self.gated(self.close(req.into_inner()))).await
    }

    async fn subscribe(
        &self,
        req: Request<pb::ServerSubscribeRequest>,
    ) -> Result<Response<pb::ServerSubscribeResponse>, Status> {
        counted("Subscribe", self.gated(self.server_subscribe(req.into_inner(), true))).await
    }

    async fn unsubscribe(
        &self,
        req: Request<pb::ServerSubscribeRequest>,
    ) -> Result<Response<pb::ServerSubscribeResponse>, Status> {
        counted("Unsubscribe", self.gated(self.server_subscribe(req.into_inner(), false))).await
    }

    async fn get_session(&self, req: Request<pb::GetSessionRequest>) -> Result<Response<pb::SessionInfo>, Status> {
        counted("GetSession", self.gated(self.session(req.into_inner()))).await
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        counted("ListSessions", self.gated(self.sessions_of(req.into_inner()))).await
    }

    async fn presence(&self, req: Request<pb::PresenceRequest>) -> Result<Response<pb::PresenceResponse>, Status> {
        counted("Presence", self.gated(self.presence_of(req.into_inner()))).await
    }

    async fn presence_stats(
        &self,
        req: Request<pb::PresenceRequest>,
    ) -> Result<Response<pb::PresenceStatsResponse>, Status> {
        counted("PresenceStats", self.gated(self.stats_of(req.into_inner()))).await
    }

    async fn channels(&self, req: Request<pb::ChannelsRequest>) -> Result<Response<pb::ChannelsResponse>, Status> {
        counted("Channels", self.gated(self.channel_counts(req.into_inner()))).await
    }

    async fn info(&self, _: Request<pb::InfoRequest>) -> Result<Response<pb::InfoResponse>, Status> {
        counted("Info", async { Ok(self.cluster_info()) }).await
    }

    type WatchEventsStream = ReceiverStream<Result<pb::SessionEvent, Status>>;

    async fn watch_events(
        &self,
        _: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        counted("WatchEvents", self.gated(self.watch())).await
    }
}
