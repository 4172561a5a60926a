//! The replay seam: a per-channel log of encoded events addressed by [`Position`](crate::position::Position).
//!
//! The hub never looks inside a store: it hands it events to append (in publish order, one publisher per
//! channel at a time) and asks it for "everything after this `Last-Event-ID`". A store assigns positions,
//! maps ids to positions while the events are retained, and enforces its retention window. The in-memory
//! [`MemoryStore`] is the default; a durable embedded store or Redis Streams fit the same trait because
//! all it speaks is positions, ids and already-encoded bytes.
//!
//! The layer, from the ground up: what crosses the seam ([`StoredEvent`], the one step that gives an
//! appended event its id and bytes; [`Retention`]; the [`ReplayStore`] and [`LiveFeed`] traits), the one
//! retention window that the memory and durable stores keep, the rule that places a `Last-Event-ID` in it,
//! and the stores themselves.

#[cfg(feature = "durable")]
mod durable;
mod memory;
mod placement;
#[cfg(feature = "redis")]
mod redis;
mod retention;
mod store;
mod stored;
mod unavailable;
mod window;

#[cfg(feature = "redis")]
pub use self::redis::{RedisAck, RedisStore, RedisStoreBuilder};
#[cfg(feature = "durable")]
pub use durable::{CommitMode, DurableStore, DurableStoreBuilder, STORE_FILE};
pub use memory::MemoryStore;
pub use retention::Retention;
pub use store::{
    BoxFuture, Live, LiveFeed, LiveSink, Replay, ReplayStore, Reset, ResetReason, StoredChannel,
};
pub use stored::StoredEvent;
pub(crate) use unavailable::Unavailable;
