//! The `SwitchboardApi` service implementation.

use std::sync::Arc;

use futures_util::future::join_all;
use switchboard_bus::{Bus, BusError, Position};
use switchboard_wire::Channel;
use switchboard_wire::pb::{self, switchboard_api_server::SwitchboardApi};
use tonic::{Request, Response, Status};

/// The backend API over a bus node.
pub struct Api {
    bus: Arc<dyn Bus>,
}

impl Api {
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        Api { bus }
    }
}

fn parse_channel(name: &str) -> Result<Channel, Status> {
    Channel::parse(name).map_err(|e| Status::invalid_argument(format!("channel {name:?}: {e}")))
}

fn bus_status(e: BusError) -> Status {
    match e {
        BusError::Unavailable(_) | BusError::NoResponders => Status::unavailable(e.to_string()),
        BusError::Timeout => Status::deadline_exceeded(e.to_string()),
        BusError::Invalid(_) => Status::internal(e.to_string()),
    }
}

fn response(p: Position) -> pb::PublishApiResponse {
    pb::PublishApiResponse { offset: p.offset, epoch: p.epoch.to_string() }
}

#[tonic::async_trait]
impl SwitchboardApi for Api {
    async fn publish(&self, req: Request<pb::PublishApiRequest>) -> Result<Response<pb::PublishApiResponse>, Status> {
        let req = req.into_inner();
        let channel = parse_channel(&req.channel)?;
        let position = self.bus.publish(&channel, req.data).await.map_err(bus_status)?;
        Ok(Response::new(response(position)))
    }

    async fn broadcast(&self, req: Request<pb::BroadcastRequest>) -> Result<Response<pb::BroadcastResponse>, Status> {
        let req = req.into_inner();
        if req.channels.is_empty() {
            return Err(Status::invalid_argument("channels is empty"));
        }
        // Validate everything first: a broadcast with a bad channel publishes nothing.
        let channels = req.channels.iter().map(|c| parse_channel(c)).collect::<Result<Vec<_>, _>>()?;
        let results = join_all(channels.iter().map(|c| self.bus.publish(c, req.data.clone()))).await;
        let results = channels
            .iter()
            .zip(results)
            .map(|(channel, r)| pb::BroadcastResult {
                channel: channel.to_string(),
                result: Some(match r {
                    Ok(p) => pb::broadcast_result::Result::Ok(response(p)),
                    Err(e) => {
                        let status = bus_status(e);
                        pb::broadcast_result::Result::Error(pb::BroadcastError {
                            code: status.code() as i32,
                            message: status.message().to_owned(),
                        })
                    }
                }),
            })
            .collect();
        Ok(Response::new(pb::BroadcastResponse { results }))
    }
}
