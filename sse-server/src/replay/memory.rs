use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sse_proto::Event;

use super::placement::{self, Issued, WindowView};
use super::{BoxFuture, Replay, ReplayStore, Retention, StoredChannel, StoredEvent};
use crate::{Error, Position};

/// The in-memory replay store: each channel keeps a window of encoded events bounded by [`Retention`].
///
/// Positions are `(epoch, counter)`: the epoch is the store's creation time in milliseconds (strictly
/// increasing within a process), the counter is shared by all channels. Ids issued by an earlier process
/// therefore never collide with new ones, sort before them, and are answered with a reset.
///
/// ```
/// use sse_server::{MemoryStore, Retention};
/// let store = MemoryStore::new(Retention::default().max_events(100));
/// assert!(store.epoch() > 0);
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    epoch: u64,
    retention: Retention,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Last minor position handed out, shared by every channel so broadcast ids can be minted too.
    counter: u64,
    /// Highest position of any event whose whole window was dropped: a channel without a window lost
    /// nothing after it.
    dropped_through: u64,
    windows: HashMap<String, Window>,
}

#[derive(Debug)]
struct Window {
    events: VecDeque<Entry>,
    bytes: usize,
    /// Every event of this channel after `floor` is still retained.
    floor: Position,
    /// Publisher-supplied (and broadcast) ids of retained events.
    custom: HashMap<Arc<str>, Position>,
    last_id: Option<Arc<str>>,
}

#[derive(Debug)]
struct Entry {
    event: StoredEvent,
    at: Instant,
    custom: bool,
}

/// Appends between two sweeps of every window (amortises the sweep to O(1) per append).
const PRUNE_EVERY: u64 = 1024;

static LAST_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Milliseconds since 1970, bumped so two stores in one process never share an epoch.
fn fresh_epoch() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    let mut prev = LAST_EPOCH.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST_EPOCH.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => prev = actual,
        }
    }
}

impl MemoryStore {
    /// A store with a fresh epoch.
    ///
    /// ```
    /// let a = sse_server::MemoryStore::new(Default::default());
    /// let b = sse_server::MemoryStore::new(Default::default());
    /// assert!(b.epoch() > a.epoch());
    /// ```
    pub fn new(retention: Retention) -> Self {
        MemoryStore {
            epoch: fresh_epoch(),
            retention,
            state: Mutex::new(State::default()),
        }
    }

    /// The epoch: the `major` part of every position this store issues.
    ///
    /// ```
    /// let s = sse_server::MemoryStore::new(Default::default());
    /// assert!(s.epoch() > 1_600_000_000_000);
    /// ```
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The retention this store enforces.
    ///
    /// ```
    /// let s = sse_server::MemoryStore::new(Default::default());
    /// assert_eq!(s.retention().events(), 1000);
    /// ```
    pub fn retention(&self) -> Retention {
        self.retention
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the window half-updated in a way that matters more
        // than stopping the hub would, so recover the guard.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops expired events everywhere and forgets channels left without any, so that many short-lived
    /// channels do not accumulate.
    fn prune(state: &mut State, retention: &Retention, now: Instant) {
        let mut dropped_through = state.dropped_through;
        state.windows.retain(|_, w| {
            w.enforce(retention, now);
            let keep = !w.events.is_empty();
            if !keep {
                dropped_through = dropped_through.max(w.floor.minor());
            }
            keep
        });
        state.dropped_through = dropped_through;
    }

    fn append_now(&self, channel: &str, mut event: Event) -> Result<StoredEvent, Error> {
        let mut state = self.lock();
        if state.counter % PRUNE_EVERY == PRUNE_EVERY - 1 {
            Self::prune(&mut state, &self.retention, Instant::now());
        }
        let floor = Position::new(self.epoch, state.dropped_through);
        state.counter += 1;
        let position = Position::new(self.epoch, state.counter);
        let custom = event.id().is_some();
        if !custom {
            event = event.with_id(position.to_string())?;
        }
        let id: Arc<str> = Arc::from(event.id().unwrap_or_default());
        let stored = StoredEvent {
            position,
            id: id.clone(),
            bytes: sse_proto::encode(&event),
        };
        let window = state
            .windows
            .entry(channel.to_owned())
            .or_insert_with(|| Window {
                events: VecDeque::new(),
                bytes: 0,
                floor,
                custom: HashMap::new(),
                last_id: None,
            });
        window.last_id = Some(id.clone());
        window.bytes += stored.bytes.len();
        if custom {
            window.custom.insert(id, position);
        }
        window.events.push_back(Entry {
            event: stored.clone(),
            at: Instant::now(),
            custom,
        });
        window.enforce(&self.retention, Instant::now());
        Ok(stored)
    }

    fn replay_now(&self, channel: &str, last_event_id: &str) -> Replay {
        let mut state = self.lock();
        let issued = Issued {
            epoch: self.epoch,
            counter: state.counter,
            dropped_through: state.dropped_through,
        };
        let window = state.windows.get_mut(channel).map(|window| {
            window.enforce(&self.retention, Instant::now());
            WindowView {
                events: &window.events,
                floor: window.floor,
                custom: &window.custom,
            }
        });
        placement::place(last_event_id, issued, window, |e: &Entry| &e.event)
    }
}

impl Window {
    fn enforce(&mut self, retention: &Retention, now: Instant) {
        while let Some(front) = self.events.front() {
            let too_many = self.events.len() > retention.events();
            let too_big = self.bytes > retention.bytes();
            let too_old = now.saturating_duration_since(front.at) >= retention.age();
            if !(too_many || too_big || too_old) {
                break;
            }
            if let Some(gone) = self.events.pop_front() {
                self.bytes -= gone.event.bytes.len();
                self.floor = gone.event.position;
                if gone.custom && self.custom.get(&gone.event.id) == Some(&gone.event.position) {
                    self.custom.remove(&gone.event.id);
                }
            }
        }
    }
}

impl ReplayStore for MemoryStore {
    fn append<'a>(
        &'a self,
        channel: &'a str,
        event: Event,
    ) -> BoxFuture<'a, Result<StoredEvent, Error>> {
        let result = self.append_now(channel, event);
        Box::pin(async move { result })
    }

    fn replay<'a>(
        &'a self,
        channel: &'a str,
        last_event_id: &'a str,
    ) -> BoxFuture<'a, Result<Replay, Error>> {
        let replay = self.replay_now(channel, last_event_id);
        Box::pin(async move { Ok(replay) })
    }

    fn mint_id(&self) -> BoxFuture<'_, Result<String, Error>> {
        let mut state = self.lock();
        state.counter += 1;
        let id = Position::new(self.epoch, state.counter).to_string();
        Box::pin(async move { Ok(id) })
    }

    fn channels(&self) -> BoxFuture<'_, Result<Vec<StoredChannel>, Error>> {
        let now = Instant::now();
        let mut state = self.lock();
        Self::prune(&mut state, &self.retention, now);
        let list = state
            .windows
            .iter()
            .map(|(name, w)| StoredChannel {
                name: name.clone(),
                last_id: w.last_id.as_deref().map(str::to_owned),
            })
            .collect();
        Box::pin(async move { Ok(list) })
    }
}

/// Bytes retained by a window, for tests of the byte bound.
#[cfg(test)]
fn window_bytes(store: &MemoryStore, channel: &str) -> usize {
    store.lock().windows.get(channel).map_or(0, |w| w.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ResetReason;
    use std::time::Duration;

    fn ids(r: &Replay) -> Vec<String> {
        r.events.iter().map(|e| e.id.to_string()).collect()
    }

    #[test]
    fn replays_after_hub_and_custom_ids() {
        let s = MemoryStore::new(Retention::default());
        let a = s.append_now("c", Event::message("a")).unwrap();
        let b = s
            .append_now("c", Event::builder().id("mine").data("b").build().unwrap())
            .unwrap();
        let c = s.append_now("c", Event::message("c")).unwrap();
        assert!(a.position < b.position && b.position < c.position);
        assert_eq!(
            ids(&s.replay_now("c", &a.id)),
            vec!["mine".to_string(), c.id.to_string()]
        );
        assert_eq!(ids(&s.replay_now("c", "mine")), vec![c.id.to_string()]);
        assert!(s.replay_now("c", &c.id).events.is_empty());
        assert!(s.replay_now("c", &c.id).reset.is_none());
    }

    #[test]
    fn evicted_ids_reset_with_the_oldest_retained() {
        let s = MemoryStore::new(Retention::default().max_events(2));
        let a = s.append_now("c", Event::message("a")).unwrap();
        let b = s.append_now("c", Event::message("b")).unwrap();
        let c = s.append_now("c", Event::message("c")).unwrap();
        let d = s.append_now("c", Event::message("d")).unwrap();
        // `b` was the last evicted: everything after it is still here, so no reset.
        let r = s.replay_now("c", &b.id);
        assert!(r.reset.is_none());
        assert_eq!(ids(&r), vec![c.id.to_string(), d.id.to_string()]);
        let r = s.replay_now("c", &a.id);
        let reset = r.reset.clone().unwrap();
        assert_eq!(reset.reason, ResetReason::Expired);
        assert_eq!(reset.oldest.as_deref(), Some(&*c.id));
        assert_eq!(ids(&r), vec![c.id.to_string(), d.id.to_string()]);
        // The floor id resumes from the start of the window.
        let r = s.replay_now("c", &reset.floor.to_string());
        assert!(r.reset.is_none());
        assert_eq!(r.events.len(), 2);
    }

    #[test]
    fn ids_from_another_epoch_or_the_future_are_unknown() {
        let old = MemoryStore::new(Retention::default());
        let stale = old.append_now("c", Event::message("x")).unwrap();
        let s = MemoryStore::new(Retention::default());
        s.append_now("c", Event::message("y")).unwrap();
        for id in [
            stale.id.to_string(),
            format!("{}-999", s.epoch()),
            "nope".into(),
        ] {
            let r = s.replay_now("c", &id);
            assert_eq!(
                r.reset.map(|r| r.reason),
                Some(ResetReason::Unknown),
                "{id}"
            );
            assert_eq!(r.events.len(), 1);
        }
    }

    #[test]
    fn expired_channels_are_forgotten_but_their_ids_stay_resumable() {
        let s = MemoryStore::new(Retention::default().max_age(Duration::ZERO));
        let a = s.append_now("gone", Event::message("x")).unwrap();
        for i in 0..PRUNE_EVERY {
            s.append_now(&format!("c{i}"), Event::message("y")).unwrap();
        }
        assert!(
            s.lock().windows.len() < 10,
            "expired windows were not swept"
        );
        // An id issued after everything that was dropped is still a valid (empty) resume point...
        let last = s.append_now("other", Event::message("z")).unwrap();
        let r = s.replay_now("gone", &last.id);
        assert!(r.reset.is_none());
        // ...while one from before the sweep may have missed events: reset.
        let r = s.replay_now("gone", &a.id);
        assert_eq!(r.reset.map(|r| r.reason), Some(ResetReason::Expired));
    }

    #[test]
    fn byte_and_age_bounds_evict() {
        let s = MemoryStore::new(Retention::default().max_bytes(40));
        for _ in 0..10 {
            s.append_now("c", Event::message("0123456789")).unwrap();
        }
        assert!(window_bytes(&s, "c") <= 40);
        let s = MemoryStore::new(Retention::default().max_age(Duration::ZERO));
        let a = s.append_now("c", Event::message("x")).unwrap();
        assert!(s.replay_now("c", &a.id).events.is_empty());
    }
}
