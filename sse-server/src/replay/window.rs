//! The retention window, one rule for every store that keeps its windows itself (memory, durable): per
//! channel the retained events oldest first, their bytes, the floor below which events are gone and the
//! publisher ids still resolvable; across channels, how far whole windows were dropped.
//!
//! Nothing here reads a clock: every call that may evict by age is given `now`, in the store's own
//! [`Moment`] (a monotonic [`Instant`] in memory, wall-clock milliseconds on disk). What a store must
//! mirror elsewhere (the durable store's file) it learns through a [`Journal`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::placement::{self, Issued, WindowView};
use super::retention::Retention;
use super::store::{Replay, StoredChannel};
use super::stored::StoredEvent;
use crate::position::Position;

/// When an event was appended, in a store's own clock.
pub(crate) trait Moment: Copy + fmt::Debug {
    /// Whether, at `now`, at least `age` has passed since `self`.
    fn aged(self, now: Self, age: Duration) -> bool;
}

impl Moment for Instant {
    fn aged(self, now: Self, age: Duration) -> bool {
        now.saturating_duration_since(self) >= age
    }
}

/// Wall-clock milliseconds since 1970: ages that survive a restart.
impl Moment for u64 {
    fn aged(self, now: Self, age: Duration) -> bool {
        u128::from(now.saturating_sub(self)) >= age.as_millis()
    }
}

/// What a window tells about each change it makes, for a store that mirrors them (every method defaults
/// to ignoring the change; `()` ignores them all).
pub(crate) trait Journal<T> {
    /// `channel` got a window: every event of it after `floor` is retained.
    fn opened(&mut self, _channel: &str, _floor: Position) {}
    /// `gone` left `channel`'s window.
    fn evicted(&mut self, _channel: &str, _gone: &Entry<T>) {}
    /// Evictions raised `channel`'s floor to `floor`.
    fn floor_moved(&mut self, _channel: &str, _floor: Position) {}
    /// `channel`'s window was left empty and forgotten.
    fn dropped(&mut self, _channel: &str) {}
    /// Every dropped window's events are at or below position `minor` now.
    fn dropped_through(&mut self, _minor: u64) {}
}

impl<T> Journal<T> for () {}

/// One retained event.
#[derive(Debug, Clone)]
pub(crate) struct Entry<T> {
    pub(crate) event: StoredEvent,
    /// When it was appended.
    pub(crate) at: T,
    /// Its id is the publisher's (or a broadcast's), not its position's.
    pub(crate) custom: bool,
}

/// One channel's retained events.
#[derive(Debug)]
pub(crate) struct Window<T> {
    events: VecDeque<Entry<T>>,
    bytes: usize,
    /// Every event of this channel after `floor` is still retained.
    floor: Position,
    /// Publisher-supplied (and broadcast) ids of retained events.
    custom: HashMap<Arc<str>, Position>,
}

impl<T: Moment> Window<T> {
    fn new(floor: Position) -> Self {
        Window {
            events: VecDeque::new(),
            bytes: 0,
            floor,
            custom: HashMap::new(),
        }
    }

    fn push(&mut self, entry: Entry<T>) {
        self.bytes += entry.event.bytes.len();
        if entry.custom {
            self.custom
                .insert(entry.event.id.clone(), entry.event.position);
        }
        self.events.push_back(entry);
    }

    /// Drops the oldest events while any bound of `retention` is exceeded at `now`.
    fn enforce(
        &mut self,
        channel: &str,
        retention: &Retention,
        now: T,
        journal: &mut impl Journal<T>,
    ) {
        let mut moved = false;
        while let Some(front) = self.events.front() {
            let too_many = self.events.len() > retention.events();
            let too_big = self.bytes > retention.bytes();
            let too_old = front.at.aged(now, retention.age());
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
                journal.evicted(channel, &gone);
            }
        }
        if moved {
            journal.floor_moved(channel, self.floor);
        }
    }

    fn view(&self) -> WindowView<'_, Entry<T>> {
        WindowView {
            events: &self.events,
            floor: self.floor,
            custom: &self.custom,
        }
    }
}

/// Every channel's window in a store whose positions are `<epoch>-<n>`.
#[derive(Debug)]
pub(crate) struct Windows<T> {
    epoch: u64,
    /// Highest position of any event whose whole window was dropped: a channel without a window lost
    /// nothing after it.
    dropped_through: u64,
    map: HashMap<String, Window<T>>,
}

impl<T: Moment> Windows<T> {
    /// No windows yet, for positions of `epoch`, with everything through `dropped_through` dropped.
    pub(crate) fn new(epoch: u64, dropped_through: u64) -> Self {
        Windows {
            epoch,
            dropped_through,
            map: HashMap::new(),
        }
    }

    /// The `major` part of every position.
    #[cfg(any(test, feature = "durable"))]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Highest position of any event whose whole window was dropped.
    #[cfg(any(test, feature = "durable"))]
    pub(crate) fn dropped_through(&self) -> u64 {
        self.dropped_through
    }

    /// How many channels have a window.
    #[cfg(any(test, feature = "durable"))]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// How many events are retained in all windows.
    #[cfg(any(test, feature = "durable"))]
    pub(crate) fn retained(&self) -> usize {
        self.map.values().map(|w| w.events.len()).sum()
    }

    /// Restores a window as it was saved, with the position every retained event follows (no eviction).
    #[cfg(any(test, feature = "durable"))]
    pub(crate) fn restore_floor(&mut self, channel: String, floor_minor: u64) {
        let floor = Position::new(self.epoch, floor_minor);
        self.map.insert(channel, Window::new(floor));
    }

    /// Restores a saved event at the end of `channel`'s window (no eviction).
    #[cfg(any(test, feature = "durable"))]
    pub(crate) fn restore(&mut self, channel: &str, entry: Entry<T>) {
        let floor = Position::new(self.epoch, self.dropped_through);
        self.map
            .entry(channel.to_owned())
            .or_insert_with(|| Window::new(floor))
            .push(entry);
    }

    /// Appends `entry` to `channel` (opening its window) and evicts what `retention` no longer keeps.
    pub(crate) fn append(
        &mut self,
        channel: &str,
        entry: Entry<T>,
        retention: &Retention,
        now: T,
        journal: &mut impl Journal<T>,
    ) {
        let floor = Position::new(self.epoch, self.dropped_through);
        let window = self.map.entry(channel.to_owned()).or_insert_with(|| {
            journal.opened(channel, floor);
            Window::new(floor)
        });
        window.push(entry);
        window.enforce(channel, retention, now, journal);
    }

    /// Enforces retention everywhere and forgets windows left empty, raising `dropped_through`, so that
    /// many short-lived channels do not accumulate.
    pub(crate) fn prune(&mut self, retention: &Retention, now: T, journal: &mut impl Journal<T>) {
        let mut dropped_through = self.dropped_through;
        self.map.retain(|name, w| {
            w.enforce(name, retention, now, journal);
            let keep = !w.events.is_empty();
            if !keep {
                dropped_through = dropped_through.max(w.floor.minor());
                journal.dropped(name);
            }
            keep
        });
        if dropped_through != self.dropped_through {
            self.dropped_through = dropped_through;
            journal.dropped_through(dropped_through);
        }
    }

    /// Everything retained in `channel` after `last_event_id` at `now`; `counter` is the last position
    /// issued (see [`placement::place`]).
    pub(crate) fn replay(
        &mut self,
        channel: &str,
        last_event_id: &str,
        counter: u64,
        retention: &Retention,
        now: T,
        journal: &mut impl Journal<T>,
    ) -> Replay {
        let issued = Issued {
            epoch: self.epoch,
            counter,
            dropped_through: self.dropped_through,
        };
        let window = self.map.get_mut(channel).map(|window| {
            window.enforce(channel, retention, now, journal);
            window.view()
        });
        placement::place(last_event_id, issued, window, |e: &Entry<T>| &e.event)
    }

    /// The channels with retained events at `now`, after pruning.
    pub(crate) fn channels(
        &mut self,
        retention: &Retention,
        now: T,
        journal: &mut impl Journal<T>,
    ) -> Vec<StoredChannel> {
        self.prune(retention, now, journal);
        self.map
            .iter()
            .map(|(name, w)| StoredChannel {
                name: name.clone(),
                last_id: w.events.back().map(|e| e.event.id.to_string()),
            })
            .collect()
    }
}

/// What tests look at.
#[cfg(test)]
impl<T> Window<T> {
    /// The retained events, oldest first.
    pub(crate) fn events(&self) -> &VecDeque<Entry<T>> {
        &self.events
    }

    /// The encoded bytes retained.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
impl<T> Windows<T> {
    /// `channel`'s window, if it has one.
    pub(crate) fn get(&self, channel: &str) -> Option<&Window<T>> {
        self.map.get(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1000;

    fn entry(minor: u64, at: u64, bytes: &'static str) -> Entry<u64> {
        Entry {
            event: StoredEvent {
                position: Position::new(1, minor),
                id: Arc::from(Position::new(1, minor).to_string()),
                bytes: bytes.into(),
            },
            at,
            custom: false,
        }
    }

    fn minors(w: &Windows<u64>, channel: &str) -> Vec<u64> {
        w.get(channel).map_or_else(Vec::new, |w| {
            w.events()
                .iter()
                .map(|e| e.event.position.minor())
                .collect()
        })
    }

    /// Records what the window tells, as the durable store's journal does.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Journal<u64> for Log {
        fn opened(&mut self, channel: &str, floor: Position) {
            self.0.push(format!("open {channel} {floor}"));
        }
        fn evicted(&mut self, channel: &str, gone: &Entry<u64>) {
            self.0
                .push(format!("evict {channel} {}", gone.event.position));
        }
        fn floor_moved(&mut self, channel: &str, floor: Position) {
            self.0.push(format!("floor {channel} {floor}"));
        }
        fn dropped(&mut self, channel: &str) {
            self.0.push(format!("drop {channel}"));
        }
        fn dropped_through(&mut self, minor: u64) {
            self.0.push(format!("dropped through {minor}"));
        }
    }

    #[test]
    fn age_is_measured_on_the_clock_passed_in() {
        // A simulated clock: milliseconds chosen by the test, no waiting.
        let retention = Retention::default().max_age(Duration::from_secs(60));
        let mut w = Windows::new(1, 0);
        let mut log = Log::default();
        for (minor, at) in [(1, 0), (2, 30 * SECOND), (3, 50 * SECOND)] {
            w.append("c", entry(minor, at, "x"), &retention, at, &mut log);
        }
        assert_eq!(minors(&w, "c"), [1, 2, 3]);
        // Just short of a minute after the first event: all kept.
        w.prune(&retention, 60 * SECOND - 1, &mut log);
        assert_eq!(minors(&w, "c"), [1, 2, 3]);
        // A minute after it: the first goes, the floor follows.
        let r = w.replay("c", "1-1", 3, &retention, 60 * SECOND, &mut log);
        assert_eq!(minors(&w, "c"), [2, 3]);
        assert_eq!(r.reset.map(|r| r.floor), None);
        assert_eq!(r.events.len(), 2);
        // Long after: the window empties, is forgotten, and `dropped_through` remembers its floor.
        let listed = w.channels(&retention, 200 * SECOND, &mut log);
        assert!(listed.is_empty());
        assert_eq!(w.dropped_through(), 3);
        assert_eq!(
            log.0,
            [
                "open c 1-0",
                "evict c 1-1",
                "floor c 1-1",
                "evict c 1-2",
                "evict c 1-3",
                "floor c 1-3",
                "drop c",
                "dropped through 3",
            ]
        );
    }

    #[test]
    fn monotonic_instants_age_alike() {
        let retention = Retention::default().max_age(Duration::from_secs(10));
        let start = Instant::now();
        let mut w = Windows::new(1, 0);
        let at = |s: u64| start + Duration::from_secs(s);
        for (minor, s) in [(1, 0), (2, 5)] {
            let e = entry(minor, 0, "x");
            let e = Entry {
                event: e.event,
                at: at(s),
                custom: false,
            };
            w.append("c", e, &retention, at(s), &mut ());
        }
        w.prune(&retention, at(12), &mut ());
        assert_eq!(w.get("c").map(|w| w.events().len()), Some(1));
        w.prune(&retention, at(15), &mut ());
        assert_eq!(w.len(), 0);
        assert_eq!(w.dropped_through(), 2);
    }

    #[test]
    fn count_and_byte_bounds_evict_oldest_first() {
        let mut w = Windows::new(1, 0);
        let by_count = Retention::default().max_events(2);
        for minor in 1..=4 {
            w.append("c", entry(minor, 0, "abcd"), &by_count, 0, &mut ());
        }
        assert_eq!(minors(&w, "c"), [3, 4]);
        let by_bytes = Retention::default().max_bytes(9);
        for minor in 5..=7 {
            w.append("d", entry(minor, 0, "abcd"), &by_bytes, 0, &mut ());
        }
        assert_eq!(minors(&w, "d"), [6, 7]);
        assert_eq!(w.get("d").map(Window::bytes), Some(8));
        assert_eq!(w.retained(), 4);
    }
}
