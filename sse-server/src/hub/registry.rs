//! What every handle of a hub shares: its settings, counters, store, flushers' work lists and
//! the table of channels that have subscribers (or a publish in flight).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use crate::error::Error;
use crate::hub::channel::{Channel, Handle};
use crate::hub::config::Config;
use crate::hub::metrics::{Disconnect, Metrics};
use crate::hub::rounds::Rounds;
use crate::replay::{Live, LiveFeed, ReplayStore};

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
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) closed: bool,
    pub(crate) channels: HashMap<Arc<str>, Arc<Channel>>,
}

/// Checks a channel name: 1..=256 bytes, no control characters, and none of the invisible
/// characters that make look-alike names (bidi controls, line/paragraph separators, zero-width ones).
pub(crate) fn check_channel(name: &str) -> Result<(), Error> {
    let refuse = |reason: String| {
        Err(Error::InvalidChannel {
            name: name.chars().take(300).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("the name is empty".to_owned());
    }
    if name.len() > 256 {
        return refuse(format!("the name is {} bytes long", name.len()));
    }
    for c in name.chars() {
        if c.is_control() {
            return refuse(format!(
                "it contains a control character (U+{:04X})",
                u32::from(c)
            ));
        }
        let what = match c {
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => "a bidi control character",
            '\u{2028}' => "a line separator",
            '\u{2029}' => "a paragraph separator",
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => "a zero-width character",
            _ => continue,
        };
        return refuse(format!(
            "it contains {what} (U+{:04X}), invisible, so two different names would look alike",
            u32::from(c)
        ));
    }
    Ok(())
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

    fn entry(reg: &mut Registry, name: &str) -> Arc<Channel> {
        if let Some(ch) = reg.channels.get(name) {
            return ch.clone();
        }
        let name: Arc<str> = Arc::from(name);
        let ch = Arc::new(Channel::new(name.clone()));
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
        let mut reg = self.registry();
        if Arc::strong_count(ch) == 2 && ch.len() == 0 {
            reg.channels.remove(&ch.name);
            // Under the registry lock, so a subscriber registering next watches after this.
            if let Some(live) = &self.live {
                live.unwatch(&ch.name);
            }
        }
    }

    /// Fans out what the store's live feed delivered (published on this node or another).
    pub(crate) fn deliver(&self, channel: &str, live: Live) {
        let ch = self.registry().channels.get(channel).cloned();
        let Some(ch) = ch else { return };
        match live {
            Live::Event(event) => self.rounds.fan_out(
                &ch,
                event.position,
                &event.bytes,
                Instant::now(),
                &self.metrics,
            ),
            Live::Gap => {
                // Skipping ahead would lose events silently: end the streams, and the clients'
                // reconnects replay what is retained, with an `expired` reset if something is gone.
                let ended = ch.close();
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
