//! A connection's bounded outbound queue of complete frames.
//!
//! Producers (the hub's fan-out, the session's own replies) push shared frames; the
//! connection's writer takes everything queued at once and writes it in one system call.
//! The lock is per connection and held only to move a pointer in or swap the queue out, so
//! it is contended by at most the writer and one producer at a time.
//!
//! The queue and the writer's buffer trade places on every [`Outbox::take`] (double
//! buffering): under steady traffic neither side allocates, and [`Outbox::trim`] gives the
//! memory back once the connection goes quiet.
//!
//! Policy when a consumer is slow: once the queued bytes would exceed the limit, the outbox
//! stops accepting frames and reports [`Push::Overflow`]; the session is then closed with
//! close code 4002 (slow consumer), never left to grow.

use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The queue is full: the frame was dropped and the outbox is now overflowed.
    Overflow,
    /// The outbox no longer accepts frames (overflowed or closed before).
    Closed,
}

/// A bounded queue of frames for one connection.
pub struct Outbox {
    state: Mutex<State>,
    ready: Notify,
    max_bytes: usize,
}

#[derive(Default)]
struct State {
    frames: Vec<Bytes>,
    bytes: usize,
    overflowed: bool,
    closed: bool,
}

/// What [`Outbox::take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Frames were moved out (possibly none).
    Frames,
    /// The outbox overflowed: close the session as a slow consumer.
    Overflowed,
}

// === impl Outbox ===

impl Outbox {
    /// An empty outbox holding at most `max_bytes` of queued frames. Allocates nothing
    /// until a frame is pushed.
    pub fn new(max_bytes: usize) -> Self {
        Outbox { state: Mutex::new(State::default()), ready: Notify::new(), max_bytes }
    }

    /// Queues `frame`, unless that would exceed the limit.
    pub fn push(&self, frame: Bytes) -> Push {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.overflowed || s.closed {
            return Push::Closed;
        }
        // A frame larger than the whole limit still goes through on an empty queue, so one
        // big publication cannot wedge a connection that keeps up.
        if s.bytes + frame.len() > self.max_bytes && !s.frames.is_empty() {
            s.overflowed = true;
            s.frames = Vec::new();
            s.bytes = 0;
            drop(s);
            self.ready.notify_one();
            return Push::Overflow;
        }
        s.bytes += frame.len();
        let was_empty = s.frames.is_empty();
        s.frames.push(frame);
        drop(s);
        if was_empty {
            self.ready.notify_one();
        }
        Push::Queued
    }

    /// Moves every queued frame into `into` (appending). When `into` is empty, which is the
    /// writer's steady state, the two buffers swap: the queue keeps `into`'s capacity for
    /// the next frames and nothing is copied or allocated.
    pub fn take(&self, into: &mut Vec<Bytes>) -> Taken {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.overflowed {
            return Taken::Overflowed;
        }
        if into.is_empty() {
            std::mem::swap(&mut s.frames, into);
        } else {
            into.append(&mut s.frames);
        }
        s.bytes = 0;
        Taken::Frames
    }

    /// Frees the queue's spare capacity if nothing is queued: called by the writer from
    /// time to time, so a connection that had a burst and went quiet holds no queue memory.
    pub fn trim(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.frames.is_empty() && s.frames.capacity() > 0 {
            s.frames = Vec::new();
        }
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).frames.capacity()
    }

    /// Waits until a frame was pushed or the outbox overflowed since the last `take`.
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Stops accepting frames (the session is closing).
    pub fn close(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.closed = true;
        s.frames = Vec::new();
        s.bytes = 0;
    }

    /// Bytes currently queued.
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}
