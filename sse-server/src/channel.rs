//! One channel's live subscribers. History lives in the replay store; this is only the fan-out side.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

use crate::Position;
use crate::flush::{Flushers, Sink};
use crate::metrics::{Metrics, bump};

/// What a subscriber's queue carries.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A live event at its channel position.
    Event(Position, Bytes),
    /// The last bytes of the stream (the shutdown `retry:`); the stream ends after them.
    Final(Bytes),
}

#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) tx: QueueTx,
    /// Set when the hub drops a slow subscriber: its stream ends without draining the queue.
    pub(crate) kicked: Arc<AtomicBool>,
}

#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) name: Arc<str>,
    /// Serialises store append + fan-out, so every queue receives events in position order.
    pub(crate) publish: tokio::sync::Mutex<()>,
    subscribers: Mutex<Subscribers>,
}

#[derive(Debug, Default)]
struct Subscribers {
    next: u64,
    map: HashMap<u64, Handle>,
}

impl Channel {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Channel {
            name,
            publish: tokio::sync::Mutex::new(()),
            subscribers: Mutex::new(Subscribers::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Subscribers> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn add(&self, handle: Handle) -> u64 {
        let mut subs = self.lock();
        subs.next += 1;
        let id = subs.next;
        subs.map.insert(id, handle);
        id
    }

    pub(crate) fn remove(&self, id: u64) {
        self.lock().map.remove(&id);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Never waits: a full queue disconnects its subscriber instead of slowing the publisher.
    /// Subscribers whose socket a flusher writes ([`QueueRx::enter_direct`]) are handed to their
    /// flusher once per round, not woken one by one.
    pub(crate) fn fan_out(
        &self,
        position: Position,
        bytes: &Bytes,
        metrics: &Metrics,
        flushers: &Flushers,
    ) {
        let mut dirty: Vec<Vec<Arc<Queue>>> = Vec::new();
        let mut subs = self.lock();
        subs.map.retain(|_, h| {
            match h.tx.try_send(Frame::Event(position, bytes.clone())) {
                Ok(None) => true,
                Ok(Some(flusher)) => {
                    if dirty.len() <= flusher {
                        dirty.resize_with(flusher + 1, Vec::new);
                    }
                    dirty[flusher].push(h.tx.0.clone());
                    true
                }
                Err(TrySendError::Full(_)) => {
                    h.kicked.store(true, Ordering::Release);
                    bump(&metrics.dropped_slow);
                    tracing::info!(channel = %self.name, "disconnected a slow subscriber (queue full)");
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        drop(subs);
        for (i, queues) in dirty.into_iter().enumerate() {
            if !queues.is_empty() {
                flushers.schedule(i, queues);
            }
        }
    }

    /// Ends every stream after what is already queued. Returns how many there were.
    pub(crate) fn close(&self) -> usize {
        let drained: Vec<Handle> = self.lock().map.drain().map(|(_, h)| h).collect();
        drained.len()
    }

    /// Ends every stream with a final frame (or at once when its queue is full).
    pub(crate) fn finish(&self, mut last: impl FnMut() -> Bytes) {
        let drained: Vec<Handle> = self.lock().map.drain().map(|(_, h)| h).collect();
        for h in drained {
            if h.tx.try_send(Frame::Final(last())).is_err() {
                h.kicked.store(true, Ordering::Release);
            }
        }
    }
}

/// A subscriber's bounded queue (publisher side). Dropping it ends the stream after what is queued.
///
/// Why not `tokio::sync::mpsc`: its bounded channel allocates a 32-slot block per subscriber up front
/// (about 1.5 KiB of an idle subscriber's memory) and pays a semaphore round trip per event on both
/// sides, which profiling showed among the top user-space costs of fan-out. This is a mutex around a
/// `VecDeque` that starts empty, with the receiver's waker taken on the first send after a poll.
#[derive(Debug)]
pub(crate) struct QueueTx(Arc<Queue>);

/// A subscriber's bounded queue (stream side). Dropping it makes further sends fail as `Closed`.
#[derive(Debug)]
pub(crate) struct QueueRx(Arc<Queue>);

/// The state both halves share.
#[derive(Debug)]
pub(crate) struct Queue {
    capacity: usize,
    state: Mutex<QueueState>,
}

#[derive(Debug)]
struct QueueState {
    frames: VecDeque<Frame>,
    waker: Option<Waker>,
    sender_alive: bool,
    receiver_alive: bool,
    /// Set while a flusher, not the subscriber's task, writes this subscriber's socket.
    direct: Option<Box<Direct>>,
    /// What a flusher left for the task when it handed the socket back.
    handback: Option<Handback>,
}

/// A subscriber whose live events a flusher writes straight to its socket (HTTP/1.1 chunks), so the
/// subscriber's own task sleeps until something only it can do: a heartbeat, an expiry, the end.
///
/// Why: with thousands of subscribers, waking one task per subscriber per event (schedule, poll,
/// queue, `writev`) costs more user-space time than the write itself; a flusher walks the subscribers
/// that have something new and writes each one's whole backlog in one `writev`.
struct Direct {
    sink: Arc<dyn Sink>,
    flusher: usize,
    /// Live events at or before this were replayed already.
    seen_through: Option<Position>,
    /// On its flusher's list for the next round.
    scheduled: bool,
    /// A flusher is writing (outside the lock, so that publishers never wait for a syscall).
    writing: bool,
    /// The socket must go back to the task once the write in progress ends.
    leave: bool,
    /// When a flusher last wrote (the heartbeat counts idle time from it).
    last_write: Option<Instant>,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("flusher", &self.flusher)
            .field("scheduled", &self.scheduled)
            .finish_non_exhaustive()
    }
}

/// What the task takes back with its socket.
#[derive(Debug, Default)]
pub(crate) struct Handback {
    /// Bytes of an HTTP/1.1 chunk the flusher could only partly write: they go out first, as they are.
    pub(crate) raw: Option<Bytes>,
    /// When the flusher last wrote.
    pub(crate) last_write: Option<Instant>,
}

/// A bounded queue of `capacity` frames.
pub(crate) fn queue(capacity: usize) -> (QueueTx, QueueRx) {
    let q = Arc::new(Queue {
        capacity: capacity.max(1),
        state: Mutex::new(QueueState {
            frames: VecDeque::new(),
            waker: None,
            sender_alive: true,
            receiver_alive: true,
            direct: None,
            handback: None,
        }),
    });
    (QueueTx(q.clone()), QueueRx(q))
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One flusher round for this subscriber: writes every queued event as one HTTP/1.1 chunk with
    /// one `writev`. The lock is not held during the write (publishers would wait for the syscall);
    /// `writing` keeps the task from taking the socket back meanwhile. Anything the socket does not
    /// take at once goes back to the task, which waits for the socket to drain; a full queue then
    /// disconnects the subscriber as usual. Returns the events delivered.
    pub(crate) fn flush(&self, now: Instant, scratch: &mut Vec<(Position, Bytes)>) -> u64 {
        let mut state = self.lock();
        let QueueState { frames, direct, .. } = &mut *state;
        let Some(direct) = direct.as_mut() else {
            return 0;
        };
        direct.scheduled = false;
        if direct.writing {
            return 0;
        }
        let seen_through = direct.seen_through;
        scratch.clear();
        while let Some(frame) = frames.pop_front() {
            match frame {
                Frame::Event(position, _) if seen_through.is_some_and(|s| position <= s) => {}
                Frame::Event(position, bytes) => scratch.push((position, bytes)),
                Frame::Final(bytes) => {
                    // Never queued in direct mode (see `try_send`); the task writes it.
                    frames.push_front(Frame::Final(bytes));
                    break;
                }
            }
        }
        if scratch.is_empty() {
            return 0;
        }
        direct.writing = true;
        let sink = direct.sink.clone();
        drop(state);

        let total: usize = scratch.iter().map(|(_, b)| b.len()).sum();
        let mut head_buf = [0u8; 20];
        let head = chunk_head(total, &mut head_buf);
        let len = head.len() + total + 2;
        let mut slices = Vec::with_capacity(scratch.len() + 2);
        slices.push(IoSlice::new(head));
        slices.extend(scratch.iter().map(|(_, b)| IoSlice::new(b)));
        slices.push(IoSlice::new(b"\r\n"));
        let written = match sink.try_write_vectored(&slices) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                // The task sees the same error on its next write and ends the stream.
                tracing::debug!(error = %e, "direct write failed; handing the subscriber back");
                0
            }
        };
        let raw = (written > 0 && written < len).then(|| {
            let mut rest = BytesMut::with_capacity(len - written);
            let mut skip = written;
            for s in &slices {
                if skip >= s.len() {
                    skip -= s.len();
                } else {
                    rest.extend_from_slice(&s[skip..]);
                    skip = 0;
                }
            }
            rest.freeze()
        });
        drop(slices);
        drop(sink);

        let mut state = self.lock();
        let QueueState { frames, direct, .. } = &mut *state;
        let Some(d) = direct.as_mut() else {
            // The subscriber is gone.
            scratch.clear();
            return 0;
        };
        d.writing = false;
        if written > 0 {
            d.last_write = Some(now);
        }
        let delivered = if written > 0 { scratch.len() as u64 } else { 0 };
        if written == 0 {
            // Nothing went out: the events go back in front, in order, for the task to write.
            for (position, bytes) in scratch.drain(..).rev() {
                frames.push_front(Frame::Event(position, bytes));
            }
        }
        scratch.clear();
        let waker = if written == len && !d.leave {
            None
        } else {
            let last_write = d.last_write;
            hand_back(&mut state, raw, last_write)
        };
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        delivered
    }
}

/// An HTTP/1.1 chunk-size line, `{len:x}\r\n`, formatted into `buf` without allocating.
fn chunk_head(len: usize, buf: &mut [u8; 20]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len() - 2;
    buf[i..].copy_from_slice(b"\r\n");
    let mut n = len;
    loop {
        i -= 1;
        buf[i] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Asks for the socket back: at once, or when the flusher's write in progress ends.
fn release(state: &mut QueueState) -> Option<Waker> {
    match state.direct.as_mut() {
        Some(direct) if direct.writing => {
            direct.leave = true;
            None
        }
        Some(direct) => {
            let last_write = direct.last_write;
            hand_back(state, None, last_write)
        }
        None => state.waker.take(),
    }
}

/// Gives the socket back to the task; returns the waker to call once the lock is released.
fn hand_back(
    state: &mut QueueState,
    raw: Option<Bytes>,
    last_write: Option<Instant>,
) -> Option<Waker> {
    state.direct = None;
    state.handback = Some(Handback { raw, last_write });
    state.waker.take()
}

impl QueueTx {
    /// Queues `frame` without waiting. `Ok(Some(flusher))`: the subscriber is written by that flusher
    /// and now has something new; the caller schedules it (once per round, see [`Channel::fan_out`]).
    pub(crate) fn try_send(&self, frame: Frame) -> Result<Option<usize>, TrySendError<Frame>> {
        let mut state = self.0.lock();
        if !state.receiver_alive {
            return Err(TrySendError::Closed(frame));
        }
        if state.frames.len() >= self.0.capacity {
            return Err(TrySendError::Full(frame));
        }
        let last = matches!(frame, Frame::Final(_));
        state.frames.push_back(frame);
        let waker = match state.direct.as_mut() {
            Some(direct) if !last => {
                if direct.scheduled {
                    return Ok(None);
                }
                direct.scheduled = true;
                return Ok(Some(direct.flusher));
            }
            _ => release(&mut state),
        };
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(None)
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.sender_alive = false;
        let waker = release(&mut state);
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A queue that held more than this keeps no spare capacity once drained, so a burst does not pin
/// memory on an idle subscriber.
const KEEP_CAPACITY: usize = 32;

impl QueueRx {
    /// The next frame; `None` once the sender is gone and the queue is drained.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        let mut state = self.0.lock();
        if let Some(frame) = state.frames.pop_front() {
            return Poll::Ready(Some(frame));
        }
        if !state.sender_alive {
            return Poll::Ready(None);
        }
        if state.frames.capacity() > KEEP_CAPACITY {
            state.frames = VecDeque::new();
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl QueueRx {
    /// Lets flusher `flusher` write live events straight to `sink` from now on, if nothing is queued
    /// and the stream goes on. The task then waits in [`QueueRx::poll_handback`].
    pub(crate) fn enter_direct(
        &mut self,
        sink: Arc<dyn Sink>,
        flusher: usize,
        seen_through: Option<Position>,
    ) -> bool {
        let mut state = self.0.lock();
        if !state.frames.is_empty() || !state.sender_alive || state.direct.is_some() {
            return false;
        }
        state.handback = None;
        state.direct = Some(Box::new(Direct {
            sink,
            flusher,
            seen_through,
            scheduled: false,
            writing: false,
            leave: false,
            last_write: None,
        }));
        true
    }

    /// Ready once the socket is back with the task: a flusher handed it back (backpressure, the end
    /// of the stream), or `take` asked for it and no write was in progress (or it has ended).
    pub(crate) fn poll_handback(&mut self, cx: &mut Context<'_>, take: bool) -> Poll<()> {
        let mut state = self.0.lock();
        if take {
            let _ = release(&mut state);
        }
        if state.direct.is_none() {
            return Poll::Ready(());
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// What the flusher left when it gave the socket back (after [`QueueRx::poll_handback`]).
    pub(crate) fn leave_direct(&mut self) -> Handback {
        let mut state = self.0.lock();
        debug_assert!(state.direct.is_none(), "the socket is still lent");
        state.handback.take().unwrap_or_default()
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver_alive = false;
        state.waker = None;
        let frames = std::mem::take(&mut state.frames);
        // The socket closes with its task, not when a flusher's list lets go of the queue.
        let direct = state.direct.take();
        let handback = state.handback.take();
        drop(state);
        drop((frames, direct, handback));
    }
}

#[cfg(test)]
mod queue_tests {
    #[test]
    fn chunk_heads_are_hex_lines() {
        let mut buf = [0u8; 20];
        assert_eq!(super::chunk_head(0, &mut buf), b"0\r\n");
        assert_eq!(super::chunk_head(0x1a2, &mut buf), b"1a2\r\n");
        assert_eq!(
            super::chunk_head(usize::MAX, &mut buf),
            format!("{:x}\r\n", usize::MAX).as_bytes()
        );
    }

    use std::sync::Arc;
    use std::task::{Context, Poll, Wake};

    use super::*;

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn ev(n: u64) -> Frame {
        Frame::Final(Bytes::from(n.to_string()))
    }

    fn bytes(p: Poll<Option<Frame>>) -> Option<Bytes> {
        match p {
            Poll::Ready(Some(Frame::Final(b))) => Some(b),
            Poll::Ready(Some(Frame::Event(_, b))) => Some(b),
            _ => None,
        }
    }

    #[test]
    fn bounded_ordered_wakes_and_closes_both_ways() {
        let count = Arc::new(Count(0.into()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = queue(2);
        assert!(rx.poll_recv(&mut cx).is_pending());
        assert_eq!(tx.try_send(ev(1)).unwrap(), None);
        tx.try_send(ev(2)).unwrap();
        assert!(matches!(tx.try_send(ev(3)), Err(TrySendError::Full(_))));
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "one wake per poll, not per send"
        );
        assert_eq!(bytes(rx.poll_recv(&mut cx)).unwrap(), "1");
        assert_eq!(bytes(rx.poll_recv(&mut cx)).unwrap(), "2");
        assert!(rx.poll_recv(&mut cx).is_pending());
        tx.try_send(ev(4)).unwrap();
        drop(tx);
        assert_eq!(
            bytes(rx.poll_recv(&mut cx)).unwrap(),
            "4",
            "queued frames outlive the sender"
        );
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(None)));

        let (tx, rx) = queue(2);
        drop(rx);
        assert!(matches!(tx.try_send(ev(1)), Err(TrySendError::Closed(_))));
    }
}
