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
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use tokio::sync::OnceCell;

use super::connect::{Conn, Target, slot};
use super::entry::{Entry, range};
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

    /// The key remembering an append's token (so a retried append is not stored twice).
    pub(super) fn token(&self, b: usize, token: &str) -> String {
        format!("{}\0tok:{token}", self.bucket_prefix(b))
    }

    /// Where a command about bucket `b` but naming none of its keys (`SCAN`) goes: the primary of
    /// the bucket's slot in a cluster.
    fn route(&self, b: usize) -> Option<RoutingInfo> {
        self.target.is_cluster().then(|| {
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                slot(&b.to_string()),
                SlotAddr::Master,
            )))
        })
    }

    pub(super) fn unavailable(&self, what: &str, why: impl fmt::Display) -> Error {
        Error::Store(format!(
            "Redis at {} is unavailable ({what}: {why}); nothing was stored: retry once Redis is reachable",
            self.url
        ))
    }

    /// The shared multiplexed connection; it reconnects by itself after a failure.
    pub(super) async fn conn(&self) -> Result<Conn, Error> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                match tokio::time::timeout(self.timeout, self.target.shared(self.timeout)).await {
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
        match tokio::time::timeout(self.timeout, op(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.unavailable(what, e)),
            Err(_) => Err(self.unavailable(what, "timed out")),
        }
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

    /// The channels with a stream under `prefix`, in every bucket.
    pub(super) async fn streams_under(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for b in 0..self.buckets() {
            out.extend(self.bucket_streams_under(b, prefix).await?);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The channels of bucket `b` with a stream under `prefix` (a `SCAN` of their keys; in a cluster,
    /// on the primary that owns the bucket's slot).
    pub(super) async fn bucket_streams_under(
        &self,
        b: usize,
        prefix: &str,
    ) -> Result<Vec<String>, Error> {
        let bucket_prefix = self.bucket_prefix(b);
        let pattern = format!("{}*", glob_escape(&format!("{bucket_prefix}{prefix}")));
        let route = self.route(b);
        let mut out: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let mut cmd = ::redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
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
            out.extend(
                batch
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(bucket_prefix.as_str()).map(str::to_owned))
                    .filter(|k| {
                        k.len() > prefix.len() && !k.starts_with('\0') && self.bucket(k) == b
                    }),
            );
            if next == 0 {
                break;
            }
            cursor = next;
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
