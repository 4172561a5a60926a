//! The reconnecting EventSource as a state machine: what to do after each response, chunk, end of
//! stream, failure and timeout, decided without I/O and without a clock of its own.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use sse_proto::{Item, Limits, Parser};

use crate::error::Error;
use crate::event::{Event, ReadyState};
use crate::proto::timer::{Timer, TimerTable, after};
use crate::reconnect::{DEFAULT_RECONNECTION_TIME, RetryPolicy, retry_after};

/// How a [`Connection`] behaves: the same settings as
/// [`EventSourceBuilder`](crate::EventSourceBuilder), plus the seed of the jitter.
///
/// ```
/// use std::time::Duration;
/// use sse_client::proto::{Config, Connection};
///
/// let config = Config::new()
///     .last_event_id("41")
///     .reconnection_time(Duration::from_secs(1))
///     .idle_timeout(Some(Duration::from_secs(45)))
///     .rng_seed(7);
/// assert_eq!(Connection::new(config).last_event_id(), "41");
/// ```
#[derive(Debug, Clone)]
#[must_use = "pass the config to Connection::new"]
pub struct Config {
    last_event_id: String,
    reconnection_time: Duration,
    idle_timeout: Option<Duration>,
    retry_policy: RetryPolicy,
    limits: Limits,
    comments: bool,
    rng_seed: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// Empty last event id, 3 s reconnection time, no idle timeout, the default [`RetryPolicy`] and
    /// [`Limits`], jitter seeded from the operating system.
    ///
    /// ```
    /// let c = sse_client::proto::Config::new();
    /// # drop(c);
    /// ```
    pub fn new() -> Config {
        Config {
            last_event_id: String::new(),
            reconnection_time: DEFAULT_RECONNECTION_TIME,
            idle_timeout: None,
            retry_policy: RetryPolicy::default(),
            limits: Limits::default(),
            comments: false,
            rng_seed: None,
        }
    }

    /// The last event id to resume from: the first [`Action::Connect`] carries it.
    ///
    /// ```
    /// let c = sse_client::proto::Config::new().last_event_id("17");
    /// # drop(c);
    /// ```
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = id.into();
        self
    }

    /// The reconnection time until the server sends `retry:`.
    ///
    /// ```
    /// let c = sse_client::proto::Config::new().reconnection_time(std::time::Duration::from_millis(500));
    /// # drop(c);
    /// ```
    pub fn reconnection_time(mut self, time: Duration) -> Self {
        self.reconnection_time = time;
        self
    }

    /// How long a request or a stream may stay silent before it is considered dead; `None`: forever.
    ///
    /// ```
    /// let c = sse_client::proto::Config::new().idle_timeout(Some(std::time::Duration::from_secs(60)));
    /// # drop(c);
    /// ```
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Backoff, retry limit and whether 5xx/429 are retried.
    ///
    /// ```
    /// let c = sse_client::proto::Config::new()
    ///     .retry_policy(sse_client::RetryPolicy::new().retry_server_errors(true));
    /// # drop(c);
    /// ```
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    /// The parser's line and event size limits.
    ///
    /// ```
    /// let c = sse_client::proto::Config::new().limits(sse_client::sse_proto::Limits::default());
    /// # drop(c);
    /// ```
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Also deliver comment lines as [`Event::Comment`] (default: off, as browsers do). A comment
    /// does not count as delivered data for the backoff: a server sending only heartbeats still
    /// backs off when it drops the connection.
    ///
    /// ```
    /// use std::time::{Instant, SystemTime};
    /// use sse_client::reqwest::{StatusCode, header::{CONTENT_TYPE, HeaderMap, HeaderValue}};
    /// use sse_client::proto::{Action, Config, Connection};
    /// use sse_client::Event;
    ///
    /// let now = Instant::now();
    /// let mut conn = Connection::new(Config::new().comments(true));
    /// assert!(matches!(conn.poll(now), Some(Action::Connect { .. })));
    /// let mut headers = HeaderMap::new();
    /// headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    /// conn.response(now, StatusCode::OK, &headers, SystemTime::now());
    /// assert!(matches!(conn.poll(now), Some(Action::Deliver(Event::Open))));
    /// conn.bytes(now, b": ping\n");
    /// assert!(matches!(conn.poll(now), Some(Action::Deliver(Event::Comment(c))) if c == " ping"));
    /// ```
    pub fn comments(mut self, on: bool) -> Self {
        self.comments = on;
        self
    }

    /// Seeds the random draws of the backoff jitter, so that the delays repeat from run to run
    /// (tests, simulations). Default: a seed from the operating system.
    ///
    /// ```
    /// let c = sse_client::proto::Config::new().rng_seed(42);
    /// # drop(c);
    /// ```
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }
}

/// What the [`Connection`] asks its driver to do, from [`Connection::poll`].
///
/// ```
/// use std::time::Instant;
/// use sse_client::proto::{Action, Config, Connection};
///
/// let mut conn = Connection::new(Config::new());
/// match conn.poll(Instant::now()) {
///     Some(Action::Connect { last_event_id }) => assert_eq!(last_event_id, ""),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Action {
    /// Send the request now, with `Accept: text/event-stream` and, when `last_event_id` is not empty,
    /// `Last-Event-ID: last_event_id`; then report the answer with [`Connection::response`] or
    /// [`Connection::failed`].
    Connect {
        /// The id committed at the last dispatched event (or the configured one).
        last_event_id: String,
    },
    /// Hand this event to the application ([`Event::Open`] after each accepted response, then the
    /// dispatched messages).
    Deliver(Event),
    /// Hand this error to the application. Unless it is [`Error::Parse`] (the stream goes on), the
    /// request or stream in progress is over and must be dropped: [`Error::retry_delay`] says when
    /// the next [`Action::Connect`] comes, and [`Error::is_fatal`] that none will.
    Error(Error),
}

/// The reconnecting EventSource without I/O, in the style of quinn-proto: the driver feeds it what
/// happened (a response, bytes, the end of the stream, a failure, the current time) and polls it for
/// what to do next. It owns the [`sse_proto::Parser`], the reconnection time (`retry:`), the backoff,
/// the retry policy, the Last-Event-ID committed at each dispatched event and the idle timeout; it
/// has no socket, no task and no clock: every call that needs the time takes `now`.
///
/// A driver loops: take every [`poll`](Connection::poll) action, start or drop I/O as they say, then
/// wait for I/O or until [`poll_timeout`](Connection::poll_timeout), and call
/// [`handle_timeout`](Connection::handle_timeout) when that passes. [`EventSource`](crate::EventSource)
/// is such a driver for reqwest; the example below drives one on simulated time.
///
/// ```
/// use std::time::{Duration, Instant, SystemTime};
/// use sse_client::reqwest::{StatusCode, header::{CONTENT_TYPE, HeaderMap, HeaderValue}};
/// use sse_client::proto::{Action, Config, Connection};
/// use sse_client::Event;
///
/// let mut now = Instant::now();
/// let mut conn = Connection::new(Config::new().reconnection_time(Duration::from_secs(1)));
/// assert!(matches!(conn.poll(now), Some(Action::Connect { .. })));
///
/// let mut headers = HeaderMap::new();
/// headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
/// conn.response(now, StatusCode::OK, &headers, SystemTime::now());
/// assert!(matches!(conn.poll(now), Some(Action::Deliver(Event::Open))));
///
/// conn.bytes(now, b"id: 1\ndata: hello\n\n");
/// let Some(Action::Deliver(Event::Message(m))) = conn.poll(now) else { panic!() };
/// assert_eq!((m.data.as_str(), conn.last_event_id()), ("hello", "1"));
///
/// conn.eof(now);
/// let Some(Action::Error(e)) = conn.poll(now) else { panic!() };
/// assert_eq!(e.retry_delay(), Some(Duration::from_secs(1)));
/// assert!(conn.poll(now).is_none());
///
/// now = conn.poll_timeout().unwrap();
/// conn.handle_timeout(now);
/// let Some(Action::Connect { last_event_id }) = conn.poll(now) else { panic!() };
/// assert_eq!(last_event_id, "1");
/// ```
pub struct Connection {
    parser: Parser,
    reconnection_time: Duration,
    idle_timeout: Option<Duration>,
    retry_policy: RetryPolicy,
    rng: SmallRng,
    /// Consecutive attempts that failed or delivered nothing; drives the backoff.
    failures: u32,
    state: State,
    timers: TimerTable,
    /// Decided but not polled yet: `Open`, and what ended an attempt (after the messages before it).
    pending: VecDeque<Action>,
}

enum State {
    /// No request in flight: the next `poll` asks for one (at the start, and once the wait is over).
    Ready,
    /// A request is in flight, waiting for its response.
    Connecting,
    Open {
        /// The id sent as `Last-Event-ID`: a change means the connection delivered something.
        sent_id: String,
        delivered: bool,
    },
    /// Waiting for the reconnect timer.
    Waiting,
    Closed,
}

impl Connection {
    /// A machine that asks for its first connection at the first [`poll`](Connection::poll).
    ///
    /// ```
    /// let conn = sse_client::proto::Connection::new(sse_client::proto::Config::new());
    /// assert_eq!(conn.ready_state(), sse_client::ReadyState::Connecting);
    /// ```
    pub fn new(config: Config) -> Connection {
        let parser = Parser::builder()
            .limits(config.limits)
            .comments(config.comments)
            .last_event_id(config.last_event_id)
            .build();
        let rng = match config.rng_seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_rng(&mut rand::rng()),
        };
        Connection {
            parser,
            reconnection_time: config.reconnection_time,
            idle_timeout: config.idle_timeout,
            retry_policy: config.retry_policy,
            rng,
            failures: 0,
            state: State::Ready,
            timers: TimerTable::default(),
            pending: VecDeque::new(),
        }
    }

    /// The next thing to do, or `None` when there is nothing to do until an input arrives or
    /// [`poll_timeout`](Connection::poll_timeout) passes. Worth calling again, until `None`, after
    /// [`response`](Connection::response), [`bytes`](Connection::bytes), [`eof`](Connection::eof),
    /// [`failed`](Connection::failed) and [`handle_timeout`](Connection::handle_timeout). `now` is
    /// when an [`Action::Connect`] starts its request, from which the idle timeout counts.
    ///
    /// ```
    /// use std::time::Instant;
    /// use sse_client::proto::{Action, Config, Connection};
    ///
    /// let mut conn = Connection::new(Config::new().last_event_id("9"));
    /// let now = Instant::now();
    /// assert!(matches!(conn.poll(now), Some(Action::Connect { last_event_id }) if last_event_id == "9"));
    /// assert!(conn.poll(now).is_none(), "waiting for the response");
    /// ```
    pub fn poll(&mut self, now: Instant) -> Option<Action> {
        if let Some(action) = self.pending.pop_front() {
            return Some(action);
        }
        match &mut self.state {
            State::Ready => {
                self.state = State::Connecting;
                if let Some(timeout) = self.idle_timeout {
                    self.timers.set(Timer::Idle, after(now, timeout));
                }
                Some(Action::Connect {
                    last_event_id: self.parser.last_event_id().to_owned(),
                })
            }
            State::Open { .. } => self.next_from_stream(),
            State::Connecting | State::Waiting | State::Closed => None,
        }
    }

    /// The next deadline, when [`handle_timeout`](Connection::handle_timeout) must be called: the end
    /// of the wait before reconnecting, or of the idle timeout. `None`: no timer is armed. It changes
    /// after every input and after [`poll`](Connection::poll) returns [`Action::Connect`]; read it
    /// again after each.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use sse_client::proto::{Config, Connection};
    ///
    /// let mut conn = Connection::new(Config::new().idle_timeout(Some(Duration::from_secs(30))));
    /// let now = Instant::now();
    /// assert_eq!(conn.poll_timeout(), None);
    /// conn.poll(now); // Connect
    /// assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(30)));
    /// ```
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// Tells the machine that time has reached `now`: fires the timers due by then. A wait that is over
    /// makes the next [`poll`](Connection::poll) return [`Action::Connect`]; an idle timeout ends the
    /// request or stream in progress with [`Error::IdleTimeout`].
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use sse_client::proto::{Action, Config, Connection};
    ///
    /// let mut conn = Connection::new(Config::new().idle_timeout(Some(Duration::from_secs(5))));
    /// let now = Instant::now();
    /// conn.poll(now); // Connect; no response comes
    /// conn.handle_timeout(now + Duration::from_secs(5));
    /// assert!(matches!(conn.poll(now), Some(Action::Error(sse_client::Error::IdleTimeout { .. }))));
    /// ```
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.expire(now) {
            match timer {
                Timer::Reconnect => {
                    if matches!(self.state, State::Waiting) {
                        self.state = State::Ready;
                    }
                }
                Timer::Idle => {
                    let error = Error::IdleTimeout {
                        timeout: self.idle_timeout.unwrap_or_default(),
                        retry_in: None,
                    };
                    match self.state {
                        State::Connecting => self.retry(now, error, false, None),
                        State::Open { .. } => self.disconnect(now, error),
                        State::Ready | State::Waiting | State::Closed => {}
                    }
                }
            }
        }
    }

    /// The response to the last [`Action::Connect`] arrived, with this status and these headers, at
    /// `now` (and at `date` on the wall clock, for a `Retry-After` given as an HTTP date). 200 with
    /// `text/event-stream` opens the stream ([`Event::Open`]; then feed the body to
    /// [`bytes`](Connection::bytes)); 204, another status or another content type is fatal, except the
    /// statuses the [`RetryPolicy`] retries. Ignored unless a request is in flight.
    ///
    /// ```
    /// use std::time::{Instant, SystemTime};
    /// use sse_client::proto::{Action, Config, Connection};
    /// use sse_client::reqwest::{StatusCode, header::HeaderMap};
    ///
    /// let mut conn = Connection::new(Config::new());
    /// let now = Instant::now();
    /// conn.poll(now); // Connect
    /// conn.response(now, StatusCode::NO_CONTENT, &HeaderMap::new(), SystemTime::now());
    /// assert!(matches!(conn.poll(now), Some(Action::Error(e)) if e.is_no_content()));
    /// assert_eq!(conn.ready_state(), sse_client::ReadyState::Closed);
    /// ```
    pub fn response(
        &mut self,
        now: Instant,
        status: StatusCode,
        headers: &HeaderMap,
        date: SystemTime,
    ) {
        self.response_with_body(now, status, headers, date, b"");
    }

    /// Like [`response`](Connection::response), for a status other than 200 whose body the driver
    /// read (the start of it: [`ERROR_BODY_LIMIT`](crate::ERROR_BODY_LIMIT) bytes are kept): the
    /// [`Error::InvalidStatus`] it causes quotes the body, which usually says why the server refused
    /// (the hub's `{"error":"..."}`). For 200 the body is ignored: feed the stream to
    /// [`bytes`](Connection::bytes).
    ///
    /// ```
    /// use std::time::{Instant, SystemTime};
    /// use sse_client::proto::{Action, Config, Connection};
    /// use sse_client::reqwest::{StatusCode, header::HeaderMap};
    ///
    /// let mut conn = Connection::new(Config::new());
    /// let now = Instant::now();
    /// conn.poll(now); // Connect
    /// let body = br#"{"error":"wrong token"}"#;
    /// conn.response_with_body(now, StatusCode::UNAUTHORIZED, &HeaderMap::new(), SystemTime::now(), body);
    /// let Some(Action::Error(e)) = conn.poll(now) else { panic!() };
    /// assert!(e.is_fatal() && e.to_string().contains("wrong token"), "{e}");
    /// ```
    pub fn response_with_body(
        &mut self,
        now: Instant,
        status: StatusCode,
        headers: &HeaderMap,
        date: SystemTime,
        body: &[u8],
    ) {
        if !matches!(self.state, State::Connecting) {
            tracing::debug!(%status, "response without a request in flight; ignored");
            return;
        }
        if status == StatusCode::NO_CONTENT {
            return self.fatal(Error::NoContent);
        }
        if status != StatusCode::OK {
            let body = &body[..body.len().min(crate::error::ERROR_BODY_LIMIT)];
            let error = Error::InvalidStatus {
                status,
                body: String::from_utf8_lossy(body).into_owned(),
                retry_in: None,
            };
            if self.retry_policy.retries_status(status) {
                let asked = retry_after(headers, date);
                return self.retry(now, error, false, asked);
            }
            return self.fatal(error);
        }
        let content_type = headers
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if !is_event_stream(&content_type) {
            return self.fatal(Error::InvalidContentType { content_type });
        }
        self.state = State::Open {
            sent_id: self.parser.last_event_id().to_owned(),
            delivered: false,
        };
        if let Some(timeout) = self.idle_timeout {
            self.timers.set(Timer::Idle, after(now, timeout));
        }
        self.pending.push_back(Action::Deliver(Event::Open));
    }

    /// A chunk of the response body arrived at `now` (any size; events may span chunks). It restarts
    /// the idle timeout; the events it completes come out of [`poll`](Connection::poll). Ignored unless
    /// the stream is open.
    ///
    /// ```
    /// # use std::time::{Instant, SystemTime};
    /// # use sse_client::reqwest::{StatusCode, header::{CONTENT_TYPE, HeaderMap, HeaderValue}};
    /// use sse_client::proto::{Action, Config, Connection};
    /// # let mut conn = Connection::new(Config::new());
    /// # let now = Instant::now();
    /// # conn.poll(now);
    /// # let mut h = HeaderMap::new();
    /// # h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    /// # conn.response(now, StatusCode::OK, &h, SystemTime::now());
    /// # conn.poll(now); // Open
    /// conn.bytes(now, b"id: 3\ndata: par");
    /// assert!(conn.poll(now).is_none());
    /// assert_eq!(conn.last_event_id(), "", "the event has not ended: its id is not committed");
    /// conn.bytes(now, b"tial\n\n");
    /// assert!(matches!(conn.poll(now), Some(Action::Deliver(_))));
    /// assert_eq!(conn.last_event_id(), "3");
    /// ```
    pub fn bytes(&mut self, now: Instant, bytes: &[u8]) {
        if !matches!(self.state, State::Open { .. }) {
            tracing::debug!(len = bytes.len(), "bytes without an open stream; ignored");
            return;
        }
        if let Some(timeout) = self.idle_timeout {
            self.timers.set(Timer::Idle, after(now, timeout));
        }
        self.parser.feed(bytes);
    }

    /// The response body ended at `now` (the server closed the stream): an unfinished event is dropped
    /// with its id, and the machine schedules a reconnection ([`Error::StreamEnded`]). Ignored unless
    /// the stream is open.
    ///
    /// ```
    /// # use std::time::{Instant, SystemTime};
    /// # use sse_client::reqwest::{StatusCode, header::{CONTENT_TYPE, HeaderMap, HeaderValue}};
    /// use sse_client::proto::{Action, Config, Connection};
    /// # let mut conn = Connection::new(Config::new());
    /// # let now = Instant::now();
    /// # conn.poll(now);
    /// # let mut h = HeaderMap::new();
    /// # h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    /// # conn.response(now, StatusCode::OK, &h, SystemTime::now());
    /// # conn.poll(now); // Open
    /// conn.eof(now);
    /// assert!(matches!(conn.poll(now), Some(Action::Error(e)) if e.will_retry()));
    /// ```
    pub fn eof(&mut self, now: Instant) {
        if matches!(self.state, State::Open { .. }) {
            self.disconnect(now, Error::StreamEnded { retry_in: None });
        } else {
            tracing::debug!("end of stream without an open stream; ignored");
        }
    }

    /// The request or the stream in progress failed at `now` with `error` (typically
    /// [`Error::Transport`] or [`Error::Credentials`]; its `retry_in` is filled in here): the machine
    /// schedules a reconnection with backoff, or gives up as the [`RetryPolicy`] says. An error that is
    /// never retried (such as [`Error::NoContent`]) closes the machine. Ignored unless a request or a
    /// stream is in progress.
    ///
    /// ```
    /// use std::time::Instant;
    /// use sse_client::proto::{Action, Config, Connection};
    ///
    /// let mut conn = Connection::new(Config::new());
    /// let now = Instant::now();
    /// conn.poll(now); // Connect
    /// conn.failed(now, sse_client::Error::Credentials { source: "token service down".into(), retry_in: None });
    /// assert!(matches!(conn.poll(now), Some(Action::Error(e)) if e.retry_delay().is_some()));
    /// ```
    pub fn failed(&mut self, now: Instant, error: Error) {
        if !is_retried(&error) {
            if matches!(self.state, State::Connecting | State::Open { .. }) {
                self.fatal(error);
            }
            return;
        }
        match self.state {
            State::Connecting => self.retry(now, error, false, None),
            State::Open { .. } => self.disconnect(now, error),
            State::Ready | State::Waiting | State::Closed => {
                tracing::debug!(%error, "failure without a request in flight; ignored");
            }
        }
    }

    /// Stops for good: no more actions, no timers. The driver drops its I/O.
    ///
    /// ```
    /// let mut conn = sse_client::proto::Connection::new(sse_client::proto::Config::new());
    /// conn.close();
    /// assert!(conn.poll(std::time::Instant::now()).is_none());
    /// assert_eq!(conn.ready_state(), sse_client::ReadyState::Closed);
    /// ```
    pub fn close(&mut self) {
        self.state = State::Closed;
        self.timers.stop_all();
        self.pending.clear();
    }

    /// The last event id committed by a dispatched event (or the configured one): what the next
    /// [`Action::Connect`] carries. An `id:` in an event that has not ended does not count.
    ///
    /// ```
    /// let conn = sse_client::proto::Connection::new(sse_client::proto::Config::new().last_event_id("5"));
    /// assert_eq!(conn.last_event_id(), "5");
    /// ```
    pub fn last_event_id(&self) -> &str {
        self.parser.last_event_id()
    }

    /// The current reconnection time: the configured one, or the last `retry:` received.
    ///
    /// ```
    /// let conn = sse_client::proto::Connection::new(sse_client::proto::Config::new());
    /// assert_eq!(conn.reconnection_time(), std::time::Duration::from_secs(3));
    /// ```
    pub fn reconnection_time(&self) -> Duration {
        self.reconnection_time
    }

    /// Connecting (or waiting to reconnect), open, or closed (after [`close`](Connection::close) or a
    /// fatal error; the fatal error itself may still be waiting in [`poll`](Connection::poll)).
    ///
    /// ```
    /// let conn = sse_client::proto::Connection::new(sse_client::proto::Config::new());
    /// assert_eq!(conn.ready_state(), sse_client::ReadyState::Connecting);
    /// ```
    pub fn ready_state(&self) -> ReadyState {
        match self.state {
            State::Ready | State::Connecting | State::Waiting => ReadyState::Connecting,
            State::Open { .. } => ReadyState::Open,
            State::Closed => ReadyState::Closed,
        }
    }

    /// The next message or parse error of the open stream; `retry:` fields are applied on the way.
    fn next_from_stream(&mut self) -> Option<Action> {
        let State::Open { delivered, .. } = &mut self.state else {
            return None;
        };
        loop {
            match self.parser.next()? {
                Ok(Item::Message(message)) => {
                    *delivered = true;
                    return Some(Action::Deliver(Event::Message(message)));
                }
                Ok(Item::Retry(time)) => {
                    tracing::debug!(?time, "server set the reconnection time");
                    self.reconnection_time = time;
                }
                Ok(Item::Comment(text)) => return Some(Action::Deliver(Event::Comment(text))),
                Err(error) => return Some(Action::Error(Error::Parse(error))),
            }
        }
    }

    fn fatal(&mut self, error: Error) {
        tracing::debug!(%error, "event source failed");
        self.close();
        self.pending.push_back(Action::Error(error));
    }

    /// Ends an open stream: it delivered something if a message came out or an id was committed (a
    /// `retry:` alone does not count, so a server that only says `retry: 0` still gets backoff).
    fn disconnect(&mut self, now: Instant, error: Error) {
        // What the stream completed before it ended comes out first, and counts.
        while let Some(action) = self.next_from_stream() {
            self.pending.push_back(action);
        }
        let delivered = match &self.state {
            State::Open { sent_id, delivered } => {
                *delivered || sent_id != self.parser.last_event_id()
            }
            _ => false,
        };
        self.retry(now, error, delivered, None);
    }

    /// Ends the current attempt and schedules the next one (or gives up); the error, with its "what
    /// next" filled in, is the next action.
    fn retry(&mut self, now: Instant, error: Error, delivered: bool, at_least: Option<Duration>) {
        // An unfinished event dies with its connection, and so does an `id:` inside it.
        self.parser.finish();
        self.timers.stop(Timer::Idle);
        self.failures = if delivered {
            0
        } else {
            self.failures.saturating_add(1)
        };
        if self.retry_policy.gives_up(self.failures) {
            self.state = State::Closed;
            self.timers.stop_all();
            let error = error.with_retry(None);
            tracing::debug!(%error, failures = self.failures, "giving up");
            self.pending.push_back(Action::Error(error));
            return;
        }
        let backoff = self.retry_policy.get_backoff();
        let random: f64 = self.rng.random();
        let mut delay = backoff.delay(self.reconnection_time, self.failures, random);
        if let Some(asked) = at_least {
            delay = delay.max(asked);
        }
        self.state = State::Waiting;
        self.timers.set(Timer::Reconnect, after(now, delay));
        let error = error.with_retry(Some(delay));
        tracing::debug!(%error, failures = self.failures, "will reconnect");
        self.pending.push_back(Action::Error(error));
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("ready_state", &self.ready_state())
            .field("last_event_id", &self.parser.last_event_id())
            .field("reconnection_time", &self.reconnection_time)
            .field("idle_timeout", &self.idle_timeout)
            .field("retry_policy", &self.retry_policy)
            .field("failures", &self.failures)
            .field("next_timeout", &self.timers.next_timeout())
            .finish_non_exhaustive()
    }
}

/// Whether this kind of error ends an attempt that is then retried (rather than the whole source).
fn is_retried(error: &Error) -> bool {
    matches!(
        error,
        Error::Transport { .. }
            | Error::StreamEnded { .. }
            | Error::IdleTimeout { .. }
            | Error::InvalidStatus { .. }
            | Error::Credentials { .. }
    )
}

/// `text/event-stream`, case-insensitive, parameters (`; charset=utf-8`) allowed.
fn is_event_stream(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("text/event-stream")
}

#[cfg(test)]
mod tests {
    use super::{Connection, is_event_stream};

    #[test]
    fn a_connection_can_move_between_threads() {
        fn send<T: Send + Unpin>() {}
        send::<Connection>();
    }

    #[test]
    fn content_type_allows_parameters_and_any_case() {
        assert!(is_event_stream("text/event-stream"));
        assert!(is_event_stream("Text/Event-Stream; charset=utf-8"));
        assert!(is_event_stream(" text/event-stream ;x=y"));
        assert!(!is_event_stream("text/plain"));
        assert!(!is_event_stream("text/event-streamx"));
        assert!(!is_event_stream(""));
    }
}
