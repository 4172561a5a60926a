//! What a hub counts, and its rendering in the Prometheus text format (`GET /metrics`).
//!
//! Conventions: every series starts with `sse_`, values are in base units (seconds, bytes), counters
//! end in `_total`, and labels say where a number comes from (`protocol`, `tls`, `reason`). Every
//! series is listed, with its type and labels, in the sse-server README.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a subscriber is served, for the `protocol` and `tls` labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A library `Stream` (no HTTP): `protocol="none"`.
    Library,
    /// HTTP/1.1, over TLS or not.
    Http1 { tls: bool },
    /// HTTP/2, over TLS or not.
    Http2 { tls: bool },
}

impl Transport {
    const ALL: [Transport; 5] = [
        Transport::Library,
        Transport::Http1 { tls: false },
        Transport::Http1 { tls: true },
        Transport::Http2 { tls: false },
        Transport::Http2 { tls: true },
    ];

    fn index(self) -> usize {
        match self {
            Transport::Library => 0,
            Transport::Http1 { tls: false } => 1,
            Transport::Http1 { tls: true } => 2,
            Transport::Http2 { tls: false } => 3,
            Transport::Http2 { tls: true } => 4,
        }
    }

    fn labels(self) -> &'static str {
        match self {
            Transport::Library => r#"protocol="none",tls="false""#,
            Transport::Http1 { tls: false } => r#"protocol="h1",tls="false""#,
            Transport::Http1 { tls: true } => r#"protocol="h1",tls="true""#,
            Transport::Http2 { tls: false } => r#"protocol="h2",tls="false""#,
            Transport::Http2 { tls: true } => r#"protocol="h2",tls="true""#,
        }
    }
}

/// Why the hub ended a subscriber's stream (`sse_disconnects_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disconnect {
    /// Its queue overflowed (or its flusher fell a queue behind).
    Slow,
    /// Its channel was closed (`DELETE /events/{channel}`, `Hub::close_channel`).
    Closed,
    /// This node read a shared store too late and ended the channel's streams.
    Gap,
    /// The hub shut down.
    Shutdown,
    /// Its credentials expired (`sse-expired`).
    Expired,
}

impl Disconnect {
    const ALL: [Disconnect; 5] = [
        Disconnect::Slow,
        Disconnect::Closed,
        Disconnect::Gap,
        Disconnect::Shutdown,
        Disconnect::Expired,
    ];

    fn name(self) -> &'static str {
        match self {
            Disconnect::Slow => "slow",
            Disconnect::Closed => "closed",
            Disconnect::Gap => "gap",
            Disconnect::Shutdown => "shutdown",
            Disconnect::Expired => "expired",
        }
    }
}

/// Why a connection was refused before any request was served
/// (`sse_connections_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `--max-connections` reached.
    MaxConnections,
    /// `--max-connections-per-ip` reached.
    MaxConnectionsPerIp,
    /// No request head within the header read timeout.
    HeaderTimeout,
    /// The TLS handshake failed or timed out.
    TlsHandshake,
}

impl Refused {
    const ALL: [Refused; 4] = [
        Refused::MaxConnections,
        Refused::MaxConnectionsPerIp,
        Refused::HeaderTimeout,
        Refused::TlsHandshake,
    ];

    fn name(self) -> &'static str {
        match self {
            Refused::MaxConnections => "max_connections",
            Refused::MaxConnectionsPerIp => "max_connections_per_ip",
            Refused::HeaderTimeout => "header_timeout",
            Refused::TlsHandshake => "tls_handshake",
        }
    }
}

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 14] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A histogram of durations with fixed buckets, updated without a lock.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub(crate) fn observe(&self, d: Duration) {
        self.observe_n(d, 1);
    }

    /// Records `n` observations of the same duration.
    pub(crate) fn observe_n(&self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(n, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos
            .fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += get(&self.buckets[i]);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += get(&self.buckets[BUCKETS.len()]);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = get(&self.sum_nanos) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

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
    /// Subscriber streams open now, by transport.
    subscribers: [AtomicU64; 5],
    /// Subscriber streams opened, by transport.
    subscriptions: [AtomicU64; 5],
    pub(crate) published: AtomicU64,
    /// Shared with the hub's flushers, which count what they write.
    pub(crate) delivered: Arc<AtomicU64>,
    pub(crate) replayed: AtomicU64,
    resets_unknown: AtomicU64,
    resets_expired: AtomicU64,
    disconnects: [AtomicU64; 5],
    refused: [AtomicU64; 4],
    /// TCP connections open now: plain, TLS.
    tcp_connections: [AtomicU64; 2],
    /// Bytes waiting in subscriber queues and channel logs, as of the last scrape.
    pub(crate) queued_bytes: AtomicU64,
    /// From a publish to the flusher's write of the event (lean HTTP/1.1 path).
    pub(crate) publish_to_write: Arc<Histogram>,
    /// How long a flusher round takes.
    pub(crate) flusher_round: Arc<Histogram>,
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn drop_one(c: &AtomicU64) {
    let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
}

fn sum(cells: &[AtomicU64]) -> u64 {
    cells.iter().map(get).sum()
}

impl Metrics {
    /// A subscriber stream opened (served as a library stream until [`Metrics::moved`]).
    pub(crate) fn subscribed(&self) {
        bump(&self.subscribers[Transport::Library.index()]);
        bump(&self.subscriptions[Transport::Library.index()]);
    }

    /// A subscriber stream served over `to` (it was counted as a library stream).
    pub(crate) fn moved(&self, to: Transport) {
        if to == Transport::Library {
            return;
        }
        drop_one(&self.subscribers[Transport::Library.index()]);
        drop_one(&self.subscriptions[Transport::Library.index()]);
        bump(&self.subscribers[to.index()]);
        bump(&self.subscriptions[to.index()]);
    }

    /// A subscriber stream served over `over` ended.
    pub(crate) fn unsubscribed(&self, over: Transport) {
        drop_one(&self.subscribers[over.index()]);
    }

    /// The hub ended a stream, for `why`.
    pub(crate) fn disconnected(&self, why: Disconnect, n: u64) {
        let i = Disconnect::ALL.iter().position(|d| *d == why).unwrap_or(0);
        self.disconnects[i].fetch_add(n, Ordering::Relaxed);
    }

    /// A connection was refused, for `why`.
    pub(crate) fn refused(&self, why: Refused) {
        let i = Refused::ALL.iter().position(|r| *r == why).unwrap_or(0);
        bump(&self.refused[i]);
    }

    /// A TCP connection opened; the returned guard counts it until it is dropped.
    pub(crate) fn connection_opened(self: &Arc<Self>, tls: bool) -> OpenConnection {
        bump(&self.tcp_connections[usize::from(tls)]);
        OpenConnection {
            metrics: self.clone(),
            tls,
        }
    }

    /// An `sse-reset` was sent: the id was never issued here (`expired == false`) or has left the
    /// window.
    pub(crate) fn reset(&self, expired: bool) {
        bump(if expired {
            &self.resets_expired
        } else {
            &self.resets_unknown
        });
    }

    /// Subscriber streams open now.
    ///
    /// ```
    /// assert_eq!(sse_server::Hub::builder().build().metrics().connections(), 0);
    /// ```
    pub fn connections(&self) -> u64 {
        sum(&self.subscribers)
    }

    /// Subscriber streams opened since start.
    ///
    /// ```
    /// assert_eq!(sse_server::Hub::builder().build().metrics().connections_total(), 0);
    /// ```
    pub fn connections_total(&self) -> u64 {
        sum(&self.subscriptions)
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
        get(&self.resets_unknown) + get(&self.resets_expired)
    }

    /// Subscribers disconnected because their queue overflowed.
    ///
    /// ```
    /// assert_eq!(sse_server::Hub::builder().build().metrics().dropped_subscribers(), 0);
    /// ```
    pub fn dropped_subscribers(&self) -> u64 {
        get(&self.disconnects[0])
    }

    /// The counters in the Prometheus text exposition format (version 0.0.4). The queued-bytes
    /// gauge is as of the last `GET /metrics`.
    ///
    /// ```
    /// let text = sse_server::Hub::builder().build().metrics().render_prometheus();
    /// assert!(text.contains("# TYPE sse_subscribers gauge"));
    /// assert!(text.contains("# TYPE sse_publish_to_write_seconds histogram"));
    /// ```
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        };
        let by_transport = |cells: &[AtomicU64; 5]| -> Vec<(String, u64)> {
            Transport::ALL
                .iter()
                .map(|t| (t.labels().to_owned(), get(&cells[t.index()])))
                .collect()
        };
        let one = |v: u64| vec![(String::new(), v)];
        family(
            "sse_subscribers",
            "gauge",
            "Subscriber streams open now.",
            &by_transport(&self.subscribers),
        );
        family(
            "sse_subscriptions_total",
            "counter",
            "Subscriber streams opened since start.",
            &by_transport(&self.subscriptions),
        );
        family(
            "sse_connections",
            "gauge",
            "TCP connections open now.",
            &[
                (r#"tls="false""#.to_owned(), get(&self.tcp_connections[0])),
                (r#"tls="true""#.to_owned(), get(&self.tcp_connections[1])),
            ],
        );
        family(
            "sse_connections_refused_total",
            "counter",
            "Connections refused before a request was served, by reason.",
            &Refused::ALL
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("reason=\"{}\"", r.name()), get(&self.refused[i])))
                .collect::<Vec<_>>(),
        );
        family(
            "sse_events_published_total",
            "counter",
            "Events published (a broadcast counts once per channel).",
            &one(self.events_published()),
        );
        family(
            "sse_events_delivered_total",
            "counter",
            "Live events delivered to subscriber streams.",
            &one(self.events_delivered()),
        );
        family(
            "sse_events_replayed_total",
            "counter",
            "Events replayed to resuming subscribers.",
            &one(self.events_replayed()),
        );
        family(
            "sse_resets_total",
            "counter",
            "sse-reset events sent, by reason (unknown or expired Last-Event-ID).",
            &[
                (r#"reason="unknown""#.to_owned(), get(&self.resets_unknown)),
                (r#"reason="expired""#.to_owned(), get(&self.resets_expired)),
            ],
        );
        family(
            "sse_disconnects_total",
            "counter",
            "Subscriber streams the hub ended, by reason.",
            &Disconnect::ALL
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    (
                        format!("reason=\"{}\"", d.name()),
                        get(&self.disconnects[i]),
                    )
                })
                .collect::<Vec<_>>(),
        );
        family(
            "sse_queued_bytes",
            "gauge",
            "Bytes of events waiting in subscriber queues and channel logs.",
            &one(get(&self.queued_bytes)),
        );
        self.publish_to_write.render(
            &mut out,
            "sse_publish_to_write_seconds",
            "Time from a publish to the write of the event to subscribers' sockets (lean HTTP/1.1 path, per event and flusher round).",
        );
        self.flusher_round.render(
            &mut out,
            "sse_flusher_round_seconds",
            "Time a flusher round takes (writing every channel it had news for).",
        );
        out
    }
}

/// Counts one open TCP connection until dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    metrics: Arc<Metrics>,
    tls: bool,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        drop_one(&self.metrics.tcp_connections[usize::from(self.tls)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_sum_in_seconds() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe_n(Duration::from_millis(3), 2);
        h.observe(Duration::from_secs(30));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "help");
        assert!(out.contains("x_seconds_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"10\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_seconds_count 4\n"), "{out}");
        assert!(out.contains("x_seconds_sum 30.00605"), "{out}");
    }

    #[test]
    fn a_subscriber_moves_between_transport_labels_once() {
        let m = Metrics::default();
        m.subscribed();
        m.moved(Transport::Http2 { tls: true });
        assert_eq!(m.connections(), 1);
        assert_eq!(m.connections_total(), 1);
        let text = m.render_prometheus();
        assert!(text.contains("sse_subscribers{protocol=\"h2\",tls=\"true\"} 1\n"));
        assert!(text.contains("sse_subscribers{protocol=\"none\",tls=\"false\"} 0\n"));
        m.unsubscribed(Transport::Http2 { tls: true });
        assert_eq!(m.connections(), 0);
        assert_eq!(m.connections_total(), 1);
    }
}
