//! A channel's log of live events for its direct subscribers, and how far each flusher has
//! written it.
//!
//! The fan-out appends an event once, whatever the number of direct subscribers; a flusher's
//! round then offers each of its subscribers the part it has not seen. The log forgets what every
//! flusher has written.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::time::Instant;

use crate::hub::cursors::Seen;
use crate::hub::queue::KEEP_CAPACITY;
use crate::position::Position;

/// Live events some direct subscriber may not have yet: `entries[k]` has sequence `base + k`.
#[derive(Debug, Default)]
pub(crate) struct Log {
    entries: VecDeque<(Position, Bytes)>,
    /// When each entry was published (`times[k]` goes with `entries[k]`).
    times: VecDeque<Instant>,
    /// Bytes of the entries.
    bytes: usize,
    base: u64,
    /// Per flusher (by index).
    shards: Vec<Shard>,
}

/// One flusher's part of a channel.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Shard {
    /// Direct subscribers it writes here.
    pub(crate) count: usize,
    /// This channel is on its list.
    pub(crate) scheduled: bool,
    /// Every direct subscriber of it has seen the log up to this sequence.
    pub(crate) done: u64,
    /// Its rounds have recorded the publish-to-write time of the events up to this sequence (a
    /// round extended mid-way writes some events before `done` reaches them).
    pub(crate) timed: u64,
}

impl Log {
    /// The sequence the next event gets.
    pub(crate) fn head(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// The sequence of the oldest event the log holds.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// How many events the log holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the log holds no event.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends a live event.
    pub(crate) fn push(&mut self, position: Position, bytes: Bytes, at: Instant) {
        self.bytes += bytes.len();
        self.entries.push_back((position, bytes));
        self.times.push_back(at);
    }

    /// The oldest sequence from which the log holds at most `budget` bytes up to its head.
    pub(crate) fn within(&self, budget: usize) -> u64 {
        let mut bytes = 0;
        let mut from = self.head();
        for (_, b) in self.entries.iter().rev() {
            bytes += b.len();
            if bytes > budget {
                break;
            }
            from -= 1;
        }
        from
    }

    /// Bytes of the events the log holds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the events from sequence `from` up to `until` were published.
    pub(crate) fn times(&self, from: u64, until: u64) -> Vec<Instant> {
        let len = self.times.len();
        let start = (from.saturating_sub(self.base) as usize).min(len);
        let end = (until.saturating_sub(self.base) as usize).clamp(start, len);
        self.times.range(start..end).copied().collect()
    }

    /// Flusher `i`'s part.
    pub(crate) fn shard(&mut self, i: usize) -> &mut Shard {
        if self.shards.len() <= i {
            self.shards.resize(i + 1, Shard::default());
        }
        &mut self.shards[i]
    }

    /// Every flusher's part, by index.
    pub(crate) fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Every flusher's part, by index, to change.
    pub(crate) fn shards_mut(&mut self) -> &mut [Shard] {
        &mut self.shards
    }

    /// Drops entries every direct subscriber has seen.
    pub(crate) fn trim(&mut self) {
        let head = self.head();
        let keep_from = self
            .shards
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| s.done)
            .min()
            .unwrap_or(head)
            .clamp(self.base, head);
        let n = (keep_from - self.base) as usize;
        self.bytes -= self.entries.drain(..n).map(|(_, b)| b.len()).sum::<usize>();
        self.times.drain(..n);
        self.base = keep_from;
        if self.entries.is_empty() && self.entries.capacity() > KEEP_CAPACITY {
            self.entries = VecDeque::new();
            self.times = VecDeque::new();
        }
    }

    /// The log from sequence `from` up to `until`, for a subscriber that saw everything up to
    /// `seen_through`.
    pub(crate) fn unseen(
        &self,
        from: u64,
        until: u64,
        seen_through: Seen,
    ) -> impl Iterator<Item = &(Position, Bytes)> {
        let len = self.entries.len();
        let start = (from.saturating_sub(self.base) as usize).min(len);
        let end = (until.saturating_sub(self.base) as usize).clamp(start, len);
        self.entries
            .range(start..end)
            .filter(move |(p, _)| !seen_through.covers(*p))
    }
}
