//! The replay seam: a per-channel log of encoded events addressed by [`Position`].
//!
//! The hub never looks inside a store: it hands it events to append (in publish order, one publisher per
//! channel at a time) and asks it for "everything after this `Last-Event-ID`". A store assigns positions,
//! maps ids to positions while the events are retained, and enforces its retention window. The in-memory
//! [`MemoryStore`] is the default; a durable embedded store or Redis Streams fit the same trait because
//! all it speaks is positions, ids and already-encoded bytes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sse_proto::Event;

use crate::{Error, Position};

mod durable;
mod live;
mod memory;
mod placement;
mod redis;

pub use self::redis::{RedisStore, RedisStoreBuilder};
pub(crate) use durable::Unavailable;
pub use durable::{CommitMode, DurableStore, DurableStoreBuilder, STORE_FILE};
pub use live::{Live, LiveFeed, LiveSink};
pub use memory::MemoryStore;

/// A boxed, sendable future, the return type of [`ReplayStore`] methods (so the trait stays object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An event as stored and sent: its position, its id, and its encoding (shared by every subscriber).
///
/// ```
/// use sse_server::{Position, StoredEvent};
/// let e = StoredEvent { position: Position::new(1, 1), id: "1-1".into(), bytes: "id: 1-1\ndata: x\n\n".into() };
/// assert_eq!(&*e.id, "1-1");
/// ```
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Where the event sits in its channel.
    pub position: Position,
    /// The id clients see (hub-assigned `position.to_string()` or the publisher's own).
    pub id: Arc<str>,
    /// The event encoded once with [`sse_proto::encode`], `id:` line included.
    pub bytes: Bytes,
}

/// How much of each channel's history a store keeps: at most `max_events` events, `max_bytes` encoded
/// bytes and events younger than `max_age`. The oldest events go first when any bound is exceeded; a bound
/// of zero keeps nothing (replay disabled).
///
/// ```
/// use std::time::Duration;
/// let r = sse_server::Retention::default().max_events(10).max_age(Duration::from_secs(60));
/// assert_eq!(r.events(), 10);
/// assert_eq!(r.bytes(), 8 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    max_events: usize,
    max_bytes: usize,
    max_age: Duration,
}

impl Default for Retention {
    /// 1000 events, 8 MiB, one hour per channel.
    fn default() -> Self {
        Retention {
            max_events: 1000,
            max_bytes: 8 * 1024 * 1024,
            max_age: Duration::from_secs(3600),
        }
    }
}

impl Retention {
    /// Keeps at most `n` events per channel.
    ///
    /// ```
    /// assert_eq!(sse_server::Retention::default().max_events(5).events(), 5);
    /// ```
    pub fn max_events(mut self, n: usize) -> Self {
        self.max_events = n;
        self
    }

    /// Keeps at most `n` encoded bytes per channel.
    ///
    /// ```
    /// assert_eq!(sse_server::Retention::default().max_bytes(64).bytes(), 64);
    /// ```
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }

    /// Keeps events for at most `age`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let r = sse_server::Retention::default().max_age(Duration::from_secs(9));
    /// assert_eq!(r.age(), Duration::from_secs(9));
    /// ```
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// The event-count bound.
    ///
    /// ```
    /// assert_eq!(sse_server::Retention::default().events(), 1000);
    /// ```
    pub fn events(&self) -> usize {
        self.max_events
    }

    /// The byte bound.
    ///
    /// ```
    /// assert!(sse_server::Retention::default().bytes() > 0);
    /// ```
    pub fn bytes(&self) -> usize {
        self.max_bytes
    }

    /// The age bound.
    ///
    /// ```
    /// assert_eq!(sse_server::Retention::default().age().as_secs(), 3600);
    /// ```
    pub fn age(&self) -> Duration {
        self.max_age
    }
}

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
///   [`sse_proto::encode`], retains it under the store's [`Retention`], and returns what it stored. The
///   hub serialises appends per channel.
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

    /// The channels with history, after dropping expired events and empty channels.
    fn channels(&self) -> BoxFuture<'_, Result<Vec<StoredChannel>, Error>>;

    /// The feed of events appended by other processes sharing this store (see [`LiveFeed`]). `None`
    /// (the default) means the store is private to this process and the hub fans out on publish.
    fn live(&self) -> Option<Arc<dyn LiveFeed>> {
        None
    }
}
