//! What the Redis store and its live feed both use: the client, the key layout, the retention and one
//! shared connection on which every command runs within the timeout.

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Value};
use tokio::sync::OnceCell;

use super::entry::{Entry, range};
use super::sentinel::Primary;
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
    pub(super) conn: OnceCell<ConnectionManager>,
}

/// How the primary is reached.
pub(super) enum Target {
    /// One address (`redis://`, `rediss://`); the connection reconnects to it by itself.
    Direct(Client),
    /// Whichever node the sentinels name (`redis+sentinel://`, `rediss+sentinel://`).
    Sentinel(Primary),
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Shared {
    pub(super) fn key(&self, channel: &str) -> String {
        format!("{}{channel}", self.prefix)
    }

    /// The hub-wide sequencer's hash (a NUL cannot occur in a channel name: no collision).
    pub(super) fn sequencer(&self) -> String {
        format!("{}\0seq", self.prefix)
    }

    /// The stream announcing channels whose stream was created, at the creating event's id.
    pub(super) fn created(&self) -> String {
        format!("{}\0created", self.prefix)
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

    /// A client for the primary (with Sentinel: the one the sentinels name now).
    pub(super) async fn client(&self) -> Result<Client, Error> {
        match &self.target {
            Target::Direct(client) => Ok(client.clone()),
            Target::Sentinel(p) => p
                .sentinel
                .primary(self.timeout)
                .await
                .map_err(|e| self.unavailable("find the primary", e)),
        }
    }

    /// The shared multiplexed connection; it reconnects by itself after a failure (with Sentinel:
    /// to the primary the sentinels name after the failure).
    pub(super) async fn conn(&self) -> Result<ConnectionManager, Error> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.command_timeout()))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(2);
        let client = match &self.target {
            Target::Direct(client) => client,
            Target::Sentinel(p) => {
                return p
                    .conn(self.timeout, config)
                    .await
                    .map_err(|e| self.unavailable("find the primary", e));
            }
        };
        let conn = self
            .conn
            .get_or_try_init(|| async {
                ConnectionManager::new_lazy_with_config(client.clone(), config)
            })
            .await
            .map_err(|e| self.unavailable("connect", e))?;
        Ok(conn.clone())
    }

    /// Runs `op` on the shared connection within the timeout.
    pub(super) async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, Error>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = ::redis::RedisResult<T>>,
    {
        let conn = self.conn().await?;
        let why = match tokio::time::timeout(self.command_timeout(), op(conn)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        // A refused or lost connection, a timeout, READONLY from a demoted primary: with Sentinel,
        // the next command asks which node is the primary now.
        if let Target::Sentinel(p) = &self.target {
            p.forget().await;
        }
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

    /// The channels with a stream under `prefix` (a `SCAN` of their keys).
    pub(super) async fn streams_under(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let pattern = format!("{}*", glob_escape(&self.key(prefix)));
        let mut out: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let pattern = pattern.clone();
            let (next, batch): (u64, Vec<String>) = self
                .run("SCAN", |mut c| async move {
                    ::redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .arg("TYPE")
                        .arg("stream")
                        .query_async(&mut c)
                        .await
                })
                .await?;
            out.extend(
                batch
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_owned))
                    .filter(|k| k.len() > prefix.len()),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The last position the sequencer issued (`0-0` before the first): the append script bumps it
    /// and adds the entries in one step, so every entry at or before it is already in its stream.
    pub(super) async fn sequenced(&self) -> Result<Position, Error> {
        let seq = self.sequencer();
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
