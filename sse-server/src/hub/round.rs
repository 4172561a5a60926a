//! One flusher round on one channel: the hub offers each direct subscriber the events it has not
//! seen; the transport frames and writes them, and reports how far the write got.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::hub::lent::{Handback, Sink};
use crate::hub::queue::Queue;
use crate::position::Position;

/// One flusher round on one channel (see `Channel::start_round`).
pub(crate) struct Round {
    /// The direct subscribers to write.
    pub(crate) targets: Vec<Arc<Queue>>,
    events: Vec<(Position, Bytes)>,
    /// When each event was published.
    published: Vec<Instant>,
    from: u64,
    /// The log sequence the round writes up to (it grows when [`Channel::extend_round`] adds
    /// events published while the round was being written).
    ///
    /// [`Channel::extend_round`]: crate::hub::channel::Channel::extend_round
    pub(crate) head: u64,
    /// The log sequence every target has seen once the round ends: the head when it started. A
    /// target written before an extension has seen only this far; the next round starts here.
    pub(crate) done: u64,
}

/// What one subscriber is offered in a round.
pub(crate) struct Offer<'a> {
    /// Its socket.
    pub(crate) sink: Arc<dyn Sink>,
    /// Its events.
    pub(crate) pending: Pending<'a>,
}

/// Which events of the round a subscriber needs.
pub(crate) enum Pending<'a> {
    /// All of them (the common case: one framing serves every such subscriber).
    All,
    /// Its own part, in order (it joined mid-round, or resumed over live events); may be empty.
    Own(Vec<&'a Bytes>),
}

/// How far the transport's write of an [`Offer`] got.
pub(crate) enum Written {
    /// Everything (or there was nothing to write).
    All,
    /// Part of it: these framed pieces (shared, not copied) are still owed, and go out first when
    /// the task takes the socket back.
    Partial(Vec<Bytes>),
    /// Nothing: the socket takes nothing now, or failed (the task sees the error itself).
    Nothing,
}

/// What a flusher's write did for one subscriber.
pub(crate) enum Wrote {
    Events(u64),
    Nothing,
    /// The socket goes back to the task (partial write, or the task asked for it meanwhile), after
    /// delivering this many events.
    HandBack(u64),
}

impl Round {
    pub(crate) fn new(
        targets: Vec<Arc<Queue>>,
        events: Vec<(Position, Bytes)>,
        published: Vec<Instant>,
        from: u64,
        head: u64,
    ) -> Round {
        Round {
            targets,
            events,
            published,
            from,
            head,
            done: head,
        }
    }

    /// Adds `events`, published (at `published`) after the round started, up to log sequence
    /// `head`: the targets not yet written get them in this round's write.
    pub(crate) fn extend(
        &mut self,
        events: impl IntoIterator<Item = (Position, Bytes)>,
        published: impl IntoIterator<Item = Instant>,
        head: u64,
    ) {
        self.events.extend(events);
        self.published.extend(published);
        self.head = head;
    }

    /// When the round's events were published (those no earlier round on this channel recorded).
    pub(crate) fn published(&self) -> &[Instant] {
        &self.published
    }

    /// Whether there is anything to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Event `i` of the round.
    pub(crate) fn event(&self, i: usize) -> Option<&Bytes> {
        self.events.get(i).map(|(_, b)| b)
    }

    /// Every event of the round, in order (what [`Pending::All`] stands for).
    pub(crate) fn events(&self) -> impl Iterator<Item = &Bytes> + Clone {
        self.events.iter().map(|(_, b)| b)
    }

    /// Starts the write to one subscriber: `None` when it has nothing to be written (or is being
    /// written already). The socket is then written with no lock held; `writing` keeps the task
    /// from taking it back meanwhile. Every `Some` must be followed by [`Round::finish`].
    pub(crate) fn begin<'a>(&'a self, target: &Queue) -> Option<Offer<'a>> {
        let mut state = target.lock();
        let direct = state.direct.as_mut()?;
        if direct.writing || direct.cursor >= self.head {
            return None;
        }
        let skip = direct.cursor.saturating_sub(self.from) as usize;
        let seen_through = direct.seen_through.clone();
        direct.writing = true;
        let sink = direct.sink.clone();
        drop(state);
        let pending = if skip == 0 && seen_through.is_nothing() {
            Pending::All
        } else {
            Pending::Own(
                self.events
                    .get(skip..)
                    .unwrap_or_default()
                    .iter()
                    .filter(|(p, _)| !seen_through.covers(*p))
                    .map(|(_, b)| b)
                    .collect(),
            )
        };
        Some(Offer { sink, pending })
    }

    /// Ends the write [`Round::begin`] started, `count` events offered, with what the transport
    /// reports.
    pub(crate) fn finish(
        &self,
        target: &Queue,
        count: u64,
        written: Written,
        now: Instant,
    ) -> Wrote {
        let mut state = target.lock();
        let Some(direct) = state.direct.as_mut() else {
            return Wrote::Nothing;
        };
        direct.writing = false;
        let (took, raw) = match written {
            Written::All => (true, None),
            Written::Partial(rest) => (true, Some(rest)),
            Written::Nothing => (false, None),
        };
        if took {
            // Written (whole or in part: the rest travels as `raw`), or all filtered out.
            direct.cursor = self.head;
            if count > 0 || raw.is_some() {
                direct.last_write = Some(now);
            }
        }
        let delivered = if took { count } else { 0 };
        if raw.is_none() && took && !direct.leave {
            return if delivered > 0 {
                Wrote::Events(delivered)
            } else {
                Wrote::Nothing
            };
        }
        // Partial, nothing taken, or the task asked for its socket: the channel finishes the
        // hand-back under its lock (`Channel::end_round`); keep the unwritten bytes for the task.
        if let Some(raw) = raw {
            state.handback = Some(Handback {
                raw,
                last_write: Some(now),
            });
        }
        Wrote::HandBack(delivered)
    }
}

impl Offer<'_> {
    /// How many events the offer carries, given the round it belongs to.
    pub(crate) fn count(&self, round: &Round) -> u64 {
        match &self.pending {
            Pending::All => round.events.len() as u64,
            Pending::Own(own) => own.len() as u64,
        }
    }
}
