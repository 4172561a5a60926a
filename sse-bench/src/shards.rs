//! The `--redis-cluster N` benchmark (issue 19): what Redis Cluster shards buy a hub cluster.
//!
//! Three `sse-server` nodes share one store: a plain `redis-server` (`redis://`), a Redis Cluster of
//! one primary, and one of N primaries (`redis+cluster://`), each started fresh here on loopback
//! ([`redis_cluster`](crate::redis_cluster)). Publishers and subscribers are on every node and every
//! delivery crosses nodes: channel `c` is published to on node `c mod 3` and followed on node
//! `c + 1 mod 3`. Many channels, so that their buckets spread over the shards. Two runs per store:
//!
//! * closed loop: every channel's publisher keeps at most `window` events ahead of its slowest
//!   subscriber, all channels at once; the sum of their publishes/s is the cross-node rate;
//! * fixed rate: `rate` events/s over all channels together; the delivery latency's p50 and p99.
//!
//! Lost and duplicated events are counted (they must be 0). Nothing is asserted about speed.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::join_all;

use crate::Error;
use crate::load::{Endpoint, Fleet, Publish};
use crate::redis_cluster::Redis;
use crate::server::{self, ServerProc};
use crate::stats::Histogram;

/// Hub nodes of every store.
const NODES: usize = 3;

/// How the benchmark runs.
///
/// ```
/// let cfg = sse_bench::shards::ShardsConfig::new("target/release/sse-server".into(), 3);
/// assert_eq!((cfg.shards, cfg.channels), (3, 48));
/// ```
#[derive(Debug, Clone)]
pub struct ShardsConfig {
    /// The `sse-server` binary.
    pub bin: PathBuf,
    /// Primaries of the larger cluster (the smaller has 1).
    pub shards: usize,
    /// Channels, spread over the nodes and (by their buckets) over the shards.
    pub channels: usize,
    /// Subscribers per channel.
    pub subscribers: usize,
    /// Event payload size in bytes.
    pub size: usize,
    /// Events in flight per channel in the closed loop.
    pub window: u64,
    /// Publishing time of each run.
    pub duration: Duration,
    /// Events per second over all channels in the fixed-rate run.
    pub rate: f64,
    /// The nodes' `--queue-size`.
    pub queue_size: usize,
}

impl ShardsConfig {
    /// Defaults for `shards` primaries: 48 channels × 4 subscribers, 128 B events, window 64, 10 s
    /// per run, 1,000 events/s in the fixed-rate run, queue 256.
    ///
    /// ```
    /// let cfg = sse_bench::shards::ShardsConfig::new("sse-server".into(), 3);
    /// assert_eq!((cfg.subscribers, cfg.rate), (4, 1000.0));
    /// ```
    pub fn new(bin: PathBuf, shards: usize) -> ShardsConfig {
        ShardsConfig {
            bin,
            shards,
            channels: 48,
            subscribers: 4,
            size: 128,
            window: 64,
            duration: Duration::from_secs(10),
            rate: 1000.0,
            queue_size: 256,
        }
    }
}

/// One store's results.
#[derive(Debug, Clone, Default)]
pub struct ShardRow {
    /// What the nodes share (`redis://`, `redis+cluster://`).
    pub store: String,
    /// Redis primaries.
    pub primaries: usize,
    /// Why nothing was measured, if so.
    pub error: Option<String>,
    /// Subscribers over all nodes.
    pub subscribers: usize,
    /// Closed loop: publishes per second, all nodes together.
    pub published_per_s: f64,
    /// Closed loop: deliveries per second.
    pub delivered_per_s: f64,
    /// Closed loop: p99 delivery latency in ms.
    pub closed_p99_ms: Option<f64>,
    /// Closed loop: CPU µs of the three nodes together per publish.
    pub hub_us_per_publish: Option<f64>,
    /// Closed loop: CPU µs of every redis-server together per publish.
    pub redis_us_per_publish: Option<f64>,
    /// Closed loop: of it, µs inside the append script (`EVALSHA`/`EVAL`, Redis's own count) per
    /// publish.
    pub append_us_per_publish: Option<f64>,
    /// Closed loop: of it, µs inside the nodes' `XREAD`s per publish.
    pub read_us_per_publish: Option<f64>,
    /// Fixed rate: the rate reached, events/s.
    pub rate_per_s: f64,
    /// Fixed rate: p50 delivery latency in ms.
    pub rate_p50_ms: Option<f64>,
    /// Fixed rate: p99 delivery latency in ms.
    pub rate_p99_ms: Option<f64>,
    /// Events lost, both runs.
    pub lost: u64,
    /// Events delivered twice, both runs.
    pub duplicated: u64,
    /// Subscribers whose stream failed or ended early, both runs.
    pub dropped: usize,
}

/// The benchmark's results: plain Redis, a 1-primary cluster, an N-primary cluster.
#[derive(Debug, Clone, Default)]
pub struct ShardsReport {
    /// One row per store.
    pub rows: Vec<ShardRow>,
    /// The configuration's channels, subscribers per channel, fixed rate and seconds per run.
    pub channels: usize,
    /// Subscribers per channel.
    pub subscribers: usize,
    /// The fixed rate.
    pub rate: f64,
    /// Seconds of publishing per run.
    pub seconds: f64,
}

/// Runs the benchmark on every store: `redis://`, a 1-primary cluster and (if `shards > 1`) an
/// N-primary one. A store whose nodes do not start (say, an sse-server without cluster support) is
/// reported with its error, not measured.
pub async fn run(cfg: &ShardsConfig) -> Result<ShardsReport, Error> {
    let mut stores = vec![0, 1];
    if cfg.shards > 1 {
        stores.push(cfg.shards);
    }
    let mut report = ShardsReport {
        channels: cfg.channels,
        subscribers: cfg.subscribers,
        rate: cfg.rate,
        seconds: cfg.duration.as_secs_f64(),
        ..ShardsReport::default()
    };
    for primaries in stores {
        let redis = if primaries == 0 {
            Redis::plain()?
        } else {
            Redis::cluster(primaries)?
        };
        let store = redis.url();
        let store = store.split("://").next().unwrap_or_default().to_owned() + "://";
        eprintln!(
            "sse-bench: redis-cluster: {store} with {} primaries",
            redis.primaries()
        );
        let row = match measure(cfg, &redis).await {
            Ok(row) => row,
            Err(e) => {
                eprintln!("sse-bench: redis-cluster: {store} not measured: {e}");
                ShardRow {
                    error: Some(e.to_string()),
                    ..ShardRow::default()
                }
            }
        };
        report.rows.push(ShardRow {
            store,
            primaries: redis.primaries(),
            ..row
        });
    }
    Ok(report)
}

/// Starts the nodes on `redis`, then the closed-loop run and the fixed-rate run.
async fn measure(cfg: &ShardsConfig, redis: &Redis) -> Result<ShardRow, Error> {
    let url = redis.url();
    let mut nodes = Vec::with_capacity(NODES);
    for _ in 0..NODES {
        nodes.push(ServerProc::start_ours_with(
            &cfg.bin,
            cfg.queue_size,
            &["--redis", &url, "--max-subscriptions-per-ip", "1000000000"],
        )?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let closed = drive(cfg, &nodes, redis, "max", None).await?;
    let fixed = drive(cfg, &nodes, redis, "rate", Some(cfg.rate)).await?;
    let publishes = closed.published.max(1) as f64;
    let per_publish = |cpu: Option<Duration>| cpu.map(|c| c.as_secs_f64() * 1e6 / publishes);
    let ms = |h: &Histogram, p: f64| (h.count() > 0).then(|| h.percentile(p) as f64 / 1000.0);
    Ok(ShardRow {
        subscribers: cfg.channels * cfg.subscribers,
        published_per_s: closed.published as f64 / closed.publish_time.as_secs_f64().max(1e-9),
        delivered_per_s: closed.delivered as f64 / closed.total_time.as_secs_f64().max(1e-9),
        closed_p99_ms: ms(&closed.latency, 99.0),
        hub_us_per_publish: per_publish(closed.hub_cpu),
        redis_us_per_publish: per_publish(closed.redis_cpu),
        append_us_per_publish: per_publish(closed.append),
        read_us_per_publish: per_publish(closed.read),
        rate_per_s: fixed.published as f64 / fixed.publish_time.as_secs_f64().max(1e-9),
        rate_p50_ms: ms(&fixed.latency, 50.0),
        rate_p99_ms: ms(&fixed.latency, 99.0),
        lost: closed.lost + fixed.lost,
        duplicated: closed.duplicated + fixed.duplicated,
        dropped: closed.dropped + fixed.dropped,
        ..ShardRow::default()
    })
}

/// What one run saw, all channels together.
#[derive(Debug, Default)]
struct Drive {
    published: u64,
    /// The longest publishing time of any channel.
    publish_time: Duration,
    /// The longest time until a channel's subscribers had everything.
    total_time: Duration,
    delivered: u64,
    latency: Histogram,
    hub_cpu: Option<Duration>,
    redis_cpu: Option<Duration>,
    /// Time inside EVALSHA and XREAD, by Redis's command statistics.
    append: Option<Duration>,
    read: Option<Duration>,
    lost: u64,
    duplicated: u64,
    dropped: usize,
}

/// Microseconds from `before` to `now`, as a duration.
fn since(now: Option<u64>, before: Option<u64>) -> Option<Duration> {
    now.zip(before)
        .map(|(a, b)| Duration::from_micros(a.saturating_sub(b)))
}

fn hub_cpu(nodes: &[ServerProc]) -> Option<Duration> {
    nodes.iter().map(|n| n.sample().map(|s| s.cpu)).sum()
}

/// Subscribes every channel (prefix `tag`) on its node, publishes to all of them at once on their
/// publishing nodes, at `rate` over all channels or (None) in a closed loop, and collects the counts.
async fn drive(
    cfg: &ShardsConfig,
    nodes: &[ServerProc],
    redis: &Redis,
    tag: &str,
    rate: Option<f64>,
) -> Result<Drive, Error> {
    let mut fleets = Vec::with_capacity(cfg.channels);
    for c in 0..cfg.channels {
        let at = |node: usize, path: &str| {
            let addr = nodes[node % nodes.len()].addr;
            Endpoint {
                addr,
                host: addr.to_string(),
                path: path.to_owned(),
            }
        };
        let path = format!("/events/{tag}{c}");
        let mut fleet = Fleet::new(at(c + 1, &path));
        fleet.grow(cfg.subscribers).await?;
        let publish = Publish::Http {
            endpoint: at(c, &path),
            token: server::TOKEN.into(),
        };
        fleets.push((fleet, publish));
    }
    // Every node's feed reads its new channels' streams before the first publish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_channel = rate.map(|r| r / cfg.channels.max(1) as f64);
    let (hub_before, redis_before) = (hub_cpu(nodes), redis.cpu());
    // The append script runs as EVALSHA, or EVAL the first time on a server.
    let (append, read): (&[&str], &[&str]) = (&["evalsha", "eval"], &["xread"]);
    let usec = |names: &[&str]| redis.command_usec(names);
    let (append_before, read_before) = (usec(append), usec(read));
    let runs = join_all(
        fleets
            .iter()
            .map(|(f, p)| f.run(p, cfg.size, per_channel, cfg.window, cfg.duration)),
    )
    .await;
    let mut out = Drive {
        hub_cpu: hub_cpu(nodes)
            .zip(hub_before)
            .map(|(a, b)| a.saturating_sub(b)),
        redis_cpu: redis
            .cpu()
            .zip(redis_before)
            .map(|(a, b)| a.saturating_sub(b)),
        append: since(usec(append), append_before),
        read: since(usec(read), read_before),
        ..Drive::default()
    };
    for ((fleet, _), stats) in fleets.into_iter().zip(runs) {
        let stats = stats?;
        out.published += stats.published;
        out.publish_time = out.publish_time.max(stats.publish_time);
        out.total_time = out.total_time.max(stats.total_time);
        out.latency.merge(&stats.latency);
        for o in fleet.finish(stats.published).await {
            out.delivered += o.tracker.received();
            out.lost += o.tracker.lost();
            out.duplicated += o.tracker.duplicated();
            out.dropped += usize::from(o.dropped);
        }
    }
    Ok(out)
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".into(),
    }
}

impl ShardsReport {
    /// The results as a Markdown table, then the ratios: N shards ÷ 1 shard, 1 shard ÷ plain Redis.
    ///
    /// ```
    /// let text = sse_bench::shards::ShardsReport::default().markdown();
    /// assert!(text.contains("publishes/s"));
    /// ```
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "{NODES} sse-server nodes; {} channels × {} subscribers; every delivery crosses nodes; \
             {:.0} s per run; fixed rate {:.0} events/s over all channels\n\n\
             | store | primaries | subs | closed loop: publishes/s | deliveries/s | p99 ms | \
             nodes CPU µs/publish | redis CPU µs/publish | in EVALSHA | in XREAD | \
             fixed rate: events/s | p50 ms | p99 ms | lost | dup | dropped |\n\
             |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
            self.channels, self.subscribers, self.seconds, self.rate
        );
        for r in &self.rows {
            if let Some(e) = &r.error {
                // A node that did not start: what it said, not its whole command line.
                let e = e.rsplit("it said: ").next().unwrap_or(e);
                let _ = writeln!(
                    out,
                    "| {} | {} | not measured: {} |",
                    r.store,
                    r.primaries,
                    e.replace('|', "/")
                );
                continue;
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
                r.store,
                r.primaries,
                r.subscribers,
                r.published_per_s,
                r.delivered_per_s,
                num(r.closed_p99_ms, 2),
                num(r.hub_us_per_publish, 1),
                num(r.redis_us_per_publish, 1),
                num(r.append_us_per_publish, 1),
                num(r.read_us_per_publish, 1),
                r.rate_per_s,
                num(r.rate_p50_ms, 2),
                num(r.rate_p99_ms, 2),
                r.lost,
                r.duplicated,
                r.dropped
            );
        }
        out.push_str(&self.ratios());
        out
    }

    fn ratios(&self) -> String {
        let measured = |cluster: bool, primaries: Option<usize>| {
            self.rows.iter().find(|r| {
                r.error.is_none()
                    && r.store.contains("cluster") == cluster
                    && primaries.is_none_or(|p| r.primaries == p)
            })
        };
        let plain = measured(false, None);
        let one = measured(true, Some(1));
        let many = self
            .rows
            .iter()
            .rfind(|r| r.error.is_none() && r.store.contains("cluster") && r.primaries > 1);
        let pubs = |r: Option<&ShardRow>| r.map(|r| r.published_per_s);
        let p99 = |r: Option<&ShardRow>| r.and_then(|r| r.rate_p99_ms);
        let mut out = String::new();
        if let Some(m) = many {
            let _ = writeln!(
                out,
                "\n{} shards ÷ 1 shard: publishes/s {}, p99 at the fixed rate {}",
                m.primaries,
                ratio(pubs(many), pubs(one)),
                ratio(p99(many), p99(one))
            );
        }
        let _ = writeln!(
            out,
            "1-shard cluster ÷ plain redis://: publishes/s {}, p99 at the fixed rate {}",
            ratio(pubs(one), pubs(plain)),
            ratio(p99(one), p99(plain))
        );
        out
    }

    /// Events lost or duplicated and subscribers dropped over every measured store (should be 0),
    /// and the stores not measured.
    ///
    /// ```
    /// assert_eq!(sse_bench::shards::ShardsReport::default().problems(), (0, 0));
    /// ```
    pub fn problems(&self) -> (u64, usize) {
        let bad = self
            .rows
            .iter()
            .map(|r| r.lost + r.duplicated + r.dropped as u64)
            .sum();
        (bad, self.rows.iter().filter(|r| r.error.is_some()).count())
    }
}
