//! The Redis replay store: one Redis Stream per channel, shared by every node of a cluster.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::Value;
use sse_proto::Event;
use tokio::sync::OnceCell;

use super::retention::Retention;
use super::store::{BoxFuture, LiveFeed, Replay, ReplayStore, Reset, ResetReason, StoredChannel};
use super::stored::{self, StoredEvent};
use crate::error::Error;
use crate::position::Position;

mod connect;
mod entry;
mod feed;
mod sentinel;
mod shared;

use connect::{Options, SHAPES, Target};
use entry::{deleted_through, pairs, range, text};
use feed::Feed;
use shared::{Shared, now_ms};

/// The append script: one sequencer for every channel of a bucket (`KEYS[1]`, a hash of the last `ms`
/// and the counter `n`; one server has one bucket), so an event's entry id `<ms>-<n>` is the same in
/// every stream it goes to (a broadcast) and ids of all streams of the bucket compare in sequencer
/// order. `ms` is Redis's clock, never going back (the last `ms` is kept), so retention by age
/// (`MINID`) keeps working. A stream that did not exist is announced in `KEYS[2]` at that id, for the
/// live feeds following patterns.
///
/// Tokens (when `ARGV[4]`, the ms to remember one, is not 0): `KEYS[3]` maps the append's token
/// (`ARGV[5]`) to its id and `KEYS[4]` orders the tokens by time, so a client that retries the script
/// after a lost answer gets the first id back instead of a second entry. They are two long-lived keys
/// rather than one key per token because, during a slot migration, a script naming a key that does
/// not exist (yet) next to keys that do is refused (`TRYAGAIN`).
///
/// `KEYS[5..]`: the streams; `ARGV`: MAXLEN, MINID cutoff (0: none), PEXPIRE ms (0: none), token ms,
/// token, the number of field arguments, the fields, then the channel names of the streams.
const APPEND: &str = r"
if ARGV[4] ~= '0' then
  local seen = redis.call('HGET', KEYS[3], ARGV[5])
  if seen then return seen end
end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('HGET', KEYS[1], 'ms') or '0')
if ms < last then ms = last end
redis.call('HSET', KEYS[1], 'ms', string.format('%d', ms))
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local id = string.format('%d-%d', ms, n)
local nf = tonumber(ARGV[6])
local fields = {}
for i = 1, nf do fields[i] = ARGV[6 + i] end
local created = {}
for k = 5, #KEYS do
  if redis.call('EXISTS', KEYS[k]) == 0 then created[#created + 1] = ARGV[6 + nf + k - 4] end
  redis.call('XADD', KEYS[k], 'MAXLEN', '=', ARGV[1], id, unpack(fields))
  if ARGV[2] ~= '0' then redis.call('XTRIM', KEYS[k], 'MINID', '=', ARGV[2]) end
  if ARGV[3] ~= '0' then redis.call('PEXPIRE', KEYS[k], ARGV[3]) end
end
if #created > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 10000, id, 'n', table.concat(created, '\n'))
end
if ARGV[4] ~= '0' then
  local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ms - tonumber(ARGV[4]), 'LIMIT', 0, 100)
  if #old > 0 then
    redis.call('HDEL', KEYS[3], unpack(old))
    redis.call('ZREM', KEYS[4], unpack(old))
  end
  redis.call('HSET', KEYS[3], ARGV[5], id)
  redis.call('ZADD', KEYS[4], ms, ARGV[5])
end
return id
";

/// How long a cluster append's token is remembered, at least: longer than the cluster client goes on
/// retrying one command (bounded by the store's timeout).
const TOKEN_MIN: Duration = Duration::from_secs(30);

/// Fewest entries a stream keeps, whatever the replay window: the per-node read loops read the live
/// events from the stream itself, so it must hold at least what a loop may lag behind.
pub(crate) const MIN_STREAM_LEN: usize = 100;

/// When a publish is acknowledged (`--redis-ack`).
///
/// ```
/// let store = sse_server::RedisStore::builder("redis://127.0.0.1:6379")
///     .ack(sse_server::RedisAck::Replicated)
///     .build()?;
/// # drop(store);
/// # Ok::<(), sse_server::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisAck {
    /// Once the primary stored the event (a primary that dies before its replica copied it loses it).
    #[default]
    Primary,
    /// Once a replica confirmed it too (`WAIT 1 <wait>` after the append); no replica in time
    /// answers 503, and the event may still appear (it is on the primary, and may reach a replica).
    Replicated,
}

/// Default of [`RedisStoreBuilder::wait`]: long enough for a replica on a healthy network (a
/// replica acknowledges within a round trip), short enough that a publisher soon learns it is gone.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_millis(500);

/// The Redis replay store: each channel is a Redis Stream (`<prefix><channel>`), so several `sse-server`
/// nodes share one ordered log and one replay window, and fan out from it (see [`LiveFeed`]).
///
/// * **Ids**: a hub-assigned event id *is* the Redis entry id (`<ms>-<seq>`), globally ordered per
///   channel, so `Last-Event-ID` resumes on whichever node a client reconnects to.
/// * **Publisher ids**: kept in the entry (field `c`) and sent to clients as the event's id; resuming
///   from one finds it by scanning the (bounded) window backwards. Ids shaped like entry ids
///   (`<digits>-<digits>`) are refused with 400, since they would be read as positions.
/// * **Retention**: `XADD … MAXLEN = max_events` (at least 100, because live delivery reads the
///   stream), `XTRIM … MINID` for the age bound on every append and replay, and the key expires when
///   a channel is idle for the whole window. The byte bound is not enforced (size Redis with
///   `maxmemory` instead).
/// * **Failures**: every command is bounded by a timeout; an unreachable Redis fails publishes and
///   replays with [`Error::Store`] (503) and never acknowledges an event it did not store. The
///   connection and the read loop reconnect with backoff.
///
/// No connection is made until the store is first used, so building it needs no running Redis.
///
/// ```
/// let store = sse_server::RedisStore::builder("redis://127.0.0.1:6379").build()?;
/// let hub = sse_server::Hub::builder().store(std::sync::Arc::new(store)).build();
/// # drop(hub);
/// # Ok::<(), sse_server::Error>(())
/// ```
pub struct RedisStore {
    shared: Arc<Shared>,
    feed: Arc<Feed>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shared.url)
            .field("prefix", &self.shared.prefix)
            .field("retention", &self.shared.retention)
            .finish_non_exhaustive()
    }
}

/// Configures a [`RedisStore`].
///
/// ```
/// use std::time::Duration;
/// let store = sse_server::RedisStore::builder("redis://127.0.0.1:6379/0")
///     .retention(sse_server::Retention::default().max_events(500))
///     .key_prefix("myapp:sse:")
///     .timeout(Duration::from_secs(1))
///     .build()?;
/// # drop(store);
/// # Ok::<(), sse_server::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "call .build() to get the store"]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    retention: Retention,
    timeout: Duration,
    ack: RedisAck,
    wait: Duration,
    root_ca: Option<Vec<u8>>,
}

impl RedisStoreBuilder {
    /// The replay window (default [`Retention::default`]).
    ///
    /// ```
    /// let _ = sse_server::RedisStore::builder("redis://127.0.0.1").retention(Default::default());
    /// ```
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Prefix of the stream keys (default `sse:`): channel `news` lives in key `sse:news`.
    ///
    /// ```
    /// let _ = sse_server::RedisStore::builder("redis://127.0.0.1").key_prefix("app1:");
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Longest a Redis command may take before the operation fails with 503 (default 2 s).
    ///
    /// ```
    /// let _ = sse_server::RedisStore::builder("redis://127.0.0.1").timeout(std::time::Duration::from_secs(1));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// When a publish is acknowledged (default [`RedisAck::Primary`]).
    ///
    /// ```
    /// let _ = sse_server::RedisStore::builder("redis://127.0.0.1").ack(sse_server::RedisAck::Replicated);
    /// ```
    pub fn ack(mut self, ack: RedisAck) -> Self {
        self.ack = ack;
        self
    }

    /// With [`RedisAck::Replicated`]: how long a publish waits for a replica to confirm it (default
    /// 500 ms; at least 1 ms) before it answers 503.
    ///
    /// ```
    /// let _ = sse_server::RedisStore::builder("redis://127.0.0.1").wait(std::time::Duration::from_millis(200));
    /// ```
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait.max(Duration::from_millis(1));
        self
    }

    /// For `rediss://`: trust these CA certificates (PEM) instead of the system's roots (which
    /// `SSL_CERT_FILE` may also point at a private CA's file).
    ///
    /// ```
    /// let _ = sse_server::RedisStore::builder("rediss://127.0.0.1:6380").tls_root_ca(b"-----BEGIN CERTIFICATE-----\n".to_vec());
    /// ```
    pub fn tls_root_ca(mut self, pem: Vec<u8>) -> Self {
        self.root_ca = Some(pem);
        self
    }

    /// Checks the URL and builds the store (no connection is made yet).
    ///
    /// ```
    /// assert!(sse_server::RedisStore::builder("http://nope").build().is_err());
    /// ```
    pub fn build(self) -> Result<RedisStore, Error> {
        let wait = (self.ack == RedisAck::Replicated).then_some(self.wait);
        let opts = Options {
            timeout: self.timeout,
            command: self.timeout + wait.unwrap_or_default(),
            root_ca: self.root_ca.as_deref(),
        };
        let target = Target::open(&self.url, &opts).map_err(|e| {
            Error::Store(format!(
                "invalid Redis URL {:?} ({e}); write it as {SHAPES}",
                redact(&self.url)
            ))
        })?;
        if target.is_cluster() && self.prefix.contains(['{', '}']) {
            return Err(Error::Store(format!(
                "the key prefix {:?} contains {{ or }}, which would change the hash slot of the \
                 keys in a Redis Cluster; choose a prefix without braces",
                self.prefix
            )));
        }
        let shared = Arc::new(Shared {
            target,
            url: redact(&self.url),
            prefix: self.prefix,
            retention: self.retention,
            timeout: self.timeout,
            wait,
            conn: OnceCell::new(),
        });
        Ok(RedisStore {
            feed: Arc::new(Feed::new(shared.clone())),
            shared,
        })
    }
}

/// The URL without its password, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// What `XINFO STREAM` says about the window.
#[derive(Debug, Default)]
struct Info {
    /// Every entry after this one is still in the stream (0-0 when none was ever deleted).
    max_deleted: Position,
    last_generated: Position,
}

impl RedisStore {
    /// Starts configuring a store for the Redis at `url` (`redis://host:port[/db]`).
    ///
    /// ```
    /// let _ = sse_server::RedisStore::builder("redis://127.0.0.1:6379");
    /// ```
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: "sse:".into(),
            retention: Retention::default(),
            timeout: Duration::from_secs(2),
            ack: RedisAck::Primary,
            wait: DEFAULT_WAIT,
            root_ca: None,
        }
    }

    /// Checks that Redis answers (`PING`), e.g. at start-up.
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let store = sse_server::RedisStore::builder("redis://127.0.0.1:6379").build()?;
    /// store.ping().await?;
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn ping(&self) -> Result<(), Error> {
        let _: String = self
            .shared
            .run("PING", |mut c| async move {
                ::redis::cmd("PING").query_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    /// The Redis URL, password hidden.
    ///
    /// ```
    /// let s = sse_server::RedisStore::builder("redis://:secret@127.0.0.1:6379").build()?;
    /// assert_eq!(s.url(), "redis://***@127.0.0.1:6379");
    /// # Ok::<(), sse_server::Error>(())
    /// ```
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    async fn append_now(&self, channel: &str, event: Event) -> Result<StoredEvent, Error> {
        self.append_all_now(std::slice::from_ref(&channel), event)
            .await
    }

    /// Appends `event` to every channel of `channels`, one [`APPEND`] script per bucket: at one
    /// position of the bucket's sequencer, so positions of the channels of one bucket are totally
    /// ordered. When the channels span several buckets (a cluster), each bucket's copy has its own
    /// position and the event carries one minted id everywhere (unless it has its own).
    async fn append_all_now<S: AsRef<str>>(
        &self,
        channels: &[S],
        event: Event,
    ) -> Result<StoredEvent, Error> {
        let mut custom = event.id().map(str::to_owned);
        if let Some(id) = &custom
            && id.parse::<Position>().is_ok()
        {
            return Err(Error::rejected(
                http::StatusCode::BAD_REQUEST,
                format!(
                    "event id {id:?} looks like a Redis entry id (<number>-<number>); with the redis \
                     store such ids are assigned by Redis: omit the id or use another shape"
                ),
            ));
        }
        let mut groups: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
        for c in channels {
            let c = c.as_ref();
            groups.entry(self.shared.bucket(c)).or_default().push(c);
        }
        if groups.len() > 1 && custom.is_none() {
            custom = Some(self.mint_id().await?);
        }
        let parts = entry::split(&event)?;
        let mut first = None;
        for (b, group) in groups {
            // A cluster client retries a command whose answer it lost: the token makes that harmless.
            let token = if self.shared.buckets() > 1 {
                format!("{:032x}", rand::random::<u128>())
            } else {
                String::new()
            };
            let stored = self
                .append_bucket(b, &group, &parts, custom.as_deref(), &token)
                .await?;
            first.get_or_insert(stored);
        }
        first.ok_or_else(|| Error::Store("a broadcast needs at least one channel".to_owned()))
    }

    /// Runs [`APPEND`] for the channels of bucket `b` (all in one slot in a cluster). A second run
    /// with the same non-empty `token` (within [`TOKEN_MIN`]) returns the first one's position and
    /// stores nothing.
    async fn append_bucket(
        &self,
        b: usize,
        channels: &[&str],
        parts: &entry::Split,
        custom: Option<&str>,
        token: &str,
    ) -> Result<StoredEvent, Error> {
        let retention = self.shared.retention;
        let age = retention.age().as_millis() as u64;
        let mut fields: Vec<&[u8]> = Vec::with_capacity(6);
        if !parts.head.is_empty() {
            fields.extend([&b"h"[..], &parts.head[..]]);
        }
        fields.extend([&b"t"[..], &parts.tail[..]]);
        if let Some(id) = custom {
            fields.extend([&b"c"[..], id.as_bytes()]);
        }
        let token_ms = if token.is_empty() {
            0
        } else {
            TOKEN_MIN.max(self.shared.timeout * 5).as_millis() as u64
        };
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(APPEND)
            .arg(4 + channels.len())
            .arg(self.shared.sequencer(b))
            .arg(self.shared.created(b))
            .arg(self.shared.tokens(b))
            .arg(self.shared.token_times(b));
        for c in channels {
            cmd.arg(self.shared.key(c));
        }
        let cutoff = if age > 0 {
            now_ms().saturating_sub(age).max(1)
        } else {
            0
        };
        cmd.arg(retention.events().max(MIN_STREAM_LEN))
            .arg(cutoff)
            .arg(age)
            .arg(token_ms)
            .arg(token)
            .arg(fields.len());
        for f in &fields {
            cmd.arg(*f);
        }
        for c in channels {
            cmd.arg(*c);
        }
        let entry_id = self.eval_append(cmd).await?;
        let position: Position = entry_id.parse().map_err(|_| {
            Error::Store(format!(
                "Redis answered the append script with {entry_id:?}, not a stream id"
            ))
        })?;
        Ok(stored::stamp_encoded(position, custom, |id| {
            entry::join(&parts.head, id, &parts.tail)
        }))
    }

    /// Runs the append script; with [`RedisAck::Replicated`], `WAIT 1 <wait>` right after it on the
    /// same connection (one pipeline), so the replica count is of this very write.
    async fn eval_append(&self, cmd: ::redis::Cmd) -> Result<String, Error> {
        let Some(wait) = self.shared.wait else {
            return self
                .shared
                .run("EVAL", |mut c| async move { cmd.query_async(&mut c).await })
                .await;
        };
        let mut pipe = ::redis::pipe();
        pipe.add_command(cmd)
            .cmd("WAIT")
            .arg(1)
            .arg(wait.as_millis() as u64);
        let (entry_id, replicas): (String, u64) = self
            .shared
            .run("EVAL+WAIT", |mut c| async move {
                pipe.query_async(&mut c).await
            })
            .await?;
        if replicas == 0 {
            return Err(Error::Store(format!(
                "not acknowledged: no replica of Redis at {} confirmed event {entry_id} within {} ms \
                 (--redis-ack replicated); the event may still appear: retry with the same content \
                 only if a duplicate is acceptable",
                self.shared.url,
                wait.as_millis()
            )));
        }
        Ok(entry_id)
    }

    /// Redis's clock (`TIME`), in ms: what the append script stamps ids with.
    async fn redis_now_ms(&self) -> Result<u64, Error> {
        let (secs, micros): (u64, u64) = self
            .shared
            .run("TIME", |mut c| async move {
                ::redis::cmd("TIME").query_async(&mut c).await
            })
            .await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// The last minor position bucket `b`'s sequencer issued (0 before the first).
    async fn issued_through(&self, b: usize) -> Result<u64, Error> {
        Ok(self.shared.sequenced(b).await?.minor())
    }

    /// Trims by age, then reads the window's bounds (`None`: no such stream).
    async fn info(&self, key: &str) -> Result<Option<Info>, Error> {
        let mut pipe = ::redis::pipe();
        self.shared.trim_by_age(&mut pipe, key);
        pipe.cmd("EXISTS").arg(key);
        let (exists,): (bool,) = self
            .shared
            .run(
                "XTRIM",
                |mut c| async move { pipe.query_async(&mut c).await },
            )
            .await?;
        if !exists {
            return Ok(None);
        }
        let v: Value = self
            .shared
            .run("XINFO", |mut c| async move {
                ::redis::cmd("XINFO")
                    .arg("STREAM")
                    .arg(key)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut info = Info {
            max_deleted: deleted_through(&v),
            ..Info::default()
        };
        for (k, val) in pairs(&v) {
            if text(k).as_deref() == Some("last-generated-id") {
                info.last_generated = text(val).and_then(|t| t.parse().ok()).unwrap_or_default();
            }
        }
        Ok(Some(info))
    }

    async fn xrange(&self, key: &str, start: String) -> Result<Vec<StoredEvent>, Error> {
        let v: Value = self
            .shared
            .run("XRANGE", |mut c| async move {
                ::redis::cmd("XRANGE")
                    .arg(key)
                    .arg(start)
                    .arg("+")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(range(&v).into_iter().map(|e| e.into_stored()).collect())
    }

    /// Finds a publisher-supplied id by scanning the stream backwards, newest first.
    async fn find_custom(&self, key: &str, id: &str) -> Result<Option<Position>, Error> {
        const PAGE: usize = 256;
        let mut end = "+".to_owned();
        loop {
            let from = end.clone();
            let v: Value = self
                .shared
                .run("XREVRANGE", |mut c| async move {
                    ::redis::cmd("XREVRANGE")
                        .arg(key)
                        .arg(from)
                        .arg("-")
                        .arg("COUNT")
                        .arg(PAGE)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let page = range(&v);
            if let Some(hit) = page.iter().find(|e| e.custom.as_deref() == Some(id)) {
                return Ok(Some(hit.position));
            }
            match page.last() {
                Some(last) if page.len() == PAGE => end = format!("({}", last.entry_id),
                _ => return Ok(None),
            }
        }
    }

    async fn replay_now(&self, channel: &str, last_event_id: &str) -> Result<Replay, Error> {
        let key = self.shared.key(channel);
        let Some(info) = self.info(&key).await? else {
            // No stream: nothing retained, and nothing known to be lost (it expired whole, or Redis
            // restarted empty). An entry id resumes quietly; anything else is unknown.
            return Ok(match last_event_id.parse::<Position>() {
                Ok(p) => Replay {
                    events: Vec::new(),
                    reset: None,
                    after: Some(p),
                },
                Err(_) => Replay {
                    events: Vec::new(),
                    reset: Some(Reset {
                        reason: ResetReason::Unknown,
                        floor: Position::default(),
                        oldest: None,
                    }),
                    after: None,
                },
            });
        };
        let placed = match last_event_id.parse::<Position>() {
            // Positions are hub-wide: an id of another channel is known when the sequencer issued it.
            // One past what this Redis issued may still be a position: the append of a primary that
            // died before its replica copied it (a subscriber may have seen it; the next surviving
            // event comes after it, since the new primary's clock has moved on). Only an id from the
            // future of Redis's clock is unknown.
            Ok(p)
                if p > info.last_generated
                    && p.minor() > self.issued_through(self.shared.bucket(channel)).await?
                    && p.major() > self.redis_now_ms().await? =>
            {
                Err(ResetReason::Unknown)
            }
            Ok(p) if p < info.max_deleted => Err(ResetReason::Expired),
            Ok(p) => Ok(p),
            Err(_) => match self.find_custom(&key, last_event_id).await? {
                Some(p) => Ok(p),
                None => Err(ResetReason::Unknown),
            },
        };
        match placed {
            Ok(after) => Ok(Replay {
                events: self.xrange(&key, format!("({after}")).await?,
                reset: None,
                after: Some(after),
            }),
            Err(reason) => {
                let events = self.xrange(&key, "-".into()).await?;
                Ok(Replay {
                    reset: Some(Reset {
                        reason,
                        floor: info.max_deleted,
                        oldest: events.first().map(|e| e.id.clone()),
                    }),
                    events,
                    after: None,
                })
            }
        }
    }

    async fn channels_now(&self) -> Result<Vec<StoredChannel>, Error> {
        let names = self.shared.streams_under("").await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(last) = self.shared.last_entry(&self.shared.key(&name)).await? {
                out.push(StoredChannel {
                    name,
                    last_id: Some(last.id().to_owned()),
                });
            }
        }
        Ok(out)
    }
}

impl ReplayStore for RedisStore {
    fn append<'a>(
        &'a self,
        channel: &'a str,
        event: Event,
    ) -> BoxFuture<'a, Result<StoredEvent, Error>> {
        Box::pin(self.append_now(channel, event))
    }

    fn replay<'a>(
        &'a self,
        channel: &'a str,
        last_event_id: &'a str,
    ) -> BoxFuture<'a, Result<Replay, Error>> {
        Box::pin(self.replay_now(channel, last_event_id))
    }

    fn append_all<'a>(
        &'a self,
        channels: &'a [String],
        event: Event,
    ) -> BoxFuture<'a, Result<StoredEvent, Error>> {
        Box::pin(self.append_all_now(channels, event))
    }

    fn mint_id(&self) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(async move {
            // Not shaped like an entry id (that would be read as a position); unique cluster-wide.
            // A NUL cannot occur in a channel name, so this key never collides with a channel's.
            let key = format!("{}\0broadcast-seq", self.shared.prefix);
            let n: u64 = self
                .shared
                .run("INCR", |mut c| async move {
                    ::redis::cmd("INCR").arg(key).query_async(&mut c).await
                })
                .await?;
            Ok(format!("b{}.{n}", now_ms()))
        })
    }

    fn channels(&self) -> BoxFuture<'_, Result<Vec<StoredChannel>, Error>> {
        Box::pin(self.channels_now())
    }

    /// One server: its one sequencer. A cluster has no store-wide order (one sequencer per bucket):
    /// `None`, see [`issued_by`](ReplayStore::issued_by).
    fn issued(&self) -> BoxFuture<'_, Result<Option<Position>, Error>> {
        Box::pin(async move {
            if self.shared.buckets() > 1 {
                return Ok(None);
            }
            self.shared.sequenced(0).await.map(Some)
        })
    }

    /// 1 on one server; [`BUCKETS`](shared::BUCKETS) (16) in a Redis Cluster.
    fn sequencers(&self) -> usize {
        self.shared.buckets()
    }

    /// The channel's bucket.
    fn sequencer(&self, channel: &str) -> usize {
        self.shared.bucket(channel)
    }

    /// The bucket's sequencer (`None` for a bucket that does not exist).
    fn issued_by(&self, sequencer: usize) -> BoxFuture<'_, Result<Option<Position>, Error>> {
        Box::pin(async move {
            if sequencer >= self.shared.buckets() {
                return Ok(None);
            }
            self.shared.sequenced(sequencer).await.map(Some)
        })
    }

    fn live(&self) -> Option<Arc<dyn LiveFeed>> {
        Some(self.feed.clone())
    }

    /// A `PING`, bounded by the store's command timeout: publishes cannot be acknowledged while Redis
    /// does not answer.
    fn health(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.ping())
    }
}

#[cfg(test)]
mod tests {
    use super::entry::before;
    use super::shared::glob_escape;
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert_eq!(before(Position::new(5, 0)), Position::new(4, u64::MAX));
        assert_eq!(before(Position::new(5, 2)), Position::new(5, 1));
        assert_eq!(glob_escape("a*b?[c]"), "a\\*b\\?\\[c\\]");
    }

    #[test]
    fn cluster_urls_need_a_prefix_without_braces_and_bad_urls_name_the_shapes() {
        let url = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001";
        let store = RedisStore::builder(url).build().unwrap();
        assert_eq!(store.sequencers(), shared::BUCKETS);
        assert_eq!(store.sequencer("news"), shared::bucket_of("news"));
        let err = RedisStore::builder(url)
            .key_prefix("a{b}:")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("without braces"), "{err}");
        let err = RedisStore::builder("http://:pw@h").build().unwrap_err();
        assert!(err.to_string().contains("redis+cluster://"), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
        let plain = RedisStore::builder("redis://127.0.0.1").build().unwrap();
        assert_eq!((plain.sequencers(), plain.sequencer("news")), (1, 0));
    }

    #[test]
    fn buckets_are_stable() {
        // The key layout: these must never change (they would move every channel).
        assert_eq!(shared::bucket_of(""), 0x811c_9dc5 % 16);
        let spread: std::collections::BTreeSet<usize> = (0..64)
            .map(|i| shared::bucket_of(&format!("c{i}")))
            .collect();
        assert_eq!(spread.len(), shared::BUCKETS);
    }

    /// A `redis-server` on a free loopback port, killed on drop (`None`: not installed, and
    /// SSE_REQUIRE_REDIS is not 1).
    struct Server(std::process::Child, u16);

    impl Server {
        #[allow(clippy::print_stderr)] // the SKIPPED line CI counts
        fn start() -> Option<Server> {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn();
            match child {
                Ok(c) => Some(Server(c, port)),
                Err(e) => {
                    assert_ne!(
                        std::env::var("SSE_REQUIRE_REDIS").as_deref(),
                        Ok("1"),
                        "redis-server is missing but SSE_REQUIRE_REDIS=1: {e}"
                    );
                    eprintln!("SKIPPED: redis-server not installed (append tokens)");
                    None
                }
            }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test]
    async fn an_append_retried_with_its_token_is_stored_once() {
        let Some(server) = Server::start() else {
            return;
        };
        let store = RedisStore::builder(format!("redis://127.0.0.1:{}", server.1))
            .build()
            .unwrap();
        for _ in 0..100 {
            if store.ping().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let parts = entry::split(&Event::message("x")).unwrap();
        let append = |token| store.append_bucket(0, &["a"], &parts, None, token);
        let first = append("t1").await.unwrap();
        let again = append("t1").await.unwrap();
        let other = append("t2").await.unwrap();
        assert_eq!(again.position, first.position);
        assert!(other.position > first.position);
        let r = store.replay("a", "0-0").await.unwrap();
        let positions: Vec<Position> = r.events.iter().map(|e| e.position).collect();
        assert_eq!(positions, [first.position, other.position]);
    }

    #[tokio::test]
    async fn a_single_server_keeps_the_untagged_layout_and_one_sequencer() {
        let Some(server) = Server::start() else {
            return;
        };
        let url = format!("redis://127.0.0.1:{}", server.1);
        let store = RedisStore::builder(url.as_str()).build().unwrap();
        for _ in 0..100 {
            if store.ping().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let a = store.append("a", Event::message("x")).await.unwrap();
        let both = ["a".to_owned(), "b".to_owned()];
        let ab = store.append_all(&both, Event::message("y")).await.unwrap();
        assert_eq!(ab.position.minor(), a.position.minor() + 1, "one sequencer");
        assert_eq!(ab.id.to_string(), ab.position.to_string(), "no minted id");
        assert_eq!(store.issued().await.unwrap(), Some(ab.position));
        let mut conn = ::redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut keys: Vec<String> = ::redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.sort();
        assert_eq!(keys, ["sse:\0created", "sse:\0seq", "sse:a", "sse:b"]);
    }

    #[test]
    fn minted_ids_are_not_positions() {
        assert!("b1700000000000.3".parse::<Position>().is_err());
    }
}
