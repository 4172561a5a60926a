//! Resume: what a subscriber receives before live events. The `retry:` hint, the `on_subscribe`
//! welcome, then, when it sent a `Last-Event-ID`, the `sse-reset` event if the id cannot be placed
//! and every retained event after it.
//!
//! The subscriber is registered for live events *before* the window is read (see
//! [`Hub::subscribe_with`](crate::hub::handle::Hub::subscribe_with)), so the seam between replay and
//! live is an overlap, never a gap: live events at or before the last replayed position are skipped
//! by position.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use sse_proto::Event;

use crate::error::Error;
use crate::hub::composite::{Composite, Entry, Sequenced};
use crate::hub::control;
use crate::hub::cursors::{self, Mark, Seen};
use crate::hub::registry::Inner;
use crate::position::Position;
use crate::replay::{Reset, ResetReason, StoredEvent};

/// The bytes a subscriber of `channel` gets first, and the position through which it has seen
/// the channel (live events at or before it are skipped).
pub(crate) async fn prelude(
    hub: &Inner,
    channel: &str,
    last_event_id: Option<&str>,
    welcome: Option<Event>,
) -> Result<(VecDeque<Bytes>, Option<Position>), Error> {
    let mut prelude = opening(hub, welcome)?;
    let Some(last) = last_event_id else {
        return Ok((prelude, None));
    };
    let replay = hub.store.replay(channel, last).await?;
    if let Some(reset) = &replay.reset {
        hub.metrics
            .reset(reset.reason == crate::replay::ResetReason::Expired);
        prelude.push_back(control::reset(reset, last)?);
        tracing::debug!(
            channel,
            last_event_id = last,
            reason = reset.reason.as_str(),
            "sse-reset"
        );
    }
    let mut seen_through = replay.after;
    for event in replay.events {
        hub.metrics.replayed.fetch_add(1, Ordering::Relaxed);
        seen_through = Some(seen_through.map_or(event.position, |s| s.max(event.position)));
        prelude.push_back(event.bytes);
    }
    Ok((prelude, seen_through))
}

/// The `retry:` hint and the welcome event.
fn opening(hub: &Inner, welcome: Option<Event>) -> Result<VecDeque<Bytes>, Error> {
    let mut prelude = VecDeque::new();
    if let Some(retry) = hub.config.retry {
        prelude.push_back(control::retry(retry)?);
    }
    if let Some(welcome) = welcome {
        prelude.push_back(sse_proto::encode(&welcome));
    }
    Ok(prelude)
}

/// A name no channel can have: replaying it tells whether a whole window was dropped after the id
/// (a channel a pattern followed may have vanished with events the client never saw).
const NO_CHANNEL: &str = "\u{0}";

/// [`prelude`] for a composite: every followed channel's events after the id (named channels, and the
/// channels with history that a pattern matches) up to the store's last issued position read before
/// the listing ([`ReplayStore::issued`](crate::replay::ReplayStore::issued); later ones come live),
/// merged in position order, each once (a broadcast sits at one position in several channels). One channel that cannot place the id (unknown, or
/// evicted events after it) makes it an `sse-reset`: that channel is replayed whole, the others from
/// the id. With several sequencers, see [`prelude_sequenced`].
pub(crate) async fn prelude_many(
    hub: &Inner,
    composite: &Composite,
    last_event_id: Option<&str>,
    welcome: Option<Event>,
) -> Result<(VecDeque<Bytes>, Seen), Error> {
    let mut prelude = opening(hub, welcome)?;
    let Some(last) = last_event_id else {
        return Ok((prelude, Seen::Nothing));
    };
    if let Some(s) = &composite.sequenced {
        return prelude_sequenced(hub, composite, s, last, prelude).await;
    }
    // The cut between replay and live, read now that the composite follows every channel and before
    // the listing: everything after it reaches the composite live, everything up to it is stored.
    let cut = hub.store.issued().await?;
    let names = followed(hub, composite, &[NO_CHANNEL]).await?;
    let mut events: Vec<(usize, StoredEvent)> = Vec::new();
    let (mut reset, mut after): (Option<Reset>, Option<Position>) = (None, None);
    for (i, name) in names.iter().enumerate() {
        let replay = hub.store.replay(name, last).await?;
        after = after.max(replay.after);
        if let Some(r) = replay.reset {
            reset = Some(merge(reset, r));
        }
        events.extend(replay.events.into_iter().map(|e| (i, e)));
    }
    // Replays read one after the other are no snapshot of one instant: past the cut, a channel read
    // late holds events that an earlier-read channel's later events (sent live) must precede.
    if let Some(cut) = cut {
        events.retain(|(_, e)| e.position <= cut);
    }
    sort_and_dedup(&mut events);
    if let Some(mut reset) = reset {
        // Resuming from the reset's id must not repeat what the channels that placed the id send.
        reset.floor = reset.floor.max(after.unwrap_or_default());
        hub.metrics.reset(reset.reason == ResetReason::Expired);
        prelude.push_back(control::reset(&reset, last)?);
        tracing::debug!(channels = %composite.channel.name, last_event_id = last, reason = reset.reason.as_str(), "sse-reset");
    }
    // Live skips what is at or before `seen_through`: with a cut, exactly what the replays covered.
    let mut seen_through = after.max(cut);
    for (i, event) in events {
        hub.metrics.replayed.fetch_add(1, Ordering::Relaxed);
        seen_through = seen_through.max(Some(event.position));
        prelude.push_back(composite.render(&names[i], &event));
    }
    Ok((prelude, seen_through.into()))
}

/// The channels a resume replays: the named ones, then the stored channels a pattern matches and
/// the `probes` (when there are patterns).
async fn followed<S: AsRef<str>>(
    hub: &Inner,
    composite: &Composite,
    probes: &[S],
) -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = composite
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::Channel(name) => Some(name.to_string()),
            Entry::Pattern(_) => None,
        })
        .collect();
    if composite.has_patterns() {
        for c in hub.store.channels().await? {
            if composite.follows(&c.name) && !names.contains(&c.name) {
                names.push(c.name);
            }
        }
        names.extend(probes.iter().map(|p| p.as_ref().to_owned()));
    }
    Ok(names)
}

/// What one sequencer's channels gave a resume with per-sequencer cursors.
#[derive(Default, Clone)]
struct Placed {
    /// The cut: the composite's cursor (at or after what the sequencer had issued once the
    /// composite followed everything); followed events after it reach the composite live.
    cut: Option<Position>,
    /// The highest position the channels placed the id's cursor at.
    after: Option<Position>,
    /// The highest floor of the channels that reset.
    floor: Option<Position>,
    /// What the subscriber has of the sequencer after the replay: live frames at or before it skip.
    seen: Option<Position>,
    /// Index (in the replayed events) of the sequencer's last replayed event.
    last: Option<usize>,
}

/// [`prelude_many`] for a store with several sequencers: the id is a cursor vector
/// (`hub/cursors.rs`). Each followed channel is replayed from its sequencer's cursor (a channel
/// whose sequencer the id has no cursor for — a plain position, a foreign id — from the id as it is,
/// which resets it unless the store places it) up to that sequencer's cut `issued_by` read now;
/// each replayed event gets the vector of what the subscriber has by then as its id; live frames
/// skip per sequencer.
async fn prelude_sequenced(
    hub: &Inner,
    composite: &Composite,
    s: &Sequenced,
    last: &str,
    mut prelude: VecDeque<Bytes>,
) -> Result<(VecDeque<Bytes>, Seen), Error> {
    let from = cursors::parse(last, s.len()).unwrap_or_default();
    catch_up(hub, composite, s, &from, last).await?;
    let mut by = vec![Placed::default(); s.len()];
    // The cut is the composite's own cursors, not the store's `issued_by`: a live event's id is the
    // composite's vector, so replaying past it would make that id say less than the subscriber has.
    // Read before the listing, as with one sequencer.
    for (k, mark) in composite.marks().unwrap_or_default().iter().enumerate() {
        by[k].cut = mark.position();
    }
    let names = followed(hub, composite, &s.probes).await?;
    let (events, reset) = replay_sequenced(s, &names, &from, last, &mut by).await?;
    let mut marks = start_marks(s, &from, &mut by);
    if let Some(reset) = reset {
        hub.metrics.reset(reset.reason == ResetReason::Expired);
        prelude.push_back(control::reset_at(&reset, last, cursors::encode(&marks))?);
        tracing::debug!(channels = %composite.channel.name, last_event_id = last, reason = reset.reason.as_str(), "sse-reset");
    }
    for (j, (i, k, event)) in events.into_iter().enumerate() {
        hub.metrics.replayed.fetch_add(1, Ordering::Relaxed);
        let mut now = marks[k].later(Mark::At(event.position));
        if by[k].last == Some(j) {
            // The sequencer's last replayed event: the subscriber now has it up to the cut.
            now = now.later(by[k].seen.map_or(Mark::Nothing, Mark::At));
        }
        marks[k] = now;
        let id = cursors::encode(&marks);
        let bytes = crate::hub::composite::reencode(&names[i], &event, Some(&id), composite.tag)
            .unwrap_or(event.bytes);
        prelude.push_back(bytes);
    }
    let seen: Vec<Option<Position>> = by.iter().map(|p| p.seen).collect();
    Ok((prelude, Seen::By(seen.into())))
}

/// How long a resume waits for this node's live feed to reach a client's cursors.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(5);

/// Brings the composite's cursors up to the client's where the client is ahead (it comes from a
/// node whose feed is further): for each such sequencer, finds the followed events between the two
/// (they are on their way through this node's feed) and lets [`Composite::catch_up`] wait for them.
/// A cursor the store never issued (a damaged or forged id) is left alone.
async fn catch_up(
    hub: &Inner,
    composite: &Composite,
    s: &Sequenced,
    from: &[Mark],
    last: &str,
) -> Result<(), Error> {
    let marks = composite.marks().unwrap_or_default();
    let ahead = |k: usize| match (from.get(k), marks.get(k)) {
        (Some(&Mark::At(to)), Some(&mark)) => mark < Mark::At(to),
        _ => false,
    };
    if !s.followed().any(ahead) {
        return Ok(());
    }
    let names = followed(hub, composite, &s.probes).await?;
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    for k in s.followed().filter(|&k| ahead(k)) {
        let (Some(Mark::At(to)), Some(&mark)) = (from.get(k), marks.get(k)) else {
            continue;
        };
        if mark >= Mark::At(*to) || s.store.issued_by(k).await? < Some(*to) {
            continue;
        }
        let mut pending = None;
        for name in names.iter().filter(|n| s.store.sequencer(n) == k) {
            let replay = match mark {
                Mark::At(p) => s.store.replay(name, &p.to_string()).await?,
                _ => s.store.replay(name, last).await?,
            };
            let last_before = replay.events.iter().map(|e| e.position).filter(|p| p <= to);
            pending = pending.max(last_before.max());
        }
        if !composite.catch_up(k, *to, pending, deadline).await {
            tracing::debug!(channels = %composite.channel.name, sequencer = k, "this node's live feed did not reach the client's cursor in time; its ids lag until it does");
        }
    }
    Ok(())
}

/// Replays each of `names` from its sequencer's cursor in `from` (empty: the id is no vector) up
/// to its cut: `(name index, sequencer, event)` ordered per sequencer, each once, and the merged
/// reset. Fills `by` (after, floor, seen, last).
async fn replay_sequenced(
    s: &Sequenced,
    names: &[String],
    from: &[Mark],
    last: &str,
    by: &mut [Placed],
) -> Result<(Vec<(usize, usize, StoredEvent)>, Option<Reset>), Error> {
    let mut events: Vec<(usize, usize, StoredEvent)> = Vec::new();
    let mut reset: Option<Reset> = None;
    for (i, name) in names.iter().enumerate() {
        let k = s.store.sequencer(name);
        let Some(placed) = by.get_mut(k).filter(|_| s.follows(k)) else {
            continue;
        };
        let replay = match from.get(k).copied().unwrap_or(Mark::Unfollowed) {
            Mark::At(p) => s.store.replay(name, &p.to_string()).await?,
            // The sequencer had issued nothing when the stream started: all it holds is newer.
            Mark::Nothing => crate::replay::Replay {
                reset: None,
                ..s.store.replay(name, last).await?
            },
            Mark::Unfollowed => s.store.replay(name, last).await?,
        };
        placed.after = placed.after.max(replay.after);
        if let Some(r) = replay.reset {
            placed.floor = placed.floor.max(Some(r.floor));
            reset = Some(merge(reset, r));
        }
        // Past the cut, the event comes live (it is followed already).
        let cut = placed.cut;
        events.extend(
            replay
                .events
                .into_iter()
                .filter(|e| cut.is_some_and(|c| e.position <= c))
                .map(|e| (i, k, e)),
        );
    }
    // One order per sequencer; across sequencers any interleaving will do: by position, then
    // sequencer. A broadcast's copies in channels of one sequencer are one event.
    events.sort_by(|(_, ka, a), (_, kb, b)| {
        (a.position, *ka, &a.bytes).cmp(&(b.position, *kb, &b.bytes))
    });
    events.dedup_by(|(_, ka, a), (_, kb, b)| {
        ka == kb && a.position == b.position && a.bytes == b.bytes
    });
    for (j, (_, k, e)) in events.iter().enumerate() {
        by[*k].seen = by[*k].seen.max(Some(e.position));
        by[*k].last = Some(j);
    }
    Ok((events, reset))
}

/// The cursor vector before the first replayed event (the `sse-reset` event's id): per followed
/// sequencer, where the id placed it (or its reset's floor); a sequencer with nothing replayed is
/// had up to its cut already. Completes each `seen`.
fn start_marks(s: &Sequenced, from: &[Mark], by: &mut [Placed]) -> Vec<Mark> {
    let at = |p: Option<Position>| p.map_or(Mark::Nothing, Mark::At);
    (0..s.len())
        .map(|k| {
            let p = &mut by[k];
            p.seen = p.seen.max(p.after).max(p.cut);
            if !s.follows(k) {
                return Mark::Unfollowed;
            }
            let start = from
                .get(k)
                .copied()
                .unwrap_or(Mark::Unfollowed)
                .later(Mark::Nothing)
                .later(at(p.after))
                .later(at(p.floor));
            match p.last {
                None => start.later(at(p.seen)),
                Some(_) => start,
            }
        })
        .collect()
}

/// Sorts replayed events by position and drops the copies of a broadcast (one position, the same
/// bytes, in several channels); two events that only share a position (an outside `XADD *` in a
/// Redis stream can take an id the sequencer gave another channel) both stay.
fn sort_and_dedup(events: &mut Vec<(usize, StoredEvent)>) {
    events.sort_by(|(_, a), (_, b)| (a.position, &a.bytes).cmp(&(b.position, &b.bytes)));
    events.dedup_by(|(_, a), (_, b)| a.position == b.position && a.bytes == b.bytes);
}

/// One reset for several channels: `expired` when any lost events, the highest floor.
fn merge(into: Option<Reset>, next: Reset) -> Reset {
    let Some(mut into) = into else {
        return next;
    };
    if next.reason == ResetReason::Expired {
        into.reason = ResetReason::Expired;
    }
    if next.floor > into.floor {
        into.floor = next.floor;
    }
    if into.oldest.is_none() {
        into.oldest = next.oldest;
    }
    into
}
