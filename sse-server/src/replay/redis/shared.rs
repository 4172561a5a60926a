//! What the Redis store and its live feed both use: the target, the key layout, the retention and one
//! shared connection on which every command runs within the timeout.
//!
//! Key layout. One server (`redis://`): stream `<prefix><channel>`, sequencer `<prefix>\0seq`, created
//! streams `<prefix>\0created`: one bucket, one sequencer. A cluster (`redis+cluster://`): [`BUCKETS`]
//! buckets, `bucket(channel)` = FNV-1a 32 of the name mod [`BUCKETS`], and every key of bucket `k`
//! carries the hash tag `{k}` after the prefix (`<prefix>{k}<channel>`, `<prefix>{k}\0seq`,
//! `<prefix>{k}\0created`), so one script touches one slot, a channel lives on one shard, and a
//! slot migration moves whole buckets.

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::Value;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use tokio::sync::OnceCell;

use super::connect::{Conn, Target};
use super::entry::{Entry, items, range, text};
use crate::error::Error;
use crate::position::Position;
use crate::replay::retention::Retention;

/// What the store and its feed both use.
pub(super) struct Shared {
    pub(super) target: Target,
    pub(super) url: String,
    pub(super) prefix: String,
    pub(super) retention: Retention,
    pub(super) timeout: Duration,
    /// `--redis-ack replicated`: how long `WAIT` waits for a replica (`None`: acknowledge on the primary).
    pub(super) wait: Option<Duration>,
    /// The shared connection (one server, cluster); with Sentinel, the target keeps it.
    pub(super) conn: OnceCell<Conn>,
}

/// Buckets of a cluster store: a constant of the key layout (changing it moves every channel), so
/// never change it. 16 spreads the buckets over up to 16 shards.
pub(crate) const BUCKETS: usize = 16;

/// The bucket of `channel` in a cluster store: FNV-1a 32-bit of its name, mod [`BUCKETS`] (stable
/// across versions, processes and machines).
pub(crate) fn bucket_of(channel: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for &b in channel.as_bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % BUCKETS as u32) as usize
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Shared {
    /// How many buckets (sequencers): 1 on one server, [`BUCKETS`] in a cluster.
    pub(super) fn buckets(&self) -> usize {
        if self.target.is_cluster() { BUCKETS } else { 1 }
    }

    /// The bucket (sequencer) of `channel`.
    pub(super) fn bucket(&self, channel: &str) -> usize {
        if self.target.is_cluster() {
            bucket_of(channel)
        } else {
            0
        }
    }

    /// The key prefix of bucket `b`: the prefix, then `{b}` in a cluster.
    pub(super) fn bucket_prefix(&self, b: usize) -> String {
        if self.target.is_cluster() {
            format!("{}{{{b}}}", self.prefix)
        } else {
            self.prefix.clone()
        }
    }

    pub(super) fn key(&self, channel: &str) -> String {
        format!("{}{channel}", self.bucket_prefix(self.bucket(channel)))
    }

    /// The channel a stream key of bucket `b` holds (`None`: not one of ours).
    pub(super) fn channel_of<'k>(&self, b: usize, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.bucket_prefix(b).as_str())
    }

    /// Bucket `b`'s sequencer hash (a NUL cannot occur in a channel name: no collision).
    pub(super) fn sequencer(&self, b: usize) -> String {
        format!("{}\0seq", self.bucket_prefix(b))
    }

    /// The stream announcing bucket `b`'s channels whose stream was created, at the creating event's id.
    pub(super) fn created(&self, b: usize) -> String {
        format!("{}\0created", self.bucket_prefix(b))
    }

    /// The hash remembering recent appends' tokens and ids (so a retried append is not stored twice).
    pub(super) fn tokens(&self, b: usize) -> String {
        format!("{}\0tok", self.bucket_prefix(b))
    }

    /// The sorted set of recent tokens by time, to forget them.
    pub(super) fn token_times(&self, b: usize) -> String {
        format!("{}\0tokt", self.bucket_prefix(b))
    }

    pub(super) fn unavailable(&self, what: &str, why: impl fmt::Display) -> Error {
        Error::Store(format!(
            "Redis at {} is unavailable ({what}: {why}); nothing was stored: retry once Redis is reachable",
            self.url
        ))
    }

    /// The longest one command may take: the timeout, plus the `WAIT` of a replicated append.
    pub(super) fn command_timeout(&self) -> Duration {
        self.timeout + self.wait.unwrap_or_default()
    }

    /// The shared multiplexed connection; it reconnects by itself after a failure (with Sentinel:
    /// to the primary the sentinels name after the failure).
    pub(super) async fn conn(&self) -> Result<Conn, Error> {
        let shared = || self.target.shared(self.timeout, self.command_timeout());
        if let Target::Sentinel(_) = &self.target {
            // Each sentinel is asked within the timeout in turn: no bound over all of them.
            return shared()
                .await
                .map_err(|e| self.unavailable("find the primary", e));
        }
        let conn = self
            .conn
            .get_or_try_init(|| async {
                match tokio::time::timeout(self.timeout, shared()).await {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(e)) => Err(self.unavailable("connect", e)),
                    Err(_) => Err(self.unavailable("connect", "timed out")),
                }
            })
            .await?;
        Ok(conn.clone())
    }

    /// Runs `op` on the shared connection within the timeout.
    pub(super) async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, Error>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = ::redis::RedisResult<T>>,
    {
        let conn = self.conn().await?;
        let why = match tokio::time::timeout(self.command_timeout(), op(conn)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        self.target.failed().await;
        Err(self.unavailable(what, why))
    }

    /// `XTRIM key MINID = <now - max_age>`, or nothing when the age bound is off.
    pub(super) fn trim_by_age(&self, pipe: &mut ::redis::Pipeline, key: &str) {
        let age = self.retention.age().as_millis() as u64;
        if age > 0 {
            let cutoff = now_ms().saturating_sub(age);
            pipe.cmd("XTRIM")
                .arg(key)
                .arg("MINID")
                .arg("=")
                .arg(cutoff)
                .ignore();
        }
    }

    /// The channels with a stream under `prefix`: a `SCAN` of their keys, in a cluster on every
    /// primary (one pattern covers every bucket's tag).
    pub(super) async fn streams_under(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        if self.target.is_cluster() {
            let pattern = format!("{}{{*}}{}*", glob_escape(&self.prefix), glob_escape(prefix));
            for (host, port) in self.primaries().await? {
                let to = SingleNodeRoutingInfo::ByAddress { host, port };
                keys.extend(
                    self.scan(&pattern, Some(RoutingInfo::SingleNode(to)))
                        .await?,
                );
            }
        } else {
            let pattern = format!("{}*", glob_escape(&self.key(prefix)));
            keys = self.scan(&pattern, None).await?;
        }
        let mut out: Vec<String> = keys
            .iter()
            .filter_map(|k| self.channel_of_key(k))
            .filter(|c| c.len() > prefix.len() && c.starts_with(prefix) && !c.starts_with('\0'))
            .map(str::to_owned)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The channel a stream key holds (`None`: not one of ours, or a tag that is not its bucket's).
    fn channel_of_key<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        if !self.target.is_cluster() {
            return Some(rest);
        }
        let (tag, channel) = rest.strip_prefix('{')?.split_once('}')?;
        (tag.parse::<usize>().ok()? == bucket_of(channel)).then_some(channel)
    }

    /// Every key matching `pattern` (`SCAN … TYPE stream`), on the node `route` names, if any.
    async fn scan(&self, pattern: &str, route: Option<RoutingInfo>) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let mut cursor = 0u64;
        loop {
            let mut cmd = ::redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("stream");
            let route = route.clone();
            let (next, batch): (u64, Vec<String>) = self
                .run("SCAN", |mut c| async move {
                    match (&mut c, route) {
                        (Conn::Cluster(cc), Some(route)) => Ok(::redis::from_redis_value(
                            cc.route_command(cmd, route).await?,
                        )?),
                        _ => cmd.query_async(&mut c).await,
                    }
                })
                .await?;
            out.extend(batch);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// The cluster's primaries (`host`, `port`), as `CLUSTER SLOTS` lists them.
    async fn primaries(&self) -> Result<Vec<(String, u16)>, Error> {
        let v: Value = self
            .run("CLUSTER SLOTS", |mut c| async move {
                ::redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut out: Vec<(String, u16)> = items(&v)
            .iter()
            .filter_map(|range| {
                let node = items(items(range).get(2)?);
                let host = text(node.first()?)?;
                let port = text(node.get(1)?)?.parse().ok()?;
                Some((host, port))
            })
            .collect();
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err(self.unavailable("CLUSTER SLOTS", "no primary serves a slot"));
        }
        Ok(out)
    }

    /// The last position bucket `b`'s sequencer issued (`0-0` before the first): the append script
    /// bumps it and adds the entries in one step, so every entry at or before it is already in its
    /// stream.
    pub(super) async fn sequenced(&self, b: usize) -> Result<Position, Error> {
        let seq = self.sequencer(b);
        let (ms, n): (Option<u64>, Option<u64>) = self
            .run("HMGET", |mut c| async move {
                ::redis::cmd("HMGET")
                    .arg(seq)
                    .arg("ms")
                    .arg("n")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(Position::new(ms.unwrap_or(0), n.unwrap_or(0)))
    }

    /// The last entry of `key` (its entry id and client-visible id).
    pub(super) async fn last_entry(&self, key: &str) -> Result<Option<Entry>, Error> {
        let v: Value = self
            .run("XREVRANGE", |mut c| async move {
                ::redis::cmd("XREVRANGE")
                    .arg(key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(range(&v).into_iter().next())
    }
}

/// `s` with the glob characters of `SCAN MATCH` escaped.
pub(super) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
