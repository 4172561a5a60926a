use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters a hub keeps, readable at any time and rendered as Prometheus text by `GET /metrics`.
///
/// ```
/// let hub = sse_server::Hub::builder().build();
/// let m = hub.metrics();
/// assert_eq!(m.connections(), 0);
/// assert!(m.render_prometheus().contains("sse_events_published_total 0"));
/// ```
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) connections: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) published: AtomicU64,
    /// Shared with the hub's flushers, which count what they write.
    pub(crate) delivered: std::sync::Arc<AtomicU64>,
    pub(crate) replayed: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) dropped_slow: AtomicU64,
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Subscriber streams open now.
    ///
    /// ```
    /// assert_eq!(sse_server::Hub::builder().build().metrics().connections(), 0);
    /// ```
    pub fn connections(&self) -> u64 {
        get(&self.connections)
    }

    /// Subscriber streams opened since start.
    ///
    /// ```
    /// assert_eq!(sse_server::Hub::builder().build().metrics().connections_total(), 0);
    /// ```
    pub fn connections_total(&self) -> u64 {
        get(&self.connections_total)
    }

    /// Events accepted by `publish` (a broadcast counts once per channel).
    ///
    /// ```
    /// assert_eq!(sse_server::Hub::builder().build().metrics().events_published(), 0);
    /// ```
    pub fn events_published(&self) -> u64 {
        get(&self.published)
    }

    /// Live events handed to subscriber streams.
    ///
    /// ```
    /// assert_eq!(sse_server::Hub::builder().build().metrics().events_delivered(), 0);
    /// ```
    pub fn events_delivered(&self) -> u64 {
        get(&self.delivered)
    }

    /// Events sent from the replay window to resuming subscribers.
    ///
    /// ```
    /// assert_eq!(sse_server::Hub::builder().build().metrics().events_replayed(), 0);
    /// ```
    pub fn events_replayed(&self) -> u64 {
        get(&self.replayed)
    }

    /// `sse-reset` events sent (unknown or expired `Last-Event-ID`).
    ///
    /// ```
    /// assert_eq!(sse_server::Hub::builder().build().metrics().resets(), 0);
    /// ```
    pub fn resets(&self) -> u64 {
        get(&self.resets)
    }

    /// Subscribers disconnected because their queue overflowed.
    ///
    /// ```
    /// assert_eq!(sse_server::Hub::builder().build().metrics().dropped_subscribers(), 0);
    /// ```
    pub fn dropped_subscribers(&self) -> u64 {
        get(&self.dropped_slow)
    }

    /// The counters in the Prometheus text exposition format (version 0.0.4).
    ///
    /// ```
    /// let text = sse_server::Hub::builder().build().metrics().render_prometheus();
    /// assert!(text.contains("# TYPE sse_connections gauge"));
    /// ```
    pub fn render_prometheus(&self) -> String {
        let rows: [(&str, &str, &str, u64); 7] = [
            (
                "sse_connections",
                "gauge",
                "Subscriber streams open now.",
                self.connections(),
            ),
            (
                "sse_connections_total",
                "counter",
                "Subscriber streams opened since start.",
                self.connections_total(),
            ),
            (
                "sse_events_published_total",
                "counter",
                "Events published (a broadcast counts once per channel).",
                self.events_published(),
            ),
            (
                "sse_events_delivered_total",
                "counter",
                "Live events delivered to subscriber streams.",
                self.events_delivered(),
            ),
            (
                "sse_events_replayed_total",
                "counter",
                "Events replayed to resuming subscribers.",
                self.events_replayed(),
            ),
            (
                "sse_resets_total",
                "counter",
                "sse-reset events sent for unknown or expired Last-Event-IDs.",
                self.resets(),
            ),
            (
                "sse_dropped_subscribers_total",
                "counter",
                "Subscribers disconnected because their queue overflowed.",
                self.dropped_subscribers(),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}
