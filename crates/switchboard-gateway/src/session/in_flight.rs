//! A session's commands that wait on the bus, and the registry events its subscription
//! changes send: work the session's loop polls beside its socket and outbox, never an
//! `.await` inside one of its branches, and all of it inside the session's one task.
//!
//! - A command's synchronous part (checks, the hub, the session's channel list) has run
//!   when its wait is started here; the wait ends in a [`Done`] that the session finishes.
//!   Waits overlap, and they finish in the order they started (`FuturesOrdered`), so
//!   replies keep command order: a pipelined burst of subscribes costs about one bus round
//!   trip, not one each.
//! - Registry events go out one after another, each once the one before is sent, so they
//!   reach the registry in the order of their sequence numbers.
//! - A wait or an event that is over at its first poll (the in-process bus answers at once)
//!   is finished there and then, when nothing is ahead of it: no box, no queue.
//! - Both queues live in one box that exists only while something waits: an idle session
//!   holds a null pointer.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, FutureExt, ready};
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::task::noop_waker_ref;

use super::Done;

/// A command's wait on the bus.
pub(super) type Wait = BoxFuture<'static, Done>;

/// What waits for one session (see the module doc).
#[derive(Default)]
pub(super) struct InFlight {
    commands: FuturesOrdered<Wait>,
    events: VecDeque<BoxFuture<'static, ()>>,
    /// The oldest command, over: [`poll`] leaves it here for [`take`], so the session's
    /// select loop does not carry room for a `Done` in its state.
    over: Option<Done>,
}

impl InFlight {
    /// Commands and registry events waiting.
    pub(super) fn len(&self) -> usize {
        self.commands.len() + self.events.len() + usize::from(self.over.is_some())
    }
}

/// Starts `wait` behind the commands still waiting. With none, it is polled once now, and
/// what it ended with, if it did, is returned for the session to finish at once.
pub(super) fn start(slot: &mut Option<Box<InFlight>>, mut wait: Wait) -> Option<Done> {
    if slot.as_ref().is_none_or(|w| w.commands.is_empty())
        && let Poll::Ready(done) = wait.poll_unpin(&mut Context::from_waker(noop_waker_ref()))
    {
        return Some(done);
    }
    slot.get_or_insert_default().commands.push_back(wait);
    None
}

/// Queues `done`, a command that needed no bus, behind the commands still waiting; with
/// none, returns it to be finished at once.
pub(super) fn then(slot: &mut Option<Box<InFlight>>, done: Done) -> Option<Done> {
    match slot {
        Some(w) if !w.commands.is_empty() => {
            w.commands.push_back(ready(done).boxed());
            None
        }
        _ => Some(done),
    }
}

/// Sends a registry event after those still going out.
pub(super) fn send(slot: &mut Option<Box<InFlight>>, mut event: BoxFuture<'static, ()>) {
    if slot.as_ref().is_none_or(|w| w.events.is_empty())
        && event.poll_unpin(&mut Context::from_waker(noop_waker_ref())).is_ready()
    {
        return;
    }
    slot.get_or_insert_default().events.push_back(event);
}

/// Drives the events and the commands: ready when the oldest command is over (see
/// [`take`]) or when events went out, which may leave room for more commands. Frees the
/// box once nothing waits.
pub(super) fn poll(slot: &mut Option<Box<InFlight>>, cx: &mut Context<'_>) -> Poll<()> {
    let Some(w) = slot else { return Poll::Pending };
    if w.over.is_some() {
        return Poll::Ready(());
    }
    let before = w.events.len();
    while let Some(event) = w.events.front_mut() {
        if event.poll_unpin(cx).is_pending() {
            break;
        }
        w.events.pop_front();
    }
    let sent = w.events.len() < before;
    if let Poll::Ready(Some(done)) = w.commands.poll_next_unpin(cx) {
        w.over = Some(done);
        return Poll::Ready(());
    }
    if w.len() == 0 {
        *slot = None;
    }
    if sent { Poll::Ready(()) } else { Poll::Pending }
}

/// The events still going out, taken for the session's end: a `leave` among them must go
/// out even though the session is over (the registry events among them are superseded by
/// the disconnect that follows, and harmless).
pub(super) fn take_events(slot: &mut Option<Box<InFlight>>) -> VecDeque<BoxFuture<'static, ()>> {
    slot.as_mut().map(|w| std::mem::take(&mut w.events)).unwrap_or_default()
}

/// The oldest command, if [`poll`] found it over.
pub(super) fn take(slot: &mut Option<Box<InFlight>>) -> Option<Done> {
    slot.as_mut()?.over.take()
}
