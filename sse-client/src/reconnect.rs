//! When to reconnect: which failures are retried, how many times, and what `Retry-After` asks for.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::backoff::Backoff;

/// The spec leaves the initial reconnection time to the client; browsers use about 3 seconds.
///
/// ```
/// assert_eq!(sse_client::DEFAULT_RECONNECTION_TIME.as_secs(), 3);
/// ```
pub const DEFAULT_RECONNECTION_TIME: Duration = Duration::from_secs(3);

/// What the [`EventSource`](crate::EventSource) does after a connection ends or fails.
///
/// * A stream that ends (EOF), breaks (network error) or goes silent beyond the idle timeout is
///   always reconnected, after the [`Backoff`] delay; so is a connection that cannot be made
///   (refused, DNS, reset), but not one that never can: an unsupported scheme, a failed TLS
///   handshake or an answer that is not HTTP are fatal.
/// * 204, any other status and a wrong content type are fatal, as the spec says, except that with
///   [`RetryPolicy::retry_server_errors`] (opt-in) 5xx and 429 answers are retried too, waiting at
///   least what their `Retry-After` header asks (seconds or an HTTP date).
/// * [`RetryPolicy::max_retries`] gives up after that many consecutive failed attempts (default:
///   never give up). The count resets after a connection that delivered something.
///
/// ```
/// use std::time::Duration;
/// use sse_client::{Backoff, RetryPolicy};
///
/// let policy = RetryPolicy::new()
///     .backoff(Backoff::new().max_delay(Duration::from_secs(60)))
///     .max_retries(Some(10))
///     .retry_server_errors(true);
/// assert_eq!(policy.get_max_retries(), Some(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RetryPolicy {
    backoff: Backoff,
    max_retries: Option<u32>,
    retry_server_errors: bool,
}

impl RetryPolicy {
    /// Default backoff, retries forever, 5xx/429 fatal.
    ///
    /// ```
    /// assert_eq!(sse_client::RetryPolicy::new().get_max_retries(), None);
    /// ```
    pub fn new() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// The backoff between attempts.
    ///
    /// ```
    /// let p = sse_client::RetryPolicy::new().backoff(sse_client::Backoff::new().jitter(0.0));
    /// # drop(p);
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Give up after `n` consecutive failed attempts (`Some(0)`: never retry a failure). A
    /// connection that delivered something resets the count, so a long-lived stream is reconnected
    /// indefinitely.
    ///
    /// ```
    /// let p = sse_client::RetryPolicy::new().max_retries(Some(3));
    /// assert_eq!(p.get_max_retries(), Some(3));
    /// ```
    pub fn max_retries(mut self, n: Option<u32>) -> Self {
        self.max_retries = n;
        self
    }

    /// Also retry 5xx and 429 answers (honouring `Retry-After`), which the spec treats as fatal.
    ///
    /// ```
    /// let p = sse_client::RetryPolicy::new().retry_server_errors(true);
    /// # drop(p);
    /// ```
    pub fn retry_server_errors(mut self, on: bool) -> Self {
        self.retry_server_errors = on;
        self
    }

    /// The configured backoff.
    ///
    /// ```
    /// assert_eq!(sse_client::RetryPolicy::new().get_backoff(), sse_client::Backoff::new());
    /// ```
    pub fn get_backoff(&self) -> Backoff {
        self.backoff
    }

    /// The configured retry limit.
    ///
    /// ```
    /// assert_eq!(sse_client::RetryPolicy::new().get_max_retries(), None);
    /// ```
    pub fn get_max_retries(&self) -> Option<u32> {
        self.max_retries
    }

    /// Whether this status is retried rather than fatal.
    pub(crate) fn retries_status(&self, status: StatusCode) -> bool {
        self.retry_server_errors
            && (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS)
    }

    /// True when `failures` consecutive failed attempts exceed the limit.
    pub(crate) fn gives_up(&self, failures: u32) -> bool {
        self.max_retries.is_some_and(|max| failures > max)
    }
}

/// The delay a `Retry-After` header asks for: delta-seconds or an HTTP date (a date in the past
/// means "now").
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(
            retry_after(&headers("7"), now),
            Some(Duration::from_secs(7))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(20));
        assert_eq!(
            retry_after(&headers(&later), now),
            Some(Duration::from_secs(20))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(20));
        assert_eq!(retry_after(&headers(&earlier), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&headers("-1"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn server_errors_are_retried_only_when_opted_in() {
        let off = RetryPolicy::new();
        let on = off.retry_server_errors(true);
        for s in [503u16, 500, 429] {
            let s = StatusCode::from_u16(s).unwrap();
            assert!(!off.retries_status(s));
            assert!(on.retries_status(s));
        }
        assert!(!on.retries_status(StatusCode::NOT_FOUND));
        assert!(!on.retries_status(StatusCode::NO_CONTENT));
    }

    #[test]
    fn gives_up_after_the_limit() {
        let p = RetryPolicy::new().max_retries(Some(2));
        assert!(!p.gives_up(2));
        assert!(p.gives_up(3));
        assert!(!RetryPolicy::new().gives_up(u32::MAX));
    }
}
