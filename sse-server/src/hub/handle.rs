//! The [`Hub`] handle: publish, broadcast, subscribe, list, close and shut down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use http::HeaderMap;
use rand::Rng;
use sse_proto::Event;

use crate::error::Error;
use crate::hub::channel::{Channel, Handle};
use crate::hub::config::Config;
use crate::hub::control;
use crate::hub::hooks::SubscribeInfo;
use crate::hub::metrics::{Disconnect, Metrics, Transport, bump};
use crate::hub::registry::{Inner, Registry, check_channel};
use crate::hub::resume;
use crate::hub::subscription::{Guard, Subscription};
use crate::replay::{Live, ReplayStore};

/// The hub: channels, fan-out, replay. Cheap to clone; every clone is the same hub.
///
/// ```
/// use futures_util::StreamExt;
/// use sse_proto::Event;
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let hub = sse_server::Hub::builder().build();
/// let first = hub.publish("news", Event::message("before anyone listened")).await?;
/// // Resume after `first`: nothing retained after it yet, then live events.
/// let mut sub = hub.subscribe("news", Some(&first)).await?;
/// let id = hub.publish("news", Event::message("hello")).await?;
/// let bytes = sub.next().await.unwrap();
/// assert_eq!(bytes, format!("id: {id}\ndata: hello\n\n"));
/// # Ok::<(), sse_server::Error>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Replay and `sse-reset`
///
/// A subscriber that resumes with a `Last-Event-ID` receives every retained event after it, in order,
/// then live events, with no gap and no duplicate at the seam: it is registered for live events *before*
/// the window is read, and live events at or before the last replayed position are skipped.
///
/// When the id cannot be placed (never issued here, issued by an earlier process, or older than the
/// window so that events after it were dropped), the subscriber first receives an event of type
/// [`RESET_EVENT`](crate::hub::control::RESET_EVENT) (`sse-reset`), which a browser's `EventSource` sees with
/// `addEventListener("sse-reset", …)`. Its data is JSON
/// `{"reason":"unknown"|"expired","lastEventId":"<what the client sent>","oldest":"<oldest retained id>"|null}`
/// and its `id` is the position just before the window, so a client that reconnects at once resumes
/// from the start of the window. Then everything still retained is replayed, then live events.
#[derive(Debug, Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

/// A channel as `channels()` lists it.
///
/// ```
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let hub = sse_server::Hub::builder().build();
/// let id = hub.publish("news", sse_proto::Event::message("x")).await?;
/// let list = hub.channels().await?;
/// assert_eq!(list[0].name, "news");
/// assert_eq!(list[0].last_id.as_deref(), Some(id.as_str()));
/// assert_eq!(list[0].subscribers, 0);
/// # Ok::<(), sse_server::Error>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChannelInfo {
    /// The channel name.
    pub name: String,
    /// Subscribers connected now.
    pub subscribers: usize,
    /// Id of the newest retained event.
    pub last_id: Option<String>,
}

/// Subscribers following `name` through composites (each counts once per channel it follows).
/// A channel in the table holds its composites as followers; one that is not can only be followed
/// through a pattern.
fn followed_by(reg: &Registry, name: &str) -> usize {
    match reg.channels.get(name) {
        Some(ch) => ch.followers().iter().map(|f| f.stream().len()).sum(),
        None => reg
            .index
            .matching(name)
            .iter()
            .map(|c| c.channel.len())
            .sum(),
    }
}

impl Hub {
    pub(crate) fn from_parts(config: Config, store: Arc<dyn ReplayStore>) -> Hub {
        let hub = Hub {
            inner: Arc::new(Inner::new(config, store)),
        };
        let weak = Arc::downgrade(&hub.inner);
        hub.inner.rounds.on_idle(move |ch: &Arc<Channel>| {
            if let Some(inner) = weak.upgrade() {
                inner.release(ch);
            }
        });
        if let Some(live) = &hub.inner.live {
            let inner = Arc::downgrade(&hub.inner);
            live.attach(Arc::new(move |channel: &str, item: Live| {
                if let Some(inner) = inner.upgrade() {
                    inner.deliver(channel, item);
                }
            }));
        }
        hub
    }

    /// The settings this hub was built with.
    ///
    /// ```
    /// assert_eq!(sse_server::Hub::builder().build().config().queue_size(), 256);
    /// ```
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The hub's counters.
    ///
    /// ```
    /// assert_eq!(sse_server::Hub::builder().build().metrics().events_published(), 0);
    /// ```
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The metrics as Prometheus text, with the queued-bytes gauge counted now.
    pub(crate) fn render_metrics(&self) -> String {
        self.inner.refresh_queued_bytes();
        self.inner.metrics.render_prometheus()
    }

    /// The metrics, shared (the transport counts open connections in them).
    pub(crate) fn metrics_shared(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// The replay store behind this hub.
    ///
    /// ```
    /// let hub = sse_server::Hub::builder().build();
    /// let _store = hub.store();
    /// ```
    pub fn store(&self) -> &Arc<dyn ReplayStore> {
        &self.inner.store
    }

    /// True once [`shutdown`](Hub::shutdown) has started.
    ///
    /// ```
    /// assert!(!sse_server::Hub::builder().build().is_shutting_down());
    /// ```
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Whether a publish can be acknowledged now (what `GET /readyz` reports): `Err` while the hub is
    /// shutting down ([`Error::ShuttingDown`]) or the store reports a problem
    /// ([`ReplayStore::health`]: a durable store that failed a write and is not reopened yet, an
    /// unreachable Redis). [`is_shutting_down`](Hub::is_shutting_down) alone is the liveness side.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// assert!(hub.readiness().await.is_ok());
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn readiness(&self) -> Result<(), Error> {
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        self.inner.store.health().await
    }

    /// Publishes `event` on `channel` and returns its id (the event's own, or one the store assigns).
    ///
    /// The event is encoded once and the same bytes go to every subscriber and into the replay window
    /// (also when nobody listens). Never waits for subscribers: a subscriber whose queue is full is
    /// disconnected instead. A full channel table ([`HubBuilder::max_channels`](crate::hub::builder::HubBuilder::max_channels))
    /// refuses new subscribers, never a publish.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// let a = hub.publish("news", sse_proto::Event::message("a")).await?;
    /// let b = hub.publish("news", sse_proto::Event::builder().id("mine").data("b").build()?).await?;
    /// assert_ne!(a, b);
    /// assert_eq!(b, "mine");
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn publish(&self, channel: &str, event: Event) -> Result<String, Error> {
        check_channel(channel)?;
        self.check_size(&event)?;
        let _gate = self.inner.gate.read().await;
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        // Never refused for a full channel table (only subscribers are): see `Inner::publishing`.
        let ch = self.inner.publishing(channel)?;
        let result = self.append_and_fan_out(&ch, event, Instant::now()).await;
        self.inner.release(&ch);
        result
    }

    /// `at`: when the publish started (for the publish-to-write latency).
    async fn append_and_fan_out(
        &self,
        ch: &Arc<Channel>,
        event: Event,
        at: Instant,
    ) -> Result<String, Error> {
        if self.inner.live.is_some() {
            // A shared store orders appends itself and its feed fans out: no need to serialise here.
            let stored = self.inner.store.append(&ch.name, event).await?;
            bump(&self.inner.metrics.published);
            return Ok(stored.id.to_string());
        }
        let _channel_order = ch.publish.lock().await;
        // Composites are attached under `publish`, so this list holds until the fan-out. Only a
        // channel some composite follows takes the hub-wide order lock.
        let followers = ch.followers();
        let _hub_order = match followers.is_empty() {
            true => None,
            false => Some(self.inner.order.lock().await),
        };
        let stored = self.inner.store.append(&ch.name, event).await?;
        bump(&self.inner.metrics.published);
        self.inner
            .rounds
            .fan_out(ch, stored.position, &stored.bytes, at, &self.inner.metrics);
        self.inner.offer(&ch.name, &followers, &stored, at);
        Ok(stored.id.to_string())
    }

    fn check_size(&self, event: &Event) -> Result<(), Error> {
        let size = sse_proto::encoded_len(event);
        let limit = self.inner.config.max_event_bytes;
        if size > limit {
            return Err(Error::EventTooLarge { size, limit });
        }
        Ok(())
    }

    /// Publishes `event` on every channel that has subscribers or history, at one position in all of
    /// them (so a multi-channel subscriber receives it once, and resumes after it exactly), with the
    /// event's own id or that position's. Returns the id. With a store of several sequencers it is one
    /// position per sequencer (a multi-channel subscriber receives it once per sequencer among its
    /// channels), and the id returned is the first group's.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// hub.publish("a", sse_proto::Event::message("1")).await?;
    /// hub.publish("b", sse_proto::Event::message("1")).await?;
    /// let id = hub.broadcast(sse_proto::Event::message("to all")).await?;
    /// for c in hub.channels().await? {
    ///     assert_eq!(c.last_id.as_deref(), Some(id.as_str()));
    /// }
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn broadcast(&self, event: Event) -> Result<String, Error> {
        self.check_size(&event)?;
        let _gate = self.inner.gate.read().await;
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let mut names: Vec<String> = self
            .inner
            .registry()
            .channels
            .keys()
            .map(|k| k.to_string())
            .collect();
        names.extend(
            self.inner
                .store
                .channels()
                .await?
                .into_iter()
                .map(|c| c.name),
        );
        names.sort();
        names.dedup();
        let mut channels = Vec::with_capacity(names.len());
        for name in &names {
            channels.push(self.inner.publishing(name)?);
        }
        let result = self.broadcast_to(&names, &channels, event).await;
        for ch in &channels {
            self.inner.release(ch);
        }
        result
    }

    /// Appends `event` under one position in every channel of `names` (its `channels`), then fans it
    /// out: once per channel, once per composite (which drop the repeats by position).
    async fn broadcast_to(
        &self,
        names: &[String],
        channels: &[Arc<Channel>],
        event: Event,
    ) -> Result<String, Error> {
        let at = Instant::now();
        if self.inner.live.is_some() {
            let stored = self.inner.store.append_all(names, event).await?;
            bump(&self.inner.metrics.published);
            return Ok(stored.id.to_string());
        }
        // Every channel's order (by name: the same lock order for every broadcast), then the hub's.
        let mut held = Vec::with_capacity(channels.len());
        for ch in channels {
            held.push(ch.publish.lock().await);
        }
        let _hub_order = self.inner.order.lock().await;
        if self.inner.store.sequencers() > 1 {
            return self.broadcast_sequenced(names, channels, event, at).await;
        }
        let stored = self.inner.store.append_all(names, event).await?;
        bump(&self.inner.metrics.published);
        for ch in channels {
            self.inner
                .rounds
                .fan_out(ch, stored.position, &stored.bytes, at, &self.inner.metrics);
            self.inner.offer(&ch.name, &ch.followers(), &stored, at);
        }
        Ok(stored.id.to_string())
    }

    /// [`broadcast_to`](Hub::broadcast_to) for a store with several sequencers and no live feed, its
    /// locks held: one `append_all` per sequencer (a position is one sequencer's), each fanned out
    /// to its own channels. Returns the first id.
    async fn broadcast_sequenced(
        &self,
        names: &[String],
        channels: &[Arc<Channel>],
        event: Event,
        at: Instant,
    ) -> Result<String, Error> {
        let store = &self.inner.store;
        if names.is_empty() {
            let stored = store.append_all(names, event).await?;
            bump(&self.inner.metrics.published);
            return Ok(stored.id.to_string());
        }
        // (sequencer, index) pairs, grouped by sequencer.
        let mut keyed: Vec<(usize, usize)> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (store.sequencer(name), i))
            .collect();
        keyed.sort_unstable();
        let mut first = None;
        for group in keyed.chunk_by(|a, b| a.0 == b.0) {
            let group_names: Vec<String> = group.iter().map(|&(_, i)| names[i].clone()).collect();
            let stored = store.append_all(&group_names, event.clone()).await?;
            for &(_, i) in group {
                let ch = &channels[i];
                self.inner.rounds.fan_out(
                    ch,
                    stored.position,
                    &stored.bytes,
                    at,
                    &self.inner.metrics,
                );
                self.inner.offer(&ch.name, &ch.followers(), &stored, at);
            }
            first.get_or_insert(stored.id);
        }
        bump(&self.inner.metrics.published);
        first
            .map(|id| id.to_string())
            .ok_or_else(|| Error::Store("a broadcast needs at least one channel".to_owned()))
    }

    /// Subscribes to `channel`, resuming after `last_event_id` when given (see the type docs for the
    /// replay and `sse-reset` policy).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// let sub = hub.subscribe("news", None).await?;
    /// assert_eq!(hub.channels().await?[0].subscribers, 1);
    /// drop(sub);
    /// assert!(hub.channels().await?.is_empty());
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn subscribe(
        &self,
        channel: &str,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, Error> {
        self.subscribe_with(channel, last_event_id, None).await
    }

    /// Like [`subscribe`](Hub::subscribe), passing the HTTP request headers on to the `on_subscribe` hook.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// let headers = http::HeaderMap::new();
    /// let _sub = hub.subscribe_with("news", None, Some(&headers)).await?;
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn subscribe_with(
        &self,
        channel: &str,
        last_event_id: Option<&str>,
        headers: Option<&HeaderMap>,
    ) -> Result<Subscription, Error> {
        check_channel(channel)?;
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let last_event_id = last_event_id.filter(|id| !id.is_empty());
        let config = &self.inner.config;
        let welcome = match &config.hooks.on_subscribe {
            Some(hook) => hook(&SubscribeInfo {
                channel,
                last_event_id,
                headers,
            })?,
            None => None,
        };

        // Register for live events before reading the window: whatever is published from now on is
        // queued, whatever was published before is in the window, and duplicates are skipped by position.
        let (tx, rx) = crate::hub::queue::queue(config.queue_size, config.max_subscriber_bytes());
        let kicked = Arc::new(AtomicBool::new(false));
        let (ch, id) = self
            .inner
            .register(channel, Handle::new(tx, kicked.clone()))?;
        let metrics = &self.inner.metrics;
        metrics.subscribed();
        let guard = Guard {
            hub: self.inner.clone(),
            transport: Transport::Library,
            channel: ch,
            id,
            released: false,
            weight: 1,
        };
        // With a shared store, live events come from its feed: watch before reading the window (the
        // seam is then an overlap, deduplicated by position, never a gap).
        if let Some(live) = &self.inner.live {
            live.watch(channel).await?;
        }

        let (prelude, seen_through) =
            resume::prelude(&self.inner, channel, last_event_id, welcome).await?;
        Ok(Subscription::new(
            rx,
            kicked,
            guard,
            prelude,
            seen_through,
            config.heartbeat,
        ))
    }

    /// Lists channels with subscribers or retained history, sorted by name. A multi-channel subscriber
    /// ([`subscribe_many`](Hub::subscribe_many)) counts once in every channel it follows (for a
    /// pattern: every listed channel it matches).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// assert!(hub.channels().await?.is_empty());
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn channels(&self) -> Result<Vec<ChannelInfo>, Error> {
        let stored = self.inner.store.channels().await?;
        let mut out: BTreeMap<String, ChannelInfo> = BTreeMap::new();
        let reg = self.inner.registry();
        for (name, ch) in &reg.channels {
            let subscribers = ch.len() + followed_by(&reg, name);
            if subscribers > 0 {
                out.insert(
                    name.to_string(),
                    ChannelInfo {
                        name: name.to_string(),
                        subscribers,
                        last_id: None,
                    },
                );
            }
        }
        for c in stored {
            let subscribers = followed_by(&reg, &c.name);
            out.entry(c.name.clone())
                .or_insert_with(|| ChannelInfo {
                    name: c.name,
                    subscribers,
                    last_id: None,
                })
                .last_id = c.last_id;
        }
        drop(reg);
        Ok(out.into_values().collect())
    }

    /// Ends every subscriber stream of `channel` (after what is already queued for it) and returns how
    /// many there were. The replay window is kept, so clients that reconnect miss nothing.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// let mut sub = hub.subscribe("news", None).await?;
    /// assert_eq!(hub.close_channel("news"), 1);
    /// assert!(sub.next().await.is_none());
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close_channel(&self, channel: &str) -> usize {
        let ch = self.inner.registry().channels.get(channel).cloned();
        let closed = ch.map_or(0, |ch| ch.close());
        self.inner
            .metrics
            .disconnected(Disconnect::Closed, closed as u64);
        closed
    }

    /// Shuts down gracefully: refuses new subscriptions and publishes, waits for in-flight publishes to
    /// finish, then ends every stream with a randomised `retry:` (see [`HubBuilder::shutdown_retry`](crate::hub::builder::HubBuilder::shutdown_retry)) so
    /// that clients spread their reconnects.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// let mut sub = hub.subscribe("news", None).await?;
    /// hub.shutdown().await;
    /// let last = sub.next().await.unwrap();
    /// assert!(last.starts_with(b"retry: "));
    /// assert!(sub.next().await.is_none());
    /// assert!(hub.subscribe("news", None).await.is_err());
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn shutdown(&self) {
        let channels: Vec<Arc<Channel>> = {
            let mut reg = self.inner.registry();
            reg.closed = true;
            self.inner.shutting_down.store(true, Ordering::Release);
            // Multi-channel streams too: their composites' channels are not in the table.
            let composites = reg.composites.values().map(|c| c.channel.clone());
            reg.channels.values().cloned().chain(composites).collect()
        };
        drop(self.inner.gate.write().await);
        let (min, max) = self.inner.config.shutdown_retry;
        let (min, max) = (min.as_millis() as u64, max.as_millis() as u64);
        let mut rng = rand::rng();
        for ch in channels {
            let ended = ch.finish(|| {
                let ms = rng.random_range(min..=max);
                control::retry(Duration::from_millis(ms)).unwrap_or_default()
            });
            self.inner
                .metrics
                .disconnected(Disconnect::Shutdown, ended as u64);
        }
        tracing::info!("hub shut down: all streams ended");
    }
}
