//! A subscriber's socket lent to a flusher: the hub's half of the seam between hub and transport.
//!
//! The hub never frames or writes bytes. While a subscriber waits for live events, its connection
//! may lend the hub a [`Sink`]; the hub then keeps the events the subscriber has not seen in its
//! channel's log and offers them to a flusher (`hub/round.rs`), which frames them for the wire
//! (an HTTP/1.1 chunk, or nothing for an HTTP/2 stream: [`Framing`]), writes them through the sink
//! and reports how far the write got.

use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::hub::cursors::Seen;

/// Where a flusher writes: a subscriber's socket, without waiting.
pub(crate) trait Sink: Send + Sync {
    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// For a sink that seals what it is given (TLS): seals `bufs` into records in `scratch` (the
    /// flusher's buffer, reused) and writes what the socket takes now. `Some(rest)`: every byte of
    /// `bufs` counts as written, and `rest` is the ciphertext the socket did not take (empty when it
    /// took all), to go out first, as it is (records cannot be sealed twice). `None`: not a sealing
    /// sink; [`Sink::try_write_vectored`] writes `bufs` as they are.
    fn try_write_sealed(&self, _bufs: &[IoSlice<'_>], _scratch: &mut Vec<u8>) -> Option<Bytes> {
        None
    }

    /// How the flusher frames events for this sink: HTTP/1.1 chunks for a socket, nothing for a
    /// sink that frames by itself (an HTTP/2 stream: its DATA frames are the framing).
    fn framing(&self) -> Framing {
        Framing::Chunked
    }

    /// For a [`Framing::Raw`] sink: takes all of `events` (the events' own bytes, shared, never
    /// copied) now, or nothing (`WouldBlock`). Never part: a sink that frames by itself cannot
    /// hand back half a frame.
    fn try_write_events(&self, _events: &Arc<[Bytes]>) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// How a flusher frames the events it writes through a [`Sink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One HTTP/1.1 chunk per write, through [`Sink::try_write_vectored`] (or sealed).
    Chunked,
    /// The events as they are, through [`Sink::try_write_events`].
    Raw,
}

/// A direct subscriber: its lent socket, and how far into its channel's log it is.
pub(crate) struct Direct {
    pub(crate) sink: Arc<dyn Sink>,
    /// Its id in the channel.
    pub(crate) id: u64,
    /// The next log sequence it has not been written.
    pub(crate) cursor: u64,
    /// Live events at or before this were replayed already.
    pub(crate) seen_through: Seen,
    /// A flusher is writing (outside every lock, so that publishers never wait for a syscall).
    pub(crate) writing: bool,
    /// The socket must go back to the task once the write in progress ends.
    pub(crate) leave: bool,
    /// Set with `leave` by the channel: it took the subscriber out of its flusher's count but the
    /// write in progress still counts, until the flusher ends the hand-back.
    pub(crate) deferred: bool,
    /// With `leave`: the log sequence the channel stopped logging for it (later events went to
    /// its queue), so the hand-back moves only the log before it.
    pub(crate) until: Option<u64>,
    /// When a flusher last wrote (the heartbeat counts idle time from it).
    pub(crate) last_write: Option<Instant>,
}

impl Direct {
    /// A subscriber lending `sink`, starting at log sequence `cursor`.
    pub(crate) fn new(sink: Arc<dyn Sink>, id: u64, cursor: u64, seen_through: Seen) -> Direct {
        Direct {
            sink,
            id,
            cursor,
            seen_through,
            writing: false,
            leave: false,
            deferred: false,
            until: None,
            last_write: None,
        }
    }
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("id", &self.id)
            .field("cursor", &self.cursor)
            .field("writing", &self.writing)
            .finish_non_exhaustive()
    }
}

/// What the task takes back with its socket.
#[derive(Debug, Default)]
pub(crate) struct Handback {
    /// Framed bytes the flusher could only partly write: they go out first, as they are. Shared
    /// pieces (slices of the events' own `Bytes`), never a copy: a stalled subscriber holds no more
    /// memory than the events it is owed.
    pub(crate) raw: Vec<Bytes>,
    /// When the flusher last wrote.
    pub(crate) last_write: Option<Instant>,
}
