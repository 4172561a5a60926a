//! The `multi` scenario (issue 14): what following many channels on one stream costs.
//!
//! * Idle memory: the server's RSS growth per subscriber holding a stream on 64 channels
//!   (`/events?channel=…` ×64), against one on a single channel (`/events/{ch}`), each in a fresh
//!   server. Two shapes: every subscriber on its own set (its own channel plus 63 shared ones, so no
//!   two streams share a multi-channel subscription), and every subscriber on the same set.
//! * Delivery CPU: the server's CPU time per delivered event when one channel is published to with N
//!   subscribers following it through the pattern `prefix/*`, against N direct subscribers of it;
//!   closed loop (the highest lossless rate), as the `max` scenario.
//!
//! Every case starts its own `sse-server` so no case inherits another's allocations.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

use crate::Error;
use crate::load::{Endpoint, Fleet, Publish, source_ip};
use crate::server::{self, ServerProc};

/// How the scenario runs.
///
/// ```
/// let cfg = sse_bench::multi::MultiConfig::new("target/release/sse-server".into(), 1000);
/// assert_eq!(cfg.channels, 64);
/// ```
#[derive(Debug, Clone)]
pub struct MultiConfig {
    /// The `sse-server` binary.
    pub bin: PathBuf,
    /// Subscribers per case.
    pub subscribers: usize,
    /// Channels of a multi-channel stream in the idle cases.
    pub channels: usize,
    /// Event payload size in bytes.
    pub size: usize,
    /// Publishing time of a delivery case.
    pub duration: Duration,
    /// Events in flight in the closed loop.
    pub window: u64,
    /// The server's `--queue-size`.
    pub queue_size: usize,
}

impl MultiConfig {
    /// Defaults for `subscribers` (64 channels, 128 B events, 10 s, window 64, queue 256).
    ///
    /// ```
    /// let cfg = sse_bench::multi::MultiConfig::new("sse-server".into(), 10);
    /// assert_eq!((cfg.subscribers, cfg.size), (10, 128));
    /// ```
    pub fn new(bin: PathBuf, subscribers: usize) -> MultiConfig {
        MultiConfig {
            bin,
            subscribers,
            channels: 64,
            size: 128,
            duration: Duration::from_secs(10),
            window: 64,
            queue_size: 256,
        }
    }
}

/// Idle memory of one case.
#[derive(Debug, Clone)]
pub struct IdleRow {
    /// What the subscribers follow.
    pub label: String,
    /// Subscribers held.
    pub subscribers: usize,
    /// Server RSS growth per subscriber, KiB.
    pub kib_per_sub: Option<f64>,
}

/// Delivery CPU of one case.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    /// How the subscribers follow the channel.
    pub label: String,
    /// Subscribers.
    pub subscribers: usize,
    /// Events delivered to all subscribers together.
    pub delivered: u64,
    /// Server CPU µs per delivered event.
    pub cpu_us_per_delivery: Option<f64>,
    /// Events lost or duplicated (should be 0).
    pub lost_or_duplicated: u64,
}

/// The scenario's results.
#[derive(Debug, Clone, Default)]
pub struct MultiReport {
    /// Idle cases, in order: own 1, own N, shared 1, shared N.
    pub idle: Vec<IdleRow>,
    /// Delivery cases: direct, then pattern.
    pub delivery: Vec<DeliveryRow>,
}

/// Flags that let one benchmark client hold many multi-channel streams: every entry counts against
/// the per-address and per-connection subscription limits, and own-set streams create a channel each.
const LIMIT_FLAGS: [&str; 8] = [
    "--max-subscriptions-per-ip",
    "1000000000",
    "--max-subscriptions-per-connection",
    "100000",
    "--max-channels",
    "100000000",
    "--heartbeat",
    "0",
];

fn start(cfg: &MultiConfig) -> Result<ServerProc, Error> {
    ServerProc::start_ours_with(&cfg.bin, cfg.queue_size, &LIMIT_FLAGS)
}

/// The request path of subscriber `i`.
type PathOf = Box<dyn Fn(usize) -> String>;

/// Runs every case (four idle, two delivery), each on a fresh server.
pub async fn run(cfg: &MultiConfig) -> Result<MultiReport, Error> {
    let n = cfg.channels;
    let shared = |k: usize| -> String {
        let list: Vec<String> = (k..n).map(|c| format!("channel=s{c}")).collect();
        list.join("&")
    };
    let (own_rest, all_shared) = (shared(1), shared(0));
    let mut report = MultiReport::default();
    let idle_cases: [(String, PathOf); 4] = [
        (
            "1 channel, own".into(),
            Box::new(|i| format!("/events/own{i}")),
        ),
        (
            format!("{n} channels, own set"),
            Box::new(move |i| format!("/events?channel=own{i}&{own_rest}")),
        ),
        (
            "1 channel, shared".into(),
            Box::new(|_| "/events/s0".into()),
        ),
        (
            format!("{n} channels, same set"),
            Box::new(move |_| format!("/events?{all_shared}")),
        ),
    ];
    for (label, path) in idle_cases {
        eprintln!("sse-bench: multi idle: {label}");
        report.idle.push(idle_cost(cfg, label, &*path).await?);
    }
    for (label, sub) in [
        ("direct /events/p/x", "/events/p/x"),
        ("pattern ?channel=p/*", "/events?channel=p/*"),
    ] {
        eprintln!("sse-bench: multi delivery: {label}");
        report
            .delivery
            .push(delivery_cost(cfg, label, sub, "/events/p/x").await?);
    }
    Ok(report)
}

/// Holds `cfg.subscribers` idle streams (subscriber `i` on `path(i)`) and reports the RSS growth.
async fn idle_cost(
    cfg: &MultiConfig,
    label: String,
    path: &dyn Fn(usize) -> String,
) -> Result<IdleRow, Error> {
    let proc = start(cfg)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = proc.sample();
    let mut held = Vec::with_capacity(cfg.subscribers);
    for i in 0..cfg.subscribers {
        held.push(hold(proc.addr, i, &path(i)).await?);
    }
    tokio::time::sleep(server::settle()).await;
    let after = proc.sample();
    for h in held {
        h.abort();
    }
    Ok(IdleRow {
        label,
        subscribers: cfg.subscribers,
        kib_per_sub: match (base, after) {
            (Some(b), Some(a)) => {
                Some((a.rss_kib as f64 - b.rss_kib as f64) / cfg.subscribers.max(1) as f64)
            }
            _ => None,
        },
    })
}

/// Opens `GET path` as subscriber `i` (from its own loopback source address), waits for a 200 head,
/// then keeps reading in a task (so heartbeats or events never fill the socket) until aborted.
async fn hold(addr: SocketAddr, i: usize, path: &str) -> Result<JoinHandle<()>, Error> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source_ip(addr, i) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let mut s = socket.connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let got = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .map_err(|_| Error::Http(format!("no response head for {path}")))??;
        if got == 0 {
            break;
        }
        head.extend_from_slice(&buf[..got]);
    }
    let text = String::from_utf8_lossy(&head);
    if !text.starts_with("HTTP/1.1 200") {
        let first = text.lines().next().unwrap_or_default().to_owned();
        return Err(Error::Http(format!(
            "{path} answered `{first}`; this sse-server may not support multi-channel streams"
        )));
    }
    Ok(tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
    }))
}

/// Publishes to `publish_path` in a closed loop with `cfg.subscribers` subscribers on `sub_path` and
/// reports the server's CPU per delivered event.
async fn delivery_cost(
    cfg: &MultiConfig,
    label: &str,
    sub_path: &str,
    publish_path: &str,
) -> Result<DeliveryRow, Error> {
    let proc = start(cfg)?;
    let endpoint = |path: &str| Endpoint {
        addr: proc.addr,
        host: proc.addr.to_string(),
        path: path.to_owned(),
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fleet = Fleet::new(endpoint(sub_path));
    fleet.grow(cfg.subscribers).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let publish = Publish::Http {
        endpoint: endpoint(publish_path),
        token: server::TOKEN.into(),
    };
    let before = proc.sample();
    let stats = fleet
        .run(&publish, cfg.size, None, cfg.window, cfg.duration)
        .await?;
    let after = proc.sample();
    let outcomes = fleet.finish(stats.published).await;
    let delivered: u64 = outcomes.iter().map(|o| o.tracker.received()).sum();
    let bad = outcomes
        .iter()
        .map(|o| o.tracker.lost() + o.tracker.duplicated())
        .sum();
    Ok(DeliveryRow {
        label: label.to_owned(),
        subscribers: cfg.subscribers,
        delivered,
        cpu_us_per_delivery: match (before, after) {
            (Some(b), Some(a)) if delivered > 0 => {
                Some(a.cpu.saturating_sub(b.cpu).as_secs_f64() * 1e6 / delivered as f64)
            }
            _ => None,
        },
        lost_or_duplicated: bad,
    })
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".into(),
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.2}"))
}

impl MultiReport {
    /// The results as Markdown tables, with the two ratios the issue sets targets for (memory at
    /// most 2x, CPU per delivery at most 1.2x).
    ///
    /// ```
    /// let text = sse_bench::multi::MultiReport::default().markdown();
    /// assert!(text.contains("KiB per subscriber"));
    /// ```
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| idle: subscribers follow | subscribers | KiB per subscriber |\n|---|---:|---:|\n",
        );
        for r in &self.idle {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                r.label,
                r.subscribers,
                num(r.kib_per_sub)
            );
        }
        out.push_str("\n| delivery: subscribers follow | subscribers | delivered | CPU µs per delivery | lost+dup |\n|---|---:|---:|---:|---:|\n");
        for r in &self.delivery {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                r.label,
                r.subscribers,
                r.delivered,
                num(r.cpu_us_per_delivery),
                r.lost_or_duplicated
            );
        }
        let kib = |i: usize| self.idle.get(i).and_then(|r| r.kib_per_sub);
        let cpu = |i: usize| self.delivery.get(i).and_then(|r| r.cpu_us_per_delivery);
        let _ = write!(
            out,
            "\nmemory, many channels ÷ one (target ≤ 2x): own set {}, same set {}\n\
             CPU per delivery, pattern ÷ direct (target ≤ 1.2x): {}\n",
            ratio(kib(1), kib(0)),
            ratio(kib(3), kib(2)),
            ratio(cpu(1), cpu(0)),
        );
        out
    }
}
