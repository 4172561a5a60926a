//! The per-node read loop: one `XREAD BLOCK` over the streams of the channels with local subscribers.
//!
//! Each watched channel has a cursor, a concrete entry id (never `$`, which would lose what arrives
//! between two reads). A new watch starts at the stream's newest entry and interrupts the blocked read
//! (`CLIENT UNBLOCK`) so the next one includes it. After a failure the loop reconnects with backoff and
//! carries on from its cursors, so nothing still in the stream is missed.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Value};
use rand::Rng;
use tokio::sync::{Notify, watch};

use super::entry::{self, deleted_through};
use super::shared::Shared;
use crate::error::Error;
use crate::position::Position;
use crate::replay::store::{BoxFuture, Live, LiveFeed, LiveSink};

/// How long one `XREAD` blocks: bounds how late the loop notices a closed store or a missed nudge.
const BLOCK: Duration = Duration::from_millis(1000);
/// Entries per stream per read.
const BATCH: usize = 1000;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub(crate) struct Feed {
    shared: Arc<Shared>,
    state: Arc<State>,
}

impl fmt::Debug for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFeed")
            .field("watched", &self.state.lock().map.len())
            .finish_non_exhaustive()
    }
}

struct State {
    watched: Mutex<Watched>,
    /// Serialises cursor resolution, so a second watch of a channel waits for the first.
    resolve: tokio::sync::Mutex<()>,
    sink: Mutex<Option<LiveSink>>,
    started: AtomicBool,
    closed: AtomicBool,
    wake: Notify,
    /// Bumped on every change of the watched set.
    wanted: AtomicU64,
    /// The generation of the watched set the loop's current read covers.
    covered: watch::Sender<u64>,
    /// `CLIENT ID` of the loop's connection, for `CLIENT UNBLOCK`.
    reader: Mutex<Option<i64>>,
}

#[derive(Default)]
struct Watched {
    map: HashMap<String, Cursor>,
    next_token: u64,
    /// Watched `prefix/` patterns (how many watches each).
    prefixes: HashMap<String, usize>,
    /// Last announcement of a created stream read (while some prefix is watched).
    created: Position,
}

impl Watched {
    fn under_prefix(&self, channel: &str) -> bool {
        self.prefixes
            .keys()
            .any(|p| channel.len() > p.len() && channel.starts_with(p.as_str()))
    }
}

#[derive(Clone, Copy)]
struct Cursor {
    /// Last entry delivered (or present when the watch began).
    at: Position,
    /// Tells a re-watched channel from the one a read in flight was issued for.
    token: u64,
    /// Watched by name (`watch`), not only as a pattern's channel.
    named: bool,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Feed {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Feed {
            shared,
            state: Arc::new(State {
                watched: Mutex::new(Watched::default()),
                resolve: tokio::sync::Mutex::new(()),
                sink: Mutex::new(None),
                started: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                wake: Notify::new(),
                wanted: AtomicU64::new(0),
                covered: watch::Sender::new(0),
                reader: Mutex::new(None),
            }),
        }
    }

    fn start(&self) {
        if !self.state.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(self.shared.clone(), self.state.clone()));
        }
    }

    async fn watch_now(&self, channel: &str) -> Result<(), Error> {
        self.start();
        let generation = {
            let _one_at_a_time = self.state.resolve.lock().await;
            if let Some(c) = self.state.lock().map.get_mut(channel) {
                c.named = true;
                return Ok(());
            }
            let last = self.shared.last_entry(&self.shared.key(channel)).await?;
            let at = last.map_or_else(Position::default, |e| e.position);
            let mut w = self.state.lock();
            w.next_token += 1;
            let token = w.next_token;
            w.map.insert(
                channel.to_owned(),
                Cursor {
                    at,
                    token,
                    named: true,
                },
            );
            self.state.wanted.fetch_add(1, Ordering::AcqRel) + 1
        };
        self.state.wake.notify_one();
        self.nudge(generation).await;
        Ok(())
    }

    /// Follows every channel under `prefix` (with its `/`): the existing streams from their newest
    /// entry, and streams created later from their first (announced by the append script).
    async fn watch_prefix_now(&self, prefix: &str) -> Result<(), Error> {
        self.start();
        let generation = {
            let _one_at_a_time = self.state.resolve.lock().await;
            if let Some(n) = self.state.lock().prefixes.get_mut(prefix) {
                *n += 1;
                return Ok(());
            }
            // The announcements after the sequencer's position now, then the streams already there:
            // a stream is found one way or the other (or both; a watch is kept once).
            let from = self.shared.sequenced().await?;
            let existing = self.shared.streams_under(prefix).await?;
            let mut resolved = Vec::with_capacity(existing.len());
            for channel in existing {
                let last = self.shared.last_entry(&self.shared.key(&channel)).await?;
                resolved.push((channel, last.map_or_else(Position::default, |e| e.position)));
            }
            let mut w = self.state.lock();
            if w.prefixes.is_empty() {
                w.created = from;
            }
            w.created = w.created.min(from);
            w.prefixes.insert(prefix.to_owned(), 1);
            for (channel, at) in resolved {
                w.next_token += 1;
                let token = w.next_token;
                w.map.entry(channel).or_insert(Cursor {
                    at,
                    token,
                    named: false,
                });
            }
            self.state.wanted.fetch_add(1, Ordering::AcqRel) + 1
        };
        self.state.wake.notify_one();
        self.nudge(generation).await;
        Ok(())
    }

    /// Gets the loop to issue a read that covers `generation` (bounded: the cursor is what makes
    /// delivery complete; this only makes it prompt).
    async fn nudge(&self, generation: u64) {
        let mut covered = self.state.covered.subscribe();
        for _ in 0..50 {
            if *covered.borrow_and_update() >= generation {
                return;
            }
            let reader = *self.state.reader.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(id) = reader {
                let _: Result<i64, Error> = self
                    .shared
                    .run("CLIENT UNBLOCK", |mut c| async move {
                        ::redis::cmd("CLIENT")
                            .arg("UNBLOCK")
                            .arg(id)
                            .query_async(&mut c)
                            .await
                    })
                    .await;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), covered.changed()).await;
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::Release);
        self.state.wake.notify_one();
    }
}

impl LiveFeed for Feed {
    fn attach(&self, sink: LiveSink) {
        *self.state.sink.lock().unwrap_or_else(|p| p.into_inner()) = Some(sink);
    }

    fn watch<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.watch_now(channel))
    }

    fn unwatch(&self, channel: &str) {
        let mut w = self.state.lock();
        let keep = w.under_prefix(channel);
        let changed = match w.map.get_mut(channel) {
            Some(c) if keep => std::mem::replace(&mut c.named, false),
            Some(_) => w.map.remove(channel).is_some(),
            None => false,
        };
        if changed {
            self.state.wanted.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn watch_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.watch_prefix_now(prefix))
    }

    fn unwatch_prefix(&self, prefix: &str) {
        let mut w = self.state.lock();
        match w.prefixes.get_mut(prefix) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                w.prefixes.remove(prefix);
                let gone: Vec<String> = w
                    .map
                    .iter()
                    .filter(|(k, c)| !c.named && !w.under_prefix(k))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in gone {
                    w.map.remove(&k);
                }
                self.state.wanted.fetch_add(1, Ordering::AcqRel);
            }
            None => {}
        }
    }
}

async fn run(shared: Arc<Shared>, state: Arc<State>) {
    let mut backoff = MIN_BACKOFF;
    let mut down = false;
    while !state.closed.load(Ordering::Acquire) {
        let conn = match connect(&shared, &state).await {
            Ok(conn) => conn,
            Err(e) => {
                if !down {
                    tracing::warn!(redis = %shared.url, error = %e, "live feed lost Redis; reconnecting with backoff");
                    down = true;
                }
                let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
                tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if std::mem::take(&mut down) {
            tracing::info!(redis = %shared.url, "live feed reconnected to Redis; resuming from its cursors");
        }
        backoff = MIN_BACKOFF;
        if let Err(e) = read(&shared, &state, conn).await {
            tracing::warn!(redis = %shared.url, error = %e, "live feed lost Redis; reconnecting with backoff");
            down = true;
        }
        *state.reader.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

async fn connect(shared: &Shared, state: &State) -> ::redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.timeout))
        .set_response_timeout(Some(BLOCK + shared.timeout));
    let client = shared
        .client()
        .await
        .map_err(|e| ::redis::RedisError::from(std::io::Error::other(e.to_string())))?;
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let id: i64 = ::redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await?;
    *state.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
    Ok(conn)
}

/// Reads until the store closes (`Ok`) or Redis fails (`Err`).
async fn read(
    shared: &Shared,
    state: &State,
    mut conn: MultiplexedConnection,
) -> Result<(), String> {
    loop {
        if state.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let generation = state.wanted.load(Ordering::Acquire);
        let (snapshot, created): (Vec<(String, Cursor)>, Option<Position>) = {
            let w = state.lock();
            let snapshot = w.map.iter().map(|(k, c)| (k.clone(), *c)).collect();
            (snapshot, (!w.prefixes.is_empty()).then_some(w.created))
        };
        state.covered.send_replace(generation);
        if snapshot.is_empty() && created.is_none() {
            let _ = tokio::time::timeout(BLOCK, state.wake.notified()).await;
            continue;
        }
        let mut cmd = ::redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS");
        for (channel, _) in &snapshot {
            cmd.arg(shared.key(channel));
        }
        if created.is_some() {
            cmd.arg(shared.created());
        }
        for (_, cursor) in &snapshot {
            cmd.arg(cursor.at.to_string());
        }
        if let Some(at) = created {
            cmd.arg(at.to_string());
        }
        let reply: Value =
            match tokio::time::timeout(BLOCK + shared.timeout, cmd.query_async(&mut conn)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("XREAD timed out".into()),
            };
        let deliveries = merge(shared, state, &snapshot, created, &reply);
        if deliveries.is_empty() {
            continue;
        }
        let gaps = trimmed_past_cursors(shared, &mut conn, &snapshot, &deliveries).await?;
        let sink = state.sink.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(sink) = sink {
            for channel in &gaps {
                sink(channel, Live::Gap);
            }
            for (channel, e) in deliveries {
                sink(&channel, Live::Event(e.into_stored()));
            }
        }
    }
}

/// What one read delivers, in position order across streams (so every composite receives events in
/// the hub-wide order): never past the last entry of a stream whose read hit `COUNT` (the next read
/// may bring lower positions of it), nor up to a newly created stream under a watched prefix, which
/// is watched from there on (its first events come with the next read, before anything later).
/// Advances the cursors to what is delivered.
fn merge(
    shared: &Shared,
    state: &State,
    snapshot: &[(String, Cursor)],
    created: Option<Position>,
    reply: &Value,
) -> Vec<(String, entry::Entry)> {
    let per_key = entry::read(reply);
    let announced = match created {
        Some(_) => entry::announced(reply, &shared.created()),
        None => Vec::new(),
    };
    let mut stop: Option<Position> = None;
    for (_, entries) in &per_key {
        if entries.len() >= BATCH
            && let Some(last) = entries.last()
        {
            stop = Some(stop.map_or(last.position, |s| s.min(last.position)));
        }
    }
    if announced.len() >= BATCH
        && let Some((last, _)) = announced.last()
    {
        stop = Some(stop.map_or(*last, |s| s.min(*last)));
    }
    let tokens: HashMap<&str, u64> = snapshot
        .iter()
        .map(|(k, c)| (k.as_str(), c.token))
        .collect();
    let mut w = state.lock();
    if created.is_some_and(|c| w.created < c) {
        // A prefix watched since this read was issued moved the announcements back (to re-read those
        // it missed while they were no one's): taking this read would skip them for good, and the
        // streams they announce. Read again from there; no cursor moved.
        return Vec::new();
    }
    for (at, names) in &announced {
        if stop.is_some_and(|s| *at > s) {
            break;
        }
        let new: Vec<&String> = names
            .iter()
            .filter(|n| w.under_prefix(n) && !w.map.contains_key(n.as_str()))
            .collect();
        if !new.is_empty() {
            for n in new {
                w.next_token += 1;
                let token = w.next_token;
                let cursor = Cursor {
                    at: entry::before(*at),
                    token,
                    named: false,
                };
                w.map.insert(n.clone(), cursor);
            }
            state.wanted.fetch_add(1, Ordering::AcqRel);
            stop = Some(entry::before(*at));
            w.created = w.created.max(*at);
            break;
        }
        w.created = w.created.max(*at);
    }
    let mut deliveries = Vec::new();
    for (key, entries) in per_key {
        let Some(channel) = key.strip_prefix(&shared.prefix) else {
            continue;
        };
        let Some(cursor) = w.map.get_mut(channel) else {
            continue;
        };
        if tokens.get(channel) != Some(&cursor.token) {
            continue;
        }
        for e in entries {
            if stop.is_some_and(|s| e.position > s) {
                break;
            }
            if e.position > cursor.at {
                cursor.at = e.position;
                deliveries.push((channel.to_owned(), e));
            }
        }
    }
    deliveries.sort_by_key(|(_, e)| e.position);
    deliveries
}

/// The channels among `deliveries` whose stream was trimmed past the cursor this read started from:
/// entries after it were deleted before this node read them. XREAD alone cannot tell (it just returns
/// the oldest entries still there), so ask `XINFO STREAM` ([`deleted_through`]).
async fn trimmed_past_cursors(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    snapshot: &[(String, Cursor)],
    deliveries: &[(String, entry::Entry)],
) -> Result<Vec<String>, String> {
    let mut channels: Vec<&str> = deliveries.iter().map(|(c, _)| c.as_str()).collect();
    channels.dedup();
    let mut pipe = ::redis::pipe();
    for channel in &channels {
        pipe.cmd("XINFO").arg("STREAM").arg(shared.key(channel));
    }
    let infos: Vec<Value> = match tokio::time::timeout(shared.timeout, pipe.query_async(conn)).await
    {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("XINFO timed out".into()),
    };
    let mut gaps = Vec::new();
    for (channel, info) in channels.iter().zip(&infos) {
        let deleted = deleted_through(info);
        let read_from = snapshot
            .iter()
            .find(|(c, _)| c == channel)
            .map(|(_, cursor)| cursor.at);
        if read_from.is_some_and(|at| deleted > at) {
            gaps.push((*channel).to_owned());
        }
    }
    Ok(gaps)
}
