//! The in-memory image of the durable store: each channel's window, exactly as on disk once the writer's
//! last commit returned. Replays are answered from it; every change to it is mirrored by an [`Op`] that
//! the writer commits.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::format::Op;
use crate::Position;
use crate::replay::placement::{self, Issued, WindowView};
use crate::replay::{Replay, Retention, StoredChannel, StoredEvent};

/// Everything the store knows, behind one lock.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) epoch: u64,
    /// Highest position of any event whose whole window was dropped (as in the memory store).
    pub(super) dropped_through: u64,
    pub(super) windows: HashMap<String, Window>,
    /// Changes made outside the writer (age evictions noticed by a replay): committed with the next batch.
    pub(super) pending: Vec<Op>,
}

#[derive(Debug)]
pub(super) struct Window {
    pub(super) events: VecDeque<Entry>,
    pub(super) bytes: usize,
    /// Every event of this channel after `floor` is still retained.
    pub(super) floor: Position,
    /// Publisher-supplied (and broadcast) ids of retained events.
    pub(super) custom: HashMap<Arc<str>, Position>,
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) event: StoredEvent,
    /// Wall-clock milliseconds at append: ages must survive a restart, so no `Instant`.
    pub(super) at_ms: u64,
    pub(super) custom: bool,
}

impl Window {
    pub(super) fn new(floor: Position) -> Self {
        Window {
            events: VecDeque::new(),
            bytes: 0,
            floor,
            custom: HashMap::new(),
        }
    }

    pub(super) fn push(&mut self, entry: Entry) {
        self.bytes += entry.event.bytes.len();
        if entry.custom {
            self.custom
                .insert(entry.event.id.clone(), entry.event.position);
        }
        self.events.push_back(entry);
    }

    /// Drops the oldest events while any bound is exceeded, recording each deletion (and the new floor)
    /// in `ops`. The same rule as the memory store's window, with wall-clock ages.
    pub(super) fn enforce(
        &mut self,
        channel: &str,
        retention: &Retention,
        now_ms: u64,
        ops: &mut Vec<Op>,
    ) {
        let max_age = retention.age().as_millis();
        let mut moved = false;
        while let Some(front) = self.events.front() {
            let too_many = self.events.len() > retention.events();
            let too_big = self.bytes > retention.bytes();
            let too_old = u128::from(now_ms.saturating_sub(front.at_ms)) >= max_age;
            if !(too_many || too_big || too_old) {
                break;
            }
            if let Some(gone) = self.events.pop_front() {
                self.bytes -= gone.event.bytes.len();
                self.floor = gone.event.position;
                moved = true;
                if gone.custom && self.custom.get(&gone.event.id) == Some(&gone.event.position) {
                    self.custom.remove(&gone.event.id);
                }
                ops.push(Op::Delete {
                    channel: channel.to_owned(),
                    minor: gone.event.position.minor(),
                });
            }
        }
        if moved {
            ops.push(Op::Floor {
                channel: channel.to_owned(),
                minor: self.floor.minor(),
            });
        }
    }
}

impl State {
    /// Enforces retention everywhere and forgets windows left empty, raising `dropped_through`.
    pub(super) fn prune(&mut self, retention: &Retention, now_ms: u64, ops: &mut Vec<Op>) {
        let mut dropped_through = self.dropped_through;
        self.windows.retain(|name, w| {
            w.enforce(name, retention, now_ms, ops);
            let keep = !w.events.is_empty();
            if !keep {
                dropped_through = dropped_through.max(w.floor.minor());
                ops.push(Op::DropChannel {
                    channel: name.clone(),
                });
            }
            keep
        });
        if dropped_through != self.dropped_through {
            self.dropped_through = dropped_through;
            ops.push(Op::Meta {
                key: super::format::DROPPED_THROUGH,
                value: dropped_through,
            });
        }
    }

    /// Everything retained in `channel` after `last_event_id`; `counter` is the last position issued.
    /// Age evictions it performs are queued in `pending` for the writer.
    pub(super) fn replay(
        &mut self,
        channel: &str,
        last_event_id: &str,
        counter: u64,
        retention: &Retention,
        now_ms: u64,
    ) -> Replay {
        let issued = Issued {
            epoch: self.epoch,
            counter,
            dropped_through: self.dropped_through,
        };
        let pending = &mut self.pending;
        let window = self.windows.get_mut(channel).map(|window| {
            window.enforce(channel, retention, now_ms, pending);
            WindowView {
                events: &window.events,
                floor: window.floor,
                custom: &window.custom,
            }
        });
        placement::place(last_event_id, issued, window, |e: &Entry| &e.event)
    }

    /// The channels with retained events, after pruning (changes queued for the writer).
    pub(super) fn channels(&mut self, retention: &Retention, now_ms: u64) -> Vec<StoredChannel> {
        let mut ops = std::mem::take(&mut self.pending);
        self.prune(retention, now_ms, &mut ops);
        self.pending = ops;
        self.windows
            .iter()
            .map(|(name, w)| StoredChannel {
                name: name.clone(),
                last_id: w.events.back().map(|e| e.event.id.to_string()),
            })
            .collect()
    }
}
