//! Placing a `Last-Event-ID` in a channel's window, for the stores that number events `<epoch>-<n>`
//! themselves (memory and durable): one rule, so both backends answer a resume exactly alike.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::store::{Replay, Reset, ResetReason};
use super::stored::StoredEvent;
use crate::position::Position;

/// What a store holds for one channel, borrowed for the time of one placement.
pub(super) struct WindowView<'a, E> {
    /// Retained entries, oldest first.
    pub(super) events: &'a VecDeque<E>,
    /// Every event of the channel after this position is retained.
    pub(super) floor: Position,
    /// Publisher-supplied (and broadcast) ids of retained events.
    pub(super) custom: &'a HashMap<Arc<str>, Position>,
}

/// The ids a store has issued: `<epoch>-<n>` with `n <= counter`.
#[derive(Clone, Copy)]
pub(super) struct Issued {
    pub(super) epoch: u64,
    pub(super) counter: u64,
    /// Highest position of any event whose channel's whole window was dropped.
    pub(super) dropped_through: u64,
}

impl Issued {
    fn issued(&self, p: Position) -> bool {
        p.major() == self.epoch && p.minor() <= self.counter
    }
}

/// Everything retained after `last_event_id`, or a reset saying why it cannot be placed.
///
/// An id resolves through the channel's custom ids first, then as a position this store issued; an
/// issued position below the window's floor has lost events after it (`Expired`); anything else was
/// never issued here (`Unknown`). A channel with no window at all missed nothing after an issued id
/// newer than every dropped event.
pub(super) fn place<E>(
    last_event_id: &str,
    issued: Issued,
    window: Option<WindowView<'_, E>>,
    stored: impl Fn(&E) -> &StoredEvent,
) -> Replay {
    let Some(window) = window else {
        let floor = Position::new(issued.epoch, issued.dropped_through);
        return match last_event_id.parse::<Position>() {
            Ok(p) if issued.issued(p) && p >= floor => Replay {
                events: Vec::new(),
                reset: None,
                after: Some(p),
            },
            parsed => Replay {
                events: Vec::new(),
                reset: Some(Reset {
                    reason: match parsed {
                        Ok(p) if issued.issued(p) => ResetReason::Expired,
                        _ => ResetReason::Unknown,
                    },
                    floor,
                    oldest: None,
                }),
                after: None,
            },
        };
    };
    let resolved = match window.custom.get(last_event_id) {
        Some(&p) => Ok(p),
        None => match last_event_id.parse::<Position>() {
            Ok(p) if issued.issued(p) && p >= window.floor => Ok(p),
            Ok(p) if issued.issued(p) => Err(ResetReason::Expired),
            _ => Err(ResetReason::Unknown),
        },
    };
    match resolved {
        Ok(after) => {
            let start = window
                .events
                .partition_point(|e| stored(e).position <= after);
            Replay {
                events: window
                    .events
                    .range(start..)
                    .map(|e| stored(e).clone())
                    .collect(),
                reset: None,
                after: Some(after),
            }
        }
        Err(reason) => Replay {
            events: window.events.iter().map(|e| stored(e).clone()).collect(),
            reset: Some(Reset {
                reason,
                floor: window.floor,
                oldest: window.events.front().map(|e| stored(e).id.clone()),
            }),
            after: None,
        },
    }
}
