//! Multi-channel streams over a store with several sequencers (as a Redis Cluster store has one per
//! bucket): [`Sharded`] routes each channel by a hash to one of 16 memory stores, each numbering
//! its own positions (equal positions in several of them are common). One stream on named channels
//! and `prefix/*` patterns is cut at random — also in the middle of a replay — and resumed with the
//! last id it saw, while events are published to followed channels, to channels outside the set, to
//! channels created later under a pattern, and broadcast: every followed event arrives exactly once,
//! in its channel's order, nothing else arrives, no `sse-reset` (nothing was evicted), and every id
//! is at most 256 bytes. A broadcast arrives once per sequencer holding a followed channel it
//! reached.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sse_proto::{Event, Item, Parser};
use sse_server::{
    BoxFuture, Error, Hub, Live, LiveFeed, LiveSink, MemoryStore, Position, Replay, ReplayStore,
    StoredChannel, StoredEvent, SubscribeOptions, Subscription,
};

const SEQUENCERS: usize = 16;

/// One memory store per sequencer; a channel lives in `fnv1a(name) % 16`. Every shard's positions
/// are shown with the first shard's epoch, so that the sequencers issue the same positions
/// (`<epoch>-1`, `<epoch>-2`, …), as Redis buckets issuing `<ms>-<n>` in the same millisecond do.
///
/// It also keeps each sequencer's log of appends, in position order, for the [`Feed`]s of the
/// variant with a live feed.
#[derive(Debug)]
struct Sharded {
    shards: Vec<MemoryStore>,
    epoch: u64,
    logs: Vec<std::sync::Mutex<Vec<(String, StoredEvent)>>>,
    appended: tokio::sync::Notify,
}

fn fnv1a(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn sequencer_of(name: &str) -> usize {
    fnv1a(name) as usize % SEQUENCERS
}

impl Sharded {
    fn new() -> Sharded {
        let shards: Vec<MemoryStore> = (0..SEQUENCERS)
            .map(|_| MemoryStore::new(Default::default()))
            .collect();
        Sharded {
            epoch: shards[0].epoch(),
            logs: (0..SEQUENCERS).map(|_| Default::default()).collect(),
            appended: tokio::sync::Notify::new(),
            shards,
        }
    }

    fn shard(&self, channel: &str) -> &MemoryStore {
        &self.shards[sequencer_of(channel)]
    }

    /// A shard's position as shown (the common epoch).
    fn shown(&self, p: Position) -> Position {
        Position::new(self.epoch, p.minor())
    }

    /// A shard's event as shown: its position, and its id when the store gave it.
    fn show(&self, e: StoredEvent) -> StoredEvent {
        let own = e.position.to_string();
        let position = self.shown(e.position);
        if *e.id != *own {
            return StoredEvent { position, ..e };
        }
        let id = position.to_string();
        let bytes = std::str::from_utf8(&e.bytes).unwrap();
        let rest = bytes.strip_prefix(&format!("id: {own}\n")).unwrap();
        StoredEvent {
            position,
            bytes: format!("id: {id}\n{rest}").into(),
            id: id.into(),
        }
    }

    /// Appends to `channels` (all of sequencer `k`) at one position, logging it for the feeds.
    fn append_in(&self, k: usize, channels: &[String], event: Event) -> Result<StoredEvent, Error> {
        let mut log = self.logs[k].lock().unwrap();
        let stored = match channels {
            [one] => self.shards[k].append(one, event),
            _ => self.shards[k].append_all(channels, event),
        };
        // Memory appends are done when called: the log keeps position order.
        let stored = self.show(
            stored
                .now_or_never()
                .expect("memory appends are immediate")?,
        );
        log.extend(channels.iter().map(|c| (c.clone(), stored.clone())));
        drop(log);
        self.appended.notify_waiters();
        Ok(stored)
    }

    /// An id as shard `k` knows it.
    fn inner_id(&self, k: usize, id: &str) -> String {
        match id.parse::<Position>() {
            Ok(p) if p.major() == self.epoch => {
                Position::new(self.shards[k].epoch(), p.minor()).to_string()
            }
            _ => id.to_owned(),
        }
    }
}

impl ReplayStore for Sharded {
    fn append<'a>(
        &'a self,
        channel: &'a str,
        event: Event,
    ) -> BoxFuture<'a, Result<StoredEvent, Error>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let stored = self.append_in(sequencer_of(channel), &[channel.to_owned()], event)?;
            // The publish now sits between its append and its fan-out.
            tokio::task::yield_now().await;
            Ok(stored)
        })
    }

    fn replay<'a>(
        &'a self,
        channel: &'a str,
        last_event_id: &'a str,
    ) -> BoxFuture<'a, Result<Replay, Error>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let id = self.inner_id(sequencer_of(channel), last_event_id);
            let r = self.shard(channel).replay(channel, &id).await?;
            Ok(Replay {
                events: r.events.into_iter().map(|e| self.show(e)).collect(),
                reset: r.reset.map(|mut reset| {
                    reset.floor = self.shown(reset.floor);
                    reset
                }),
                after: r.after.map(|p| self.shown(p)),
            })
        })
    }

    fn mint_id(&self) -> BoxFuture<'_, Result<String, Error>> {
        self.shards[0].mint_id()
    }

    /// One position per sequencer: each group of channels is one `append_all` of its shard.
    fn append_all<'a>(
        &'a self,
        channels: &'a [String],
        event: Event,
    ) -> BoxFuture<'a, Result<StoredEvent, Error>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let mut groups: BTreeMap<usize, Vec<String>> = BTreeMap::new();
            for c in channels {
                groups.entry(sequencer_of(c)).or_default().push(c.clone());
            }
            let mut first = None;
            for (k, group) in groups {
                let stored = self.append_in(k, &group, event.clone())?;
                first.get_or_insert(stored);
            }
            match first {
                Some(first) => Ok(first),
                None => Ok(self.show(self.shards[0].append_all(&[], event).await?)),
            }
        })
    }

    fn channels(&self) -> BoxFuture<'_, Result<Vec<StoredChannel>, Error>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for s in &self.shards {
                all.extend(s.channels().await?.into_iter().map(|mut c| {
                    c.last_id = c.last_id.map(|id| match id.parse::<Position>() {
                        Ok(p) if p.major() == s.epoch() => self.shown(p).to_string(),
                        _ => id,
                    });
                    c
                }));
            }
            Ok(all)
        })
    }

    fn sequencers(&self) -> usize {
        SEQUENCERS
    }

    fn sequencer(&self, channel: &str) -> usize {
        sequencer_of(channel)
    }

    fn issued_by(&self, sequencer: usize) -> BoxFuture<'_, Result<Option<Position>, Error>> {
        match self.shards.get(sequencer) {
            Some(s) => Box::pin(async move {
                tokio::task::yield_now().await;
                Ok(s.issued().await?.map(|p| self.shown(p)))
            }),
            None => Box::pin(async { Ok(None) }),
        }
    }
}

/// Named channels `n0..n5`, pattern prefixes `p0/..p2/`, unfollowed `u0..u2` and `q/…`.
const NAMES: usize = 6;
const PATTERNS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// Publish on named channel `i`.
    Named(usize),
    /// Publish on channel `j` under pattern prefix `i` (new channels appear as `j` grows).
    Under(usize, usize),
    /// Publish outside the set.
    Outside(usize),
    Broadcast,
    /// Stream 0, 1 or both (2) read at most this many pending events, then drop the stream and
    /// resume by its last id, while these publishes run (the store yields at every call, so they
    /// interleave with the resume's steps).
    Cut(usize, usize, Vec<Op>),
}

fn publish() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..NAMES).prop_map(Op::Named),
        3 => (0..PATTERNS, 0..6usize).prop_map(|(i, j)| Op::Under(i, j)),
        1 => (0..4usize).prop_map(Op::Outside),
        1 => Just(Op::Broadcast),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => publish(),
        1 => (0..3usize, 0..6usize, proptest::collection::vec(publish(), 0..6))
            .prop_map(|(who, read, during)| Op::Cut(who, read, during)),
    ]
}

#[derive(Debug, Clone)]
struct Schedule {
    /// Which named channels and patterns the stream follows (at least one of them).
    names: Vec<usize>,
    patterns: Vec<usize>,
    ops: Vec<Op>,
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        proptest::sample::subsequence((0..NAMES).collect::<Vec<_>>(), 0..=NAMES),
        proptest::sample::subsequence((0..PATTERNS).collect::<Vec<_>>(), 0..=PATTERNS),
        proptest::collection::vec(op(), 1..60),
    )
        .prop_filter("follows something", |(n, p, _)| {
            !n.is_empty() || !p.is_empty()
        })
        .prop_map(|(names, patterns, ops)| Schedule {
            names,
            patterns,
            ops,
        })
}

/// What the stream received, parsed.
#[derive(Default)]
struct Seen {
    parser: Option<Parser>,
    /// `(channel or "*", data)` in arrival order.
    got: Vec<(String, String)>,
    last_id: Option<String>,
}

impl Seen {
    fn take(&mut self, bytes: &[u8]) -> Result<(), TestCaseError> {
        let parser = self.parser.get_or_insert_with(Parser::new);
        parser.feed(bytes);
        for item in parser.by_ref() {
            let Item::Message(m) = item.unwrap() else {
                continue;
            };
            prop_assert!(m.event_type != "sse-reset", "unexpected reset: {}", m.data);
            prop_assert!(
                m.last_event_id.len() <= 256,
                "id of {} bytes",
                m.last_event_id.len()
            );
            prop_assert!(!m.last_event_id.is_empty(), "an event without id");
            self.last_id = Some(m.last_event_id.clone());
            self.got.push((m.event_type, m.data));
        }
        Ok(())
    }

    /// Reads what is pending (at most `max`).
    fn drain(&mut self, sub: &mut Subscription, max: usize) -> Result<(), TestCaseError> {
        for _ in 0..max {
            match sub.next().now_or_never() {
                Some(Some(bytes)) => self.take(&bytes)?,
                Some(None) => return Err(TestCaseError::fail("the stream ended")),
                None => break,
            }
        }
        Ok(())
    }
}

/// What the stream must receive.
#[derive(Default)]
struct Model {
    /// Channels with history, or in the hub's table (the stream's named channels): what a
    /// broadcast reaches.
    reached: BTreeSet<String>,
    /// Per followed channel, its events' data in order.
    want: BTreeMap<String, Vec<String>>,
    /// Per broadcast, how many copies arrive: one per sequencer of the followed channels reached.
    broadcasts: BTreeMap<String, usize>,
    published: usize,
}

impl Model {
    async fn apply(&mut self, hub: &Hub, follows: &impl Fn(&str) -> bool, op: &Op) {
        self.published += 1;
        let n = self.published;
        let channel = match op {
            Op::Named(i) => format!("n{i}"),
            Op::Under(i, j) => format!("p{i}/{j}"),
            Op::Outside(i) if *i < 3 => format!("u{i}"),
            Op::Outside(i) => format!("q/{i}"),
            Op::Broadcast => {
                let data = format!("bc {n}");
                let sequencers: BTreeSet<usize> = self
                    .reached
                    .iter()
                    .filter(|c| follows(c))
                    .map(|c| sequencer_of(c))
                    .collect();
                self.broadcasts.insert(data.clone(), sequencers.len());
                hub.broadcast(Event::message(&data)).await.unwrap();
                return;
            }
            Op::Cut(..) => unreachable!("cuts are not publishes"),
        };
        let data = format!("{channel} {n}");
        self.reached.insert(channel.clone());
        if follows(&channel) {
            self.want
                .entry(channel.clone())
                .or_default()
                .push(data.clone());
        }
        hub.publish(&channel, Event::message(&data)).await.unwrap();
    }
}

/// One stream and what it received.
struct Reader {
    sub: Option<Subscription>,
    seen: Seen,
}

impl Reader {
    /// Reads at most `read` pending events and drops the stream, when `cut` and it has an id.
    fn cut(&mut self, cut: bool, read: usize) -> Result<(), TestCaseError> {
        if !cut {
            return Ok(());
        }
        if let Some(sub) = &mut self.sub {
            self.seen.drain(sub, read)?;
        }
        if self.seen.last_id.is_some() {
            self.sub = None;
            self.seen.parser = None;
        }
        Ok(())
    }

    /// Resumes by the last id a stream dropped by [`Reader::cut`].
    async fn resume(&mut self, hub: &Hub, entries: &[String]) {
        if self.sub.is_none() {
            let last = self.seen.last_id.clone();
            self.sub = Some(subscribe(hub, entries, last.as_deref()).await);
        }
    }
}

/// Drains stream `i` and compares what it received with the model.
fn check(
    i: usize,
    mut r: Reader,
    model: &Model,
    follows: &impl Fn(&str) -> bool,
) -> Result<(), TestCaseError> {
    let mut sub = r.sub.take().unwrap();
    r.seen.drain(&mut sub, usize::MAX)?;
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut got_broadcasts: BTreeMap<String, usize> = BTreeMap::new();
    for (channel, data) in r.seen.got {
        if data.starts_with("bc ") {
            *got_broadcasts.entry(data).or_default() += 1;
        } else {
            prop_assert!(follows(&channel), "{channel} is not followed: {data}");
            got.entry(channel).or_default().push(data);
        }
    }
    prop_assert_eq!(
        &got,
        &model.want,
        "stream {}: each followed event once, in its channel's order",
        i
    );
    prop_assert_eq!(
        &got_broadcasts,
        &model.broadcasts,
        "stream {}: broadcasts once per sequencer",
        i
    );
    Ok(())
}

async fn subscribe(hub: &Hub, entries: &[String], last: Option<&str>) -> Subscription {
    let tag = SubscribeOptions::default().tag_channel(true);
    hub.subscribe_many_with(entries, last, tag, None)
        .await
        .unwrap()
}

async fn run_case(s: Schedule) -> Result<(), TestCaseError> {
    let store = Arc::new(Sharded::new());
    let hub = Hub::builder()
        .store(store)
        .heartbeat(None)
        .retry(None)
        .queue_size(10_000)
        .build();
    let mut entries: Vec<String> = s.names.iter().map(|i| format!("n{i}")).collect();
    entries.extend(s.patterns.iter().map(|i| format!("p{i}/*")));
    let follows = |c: &str| {
        entries.iter().any(|e| match e.strip_suffix('*') {
            Some(prefix) => c.starts_with(prefix),
            None => e == c,
        })
    };
    let mut model = Model {
        reached: s.names.iter().map(|i| format!("n{i}")).collect(),
        ..Model::default()
    };
    // Two streams on the same set (one composite): while one is cut the other stays, and when
    // both are cut they resume together (one attaches the new composite, the other waits for it).
    let mut readers = Vec::new();
    for _ in 0..2 {
        readers.push(Reader {
            sub: Some(subscribe(&hub, &entries, None).await),
            seen: Seen::default(),
        });
    }
    for op in &s.ops {
        let Op::Cut(who, read, during) = op else {
            model.apply(&hub, &follows, op).await;
            continue;
        };
        let [one, two] = &mut readers[..] else {
            unreachable!()
        };
        one.cut(*who != 1, *read)?;
        two.cut(*who != 0, *read)?;
        tokio::join!(
            one.resume(&hub, &entries),
            two.resume(&hub, &entries),
            async {
                for op in during {
                    model.apply(&hub, &follows, op).await;
                }
            }
        );
    }
    model.broadcasts.retain(|_, n| *n > 0);
    for (i, r) in readers.into_iter().enumerate() {
        check(i, r, &model, &follows)?;
    }
    Ok(())
}

#[test]
fn every_followed_event_once_across_sixteen_sequencers_through_cuts_and_resumes() {
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runner
        .run(&schedule(), |s| rt.block_on(run_case(s)))
        .unwrap();
}

/// Positions of different sequencers are equal here (each memory store counts from 1): an id that
/// named one position for every channel would resume some of them at the wrong place.
#[tokio::test]
async fn a_resume_places_each_channel_by_its_own_sequencer() {
    let hub = Hub::builder()
        .store(Arc::new(Sharded::new()))
        .heartbeat(None)
        .build();
    let (a, b) = ("a", "c");
    assert_ne!(sequencer_of(a), sequencer_of(b));
    let mut sub = hub.subscribe_many(&[a, b], None).await.unwrap();
    let one = hub.publish(a, Event::message("a1")).await.unwrap();
    let two = hub.publish(b, Event::message("b1")).await.unwrap();
    assert_eq!(one, two, "the same position in two sequencers");
    hub.publish(b, Event::message("b2")).await.unwrap();
    let mut seen = Seen::default();
    seen.drain(&mut sub, 1).unwrap();
    let last = seen.last_id.clone().unwrap();
    drop(sub);
    hub.publish(a, Event::message("a2")).await.unwrap();
    let mut sub = hub.subscribe_many(&[a, b], Some(&last)).await.unwrap();
    let mut seen = Seen::default();
    seen.drain(&mut sub, usize::MAX).unwrap();
    let mut data: Vec<&str> = seen.got.iter().map(|(_, d)| d.as_str()).collect();
    data.sort();
    assert_eq!(data, ["a2", "b1", "b2"]);
}

/// One node's handle on the shared [`Sharded`] store, with its own live feed.
#[derive(Debug)]
struct Node {
    shared: Arc<Sharded>,
    feed: Arc<Feed>,
}

/// A node's live feed: one loop per sequencer (see [`Feed::run`]) hands every appended event to
/// the hub, in each sequencer's order, the sequencers independent of each other and of the other
/// node's feed (each waits a random number of scheduler turns before each event).
struct Feed {
    shared: Arc<Sharded>,
    sink: std::sync::Mutex<Option<LiveSink>>,
    /// Per sequencer: how much of its log was delivered.
    read: std::sync::Mutex<Vec<usize>>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").finish_non_exhaustive()
    }
}

impl LiveFeed for Feed {
    fn attach(&self, sink: LiveSink) {
        *self.sink.lock().unwrap() = Some(sink);
    }

    /// Everything is delivered, watched or not: a watch is in effect at once.
    fn watch<'a>(&'a self, _channel: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    fn unwatch(&self, _channel: &str) {}

    fn watch_prefix<'a>(&'a self, _prefix: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}

impl Feed {
    async fn run(self: Arc<Self>, k: usize, mut rng: u64) {
        loop {
            let waiting = self.shared.appended.notified();
            tokio::pin!(waiting);
            waiting.as_mut().enable();
            let at = self.read.lock().unwrap()[k];
            let next = self.shared.logs[k].lock().unwrap().get(at).cloned();
            let Some((channel, event)) = next else {
                waiting.await;
                continue;
            };
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            for _ in 0..rng % 40 {
                tokio::task::yield_now().await;
            }
            self.read.lock().unwrap()[k] = at + 1;
            let sink = self.sink.lock().unwrap().clone();
            if let Some(sink) = sink {
                sink(&channel, Live::Event(event));
            }
        }
    }

    /// Whether everything appended was delivered.
    fn caught_up(&self) -> bool {
        let read = self.read.lock().unwrap();
        (0..SEQUENCERS).all(|k| self.shared.logs[k].lock().unwrap().len() == read[k])
    }
}

impl ReplayStore for Node {
    fn append<'a>(
        &'a self,
        channel: &'a str,
        event: Event,
    ) -> BoxFuture<'a, Result<StoredEvent, Error>> {
        self.shared.append(channel, event)
    }

    fn replay<'a>(
        &'a self,
        channel: &'a str,
        last_event_id: &'a str,
    ) -> BoxFuture<'a, Result<Replay, Error>> {
        self.shared.replay(channel, last_event_id)
    }

    fn mint_id(&self) -> BoxFuture<'_, Result<String, Error>> {
        self.shared.mint_id()
    }

    fn append_all<'a>(
        &'a self,
        channels: &'a [String],
        event: Event,
    ) -> BoxFuture<'a, Result<StoredEvent, Error>> {
        self.shared.append_all(channels, event)
    }

    fn channels(&self) -> BoxFuture<'_, Result<Vec<StoredChannel>, Error>> {
        self.shared.channels()
    }

    fn sequencers(&self) -> usize {
        SEQUENCERS
    }

    fn sequencer(&self, channel: &str) -> usize {
        sequencer_of(channel)
    }

    fn issued_by(&self, sequencer: usize) -> BoxFuture<'_, Result<Option<Position>, Error>> {
        self.shared.issued_by(sequencer)
    }

    fn live(&self) -> Option<Arc<dyn LiveFeed>> {
        Some(self.feed.clone())
    }
}

/// Two nodes sharing one store, each with its own live feed: publishes, broadcasts and resumes land
/// on either node (a client comes back on a node whose feed may be behind the one it left).
async fn run_fed_case(s: Schedule, on: Vec<usize>) -> Result<(), TestCaseError> {
    let shared = Arc::new(Sharded::new());
    let mut hubs = Vec::new();
    let mut feeds = Vec::new();
    let mut loops = Vec::new();
    for node in 0..2u64 {
        let feed = Arc::new(Feed {
            shared: shared.clone(),
            sink: Default::default(),
            read: std::sync::Mutex::new(vec![0; SEQUENCERS]),
        });
        let store = Node {
            shared: shared.clone(),
            feed: feed.clone(),
        };
        hubs.push(
            Hub::builder()
                .store(Arc::new(store))
                .heartbeat(None)
                .retry(None)
                .queue_size(10_000)
                .build(),
        );
        for k in 0..SEQUENCERS as u64 {
            loops.push(tokio::spawn(
                feed.clone().run(k as usize, (node << 32) + k * 7 + 1),
            ));
        }
        feeds.push(feed);
    }
    let mut entries: Vec<String> = s.names.iter().map(|i| format!("n{i}")).collect();
    entries.extend(s.patterns.iter().map(|i| format!("p{i}/*")));
    let follows = |c: &str| {
        entries.iter().any(|e| match e.strip_suffix('*') {
            Some(prefix) => c.starts_with(prefix),
            None => e == c,
        })
    };
    // History in every named channel before the streams start: a broadcast then reaches them from
    // either node (a node's table only holds its own subscribers' channels).
    for i in &s.names {
        hubs[0]
            .publish(&format!("n{i}"), Event::message("before"))
            .await
            .unwrap();
    }
    let mut model = Model {
        reached: s.names.iter().map(|i| format!("n{i}")).collect(),
        ..Model::default()
    };
    let mut readers = Vec::new();
    for hub in &hubs {
        readers.push(Reader {
            sub: Some(subscribe(hub, &entries, None).await),
            seen: Seen::default(),
        });
    }
    for (n, op) in s.ops.iter().enumerate() {
        let hub = &hubs[on[n % on.len()]];
        let Op::Cut(who, read, during) = op else {
            model.apply(hub, &follows, op).await;
            continue;
        };
        let [one, two] = &mut readers[..] else {
            unreachable!()
        };
        one.cut(*who != 1, *read)?;
        two.cut(*who != 0, *read)?;
        let other = &hubs[1 - on[n % on.len()]];
        tokio::join!(
            one.resume(hub, &entries),
            two.resume(other, &entries),
            async {
                for op in during {
                    model.apply(other, &follows, op).await;
                }
            }
        );
    }
    let mut turns = 0;
    while !feeds.iter().all(|f| f.caught_up()) {
        turns += 1;
        prop_assert!(turns < 1_000_000, "the feeds never caught up");
        tokio::task::yield_now().await;
    }
    for l in loops {
        l.abort();
    }
    model.broadcasts.retain(|_, n| *n > 0);
    for (i, r) in readers.into_iter().enumerate() {
        check(i, r, &model, &follows)?;
    }
    Ok(())
}

#[test]
fn every_followed_event_once_across_two_nodes_with_live_feeds_per_sequencer() {
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let nodes = proptest::collection::vec(0..2usize, 1..16);
    runner
        .run(&(schedule(), nodes), |(s, on)| {
            rt.block_on(run_fed_case(s, on))
        })
        .unwrap();
}
