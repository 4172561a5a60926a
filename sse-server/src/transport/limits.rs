//! Connection-level limits of the [`Server`](crate::transport::server::Server): how many connections, from whom, and how
//! long a client may take to send its request headers.
//!
//! Every limit has a default safe for a public endpoint; see SECURITY.md for the list and the tests
//! that prove each one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use crate::http::body::Body;

/// The HTTP/2 client preface; a connection that starts with part of it may still be HTTP/2.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A network: an address and a prefix length (`10.0.0.0/8`, `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network of `addr` with `prefix` leading bits (clamped to the address length).
    pub(crate) fn new(addr: IpAddr, prefix: u8) -> Self {
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        Cidr {
            network: addr,
            prefix: prefix.min(max),
        }
    }

    /// Whether `ip` is inside the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let bits = |v: u128, width: u32| {
            let keep = u32::from(self.prefix);
            if keep == 0 { 0 } else { v >> (width - keep) }
        };
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                bits(u128::from(u32::from(n)), 32) == bits(u128::from(u32::from(a)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => bits(u128::from(n), 128) == bits(u128::from(a), 128),
            _ => false,
        }
    }
}

/// Connection limits of a [`Server`](crate::transport::server::Server).
///
/// | Setting                     | Default | Over the limit                                   |
/// |-----------------------------|---------|--------------------------------------------------|
/// | `max_connections`           | 10 000  | 503 with `Retry-After`, connection closed        |
/// | `max_connections_per_ip`    | 256     | 429 with `Retry-After`, connection closed        |
/// | `header_read_timeout`       | 10 s    | connection closed (also idle keep-alive ones)    |
/// | `max_header_bytes`          | 32 KiB  | 431 (HTTP/1.1); stream reset (HTTP/2)            |
/// | `idle_timeout`              | 60 s    | connection closed (no request open that long)    |
/// | `trusted_proxy`             | none    | per-IP limit by `X-Forwarded-For` behind them    |
///
/// ```
/// use std::time::Duration;
/// let limits = sse_server::Limits::default()
///     .max_connections(1000)
///     .max_connections_per_ip(20)
///     .header_read_timeout(Duration::from_secs(5))
///     .max_header_bytes(16 * 1024)
///     .retry_after(Duration::from_secs(2))
///     .trusted_proxy("10.0.0.0".parse().unwrap(), 8);
/// assert_eq!(limits.max_connections_value(), 1000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    max_connections: usize,
    max_connections_per_ip: usize,
    retry_after: Duration,
    header_read_timeout: Duration,
    max_header_bytes: usize,
    idle_timeout: Duration,
    trusted_proxies: Vec<Cidr>,
    max_subscriptions_per_connection: usize,
    max_subscriptions_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_connections_per_ip: 256,
            retry_after: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            idle_timeout: Duration::from_secs(60),
            trusted_proxies: Vec::new(),
            max_subscriptions_per_connection: 100,
            max_subscriptions_per_ip: 1000,
        }
    }
}

/// The smallest header buffer hyper accepts.
const MIN_HEADER_BYTES: usize = 8192;

impl Limits {
    /// Open connections in total (default 10 000); beyond it new ones get 503 with `Retry-After`.
    ///
    /// ```
    /// let _ = sse_server::Limits::default().max_connections(500);
    /// ```
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Open connections per client IP address (default 256); beyond it new ones get 429 with
    /// `Retry-After`. Behind a reverse proxy every client has the proxy's address: name the proxy
    /// with [`trusted_proxy`](Limits::trusted_proxy) so its clients are told apart.
    ///
    /// ```
    /// let _ = sse_server::Limits::default().max_connections_per_ip(32);
    /// ```
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.max_connections_per_ip = n.max(1);
        self
    }

    /// Event streams open at once on one connection (default 100); beyond it a subscription gets 429
    /// with `Retry-After`. HTTP/2 connections also announce `SETTINGS_MAX_CONCURRENT_STREAMS` of this
    /// plus 16 (room for publishes and 429 answers).
    ///
    /// ```
    /// let limits = sse_server::Limits::default().max_subscriptions_per_connection(10);
    /// assert_eq!(limits.max_subscriptions_per_connection_value(), 10);
    /// ```
    pub fn max_subscriptions_per_connection(mut self, n: usize) -> Self {
        self.max_subscriptions_per_connection = n.max(1);
        self
    }

    /// The per-connection subscription limit.
    ///
    /// ```
    /// assert_eq!(sse_server::Limits::default().max_subscriptions_per_connection_value(), 100);
    /// ```
    pub fn max_subscriptions_per_connection_value(&self) -> usize {
        self.max_subscriptions_per_connection
    }

    /// Event streams open at once from one client IP over all its connections (default 1000; the
    /// forwarded client behind a [`trusted_proxy`](Limits::trusted_proxy)); beyond it a subscription
    /// gets 429 with `Retry-After`. Bounds how much of the channel table one client can fill.
    ///
    /// ```
    /// let limits = sse_server::Limits::default().max_subscriptions_per_ip(50);
    /// assert_eq!(limits.max_subscriptions_per_ip_value(), 50);
    /// ```
    pub fn max_subscriptions_per_ip(mut self, n: usize) -> Self {
        self.max_subscriptions_per_ip = n.max(1);
        self
    }

    /// The per-IP subscription limit.
    ///
    /// ```
    /// assert_eq!(sse_server::Limits::default().max_subscriptions_per_ip_value(), 1000);
    /// ```
    pub fn max_subscriptions_per_ip_value(&self) -> usize {
        self.max_subscriptions_per_ip
    }

    /// The shared per-IP subscription counts for a server with these limits.
    pub(crate) fn subscription_limits(&self) -> Arc<crate::http::peer::SubscriptionLimits> {
        crate::http::peer::SubscriptionLimits::new(
            self.max_subscriptions_per_connection,
            self.max_subscriptions_per_ip,
            self.retry_after,
        )
    }

    /// The `Retry-After` sent with 503 and 429 (default 5 s, rounded up to whole seconds).
    ///
    /// ```
    /// let _ = sse_server::Limits::default().retry_after(std::time::Duration::from_secs(1));
    /// ```
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// Time a client has to send the first byte and then the whole request head (default 10 s); it also
    /// closes HTTP/1.1 keep-alive connections idle that long between requests (slowloris, idle
    /// publishers).
    ///
    /// ```
    /// let _ = sse_server::Limits::default().header_read_timeout(std::time::Duration::from_secs(3));
    /// ```
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Largest request head (request line and headers) in bytes (default 32 KiB, at least 8 KiB).
    ///
    /// ```
    /// let _ = sse_server::Limits::default().max_header_bytes(64 * 1024);
    /// ```
    pub fn max_header_bytes(mut self, n: usize) -> Self {
        self.max_header_bytes = n.max(MIN_HEADER_BYTES);
        self
    }

    /// How long a connection served by hyper (HTTP/2, TLS, HTTP/1.1 other than the lean subscribe
    /// path) may stay open with no request on it (default 60 s): an HTTP/2 connection with no open
    /// stream has no other timer. Closed between one and two timeouts after its last response ended;
    /// an open event stream keeps its connection.
    ///
    /// ```
    /// let limits = sse_server::Limits::default().idle_timeout(std::time::Duration::from_secs(30));
    /// assert_eq!(limits.idle_timeout_value().as_secs(), 30);
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The idle timeout.
    ///
    /// ```
    /// assert_eq!(sse_server::Limits::default().idle_timeout_value().as_secs(), 60);
    /// ```
    pub fn idle_timeout_value(&self) -> Duration {
        self.idle_timeout
    }

    /// Trusts the reverse proxies in the network `network/prefix_len` (repeatable; e.g. `10.0.0.0`,
    /// 8; a single address with 32 or 128): a connection from one counts towards the total limit
    /// only, and each of its requests counts, for the per-IP limit, towards the client named by
    /// `X-Forwarded-For` (the right-most address that is not a trusted proxy), for as long as its
    /// response lasts; over the limit, that request gets 429 with `Retry-After`. `X-Forwarded-For`
    /// from any other peer is ignored. Nothing but the per-IP limit uses the forwarded address.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    /// let limits = sse_server::Limits::default().trusted_proxy(IpAddr::V4(Ipv4Addr::LOCALHOST), 32);
    /// assert!(limits.is_trusted_proxy("127.0.0.1".parse().unwrap()));
    /// assert!(!limits.is_trusted_proxy("127.0.0.2".parse().unwrap()));
    /// ```
    pub fn trusted_proxy(mut self, network: IpAddr, prefix_len: u8) -> Self {
        self.trusted_proxies.push(Cidr::new(network, prefix_len));
        self
    }

    /// Whether `ip` is inside a network given to [`trusted_proxy`](Limits::trusted_proxy).
    ///
    /// ```
    /// assert!(!sse_server::Limits::default().is_trusted_proxy("10.0.0.1".parse().unwrap()));
    /// ```
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }

    /// The total connection limit.
    ///
    /// ```
    /// assert_eq!(sse_server::Limits::default().max_connections_value(), 10_000);
    /// ```
    pub fn max_connections_value(&self) -> usize {
        self.max_connections
    }

    /// The per-IP connection limit.
    ///
    /// ```
    /// assert_eq!(sse_server::Limits::default().max_connections_per_ip_value(), 256);
    /// ```
    pub fn max_connections_per_ip_value(&self) -> usize {
        self.max_connections_per_ip
    }

    /// The header read timeout.
    ///
    /// ```
    /// assert_eq!(sse_server::Limits::default().header_read_timeout_value().as_secs(), 10);
    /// ```
    pub fn header_read_timeout_value(&self) -> Duration {
        self.header_read_timeout
    }

    /// The request head size limit.
    ///
    /// ```
    /// assert_eq!(sse_server::Limits::default().max_header_bytes_value(), 32 * 1024);
    /// ```
    pub fn max_header_bytes_value(&self) -> usize {
        self.max_header_bytes
    }

    /// Applies the header limits to a hyper connection builder.
    pub(crate) fn configure(&self, builder: &mut auto::Builder<TokioExecutor>) {
        builder
            .http1()
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(self.max_header_bytes.max(MIN_HEADER_BYTES));
        builder
            .http2()
            .max_header_list_size(self.http2_max_header_list_size())
            .max_concurrent_streams(self.http2_max_concurrent_streams());
    }

    /// The largest header list an HTTP/2 request may have.
    pub(crate) fn http2_max_header_list_size(&self) -> u32 {
        u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX)
    }

    /// Streams an HTTP/2 client may open at once: its subscriptions and a few more requests.
    pub(crate) fn http2_max_concurrent_streams(&self) -> u32 {
        u32::try_from(self.max_subscriptions_per_connection.saturating_add(16)).unwrap_or(u32::MAX)
    }
}

/// Counts open connections, in total and per client address.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimiter {
    limits: Limits,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One open connection (or one request of a trusted proxy's client); dropping it frees its place.
#[derive(Debug)]
pub(crate) struct Permit {
    /// Whether it holds a place in the total.
    total: bool,
    /// The address whose per-IP place it holds (none for a trusted proxy's connection).
    ip: Option<IpAddr>,
    counts: Arc<Mutex<Counts>>,
}

/// Why a connection was refused, and the answer it gets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal {
    status: StatusCode,
    limit: usize,
    retry_after: Duration,
}

impl Refusal {
    /// Which limit refused the connection (for the metrics).
    pub(crate) fn reason(&self) -> crate::hub::metrics::Refused {
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            crate::hub::metrics::Refused::MaxConnectionsPerIp
        } else {
            crate::hub::metrics::Refused::MaxConnections
        }
    }
}

fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConnectionLimiter {
    pub(crate) fn new(limits: Limits) -> Self {
        ConnectionLimiter {
            limits,
            counts: Arc::default(),
        }
    }

    /// A place for a new connection from `ip`: in the total, and in `ip`'s own count unless `ip` is
    /// a trusted proxy (whose requests are then counted by [`try_acquire_client`](Self::try_acquire_client)).
    pub(crate) fn try_acquire(&self, ip: IpAddr) -> Result<Permit, Refusal> {
        let per_ip = !self.limits.is_trusted_proxy(ip);
        self.acquire(true, per_ip.then_some(ip))
    }

    /// A per-IP place (only) for a request of `client`, forwarded by a trusted proxy.
    pub(crate) fn try_acquire_client(&self, client: IpAddr) -> Result<Permit, Refusal> {
        self.acquire(false, Some(client))
    }

    /// Answers `stream` with a 503 if its socket takes it now, and closes it, without ever waiting:
    /// the answer to a connection accepted with the reserve descriptor while the process is out of
    /// descriptors. What the client already sent is read first, so the close is a FIN, not a RST
    /// that could overtake the answer.
    pub(crate) fn refuse_now(&self, stream: TcpStream) {
        let refusal = Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            limit: self.limits.max_connections,
            retry_after: self.limits.retry_after,
        };
        let _ = stream.try_write(&refusal.wire());
        let Ok(mut stream) = stream.into_std() else {
            return;
        };
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match std::io::Read::read(&mut stream, &mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }

    /// The networks of the trusted proxies.
    pub(crate) fn trusted_proxies(&self) -> &[Cidr] {
        &self.limits.trusted_proxies
    }

    /// Whether `ip` is a trusted proxy.
    pub(crate) fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.limits.is_trusted_proxy(ip)
    }

    fn acquire(&self, total: bool, ip: Option<IpAddr>) -> Result<Permit, Refusal> {
        let mut counts = lock(&self.counts);
        let refuse = |status, limit| Refusal {
            status,
            limit,
            retry_after: self.limits.retry_after,
        };
        if total && counts.total >= self.limits.max_connections {
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                self.limits.max_connections,
            ));
        }
        if let Some(ip) = ip {
            let mine = counts.per_ip.entry(ip).or_insert(0);
            if *mine >= self.limits.max_connections_per_ip {
                return Err(refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    self.limits.max_connections_per_ip,
                ));
            }
            *mine += 1;
        }
        if total {
            counts.total += 1;
        }
        Ok(Permit {
            total,
            ip,
            counts: self.counts.clone(),
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if self.total {
            counts.total = counts.total.saturating_sub(1);
        }
        if let Some(ip) = self.ip
            && let Some(n) = counts.per_ip.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_ip.remove(&ip);
            }
        }
    }
}

impl Refusal {
    /// The `Retry-After` value: whole seconds, rounded up.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }

    fn message(&self) -> String {
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            format!(
                "too many connections from your address (limit {}); close some or retry later",
                self.limit
            )
        } else {
            format!(
                "the server is at its connection limit ({}); retry later",
                self.limit
            )
        }
    }

    fn response(&self) -> Response<Body> {
        let mut resp = crate::http::service::error(self.status, &self.message());
        let secs = self.retry_after_secs();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }

    /// The refusal as HTTP/1.1 bytes, complete with its JSON body.
    fn wire(&self) -> Vec<u8> {
        let resp = self.response();
        let reason = self.status.canonical_reason().unwrap_or("");
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status.as_u16()).into_bytes();
        for (name, value) in resp.headers() {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let body =
            serde_json::to_vec(&serde_json::json!({ "error": self.message() })).unwrap_or_default();
        out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Answers at once, without waiting for the request (a client that has not sent it yet still
    /// reads the answer; an HTTP/2 client whose preface already arrived gets a proper HTTP/2
    /// answer), then closes gracefully. Everything is bounded in time: a refused connection must
    /// give its descriptor back quickly.
    pub(crate) async fn serve(self, stream: TcpStream, timeout: Duration) {
        let mut peek = [0u8; H2_PREFACE.len()];
        let h2 = std::future::poll_fn(|cx| {
            let mut buf = tokio::io::ReadBuf::new(&mut peek);
            std::task::Poll::Ready(match stream.poll_peek(cx, &mut buf) {
                std::task::Poll::Ready(Ok(_)) => buf.filled() == H2_PREFACE,
                _ => false,
            })
        })
        .await;
        if h2 {
            self.serve_request(stream, timeout).await;
            return;
        }
        let wire = self.wire();
        let written = tokio::time::timeout(
            REFUSAL_LINGER,
            crate::transport::io::write_all(&stream, &wire),
        )
        .await;
        if matches!(written, Ok(Ok(()))) {
            crate::transport::io::linger(stream, REFUSAL_LINGER, REFUSAL_DRAIN_BYTES).await;
        }
    }
}

impl Refusal {
    /// Answers the first request on `io` (HTTP/1 or HTTP/2, whichever the client speaks) with the
    /// refusal and closes, bounded by `timeout` and the refusal's linger: how a refused connection is
    /// answered once it speaks HTTP — after the HTTP/2 preface, or over TLS after the handshake (a
    /// plaintext answer on a TLS listener would read as garbage to the client).
    pub(crate) async fn serve_request<I>(self, io: I, timeout: Duration)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().keep_alive(false);
        let service = hyper::service::service_fn(move |_req| {
            let resp = self.response();
            async move { Ok::<_, std::convert::Infallible>(resp) }
        });
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let _ = tokio::time::timeout(timeout.min(REFUSAL_LINGER), conn).await;
    }
}

/// How long a refused connection is kept open at most (writing the refusal, then draining).
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// At most this much of a refused client's request is read (and dropped) before closing.
const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;

/// Waits until the client has sent enough to tell HTTP/1 from HTTP/2, for at most `timeout`: before
/// that, no timer of hyper runs, so a client that connects and sends nothing would hold its connection
/// forever. False when the client was too slow (or the socket failed).
pub(crate) async fn first_bytes(stream: &TcpStream, timeout: Duration) -> bool {
    let wait = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            let n = stream.peek(&mut buf).await?;
            if n == 0 || n == buf.len() || buf[..n] != H2_PREFACE[..n] {
                return Ok::<bool, std::io::Error>(n > 0);
            }
            // A strict prefix of the HTTP/2 preface: peek would return at once again, so wait a little.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_total_and_per_ip_and_frees_on_drop() {
        let limiter = ConnectionLimiter::new(
            Limits::default()
                .max_connections(3)
                .max_connections_per_ip(2),
        );
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limiter.try_acquire(a).unwrap();
        let _a2 = limiter.try_acquire(a).unwrap();
        assert_eq!(
            limiter.try_acquire(a).unwrap_err().status,
            StatusCode::TOO_MANY_REQUESTS
        );
        let _b1 = limiter.try_acquire(b).unwrap();
        assert_eq!(
            limiter.try_acquire(b).unwrap_err().status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        drop(a1);
        let _b2 = limiter.try_acquire(b).unwrap();
        let r = limiter.try_acquire(a).unwrap_err();
        assert_eq!(r.response().headers()[header::RETRY_AFTER], "5");
    }

    #[test]
    fn trusted_proxy_connections_count_in_the_total_and_their_clients_per_ip() {
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let limiter = ConnectionLimiter::new(
            Limits::default()
                .max_connections(3)
                .max_connections_per_ip(1)
                .trusted_proxy("10.0.0.0".parse().unwrap(), 24),
        );
        // Many connections from the proxy: not limited per IP, only in total.
        let _c1 = limiter.try_acquire(proxy).unwrap();
        let _c2 = limiter.try_acquire(proxy).unwrap();
        assert!(limiter.is_trusted_proxy(proxy));
        assert!(!limiter.is_trusted_proxy("10.0.1.1".parse().unwrap()));
        let (a, b): (IpAddr, IpAddr) = (
            "198.51.100.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        );
        let a1 = limiter.try_acquire_client(a).unwrap();
        let _b1 = limiter.try_acquire_client(b).unwrap();
        assert_eq!(
            limiter.try_acquire_client(a).unwrap_err().status,
            StatusCode::TOO_MANY_REQUESTS
        );
        drop(a1);
        let _a2 = limiter.try_acquire_client(a).unwrap();
        // Requests do not take places in the total.
        let _c3 = limiter.try_acquire(proxy).unwrap();
        assert_eq!(
            limiter.try_acquire(proxy).unwrap_err().status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
