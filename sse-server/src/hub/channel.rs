//! One channel's live subscribers. History lives in the replay store; this is only the fan-out side.
//!
//! A subscriber is reached one of two ways. By default, through its own bounded queue
//! (`hub/queue.rs`), which its stream's task reads. Or, while its connection has lent the hub its
//! socket (`hub/lent.rs`), *directly*: the channel keeps a short log of live events
//! (`hub/log.rs`), and one of the transport's flushers writes each direct subscriber's unseen part
//! of it, once per round (`hub/round.rs`). The fan-out then does no per-subscriber work for direct
//! subscribers at all (no queue lock, no reference count, no wake-up): profiling showed those three,
//! paid per subscriber per event, as the top user-space costs.
//!
//! Every switch between the two ways happens under the channel lock (then the queue lock), and moves
//! the events the subscriber has not seen from the log into its queue, in order, so nothing is lost
//! or repeated.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

use crate::hub::cursors::Seen;
use crate::hub::lent::{Direct, Sink};
use crate::hub::log::Log;
use crate::hub::metrics::{Disconnect, Metrics};
use crate::hub::queue::{Frame, Queue, QueueRx, QueueState, QueueTx, hand_back};
use crate::hub::round::Round;
use crate::position::Position;
use crate::replay::StoredEvent;

/// Where a [`Follower`] passes an event on: the channel its subscribers sit in, the position the
/// frame carries (what subscribers skip by), the bytes to send there.
pub(crate) type Deliver<'a> = dyn FnMut(&Arc<Channel>, Position, &Bytes) + 'a;

/// A multi-channel stream following a channel (`hub/composite.rs`): offered each event of the
/// channel in position order (per sequencer), it passes it on through `deliver` at most once, or
/// not at all when it already passed that position on (a broadcast).
pub(crate) trait Follower: Send + Sync + std::fmt::Debug {
    fn offer(&self, from: &str, event: &StoredEvent, deliver: &mut Deliver<'_>);
    /// The channel its subscribers sit in.
    fn stream(&self) -> Arc<Channel>;
}

/// The flushers a fan-out put this channel on the list of, and whether they should cut a
/// coalescing pause short (the log is half a queue long).
#[derive(Debug, Default)]
pub(crate) struct Scheduled {
    /// The event went into the log for direct subscribers.
    pub(crate) direct: bool,
    pub(crate) flushers: Vec<usize>,
    pub(crate) hurry: bool,
}

#[derive(Debug)]
pub(crate) struct Handle {
    tx: QueueTx,
    /// Set when the hub drops a slow subscriber: its stream ends without draining the queue.
    kicked: Arc<AtomicBool>,
    /// The flusher that writes this subscriber, while one does.
    direct: Option<usize>,
}

impl Handle {
    pub(crate) fn new(tx: QueueTx, kicked: Arc<AtomicBool>) -> Handle {
        Handle {
            tx,
            kicked,
            direct: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) name: Arc<str>,
    /// Serialises store append + fan-out, so every queue receives events in position order.
    pub(crate) publish: tokio::sync::Mutex<()>,
    subscribers: Mutex<Subscribers>,
    /// The composites following this channel. Changed under `publish` (or before the channel is
    /// shared), so a publish sees the same list from its append to its fan-out.
    followers: Mutex<Vec<Arc<dyn Follower>>>,
    /// Set for a composite's own channel: its key in the hub's table of composites.
    pub(crate) composite: Option<Arc<str>>,
    /// How many composites name this channel: it stays in the hub's table while any does. Changed
    /// and read under the registry lock.
    pub(crate) pins: AtomicUsize,
}

#[derive(Debug, Default)]
struct Subscribers {
    next: u64,
    map: HashMap<u64, Handle>,
    log: Log,
}

impl Subscribers {
    /// Takes a direct subscriber back to its queue (under both locks): the part of the log it has not
    /// seen goes in front of its queue, and its task gets the socket back (at once, or when the write
    /// in progress ends).
    fn detach(&mut self, handle: &mut Handle) {
        let Some(i) = handle.direct.take() else {
            return;
        };
        let mut state = handle.tx.0.lock();
        let writing = state.direct.as_ref().is_some_and(|d| d.writing);
        let waker = detach_locked(self, &mut state);
        if let Some(direct) = state.direct.as_mut()
            && writing
        {
            direct.deferred = true;
        }
        drop(state);
        if !writing {
            let shard = self.log.shard(i);
            shard.count = shard.count.saturating_sub(1);
        }
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Makes room for one more element in a list that may grow to thousands (the composites on one
/// channel or prefix), by an eighth instead of doubling: a few percent idle, not up to a half.
pub(crate) fn grow_by_little<T>(list: &mut Vec<T>) {
    if list.len() == list.capacity() {
        list.reserve_exact(list.len() / 8 + 1);
    }
}

fn same(a: &Arc<dyn Follower>, b: &Arc<dyn Follower>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// [`Subscribers::detach`] with the queue already locked; returns the waker to call once unlocked.
fn detach_locked(subs: &Subscribers, state: &mut QueueState) -> Option<Waker> {
    let head = subs.log.head();
    let direct = state.direct.as_mut()?;
    if direct.writing {
        // The flusher's write ends first; it then finishes the hand-back (`Channel::end_round`).
        direct.leave = true;
        direct.until.get_or_insert(head);
        return None;
    }
    let (cursor, seen_through) = (direct.cursor, direct.seen_through.clone());
    let until = direct.until.unwrap_or(head);
    let unseen: Vec<Frame> = subs
        .log
        .unseen(cursor, until, seen_through)
        .map(|(p, b)| Frame::Event(*p, b.clone()))
        .collect();
    for frame in unseen.into_iter().rev() {
        state.bytes += frame.len();
        state.frames.push_front(frame);
    }
    let last_write = direct.last_write;
    hand_back(state, last_write)
}

impl Channel {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Channel {
            name,
            publish: tokio::sync::Mutex::new(()),
            subscribers: Mutex::new(Subscribers::default()),
            followers: Mutex::new(Vec::new()),
            composite: None,
            pins: AtomicUsize::new(0),
        }
    }

    /// The subscribers' channel of the composite keyed `key`, shown as `name`.
    pub(crate) fn composite(name: Arc<str>, key: Arc<str>) -> Self {
        Channel {
            composite: Some(key),
            ..Channel::new(name)
        }
    }

    /// The composites following this channel now.
    pub(crate) fn followers(&self) -> Vec<Arc<dyn Follower>> {
        let f = self.followers.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_empty() { Vec::new() } else { f.clone() }
    }

    /// Adds `follower` (once).
    pub(crate) fn follow(&self, follower: Arc<dyn Follower>) {
        let mut f = self.followers.lock().unwrap_or_else(|p| p.into_inner());
        if !f.iter().any(|x| same(x, &follower)) {
            grow_by_little(&mut f);
            f.push(follower);
        }
    }

    /// Removes `follower`.
    pub(crate) fn unfollow(&self, follower: &Arc<dyn Follower>) {
        self.followers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|x| !same(x, follower));
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
        let mut subs = self.lock();
        if let Some(mut handle) = subs.map.remove(&id) {
            subs.detach(&mut handle);
            subs.log.trim();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Bytes waiting for this channel's subscribers: in their queues and in the log.
    pub(crate) fn queued_bytes(&self) -> usize {
        let subs = self.lock();
        subs.log.bytes() + subs.map.values().map(|h| h.tx.0.bytes()).sum::<usize>()
    }

    /// Whether the log holds nothing (every direct subscriber has everything).
    #[cfg(test)]
    pub(crate) fn log_is_empty(&self) -> bool {
        self.lock().log.is_empty()
    }

    /// Never waits: a full queue disconnects its subscriber instead of slowing the publisher. Direct
    /// subscribers cost nothing here: the event goes into the log once, and the flushers that write
    /// them here are returned, to be scheduled once per round.
    pub(crate) fn fan_out(
        &self,
        position: Position,
        bytes: &Bytes,
        at: Instant,
        metrics: &Metrics,
    ) -> Scheduled {
        let mut subs = self.lock();
        let mut direct = false;
        subs.map.retain(|_, h| {
            if h.direct.is_some() {
                direct = true;
                return true;
            }
            match h.tx.try_send(Frame::Event(position, bytes.clone())) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    h.kicked.store(true, Ordering::Release);
                    metrics.disconnected(Disconnect::Slow, 1);
                    tracing::info!(channel = %self.name, "disconnected a slow subscriber (queue full)");
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        let mut scheduled = Scheduled::default();
        if !direct {
            return scheduled;
        }
        subs.log.push(position, bytes.clone(), at);
        scheduled.direct = true;
        for (i, shard) in subs.log.shards_mut().iter_mut().enumerate() {
            if shard.count > 0 && !shard.scheduled {
                shard.scheduled = true;
                scheduled.flushers.push(i);
            }
        }
        let (capacity, budget) = subs
            .map
            .values()
            .next()
            .map_or((usize::MAX, usize::MAX), |h| {
                (h.tx.0.capacity, h.tx.0.max_bytes)
            });
        scheduled.hurry = subs.log.len().saturating_mul(2) >= capacity
            || subs.log.bytes().saturating_mul(2) >= budget;
        if subs.log.len() > capacity || subs.log.bytes() > budget {
            // Whoever has not been written this far is owed more than a queue's worth of events,
            // or of bytes.
            let threshold = subs
                .log
                .head()
                .saturating_sub(capacity as u64)
                .max(subs.log.within(budget));
            self.drop_laggards(&mut subs, threshold, metrics);
        }
        scheduled
    }

    /// A flusher fell a queue's worth of events or bytes behind (its worker starved, or its
    /// subscribers stall): the subscribers it has not written up to log sequence `threshold` are as
    /// slow as a full queue, and are disconnected the same way; they resume through replay.
    fn drop_laggards(&self, subs: &mut Subscribers, threshold: u64, metrics: &Metrics) {
        let shards = subs.log.shards();
        let lagging: Vec<usize> = (0..shards.len())
            .filter(|&i| shards[i].count > 0 && shards[i].done < threshold)
            .collect();
        let ids: Vec<u64> = subs
            .map
            .iter()
            .filter(|(_, h)| h.direct.is_some_and(|i| lagging.contains(&i)))
            .map(|(id, _)| *id)
            .collect();
        let mut dropped = 0usize;
        for id in ids {
            let behind = subs.map.get(&id).is_some_and(|h| {
                h.tx.0
                    .lock()
                    .direct
                    .as_ref()
                    .is_some_and(|d| d.cursor < threshold)
            });
            if behind && let Some(mut h) = subs.map.remove(&id) {
                h.kicked.store(true, Ordering::Release);
                metrics.disconnected(Disconnect::Slow, 1);
                subs.detach(&mut h);
                dropped += 1;
            }
        }
        if dropped > 0 {
            tracing::info!(channel = %self.name, dropped, "disconnected subscribers a flusher fell a queue behind");
        }
        subs.log.trim();
    }

    /// Ends every stream after what is already queued. Returns how many there were.
    pub(crate) fn close(&self) -> usize {
        self.drain().len()
    }

    /// Takes every subscriber out of the channel (their sockets back to their tasks first).
    fn drain(&self) -> Vec<Handle> {
        let mut subs = self.lock();
        let mut drained: Vec<Handle> = subs.map.drain().map(|(_, h)| h).collect();
        for h in &mut drained {
            subs.detach(h);
        }
        subs.log.trim();
        drained
    }

    /// Ends every stream with a final frame (or at once when its queue is full).
    pub(crate) fn finish(&self, mut last: impl FnMut() -> Bytes) -> usize {
        let drained = self.drain();
        let n = drained.len();
        for h in drained {
            if h.tx.try_send(Frame::Final(last())).is_err() {
                h.kicked.store(true, Ordering::Release);
            }
        }
        n
    }

    /// Lets flusher `flusher` write subscriber `id`'s live events straight to `sink`, if its queue is
    /// empty and its stream goes on. Its task then waits in [`QueueRx::poll_handback`].
    pub(crate) fn enter_direct(
        &self,
        id: u64,
        rx: &QueueRx,
        sink: Arc<dyn Sink>,
        flusher: usize,
        seen_through: impl Into<Seen>,
    ) -> bool {
        let mut subs = self.lock();
        let head = subs.log.head();
        let Some(handle) = subs.map.get_mut(&id) else {
            return false;
        };
        if handle.direct.is_some() {
            return false;
        }
        {
            let mut state = rx.0.lock();
            if !state.frames.is_empty() || !state.sender_alive || state.direct.is_some() {
                return false;
            }
            state.handback = None;
            state.direct = Some(Box::new(Direct::new(sink, id, head, seen_through.into())));
        }
        handle.direct = Some(flusher);
        let shard = subs.log.shard(flusher);
        if shard.count == 0 {
            shard.done = head;
        }
        shard.count += 1;
        true
    }

    /// Takes subscriber `id`'s socket back from its flusher (see [`Subscribers::detach`]).
    pub(crate) fn leave_direct(&self, id: u64, rx: &QueueRx) {
        let mut subs = self.lock();
        let mut handle = subs.map.remove(&id);
        match &mut handle {
            Some(h) if h.direct.is_some() => subs.detach(h),
            _ => {
                // Already detached (closing, or a hand-back is on its way): nothing to move.
                let state = rx.0.lock();
                debug_assert!(state.direct.as_ref().is_none_or(|d| d.leave));
            }
        }
        if let Some(h) = handle {
            subs.map.insert(id, h);
        }
        subs.log.trim();
    }

    /// Starts a round of flusher `flusher` on this channel: every direct subscriber it writes here
    /// is offered the part of the log it has not seen ([`Round::begin`]), which the transport
    /// frames and writes with no lock held; then [`Channel::end_round`]. `None` when it has nobody
    /// to write here.
    pub(crate) fn start_round(&self, flusher: usize) -> Option<Round> {
        let mut subs = self.lock();
        let head = subs.log.head();
        let shard = subs.log.shard(flusher);
        shard.scheduled = false;
        if shard.count == 0 {
            return None;
        }
        let from = shard.done;
        let timed = shard.timed.max(from);
        // The events are shared `Bytes`: cloned once per round, not per subscriber.
        let events: Vec<(Position, Bytes)> = subs
            .log
            .unseen(from, head, Seen::Nothing)
            .cloned()
            .collect();
        let published = subs.log.times(timed, head);
        let queues: Vec<Arc<Queue>> = subs
            .map
            .values()
            .filter(|h| h.direct == Some(flusher))
            .map(|h| h.tx.0.clone())
            .collect();
        Some(Round::new(queues, events, published, from, head))
    }

    /// Adds to `round` the events published on this channel since it started (or was last
    /// extended), so the targets it has not written yet get them in this round rather than one
    /// round later. Returns whether it added any. Targets written already get them in the next
    /// round, which starts from [`Round::done`].
    pub(crate) fn extend_round(&self, flusher: usize, round: &mut Round) -> bool {
        let mut subs = self.lock();
        let head = subs.log.head();
        // The log keeps every event from the round's start while this flusher has subscribers
        // here; if they have all left, there is nobody to extend the round for.
        if head <= round.head || subs.log.base() > round.head || subs.log.shard(flusher).count == 0
        {
            return false;
        }
        let events: Vec<(Position, Bytes)> = subs
            .log
            .unseen(round.head, head, Seen::Nothing)
            .cloned()
            .collect();
        let published = subs.log.times(round.head, head);
        drop(subs);
        round.extend(events, published, head);
        true
    }

    /// Ends a round: subscribers whose socket did not take their chunk whole (or whose task asked
    /// for the socket meanwhile) go back to their queues, with the part of the log they have not
    /// seen in front; then the log forgets what every direct subscriber has.
    pub(crate) fn end_round(&self, flusher: usize, round: &Round, handbacks: Vec<Arc<Queue>>) {
        let mut subs = self.lock();
        for queue in handbacks {
            let mut state = queue.lock();
            let Some((id, deferred)) = state.direct.as_ref().map(|d| (d.id, d.deferred)) else {
                continue;
            };
            let waker = detach_locked(&subs, &mut state);
            drop(state);
            if let Some(w) = waker {
                w.wake();
            }
            // Out of its flusher's count: now (a partial write), or as the channel deferred it.
            let counted = match subs.map.get_mut(&id) {
                Some(h) if h.direct == Some(flusher) => h.direct.take().is_some(),
                _ => deferred,
            };
            if counted {
                let shard = subs.log.shard(flusher);
                shard.count = shard.count.saturating_sub(1);
            }
        }
        let shard = subs.log.shard(flusher);
        shard.done = shard.done.max(round.done);
        shard.timed = shard.timed.max(round.head);
        subs.log.trim();
    }
}
