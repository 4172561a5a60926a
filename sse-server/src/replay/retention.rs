//! How much history a store keeps per channel.

use std::time::Duration;

/// How much of each channel's history a store keeps: at most `max_events` events, `max_bytes` encoded
/// bytes and events younger than `max_age`. The oldest events go first when any bound is exceeded; a bound
/// of zero keeps nothing (replay disabled).
///
/// ```
/// use std::time::Duration;
/// let r = sse_server::Retention::default().max_events(10).max_age(Duration::from_secs(60));
/// assert_eq!(r.events(), 10);
/// assert_eq!(r.bytes(), 8 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    max_events: usize,
    max_bytes: usize,
    max_age: Duration,
}

impl Default for Retention {
    /// 1000 events, 8 MiB, one hour per channel.
    fn default() -> Self {
        Retention {
            max_events: 1000,
            max_bytes: 8 * 1024 * 1024,
            max_age: Duration::from_secs(3600),
        }
    }
}

impl Retention {
    /// Keeps at most `n` events per channel.
    ///
    /// ```
    /// assert_eq!(sse_server::Retention::default().max_events(5).events(), 5);
    /// ```
    pub fn max_events(mut self, n: usize) -> Self {
        self.max_events = n;
        self
    }

    /// Keeps at most `n` encoded bytes per channel.
    ///
    /// ```
    /// assert_eq!(sse_server::Retention::default().max_bytes(64).bytes(), 64);
    /// ```
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }

    /// Keeps events for at most `age`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let r = sse_server::Retention::default().max_age(Duration::from_secs(9));
    /// assert_eq!(r.age(), Duration::from_secs(9));
    /// ```
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// The event-count bound.
    ///
    /// ```
    /// assert_eq!(sse_server::Retention::default().events(), 1000);
    /// ```
    pub fn events(&self) -> usize {
        self.max_events
    }

    /// The byte bound.
    ///
    /// ```
    /// assert!(sse_server::Retention::default().bytes() > 0);
    /// ```
    pub fn bytes(&self) -> usize {
        self.max_bytes
    }

    /// The age bound.
    ///
    /// ```
    /// assert_eq!(sse_server::Retention::default().age().as_secs(), 3600);
    /// ```
    pub fn age(&self) -> Duration {
        self.max_age
    }
}
