//! A connection's bounded outbound queue of complete frames.
//!
//! Producers (the hub's fan-out, the session's own replies) push shared frames; the
//! connection's writer takes everything queued at once and writes it in one system call.
//! The lock is per connection and held only to move a pointer in or swap the queue out, so
//! it is contended by at most the writer and one producer at a time.
//!
//! The writer's waker lives under the same lock ([`Outbox::poll_take`]): a push that finds
//! the queue empty wakes it, with no separate notification primitive to lock, register in
//! and unregister from on every delivery.
//!
//! Direct writes: an outbox made [`Outbox::with_sink`] holds the connection's non-blocking
//! socket. A push that finds nothing queued and the writer idle (it holds no frames of its
//! own) writes the frame to the socket at once, under the lock, and only what the socket
//! does not take is queued for the writer. At low rates, where every delivery is its own
//! write, this saves the hand-over to the connection's task (a wake-up, a poll, a second
//! lock), which costs about as much as everything else a delivery does outside the kernel.
//! Order is kept because a frame is written directly only when nothing is ahead of it.
//! Under load the fan-out uses [`Outbox::enqueue`] instead, so that frames gather while the
//! writer waits its turn and go out several to a write.
//!
//! The queue and the writer's buffer trade places on every [`Outbox::take`] (double
//! buffering): under steady traffic neither side allocates, and [`Outbox::trim`] gives the
//! memory back once the connection goes quiet.
//!
//! Policy when a consumer is slow: once the queued bytes would exceed the limit, the outbox
//! stops accepting frames and reports [`Push::Overflow`]; the session is then closed with
//! close code 4002 (slow consumer), never left to grow.

use std::io;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};

/// Where an outbox writes frames directly: the connection's socket, in non-blocking mode.
pub trait Sink: Send + Sync + 'static {
    /// Writes what the socket takes now, without blocking; `WouldBlock` when it takes
    /// nothing.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Accepted: queued for the writer, or already written to the socket.
    Queued,
    /// The queue is full: the frame was dropped and the outbox is now overflowed.
    Overflow,
    /// The outbox no longer accepts frames (overflowed or closed before).
    Closed,
}

/// A bounded queue of frames for one connection.
pub struct Outbox {
    state: Mutex<State>,
    max_bytes: usize,
}

#[derive(Default)]
struct State {
    frames: Vec<Bytes>,
    bytes: usize,
    overflowed: bool,
    closed: bool,
    /// The writer, waiting for frames (set by [`Outbox::poll_take`] on an empty queue).
    writer: Option<Waker>,
    /// The writer holds frames it took and has not finished writing: no direct write may
    /// overtake them.
    writer_busy: bool,
    /// The writer while it waits for its socket to take what it holds: woken only when the
    /// outbox overflows ([`Outbox::poll_overflow`]).
    overflow_waiter: Option<Waker>,
    sink: Option<Arc<dyn Sink>>,
}

impl State {
    /// Hands the queued frames to the writer, which is busy with them from now on.
    fn move_out(&mut self, into: &mut Vec<Bytes>) {
        self.writer_busy = true;
        if into.is_empty() {
            std::mem::swap(&mut self.frames, into);
        } else {
            into.append(&mut self.frames);
        }
        self.bytes = 0;
    }
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
        Outbox { state: Mutex::new(State::default()), max_bytes }
    }

    /// An outbox that writes to `sink` directly while nothing is queued (see the module
    /// documentation).
    pub fn with_sink(max_bytes: usize, sink: Arc<dyn Sink>) -> Self {
        Outbox { state: Mutex::new(State { sink: Some(sink), ..State::default() }), max_bytes }
    }

    /// Writes `frame` directly if nothing is ahead of it, and queues what is left of it,
    /// unless that would exceed the limit.
    pub fn push(&self, frame: Bytes) -> Push {
        self.push_as(frame, true)
    }

    /// Queues `frame` for the writer (never writes directly), unless that would exceed the
    /// limit. Under load this is the cheaper way: the writer comes back to a queue that has
    /// gathered several frames and writes them with one system call.
    pub fn enqueue(&self, frame: Bytes) -> Push {
        self.push_as(frame, false)
    }

    fn push_as(&self, mut frame: Bytes, direct: bool) -> Push {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.overflowed || s.closed {
            return Push::Closed;
        }
        if direct
            && s.frames.is_empty()
            && !s.writer_busy
            && let Some(sink) = &s.sink
        {
            // Any error but a full socket is left for the writer to find on its own write.
            if let Ok(n) = sink.try_write(&frame) {
                if n == frame.len() {
                    return Push::Queued;
                }
                frame.advance(n);
            }
        }
        // A frame larger than the whole limit still goes through on an empty queue, so one
        // big publication cannot wedge a connection that keeps up.
        if s.bytes + frame.len() > self.max_bytes && !s.frames.is_empty() {
            s.overflowed = true;
            s.frames = Vec::new();
            s.bytes = 0;
            let (writer, waiter) = (s.writer.take(), s.overflow_waiter.take());
            drop(s);
            for w in [writer, waiter].into_iter().flatten() {
                w.wake();
            }
            return Push::Overflow;
        }
        s.bytes += frame.len();
        s.frames.push(frame);
        let writer = s.writer.take();
        drop(s);
        if let Some(w) = writer {
            w.wake();
        }
        Push::Queued
    }

    /// Moves every queued frame into `into` (appending). When `into` is empty, which is the
    /// writer's steady state, the two buffers swap: the queue keeps `into`'s capacity for
    /// the next frames and nothing is copied or allocated. The writer counts as busy with
    /// them (no direct write) until [`Outbox::poll_take`] next finds the queue empty.
    pub fn take(&self, into: &mut Vec<Bytes>) -> Taken {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.overflowed {
            return Taken::Overflowed;
        }
        s.move_out(into);
        Taken::Frames
    }

    /// Like [`Outbox::take`], but when nothing is queued (and the outbox did not overflow),
    /// registers the writer's waker for the next push and returns `Pending`.
    pub fn poll_take(&self, cx: &mut Context<'_>, into: &mut Vec<Bytes>) -> Poll<Taken> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.overflowed {
            return Poll::Ready(Taken::Overflowed);
        }
        if s.frames.is_empty() {
            // The writer polls only once it has written everything it took.
            s.writer_busy = false;
            s.writer.get_or_insert_with(|| cx.waker().clone()).clone_from(cx.waker());
            return Poll::Pending;
        }
        // Frames queued while the writer is busy need no wake-up: it comes back for them.
        s.writer = None;
        s.move_out(into);
        Poll::Ready(Taken::Frames)
    }

    /// Ready once the outbox has overflowed; until then registers the waker to be woken by
    /// the overflow alone (not by every push). For a writer that waits on its socket while
    /// frames keep arriving: a client that stops reading is found even though its socket
    /// never becomes writable again.
    pub fn poll_overflow(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.overflowed {
            return Poll::Ready(());
        }
        s.overflow_waiter.get_or_insert_with(|| cx.waker().clone()).clone_from(cx.waker());
        Poll::Pending
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

    /// Stops accepting frames (the session is closing).
    pub fn close(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.closed = true;
        s.frames = Vec::new();
        s.bytes = 0;
        s.writer = None;
        s.overflow_waiter = None;
        // The socket closes when the connection's owner drops it, not when the hub does.
        s.sink = None;
    }

    /// Bytes currently queued.
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}
