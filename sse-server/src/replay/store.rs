//! The seam between the hub and a store: the [`ReplayStore`] trait and what crosses it (replays, resets,
//! channel listings), and the live side of a shared store ([`LiveFeed`]): events appended by *any*
//! process, delivered to this one in store order.
//!
//! A store private to one process (memory, durable) has no live feed: the hub fans an event out right
//! after appending it. A store shared by several processes (Redis) must not be bypassed that way, or
//! each node would see its own events first and other nodes' events in another order. Such a store
//! returns a [`LiveFeed`] from [`ReplayStore::live`], and the hub then fans out only what the feed
//! delivers: every node delivers each event once, in the store's order.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sse_proto::Event;

use super::stored::StoredEvent;
use crate::error::Error;
use crate::position::Position;

/// A boxed, sendable future, the return type of [`ReplayStore`] methods (so the trait stays object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a store found for a `Last-Event-ID`.
///
/// When `reset` is `None`, `events` is every retained event after that id, in order, with nothing missing.
/// When it is `Some`, the id was unknown or older than the window: `events` is everything retained, and the
/// subscriber must be told (the hub sends an `sse-reset` event first).
///
/// ```
/// let r = sse_server::Replay { events: vec![], reset: None, after: None };
/// assert!(r.events.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Replay {
    /// The events to send, oldest first.
    pub events: Vec<StoredEvent>,
    /// Set when the id could not be placed in the window.
    pub reset: Option<Reset>,
    /// The position the id resolved to (when known): live events at or before it are duplicates.
    pub after: Option<Position>,
}

/// Why and from where a subscriber's replay restarted.
///
/// ```
/// use sse_server::{Position, Reset, ResetReason};
/// let r = Reset { reason: ResetReason::Expired, floor: Position::new(1, 4), oldest: Some("1-5".into()) };
/// assert_eq!(r.reason.as_str(), "expired");
/// ```
#[derive(Debug, Clone)]
pub struct Reset {
    /// Unknown id, or one that fell out of the window.
    pub reason: ResetReason,
    /// Every event after this position is retained; the `sse-reset` event carries it as its `id`, so a
    /// client that reconnects right after the reset resumes from the start of the window.
    pub floor: Position,
    /// Id of the oldest retained event, if any.
    pub oldest: Option<Arc<str>>,
}

/// Why a `Last-Event-ID` could not be resumed from.
///
/// ```
/// assert_eq!(sse_server::ResetReason::Unknown.as_str(), "unknown");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetReason {
    /// Never issued by this store (another channel, an earlier process, a typo).
    Unknown,
    /// Issued here, but events after it have left the window: some were lost.
    Expired,
}

impl ResetReason {
    /// The reason as sent in the `sse-reset` event's data.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::Unknown => "unknown",
            ResetReason::Expired => "expired",
        }
    }
}

/// A channel a store holds history for.
///
/// ```
/// let c = sse_server::StoredChannel { name: "news".into(), last_id: Some("1-2".into()) };
/// assert_eq!(c.name, "news");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChannel {
    /// The channel name.
    pub name: String,
    /// Id of the newest event, if one is retained.
    pub last_id: Option<String>,
}

/// A per-channel replay log. Implement it to back a [`Hub`](crate::Hub) with another store.
///
/// Contract:
/// * [`append`](ReplayStore::append) gives each event a position greater than every earlier position of
///   its channel, sets `id` to `position.to_string()` when the event has none, encodes it **once** with
///   [`sse_proto::encode`], retains it under the store's [`Retention`](crate::replay::Retention), and
///   returns what it stored. The hub serialises appends per channel.
/// * [`replay`](ReplayStore::replay) resolves an id (publisher-supplied ids while retained, hub-assigned
///   ids by their position) and returns every retained event after it, or a [`Reset`].
/// * [`mint_id`](ReplayStore::mint_id) returns a fresh id for an event that spans channels (broadcast);
///   appending it in several channels maps it to each channel's own position.
///
/// ```
/// use sse_server::{MemoryStore, ReplayStore, Retention};
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let store = MemoryStore::new(Retention::default());
/// let a = store.append("news", sse_proto::Event::message("one")).await?;
/// let b = store.append("news", sse_proto::Event::message("two")).await?;
/// let replay = store.replay("news", &a.id).await?;
/// assert!(replay.reset.is_none());
/// assert_eq!(replay.events.len(), 1);
/// assert_eq!(replay.events[0].id, b.id);
/// # Ok::<(), sse_server::Error>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait ReplayStore: Send + Sync + fmt::Debug + 'static {
    /// Appends `event` to `channel`, assigning its position (and id when it has none).
    fn append<'a>(
        &'a self,
        channel: &'a str,
        event: Event,
    ) -> BoxFuture<'a, Result<StoredEvent, Error>>;

    /// Everything retained in `channel` after `last_event_id`, or a reset when it cannot be placed.
    fn replay<'a>(
        &'a self,
        channel: &'a str,
        last_event_id: &'a str,
    ) -> BoxFuture<'a, Result<Replay, Error>>;

    /// A fresh id, unique in this store, for an event appended to several channels.
    fn mint_id(&self) -> BoxFuture<'_, Result<String, Error>>;

    /// Appends `event` to every channel of `channels` at **one** position (a broadcast), so that a
    /// subscriber of several of them receives it once and resumes after it exactly. The built-in
    /// stores do; the default, for other stores, appends it to each channel in turn under one minted
    /// id (each channel then has its own position, and multi-channel subscribers may see it once per
    /// channel) and returns the first.
    ///
    /// ```
    /// use sse_server::{MemoryStore, ReplayStore};
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let store = MemoryStore::new(Default::default());
    /// let e = store.append_all(&["a".into(), "b".into()], sse_proto::Event::message("x")).await?;
    /// let r = store.replay("b", "nope").await?;
    /// assert_eq!(r.events[0].position, e.position);
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn append_all<'a>(
        &'a self,
        channels: &'a [String],
        event: Event,
    ) -> BoxFuture<'a, Result<StoredEvent, Error>> {
        Box::pin(async move {
            let event = match event.id() {
                Some(_) => event,
                None => event.with_id(self.mint_id().await?)?,
            };
            let mut first = None;
            for channel in channels {
                let stored = self.append(channel, event.clone()).await?;
                first.get_or_insert(stored);
            }
            first.ok_or_else(|| Error::Store("a broadcast needs at least one channel".to_owned()))
        })
    }

    /// The channels with history, after dropping expired events and empty channels.
    fn channels(&self) -> BoxFuture<'_, Result<Vec<StoredChannel>, Error>>;

    /// The last position issued so far, in any channel: every event at or before it is already
    /// readable by [`replay`](ReplayStore::replay). A multi-channel resume reads it once its stream
    /// follows every channel, then replays each channel only up to it and takes the rest live: the
    /// replays of several channels, read one after the other, then form one cut of the hub-wide order
    /// (an event published between two of them is sent live, not skipped as already replayed). The
    /// built-in stores know it; the default `None` falls back to the highest position replayed.
    ///
    /// ```
    /// use sse_server::{MemoryStore, ReplayStore};
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let store = MemoryStore::new(Default::default());
    /// let e = store.append("a", sse_proto::Event::message("x")).await?;
    /// assert_eq!(store.issued().await?, Some(e.position));
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn issued(&self) -> BoxFuture<'_, Result<Option<Position>, Error>> {
        Box::pin(async { Ok(None) })
    }

    /// How many independent sequencers order this store's positions (default 1). Positions issued by
    /// one sequencer are totally ordered; positions of different sequencers are not comparable (a
    /// Redis Cluster store has one sequencer per group of channels sharing a hash slot, because one
    /// script can only touch one slot). A multi-channel stream over channels of several sequencers
    /// keeps one cursor per sequencer (see [`sequencer`](ReplayStore::sequencer)). A store with
    /// several sequencers must keep the major part of its positions below 2^48 (Redis ids are
    /// milliseconds, far below it): the hub tags a frame's position with its sequencer in the top
    /// 16 bits.
    ///
    /// ```
    /// use sse_server::{MemoryStore, ReplayStore};
    /// assert_eq!(MemoryStore::new(Default::default()).sequencers(), 1);
    /// ```
    fn sequencers(&self) -> usize {
        1
    }

    /// Which sequencer (`0..sequencers()`) orders `channel`'s positions (default 0). It must not
    /// change for a channel during the store's life, and must be the same on every process sharing
    /// the store.
    ///
    /// ```
    /// use sse_server::{MemoryStore, ReplayStore};
    /// assert_eq!(MemoryStore::new(Default::default()).sequencer("news"), 0);
    /// ```
    fn sequencer(&self, _channel: &str) -> usize {
        0
    }

    /// [`issued`](ReplayStore::issued) for one sequencer: the last position `sequencer` issued so far
    /// (`None` when unknown). The default answers `issued()` for sequencer 0 and `None` otherwise.
    ///
    /// ```
    /// use sse_server::{MemoryStore, ReplayStore};
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let store = MemoryStore::new(Default::default());
    /// let e = store.append("a", sse_proto::Event::message("x")).await?;
    /// assert_eq!(store.issued_by(0).await?, Some(e.position));
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn issued_by(&self, sequencer: usize) -> BoxFuture<'_, Result<Option<Position>, Error>> {
        if sequencer == 0 {
            self.issued()
        } else {
            Box::pin(async { Ok(None) })
        }
    }

    /// The feed of events appended by other processes sharing this store (see [`LiveFeed`]). `None`
    /// (the default) means the store is private to this process and the hub fans out on publish.
    fn live(&self) -> Option<Arc<dyn LiveFeed>> {
        None
    }

    /// Whether the store can acknowledge a publish right now: `Err` (with what is wrong and what to do)
    /// while it cannot, e.g. a durable store whose file failed a write and is not yet reopened, or a
    /// Redis that does not answer. `GET /readyz` answers 503 with the error's message then. The default
    /// (a store that cannot fail, like the memory store) is always `Ok`. It must be cheap and bounded
    /// in time: a readiness probe calls it.
    ///
    /// ```
    /// use sse_server::{MemoryStore, ReplayStore};
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// assert!(MemoryStore::new(Default::default()).health().await.is_ok());
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn health(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}

/// Where a [`LiveFeed`] hands what it reads: `(channel, item)`, called from the feed's single read loop,
/// in the store's order for each channel. It must not block (the hub only queues the bytes).
pub type LiveSink = Arc<dyn Fn(&str, Live) + Send + Sync>;

/// What a [`LiveFeed`] delivers for a channel.
#[derive(Debug, Clone)]
pub enum Live {
    /// The channel's next event, in store order.
    Event(StoredEvent),
    /// Events of the channel left the store before this process read them (its feed fell further
    /// behind than the window is long). The hub ends the channel's local streams so that their clients
    /// resume through replay, which tells them (`sse-reset`, reason `expired`) instead of skipping events
    /// silently.
    Gap,
}

/// A per-process feed of the events appended to watched channels, by this process or any other.
///
/// Contract:
/// * [`attach`](LiveFeed::attach) is called once, by the hub that owns the store, before any watch.
/// * After [`watch`](LiveFeed::watch) returns `Ok`, every event appended to the channel later than
///   the store's newest event at that moment is passed to the sink exactly once, in position order
///   (across channels, among the channels of one [`sequencer`](ReplayStore::sequencer); channels of
///   different sequencers interleave freely), until [`unwatch`](LiveFeed::unwatch) — or, when the store dropped some of them before the feed
///   read them, a [`Live::Gap`] comes before the next event delivered. A `watch` of a channel already watched returns once that
///   first watch is in effect. The hub registers its subscriber *before* watching and reads the replay
///   window *after*, so the window and the feed overlap instead of leaving a gap; it drops duplicates by
///   position.
/// * `unwatch` is called when the last local subscriber of a channel leaves; a feed spends nothing on
///   channels nobody watches.
/// * The hub does not serialise appends of a store with a live feed (the store orders them itself), and
///   does not fan out what it appends: only what the feed delivers.
///
/// ```
/// use sse_server::{MemoryStore, ReplayStore};
/// // A store private to one process has no live feed: the hub fans out on publish.
/// assert!(MemoryStore::new(Default::default()).live().is_none());
/// ```
pub trait LiveFeed: Send + Sync + fmt::Debug {
    /// Sets where events go (replacing any earlier sink).
    fn attach(&self, sink: LiveSink);

    /// Starts delivering `channel`'s new events; fails when the store cannot be reached.
    fn watch<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), Error>>;

    /// Stops delivering `channel`'s events (no-op when not watched).
    fn unwatch(&self, channel: &str);

    /// Starts delivering the events of every channel under `prefix` (which ends with `/`), including
    /// channels created later, as [`watch`](LiveFeed::watch) does for one channel, in position order
    /// across channels. The default refuses: a feed that cannot follow patterns makes pattern
    /// subscriptions fail (503) instead of silently missing channels.
    fn watch_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            Err(Error::Store(format!(
                "this store's live feed cannot follow the pattern {prefix}*; subscribe to channels by name"
            )))
        })
    }

    /// Stops a [`watch_prefix`](LiveFeed::watch_prefix) (each watch is undone by one call).
    fn unwatch_prefix(&self, _prefix: &str) {}
}
