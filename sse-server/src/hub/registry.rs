//! What every handle of a hub shares: its settings, counters, store, flushers' work lists and
//! the table of channels that have subscribers (or a publish in flight).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use crate::error::Error;
use crate::hub::channel::{Channel, Follower, Handle};
use crate::hub::composite::{Composite, Entry, Index};
use crate::hub::config::Config;
use crate::hub::metrics::{Disconnect, Metrics};
pub(crate) use crate::hub::name::check_channel;
use crate::hub::rounds::Rounds;
use crate::replay::{Live, LiveFeed, ReplayStore, StoredEvent};

/// The state behind every [`Hub`](crate::hub::handle::Hub) handle.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) metrics: Arc<Metrics>,
    /// Write live events straight to lean-path subscribers' sockets.
    pub(crate) rounds: Rounds,
    pub(crate) store: Arc<dyn ReplayStore>,
    /// Set when the store is shared with other nodes: fan-out then happens only from its feed.
    pub(crate) live: Option<Arc<dyn LiveFeed>>,
    registry: Mutex<Registry>,
    pub(crate) shutting_down: AtomicBool,
    /// Publishes hold it shared; shutdown takes it exclusively to wait for in-flight publishes.
    pub(crate) gate: tokio::sync::RwLock<()>,
    /// The hub-wide order: held from the append to the fan-out by publishes on channels that some
    /// composite follows (and by broadcasts), so every composite receives events in position order.
    /// Channels nobody follows that way never take it.
    pub(crate) order: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) closed: bool,
    pub(crate) channels: HashMap<Arc<str>, Arc<Channel>>,
    /// Multi-channel streams, by key (`hub/composite.rs`).
    pub(crate) composites: HashMap<Arc<str>, Arc<Composite>>,
    /// Which composites follow which names and prefixes.
    pub(crate) index: Index,
}

impl Inner {
    pub(crate) fn new(config: Config, store: Arc<dyn ReplayStore>) -> Inner {
        let metrics = Arc::new(Metrics::default());
        let rounds = Rounds::new(&metrics, config.coalesce);
        Inner {
            live: store.live(),
            config,
            rounds,
            metrics,
            store,
            registry: Mutex::new(Registry::default()),
            shutting_down: AtomicBool::new(false),
            gate: tokio::sync::RwLock::new(()),
            order: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The channel `name` for a publish, made if needed. Never refused for a full table: a publish
    /// must not fail because anonymous subscribers filled it (issue 16). The entry it makes is
    /// transient (released when the publish ends unless a subscriber joined), so the table exceeds
    /// `max_channels` by at most the publishes in flight. Refused only while shutting down.
    pub(crate) fn publishing(&self, name: &str) -> Result<Arc<Channel>, Error> {
        let mut reg = self.registry();
        if reg.closed {
            return Err(Error::ShuttingDown);
        }
        Ok(Self::entry(&mut reg, name))
    }

    /// Adds a subscriber under the registry lock, so shutdown either sees it or refuses it.
    pub(crate) fn register(
        &self,
        name: &str,
        handle: Handle,
    ) -> Result<(Arc<Channel>, u64), Error> {
        let ch = self.admit(&mut self.registry(), name)?;
        let id = ch.add(handle);
        Ok((ch, id))
    }

    /// The channel `name`, made if needed: refused while shutting down, or when it would be one
    /// channel over the limit.
    fn admit(&self, reg: &mut Registry, name: &str) -> Result<Arc<Channel>, Error> {
        if reg.closed {
            return Err(Error::ShuttingDown);
        }
        let limit = self.config.max_channels;
        if reg.channels.len() >= limit && !reg.channels.contains_key(name) {
            return Err(Error::TooManyChannels { limit });
        }
        Ok(Self::entry(reg, name))
    }

    /// Adds a subscriber to the composite keyed `key`, made if needed (with its named channels,
    /// counted against the table like a subscriber's channels; composites count against it too).
    pub(crate) fn register_composite(
        &self,
        key: Arc<str>,
        entries: Vec<Entry>,
        tag: bool,
        handle: Handle,
    ) -> Result<(Arc<Composite>, u64), Error> {
        let mut reg = self.registry();
        if reg.closed {
            return Err(Error::ShuttingDown);
        }
        if let Some(c) = reg.composites.get(&key).cloned() {
            let id = c.channel.add(handle);
            return Ok((c, id));
        }
        let limit = self.config.max_channels;
        if reg.composites.len() >= limit {
            return Err(Error::TooManyChannels { limit });
        }
        let mut entries = entries;
        let mut pinned = Vec::new();
        for e in &mut entries {
            if let Entry::Channel(name) = e {
                match self.admit(&mut reg, name) {
                    Ok(ch) => {
                        // The entry shares the table's copy of the name; the pin keeps it there.
                        *name = ch.name.clone();
                        ch.pins.fetch_add(1, Ordering::Relaxed);
                        pinned.push(ch);
                    }
                    Err(e) => {
                        for ch in &pinned {
                            ch.pins.fetch_sub(1, Ordering::Relaxed);
                        }
                        drop(reg);
                        for ch in &pinned {
                            self.release(ch);
                        }
                        return Err(e);
                    }
                }
            }
        }
        let c = Arc::new(Composite::new(key.clone(), entries, tag).sequenced(&self.store));
        reg.index.insert(&c);
        reg.composites.insert(key, c.clone());
        let id = c.channel.add(handle);
        Ok((c, id))
    }

    fn entry(reg: &mut Registry, name: &str) -> Arc<Channel> {
        if let Some(ch) = reg.channels.get(name) {
            return ch.clone();
        }
        let name: Arc<str> = Arc::from(name);
        let ch = Arc::new(Channel::new(name.clone()));
        // Not shared yet: nothing can publish on it before its followers are set.
        for c in reg.index.matching(&name) {
            ch.follow(c);
        }
        reg.channels.insert(name, ch.clone());
        ch
    }

    /// Counts the bytes waiting in subscriber queues and channel logs into the metrics.
    pub(crate) fn refresh_queued_bytes(&self) {
        let channels: Vec<Arc<Channel>> = self.registry().channels.values().cloned().collect();
        let bytes: usize = channels.iter().map(|ch| ch.queued_bytes()).sum();
        self.metrics
            .queued_bytes
            .store(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Forgets a channel object nobody uses any more. The caller's own `Arc` is the second reference.
    pub(crate) fn release(&self, ch: &Arc<Channel>) {
        if let Some(key) = &ch.composite {
            self.release_composite(key, ch);
            return;
        }
        let mut reg = self.registry();
        if Arc::strong_count(ch) == 2 && ch.len() == 0 && ch.pins.load(Ordering::Relaxed) == 0 {
            reg.channels.remove(&ch.name);
            // Under the registry lock, so a subscriber registering next watches after this.
            if let Some(live) = &self.live {
                live.unwatch(&ch.name);
            }
        }
    }

    /// Forgets a composite nobody subscribes to any more: out of the table and the index, and out of
    /// the followers of every channel; its named channels, unpinned, may then be forgotten too.
    fn release_composite(&self, key: &Arc<str>, ch: &Arc<Channel>) {
        let named = {
            let mut reg = self.registry();
            let Some(c) = reg.composites.get(key).cloned() else {
                return;
            };
            // The table's composite and the caller hold the channel; `c` holds it once more.
            if !Arc::ptr_eq(&c.channel, ch) || Arc::strong_count(ch) != 2 || ch.len() != 0 {
                return;
            }
            reg.composites.remove(key);
            reg.index.remove(&c);
            let follower: Arc<dyn Follower> = c.clone();
            for member in reg.channels.values() {
                if c.follows(&member.name) {
                    member.unfollow(&follower);
                }
            }
            if let Some(live) = &self.live {
                let watched = c.watching.swap(0, std::sync::atomic::Ordering::AcqRel);
                for prefix in c.prefixes().take(watched) {
                    live.unwatch_prefix(prefix);
                }
            }
            let named: Vec<Arc<Channel>> = c
                .entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Channel(name) => reg.channels.get(&**name).cloned(),
                    Entry::Pattern(_) => None,
                })
                .collect();
            for member in &named {
                member.pins.fetch_sub(1, Ordering::Relaxed);
            }
            named
        };
        for member in &named {
            self.release(member);
        }
    }

    /// Offers `stored`, just fanned out on channel `from`, to the composites following it.
    pub(crate) fn offer(
        &self,
        from: &str,
        followers: &[Arc<dyn Follower>],
        stored: &StoredEvent,
        at: Instant,
    ) {
        for f in followers {
            f.offer(from, stored, &mut |ch, position, bytes| {
                self.rounds.fan_out(ch, position, bytes, at, &self.metrics);
            });
        }
    }

    /// Fans out what the store's live feed delivered (published on this node or another).
    pub(crate) fn deliver(&self, channel: &str, live: Live) {
        // The feed is the only fan-out path and delivers in position order, also for channels
        // with no local subscriber of their own.
        let (ch, followers) = {
            let reg = self.registry();
            let ch = reg.channels.get(channel).cloned();
            // A channel in the table holds every composite that follows it (its named entries keep
            // it there); one that is not can only be followed through a pattern.
            let followers: Vec<Arc<dyn Follower>> = match &ch {
                Some(ch) => ch.followers(),
                None => reg
                    .index
                    .matching(channel)
                    .into_iter()
                    .map(|c| c as Arc<dyn Follower>)
                    .collect(),
            };
            (ch, followers)
        };
        match live {
            Live::Event(event) => {
                let at = Instant::now();
                if let Some(ch) = &ch {
                    self.rounds
                        .fan_out(ch, event.position, &event.bytes, at, &self.metrics);
                }
                self.offer(channel, &followers, &event, at);
            }
            Live::Gap => {
                // Skipping ahead would lose events silently: end the streams, and the clients'
                // reconnects replay what is retained, with an `expired` reset if something is gone.
                let ended = ch.map_or(0, |ch| ch.close())
                    + followers.iter().map(|f| f.stream().close()).sum::<usize>();
                self.metrics.disconnected(Disconnect::Gap, ended as u64);
                tracing::warn!(
                    channel,
                    ended,
                    "this node read the shared store too late and missed events; ended the channel's streams so that clients resume through replay"
                );
            }
        }
    }
}
