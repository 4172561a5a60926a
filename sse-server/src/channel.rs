//! One channel's live subscribers. History lives in the replay store; this is only the fan-out side.
//!
//! A subscriber is reached one of two ways. By default, through its own bounded queue, which its
//! stream's task reads. Or, while a lean-path HTTP/1.1 subscriber waits for events, *directly*: the
//! channel keeps a short log of live events, and one of the hub's flushers (`flush.rs`) writes each
//! direct subscriber's unseen part of it straight to the socket, once per round. The fan-out then does
//! no per-subscriber work for direct subscribers at all (no queue lock, no reference count, no wake-up):
//! profiling showed those three, paid per subscriber per event, as the top user-space costs.
//!
//! Every switch between the two ways happens under the channel lock (then the queue lock), and moves
//! the events the subscriber has not seen from the log into its queue, in order, so nothing is lost
//! or repeated.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

use crate::Position;
use crate::chunk;
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
}

#[derive(Debug, Default)]
struct Subscribers {
    next: u64,
    map: HashMap<u64, Handle>,
    /// Live events some direct subscriber may not have yet: `log[k]` has sequence `log_base + k`.
    log: VecDeque<(Position, Bytes)>,
    log_base: u64,
    /// Per flusher (by index).
    shards: Vec<Shard>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Shard {
    /// Direct subscribers it writes here.
    count: usize,
    /// This channel is on its list.
    scheduled: bool,
    /// Every direct subscriber of it has seen the log up to this sequence.
    done: u64,
}

impl Subscribers {
    fn head(&self) -> u64 {
        self.log_base + self.log.len() as u64
    }

    fn shard(&mut self, i: usize) -> &mut Shard {
        if self.shards.len() <= i {
            self.shards.resize(i + 1, Shard::default());
        }
        &mut self.shards[i]
    }

    /// Drops log entries every direct subscriber has seen.
    fn trim(&mut self) {
        let head = self.head();
        let keep_from = self
            .shards
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| s.done)
            .min()
            .unwrap_or(head)
            .clamp(self.log_base, head);
        let n = (keep_from - self.log_base) as usize;
        self.log.drain(..n);
        self.log_base = keep_from;
        if self.log.is_empty() && self.log.capacity() > KEEP_CAPACITY {
            self.log = VecDeque::new();
        }
    }

    /// The log from sequence `from` up to `until`, for a subscriber that saw everything up to
    /// `seen_through`.
    fn unseen(
        &self,
        from: u64,
        until: u64,
        seen_through: Option<Position>,
    ) -> impl Iterator<Item = &(Position, Bytes)> {
        let len = self.log.len();
        let start = (from.saturating_sub(self.log_base) as usize).min(len);
        let end = (until.saturating_sub(self.log_base) as usize).clamp(start, len);
        self.log
            .range(start..end)
            .filter(move |(p, _)| seen_through.is_none_or(|s| *p > s))
    }

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
            let shard = self.shard(i);
            shard.count = shard.count.saturating_sub(1);
        }
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// [`Subscribers::detach`] with the queue already locked; returns the waker to call once unlocked.
fn detach_locked(subs: &Subscribers, state: &mut QueueState) -> Option<Waker> {
    let head = subs.head();
    let direct = state.direct.as_mut()?;
    if direct.writing {
        // The flusher's write ends first; it then finishes the hand-back (`Channel::end_round`).
        direct.leave = true;
        direct.until.get_or_insert(head);
        return None;
    }
    let (cursor, seen_through) = (direct.cursor, direct.seen_through);
    let until = direct.until.unwrap_or(head);
    let unseen: Vec<Frame> = subs
        .unseen(cursor, until, seen_through)
        .map(|(p, b)| Frame::Event(*p, b.clone()))
        .collect();
    for frame in unseen.into_iter().rev() {
        state.frames.push_front(frame);
    }
    let last_write = direct.last_write;
    hand_back(state, None, last_write)
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
        let mut subs = self.lock();
        if let Some(mut handle) = subs.map.remove(&id) {
            subs.detach(&mut handle);
            subs.trim();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Never waits: a full queue disconnects its subscriber instead of slowing the publisher. Direct
    /// subscribers cost nothing here: the event goes into the log once, and their flushers are
    /// scheduled once per round.
    pub(crate) fn fan_out(
        self: &Arc<Self>,
        position: Position,
        bytes: &Bytes,
        metrics: &Metrics,
        flushers: &Flushers,
    ) {
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
                    bump(&metrics.dropped_slow);
                    tracing::info!(channel = %self.name, "disconnected a slow subscriber (queue full)");
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        if !direct {
            return;
        }
        subs.log.push_back((position, bytes.clone()));
        let mut schedule = Vec::new();
        for (i, shard) in subs.shards.iter_mut().enumerate() {
            if shard.count > 0 && !shard.scheduled {
                shard.scheduled = true;
                schedule.push(i);
            }
        }
        let capacity = subs
            .map
            .values()
            .next()
            .map_or(usize::MAX, |h| h.tx.0.capacity);
        let hurry = subs.log.len().saturating_mul(2) >= capacity;
        if subs.log.len() > capacity {
            self.drop_laggards(&mut subs, capacity, metrics);
        }
        drop(subs);
        for i in schedule {
            flushers.schedule(i, self);
        }
        if hurry {
            flushers.hurry();
        }
    }

    /// A flusher fell `capacity` events behind (its worker starved): the subscribers it has not
    /// written that far are as slow as a full queue, and are disconnected the same way; they resume
    /// through replay.
    fn drop_laggards(&self, subs: &mut Subscribers, capacity: usize, metrics: &Metrics) {
        let threshold = subs.head().saturating_sub(capacity as u64);
        let lagging: Vec<usize> = (0..subs.shards.len())
            .filter(|&i| subs.shards[i].count > 0 && subs.shards[i].done < threshold)
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
                bump(&metrics.dropped_slow);
                subs.detach(&mut h);
                dropped += 1;
            }
        }
        if dropped > 0 {
            tracing::info!(channel = %self.name, dropped, "disconnected subscribers a flusher fell a queue behind");
        }
        subs.trim();
    }

    /// Ends every stream after what is already queued. Returns how many there were.
    pub(crate) fn close(&self) -> usize {
        let mut subs = self.lock();
        let mut drained: Vec<Handle> = subs.map.drain().map(|(_, h)| h).collect();
        for h in &mut drained {
            subs.detach(h);
        }
        subs.trim();
        drop(subs);
        drained.len()
    }

    /// Ends every stream with a final frame (or at once when its queue is full).
    pub(crate) fn finish(&self, mut last: impl FnMut() -> Bytes) {
        let mut subs = self.lock();
        let mut drained: Vec<Handle> = subs.map.drain().map(|(_, h)| h).collect();
        for h in &mut drained {
            subs.detach(h);
        }
        subs.trim();
        drop(subs);
        for h in drained {
            if h.tx.try_send(Frame::Final(last())).is_err() {
                h.kicked.store(true, Ordering::Release);
            }
        }
    }

    /// Lets flusher `flusher` write subscriber `id`'s live events straight to `sink`, if its queue is
    /// empty and its stream goes on. Its task then waits in [`QueueRx::poll_handback`].
    pub(crate) fn enter_direct(
        &self,
        id: u64,
        rx: &QueueRx,
        sink: Arc<dyn Sink>,
        flusher: usize,
        seen_through: Option<Position>,
    ) -> bool {
        let mut subs = self.lock();
        let head = subs.head();
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
            state.direct = Some(Box::new(Direct {
                sink,
                id,
                cursor: head,
                seen_through,
                writing: false,
                leave: false,
                deferred: false,
                until: None,
                last_write: None,
            }));
        }
        handle.direct = Some(flusher);
        let shard = subs.shard(flusher);
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
        subs.trim();
    }

    /// Starts a round of flusher `flusher` on this channel: every direct subscriber it writes here
    /// gets the part of the log it has not seen, as one HTTP/1.1 chunk in one `writev`
    /// ([`Round::write`]), written with no lock held; then [`Channel::end_round`]. `None` when it
    /// has nobody to write here.
    pub(crate) fn start_round(&self, flusher: usize) -> Option<Round> {
        let mut subs = self.lock();
        let head = subs.head();
        let shard = subs.shard(flusher);
        shard.scheduled = false;
        if shard.count == 0 {
            return None;
        }
        let from = shard.done;
        // The events are shared `Bytes`: cloned once per round, not per subscriber.
        let events: Vec<(Position, Bytes)> = subs.unseen(from, head, None).cloned().collect();
        let queues: Vec<Arc<Queue>> = subs
            .map
            .values()
            .filter(|h| h.direct == Some(flusher))
            .map(|h| h.tx.0.clone())
            .collect();
        Some(Round {
            queues,
            events,
            from,
            head,
        })
    }

    /// Ends a round: subscribers whose socket did not take their chunk whole (or whose task asked
    /// for the socket meanwhile) go back to their queues, with the part of the log they have not
    /// seen in front; then the log forgets what every direct subscriber has.
    pub(crate) fn end_round(&self, flusher: usize, head: u64, handbacks: Vec<Arc<Queue>>) {
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
                let shard = subs.shard(flusher);
                shard.count = shard.count.saturating_sub(1);
            }
        }
        let shard = subs.shard(flusher);
        shard.done = shard.done.max(head);
        subs.trim();
    }
}

/// One flusher round on one channel (see [`Channel::start_round`]).
pub(crate) struct Round {
    /// The direct subscribers to write.
    pub(crate) queues: Vec<Arc<Queue>>,
    events: Vec<(Position, Bytes)>,
    from: u64,
    /// The log sequence the round writes up to.
    pub(crate) head: u64,
}

impl Round {
    /// Whether there is anything to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The chunk for a subscriber that needs every event of the round: built once, written to most.
    /// `buf` holds its size line.
    pub(crate) fn chunk<'a>(&'a self, buf: &'a mut chunk::HeadBuf) -> Vec<IoSlice<'a>> {
        chunk::slices(self.events.iter().map(|(_, b)| b), buf)
    }

    /// Writes one subscriber's part of the round; `chunk` is [`Round::chunk`].
    pub(crate) fn write(&self, queue: &Queue, chunk: &[IoSlice<'_>], now: Instant) -> Wrote {
        queue.write_direct(&self.events, self.from, self.head, chunk, now)
    }
}

/// What a flusher's write did for one subscriber.
pub(crate) enum Wrote {
    Events(u64),
    Nothing,
    /// The socket goes back to the task (partial write, or the task asked for it meanwhile), after
    /// delivering this many events.
    HandBack(u64),
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

/// A direct subscriber (see the module docs): its socket, and how far into its channel's log it is.
struct Direct {
    sink: Arc<dyn Sink>,
    /// Its id in the channel.
    id: u64,
    /// The next log sequence it has not been written.
    cursor: u64,
    /// Live events at or before this were replayed already.
    seen_through: Option<Position>,
    /// A flusher is writing (outside every lock, so that publishers never wait for a syscall).
    writing: bool,
    /// The socket must go back to the task once the write in progress ends.
    leave: bool,
    /// Set with `leave` by the channel: it took the subscriber out of its flusher's count but the
    /// write in progress still counts, until the flusher ends the hand-back.
    deferred: bool,
    /// With `leave`: the log sequence the channel stopped logging for it (later events went to
    /// its queue), so the hand-back moves only the log before it.
    until: Option<u64>,
    /// When a flusher last wrote (the heartbeat counts idle time from it).
    last_write: Option<Instant>,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("id", &self.id)
            .field("cursor", &self.cursor)
            .field("writing", &self.writing)
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

    /// A flusher's write to this direct subscriber: `events` are the log from sequence `from` to
    /// `head`, `common` their chunk for a subscriber that needs all of them. The socket is written
    /// with no lock held; `writing` keeps the task from taking it back meanwhile.
    fn write_direct(
        &self,
        events: &[(Position, Bytes)],
        from: u64,
        head: u64,
        common: &[IoSlice<'_>],
        now: Instant,
    ) -> Wrote {
        let mut state = self.lock();
        let Some(direct) = state.direct.as_mut() else {
            return Wrote::Nothing;
        };
        if direct.writing || direct.cursor >= head {
            return Wrote::Nothing;
        }
        let skip = direct.cursor.saturating_sub(from) as usize;
        let seen_through = direct.seen_through;
        direct.writing = true;
        let sink = direct.sink.clone();
        drop(state);

        // Rarely (it joined mid-round, or resumed over live events): its own slice of the log.
        let mut own_head = [0u8; 20];
        let mut own_slices = Vec::new();
        let slices = if skip == 0 && seen_through.is_none() {
            common
        } else {
            let own = events
                .get(skip..)
                .unwrap_or_default()
                .iter()
                .filter(|(p, _)| seen_through.is_none_or(|s| *p > s))
                .map(|(_, b)| b);
            if own.clone().next().is_some() {
                own_slices = chunk::slices(own, &mut own_head);
            }
            &own_slices[..]
        };
        let count = slices.len().saturating_sub(2) as u64;
        let len: usize = slices.iter().map(|s| s.len()).sum();
        let written = if len == 0 {
            0
        } else {
            match sink.try_write_vectored(slices) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => {
                    // The task sees the same error on its next write and ends the stream.
                    tracing::debug!(error = %e, "direct write failed; handing the subscriber back");
                    0
                }
            }
        };
        let raw = (written > 0 && written < len).then(|| {
            let mut rest = BytesMut::with_capacity(len - written);
            let mut skip = written;
            for s in slices {
                if skip >= s.len() {
                    skip -= s.len();
                } else {
                    rest.extend_from_slice(&s[skip..]);
                    skip = 0;
                }
            }
            rest.freeze()
        });
        drop(sink);

        let mut state = self.lock();
        let Some(direct) = state.direct.as_mut() else {
            return Wrote::Nothing;
        };
        direct.writing = false;
        if written > 0 || len == 0 {
            // Written (whole or in part: the rest travels as `raw`), or all filtered out.
            direct.cursor = head;
        }
        if written > 0 {
            direct.last_write = Some(now);
        }
        let delivered = if written > 0 { count } else { 0 };
        if written == len && !direct.leave {
            return if delivered > 0 {
                Wrote::Events(delivered)
            } else {
                Wrote::Nothing
            };
        }
        // Partial, nothing taken, or the task asked for its socket: the channel finishes the
        // hand-back under its lock (`Channel::end_round`); keep the unwritten bytes for the task.
        if let Some(raw) = raw {
            state.handback = Some(Handback {
                raw: Some(raw),
                last_write: Some(now),
            });
        }
        Wrote::HandBack(delivered)
    }
}

/// Gives the socket back to the task; returns the waker to call once the lock is released. Bytes a
/// partial write left (already in `handback`) are kept.
fn hand_back(
    state: &mut QueueState,
    raw: Option<Bytes>,
    last_write: Option<Instant>,
) -> Option<Waker> {
    state.direct = None;
    let previous = state.handback.take().unwrap_or_default();
    state.handback = Some(Handback {
        raw: raw.or(previous.raw),
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
        if state.frames.len() >= self.0.capacity {
            return Err(TrySendError::Full(frame));
        }
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
                hand_back(&mut state, None, last_write)
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

#[cfg(test)]
mod direct_tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Wake, Waker};
    use std::time::Duration;

    use super::*;

    /// A socket stand-in: takes at most `accept` bytes per write (`WouldBlock` at 0), and can run
    /// something in the middle of a write, when the flusher holds no lock.
    #[derive(Default)]
    struct FakeSink {
        accept: Mutex<usize>,
        got: Mutex<Vec<u8>>,
        during: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl Sink for FakeSink {
        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if let Some(f) = self.during.lock().unwrap().take() {
                f();
            }
            let mut accept = self.accept.lock().unwrap();
            if *accept == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut got = self.got.lock().unwrap();
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(*accept - n);
                got.extend_from_slice(&b[..take]);
                n += take;
            }
            *accept -= n;
            Ok(n)
        }
    }

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    struct Fixture {
        ch: Arc<Channel>,
        flushers: Flushers,
        metrics: Metrics,
        next: u64,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                ch: Arc::new(Channel::new(Arc::from("t"))),
                flushers: Flushers::new(Arc::new(AtomicU64::new(0)), Duration::ZERO),
                metrics: Metrics::default(),
                next: 0,
            }
        }

        fn publish(&mut self, data: &str) -> Bytes {
            self.next += 1;
            let bytes = Bytes::from(format!("data: {data}\n\n"));
            let position = Position::new(1, self.next);
            self.ch
                .fan_out(position, &bytes, &self.metrics, &self.flushers);
            bytes
        }

        /// One whole flusher round (flusher 0); returns what it delivered.
        fn round(&self) -> u64 {
            let Some(round) = self.ch.start_round(0) else {
                return 0;
            };
            let mut delivered = 0;
            let mut handbacks = Vec::new();
            let mut buf = [0u8; 20];
            let chunk = round.chunk(&mut buf);
            for q in &round.queues {
                match round.write(q, &chunk, Instant::now()) {
                    Wrote::Events(n) => delivered += n,
                    Wrote::Nothing => {}
                    Wrote::HandBack(n) => {
                        delivered += n;
                        handbacks.push(q.clone());
                    }
                }
            }
            drop(chunk);
            self.ch.end_round(0, round.head, handbacks);
            delivered
        }
    }

    fn chunk_of(events: &[&Bytes]) -> Vec<u8> {
        let total: usize = events.iter().map(|b| b.len()).sum();
        let mut out = format!("{total:x}\r\n").into_bytes();
        for e in events {
            out.extend_from_slice(e);
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    fn queued(rx: &mut QueueRx) -> Vec<Bytes> {
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        while let Poll::Ready(Some(Frame::Event(_, b))) = rx.poll_recv(&mut cx) {
            out.push(b);
        }
        out
    }

    fn handed_back(rx: &mut QueueRx) -> bool {
        let waker = Waker::from(Arc::new(Noop));
        rx.poll_handback(&mut Context::from_waker(&waker))
            .is_ready()
    }

    #[test]
    fn a_partial_write_hands_back_the_rest_of_the_chunk_then_the_queue_takes_over() {
        let mut f = Fixture::new();
        let (tx, mut rx) = queue(16);
        let id = f.ch.add(Handle::new(tx, Arc::new(AtomicBool::new(false))));
        let sink = Arc::new(FakeSink::default());
        *sink.accept.lock().unwrap() = 1 << 20;
        assert!(f.ch.enter_direct(id, &rx, sink.clone(), 0, None));

        let (a, b, c) = (f.publish("a"), f.publish("b"), f.publish("c"));
        assert_eq!(f.round(), 3);
        assert_eq!(*sink.got.lock().unwrap(), chunk_of(&[&a, &b, &c]));
        assert!(!handed_back(&mut rx), "a whole write keeps the socket lent");

        // The socket takes 5 bytes of the next chunk: the rest goes back to the task, as is.
        sink.got.lock().unwrap().clear();
        *sink.accept.lock().unwrap() = 5;
        let (d, e) = (f.publish("d"), f.publish("e"));
        assert_eq!(f.round(), 2);
        assert!(handed_back(&mut rx));
        let raw = rx
            .leave_direct()
            .raw
            .expect("the unwritten rest of the chunk");
        let mut wire = sink.got.lock().unwrap().clone();
        wire.extend_from_slice(&raw);
        assert_eq!(wire, chunk_of(&[&d, &e]));
        assert!(queued(&mut rx).is_empty(), "nothing is sent twice");

        // From now on events go to the queue, and a round has nobody to write.
        let g = f.publish("g");
        assert_eq!(f.round(), 0);
        assert_eq!(queued(&mut rx), vec![g]);
    }

    #[test]
    fn nothing_written_puts_the_events_back_in_the_queue_in_order() {
        let mut f = Fixture::new();
        let (tx, mut rx) = queue(16);
        let id = f.ch.add(Handle::new(tx, Arc::new(AtomicBool::new(false))));
        let sink = Arc::new(FakeSink::default()); // accepts nothing: WouldBlock
        assert!(f.ch.enter_direct(id, &rx, sink, 0, None));
        let (a, b) = (f.publish("a"), f.publish("b"));
        assert_eq!(f.round(), 0);
        assert!(handed_back(&mut rx));
        assert!(rx.leave_direct().raw.is_none());
        let c = f.publish("c");
        assert_eq!(queued(&mut rx), vec![a, b, c]);
    }

    #[test]
    fn taking_the_socket_back_during_a_write_loses_and_repeats_nothing() {
        let mut f = Fixture::new();
        let (tx, mut rx) = queue(16);
        let id = f.ch.add(Handle::new(tx, Arc::new(AtomicBool::new(false))));
        let rx_shared = Arc::new(Mutex::new(None::<QueueRx>));
        let sink = Arc::new(FakeSink::default());
        *sink.accept.lock().unwrap() = 1 << 20;
        assert!(f.ch.enter_direct(id, &rx, sink.clone(), 0, None));
        // A second direct subscriber keeps the log growing after the first one leaves it.
        let (tx2, rx2) = queue(16);
        let id2 = f.ch.add(Handle::new(tx2, Arc::new(AtomicBool::new(false))));
        let sink2 = Arc::new(FakeSink::default());
        *sink2.accept.lock().unwrap() = 1 << 20;
        assert!(f.ch.enter_direct(id2, &rx2, sink2.clone(), 0, None));
        let a = f.publish("a");

        // While the flusher writes `a` (no lock held): one more event reaches the log, the task asks
        // for its socket, then another event is published.
        let ch = f.ch.clone();
        let (mid, after) = (
            Bytes::from_static(b"data: mid\n\n"),
            Bytes::from_static(b"data: after\n\n"),
        );
        let (mid2, after2) = (mid.clone(), after.clone());
        let rx_for_leave = std::mem::replace(&mut rx, queue(1).1);
        *rx_shared.lock().unwrap() = Some(rx_for_leave);
        let rx_shared2 = rx_shared.clone();
        *sink.during.lock().unwrap() = Some(Box::new(move || {
            let metrics = Metrics::default();
            let flushers = Flushers::new(Arc::new(AtomicU64::new(0)), Duration::ZERO);
            ch.fan_out(Position::new(1, 100), &mid2, &metrics, &flushers);
            let guard = rx_shared2.lock().unwrap();
            ch.leave_direct(id, guard.as_ref().unwrap());
            drop(guard);
            ch.fan_out(Position::new(1, 101), &after2, &metrics, &flushers);
        }));
        assert_eq!(f.round(), 2, "`a` to both");
        assert_eq!(*sink.got.lock().unwrap(), chunk_of(&[&a]));
        let mut rx = rx_shared.lock().unwrap().take().unwrap();
        assert!(handed_back(&mut rx), "handed back when the write ended");
        assert!(rx.leave_direct().raw.is_none());
        assert_eq!(
            queued(&mut rx),
            vec![mid.clone(), after.clone()],
            "in order, once each"
        );
        // The other subscriber stays direct and gets everything from the log.
        f.round();
        let mut want = chunk_of(&[&a]);
        want.extend(chunk_of(&[&mid, &after]));
        assert_eq!(*sink2.got.lock().unwrap(), want);
        assert!(!handed_back(&mut { rx2 }));
        f.ch.remove(id2);
        // The flusher's count went back to zero: no round to run, and the log is empty.
        assert!(f.ch.start_round(0).is_none());
        assert!(f.ch.lock().log.is_empty());
    }

    #[test]
    fn a_flusher_a_queue_behind_disconnects_the_subscribers_it_did_not_write() {
        let mut f = Fixture::new();
        let (tx, rx) = queue(4);
        let kicked = Arc::new(AtomicBool::new(false));
        let id = f.ch.add(Handle::new(tx, kicked.clone()));
        assert!(f.ch.enter_direct(id, &rx, Arc::new(FakeSink::default()), 0, None));
        for i in 0..4 {
            f.publish(&i.to_string());
        }
        assert!(
            !kicked.load(Ordering::Acquire),
            "four events fit a queue of four"
        );
        f.publish("one too many");
        assert!(kicked.load(Ordering::Acquire));
        assert_eq!(f.ch.len(), 0);
        assert_eq!(f.metrics.dropped_subscribers(), 1);
        assert!(f.ch.lock().log.is_empty(), "the log is freed with them");
    }
}
