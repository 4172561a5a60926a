//! The client address behind a trusted reverse proxy, for the per-IP connection limit.
//!
//! Behind a proxy every connection comes from the proxy's address, so the per-IP limit would count
//! all clients as one. When the TCP peer is inside a trusted network ([`Limits::trusted_proxy`]),
//! the accept loop counts the connection only towards the total, and each *request* on it is counted
//! instead against the client address taken from `X-Forwarded-For`: the right-most address that is
//! not itself a trusted proxy. A request over the limit gets 429 with `Retry-After` (empty body); its
//! place is held until its response body ends, i.e. for as long as an event stream is open. The header
//! of a peer outside the trusted networks is ignored, and nothing else (logs, hooks, authorization)
//! uses the forwarded address.
//!
//! [`Limits::trusted_proxy`]: crate::transport::limits::Limits::trusted_proxy

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};

use crate::transport::idle::{Activity, Open};
use crate::transport::limits::{Cidr, ConnectionLimiter, Permit, Refusal};

/// The client of a request that came through `peer`: with `peer` trusted, the right-most address of
/// `X-Forwarded-For` (every such header, in order) that is not a trusted proxy. Without the header,
/// `peer` itself; when a hop is not an IP address, the trusted hop just right of it (or `peer`),
/// since who wrote the rest cannot be told; when every hop is trusted, the left-most one.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // Not an address (a proxy's `unknown`, garbage): who sent it cannot be told.
            return client;
        };
        client = ip.to_canonical();
        if !is_trusted(client) {
            break;
        }
    }
    client
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

/// The per-IP limit of the requests arriving over one connection from a trusted proxy.
#[derive(Debug, Clone)]
pub(crate) struct ForwardedLimit {
    pub(crate) limiter: ConnectionLimiter,
    pub(crate) peer: IpAddr,
}

impl ForwardedLimit {
    /// The limit for the requests on a connection from `peer`: `Some` when `peer` is a trusted proxy.
    pub(crate) fn for_peer(limiter: &ConnectionLimiter, peer: IpAddr) -> Option<Self> {
        limiter.is_trusted_proxy(peer).then(|| ForwardedLimit {
            limiter: limiter.clone(),
            peer,
        })
    }

    /// A place for the request's client, held until the permit drops.
    pub(crate) fn acquire(&self, headers: &HeaderMap) -> Result<Permit, Refusal> {
        let client = client_ip(self.peer, headers, self.limiter.trusted_proxies());
        self.limiter.try_acquire_client(client)
    }
}

/// A service wrapper applying [`ForwardedLimit`] to each request of a connection from a trusted
/// proxy (and passing everything through on other connections).
#[derive(Debug, Clone)]
pub(crate) struct ForwardedService<S> {
    inner: S,
    limit: Option<ForwardedLimit>,
    activity: Activity,
}

impl<S> ForwardedService<S> {
    /// Also counts every request, until its response body drops, in `activity` (the connection's
    /// idle timeout).
    pub(crate) fn new(inner: S, limit: Option<ForwardedLimit>, activity: Activity) -> Self {
        ForwardedService {
            inner,
            limit,
            activity,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, B> tower::Service<Request<ReqBody>> for ForwardedService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<ForwardedBody<B>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let open = self.activity.open();
        let permit = match self.limit.as_ref().map(|l| l.acquire(req.headers())) {
            Some(Err(refusal)) => {
                tracing::debug!(
                    ?refusal,
                    "request refused: over the per-IP limit of its forwarded client"
                );
                let mut resp = Response::new(ForwardedBody::Refused);
                *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(refusal.retry_after_secs()),
                );
                return Box::pin(async move { Ok(resp) });
            }
            Some(Ok(permit)) => Some(permit),
            None => None,
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await.map_err(Into::into)?;
            Ok(resp.map(|body| ForwardedBody::Served {
                body: Box::pin(body),
                _permit: permit,
                _open: open,
            }))
        })
    }
}

/// A response body that holds its client's place until it ends.
pub(crate) enum ForwardedBody<B> {
    /// The service's body, with the place it holds (if any).
    Served {
        body: Pin<Box<B>>,
        _permit: Option<Permit>,
        _open: Open,
    },
    /// The empty body of a 429.
    Refused,
}

impl<B: Body> Body for ForwardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        match self.get_mut() {
            ForwardedBody::Served { body, .. } => body.as_mut().poll_frame(cx),
            ForwardedBody::Refused => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ForwardedBody::Served { body, .. } => body.is_end_stream(),
            ForwardedBody::Refused => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ForwardedBody::Served { body, .. } => body.size_hint(),
            ForwardedBody::Refused => SizeHint::with_exact(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        let (a, p) = s.split_once('/').unwrap();
        Cidr::new(a.parse().unwrap(), p.parse().unwrap())
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_contains_its_addresses_only() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.200.1.2")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("127.0.0.1/32").contains(ip("::ffff:127.0.0.1")));
        assert!(!cidr("127.0.0.1/32").contains(ip("127.0.0.2")));
        assert!(cidr("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::2")));
        assert!(cidr("fd00::/8").contains(ip("fd12::1")));
        assert!(!cidr("fd00::/8").contains(ip("fe80::1")));
        assert_eq!(cidr("10.0.0.0/99"), cidr("10.0.0.0/32"));
    }

    #[test]
    fn forwarded_client_is_the_rightmost_untrusted_hop_from_a_trusted_peer() {
        let trusted = [cidr("10.0.0.0/8"), cidr("127.0.0.1/32")];
        let proxy = ip("127.0.0.1");
        // The client as the proxy saw it.
        assert_eq!(
            client_ip(proxy, &xff(&["203.0.113.7"]), &trusted),
            ip("203.0.113.7")
        );
        // A client-supplied (spoofed) address on the left is not believed.
        assert_eq!(
            client_ip(proxy, &xff(&["1.1.1.1, 203.0.113.7"]), &trusted),
            ip("203.0.113.7")
        );
        // Trusted proxies in the chain are skipped, across several headers.
        assert_eq!(
            client_ip(proxy, &xff(&["1.1.1.1, 203.0.113.7", "10.1.1.1"]), &trusted),
            ip("203.0.113.7")
        );
        // Ports and brackets as some proxies write them.
        assert_eq!(
            client_ip(proxy, &xff(&["[2001:db8::1]:443"]), &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(proxy, &xff(&["198.51.100.1:1234"]), &trusted),
            ip("198.51.100.1")
        );
        // All trusted: the left-most.
        assert_eq!(
            client_ip(proxy, &xff(&["10.2.2.2, 10.1.1.1"]), &trusted),
            ip("10.2.2.2")
        );
        // No header, or garbage where the client should be: the peer itself.
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(
            client_ip(proxy, &xff(&["1.1.1.1, unknown"]), &trusted),
            proxy
        );
        assert_eq!(
            client_ip(proxy, &xff(&["unknown, 10.1.1.1"]), &trusted),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn forwarded_header_from_an_untrusted_peer_is_ignored() {
        let trusted = [cidr("10.0.0.0/8")];
        let peer = ip("192.0.2.9");
        assert_eq!(client_ip(peer, &xff(&["203.0.113.7"]), &trusted), peer);
        assert_eq!(client_ip(peer, &xff(&["203.0.113.7"]), &[]), peer);
    }
}
