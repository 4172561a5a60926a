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
use crate::hub::control;
use crate::hub::registry::Inner;
use crate::position::Position;

/// The bytes a subscriber of `channel` gets first, and the position through which it has seen
/// the channel (live events at or before it are skipped).
pub(crate) async fn prelude(
    hub: &Inner,
    channel: &str,
    last_event_id: Option<&str>,
    welcome: Option<Event>,
) -> Result<(VecDeque<Bytes>, Option<Position>), Error> {
    let mut prelude = VecDeque::new();
    if let Some(retry) = hub.config.retry {
        prelude.push_back(control::retry(retry)?);
    }
    if let Some(welcome) = welcome {
        prelude.push_back(sse_proto::encode(&welcome));
    }
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
