//! A hub's settings, as built by [`HubBuilder`](crate::hub::builder::HubBuilder).

use std::time::Duration;

use http::HeaderMap;

use crate::hub::hooks::Hooks;

/// A hub's settings, as built by [`HubBuilder`].
///
/// ```
/// let hub = sse_server::Hub::builder().build();
/// assert_eq!(hub.config().heartbeat(), Some(std::time::Duration::from_secs(15)));
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) retry: Option<Duration>,
    pub(crate) headers: HeaderMap,
    pub(crate) cors_origins: Vec<String>,
    pub(crate) queue_size: usize,
    pub(crate) max_subscriber_bytes: usize,
    pub(crate) coalesce: Duration,
    pub(crate) max_event_bytes: usize,
    pub(crate) max_channels: usize,
    pub(crate) max_channels_per_subscription: usize,
    pub(crate) shutdown_retry: (Duration, Duration),
    pub(crate) hooks: Hooks,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat: Some(Duration::from_secs(15)),
            retry: None,
            headers: HeaderMap::new(),
            cors_origins: Vec::new(),
            queue_size: 256,
            max_subscriber_bytes: 4 * 1024 * 1024,
            coalesce: Duration::from_millis(20),
            max_event_bytes: 1024 * 1024,
            max_channels: 10_000,
            max_channels_per_subscription: 64,
            shutdown_retry: (Duration::from_secs(1), Duration::from_secs(10)),
            hooks: Hooks::default(),
        }
    }
}

impl Config {
    /// Interval of heartbeat comments on idle streams (`None`: off).
    pub fn heartbeat(&self) -> Option<Duration> {
        self.heartbeat
    }
    /// The `retry:` hint sent when a stream opens.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }
    /// Extra headers added to every response.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// Origins allowed by CORS (`*` allows any).
    pub fn cors_origins(&self) -> &[String] {
        &self.cors_origins
    }
    /// Events queued per subscriber before it counts as too slow and is disconnected.
    pub fn queue_size(&self) -> usize {
        self.queue_size
    }
    /// Bytes of events a subscriber may be owed before it counts as too slow and is disconnected
    /// (never less than [`max_event_bytes`](Config::max_event_bytes)).
    pub fn max_subscriber_bytes(&self) -> usize {
        self.max_subscriber_bytes.max(self.max_event_bytes)
    }
    /// The longest pause between two write rounds under load (see [`HubBuilder::coalesce`]).
    pub fn coalesce(&self) -> Duration {
        self.coalesce
    }
    /// Largest accepted event, in encoded bytes.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }
    /// Live channels (with subscribers, or a publish in progress) the hub holds at most.
    pub fn max_channels(&self) -> usize {
        self.max_channels
    }
    /// Entries (channels and patterns) one multi-channel subscription may list.
    pub fn max_channels_per_subscription(&self) -> usize {
        self.max_channels_per_subscription
    }
}
