//! `History` and `HistoryRemove`: a channel's history, read from and removed on the bus (a
//! JetStream stream, or the in-process broker's), which keeps it; control keeps none.
//!
//! A page holds at most [`MAX_HISTORY_LIMIT`] publications: a larger `limit` is cut to it,
//! and 0 means [`DEFAULT_HISTORY_LIMIT`]. A client reads on with `since` set to the last
//! publication it got.

use std::sync::Arc;

use switchboard_bus::{BusError, HistoryQuery, Position};
use switchboard_wire::pb;
use tonic::Status;

use super::{Api, bus_status, parse_channel};

/// Publications per `History` page when the request leaves `limit` 0.
pub const DEFAULT_HISTORY_LIMIT: u32 = 100;
/// The most publications one `History` page holds; a larger `limit` is cut to it.
pub const MAX_HISTORY_LIMIT: u32 = 1000;

// === impl Api ===

impl Api {
    pub(super) async fn history_of(&self, req: pb::HistoryApiRequest) -> Result<pb::HistoryApiResponse, Status> {
        let channel = parse_channel(&req.channel)?;
        let limit = match req.limit {
            0 => DEFAULT_HISTORY_LIMIT,
            n => n.min(MAX_HISTORY_LIMIT),
        } as usize;
        let since = req.since.map(|p| Position { offset: p.offset, epoch: Arc::from(p.epoch) });
        let query = HistoryQuery { since, limit, reverse: req.reverse };
        let page = self.shared.bus.history(&channel, query).await.map_err(|e| history_status(&channel, e))?;
        Ok(pb::HistoryApiResponse {
            publications: page
                .publications
                .into_iter()
                .map(|p| pb::HistoryPublication { offset: p.offset, epoch: p.epoch.to_string(), data: p.data })
                .collect(),
            latest: Some(pb::HistoryPosition { offset: page.latest.offset, epoch: page.latest.epoch.to_string() }),
            continuous: page.continuous,
        })
    }

    pub(super) async fn remove_history_of(
        &self,
        req: pb::HistoryRemoveApiRequest,
    ) -> Result<pb::HistoryRemoveApiResponse, Status> {
        let channel = parse_channel(&req.channel)?;
        self.shared.bus.remove_history(&channel).await.map_err(|e| history_status(&channel, e))?;
        Ok(pb::HistoryRemoveApiResponse {})
    }
}

/// A bus error of a history call; a live-only namespace is named with the channel.
fn history_status(channel: &switchboard_wire::Channel, e: BusError) -> Status {
    match e {
        BusError::NoHistory => {
            Status::failed_precondition(format!("channel {:?}: its namespace keeps no history", channel.as_str()))
        }
        e => bus_status(e),
    }
}
