//! The flushers' work lists: which channels have something new for which flusher.
//!
//! A flusher (`transport/flusher.rs`) is a task that writes live events to the subscribers whose
//! connections lent the hub their sockets (`hub/lent.rs`). The hub keeps one list per flusher: a
//! fan-out puts its channel on the list of each flusher that writes subscribers there, once per
//! round, and the flusher takes the whole list at the start of its next round. The tasks themselves
//! belong to the transport; the hub only holds their handles, so they start on first use, on the
//! runtime of the connection that needs them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::hub::channel::Channel;
use crate::hub::metrics::{Histogram, Metrics};
use crate::position::Position;

/// Called after a round on a channel that has no subscribers left (the hub then forgets it).
type OnIdle = Box<dyn Fn(&Arc<Channel>) + Send + Sync>;

/// Starts flusher `index`'s task over its work list.
pub(crate) type Spawn = fn(usize, Arc<WorkList>) -> JoinHandle<()>;

/// A hub's flushers: one work list each (one per core), and their tasks once started.
pub(crate) struct Rounds {
    lists: Vec<Arc<WorkList>>,
    tasks: Mutex<Vec<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Rounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rounds")
            .field("flushers", &self.lists.len())
            .finish_non_exhaustive()
    }
}

/// One flusher's list, and what its task needs to know.
pub(crate) struct WorkList {
    /// Channels with something new for this flusher's subscribers.
    pending: Mutex<Vec<Arc<Channel>>>,
    on_idle: OnceLock<OnIdle>,
    wake: Notify,
    /// Ends a coalescing pause early: a channel's log is half a queue long.
    hurry: Notify,
    closed: AtomicBool,
    delivered: Arc<AtomicU64>,
    publish_to_write: Arc<Histogram>,
    round_time: Arc<Histogram>,
    /// Events fanned out to direct subscribers, hub-wide (shared by every list): a flusher compares
    /// it before and after a round to see how many arrived while it wrote.
    published: Arc<AtomicU64>,
    /// The longest pause between rounds under load.
    pub(crate) coalesce: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Rounds {
    /// One list per core; the flushers count what they write in `metrics`; `coalesce` is the
    /// longest pause between rounds under load.
    pub(crate) fn new(metrics: &Metrics, coalesce: Duration) -> Rounds {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let published = Arc::new(AtomicU64::new(0));
        Rounds {
            lists: (0..n)
                .map(|_| {
                    Arc::new(WorkList {
                        pending: Mutex::new(Vec::new()),
                        on_idle: OnceLock::new(),
                        wake: Notify::new(),
                        hurry: Notify::new(),
                        closed: AtomicBool::new(false),
                        delivered: metrics.delivered.clone(),
                        publish_to_write: metrics.publish_to_write.clone(),
                        round_time: metrics.flusher_round.clone(),
                        published: published.clone(),
                        coalesce,
                    })
                })
                .collect(),
            tasks: Mutex::new((0..n).map(|_| None).collect()),
        }
    }

    /// The flusher for subscriber `id`, its task running (started with `spawn` if it is not);
    /// `None` outside a tokio runtime.
    pub(crate) fn pick(&self, id: u64, spawn: Spawn) -> Option<usize> {
        let i = (id % self.lists.len() as u64) as usize;
        let mut tasks = lock(&self.tasks);
        let slot = tasks.get_mut(i)?;
        if slot.as_ref().is_none_or(JoinHandle::is_finished) {
            // First use, or the runtime it ran on is gone (a hub can outlive a runtime in tests).
            tokio::runtime::Handle::try_current().ok()?;
            *slot = Some(spawn(i, self.lists[i].clone()));
        }
        Some(i)
    }

    /// Sets what to do with a channel whose last subscriber left while a flusher held it (a flusher
    /// holding it keeps the hub from forgetting it then).
    pub(crate) fn on_idle(&self, f: impl Fn(&Arc<Channel>) + Send + Sync + Clone + 'static) {
        for list in &self.lists {
            let _ = list.on_idle.set(Box::new(f.clone()));
        }
    }

    /// Fans `bytes` out on `channel` and puts the channel on the lists of the flushers that have
    /// subscribers to write there.
    pub(crate) fn fan_out(
        &self,
        channel: &Arc<Channel>,
        position: Position,
        bytes: &Bytes,
        at: Instant,
        metrics: &Metrics,
    ) {
        let scheduled = channel.fan_out(position, bytes, at, metrics);
        if scheduled.direct
            && let Some(list) = self.lists.first()
        {
            list.published.fetch_add(1, Ordering::Relaxed);
        }
        for i in scheduled.flushers {
            self.schedule(i, channel);
        }
        if scheduled.hurry {
            self.hurry();
        }
    }

    /// Cuts the flushers' coalescing pauses short: a channel's log is filling up (with a small
    /// `queue_size`, a full pause could otherwise let it overflow and disconnect subscribers). A
    /// flusher with nothing there only skips one pause.
    fn hurry(&self) {
        for list in &self.lists {
            list.hurry.notify_one();
        }
    }

    /// Puts `channel` on flusher `i`'s list (the channel makes sure it is there at most once).
    fn schedule(&self, i: usize, channel: &Arc<Channel>) {
        let Some(list) = self.lists.get(i) else {
            return;
        };
        let mut pending = lock(&list.pending);
        let idle = pending.is_empty();
        pending.push(channel.clone());
        drop(pending);
        if idle {
            list.wake.notify_one();
        }
    }
}

impl Drop for Rounds {
    fn drop(&mut self) {
        for list in &self.lists {
            list.closed.store(true, Ordering::Release);
            list.wake.notify_one();
        }
    }
}

impl WorkList {
    /// Whether no channel waits for this flusher.
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.pending).is_empty()
    }

    /// Whether the hub is gone: the task ends once its list is empty.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until a channel is put on the list (or the hub is gone).
    pub(crate) async fn wait(&self) {
        self.wake.notified().await;
    }

    /// Waits until a fan-out asks the flushers to hurry.
    pub(crate) async fn hurried(&self) {
        self.hurry.notified().await;
    }

    /// How many events the hub has fanned out to direct subscribers so far (a flusher reads it
    /// before and after a round: the difference arrived while it wrote).
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Takes every channel on the list: the next round.
    pub(crate) fn take(&self) -> Vec<Arc<Channel>> {
        std::mem::take(&mut *lock(&self.pending))
    }

    /// After a round on `channel`: lets the hub forget it if nobody follows it any more.
    pub(crate) fn after_round(&self, channel: &Arc<Channel>) {
        if channel.len() == 0
            && let Some(f) = self.on_idle.get()
        {
            f(channel);
        }
    }

    /// Adds `n` to the hub's count of delivered events.
    pub(crate) fn delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    /// Records a round's events, published at `published`, as written at `now`.
    pub(crate) fn written(&self, published: &[Instant], now: Instant) {
        for at in published {
            self.publish_to_write
                .observe(now.saturating_duration_since(*at));
        }
    }

    /// Records how long a round took.
    pub(crate) fn round_took(&self, took: Duration) {
        self.round_time.observe(took);
    }
}

impl std::fmt::Debug for WorkList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkList")
            .field("coalesce", &self.coalesce)
            .finish_non_exhaustive()
    }
}
