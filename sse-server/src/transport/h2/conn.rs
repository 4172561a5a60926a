//! An HTTP/2 connection served with the `h2` crate: one task drives the connection (accepts
//! streams, writes every stream's frames), and each request gets a small task of its own.
//!
//! Subscriptions (`GET /events…`, as the lean HTTP/1.1 path takes them) are answered straight by
//! the fast [`HubService`] and streamed by `stream.rs`, which lends the stream to the hub's
//! flushers while it waits. Every other request goes, unchanged but for its version, to `serve`'s
//! own service through hyper over an in-memory pipe ([`Proxy`]): that service takes hyper's request
//! body type, which only hyper can make, and those requests are few (publishes, pages, probes).

use std::future::{Future, poll_fn};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use h2::RecvStream;
use h2::server::SendResponse;
use http::{Request, Response, header};
use http_body::Body as _;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::sync::watch;
use tower::Service;

use crate::http::body::Body;
use crate::http::peer::Peer;
#[cfg(feature = "tls")]
use crate::http::secure::Secure;
use crate::http::service::HubService;
use crate::transport::forwarded::{ForwardedLimit, client_ip};
use crate::transport::h2::corked::{Uncork, corked};
use crate::transport::h2::data::{Data, RecvBody, send_body};
use crate::transport::h2::stream::{Backlog, drive};
use crate::transport::idle::{Activity, Open};
use crate::transport::limits::Cidr;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's first bytes on an HTTP/2 connection (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one in-memory connection with hyper and `serve`'s service (a request that is not a
/// subscription).
pub(crate) type Proxy =
    Arc<dyn Fn(DuplexStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The settings hyper's HTTP/2 server was given (`Limits::configure`), and the same defaults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) max_concurrent_streams: u32,
    pub(crate) max_header_list_size: u32,
}

/// hyper's default receive windows (request bodies: publishes).
const WINDOW: u32 = 1024 * 1024;

impl Settings {
    fn builder(&self) -> h2::server::Builder {
        let mut builder = h2::server::Builder::new();
        builder
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_header_list_size(self.max_header_list_size)
            .initial_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            // hyper's defaults against reset floods.
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(Some(1024));
        builder
    }
}

/// What every request of one connection needs.
pub(crate) struct Context {
    /// Answers subscriptions.
    pub(crate) fast: HubService,
    /// The connection's client (its subscriptions count for this connection and its address).
    pub(crate) client: Peer,
    pub(crate) peer_ip: IpAddr,
    pub(crate) trusted: Arc<[Cidr]>,
    /// From a trusted proxy: every request needs a place for its forwarded client.
    pub(crate) forwarded: Option<ForwardedLimit>,
    /// Over TLS (the requests are marked `Secure`; never without the `tls` feature).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) secure: bool,
    /// No request open for this long ends the connection.
    pub(crate) idle_timeout: Duration,
    /// Everything that is not a subscription.
    pub(crate) proxy: Proxy,
}

/// A stream the client opened: its request, and where to answer it.
type Accepted = (Request<RecvStream>, SendResponse<Data>);

/// What ended one pass of the connection loop (lives only between the `select!` and the `match`).
#[allow(clippy::large_enum_variant)]
enum Next {
    Stream(Option<Result<Accepted, h2::Error>>),
    Closing,
    Idle,
}

/// Serves an HTTP/2 connection on `io` (whose first bytes are the client's preface) until it ends,
/// stays idle, or the server shuts down (`closing` turns true: GOAWAY, then the open streams end as
/// the hub ends them).
pub(crate) async fn serve<T>(
    io: T,
    settings: Settings,
    ctx: Arc<Context>,
    mut closing: watch::Receiver<bool>,
) -> Result<(), BoxError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (io, uncork) = corked(io);
    let backlog = Arc::new(Backlog::default());
    let handshake = settings.builder().handshake::<_, Data>(io);
    let handshake = uncorked(&uncork, &backlog, handshake);
    let Ok(handshake) = tokio::time::timeout(ctx.idle_timeout, handshake).await else {
        return Ok(());
    };
    let mut conn = handshake??;
    let activity = Activity::default();
    let mut shutting = false;
    loop {
        let next = tokio::select! {
            next = uncorked(&uncork, &backlog, conn.accept()) => Next::Stream(next?),
            _ = closing.wait_for(|closing| *closing), if !shutting => Next::Closing,
            () = activity.idle(ctx.idle_timeout), if !shutting => Next::Idle,
        };
        match next {
            Next::Stream(Some(Ok((request, respond)))) => {
                let stream = Stream {
                    ctx: ctx.clone(),
                    backlog: backlog.clone(),
                    open: activity.open(),
                };
                tokio::spawn(answer(request, respond, stream));
            }
            Next::Stream(Some(Err(e))) => return Err(e.into()),
            Next::Stream(None) => return Ok(()),
            Next::Closing => {
                shutting = true;
                conn.graceful_shutdown();
            }
            Next::Idle => {
                tracing::debug!(timeout = ?ctx.idle_timeout, "HTTP/2 connection closed: no request open within the idle timeout");
                return Ok(());
            }
        }
    }
}

/// Polls `future`, queues the events streams held back while their frames were written
/// (`stream.rs`), then writes out what h2 gathered in the corked socket (`corked.rs`): every pass
/// of the connection's task ends with its frames on the wire, in as few writes as fit.
async fn uncorked<T, F>(
    uncork: &Uncork<T>,
    backlog: &Backlog,
    future: F,
) -> std::io::Result<F::Output>
where
    T: AsyncWrite + Unpin,
    F: Future,
{
    let mut future = std::pin::pin!(future);
    poll_fn(|cx| {
        let output = future.as_mut().poll(cx);
        // Wakes this task: h2 writes the released frames on the next pass.
        backlog.release(cx);
        // Pending: the socket is full, and wakes this task when it takes more.
        if let Poll::Ready(Err(e)) = uncork.poll_uncork(cx) {
            return Poll::Ready(Err(e));
        }
        output.map(Ok)
    })
    .await
}

/// What a request's task holds besides the request.
struct Stream {
    ctx: Arc<Context>,
    /// The connection's streams with held events to send.
    backlog: Arc<Backlog>,
    /// Keeps the connection from idling out.
    open: Open,
}

/// Answers one request: a subscription here, anything else through the proxy.
fn answer(
    request: Request<RecvStream>,
    respond: SendResponse<Data>,
    stream: Stream,
) -> impl Future<Output = ()> + Send {
    // Why in two steps: everything up to a subscription's response head (the request, the
    // service's call, or the proxy's hyper client) runs in a boxed future freed before the
    // stream is served; kept inline, the task would keep room for it for the subscriber's life.
    // Boxed here, not in the async block: an async block keeps what it captures (the request)
    // for its whole life, beside every later state.
    let Stream { ctx, backlog, open } = stream;
    let start = Box::pin(start(request, respond, ctx));
    async move {
        // Named, so that the block takes it (it captures only what it uses): the connection
        // counts the stream as open until the task ends.
        let _open = open;
        let outcome = match start.await {
            Ok(Some(Subscribed { send, body, permit })) => {
                let _permit = permit;
                drive(send, body, backlog).await.map_err(BoxError::from)
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            tracing::debug!(error = %e, "HTTP/2 stream ended");
        }
    }
}

/// A subscription answered (its head sent), to stream.
struct Subscribed {
    send: h2::SendStream<Data>,
    body: Body,
    /// Its place under the forwarded client's limit.
    permit: Option<crate::transport::limits::Permit>,
}

/// Answers a request up to a subscription's response head (`Some`: the stream to drive), or
/// whole (`None`): other requests through the proxy, a refused subscription with its error.
async fn start(
    request: Request<RecvStream>,
    respond: SendResponse<Data>,
    ctx: Arc<Context>,
) -> Result<Option<Subscribed>, BoxError> {
    let ctx = &*ctx;
    let (parts, recv) = request.into_parts();
    match admit(&parts, &recv, ctx) {
        Some((request, permit)) => subscribe(request, permit, respond, ctx).await,
        None => {
            let request = Request::from_parts(parts, RecvBody::new(recv));
            proxy(request, respond, ctx).await.map(|()| None)
        }
    }
}

/// The subscription this path answers itself, marked as hyper's requests are, with its place
/// under the forwarded client's limit; `None` for anything else (and for a trusted proxy's client
/// over its limit: hyper answers it, 429).
fn admit(
    parts: &http::request::Parts,
    recv: &RecvStream,
    ctx: &Context,
) -> Option<(Request<Body>, Option<crate::transport::limits::Permit>)> {
    let path = parts.uri.path();
    let subscription = parts.method == http::Method::GET
        && (path == "/events" || path.starts_with("/events/"))
        && recv.is_end_stream();
    if !subscription {
        return None;
    }
    let permit = match ctx.forwarded.as_ref().map(|f| f.acquire(&parts.headers)) {
        Some(Err(_)) => return None,
        Some(Ok(permit)) => Some(permit),
        None => None,
    };
    let mut request = Request::new(Body::empty());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    let ip = client_ip(ctx.peer_ip, &parts.headers, &ctx.trusted);
    request.extensions_mut().insert(ctx.client.with_ip(ip));
    #[cfg(feature = "tls")]
    if ctx.secure {
        request.extensions_mut().insert(Secure);
    }
    Some((request, permit))
}

/// Answers a subscription with the fast service: its head, and the stream to drive when it
/// streams (an error response is sent whole).
async fn subscribe(
    request: Request<Body>,
    permit: Option<crate::transport::limits::Permit>,
    mut respond: SendResponse<Data>,
    ctx: &Context,
) -> Result<Option<Subscribed>, BoxError> {
    let Ok(response) = ctx.fast.clone().call(request).await;
    let (head, mut body) = response.into_parts();
    let streaming = body.subscription_mut().is_some();
    let empty = !streaming && body.size_hint().exact() == Some(0);
    let mut send = respond.send_response(head_only(head), empty)?;
    match (streaming, empty) {
        (true, _) => {
            return Ok(Some(Subscribed { send, body, permit }));
        }
        (false, false) => send_body(&mut send, body).await?,
        (false, true) => {}
    }
    Ok(None)
}

/// Answers any other request with `serve`'s service, through hyper over an in-memory pipe.
async fn proxy(
    request: Request<RecvBody>,
    mut respond: SendResponse<Data>,
    ctx: &Context,
) -> Result<(), BoxError> {
    let (near, far) = tokio::io::duplex(64 * 1024);
    tokio::spawn((ctx.proxy)(far));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(near)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "in-memory HTTP/1.1 connection ended");
        }
    });
    let response = sender.send_request(as_http1(request)).await?;
    let (head, body) = response.into_parts();
    let empty = body.is_end_stream();
    let mut send = respond.send_response(head_only(head), empty)?;
    if !empty {
        send_body(&mut send, body).await?;
    }
    Ok(())
}

/// The request as HTTP/1.1 for hyper: origin-form target, the authority as `Host`.
fn as_http1(mut request: Request<RecvBody>) -> Request<RecvBody> {
    *request.version_mut() = http::Version::HTTP_11;
    let uri = request.uri().clone();
    if !request.headers().contains_key(header::HOST)
        && let Some(authority) = uri.authority()
        && let Ok(host) = http::HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(header::HOST, host);
    }
    if let Some(target) = uri.path_and_query()
        && let Ok(origin) = http::Uri::try_from(target.as_str())
    {
        *request.uri_mut() = origin;
    }
    request
}

/// The response head for HTTP/2: HTTP/1.1's connection-specific headers are not allowed there.
fn head_only(mut head: http::response::Parts) -> Response<()> {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::HeaderName::from_static("keep-alive"),
        header::HeaderName::from_static("proxy-connection"),
    ] {
        head.headers.remove(name);
    }
    head.version = http::Version::HTTP_2;
    Response::from_parts(head, ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::handle::Hub;
    use crate::transport::h2::data::STREAM_BUDGET;

    /// What a subscription stream's task is made of, besides h2's own state for the stream and the
    /// subscription (`--nocapture` prints it): the task lives as long as the subscriber, so it
    /// keeps neither the request nor room for the proxy's hyper client.
    #[tokio::test]
    #[allow(clippy::print_stdout)] // the figure is the point (`--nocapture`)
    async fn a_subscription_stream_s_task_keeps_no_room_for_the_proxy() {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let client = tokio::spawn(async move {
            let (mut send, conn) = h2::client::handshake(near).await.unwrap();
            tokio::spawn(conn);
            let request = Request::get("http://x/events/a").body(()).unwrap();
            let (response, _) = send.send_request(request, true).unwrap();
            let _ = response.await;
        });
        let mut conn = h2::server::Builder::new()
            .handshake::<_, Data>(far)
            .await
            .unwrap();
        let (request, respond) = conn.accept().await.unwrap().unwrap();
        let hub = Hub::builder().build();
        let limits = crate::http::peer::SubscriptionLimits::new(8, 8, Duration::from_secs(1));
        let proxy: Proxy = Arc::new(|_| Box::pin(async {}));
        let ctx = Arc::new(Context {
            fast: HubService::new(hub),
            client: Peer::new(IpAddr::from([127, 0, 0, 1]), limits),
            peer_ip: IpAddr::from([127, 0, 0, 1]),
            trusted: Arc::from([]),
            forwarded: None,
            secure: false,
            idle_timeout: Duration::from_secs(1),
            proxy,
        });
        let activity = Activity::default();
        let stream = Stream {
            ctx,
            backlog: Arc::new(Backlog::default()),
            open: activity.open(),
        };
        let task = answer(request, respond, stream);
        // 576 B (debug and release); 856 B with the request kept beside the stream (captured by
        // the async block), 1,992 B with the request, the service's call and the proxy's hyper
        // client inline.
        println!("HTTP/2 stream task (future): {} B", size_of_val(&task));
        println!(
            "HubService {} B, Request<Body> {} B, Request<RecvStream> {} B, SendResponse {} B, Body {} B, h2 SendStream {} B",
            size_of::<HubService>(),
            size_of::<Request<Body>>(),
            size_of::<Request<RecvStream>>(),
            size_of::<SendResponse<Data>>(),
            size_of::<Body>(),
            size_of::<h2::SendStream<Data>>(),
        );
        println!("stream budget: {STREAM_BUDGET} B of shared bytes at most");
        assert!(
            size_of_val(&task) <= 640,
            "a subscription stream's task grew to {} B",
            size_of_val(&task)
        );
        client.abort();
    }
}
