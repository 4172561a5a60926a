//! One channel's live subscribers. History lives in the replay store; this is only the fan-out side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};

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
    pub(crate) tx: mpsc::Sender<Frame>,
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
