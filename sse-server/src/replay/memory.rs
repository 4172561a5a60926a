use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sse_proto::Event;

use super::retention::Retention;
use super::store::{BoxFuture, Replay, ReplayStore, StoredChannel};
use super::stored::{self, StoredEvent};
use super::window::{Entry, Windows};
use crate::error::Error;
use crate::position::Position;

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

#[derive(Debug)]
struct State {
    /// Last minor position handed out, shared by every channel so broadcast ids can be minted too.
    counter: u64,
    windows: Windows<Instant>,
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
        let epoch = fresh_epoch();
        MemoryStore {
            epoch,
            retention,
            state: Mutex::new(State {
                counter: 0,
                windows: Windows::new(epoch, 0),
            }),
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

    fn append_now(&self, channel: &str, event: Event) -> Result<StoredEvent, Error> {
        self.append_all_now(std::slice::from_ref(&channel), event)
    }

    /// Appends `event` at one position to every channel of `channels`.
    fn append_all_now<S: AsRef<str>>(
        &self,
        channels: &[S],
        event: Event,
    ) -> Result<StoredEvent, Error> {
        let mut state = self.lock();
        let now = Instant::now();
        if state.counter % PRUNE_EVERY == PRUNE_EVERY - 1 {
            state.windows.prune(&self.retention, now, &mut ());
        }
        state.counter += 1;
        let stamped = stored::stamp(Position::new(self.epoch, state.counter), event)?;
        let entry = Entry {
            event: stamped.event.clone(),
            at: now,
            custom: stamped.custom,
        };
        for channel in channels {
            state.windows.append(
                channel.as_ref(),
                entry.clone(),
                &self.retention,
                now,
                &mut (),
            );
        }
        Ok(stamped.event)
    }

    fn replay_now(&self, channel: &str, last_event_id: &str) -> Replay {
        let mut state = self.lock();
        let now = Instant::now();
        let counter = state.counter;
        state.windows.replay(
            channel,
            last_event_id,
            counter,
            &self.retention,
            now,
            &mut (),
        )
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

    fn append_all<'a>(
        &'a self,
        channels: &'a [String],
        event: Event,
    ) -> BoxFuture<'a, Result<StoredEvent, Error>> {
        let result = self.append_all_now(channels, event);
        Box::pin(async move { result })
    }

    fn mint_id(&self) -> BoxFuture<'_, Result<String, Error>> {
        let mut state = self.lock();
        state.counter += 1;
        let id = Position::new(self.epoch, state.counter).to_string();
        Box::pin(async move { Ok(id) })
    }

    fn channels(&self) -> BoxFuture<'_, Result<Vec<StoredChannel>, Error>> {
        let now = Instant::now();
        let list = self.lock().windows.channels(&self.retention, now, &mut ());
        Box::pin(async move { Ok(list) })
    }

    fn issued(&self) -> BoxFuture<'_, Result<Option<Position>, Error>> {
        // Positions are issued and appended under one lock: everything up to it is in the windows.
        let issued = Position::new(self.epoch, self.lock().counter);
        Box::pin(async move { Ok(Some(issued)) })
    }
}

/// Bytes retained by a window, for tests of the byte bound.
#[cfg(test)]
fn window_bytes(store: &MemoryStore, channel: &str) -> usize {
    store.lock().windows.get(channel).map_or(0, |w| w.bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::store::ResetReason;
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
