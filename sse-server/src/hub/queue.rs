//! A subscriber's bounded queue: what its stream's task reads, and what it takes back with its
//! socket when a flusher hands it back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

use crate::hub::lent::{Direct, Handback};
use crate::position::Position;

/// What a subscriber's queue carries.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A live event at its channel position.
    Event(Position, Bytes),
    /// The last bytes of the stream (the shutdown `retry:`); the stream ends after them.
    Final(Bytes),
}

impl Frame {
    /// The bytes it carries.
    pub(crate) fn len(&self) -> usize {
        match self {
            Frame::Event(_, b) | Frame::Final(b) => b.len(),
        }
    }
}

impl Queue {
    /// Bytes queued now.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// A subscriber's bounded queue (publisher side). Dropping it ends the stream after what is queued.
///
/// Why not `tokio::sync::mpsc`: its bounded channel allocates a 32-slot block per subscriber up front
/// (about 1.5 KiB of an idle subscriber's memory) and pays a semaphore round trip per event on both
/// sides, which profiling showed among the top user-space costs of fan-out. This is a mutex around a
/// `VecDeque` that starts empty, with the receiver's waker taken on the first send after a poll.
#[derive(Debug)]
pub(crate) struct QueueTx(pub(crate) Arc<Queue>);

/// A subscriber's bounded queue (stream side). Dropping it makes further sends fail as `Closed`.
#[derive(Debug)]
pub(crate) struct QueueRx(pub(crate) Arc<Queue>);

/// The state both halves share.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) capacity: usize,
    /// Bytes it may hold (a first frame is always taken, whatever its size).
    pub(crate) max_bytes: usize,
    state: Mutex<QueueState>,
}

#[derive(Debug)]
pub(crate) struct QueueState {
    pub(crate) frames: VecDeque<Frame>,
    /// Bytes of the frames queued.
    pub(crate) bytes: usize,
    pub(crate) waker: Option<Waker>,
    pub(crate) sender_alive: bool,
    receiver_alive: bool,
    /// Set while a flusher, not the subscriber's task, writes this subscriber's socket.
    pub(crate) direct: Option<Box<Direct>>,
    /// What a flusher left for the task when it handed the socket back.
    pub(crate) handback: Option<Handback>,
}

/// A bounded queue of `capacity` frames.
pub(crate) fn queue(capacity: usize, max_bytes: usize) -> (QueueTx, QueueRx) {
    let q = Arc::new(Queue {
        capacity: capacity.max(1),
        max_bytes,
        state: Mutex::new(QueueState {
            frames: VecDeque::new(),
            bytes: 0,
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
    pub(crate) fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Gives the socket back to the task; returns the waker to call once the lock is released. Bytes a
/// partial write left (already in `handback`) are kept.
pub(crate) fn hand_back(state: &mut QueueState, last_write: Option<Instant>) -> Option<Waker> {
    state.direct = None;
    let previous = state.handback.take().unwrap_or_default();
    state.handback = Some(Handback {
        raw: previous.raw,
        last_write: last_write.max(previous.last_write),
    });
    state.waker.take()
}

impl QueueTx {
    /// Queues `frame` without waiting.
    pub(crate) fn try_send(&self, frame: Frame) -> Result<(), TrySendError<Frame>> {
        let mut state = self.0.lock();
        if !state.receiver_alive {
            return Err(TrySendError::Closed(frame));
        }
        if state.frames.len() >= self.0.capacity
            || (!state.frames.is_empty() && state.bytes + frame.len() > self.0.max_bytes)
        {
            return Err(TrySendError::Full(frame));
        }
        state.bytes += frame.len();
        state.frames.push_back(frame);
        // A direct subscriber's task is woken by the hand-back, after the flusher's write.
        let waker = if state.direct.is_some() {
            None
        } else {
            state.waker.take()
        };
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.sender_alive = false;
        // The channel detached it first (`Subscribers::detach`) unless it is ending anyway.
        let waker = match state.direct.as_mut() {
            Some(direct) if direct.writing => {
                direct.leave = true;
                None
            }
            Some(direct) => {
                let last_write = direct.last_write;
                hand_back(&mut state, last_write)
            }
            None => state.waker.take(),
        };
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A queue that held more than this keeps no spare capacity once drained, so a burst does not pin
/// memory on an idle subscriber.
pub(crate) const KEEP_CAPACITY: usize = 32;

impl QueueRx {
    /// The next frame; `None` once the sender is gone and the queue is drained.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        let mut state = self.0.lock();
        if let Some(frame) = state.frames.pop_front() {
            state.bytes = state.bytes.saturating_sub(frame.len());
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

    /// Ready once the socket is back with the task (see [`Channel::leave_direct`]).
    pub(crate) fn poll_handback(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.0.lock();
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
        state.bytes = 0;
        // The socket closes with its task, not when a flusher's snapshot lets go of the queue.
        let direct = state.direct.take();
        let handback = state.handback.take();
        drop(state);
        drop((frames, direct, handback));
    }
}

#[cfg(test)]
mod queue_tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
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
        let (tx, mut rx) = queue(2, usize::MAX);
        assert!(rx.poll_recv(&mut cx).is_pending());
        tx.try_send(ev(1)).unwrap();
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

        let (tx, rx) = queue(2, usize::MAX);
        drop(rx);
        assert!(matches!(tx.try_send(ev(1)), Err(TrySendError::Closed(_))));
    }
}
