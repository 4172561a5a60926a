//! The per-node read loops: one per bucket (one on a single server, one per cluster bucket), each an
//! `XREAD BLOCK` over the streams of its bucket's channels with local subscribers, on its own
//! connection (in a cluster, to the node that owns the bucket's slot: a `MOVED` names it, and the loop
//! reconnects there, so slot migrations and failovers are followed).
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
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{AsyncConnectionConfig, ErrorKind, RedisError, ServerErrorKind, Value};
use rand::Rng;
use tokio::sync::{Notify, watch};

use super::connect::Conn;
use super::entry::{self, deleted_through};
use super::shared::Shared;
use crate::error::Error;
use crate::position::Position;
use crate::replay::store::{BoxFuture, Live, LiveFeed, LiveSink};

/// How long one `XREAD` blocks: bounds how late the loop notices a closed store or a missed nudge.
const BLOCK: Duration = Duration::from_millis(1000);
/// Entries per stream per read.
const BATCH: usize = 1000;
/// Events handed to the hub between two yields: a backlog (the feed reconnecting after a failover
/// while publishes were acknowledged) is fanned out in slices the flushers can write in between,
/// not in one synchronous burst past a subscriber queue (`--queue-size`, 256 by default), which
/// the hub would take for slow subscribers and disconnect.
const SLICE: usize = 64;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Kept short: while the feed backs off, publishes may already succeed on a promoted primary, and
/// everything they add is delivered at once when it comes back.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

pub(crate) struct Feed {
    shared: Arc<Shared>,
    /// One per bucket, each with its own read loop.
    states: Vec<Arc<State>>,
}

impl fmt::Debug for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let watched: usize = self.states.iter().map(|s| s.lock().map.len()).sum();
        f.debug_struct("RedisFeed")
            .field("watched", &watched)
            .finish_non_exhaustive()
    }
}

/// One bucket's watched channels and read loop.
struct State {
    bucket: usize,
    /// The node (`host:port`) that owns the bucket's slot, as the last `MOVED` said (cluster only).
    node: Mutex<Option<String>>,
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
    /// `CLIENT ID` of the loop's connection, and its node in a cluster, for `CLIENT UNBLOCK`.
    reader: Mutex<Option<(i64, Option<String>)>>,
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
    fn new(bucket: usize) -> State {
        State {
            bucket,
            node: Mutex::new(None),
            watched: Mutex::new(Watched::default()),
            resolve: tokio::sync::Mutex::new(()),
            sink: Mutex::new(None),
            started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
            wanted: AtomicU64::new(0),
            covered: watch::Sender::new(0),
            reader: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Feed {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let states = (0..shared.buckets())
            .map(|bucket| Arc::new(State::new(bucket)))
            .collect();
        Feed { shared, states }
    }

    /// The state of `channel`'s bucket.
    fn state(&self, channel: &str) -> &Arc<State> {
        &self.states[self.shared.bucket(channel) % self.states.len()]
    }

    fn start(&self, state: &Arc<State>) {
        if !state.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(self.shared.clone(), state.clone()));
        }
    }

    async fn watch_now(&self, channel: &str) -> Result<(), Error> {
        let state = self.state(channel);
        self.start(state);
        let generation = {
            let _one_at_a_time = state.resolve.lock().await;
            if let Some(c) = state.lock().map.get_mut(channel) {
                c.named = true;
                return Ok(());
            }
            let last = self.shared.last_entry(&self.shared.key(channel)).await?;
            let at = last.map_or_else(Position::default, |e| e.position);
            let mut w = state.lock();
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
            state.wanted.fetch_add(1, Ordering::AcqRel) + 1
        };
        state.wake.notify_one();
        self.nudge(state, generation).await;
        Ok(())
    }

    /// Follows every channel under `prefix` (with its `/`), in every bucket: the existing streams
    /// from their newest entry, and streams created later from their first (announced by the append
    /// script in their bucket's created stream).
    async fn watch_prefix_now(&self, prefix: &str) -> Result<(), Error> {
        for state in &self.states {
            self.start(state);
        }
        // The announcements after each sequencer's position now, then the streams already there: a
        // stream is found one way or the other (or both; a watch is kept once).
        let mut from = Vec::with_capacity(self.states.len());
        for state in &self.states {
            from.push(self.shared.sequenced(state.bucket).await?);
        }
        let mut existing: Vec<Vec<(String, Position)>> = vec![Vec::new(); self.states.len()];
        for channel in self.shared.streams_under(prefix).await? {
            let last = self.shared.last_entry(&self.shared.key(&channel)).await?;
            let at = last.map_or_else(Position::default, |e| e.position);
            existing[self.shared.bucket(&channel) % self.states.len()].push((channel, at));
        }
        for ((state, from), existing) in self.states.iter().zip(from).zip(existing) {
            self.watch_prefix_in(state, prefix, from, existing).await;
        }
        Ok(())
    }

    /// Installs a resolved prefix watch in one bucket.
    async fn watch_prefix_in(
        &self,
        state: &State,
        prefix: &str,
        from: Position,
        existing: Vec<(String, Position)>,
    ) {
        let generation = {
            let _one_at_a_time = state.resolve.lock().await;
            let mut w = state.lock();
            if let Some(n) = w.prefixes.get_mut(prefix) {
                *n += 1;
                return;
            }
            if w.prefixes.is_empty() {
                w.created = from;
            }
            w.created = w.created.min(from);
            w.prefixes.insert(prefix.to_owned(), 1);
            for (channel, at) in existing {
                w.next_token += 1;
                let token = w.next_token;
                w.map.entry(channel).or_insert(Cursor {
                    at,
                    token,
                    named: false,
                });
            }
            state.wanted.fetch_add(1, Ordering::AcqRel) + 1
        };
        state.wake.notify_one();
        self.nudge(state, generation).await;
    }

    /// Gets `state`'s loop to issue a read that covers `generation` (bounded: the cursor is what
    /// makes delivery complete; this only makes it prompt).
    async fn nudge(&self, state: &State, generation: u64) {
        let mut covered = state.covered.subscribe();
        for _ in 0..50 {
            if *covered.borrow_and_update() >= generation {
                return;
            }
            let reader = state
                .reader
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some((id, node)) = reader {
                let _: Result<Value, Error> = self
                    .shared
                    .run("CLIENT UNBLOCK", |c| unblock(c, id, node))
                    .await;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), covered.changed()).await;
        }
    }
}

/// `CLIENT UNBLOCK id`, sent to the reader's node (`node`, in a cluster).
async fn unblock(mut c: Conn, id: i64, node: Option<String>) -> ::redis::RedisResult<Value> {
    let mut cmd = ::redis::cmd("CLIENT");
    cmd.arg("UNBLOCK").arg(id);
    let at = node.as_deref().and_then(|n| n.rsplit_once(':'));
    match (&mut c, at) {
        (Conn::Cluster(cc), Some((host, port))) => {
            let Ok(port) = port.parse() else {
                return Ok(Value::Nil);
            };
            let to = SingleNodeRoutingInfo::ByAddress {
                host: host.to_owned(),
                port,
            };
            cc.route_command(cmd, RoutingInfo::SingleNode(to)).await
        }
        (Conn::Cluster(_), None) => Ok(Value::Nil),
        _ => cmd.query_async(&mut c).await,
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        for state in &self.states {
            state.closed.store(true, Ordering::Release);
            state.wake.notify_one();
        }
    }
}

impl LiveFeed for Feed {
    fn attach(&self, sink: LiveSink) {
        for state in &self.states {
            *state.sink.lock().unwrap_or_else(|p| p.into_inner()) = Some(sink.clone());
        }
    }

    fn watch<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.watch_now(channel))
    }

    fn unwatch(&self, channel: &str) {
        let state = self.state(channel);
        let mut w = state.lock();
        let keep = w.under_prefix(channel);
        let changed = match w.map.get_mut(channel) {
            Some(c) if keep => std::mem::replace(&mut c.named, false),
            Some(_) => w.map.remove(channel).is_some(),
            None => false,
        };
        if changed {
            state.wanted.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn watch_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.watch_prefix_now(prefix))
    }

    fn unwatch_prefix(&self, prefix: &str) {
        for state in &self.states {
            unwatch_prefix_in(state, prefix);
        }
    }
}

fn unwatch_prefix_in(state: &State, prefix: &str) {
    let mut w = state.lock();
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
            state.wanted.fetch_add(1, Ordering::AcqRel);
        }
        None => {}
    }
}

/// Why a read loop stopped reading.
enum Lost {
    /// The bucket's slot is served by this other node (`host:port`): reconnect there.
    Moved(String),
    /// The slot is being migrated and the keys are on this importing node (`host:port`): read there,
    /// each command after `ASKING`.
    Ask(String),
    /// The slot is being migrated and its keys are split between two nodes (`TRYAGAIN`): read
    /// again shortly.
    Migrating,
    /// Redis failed; reconnect with backoff.
    Down(String),
}

impl From<RedisError> for Lost {
    fn from(e: RedisError) -> Lost {
        match e.kind() {
            ErrorKind::Server(ServerErrorKind::Moved) => match e.redirect_node() {
                Some((node, _)) => Lost::Moved(node.to_owned()),
                None => Lost::Down(e.to_string()),
            },
            ErrorKind::Server(ServerErrorKind::Ask) => match e.redirect_node() {
                Some((node, _)) => Lost::Ask(node.to_owned()),
                None => Lost::Migrating,
            },
            ErrorKind::Server(ServerErrorKind::TryAgain) => Lost::Migrating,
            _ => Lost::Down(e.to_string()),
        }
    }
}

async fn run(shared: Arc<Shared>, state: Arc<State>) {
    let mut backoff = MIN_BACKOFF;
    let mut down = false;
    let mut attempt = 0usize;
    while !state.closed.load(Ordering::Acquire) {
        let conn = match connect(&shared, &state, attempt).await {
            Ok(conn) => conn,
            Err(e) => {
                if !down {
                    tracing::warn!(redis = %shared.url, bucket = state.bucket, error = %e, "live feed lost Redis; reconnecting with backoff");
                    down = true;
                }
                // The node may be gone (failover): start over from the seeds.
                *state.node.lock().unwrap_or_else(|p| p.into_inner()) = None;
                attempt += 1;
                let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
                tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if std::mem::take(&mut down) {
            tracing::info!(redis = %shared.url, bucket = state.bucket, "live feed reconnected to Redis; resuming from its cursors");
        }
        backoff = MIN_BACKOFF;
        match read(&shared, &state, conn).await {
            Ok(()) => {}
            Err(Lost::Moved(node)) => {
                tracing::debug!(bucket = state.bucket, %node, "live feed follows its slot to another node");
                *state.node.lock().unwrap_or_else(|p| p.into_inner()) = Some(node);
                // Bounded: a slot map in flux (failover) must not make this spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(Lost::Ask(_) | Lost::Migrating) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(Lost::Down(e)) => {
                tracing::warn!(redis = %shared.url, bucket = state.bucket, error = %e, "live feed lost Redis; reconnecting with backoff");
                *state.node.lock().unwrap_or_else(|p| p.into_inner()) = None;
                attempt += 1;
                down = true;
            }
        }
        *state.reader.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

async fn connect(
    shared: &Shared,
    state: &State,
    attempt: usize,
) -> ::redis::RedisResult<MultiplexedConnection> {
    let config = reader_config(shared);
    let node = state.node.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (mut conn, node) = shared
        .target
        .reader(node.as_deref(), attempt, &config, shared.timeout)
        .await?;
    let id: i64 = ::redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await?;
    *state.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some((id, node));
    Ok(conn)
}

/// Reads until the store closes (`Ok`) or the connection cannot serve the bucket (`Err`).
///
/// While the bucket's slot is being migrated and its keys already sit on the importing node, the
/// owner answers `ASK`: the loop then reads there once (no `BLOCK`, after `ASKING`), and goes back
/// to the owner, until the owner answers `MOVED` (the move is done) or serves the read again.
async fn read(shared: &Shared, state: &State, mut conn: MultiplexedConnection) -> Result<(), Lost> {
    let mut importing: Option<(String, MultiplexedConnection)> = None;
    let mut ask: Option<String> = None;
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
        let cmd = xread(shared, state, &snapshot, created, ask.is_none());
        let asking = ask.is_some();
        let target: &mut MultiplexedConnection = match ask.take() {
            None => &mut conn,
            Some(node) => {
                if importing.as_ref().is_none_or(|(n, _)| *n != node) {
                    let config = reader_config(shared);
                    let c = shared
                        .target
                        .reader(Some(&node), 0, &config, shared.timeout)
                        .await?
                        .0;
                    importing = Some((node, c));
                }
                match importing.as_mut() {
                    Some((_, c)) => c,
                    None => continue,
                }
            }
        };
        let reply = match query(shared, target, cmd, asking).await {
            Ok(v) => v,
            Err(Lost::Ask(node)) if !asking => {
                ask = Some(node);
                continue;
            }
            Err(Lost::Ask(_) | Lost::Migrating) => {
                // The keys are split between the two nodes for a moment: the migration goes on.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(lost) => return Err(lost),
        };
        if asking {
            // Not blocking there: give the importing node's new events a moment to arrive.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let deliveries = merge(shared, state, &snapshot, created, &reply);
        if deliveries.is_empty() {
            continue;
        }
        let on = match (asking, importing.as_mut()) {
            (true, Some((_, c))) => c,
            _ => &mut conn,
        };
        let gaps = match trimmed_past_cursors(shared, on, &snapshot, &deliveries, asking).await {
            Ok(gaps) => gaps,
            Err(lost) => {
                // Nothing was handed on: read it again from where this read started. Without this,
                // a primary killed between the XREAD answer and this XINFO (a failover) would leave
                // the cursors past events no subscriber got, and the loop would resume after them
                // on the promoted replica: acknowledged events missing from open streams.
                rewind(state, &snapshot);
                return Err(lost);
            }
        };
        let sink = state.sink.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(sink) = sink {
            for channel in &gaps {
                sink(channel, Live::Gap);
            }
            for (i, (channel, e)) in deliveries.into_iter().enumerate() {
                if i > 0 && i % SLICE == 0 {
                    tokio::task::yield_now().await;
                }
                sink(&channel, Live::Event(e.into_stored()));
            }
        }
    }
}

/// `XREAD` of the bucket's watched streams (and its created stream while a prefix is watched) from
/// their cursors, blocking when `block`.
fn xread(
    shared: &Shared,
    state: &State,
    snapshot: &[(String, Cursor)],
    created: Option<Position>,
    block: bool,
) -> ::redis::Cmd {
    let mut cmd = ::redis::cmd("XREAD");
    cmd.arg("COUNT").arg(BATCH);
    if block {
        cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
    }
    cmd.arg("STREAMS");
    for (channel, _) in snapshot {
        cmd.arg(shared.key(channel));
    }
    if created.is_some() {
        cmd.arg(shared.created(state.bucket));
    }
    for (_, cursor) in snapshot {
        cmd.arg(cursor.at.to_string());
    }
    if let Some(at) = created {
        cmd.arg(at.to_string());
    }
    cmd
}

/// Runs `cmd` within the timeout (plus the block), after `ASKING` when `asking`.
async fn query(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    cmd: ::redis::Cmd,
    asking: bool,
) -> Result<Value, Lost> {
    let answer = if asking {
        let mut pipe = ::redis::pipe();
        pipe.cmd("ASKING").ignore().add_command(cmd);
        let run = pipe.query_async::<(Value,)>(conn);
        match tokio::time::timeout(shared.timeout, run).await {
            Ok(r) => r.map(|(v,)| v),
            Err(_) => return Err(Lost::Down("XREAD timed out".into())),
        }
    } else {
        match tokio::time::timeout(BLOCK + shared.timeout, cmd.query_async(conn)).await {
            Ok(r) => r,
            Err(_) => return Err(Lost::Down("XREAD timed out".into())),
        }
    };
    answer.map_err(Lost::from)
}

fn reader_config(shared: &Shared) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.timeout))
        .set_response_timeout(Some(BLOCK + shared.timeout))
}

/// Puts the cursors of a read that delivered nothing back where the read started.
fn rewind(state: &State, snapshot: &[(String, Cursor)]) {
    let mut w = state.lock();
    for (channel, before) in snapshot {
        if let Some(c) = w.map.get_mut(channel)
            && c.token == before.token
        {
            c.at = before.at;
        }
    }
}

/// What one read delivers, in position order across the bucket's streams (so every composite receives
/// each sequencer's events in its order): never past the last entry of a stream whose read hit `COUNT`
/// (the next read may bring lower positions of it), nor up to a newly created stream under a watched
/// prefix, which is watched from there on (its first events come with the next read, before anything
/// later). Advances the cursors to what is delivered.
fn merge(
    shared: &Shared,
    state: &State,
    snapshot: &[(String, Cursor)],
    created: Option<Position>,
    reply: &Value,
) -> Vec<(String, entry::Entry)> {
    let per_key = entry::read(reply);
    let announced = match created {
        Some(_) => entry::announced(reply, &shared.created(state.bucket)),
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
        let Some(channel) = shared.channel_of(state.bucket, &key) else {
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
    asking: bool,
) -> Result<Vec<String>, Lost> {
    let mut channels: Vec<&str> = deliveries.iter().map(|(c, _)| c.as_str()).collect();
    channels.dedup();
    let mut pipe = ::redis::pipe();
    for channel in &channels {
        if asking {
            pipe.cmd("ASKING").ignore();
        }
        pipe.cmd("XINFO").arg("STREAM").arg(shared.key(channel));
    }
    let infos: Vec<Value> = match tokio::time::timeout(shared.timeout, pipe.query_async(conn)).await
    {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(Lost::from(e)),
        Err(_) => return Err(Lost::Down("XINFO timed out".into())),
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
