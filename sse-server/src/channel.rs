//! One channel's live subscribers. History lives in the replay store; this is only the fan-out side.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;

use crate::Position;
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
    pub(crate) fn fan_out(&self, position: Position, bytes: &Bytes, metrics: &Metrics) {
        let mut subs = self.lock();
        subs.map.retain(|_, h| {
            match h.tx.try_send(Frame::Event(position, bytes.clone())) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    h.kicked.store(true, Ordering::Release);
                    bump(&metrics.dropped_slow);
                    tracing::info!(channel = %self.name, "disconnected a slow subscriber (queue full)");
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
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

#[derive(Debug)]
struct Queue {
    capacity: usize,
    state: Mutex<QueueState>,
}

#[derive(Debug)]
struct QueueState {
    frames: VecDeque<Frame>,
    waker: Option<Waker>,
    sender_alive: bool,
    receiver_alive: bool,
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
        }),
    });
    (QueueTx(q.clone()), QueueRx(q))
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl QueueTx {
    /// Queues `frame` without waiting.
    pub(crate) fn try_send(&self, frame: Frame) -> Result<(), TrySendError<Frame>> {
        let mut state = self.0.lock();
        if !state.receiver_alive {
            return Err(TrySendError::Closed(frame));
        }
        if state.frames.len() >= self.0.capacity {
            return Err(TrySendError::Full(frame));
        }
        state.frames.push_back(frame);
        let waker = state.waker.take();
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
        let waker = state.waker.take();
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

impl Drop for QueueRx {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver_alive = false;
        state.waker = None;
        let frames = std::mem::take(&mut state.frames);
        drop(state);
        drop(frames);
    }
}

#[cfg(test)]
mod queue_tests {
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

        let (tx, rx) = queue(2);
        drop(rx);
        assert!(matches!(tx.try_send(ev(1)), Err(TrySendError::Closed(_))));
    }
}
