//! `WatchEvents`: every registry event of every gateway, as `SessionEvent`s.
//!
//! Each call listens to all registry shards on the bus (not only the owned ones) and
//! forwards through a bounded queue of [`WATCH_BUFFER`] events. A client that falls that
//! far behind gets RESOURCE_EXHAUSTED and the stream ends: it never holds unbounded memory.
//! The stream also ends when the client goes away, or with UNAVAILABLE when the server
//! stops. Each stream holds a bus subscription and a task, so a replica serves at most
//! [`MAX_WATCHERS`] at once; one more gets RESOURCE_EXHAUSTED.

use switchboard_bus::Address;
use switchboard_wire::pb::{self, registry_event::Event, session_event::Kind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{Api, bus_status};

/// Events queued per watcher before it is cut off as too slow.
pub const WATCH_BUFFER: usize = 1024;

/// Most `WatchEvents` streams one replica serves at once.
pub const MAX_WATCHERS: usize = 64;

/// Holds one of the [`MAX_WATCHERS`] places while its stream runs.
struct Place(std::sync::Arc<crate::state::Shared>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

// === impl Api ===

impl Api {
    pub(super) async fn watch(&self) -> Result<ReceiverStream<Result<pb::SessionEvent, Status>>, Status> {
        if self.shared.watchers.fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= MAX_WATCHERS {
            self.shared.watchers.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            return Err(Status::resource_exhausted(format!("at most {MAX_WATCHERS} WatchEvents streams per replica")));
        }
        let place = Place(self.shared.clone());
        let mut inbox = self.shared.bus.listen(&Address::RegistryAll, None).await.map_err(bus_status)?;
        let mut closed = self.shared.streams_closed.subscribe();
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(async move {
            let _place = place;
            loop {
                let incoming = tokio::select! {
                    _ = tx.closed() => return,
                    _ = closed.wait_for(|c| *c) => {
                        let _ = tx.try_send(Err(Status::unavailable("control replica is shutting down")));
                        return;
                    }
                    incoming = inbox.next() => incoming,
                };
                let Some(incoming) = incoming else {
                    let _ = tx.try_send(Err(Status::unavailable("bus connection closed")));
                    return;
                };
                let Some(event) = incoming.message.decode().ok().and_then(session_event) else { continue };
                // Keep the last slot for the error, so the client learns why the stream ended.
                if tx.capacity() <= 1 {
                    let message = format!("watcher too slow: {} events queued", WATCH_BUFFER - 1);
                    let _ = tx.try_send(Err(Status::resource_exhausted(message)));
                    return;
                }
                if tx.try_send(Ok(event)).is_err() {
                    return;
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}

/// The API form of a registry event (`None` for an empty one).
pub(crate) fn session_event(ev: pb::RegistryEvent) -> Option<pb::SessionEvent> {
    let base = pb::SessionEvent { gateway: ev.gateway, at_ms: ev.at_ms, ..Default::default() };
    Some(match ev.event? {
        Event::Connected(r) => {
            pb::SessionEvent { kind: Kind::Connect as i32, session: r.session, user: r.user, ..base }
        }
        Event::Disconnected(g) => {
            pb::SessionEvent { kind: Kind::Disconnect as i32, session: g.session, user: g.user, ..base }
        }
        Event::Subscribed(c) => pb::SessionEvent {
            kind: Kind::Subscribe as i32,
            session: c.session,
            user: c.user,
            channel: c.channel,
            ..base
        },
        Event::Unsubscribed(c) => pb::SessionEvent {
            kind: Kind::Unsubscribe as i32,
            session: c.session,
            user: c.user,
            channel: c.channel,
            ..base
        },
    })
}
