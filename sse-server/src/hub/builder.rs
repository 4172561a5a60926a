//! Configures and builds a [`Hub`]: its settings and its replay store.

#[cfg(feature = "durable")]
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::error::Error;
use crate::hub::config::Config;
use crate::hub::handle::Hub;
use crate::hub::hooks::{OnSubscribe, OnUnsubscribe};
#[cfg(feature = "durable")]
use crate::replay::{CommitMode, DurableStore};
use crate::replay::{MemoryStore, ReplayStore, Retention};

impl Hub {
    /// Starts configuring a hub.
    ///
    /// ```
    /// let hub = sse_server::Hub::builder().queue_size(64).build();
    /// # drop(hub);
    /// ```
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }
}

/// Configures a [`Hub`]. Every setting has a default suitable for a public endpoint.
///
/// ```
/// use std::time::Duration;
/// let hub = sse_server::Hub::builder()
///     .replay_events(500)
///     .replay_bytes(1 << 20)
///     .replay_age(Duration::from_secs(600))
///     .heartbeat(Some(Duration::from_secs(10)))
///     .retry(Some(Duration::from_secs(2)))
///     .header(http::HeaderName::from_static("x-hub"), http::HeaderValue::from_static("1"))
///     .cors_origin("https://example.com")
///     .queue_size(128)
///     .build();
/// assert_eq!(hub.config().queue_size(), 128);
/// ```
#[derive(Debug, Default)]
#[must_use = "call .build() to get the Hub"]
pub struct HubBuilder {
    config: Config,
    retention: Retention,
    store: Option<Arc<dyn ReplayStore>>,
    #[cfg(feature = "durable")]
    data_dir: Option<PathBuf>,
    #[cfg(feature = "durable")]
    commit_mode: CommitMode,
    #[cfg(feature = "durable")]
    reset_data_dir: bool,
    #[cfg(feature = "redis")]
    redis: Option<String>,
}

impl HubBuilder {
    /// Keeps at most `n` events per channel for replay (default 1000; 0 disables replay).
    ///
    /// ```
    /// let _ = sse_server::Hub::builder().replay_events(10).build();
    /// ```
    pub fn replay_events(mut self, n: usize) -> Self {
        self.retention = self.retention.max_events(n);
        self
    }

    /// Keeps at most `n` encoded bytes per channel for replay (default 8 MiB).
    ///
    /// ```
    /// let _ = sse_server::Hub::builder().replay_bytes(1 << 16).build();
    /// ```
    pub fn replay_bytes(mut self, n: usize) -> Self {
        self.retention = self.retention.max_bytes(n);
        self
    }

    /// Keeps events for replay at most `age` (default one hour).
    ///
    /// ```
    /// let _ = sse_server::Hub::builder().replay_age(std::time::Duration::from_secs(60)).build();
    /// ```
    pub fn replay_age(mut self, age: Duration) -> Self {
        self.retention = self.retention.max_age(age);
        self
    }

    /// Uses another replay store instead of a [`MemoryStore`] (the `replay_*` settings then do not apply).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let store = Arc::new(sse_server::MemoryStore::new(Default::default()));
    /// let _ = sse_server::Hub::builder().store(store).build();
    /// ```
    pub fn store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Heartbeat comment interval on idle streams; `None` turns heartbeats off (default 15 s).
    ///
    /// ```
    /// let _ = sse_server::Hub::builder().heartbeat(None).build();
    /// ```
    pub fn heartbeat(mut self, every: Option<Duration>) -> Self {
        self.config.heartbeat = every.filter(|d| !d.is_zero());
        self
    }

    /// `retry:` hint sent to each subscriber when its stream opens (default: none).
    ///
    /// ```
    /// let _ = sse_server::Hub::builder().retry(Some(std::time::Duration::from_secs(3))).build();
    /// ```
    pub fn retry(mut self, retry: Option<Duration>) -> Self {
        self.config.retry = retry;
        self
    }

    /// Adds a header to every response (appended; repeat for several values).
    ///
    /// ```
    /// use http::{HeaderName, HeaderValue};
    /// let _ = sse_server::Hub::builder()
    ///     .header(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"))
    ///     .build();
    /// ```
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.config.headers.append(name, value);
        self
    }

    /// Allows cross-origin requests from `origin` (exact match, e.g. `https://app.example`; `*` for any).
    ///
    /// ```
    /// let _ = sse_server::Hub::builder().cors_origin("*").build();
    /// ```
    pub fn cors_origin(mut self, origin: impl Into<String>) -> Self {
        self.config.cors_origins.push(origin.into());
        self
    }

    /// Events buffered per subscriber (default 256, at least 1). A subscriber whose queue is full when an
    /// event arrives is disconnected and counted; it catches up through replay when it reconnects.
    ///
    /// ```
    /// let _ = sse_server::Hub::builder().queue_size(16).build();
    /// ```
    pub fn queue_size(mut self, n: usize) -> Self {
        self.config.queue_size = n.max(1);
        self
    }

    /// Bytes of events a subscriber may be owed (default 4 MiB, never less than
    /// [`max_event_bytes`](HubBuilder::max_event_bytes)). A subscriber owed more, in its queue or in
    /// its channel's log, is disconnected like one whose queue is full; it catches up through replay.
    /// Together with [`queue_size`](HubBuilder::queue_size) this bounds a stalled reader by bytes as
    /// well as by events. What a subscriber is owed is shared `Bytes`, never a copy.
    ///
    /// ```
    /// let hub = sse_server::Hub::builder().max_subscriber_buffer(1 << 20).build();
    /// assert_eq!(hub.config().max_subscriber_bytes(), 1 << 20);
    /// ```
    pub fn max_subscriber_buffer(mut self, bytes: usize) -> Self {
        self.config.max_subscriber_bytes = bytes;
        self
    }

    /// Write coalescing under load: its latency budget (default 20 ms; `Duration::ZERO` turns it
    /// off). Live events reach HTTP/1.1 and HTTP/2 subscribers of the built-in server in write
    /// rounds, one `writev` per subscriber per round. An event that finds the writers idle goes out
    /// at once. Only after a round of 1 ms or more (hundreds of subscribers with something to
    /// write), and only when events come fast enough that the pause would gather at least two more,
    /// does the next round start after a pause of twice the round, at most `max`: events published
    /// meanwhile then go out together, in fewer and larger writes. A write costs about the same for
    /// one event as for twenty, so under load this cuts the CPU per delivered event by more than
    /// half (measured at 1,000 subscribers in the fan-out benchmark) for at most `max` of added
    /// latency; moderate rates never wait.
    ///
    /// ```
    /// use std::time::Duration;
    /// let hub = sse_server::Hub::builder().coalesce(Duration::from_millis(2)).build();
    /// assert_eq!(hub.config().coalesce(), Duration::from_millis(2));
    /// ```
    pub fn coalesce(mut self, max: Duration) -> Self {
        self.config.coalesce = max;
        self
    }

    /// Largest event accepted by `publish`, in encoded bytes (default 1 MiB, the default line limit of sse-proto's parser).
    ///
    /// ```
    /// let _ = sse_server::Hub::builder().max_event_bytes(1 << 20).build();
    /// ```
    pub fn max_event_bytes(mut self, n: usize) -> Self {
        self.config.max_event_bytes = n;
        self
    }

    /// Live channels (with subscribers, or a publish in progress) the hub holds at most (default
    /// 10 000): subscribing to one more answers 503; a publish is never refused for a full table (its
    /// entry lasts only while it runs). Bounds what anonymous subscribers can make the hub allocate; retained history is bounded per channel by the `replay_*` settings.
    ///
    /// ```
    /// let hub = sse_server::Hub::builder().max_channels(100).build();
    /// assert_eq!(hub.config().max_channels(), 100);
    /// ```
    pub fn max_channels(mut self, n: usize) -> Self {
        self.config.max_channels = n.max(1);
        self
    }

    /// Entries (channel names and `prefix/*` patterns) one multi-channel subscription
    /// ([`Hub::subscribe_many`](crate::hub::handle::Hub::subscribe_many), `GET /events?channel=…`) may
    /// list; more is refused (400). Default 64, at least 1.
    ///
    /// ```
    /// let hub = sse_server::Hub::builder().max_channels_per_subscription(8).build();
    /// assert_eq!(hub.config().max_channels_per_subscription(), 8);
    /// ```
    pub fn max_channels_per_subscription(mut self, n: usize) -> Self {
        self.config.max_channels_per_subscription = n.max(1);
        self
    }

    /// Range of the randomised `retry:` sent to every stream at shutdown (default 1 s to 10 s), so that
    /// clients do not all reconnect at the same instant.
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = sse_server::Hub::builder()
    ///     .shutdown_retry(Duration::from_millis(500), Duration::from_secs(5))
    ///     .build();
    /// ```
    pub fn shutdown_retry(mut self, min: Duration, max: Duration) -> Self {
        self.config.shutdown_retry = (min.min(max), max.max(min));
        self
    }

    /// Runs `hook` before each subscription: it may refuse it or return a welcome event for that
    /// subscriber alone.
    ///
    /// ```
    /// let hub = sse_server::Hub::builder()
    ///     .on_subscribe(|info| {
    ///         if info.channel.starts_with("private") {
    ///             return Err(sse_server::Error::rejected(http::StatusCode::FORBIDDEN, "private channel"));
    ///         }
    ///         Ok(Some(sse_proto::Event::builder().event("welcome").data(info.channel).build()?))
    ///     })
    ///     .build();
    /// # drop(hub);
    /// ```
    pub fn on_subscribe<F>(mut self, hook: F) -> Self
    where
        F: Fn(
                &crate::hub::hooks::SubscribeInfo<'_>,
            ) -> Result<Option<sse_proto::Event>, crate::error::Error>
            + Send
            + Sync
            + 'static,
    {
        let hook: OnSubscribe = Arc::new(hook);
        self.config.hooks.on_subscribe = Some(hook);
        self
    }

    /// Runs `hook` with the channel name whenever a subscriber's stream ends.
    ///
    /// ```
    /// let hub = sse_server::Hub::builder()
    ///     .on_unsubscribe(|channel| tracing::debug!(channel, "subscriber left"))
    ///     .build();
    /// # drop(hub);
    /// ```
    pub fn on_unsubscribe<F>(mut self, hook: F) -> Self
    where
        F: Fn(&str) + Send + Sync + 'static,
    {
        let hook: OnUnsubscribe = Arc::new(hook);
        self.config.hooks.on_unsubscribe = Some(hook);
        self
    }

    #[cfg(feature = "durable")]
    /// Keeps the replay window on disk in `dir` (a [`DurableStore`], file `dir/replay.redb`) instead of in
    /// memory, with the `replay_*` retention. Build with [`try_build`](HubBuilder::try_build) to get an
    /// error when the store cannot be opened.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let hub = sse_server::Hub::builder().replay_events(100).data_dir(dir.path()).try_build()?;
    /// # drop(hub);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    #[cfg(feature = "durable")]
    /// How the durable store shares `fsync`s between publishes (default: group commit without delay).
    ///
    /// ```
    /// let _ = sse_server::Hub::builder().commit_mode(sse_server::CommitMode::PerPublish);
    /// ```
    pub fn commit_mode(mut self, mode: CommitMode) -> Self {
        self.commit_mode = mode;
        self
    }

    #[cfg(feature = "durable")]
    /// Discards the existing store in the data directory and starts fresh (default: keep it, and refuse
    /// to start when it is damaged).
    ///
    /// ```
    /// let _ = sse_server::Hub::builder().reset_data_dir(true);
    /// ```
    pub fn reset_data_dir(mut self, reset: bool) -> Self {
        self.reset_data_dir = reset;
        self
    }

    #[cfg(feature = "redis")]
    /// Keeps the replay window in Redis at `url` (a [`RedisStore`](crate::replay::RedisStore), one Redis Stream
    /// per channel, with the `replay_*` retention) so that several hubs (nodes) share channels, event
    /// ids and replay: an event published on any node reaches the subscribers of every node. No
    /// connection is made until first use; an invalid URL fails [`try_build`](HubBuilder::try_build).
    ///
    /// ```
    /// let hub = sse_server::Hub::builder().redis("redis://127.0.0.1:6379").try_build()?;
    /// # drop(hub);
    /// # Ok::<(), sse_server::Error>(())
    /// ```
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis = Some(url.into());
        self
    }

    fn open_store(&self) -> Result<Arc<dyn ReplayStore>, Error> {
        if let Some(store) = &self.store {
            return Ok(store.clone());
        }
        #[cfg(feature = "redis")]
        if let Some(url) = &self.redis {
            return Ok(Arc::new(
                crate::replay::RedisStore::builder(url.clone())
                    .retention(self.retention)
                    .build()?,
            ));
        }
        #[cfg(feature = "durable")]
        if let Some(dir) = &self.data_dir {
            return Ok(Arc::new(
                DurableStore::builder(dir)
                    .retention(self.retention)
                    .commit_mode(self.commit_mode)
                    .reset(self.reset_data_dir)
                    .open()?,
            ));
        }
        Ok(Arc::new(MemoryStore::new(self.retention)))
    }

    /// Builds the hub, opening its data directory if one is set; fails with [`Error::DataDir`] when the
    /// store cannot be used (the message names the file and what to do).
    ///
    /// ```
    /// let hub = sse_server::Hub::builder().try_build()?;
    /// # drop(hub);
    /// # Ok::<(), sse_server::Error>(())
    /// ```
    pub fn try_build(self) -> Result<Hub, Error> {
        let store = self.open_store()?;
        Ok(Hub::from_parts(self.config, store))
    }

    /// Builds the hub (no task is spawned; it can be built outside a runtime).
    ///
    /// With a [`data_dir`](HubBuilder::data_dir) that cannot be opened, the error is logged and the hub
    /// refuses every publish and replay with it (503) rather than silently keeping events in memory;
    /// prefer [`try_build`](HubBuilder::try_build) there.
    ///
    /// ```
    /// let hub = sse_server::Hub::builder().build();
    /// assert!(!hub.is_shutting_down());
    /// ```
    pub fn build(self) -> Hub {
        let store = self.open_store().unwrap_or_else(|e| {
            tracing::error!(error = %e, "replay store unavailable");
            Arc::new(crate::replay::Unavailable(e.to_string()))
        });
        Hub::from_parts(self.config, store)
    }
}
