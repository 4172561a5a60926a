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
use crate::hub::composite::{Composite, Entry};
use crate::hub::control;
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
    // One slot per event, not the doubling growth's up to twice that: every subscriber of a storm
    // holds its queue until the replay is written.
    prelude.reserve_exact(replay.events.len());
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
/// the id.
pub(crate) async fn prelude_many(
    hub: &Inner,
    composite: &Composite,
    last_event_id: Option<&str>,
    welcome: Option<Event>,
) -> Result<(VecDeque<Bytes>, Option<Position>), Error> {
    let mut prelude = opening(hub, welcome)?;
    let Some(last) = last_event_id else {
        return Ok((prelude, None));
    };
    // The cut between replay and live, read now that the composite follows every channel and before
    // the listing: everything after it reaches the composite live, everything up to it is stored.
    let cut = hub.store.issued().await?;
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
        names.push(NO_CHANNEL.to_owned());
    }
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
    prelude.reserve_exact(events.len());
    for (i, event) in events {
        hub.metrics.replayed.fetch_add(1, Ordering::Relaxed);
        seen_through = seen_through.max(Some(event.position));
        prelude.push_back(composite.render(&names[i], &event));
    }
    Ok((prelude, seen_through))
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
