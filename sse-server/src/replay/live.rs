//! The live side of a shared store: events appended by *any* process, delivered to this one in store order.
//!
//! A store private to one process (memory, durable) has no live feed: the hub fans an event out right
//! after appending it. A store shared by several processes (Redis) must not be bypassed that way, or
//! each node would see its own events first and other nodes' events in another order. Such a store
//! returns a [`LiveFeed`] from [`ReplayStore::live`](crate::ReplayStore::live), and the hub then fans
//! out only what the feed delivers: every node delivers each event once, in the store's order.

use std::fmt;
use std::sync::Arc;

use super::{BoxFuture, StoredEvent};
use crate::Error;

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
///   the store's newest event at that moment is passed to the sink exactly once, in position order,
///   until [`unwatch`](LiveFeed::unwatch) — or, when the store dropped some of them before the feed
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
}
