//! The durable replay store: each channel's window in one redb file, so a restart (or `kill -9`) loses
//! nothing that was acknowledged.

mod format;
mod open;
mod ops;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::Database;
use sse_proto::Event;
use tokio::sync::oneshot;

use self::format::{Damage, Loaded};
use self::open::Opening;
use self::ops::Op;
use super::retention::Retention;
use super::store::{BoxFuture, Replay, ReplayStore, StoredChannel};
use super::stored::{self, StoredEvent};
use super::window::{Entry, Windows};
use crate::error::Error;
use crate::position::Position;

/// The store's file inside the data directory.
pub const STORE_FILE: &str = "replay.redb";

/// Appends between two sweeps of every window (as in the memory store).
const PRUNE_EVERY: u64 = 1024;

/// Most publishes one group commit carries.
const MAX_BATCH: usize = 1024;

/// First wait before the writer reopens a file whose write failed (doubling up to [`RETRY_MAX`]);
/// publishes arriving meanwhile are refused at once.
const RETRY_MIN: Duration = Duration::from_millis(100);

/// Longest wait between two reopen attempts while nobody publishes.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// When a publish is acknowledged relative to the disk. Both modes acknowledge only after `fsync`; they
/// differ in how many publishes share one.
///
/// ```
/// use std::time::Duration;
/// let mode = sse_server::CommitMode::Group { max_delay: Duration::from_millis(2) };
/// assert_ne!(mode, sse_server::CommitMode::PerPublish);
/// assert_eq!(sse_server::CommitMode::default(), sse_server::CommitMode::Group { max_delay: Duration::ZERO });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// One transaction and one `fsync` per publish.
    PerPublish,
    /// Group commit (the default, with no delay): every publish waiting when the writer starts a commit
    /// (at most 1024), plus those arriving within `max_delay` of the first, share one transaction and one
    /// `fsync`; each is acknowledged when that commit is durable. With `max_delay` zero nothing waits
    /// longer than in [`PerPublish`](CommitMode::PerPublish): publishes that queue up while a commit is
    /// in flight simply share the next one. The hub orders publishes per channel (one in flight per
    /// channel), so batches form across channels.
    Group {
        /// The longest a publish waits for others to join its commit (zero: only those already queued).
        max_delay: Duration,
    },
}

impl Default for CommitMode {
    /// Group commit without added delay.
    fn default() -> Self {
        CommitMode::Group {
            max_delay: Duration::ZERO,
        }
    }
}

/// A [`ReplayStore`] that keeps each channel's window in a single [redb](https://docs.rs/redb) file,
/// `DIR/replay.redb`.
///
/// * **Acknowledged means durable**: `append` returns (and the hub answers `{"id"}`) only after the
///   transaction holding the event was committed with an `fsync` ([`CommitMode`]). After a crash the
///   file reopens at the last commit; a commit cut short is rolled back by redb's checksums.
/// * **Ids survive restarts**: the epoch is fixed when the file is created and the id counter is committed
///   with every event, so ids issued after a restart are greater than every earlier one and earlier ids
///   stay resumable while their events are retained.
/// * **Retention on disk**: count, bytes and age per channel are enforced exactly as by the
///   [`MemoryStore`](crate::replay::MemoryStore), deleting from the file in the same commit; redb reuses the freed
///   pages, so the file stays bounded under a steady load. A lower retention given at start-up trims the
///   file at once.
/// * **A failed write heals by itself**: when a commit fails (a full disk, an I/O error), that publish
///   and every later one get [`Error::Store`] (503) and [`health`](ReplayStore::health) reports it,
///   until the writer has closed and reopened the file with the start-up steps (open, integrity check,
///   load), which it retries with backoff (100 ms doubling to 1 s), publishes or not. Nothing
///   acknowledged is lost (each commit is atomic) and ids keep increasing.
/// * **Damage is reported, never repaired silently**: a truncated, garbled or foreign file makes
///   [`open`](DurableStoreBuilder::open) fail with [`Error::DataDir`] naming the file; starting fresh is
///   explicit ([`DurableStoreBuilder::reset`], `--reset-data-dir`).
///
/// The window is also kept in memory (replays are answered from there); the file is the copy that
/// survives.
///
/// ```
/// use sse_server::{DurableStore, ReplayStore, Retention};
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let dir = tempfile::tempdir()?;
/// let store = DurableStore::builder(dir.path()).retention(Retention::default().max_events(100)).open()?;
/// let first = store.append("news", sse_proto::Event::message("one")).await?;
/// store.close();
/// // Reopened (as after a restart): the event is still there and its id still resumable.
/// let store = DurableStore::builder(dir.path()).open()?;
/// let next = store.append("news", sse_proto::Event::message("two")).await?;
/// assert!(next.position > first.position);
/// let replay = store.replay("news", &first.id).await?;
/// assert!(replay.reset.is_none());
/// assert_eq!(replay.events[0].id, next.id);
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DurableStore {
    shared: Arc<Shared>,
    mode: CommitMode,
    writer: Mutex<Option<Writer>>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    epoch: u64,
    retention: Retention,
    /// Last position issued. Bumped by the writer and by `mint_id`; committed with every batch.
    counter: AtomicU64,
    state: Mutex<State>,
    /// Set when a commit failed, until the writer has reopened the file: every append fails with it
    /// and [`ReplayStore::health`] reports it.
    broken: Mutex<Option<String>>,
    /// Set when the in-memory window may hold events that are not on disk (a commit failed and the
    /// file could not be read back): replays fail, rather than show them, until the file is reopened.
    stale: AtomicBool,
}

/// Everything the store knows, behind one lock: each channel's window, exactly as on disk once the
/// writer's last commit returned.
#[derive(Debug)]
struct State {
    windows: Windows<u64>,
    /// Changes made outside the writer (age evictions noticed by a replay): committed with the next batch.
    pending: Vec<Op>,
}

#[derive(Debug)]
struct Writer {
    tx: mpsc::Sender<Request>,
    thread: JoinHandle<()>,
}

#[derive(Debug)]
struct Request {
    /// Every channel the event goes to, at one position (one for a publish; many for a broadcast).
    channels: Vec<String>,
    event: Event,
    reply: oneshot::Sender<Result<StoredEvent, Error>>,
}

/// Options for opening a [`DurableStore`].
///
/// ```
/// use std::time::Duration;
/// let builder = sse_server::DurableStore::builder("/var/lib/sse")
///     .retention(sse_server::Retention::default().max_events(500))
///     .commit_mode(sse_server::CommitMode::Group { max_delay: Duration::from_millis(2) })
///     .reset(false);
/// # drop(builder);
/// ```
#[derive(Debug, Clone)]
#[must_use = "call .open() to open the store"]
pub struct DurableStoreBuilder {
    dir: PathBuf,
    retention: Retention,
    mode: CommitMode,
    reset: bool,
}

impl DurableStoreBuilder {
    /// The window kept per channel (default [`Retention::default`]).
    ///
    /// ```
    /// let _ = sse_server::DurableStore::builder("d").retention(sse_server::Retention::default().max_events(9));
    /// ```
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How publishes share commits (default: group commit without delay, see [`CommitMode`]).
    ///
    /// ```
    /// let _ = sse_server::DurableStore::builder("d").commit_mode(sse_server::CommitMode::PerPublish);
    /// ```
    pub fn commit_mode(mut self, mode: CommitMode) -> Self {
        self.mode = mode;
        self
    }

    /// Discards an existing store file (every retained event and the id epoch) and starts fresh.
    ///
    /// ```
    /// let _ = sse_server::DurableStore::builder("d").reset(true);
    /// ```
    pub fn reset(mut self, reset: bool) -> Self {
        self.reset = reset;
        self
    }

    /// Opens (or creates) `DIR/replay.redb`, loads and checks it, trims it to the retention, and starts the
    /// writer thread.
    ///
    /// Fails with [`Error::DataDir`] when the directory cannot be created, another process holds the
    /// file, or the file is damaged or not a store of this format (the message says what to do).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// std::fs::write(dir.path().join(sse_server::STORE_FILE), b"not a database")?;
    /// let err = sse_server::DurableStore::builder(dir.path()).open().unwrap_err();
    /// assert!(err.to_string().contains("--reset-data-dir"));
    /// let _fresh = sse_server::DurableStore::builder(dir.path()).reset(true).open()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(self) -> Result<DurableStore, Error> {
        let path = self.dir.join(STORE_FILE);
        let opening = Opening {
            dir: &self.dir,
            path: &path,
        };
        opening.prepare(self.reset)?;
        let mut db = opening.database()?;
        opening.verify(&mut db)?;
        let loaded = opening.load(&db, &self.retention, now_ms(), fresh_epoch())?;
        tracing::info!(
            path = %path.display(),
            epoch = loaded.windows.epoch(),
            channels = loaded.windows.len(),
            events = loaded.windows.retained(),
            mode = ?self.mode,
            "opened the durable replay store"
        );
        let shared = Arc::new(Shared::new(path.clone(), self.retention, loaded));
        let thread = {
            let shared = shared.clone();
            let mode = self.mode;
            let (tx, rx) = mpsc::channel();
            std::thread::Builder::new()
                .name("sse-replay-writer".into())
                .spawn(move || write_loop(db, &shared, &rx, mode))
                .map(|thread| Writer { tx, thread })
                .map_err(|e| opening.fail(format!("cannot start its writer thread: {e}")))?
        };
        Ok(DurableStore {
            shared,
            mode: self.mode,
            writer: Mutex::new(Some(thread)),
        })
    }
}

impl DurableStore {
    /// Starts configuring a store kept in directory `dir`.
    ///
    /// ```
    /// let _ = sse_server::DurableStore::builder("/var/lib/sse");
    /// ```
    pub fn builder(dir: impl AsRef<Path>) -> DurableStoreBuilder {
        DurableStoreBuilder {
            dir: dir.as_ref().to_path_buf(),
            retention: Retention::default(),
            mode: CommitMode::default(),
            reset: false,
        }
    }

    /// The store file.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = sse_server::DurableStore::builder(dir.path()).open()?;
    /// assert_eq!(store.path(), dir.path().join("replay.redb"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The epoch fixed when the file was created: the `major` part of every position.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let epoch = sse_server::DurableStore::builder(dir.path()).open()?.epoch();
    /// assert_eq!(sse_server::DurableStore::builder(dir.path()).open()?.epoch(), epoch);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }

    /// The retention this store enforces.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = sse_server::DurableStore::builder(dir.path()).open()?;
    /// assert_eq!(store.retention().events(), 1000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retention(&self) -> Retention {
        self.shared.retention
    }

    /// How publishes share commits.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = sse_server::DurableStore::builder(dir.path()).open()?;
    /// assert_eq!(store.commit_mode(), sse_server::CommitMode::default());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_mode(&self) -> CommitMode {
        self.mode
    }

    /// Finishes the pending commits and closes the file (also done on drop). Later appends fail.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// use sse_server::ReplayStore;
    /// let dir = tempfile::tempdir()?;
    /// let store = sse_server::DurableStore::builder(dir.path()).open()?;
    /// store.close();
    /// assert!(store.append("x", sse_proto::Event::message("late")).await.is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Writer { tx, thread }) = writer {
            drop(tx);
            if thread.join().is_err() {
                tracing::error!(path = %self.shared.path.display(), "the replay writer thread panicked");
            }
        }
    }

    fn sender(&self) -> Option<mpsc::Sender<Request>> {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|w| w.tx.clone())
    }
}

impl Drop for DurableStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn new(path: PathBuf, retention: Retention, loaded: Loaded) -> Self {
        Shared {
            path,
            epoch: loaded.windows.epoch(),
            retention,
            counter: AtomicU64::new(loaded.counter),
            state: Mutex::new(State {
                windows: loaded.windows,
                // The load's own changes were committed when the file was opened.
                pending: Vec::new(),
            }),
            broken: Mutex::new(None),
            stale: AtomicBool::new(false),
        }
    }

    /// A replay read under the lock (`state`); `counter` was loaded before taking it.
    fn replay_locked(
        &self,
        state: &mut State,
        channel: &str,
        last_event_id: &str,
        counter: u64,
    ) -> Result<Replay, Error> {
        self.check_fresh()?;
        let State { windows, pending } = state;
        Ok(windows.replay(
            channel,
            last_event_id,
            counter,
            &self.retention,
            now_ms(),
            pending,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only changed together with the ops mirroring it; a panic in between is a bug
        // that a restart (which reloads from the file) repairs, so keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn broken(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_broken(&self, why: Option<String>) {
        *self.broken.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Fails when the in-memory window may be ahead of the file (see `stale`).
    fn check_fresh(&self) -> Result<(), Error> {
        if self.stale.load(Ordering::Acquire) {
            return Err(Error::Store(self.broken().unwrap_or_else(|| {
                format!("the replay store {} is being reopened", self.path.display())
            })));
        }
        Ok(())
    }
}

impl DurableStore {
    /// Hands `event` to the writer, for every channel of `channels` at one position.
    fn append_to(
        &self,
        channels: Vec<String>,
        event: Event,
    ) -> BoxFuture<'_, Result<StoredEvent, Error>> {
        let sender = self.sender();
        Box::pin(async move {
            let closed = || Error::Store("the durable replay store is closed".into());
            let sender = sender.ok_or_else(closed)?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(Request {
                    channels,
                    event,
                    reply,
                })
                .map_err(|_| closed())?;
            answer.await.map_err(|_| closed())?
        })
    }
}

impl ReplayStore for DurableStore {
    fn append<'a>(
        &'a self,
        channel: &'a str,
        event: Event,
    ) -> BoxFuture<'a, Result<StoredEvent, Error>> {
        self.append_to(vec![channel.to_owned()], event)
    }

    fn append_all<'a>(
        &'a self,
        channels: &'a [String],
        event: Event,
    ) -> BoxFuture<'a, Result<StoredEvent, Error>> {
        self.append_to(channels.to_vec(), event)
    }

    fn replay<'a>(
        &'a self,
        channel: &'a str,
        last_event_id: &'a str,
    ) -> BoxFuture<'a, Result<Replay, Error>> {
        // Most replays find the lock free: read at once, without a blocking thread (a reconnect
        // storm is 10k replays, and every blocking thread costs a stack and a malloc arena).
        let counter = self.shared.counter.load(Ordering::Acquire);
        let state = match self.shared.state.try_lock() {
            Ok(state) => Some(state),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(mut state) = state {
            let replay = self
                .shared
                .replay_locked(&mut state, channel, last_event_id, counter);
            return Box::pin(async move { replay });
        }
        let shared = self.shared.clone();
        let (channel, last_event_id) = (channel.to_owned(), last_event_id.to_owned());
        // The writer holds the lock during a commit (so nothing undurable is ever replayed): wait for it
        // on a blocking thread, not on a runtime worker.
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let counter = shared.counter.load(Ordering::Acquire);
                let mut state = shared.lock();
                shared.replay_locked(&mut state, &channel, &last_event_id, counter)
            })
            .await
            .map_err(|e| Error::Store(format!("replay task failed: {e}")))?
        })
    }

    fn mint_id(&self) -> BoxFuture<'_, Result<String, Error>> {
        // Committed with the next batch; an id minted but never stored reached nobody, so reusing its
        // number after a crash is harmless.
        let minor = self.shared.counter.fetch_add(1, Ordering::AcqRel) + 1;
        let id = Position::new(self.shared.epoch, minor).to_string();
        Box::pin(async move { Ok(id) })
    }

    fn channels(&self) -> BoxFuture<'_, Result<Vec<StoredChannel>, Error>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut state = shared.lock();
                shared.check_fresh()?;
                let State { windows, pending } = &mut *state;
                Ok(windows.channels(&shared.retention, now_ms(), pending))
            })
            .await
            .map_err(|e| Error::Store(format!("channel listing failed: {e}")))?
        })
    }

    fn issued(&self) -> BoxFuture<'_, Result<Option<Position>, Error>> {
        // The writer issues positions and fills the windows under the state lock, which a replay
        // waits for: every position up to the counter is replayable once the replay gets the lock.
        let minor = self.shared.counter.load(Ordering::Acquire);
        let issued = Position::new(self.shared.epoch, minor);
        Box::pin(async move { Ok(Some(issued)) })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), Error>> {
        let state = match (self.sender(), self.shared.broken()) {
            (None, _) => Err(Error::Store("the durable replay store is closed".into())),
            (Some(_), Some(why)) => Err(Error::Store(why)),
            (Some(_), None) => Ok(()),
        };
        Box::pin(async move { state })
    }
}

fn write_loop(db: Database, shared: &Shared, rx: &mpsc::Receiver<Request>, mode: CommitMode) {
    // `None` while the file is closed after a failed commit, until a reopen works. Reopening reads the
    // whole file, so it is attempted on a backoff schedule, not once per refused publish.
    let mut db = Some(db);
    let mut retry = RETRY_MIN;
    let mut next_attempt = Instant::now();
    loop {
        let first = if db.is_some() {
            match rx.recv() {
                Ok(r) => Some(r),
                Err(_) => break,
            }
        } else {
            match rx.recv_timeout(next_attempt.saturating_duration_since(Instant::now())) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        if db.is_none() && Instant::now() >= next_attempt {
            match reopen(shared) {
                Ok(reopened) => {
                    db = Some(reopened);
                    retry = RETRY_MIN;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "the replay store cannot be reopened yet");
                    retry = (retry * 2).min(RETRY_MAX);
                    next_attempt = Instant::now() + retry;
                }
            }
        }
        let Some(first) = first else { continue };
        let batch = gather(rx, first, mode);
        match &db {
            Some(open) => {
                if !commit_batch(open, shared, batch) {
                    // redb refuses every later transaction after an I/O error ("previous I/O error"):
                    // close the file now; the next publish (or the retry timer) reopens it.
                    db = None;
                    retry = RETRY_MIN;
                    next_attempt = Instant::now() + retry;
                }
            }
            None => {
                let why = shared.broken().unwrap_or_else(|| {
                    format!(
                        "the replay store {} is being reopened",
                        shared.path.display()
                    )
                });
                for req in batch {
                    let _ = req.reply.send(Err(Error::Store(why.clone())));
                }
            }
        }
    }
    tracing::debug!(path = %shared.path.display(), "replay writer stopped");
}

/// `first` plus the publishes that share its commit (see [`CommitMode`]).
fn gather(rx: &mpsc::Receiver<Request>, first: Request, mode: CommitMode) -> Vec<Request> {
    let mut batch = vec![first];
    if let CommitMode::Group { max_delay } = mode {
        let deadline = Instant::now() + max_delay;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => {
                    batch.push(r);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(r) => batch.push(r),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
    }
    batch
}

/// Opens the file again with the start-up steps (open, integrity check, load) and makes memory match
/// it; on success the store is healthy again.
fn reopen(shared: &Shared) -> Result<Database, Error> {
    let dir = shared.path.parent().unwrap_or_else(|| Path::new("."));
    let opening = Opening {
        dir,
        path: &shared.path,
    };
    if !shared.path.exists() {
        return Err(opening.fail(
            "it disappeared while sse-server was running; restart sse-server (a new file means \
             a new id epoch)"
                .into(),
        ));
    }
    let mut db = opening.database()?;
    opening.verify(&mut db)?;
    let loaded = opening.load(&db, &shared.retention, now_ms(), fresh_epoch())?;
    if loaded.windows.epoch() != shared.epoch {
        return Err(opening.fail(format!(
            "it was replaced while sse-server was running (epoch {} instead of {}); restart sse-server",
            loaded.windows.epoch(),
            shared.epoch
        )));
    }
    let mut state = shared.lock();
    // Ids minted or assigned to publishes that failed stay used: ids only increase.
    shared.counter.fetch_max(loaded.counter, Ordering::AcqRel);
    *state = State {
        windows: loaded.windows,
        // The load's own changes were committed by `opening.load`.
        pending: Vec::new(),
    };
    shared.stale.store(false, Ordering::Release);
    shared.set_broken(None);
    drop(state);
    tracing::info!(path = %shared.path.display(), "reopened the replay store; publishes are acknowledged again");
    Ok(db)
}

/// Applies a batch to the in-memory state and commits the same changes, holding the state lock
/// throughout so that a replay never sees an event before it is durable. False when the commit failed
/// (every publish of the batch was answered with the error and the store is marked broken).
fn commit_batch(db: &Database, shared: &Shared, batch: Vec<Request>) -> bool {
    let mut state = shared.lock();
    let now = now_ms();
    let mut ops = std::mem::take(&mut state.pending);
    let mut results = Vec::with_capacity(batch.len());
    for req in batch {
        let stored = append_one(shared, &mut state, req.channels, req.event, now, &mut ops);
        results.push((req.reply, stored));
    }
    let counter = shared.counter.load(Ordering::Acquire);
    match format::commit(db, &ops, counter) {
        Ok(()) => {
            drop(state);
            for (reply, stored) in results {
                let _ = reply.send(stored);
            }
            true
        }
        Err(e) => {
            let why = format!(
                "cannot write the replay store {}: {e}; the event was not published. Publishes fail \
                 until it can be written again (check free space); sse-server reopens it by itself",
                shared.path.display()
            );
            tracing::error!(error = %e, path = %shared.path.display(), "replay store commit failed");
            shared.set_broken(Some(why.clone()));
            // The file still holds the previous commit: make memory match it again, or, when it
            // cannot be read now, refuse replays until it is reopened.
            let reread = catch_unwind(AssertUnwindSafe(|| {
                format::load(db, &shared.retention, now, shared.epoch)
            }));
            match reread {
                Ok(Ok(loaded)) => {
                    *state = State {
                        windows: loaded.windows,
                        pending: loaded.ops,
                    };
                }
                Ok(Err(Damage(what))) => {
                    tracing::warn!(path = %shared.path.display(), "cannot read the replay store back ({what}); replays fail until it is reopened");
                    shared.stale.store(true, Ordering::Release);
                }
                Err(_) => {
                    tracing::warn!(path = %shared.path.display(), "cannot read the replay store back; replays fail until it is reopened");
                    shared.stale.store(true, Ordering::Release);
                }
            }
            drop(state);
            for (reply, _) in results {
                let _ = reply.send(Err(Error::Store(why.clone())));
            }
            false
        }
    }
}

fn append_one(
    shared: &Shared,
    state: &mut State,
    channels: Vec<String>,
    event: Event,
    now: u64,
    ops: &mut Vec<Op>,
) -> Result<StoredEvent, Error> {
    let retention = &shared.retention;
    if shared.counter.load(Ordering::Acquire) % PRUNE_EVERY == PRUNE_EVERY - 1 {
        state.windows.prune(retention, now, ops);
    }
    let minor = shared.counter.fetch_add(1, Ordering::AcqRel) + 1;
    let stamped = stored::stamp(Position::new(shared.epoch, minor), event)?;
    let entry = Entry {
        event: stamped.event.clone(),
        at: now,
        custom: stamped.custom,
    };
    let record = format::encode_record(&entry);
    for channel in channels {
        ops.push(Op::Put {
            channel: channel.clone(),
            minor,
            record: record.clone(),
        });
        state
            .windows
            .append(&channel, entry.clone(), retention, now, ops);
    }
    Ok(stamped.event)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
}

/// The epoch of a new file: creation time in milliseconds (ids then also sort after those of any
/// earlier memory-backed run).
fn fresh_epoch() -> u64 {
    now_ms().max(1)
}
