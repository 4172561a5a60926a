//! The reconnecting `EventSource`: a thin driver that runs reqwest and one timer for the
//! [`Connection`] state machine, which decides everything else.
//!
//! Everything it runs (the request future, the body, the timer) is owned by the `EventSource`
//! itself and driven by `poll_next`; no task is spawned, so `close()` or drop ends all of it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures_core::Stream;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use reqwest::header::{ACCEPT, CACHE_CONTROL, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Request, Response, StatusCode, Url};
use tokio::time::{Instant, Sleep};

use crate::credentials::Credentials;
use crate::error::{ERROR_BODY_LIMIT, ERROR_BODY_TIME, Error};
use crate::event::{Event, ReadyState};
use crate::proto::{Action, Connection};

const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// A Server-Sent Events connection that reconnects by itself, as a `Stream` of
/// `Result<Event, Error>`.
///
/// * Yields [`Event::Open`] each time a connection opens (200 + `text/event-stream`), then an
///   [`Event::Message`] per dispatched event (and an [`Event::Comment`] per comment line, when
///   [`EventSourceBuilder::comments`](crate::EventSourceBuilder::comments) is on).
/// * When the stream ends, breaks or stays silent beyond the idle timeout, yields an `Err` whose
///   [`Error::retry_delay`] says when it reconnects, waits, and reconnects with `Last-Event-ID` set to
///   the id committed at the last dispatch (not sent when empty). `retry:` replaces the reconnection
///   time; repeated failures back off (see [`Backoff`](crate::Backoff)).
/// * 204, another status or another content type yields a fatal `Err` and the stream ends
///   (see [`RetryPolicy`](crate::RetryPolicy) for the 5xx/429 opt-in); the error quotes the start of
///   the refusal's body ([`Error::InvalidStatus`]). Redirects are followed by reqwest, and later
///   reconnections go straight to the final URL.
/// * A failure that trying again cannot fix ends the stream at once, whatever the retry policy:
///   a URL that is not http(s) ([`Error::UnsupportedScheme`], refused at `build`), a failed TLS
///   handshake or an answer that is not HTTP ([`Error::Protocol`]).
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
    credentials: Option<Credentials>,
    connection: Connection,
    io: Io,
    /// Reset to the machine's next deadline; made at the first wait, inside the runtime.
    timer: Option<Pin<Box<Sleep>>>,
}

/// The I/O in progress, as the machine's last actions asked.
enum Io {
    None,
    Requesting(BoxFuture<'static, Result<Answer, Error>>),
    Reading(BoxStream<'static, reqwest::Result<Bytes>>),
}

/// What a request came back with.
enum Answer {
    /// 200 or 204: the machine decides, and a stream's body is read as it comes.
    Stream(Response),
    /// Another status, with the start of its body: the server's explanation of the refusal.
    Refused {
        status: StatusCode,
        headers: HeaderMap,
        body: Vec<u8>,
    },
}

impl Answer {
    /// Reads up to [`ERROR_BODY_LIMIT`] bytes of a refusal's body, for at most [`ERROR_BODY_TIME`]
    /// (a refusal is small and complete; a stalled one must not hold the source).
    async fn read(mut response: Response) -> Answer {
        let status = response.status();
        if matches!(status, StatusCode::OK | StatusCode::NO_CONTENT) {
            return Answer::Stream(response);
        }
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        let read = async {
            while body.len() < ERROR_BODY_LIMIT {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => break,
                    Err(error) => {
                        tracing::debug!(%error, "the refusal's body broke off");
                        break;
                    }
                }
            }
        };
        if tokio::time::timeout(ERROR_BODY_TIME, read).await.is_err() {
            tracing::debug!(%status, "the refusal's body is slow; reporting what came");
        }
        body.truncate(ERROR_BODY_LIMIT);
        Answer::Refused {
            status,
            headers,
            body,
        }
    }
}

impl EventSource {
    pub(crate) fn from_parts(
        client: Client,
        request: Request,
        credentials: Option<Credentials>,
        connection: Connection,
    ) -> EventSource {
        EventSource {
            client,
            request,
            credentials,
            connection,
            io: Io::None,
            timer: None,
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
        if self.connection.ready_state() != ReadyState::Closed {
            tracing::debug!(url = %self.request.url(), "event source closed");
        }
        self.connection.close();
        self.io = Io::None;
        self.timer = None;
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
        self.connection.last_event_id()
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
    pub fn reconnection_time(&self) -> std::time::Duration {
        self.connection.reconnection_time()
    }

    /// Connecting (or waiting to reconnect), open, or closed.
    ///
    /// ```
    /// let source = sse_client::EventSource::new("http://localhost/")?;
    /// assert_eq!(source.ready_state(), sse_client::ReadyState::Connecting);
    /// # Ok::<(), sse_client::Error>(())
    /// ```
    pub fn ready_state(&self) -> ReadyState {
        self.connection.ready_state()
    }

    /// Starts the request the machine asked for: the configured one, with the event-stream headers,
    /// `Last-Event-ID` and fresh credentials.
    fn connect(&mut self, last_event_id: &str) {
        let Some(mut request) = self.request.try_clone() else {
            // `build` refused unrepeatable requests, so this cannot happen; stay safe anyway.
            self.close();
            return;
        };
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if !headers.contains_key(CACHE_CONTROL) {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        headers.remove(LAST_EVENT_ID);
        if !last_event_id.is_empty() {
            match HeaderValue::from_bytes(last_event_id.as_bytes()) {
                Ok(value) => {
                    headers.insert(LAST_EVENT_ID, value);
                }
                Err(_) => tracing::warn!(
                    id = last_event_id,
                    "last event id has control characters a header cannot carry; not sending it"
                ),
            }
        }
        tracing::debug!(url = %request.url(), last_event_id, "connecting");
        let client = self.client.clone();
        let credentials = self.credentials.clone();
        self.io = Io::Requesting(Box::pin(async move {
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
            let response = client
                .execute(request)
                .await
                .map_err(Error::request_failed)?;
            Ok(Answer::read(response).await)
        }));
    }

    /// Hands the response to the machine and, when it opens the stream, starts reading the body.
    fn respond(&mut self, now: std::time::Instant, answer: Answer) {
        let response = match answer {
            Answer::Stream(response) => response,
            Answer::Refused {
                status,
                headers,
                body,
            } => {
                let date = SystemTime::now();
                self.connection
                    .response_with_body(now, status, &headers, date, &body);
                return;
            }
        };
        self.connection.response(
            now,
            response.status(),
            response.headers(),
            SystemTime::now(),
        );
        if self.connection.ready_state() != ReadyState::Open {
            return;
        }
        if response.url() != self.request.url() {
            tracing::info!(from = %self.request.url(), to = %response.url(), "redirected; reconnections go to the final URL");
            *self.request.url_mut() = response.url().clone();
        }
        tracing::debug!(url = %response.url(), "connected");
        self.io = Io::Reading(Box::pin(response.bytes_stream()));
    }

    /// Polls the I/O in progress and feeds what happened to the machine; `Pending` when nothing did.
    fn poll_io(&mut self, cx: &mut Context<'_>, now: std::time::Instant) -> Poll<()> {
        match &mut self.io {
            Io::None => Poll::Pending,
            Io::Requesting(response) => {
                let result = std::task::ready!(response.as_mut().poll(cx));
                self.io = Io::None;
                match result {
                    Ok(response) => self.respond(now, response),
                    Err(error) => self.connection.failed(now, error),
                }
                Poll::Ready(())
            }
            Io::Reading(body) => {
                match std::task::ready!(body.as_mut().poll_next(cx)) {
                    Some(Ok(chunk)) => self.connection.bytes(now, &chunk),
                    Some(Err(source)) => {
                        self.io = Io::None;
                        let error = Error::Transport {
                            source,
                            retry_in: None,
                        };
                        self.connection.failed(now, error);
                    }
                    None => {
                        self.io = Io::None;
                        self.connection.eof(now);
                    }
                }
                Poll::Ready(())
            }
        }
    }

    /// Waits for the machine's next deadline and fires it; `Pending` until it passes.
    fn poll_timer(&mut self, cx: &mut Context<'_>, now: std::time::Instant) -> Poll<()> {
        let Some(deadline) = self.connection.poll_timeout() else {
            return Poll::Pending;
        };
        if deadline > now {
            let at = Instant::from_std(deadline);
            let timer = match &mut self.timer {
                Some(timer) => {
                    if timer.deadline() != at {
                        timer.as_mut().reset(at);
                    }
                    timer
                }
                None => self.timer.insert(Box::pin(tokio::time::sleep_until(at))),
            };
            std::task::ready!(timer.as_mut().poll(cx));
        }
        // The timer fired, so the deadline is due even if the clock reads a hair earlier.
        let now = Instant::now().into_std().max(deadline);
        self.connection.handle_timeout(now);
        Poll::Ready(())
    }
}

impl Stream for EventSource {
    type Item = Result<Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let now = Instant::now().into_std();
            match this.connection.poll(now) {
                Some(Action::Connect { last_event_id }) => {
                    this.connect(&last_event_id);
                    continue;
                }
                Some(Action::Deliver(event)) => return Poll::Ready(Some(Ok(event))),
                Some(Action::Error(error)) => {
                    if !matches!(error, Error::Parse(_)) {
                        this.io = Io::None;
                    }
                    return Poll::Ready(Some(Err(error)));
                }
                None => {}
            }
            if this.connection.ready_state() == ReadyState::Closed {
                this.close();
                return Poll::Ready(None);
            }
            if this.poll_io(cx, now).is_ready() || this.poll_timer(cx, now).is_ready() {
                continue;
            }
            return Poll::Pending;
        }
    }
}

/// Terminated once closed (by [`EventSource::close`] or a fatal error).
impl futures_core::FusedStream for EventSource {
    fn is_terminated(&self) -> bool {
        self.connection.ready_state() == ReadyState::Closed
    }
}

impl fmt::Debug for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSource")
            .field("url", self.request.url())
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::EventSource;

    #[test]
    fn an_event_source_can_move_between_threads() {
        fn send<T: Send + Unpin>() {}
        send::<EventSource>();
    }
}
