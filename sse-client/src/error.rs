//! The one error type of the crate: what went wrong, and whether the [`EventSource`](crate::EventSource)
//! will try again.

use std::fmt;
use std::time::Duration;

/// How much of a refusal's body (a status other than 200) is kept in [`Error::InvalidStatus`].
///
/// ```
/// assert_eq!(sse_client::ERROR_BODY_LIMIT, 4096);
/// ```
pub const ERROR_BODY_LIMIT: usize = 4096;

/// How long the [`EventSource`](crate::EventSource) waits for a refusal's body before reporting
/// the status without (the rest of) it.
///
/// ```
/// assert_eq!(sse_client::ERROR_BODY_TIME.as_secs(), 2);
/// ```
pub const ERROR_BODY_TIME: Duration = Duration::from_secs(2);

/// A boxed error, as returned by a [credentials callback](crate::EventSourceBuilder::credentials).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything an [`EventSource`](crate::EventSource) reports as an `Err` item of its stream.
///
/// Every error says what happens next: [`Error::retry_delay`] is `Some(delay)` when the source will
/// reconnect after that delay, and [`Error::is_fatal`] is true when the stream ends after this item.
/// A parser limit error ([`Error::Parse`]) is neither: the connection stays open and the next event
/// is read as usual.
///
/// ```
/// use std::time::Duration;
/// use sse_client::Error;
///
/// let err = Error::IdleTimeout { timeout: Duration::from_secs(30), retry_in: Some(Duration::from_secs(3)) };
/// assert!(err.will_retry());
/// assert!(!err.is_fatal());
/// assert_eq!(err.retry_delay(), Some(Duration::from_secs(3)));
/// assert!(Error::NoContent.is_fatal());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be built (an invalid URL or header); nothing was sent.
    #[error("invalid request: {}; check the URL and headers", chain(.0))]
    InvalidRequest(#[source] reqwest::Error),

    /// The request has a streaming body, which cannot be sent again on reconnection.
    #[error(
        "the request has a streaming body, which cannot be repeated on reconnection; use a GET without a body or a buffered body"
    )]
    UnrepeatableRequest,

    /// Connecting, sending the request or reading the body failed (DNS, refused, reset, TLS, ...).
    #[error("{}{}", transport_message(source), Next(*.retry_in))]
    Transport {
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
        /// `Some(delay)` when the source reconnects after `delay`; `None` when it gave up.
        retry_in: Option<Duration>,
    },

    /// The server ended the response body (EOF). Servers do this routinely; the source reconnects.
    #[error("the server closed the event stream{}", Next(*.retry_in))]
    StreamEnded {
        /// `Some(delay)` when the source reconnects after `delay`; `None` when it gave up.
        retry_in: Option<Duration>,
    },

    /// No byte arrived (heartbeat comments included) for the configured idle timeout, so the
    /// connection was considered dead and dropped.
    #[error(
        "no data for {} s (idle timeout), so the connection was considered dead{}",
        Seconds(*.timeout),
        Next(*.retry_in)
    )]
    IdleTimeout {
        /// The configured idle timeout.
        timeout: Duration,
        /// `Some(delay)` when the source reconnects after `delay`; `None` when it gave up.
        retry_in: Option<Duration>,
    },

    /// The server answered 204 No Content: its way of saying "stop". Never retried.
    #[error("the server answered 204 No Content, which tells clients to stop; not reconnecting")]
    NoContent,

    /// The URL's scheme is not `http` or `https`. Never retried: refused at
    /// [`build`](crate::EventSourceBuilder::build), or when a redirect leads there.
    #[error(
        "unsupported URL scheme {scheme:?} in {url}: use an http:// or https:// URL{}",
        scheme_hint(.scheme, .url)
    )]
    UnsupportedScheme {
        /// The scheme found (`ftp`, ...; for `localhost:8080/x` the URL parser reads `localhost`).
        scheme: String,
        /// The URL as given.
        url: String,
    },

    /// The server does not speak the protocol the URL asks for: the TLS handshake failed (an
    /// `https://` URL to a plain HTTP port, an invalid certificate) or the answer is not HTTP/1.x or
    /// HTTP/2 (an HTTP/0.9 or garbage response). Never retried: the next attempt would fail the same
    /// way.
    #[error("{}", protocol_message(source))]
    Protocol {
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },

    /// The server answered a status other than 200 (after redirects). Fatal, unless the
    /// [`RetryPolicy`](crate::RetryPolicy) opts in to retrying 5xx/429. The message quotes the
    /// response body (the server's explanation, e.g. the hub's `{"error":"..."}`).
    #[error(
        "the server answered HTTP {status} instead of 200{}{}{}",
        Body(.body),
        status_hint(*.status, .retry_in.is_some()),
        Next(*.retry_in)
    )]
    InvalidStatus {
        /// The status received.
        status: reqwest::StatusCode,
        /// The start of the response body (at most [`ERROR_BODY_LIMIT`] bytes, read for at most
        /// [`ERROR_BODY_TIME`]), decoded lossily as UTF-8; empty when there was none.
        body: String,
        /// `Some(delay)` when the retry policy retries this status after `delay`.
        retry_in: Option<Duration>,
    },

    /// The server answered 200 with a content type other than `text/event-stream`. Never retried.
    #[error(
        "the server answered with content type {content_type:?} instead of text/event-stream; check that the URL is an event stream endpoint"
    )]
    InvalidContentType {
        /// The `Content-Type` header received (empty when missing).
        content_type: String,
    },

    /// The [credentials callback](crate::EventSourceBuilder::credentials) failed; the attempt counts
    /// as a failed connection and is retried with backoff.
    #[error("the credentials callback failed: {}{}", chain(source.as_ref()), Next(*.retry_in))]
    Credentials {
        /// What the callback returned.
        #[source]
        source: BoxError,
        /// `Some(delay)` when the source tries again after `delay`; `None` when it gave up.
        retry_in: Option<Duration>,
    },

    /// An event exceeded a parser limit and was discarded; the connection stays open.
    #[error("{0}")]
    Parse(#[source] sse_proto::Error),
}

impl Error {
    /// The delay after which the source reconnects, or `None` if it will not (fatal error, or a
    /// parse error that keeps the current connection).
    ///
    /// ```
    /// assert_eq!(sse_client::Error::NoContent.retry_delay(), None);
    /// ```
    pub fn retry_delay(&self) -> Option<Duration> {
        match self {
            Error::Transport { retry_in, .. }
            | Error::StreamEnded { retry_in }
            | Error::IdleTimeout { retry_in, .. }
            | Error::InvalidStatus { retry_in, .. }
            | Error::Credentials { retry_in, .. } => *retry_in,
            Error::InvalidRequest(_)
            | Error::UnrepeatableRequest
            | Error::UnsupportedScheme { .. }
            | Error::Protocol { .. }
            | Error::NoContent
            | Error::InvalidContentType { .. }
            | Error::Parse(_) => None,
        }
    }

    /// True when the source goes on after this error (it reconnects, or the error was a parse error
    /// on a connection that stays open).
    ///
    /// ```
    /// assert!(!sse_client::Error::NoContent.will_retry());
    /// ```
    pub fn will_retry(&self) -> bool {
        !self.is_fatal()
    }

    /// True when this is the last item of the stream: the source is closed.
    ///
    /// ```
    /// let e = sse_client::Error::InvalidContentType { content_type: "text/html".into() };
    /// assert!(e.is_fatal());
    /// ```
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Error::Parse(_)) && self.retry_delay().is_none()
    }

    /// True for the server's 204 No Content "stop" answer.
    ///
    /// ```
    /// assert!(sse_client::Error::NoContent.is_no_content());
    /// ```
    pub fn is_no_content(&self) -> bool {
        matches!(self, Error::NoContent)
    }

    /// The HTTP status, for [`Error::InvalidStatus`] (and 204 for [`Error::NoContent`]).
    ///
    /// ```
    /// use sse_client::{Error, reqwest::StatusCode};
    /// let e = Error::InvalidStatus { status: StatusCode::NOT_FOUND, body: String::new(), retry_in: None };
    /// assert_eq!(e.status(), Some(StatusCode::NOT_FOUND));
    /// ```
    pub fn status(&self) -> Option<reqwest::StatusCode> {
        match self {
            Error::InvalidStatus { status, .. } => Some(*status),
            Error::NoContent => Some(reqwest::StatusCode::NO_CONTENT),
            _ => None,
        }
    }

    /// Classifies a failed request: [`Error::UnsupportedScheme`] or [`Error::Protocol`] when trying
    /// again cannot help, else [`Error::Transport`] (retried).
    pub(crate) fn request_failed(source: reqwest::Error) -> Error {
        if !is_permanent(&source) {
            return Error::Transport {
                source,
                retry_in: None,
            };
        }
        if let Some(url) = source.url()
            && !matches!(url.scheme(), "http" | "https")
        {
            return Error::UnsupportedScheme {
                scheme: url.scheme().to_owned(),
                url: url.to_string(),
            };
        }
        Error::Protocol { source }
    }

    /// Replaces the "what next" of a retryable error: `None` when the retry limit gave up.
    pub(crate) fn with_retry(mut self, delay: Option<Duration>) -> Error {
        match &mut self {
            Error::Transport { retry_in, .. }
            | Error::StreamEnded { retry_in }
            | Error::IdleTimeout { retry_in, .. }
            | Error::InvalidStatus { retry_in, .. }
            | Error::Credentials { retry_in, .. } => *retry_in = delay,
            Error::InvalidRequest(_)
            | Error::UnrepeatableRequest
            | Error::UnsupportedScheme { .. }
            | Error::Protocol { .. }
            | Error::NoContent
            | Error::InvalidContentType { .. }
            | Error::Parse(_) => {}
        }
        self
    }
}

/// The " ; reconnecting in N s" / " ; giving up" suffix of a retryable error's message.
struct Next(Option<Duration>);

impl fmt::Display for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "; reconnecting in {} s", Seconds(d)),
            None => f.write_str("; not reconnecting"),
        }
    }
}

/// Seconds with at most millisecond precision and no trailing zeros: `3`, `1.5`, `0.01`.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = format!("{:.3}", self.0.as_secs_f64());
        f.write_str(text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// How much of a refusal's body the message of [`Error::InvalidStatus`] quotes.
const QUOTED_BODY: usize = 512;

/// `: <body>` on one line, when the refusal had a body.
struct Body<'a>(&'a str);

impl fmt::Display for Body<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = self.0;
        if body.trim().is_empty() {
            return Ok(());
        }
        // One line, and short: an HTML error page would drown the status otherwise.
        let line = body.split_whitespace().collect::<Vec<_>>().join(" ");
        match line.char_indices().nth(QUOTED_BODY) {
            Some((cut, _)) => write!(f, ": {}...", &line[..cut]),
            None => write!(f, ": {line}"),
        }
    }
}

fn scheme_hint(scheme: &str, url: &str) -> String {
    // `localhost:8080/x` parses as scheme `localhost`: the user meant a host.
    match url
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix(':'))
    {
        Some(rest) if !rest.starts_with("//") => format!(" (did you mean http://{url}?)"),
        _ => String::new(),
    }
}

fn protocol_message(e: &reqwest::Error) -> String {
    let (what, hint) = if find_cause::<rustls::Error>(e).is_some() {
        (
            "the TLS handshake failed",
            "check that the server speaks TLS on this port (an https:// URL to a plain HTTP port fails like this) and its certificate",
        )
    } else if e.is_builder() {
        ("the request could not be sent", "check the URL")
    } else {
        (
            "the server's answer is not HTTP",
            "check the host, the port and the scheme (http:// to a TLS port fails like this)",
        )
    };
    format!("{what}: {}; {hint}; not reconnecting", chain(e))
}

/// Whether a failed request can never succeed by trying again: a TLS failure during the
/// handshake, an answer that is not HTTP, or a request reqwest refused to send.
fn is_permanent(e: &reqwest::Error) -> bool {
    if e.is_builder() {
        return true;
    }
    if find_cause::<rustls::Error>(e).is_some() {
        return true;
    }
    find_cause::<hyper::Error>(e).is_some_and(|h| h.is_parse() || h.is_parse_status())
}

/// The first error of type `T` in `e`'s causes. `std::io::Error::source` skips the error it
/// wraps (where tokio-rustls puts the rustls error), so that one is looked at too.
fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(found) = find_cause::<T>(inner)
        {
            return Some(found);
        }
        next = err.source();
    }
    None
}

fn status_hint(status: reqwest::StatusCode, retrying: bool) -> &'static str {
    if retrying {
        ""
    } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        " (retrying 5xx/429 is opt-in: RetryPolicy::retry_server_errors)"
    } else if status.is_redirection() {
        " (a redirect that was not followed: check the client's redirect policy)"
    } else {
        " (check the URL and credentials)"
    }
}

fn transport_message(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "cannot connect to the event stream"
    } else if e.is_body() || e.is_decode() {
        "the event stream connection broke"
    } else if e.is_timeout() {
        "the request timed out"
    } else {
        "the request failed"
    };
    format!("{what}: {}", chain(e))
}

/// An error and its causes on one line: reqwest's own message rarely names the root cause.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_happens_next() {
        let e = Error::StreamEnded {
            retry_in: Some(Duration::from_millis(1500)),
        };
        assert_eq!(
            e.to_string(),
            "the server closed the event stream; reconnecting in 1.5 s"
        );
        let e = Error::IdleTimeout {
            timeout: Duration::from_secs(30),
            retry_in: Some(Duration::from_millis(10)),
        };
        assert_eq!(
            e.to_string(),
            "no data for 30 s (idle timeout), so the connection was considered dead; reconnecting in 0.01 s"
        );
        let e = Error::InvalidStatus {
            status: reqwest::StatusCode::NOT_FOUND,
            body: String::new(),
            retry_in: None,
        };
        assert!(e.to_string().contains("404 Not Found"));
        assert!(!e.to_string().contains('\n'));
        let e = Error::InvalidStatus {
            status: reqwest::StatusCode::UNAUTHORIZED,
            body: "{\"error\":\"wrong token\"}\r\n  second line\n".into(),
            retry_in: None,
        };
        assert_eq!(
            e.to_string(),
            "the server answered HTTP 401 Unauthorized instead of 200: {\"error\":\"wrong token\"} second line (check the URL and credentials); not reconnecting"
        );
    }
}
