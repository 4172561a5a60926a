//! The reconnecting `EventSource`: a poll-driven state machine over reqwest and sse-proto's parser.
//!
//! Everything it runs (the request future, the body, the timers) is owned by the `EventSource`
//! itself and driven by `poll_next`; no task is spawned, so `close()` or drop ends all of it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_core::Stream;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use reqwest::{Client, Request, Response, StatusCode, Url};
use sse_proto::{Item, Parser};
use tokio::time::{Instant, Sleep};

use crate::builder::EventSourceBuilder;
use crate::credentials::Credentials;
use crate::reconnect::retry_after;
use crate::{Error, Event, ReadyState, RetryPolicy};

const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// A Server-Sent Events connection that reconnects by itself, as a `Stream` of
/// `Result<Event, Error>`.
///
/// * Yields [`Event::Open`] each time a connection opens (200 + `text/event-stream`), then an
///   [`Event::Message`] per dispatched event.
/// * When the stream ends, breaks or stays silent beyond the idle timeout, yields an `Err` whose
///   [`Error::retry_delay`] says when it reconnects, waits, and reconnects with `Last-Event-ID` set to
///   the id committed at the last dispatch (not sent when empty). `retry:` replaces the reconnection
///   time; repeated failures back off (see [`Backoff`](crate::Backoff)).
/// * 204, another status or another content type yields a fatal `Err` and the stream ends
///   (see [`RetryPolicy`] for the 5xx/429 opt-in). Redirects are followed by reqwest, and later
///   reconnections go straight to the final URL.
/// * Every request carries `Accept: text/event-stream` and `Cache-Control: no-cache`.
///
/// ```no_run
/// use futures::StreamExt;
/// use sse_client::{Event, EventSource};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse_client::Error> {
/// let mut source = EventSource::new("http://127.0.0.1:8080/events/news")?;
/// while let Some(item) = source.next().await {
///     match item {
///         Ok(Event::Open) => eprintln!("connected"),
///         Ok(Event::Message(m)) => println!("{} {}: {}", m.last_event_id, m.event_type, m.data),
///         Ok(_) => {}
///         Err(e) if e.is_fatal() => return Err(e),
///         Err(e) => eprintln!("{e}"),
///     }
/// }
/// # Ok(()) }
/// ```
pub struct EventSource {
    client: Client,
    request: Request,
    parser: Parser,
    reconnection_time: Duration,
    idle_timeout: Option<Duration>,
    retry_policy: RetryPolicy,
    credentials: Option<Credentials>,
    /// Consecutive attempts that failed or delivered nothing; drives the backoff.
    failures: u32,
    state: State,
}

enum State {
    /// Built, not polled yet: nothing has been sent.
    Idle,
    Connecting {
        response: BoxFuture<'static, Result<Response, Error>>,
        idle: Option<Pin<Box<Sleep>>>,
    },
    Open {
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        idle: Option<Pin<Box<Sleep>>>,
        /// The id sent as `Last-Event-ID`: a change means the connection delivered something.
        sent_id: String,
        delivered: bool,
    },
    Waiting(Pin<Box<Sleep>>),
    Closed,
}

impl EventSource {
    /// A source for `url` with the default configuration.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse_client::Error> {
    /// let source = sse_client::EventSource::new("http://127.0.0.1:8080/events/news")?;
    /// assert_eq!(source.url().path(), "/events/news");
    /// # Ok(()) }
    /// ```
    pub fn new(url: impl AsRef<str>) -> Result<EventSource, Error> {
        EventSource::builder(url).build()
    }

    /// Configures a source for `url` (a `&str`, `String` or `Url`).
    ///
    /// ```
    /// let source = sse_client::EventSource::builder("http://127.0.0.1:8080/events/news")
    ///     .last_event_id("7")
    ///     .build()?;
    /// # Ok::<(), sse_client::Error>(())
    /// ```
    pub fn builder(url: impl AsRef<str>) -> EventSourceBuilder {
        EventSourceBuilder::url(url.as_ref().to_owned())
    }

    /// Configures a source from a reqwest request: its client, URL, method, headers (auth, custom
    /// headers) and query are used for every connection.
    ///
    /// ```
    /// let request = reqwest::Client::new()
    ///     .get("https://example.com/stream")
    ///     .bearer_auth("token");
    /// let source = sse_client::EventSource::from_request(request).build()?;
    /// # Ok::<(), sse_client::Error>(())
    /// ```
    pub fn from_request(request: reqwest::RequestBuilder) -> EventSourceBuilder {
        EventSourceBuilder::request(request)
    }

    pub(crate) fn from_parts(
        client: Client,
        request: Request,
        config: EventSourceBuilder,
    ) -> EventSource {
        let parser = Parser::builder()
            .limits(config.limits)
            .last_event_id(config.last_event_id)
            .build();
        EventSource {
            client,
            request,
            parser,
            reconnection_time: config.reconnection_time,
            idle_timeout: config.idle_timeout,
            retry_policy: config.retry_policy,
            credentials: config.credentials,
            failures: 0,
            state: State::Idle,
        }
    }

    /// Stops: drops the connection, the request in flight and the timers. The stream then ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse_client::Error> {
    /// use futures::StreamExt;
    /// let mut source = sse_client::EventSource::new("http://127.0.0.1:8080/events/news")?;
    /// source.close();
    /// assert_eq!(source.ready_state(), sse_client::ReadyState::Closed);
    /// assert!(source.next().await.is_none());
    /// # Ok(()) }
    /// ```
    pub fn close(&mut self) {
        if !matches!(self.state, State::Closed) {
            tracing::debug!(url = %self.request.url(), "event source closed");
        }
        self.state = State::Closed;
    }

    /// The last event id committed by a dispatch (or the initial one): what the next reconnection
    /// sends as `Last-Event-ID`.
    ///
    /// ```
    /// let source = sse_client::EventSource::builder("http://localhost/").last_event_id("5").build()?;
    /// assert_eq!(source.last_event_id(), "5");
    /// # Ok::<(), sse_client::Error>(())
    /// ```
    pub fn last_event_id(&self) -> &str {
        self.parser.last_event_id()
    }

    /// The URL the next connection goes to: the original one, or the final URL of the last
    /// redirected connection.
    ///
    /// ```
    /// let source = sse_client::EventSource::new("http://localhost/a")?;
    /// assert_eq!(source.url().as_str(), "http://localhost/a");
    /// # Ok::<(), sse_client::Error>(())
    /// ```
    pub fn url(&self) -> &Url {
        self.request.url()
    }

    /// The current reconnection time: the configured one, or the last `retry:` received.
    ///
    /// ```
    /// let source = sse_client::EventSource::new("http://localhost/")?;
    /// assert_eq!(source.reconnection_time(), std::time::Duration::from_secs(3));
    /// # Ok::<(), sse_client::Error>(())
    /// ```
    pub fn reconnection_time(&self) -> Duration {
        self.reconnection_time
    }

    /// Connecting (or waiting to reconnect), open, or closed.
    ///
    /// ```
    /// let source = sse_client::EventSource::new("http://localhost/")?;
    /// assert_eq!(source.ready_state(), sse_client::ReadyState::Connecting);
    /// # Ok::<(), sse_client::Error>(())
    /// ```
    pub fn ready_state(&self) -> ReadyState {
        match self.state {
            State::Idle | State::Connecting { .. } | State::Waiting(_) => ReadyState::Connecting,
            State::Open { .. } => ReadyState::Open,
            State::Closed => ReadyState::Closed,
        }
    }

    fn connect(&mut self) {
        let Some(mut request) = self.request.try_clone() else {
            // `build` refused unrepeatable requests, so this cannot happen; stay safe anyway.
            self.state = State::Closed;
            return;
        };
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if !headers.contains_key(CACHE_CONTROL) {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        headers.remove(LAST_EVENT_ID);
        let id = self.parser.last_event_id();
        if !id.is_empty() {
            match HeaderValue::from_bytes(id.as_bytes()) {
                Ok(value) => {
                    headers.insert(LAST_EVENT_ID, value);
                }
                Err(_) => tracing::warn!(
                    id,
                    "last event id has control characters a header cannot carry; not sending it"
                ),
            }
        }
        tracing::debug!(url = %request.url(), last_event_id = id, "connecting");
        let client = self.client.clone();
        let credentials = self.credentials.clone();
        let response = Box::pin(async move {
            if let Some(credentials) = credentials {
                let extra = credentials
                    .call()
                    .await
                    .map_err(|source| Error::Credentials {
                        source,
                        retry_in: None,
                    })?;
                request.headers_mut().extend(extra);
            }
            client
                .execute(request)
                .await
                .map_err(|source| Error::Transport {
                    source,
                    retry_in: None,
                })
        });
        self.state = State::Connecting {
            response,
            idle: self.idle_timer(),
        };
    }

    fn idle_timer(&self) -> Option<Pin<Box<Sleep>>> {
        self.idle_timeout
            .map(|t| Box::pin(tokio::time::sleep_until(Instant::now() + t)))
    }

    /// Checks the response as the spec says; `Ok` means the stream is open.
    fn open(&mut self, response: Response) -> Result<(), Error> {
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Err(self.fatal(Error::NoContent));
        }
        if status != StatusCode::OK {
            let error = Error::InvalidStatus {
                status,
                retry_in: None,
            };
            if self.retry_policy.retries_status(status) {
                let asked = retry_after(response.headers(), SystemTime::now());
                return Err(self.retry(error, false, asked));
            }
            return Err(self.fatal(error));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if !is_event_stream(&content_type) {
            return Err(self.fatal(Error::InvalidContentType { content_type }));
        }
        if response.url() != self.request.url() {
            tracing::info!(from = %self.request.url(), to = %response.url(), "redirected; reconnections go to the final URL");
            *self.request.url_mut() = response.url().clone();
        }
        tracing::debug!(url = %response.url(), "connected");
        self.state = State::Open {
            body: Box::pin(response.bytes_stream()),
            idle: self.idle_timer(),
            sent_id: self.parser.last_event_id().to_owned(),
            delivered: false,
        };
        Ok(())
    }

    fn fatal(&mut self, error: Error) -> Error {
        tracing::debug!(%error, "event source failed");
        self.state = State::Closed;
        error
    }

    /// Ends the current attempt and schedules the next one (or gives up), returning the error with
    /// its "what next" filled in.
    fn retry(&mut self, error: Error, delivered: bool, at_least: Option<Duration>) -> Error {
        // An unfinished event dies with its connection, and so does an `id:` inside it.
        self.parser.finish();
        self.failures = if delivered {
            0
        } else {
            self.failures.saturating_add(1)
        };
        if self.retry_policy.gives_up(self.failures) {
            self.state = State::Closed;
            let error = error.with_retry(None);
            tracing::debug!(%error, failures = self.failures, "giving up");
            return error;
        }
        let backoff = self.retry_policy.get_backoff();
        let mut delay = backoff.delay(self.reconnection_time, self.failures, rand::random());
        if let Some(asked) = at_least {
            delay = delay.max(asked);
        }
        self.state = State::Waiting(Box::pin(tokio::time::sleep(delay)));
        let error = error.with_retry(Some(delay));
        tracing::debug!(%error, failures = self.failures, "will reconnect");
        error
    }

    /// Ends an open connection: it delivered something if a message came out or an id was committed
    /// (a `retry:` alone does not count, so a server that only says `retry: 0` still gets backoff).
    fn disconnect(&mut self, error: Error) -> Error {
        let delivered = match &self.state {
            State::Open {
                sent_id, delivered, ..
            } => *delivered || sent_id != self.parser.last_event_id(),
            _ => false,
        };
        self.retry(error, delivered, None)
    }
}

/// `text/event-stream`, case-insensitive, parameters (`; charset=utf-8`) allowed.
fn is_event_stream(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("text/event-stream")
}

impl Stream for EventSource {
    type Item = Result<Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Closed => return Poll::Ready(None),
                State::Idle => this.connect(),
                State::Waiting(sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.connect();
                }
                State::Connecting { response, idle } => {
                    let result = match response.as_mut().poll(cx) {
                        Poll::Ready(result) => result,
                        Poll::Pending => {
                            if let Some(timer) = idle
                                && timer.as_mut().poll(cx).is_ready()
                            {
                                let timeout = this.idle_timeout.unwrap_or_default();
                                let error = Error::IdleTimeout {
                                    timeout,
                                    retry_in: None,
                                };
                                return Poll::Ready(Some(Err(this.retry(error, false, None))));
                            }
                            return Poll::Pending;
                        }
                    };
                    let outcome = match result {
                        Ok(response) => this.open(response).map(|()| Event::Open),
                        Err(error) => Err(this.retry(error, false, None)),
                    };
                    return Poll::Ready(Some(outcome));
                }
                State::Open {
                    body,
                    idle,
                    delivered,
                    ..
                } => {
                    match this.parser.next() {
                        Some(Ok(Item::Message(message))) => {
                            *delivered = true;
                            return Poll::Ready(Some(Ok(Event::Message(message))));
                        }
                        Some(Ok(Item::Retry(time))) => {
                            tracing::debug!(?time, "server set the reconnection time");
                            this.reconnection_time = time;
                            continue;
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(error)) => return Poll::Ready(Some(Err(Error::Parse(error)))),
                        None => {}
                    }
                    let error = match body.as_mut().poll_next(cx) {
                        Poll::Ready(Some(Ok(chunk))) => {
                            if let (Some(timer), Some(timeout)) = (idle, this.idle_timeout) {
                                timer.as_mut().reset(Instant::now() + timeout);
                            }
                            this.parser.feed(&chunk);
                            continue;
                        }
                        Poll::Ready(Some(Err(source))) => Error::Transport {
                            source,
                            retry_in: None,
                        },
                        Poll::Ready(None) => Error::StreamEnded { retry_in: None },
                        Poll::Pending => {
                            let expired = idle
                                .as_mut()
                                .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
                            if !expired {
                                return Poll::Pending;
                            }
                            Error::IdleTimeout {
                                timeout: this.idle_timeout.unwrap_or_default(),
                                retry_in: None,
                            }
                        }
                    };
                    return Poll::Ready(Some(Err(this.disconnect(error))));
                }
            }
        }
    }
}

/// Terminated once closed (by [`EventSource::close`] or a fatal error).
impl futures_core::FusedStream for EventSource {
    fn is_terminated(&self) -> bool {
        matches!(self.state, State::Closed)
    }
}

impl fmt::Debug for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSource")
            .field("url", self.request.url())
            .field("ready_state", &self.ready_state())
            .field("last_event_id", &self.parser.last_event_id())
            .field("reconnection_time", &self.reconnection_time)
            .field("idle_timeout", &self.idle_timeout)
            .field("retry_policy", &self.retry_policy)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::{EventSource, is_event_stream};

    #[test]
    fn an_event_source_can_move_between_threads() {
        fn send<T: Send + Unpin>() {}
        send::<EventSource>();
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
