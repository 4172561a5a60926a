//! Configuration of an [`EventSource`]: where to connect and how to behave when things go wrong.

use std::future::Future;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder};
use sse_proto::Limits;

use crate::credentials::Credentials;
use crate::error::{BoxError, Error};
use crate::event_source::EventSource;
use crate::proto::{Config, Connection};
use crate::reconnect::RetryPolicy;

#[derive(Debug)]
enum Target {
    Url(String),
    Request(Box<RequestBuilder>),
}

/// Builds an [`EventSource`]; get one from [`EventSource::builder`] (a URL) or
/// [`EventSource::from_request`] (a `reqwest::RequestBuilder` with your headers, auth, client).
///
/// ```
/// use std::time::Duration;
/// use sse_client::{Backoff, EventSource, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse_client::Error> {
/// let source = EventSource::builder("http://127.0.0.1:8080/events/news")
///     .last_event_id("41")
///     .reconnection_time(Duration::from_secs(1))
///     .idle_timeout(Some(Duration::from_secs(45)))
///     .retry_policy(RetryPolicy::new().backoff(Backoff::new().max_delay(Duration::from_secs(20))))
///     .build()?;
/// assert_eq!(source.last_event_id(), "41");
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "call .build() to get the EventSource"]
pub struct EventSourceBuilder {
    target: Target,
    client: Option<Client>,
    config: Config,
    credentials: Option<Credentials>,
    /// Query parameters appended to the URL at `build` (`channel=…`, `event-type=channel`), in order.
    query: Vec<(&'static str, String)>,
}

/// The ways to configure an [`EventSource`]; they live beside the builder they return.
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
}

impl EventSourceBuilder {
    fn with_target(target: Target) -> EventSourceBuilder {
        EventSourceBuilder {
            target,
            client: None,
            config: Config::new(),
            credentials: None,
            query: Vec::new(),
        }
    }

    pub(crate) fn url(url: String) -> EventSourceBuilder {
        Self::with_target(Target::Url(url))
    }

    pub(crate) fn request(request: RequestBuilder) -> EventSourceBuilder {
        Self::with_target(Target::Request(Box::new(request)))
    }

    /// The reqwest client to use (TLS roots, proxies, redirect policy, timeouts...). For
    /// [`EventSource::from_request`] it replaces the request builder's client. Default: a new
    /// `Client` (rustls, up to 10 redirects). Do not set a total request timeout on it: an event
    /// stream is meant to stay open; use [`idle_timeout`](Self::idle_timeout) instead.
    ///
    /// ```
    /// let b = sse_client::EventSource::builder("http://localhost/").client(reqwest::Client::new());
    /// # drop(b);
    /// ```
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The last event id to resume from: sent as `Last-Event-ID` on the first request (when not
    /// empty) and reported by events until the server sends an `id:`.
    ///
    /// ```
    /// let b = sse_client::EventSource::builder("http://localhost/").last_event_id("17");
    /// # drop(b);
    /// ```
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.config = self.config.last_event_id(id);
        self
    }

    /// The initial reconnection time (default 3 s), until the server sends `retry:`.
    ///
    /// ```
    /// let b = sse_client::EventSource::builder("http://localhost/")
    ///     .reconnection_time(std::time::Duration::from_millis(500));
    /// # drop(b);
    /// ```
    pub fn reconnection_time(mut self, time: Duration) -> Self {
        self.config = self.config.reconnection_time(time);
        self
    }

    /// Liveness: when no byte at all arrives for this long (heartbeat comments count), while waiting
    /// for the response or reading the stream, the connection is considered dead and the source
    /// reconnects. Default `None`: wait forever.
    ///
    /// ```
    /// let b = sse_client::EventSource::builder("http://localhost/")
    ///     .idle_timeout(Some(std::time::Duration::from_secs(60)));
    /// # drop(b);
    /// ```
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config = self.config.idle_timeout(timeout);
        self
    }

    /// Backoff, retry limit and whether 5xx/429 are retried (see [`RetryPolicy`]).
    ///
    /// ```
    /// let b = sse_client::EventSource::builder("http://localhost/")
    ///     .retry_policy(sse_client::RetryPolicy::new().retry_server_errors(true));
    /// # drop(b);
    /// ```
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.config = self.config.retry_policy(policy);
        self
    }

    /// The parser's line and event size limits (an event beyond them is reported as
    /// [`Error::Parse`] and skipped).
    ///
    /// ```
    /// let b = sse_client::EventSource::builder("http://localhost/")
    ///     .limits(sse_proto::Limits::default());
    /// # drop(b);
    /// ```
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config = self.config.limits(limits);
        self
    }

    /// Also yield comment lines (`: text`) as [`Event::Comment`](crate::Event::Comment), with the
    /// text after the colon (default: off; browsers drop them).
    ///
    /// ```
    /// let b = sse_client::EventSource::builder("http://127.0.0.1:8080/events").comments(true);
    /// # drop(b);
    /// ```
    pub fn comments(mut self, on: bool) -> Self {
        self.config = self.config.comments(on);
        self
    }

    /// A callback run before every connection attempt (the first and each reconnection). The headers
    /// it returns are set on that request, replacing headers of the same name; use it to refresh an
    /// expiring token so a resumed stream is authorized. An error counts as a failed attempt and is
    /// retried with backoff ([`Error::Credentials`]).
    ///
    /// ```
    /// use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
    ///
    /// let b = sse_client::EventSource::builder("http://localhost/").credentials(|| async {
    ///     let mut headers = HeaderMap::new();
    ///     headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer fresh-token"));
    ///     Ok(headers)
    /// });
    /// # drop(b);
    /// ```
    pub fn credentials<F, Fut>(mut self, callback: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HeaderMap, BoxError>> + Send + 'static,
    {
        self.credentials = Some(Credentials::new(callback));
        self
    }

    /// Follows one more channel on the same stream: appends `channel=NAME` to the URL's query (the
    /// hub's multi-channel form, `GET /events?channel=a&channel=b`). `name` is a channel name or a
    /// pattern `prefix/*` (every channel under `prefix/`, including channels created later); it is
    /// form-encoded, so `users/*` is sent as `users%2F*`. Parameters already in the URL are kept, so
    /// the URL may also list channels itself. One `Last-Event-ID` resumes every channel of the set.
    ///
    /// ```
    /// let source = sse_client::EventSource::builder("http://127.0.0.1:8080/events")
    ///     .channel("inbox/ada")
    ///     .channel("teams/*")
    ///     .build()?;
    /// assert_eq!(source.url().query(), Some("channel=inbox%2Fada&channel=teams%2F*"));
    /// # Ok::<(), sse_client::Error>(())
    /// ```
    pub fn channel(mut self, name: impl Into<String>) -> Self {
        self.query.push(("channel", name.into()));
        self
    }

    /// Follows every channel or `prefix/*` pattern of `names` (see [`channel`](Self::channel)).
    ///
    /// ```
    /// let source = sse_client::EventSource::builder("http://127.0.0.1:8080/events")
    ///     .channels(["news", "users/*"])
    ///     .build()?;
    /// let names: Vec<_> = source.url().query_pairs().map(|(_, v)| v.into_owned()).collect();
    /// assert_eq!(names, ["news", "users/*"]);
    /// # Ok::<(), sse_client::Error>(())
    /// ```
    pub fn channels<I>(mut self, names: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.query
            .extend(names.into_iter().map(|name| ("channel", name.into())));
        self
    }

    /// Asks the hub to name each event's channel in its type: appends `event-type=channel`, so an
    /// event whose publisher set no `event:` type arrives with [`Message::event_type`] set to the
    /// channel it came from (events with their own type keep it). Useful on a multi-channel stream
    /// to tell channels apart without looking into the data.
    ///
    /// [`Message::event_type`]: crate::Message::event_type
    ///
    /// ```
    /// let source = sse_client::EventSource::builder("http://127.0.0.1:8080/events")
    ///     .channels(["a", "b"])
    ///     .channel_as_event_type()
    ///     .build()?;
    /// assert_eq!(source.url().query(), Some("channel=a&channel=b&event-type=channel"));
    /// # Ok::<(), sse_client::Error>(())
    /// ```
    pub fn channel_as_event_type(mut self) -> Self {
        self.query.push(("event-type", "channel".to_owned()));
        self
    }

    /// Checks the request and returns the source. Nothing is sent until the stream is first polled.
    /// Fails with [`Error::InvalidRequest`] for an invalid URL or header,
    /// [`Error::UnsupportedScheme`] for a URL that is not `http://` or `https://`, or
    /// [`Error::UnrepeatableRequest`] for a request with a streaming body (which cannot be sent again
    /// on reconnection).
    ///
    /// ```
    /// use sse_client::{Error, EventSource};
    ///
    /// assert!(EventSource::builder("not a url").build().is_err());
    /// let err = EventSource::builder("ftp://127.0.0.1/x").build().unwrap_err();
    /// assert!(matches!(err, Error::UnsupportedScheme { .. }), "{err}");
    /// ```
    pub fn build(mut self) -> Result<EventSource, Error> {
        let target = std::mem::replace(&mut self.target, Target::Url(String::new()));
        let (client, request) = match target {
            Target::Url(url) => {
                let client = self.client.take().unwrap_or_default();
                let request = client.get(url).build();
                (client, request)
            }
            Target::Request(rb) => {
                let (client, request) = rb.build_split();
                (self.client.take().unwrap_or(client), request)
            }
        };
        let mut request = request.map_err(|e| match e.url() {
            Some(url) => unsupported_scheme(url).unwrap_or(Error::InvalidRequest(e)),
            None => Error::InvalidRequest(e),
        })?;
        if !self.query.is_empty() {
            request
                .url_mut()
                .query_pairs_mut()
                .extend_pairs(self.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        if let Some(error) = unsupported_scheme(request.url()) {
            return Err(error);
        }
        if request.try_clone().is_none() {
            return Err(Error::UnrepeatableRequest);
        }
        let connection = Connection::new(self.config);
        Ok(EventSource::from_parts(
            client,
            request,
            self.credentials,
            connection,
        ))
    }
}

/// [`Error::UnsupportedScheme`] unless `url` is `http://` or `https://`.
fn unsupported_scheme(url: &reqwest::Url) -> Option<Error> {
    if matches!(url.scheme(), "http" | "https") {
        return None;
    }
    Some(Error::UnsupportedScheme {
        scheme: url.scheme().to_owned(),
        url: url.to_string(),
    })
}
