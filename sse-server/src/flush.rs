//! Flushers: a few tasks (one per core) that write live events straight to subscribers' sockets.
//!
//! Why: a subscriber served by the lean HTTP/1.1 path spends nearly all its life waiting for the next
//! event. Waking its task for every event (schedule it, poll its stream, pop its queue, then `writev`)
//! costs more user-space time than the write, and touches a dozen cold cache lines per subscriber. So,
//! once such a task has nothing queued, it lends its socket to a flusher
//! ([`Channel::enter_direct`](crate::channel::Channel::enter_direct)). The fan-out then appends the
//! event to the channel's log once and puts the channel on the flusher's list once per round; the
//! flusher writes each of its subscribers the part of the log it has not seen, as one chunk in one
//! `writev`. Rounds batch by themselves: whatever is published during a round goes out in the next
//! one. Under load (a round that took 1 ms or more), a flusher also rests twice as long as the round
//! took, at most [`HubBuilder::coalesce`](crate::HubBuilder::coalesce) (5 ms by default), before
//! the next: more events per `writev` and fewer `writev`s, the system call and TCP segment being
//! what a delivery costs.
//!
//! The task takes its socket back for anything only it can do (a heartbeat, an expiry, the last
//! bytes), and a flusher hands it back whenever the socket does not take a write whole, so a slow
//! subscriber is never written by a flusher twice: its task waits for the socket, and a full queue
//! disconnects it as before. Either way the events it has not seen move from the log to the front of
//! its queue, under the channel's lock, so none is lost or repeated.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::channel::{Channel, Wrote};

/// Subscribers written per flusher before it lets other tasks on its worker run.
const YIELD_EVERY: usize = 256;
/// Channels a round goes through between two such pauses.
const YIELD_CHANNELS: usize = 64;
/// Rounds shorter than this are never followed by a pause (tokio's timer has 1 ms resolution).
const MIN_ROUND: Duration = Duration::from_millis(1);

/// Where a flusher writes: a subscriber's socket, without waiting.
pub(crate) trait Sink: Send + Sync {
    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

impl Sink for tokio::net::TcpStream {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        tokio::net::TcpStream::try_write_vectored(self, bufs)
    }
}

/// Called after a round on a channel that has no subscribers left (the hub then forgets it).
type OnIdle = Box<dyn Fn(&Arc<Channel>) + Send + Sync>;

/// A hub's flushers. Their tasks start on first use, on the runtime of the task that needs them.
pub(crate) struct Flushers {
    flushers: Vec<Arc<Flusher>>,
    tasks: Mutex<Vec<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Flushers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flushers")
            .field("count", &self.flushers.len())
            .finish_non_exhaustive()
    }
}

struct Flusher {
    /// Channels with something new for this flusher's subscribers.
    pending: Mutex<Vec<Arc<Channel>>>,
    on_idle: std::sync::OnceLock<OnIdle>,
    wake: Notify,
    /// Ends a coalescing pause early: a channel's log is half a queue long.
    hurry: Notify,
    closed: AtomicBool,
    delivered: Arc<AtomicU64>,
    coalesce: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Flushers {
    /// One flusher per core; `delivered` counts the events they write; `coalesce` is the longest
    /// pause between rounds under load.
    pub(crate) fn new(delivered: Arc<AtomicU64>, coalesce: Duration) -> Flushers {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Flushers {
            flushers: (0..n)
                .map(|_| {
                    Arc::new(Flusher {
                        pending: Mutex::new(Vec::new()),
                        on_idle: std::sync::OnceLock::new(),
                        wake: Notify::new(),
                        hurry: Notify::new(),
                        closed: AtomicBool::new(false),
                        delivered: delivered.clone(),
                        coalesce,
                    })
                })
                .collect(),
            tasks: Mutex::new((0..n).map(|_| None).collect()),
        }
    }

    /// The flusher for subscriber `id`, its task running; `None` outside a tokio runtime.
    pub(crate) fn pick(&self, id: u64) -> Option<usize> {
        let i = (id % self.flushers.len() as u64) as usize;
        let mut tasks = lock(&self.tasks);
        let slot = tasks.get_mut(i)?;
        if slot.as_ref().is_none_or(JoinHandle::is_finished) {
            // First use, or the runtime it ran on is gone (a hub can outlive a runtime in tests).
            let runtime = tokio::runtime::Handle::try_current().ok()?;
            *slot = Some(runtime.spawn(run(i, self.flushers[i].clone())));
        }
        Some(i)
    }

    /// Sets what to do with a channel whose last subscriber left while a flusher held it (a flusher
    /// holding it keeps the hub from forgetting it then).
    pub(crate) fn on_idle(&self, f: impl Fn(&Arc<Channel>) + Send + Sync + Clone + 'static) {
        for flusher in &self.flushers {
            let _ = flusher.on_idle.set(Box::new(f.clone()));
        }
    }

    /// Cuts the flushers' coalescing pauses short: a channel's log is filling up (with a small
    /// `queue_size`, a full pause could otherwise let it overflow and disconnect subscribers). A
    /// flusher with nothing there only skips one pause.
    pub(crate) fn hurry(&self) {
        for flusher in &self.flushers {
            flusher.hurry.notify_one();
        }
    }

    /// Puts `channel` on flusher `i`'s list (the channel makes sure it is there at most once).
    pub(crate) fn schedule(&self, i: usize, channel: &Arc<Channel>) {
        let Some(flusher) = self.flushers.get(i) else {
            return;
        };
        let mut pending = lock(&flusher.pending);
        let idle = pending.is_empty();
        pending.push(channel.clone());
        drop(pending);
        if idle {
            flusher.wake.notify_one();
        }
    }
}

impl Drop for Flushers {
    fn drop(&mut self) {
        for f in &self.flushers {
            f.closed.store(true, Ordering::Release);
            f.wake.notify_one();
        }
    }
}

/// One round on one channel: its subscribers in slices of [`YIELD_EVERY`], letting the worker's
/// other tasks run in between (a round over thousands of sockets takes milliseconds).
async fn flush_channel(index: usize, channel: &Arc<Channel>, now: Instant) -> u64 {
    let Some(round) = channel.start_round(index) else {
        return 0;
    };
    let mut delivered = 0;
    let mut handbacks = Vec::new();
    if !round.is_empty() {
        let mut buf = [0u8; 20];
        let chunk = round.chunk(&mut buf);
        for (i, queue) in round.queues.iter().enumerate() {
            match round.write(queue, &chunk, now) {
                Wrote::Events(n) => delivered += n,
                Wrote::Nothing => {}
                Wrote::HandBack(n) => {
                    delivered += n;
                    handbacks.push(queue.clone());
                }
            }
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
        }
    }
    channel.end_round(index, round.head, handbacks);
    delivered
}

async fn run(index: usize, flusher: Arc<Flusher>) {
    let mut last_round: Option<(Instant, Duration)> = None;
    loop {
        if lock(&flusher.pending).is_empty() {
            if flusher.closed.load(Ordering::Acquire) {
                return;
            }
            flusher.wake.notified().await;
            continue;
        }
        // Under load, rest twice as long as the last round took (at most `coalesce`): the events
        // published meanwhile go out together, in one `writev` per subscriber instead of several.
        // Rounds shorter than the timer's 1 ms resolution (few subscribers, light load) never wait.
        if let Some((start, took)) = last_round
            && took >= MIN_ROUND
            && !flusher.coalesce.is_zero()
        {
            let until = start + took + (took * 2).min(flusher.coalesce);
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = flusher.hurry.notified() => {}
            }
        }
        let round = std::mem::take(&mut *lock(&flusher.pending));
        let now = Instant::now();
        let mut delivered = 0;
        for (i, channel) in round.into_iter().enumerate() {
            delivered += flush_channel(index, &channel, now).await;
            if channel.len() == 0
                && let Some(f) = flusher.on_idle.get()
            {
                f(&channel);
            }
            // Many small channels: let the worker's other tasks run now and then too.
            if i % YIELD_CHANNELS == YIELD_CHANNELS - 1 {
                tokio::task::yield_now().await;
            }
        }
        flusher.delivered.fetch_add(delivered, Ordering::Relaxed);
        last_round = Some((now, now.elapsed()));
    }
}
