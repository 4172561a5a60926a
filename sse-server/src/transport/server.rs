use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};

use crate::error::Error;
use crate::http::peer::Peer;
#[cfg(feature = "tls")]
use crate::http::secure::Secure;
use crate::http::service::HubService;
use crate::hub::handle::Hub;
use crate::hub::metrics::{Metrics, Refused};
use crate::transport::forwarded::{ForwardedLimit, ForwardedService, client_ip};
use crate::transport::idle::Activity;
use crate::transport::io::Graceful;
#[cfg(feature = "tls")]
use crate::transport::io::Rewind;
use crate::transport::limits::Cidr;
#[cfg(feature = "tls")]
use crate::transport::sealed::Sealed;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What terminates TLS; without the `tls` feature there is none.
#[cfg(feature = "tls")]
type Acceptor = tokio_rustls::TlsAcceptor;
#[cfg(not(feature = "tls"))]
type Acceptor = std::convert::Infallible;

/// How long a TLS handshake may take.
#[cfg(feature = "tls")]
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves a hub on a TCP listener: HTTP/1.1 and HTTP/2 (h2c prior knowledge, or ALPN with TLS), with
/// a graceful shutdown.
///
/// When the `shutdown` future completes, the server stops accepting, calls [`Hub::shutdown`] (every stream
/// ends with a randomised `retry:`), then waits up to the grace period (default 5 s) for connections to
/// finish before dropping the rest.
///
/// ```no_run
/// # async fn run() -> Result<(), sse_server::Error> {
/// let hub = sse_server::Hub::builder().build();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let service = sse_server::HubService::new(hub.clone()).publish_token("secret");
/// sse_server::Server::new(hub)
///     .serve(listener, service, async { let _ = tokio::signal::ctrl_c().await; })
///     .await
/// # }
/// ```
pub struct Server {
    hub: Hub,
    tls: Option<Acceptor>,
    fast: Option<HubService>,
    grace: Duration,
    limits: crate::transport::limits::Limits,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("tls", &self.tls.is_some())
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server for `hub` (plain TCP, 5 s grace period).
    ///
    /// ```
    /// let _ = sse_server::Server::new(sse_server::Hub::builder().build());
    /// ```
    pub fn new(hub: Hub) -> Self {
        Server {
            hub,
            tls: None,
            fast: None,
            grace: Duration::from_secs(5),
            limits: crate::transport::limits::Limits::default(),
        }
    }

    #[cfg(feature = "tls")]
    /// Terminates TLS with `acceptor` (see [`tls_acceptor`](crate::transport::tls::tls_acceptor)).
    /// Its config is copied with `enable_secret_extraction` on: a subscriber on the lean HTTP/1.1
    /// path keeps only its traffic keys, taken out of rustls after the handshake (they never leave
    /// the process).
    ///
    /// ```no_run
    /// let acceptor = sse_server::tls_acceptor("cert.pem", "key.pem")?;
    /// let _ = sse_server::Server::new(sse_server::Hub::builder().build()).tls(acceptor);
    /// # Ok::<(), sse_server::Error>(())
    /// ```
    pub fn tls(mut self, acceptor: tokio_rustls::TlsAcceptor) -> Self {
        let mut config = acceptor.config().as_ref().clone();
        // A lean TLS subscriber keeps only its keys (`transport/record.rs`), taken out of rustls
        // after the handshake; the keys never leave the process.
        config.enable_secret_extraction = true;
        self.tls = Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        self
    }

    /// Connection limits: totals, per client IP, header size and read timeout (see [`Limits`](crate::transport::limits::Limits)
    /// for the defaults).
    ///
    /// ```
    /// let _ = sse_server::Server::new(sse_server::Hub::builder().build())
    ///     .limits(sse_server::Limits::default().max_connections_per_ip(16));
    /// ```
    pub fn limits(mut self, limits: crate::transport::limits::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Answers `GET /events/{channel}` on plain HTTP/1.1 connections straight from `service`, on a lean
    /// path that keeps no hyper buffers per subscriber and writes every ready event in one `writev`
    /// (about a third of the memory per idle subscriber). Use it when the service passed to
    /// [`serve`](Server::serve) routes those requests to an equivalent [`HubService`] (as the
    /// `sse-server` binary does); [`serve_hub`](Server::serve_hub) turns it on by itself. Other
    /// requests always go through hyper and `serve`'s service. Over TLS the same subscriptions
    /// (HTTP/1.1 by ALPN, the whole head in the first read) take the lean path too. With it on,
    /// HTTP/2 connections (h2c with prior knowledge, or ALPN `h2`) are served with the `h2` crate:
    /// their subscription streams take a lean path of their own, and every other request goes to
    /// `serve`'s service through hyper (as HTTP/1.1, over an in-memory connection).
    ///
    /// ```
    /// let hub = sse_server::Hub::builder().build();
    /// let _ = sse_server::Server::new(hub.clone()).fast_subscribe(sse_server::HubService::new(hub));
    /// ```
    pub fn fast_subscribe(mut self, service: HubService) -> Self {
        self.fast = Some(service);
        self
    }

    /// How long to wait for connections to finish after the hub shut down.
    ///
    /// ```
    /// let _ = sse_server::Server::new(sse_server::Hub::builder().build())
    ///     .grace_period(std::time::Duration::from_secs(2));
    /// ```
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Serves `service` (a [`HubService`], or any tower service wrapping one) until `shutdown` completes.
    pub async fn serve<S, B>(
        self,
        listener: TcpListener,
        service: S,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error>
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let limiter = crate::transport::limits::ConnectionLimiter::new(self.limits.clone());
        let head_timeout = self.limits.header_read_timeout_value();
        let metrics = self.hub.metrics_shared();
        let shared = self.shared(service, &limiter);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        let mut reserve = Reserve::new();
        let mut backoff: Option<Backoff> = None;
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (stream, peer) = match accepted {
                Ok(conn) => {
                    if let Some(episode) = backoff.take() {
                        tracing::info!(
                            refused = episode.refused,
                            "accepting connections again after running out of file descriptors"
                        );
                    }
                    conn
                }
                Err(e) => {
                    // Out of descriptors (or kernel memory): the pending connection stays in the
                    // backlog and `accept` fails again at once. Spend the reserve descriptor to take
                    // it and refuse it, and back off instead of spinning.
                    let episode = backoff.get_or_insert_with(|| {
                        tracing::warn!(error = %e, "accept failed: out of file descriptors? refusing new connections at once and backing off until some close");
                        Backoff::default()
                    });
                    if is_out_of_descriptors(&e) {
                        // Refuse everything waiting now (the freed descriptor is reused for each),
                        // so a new client is answered within one pause, not one per waiting client.
                        reserve.release();
                        for _ in 0..RESERVE_BATCH {
                            let Some(stream) = accept_now(&listener).await else {
                                break;
                            };
                            limiter.refuse_now(stream);
                            metrics.refused(Refused::MaxConnections);
                            episode.refused += 1;
                        }
                        reserve.reacquire();
                    }
                    let delay = episode.next_delay();
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = &mut shutdown => break,
                    }
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let permit = match limiter.try_acquire(peer.ip()) {
                Ok(permit) => permit,
                Err(refusal) => {
                    tracing::debug!(%peer, ?refusal, "connection refused: over a connection limit");
                    metrics.refused(refusal.reason());
                    tokio::spawn(refuse(refusal, stream, head_timeout, self.tls.clone()));
                    continue;
                }
            };
            let conn = Conn {
                stream,
                peer,
                shared: shared.clone(),
                watcher: graceful.watcher(),
            };
            tokio::spawn(connection_task(conn, permit));
        }
        drop(listener);
        tracing::info!("shutting down: no new connections; ending streams");
        self.hub.shutdown().await;
        // HTTP/2 connections served with h2 send GOAWAY and end once their streams have.
        shared.closing.send_replace(true);
        if tokio::time::timeout(self.grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?self.grace, "some connections did not finish within the grace period; dropping them");
        }
        Ok(())
    }

    /// Serves a plain [`HubService`] for the hub until `shutdown` completes.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sse_server::Error> {
    /// let hub = sse_server::Hub::builder().build();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// sse_server::Server::new(hub).serve_hub(listener, std::future::pending()).await
    /// # }
    /// ```
    pub async fn serve_hub(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let service = HubService::new(self.hub.clone());
        let fast = service.clone();
        self.fast_subscribe(fast)
            .serve(listener, service, shutdown)
            .await
    }
}

impl Server {
    /// What every connection of `serve` shares: a connection carries only its socket and this.
    fn shared<S>(
        &self,
        service: S,
        limiter: &crate::transport::limits::ConnectionLimiter,
    ) -> Arc<Shared<S>> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new());
        self.limits.configure(&mut builder);
        Arc::new(Shared {
            service: std::sync::Mutex::new(service),
            builder,
            limiter: limiter.clone(),
            trusted: limiter.trusted_proxies().into(),
            // Subscriptions per connection and per client IP, counted by the service (`http/peer.rs`).
            subscriptions: self.limits.subscription_limits(),
            idle_timeout: self.limits.idle_timeout_value(),
            head_timeout: self.limits.header_read_timeout_value(),
            metrics: self.hub.metrics_shared(),
            // Without the `tls` feature the acceptor type is uninhabited (and `Copy`).
            #[allow(clippy::clone_on_copy)]
            tls: self.tls.clone(),
            fast: self.fast.clone(),
            h2: crate::transport::h2::conn::Settings {
                max_concurrent_streams: self.limits.http2_max_concurrent_streams(),
                max_header_list_size: self.limits.http2_max_header_list_size(),
            },
            closing: tokio::sync::watch::Sender::new(false),
        })
    }
}

/// A connection's task, from its first byte to its end; `permit` is its place under the
/// connection limits.
async fn connection_task<S, B>(conn: Conn<S>, permit: crate::transport::limits::Permit)
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let _permit = permit;
    let peer = conn.peer;
    // Without the `tls` feature the acceptor type is uninhabited (and `Copy`).
    #[allow(clippy::clone_on_copy)]
    let tls = conn.shared.tls.clone();
    let result = match tls {
        None => conn.serve_plain().await,
        // Not boxed: a TLS connection's future is no larger than a plain one's (its handshake and
        // hyper's part are boxed inside), so a lean TLS subscriber's task holds it directly.
        Some(acceptor) => conn.serve_tls(acceptor).await,
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// The shutdown future for a server other than [`Server`] (axum's `with_graceful_shutdown`, hyper-util's
/// `GracefulShutdown`): waits for `signal`, then calls [`Hub::shutdown`] (every stream of `hub` ends
/// with a randomised `retry:`, new subscriptions are refused), then completes.
///
/// Why: an event stream never ends by itself, so a server that waits for its connections to finish
/// (axum's graceful shutdown does) waits forever unless the hub ends them; with this future it
/// returns as soon as the streams are written out. [`Server::serve`] does the same by itself.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = sse_server::Hub::builder().build();
/// let app = axum::Router::new()
///     .nest_service("/events", sse_server::HubService::new(hub.clone()).nested());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let ctrl_c = async { let _ = tokio::signal::ctrl_c().await; };
/// axum::serve(listener, app)
///     .with_graceful_shutdown(sse_server::graceful_shutdown(hub, ctrl_c))
///     .await?;
/// # Ok(())
/// # }
/// ```
pub async fn graceful_shutdown(hub: Hub, signal: impl Future<Output = ()>) {
    signal.await;
    tracing::info!("shutting down: ending streams");
    hub.shutdown().await;
}

/// Runs a hyper connection until it ends, or until no request has been open on it for `timeout`
/// (then it is dropped: closed with a FIN by [`Graceful`]).
async fn until_idle(
    served: impl Future<Output = Result<(), BoxError>>,
    activity: &Activity,
    timeout: Duration,
    peer: std::net::SocketAddr,
) -> Result<(), BoxError> {
    tokio::select! {
        result = served => result,
        () = activity.idle(timeout) => {
            tracing::debug!(%peer, ?timeout, "connection closed: no request open within the idle timeout");
            Ok(())
        }
    }
}

/// A spare descriptor, given back on `EMFILE` so the pending connection can be accepted and refused.
struct Reserve(Option<std::fs::File>);

impl Reserve {
    fn new() -> Self {
        Reserve(std::fs::File::open("/dev/null").ok())
    }

    fn release(&mut self) {
        self.0 = None;
    }

    fn reacquire(&mut self) {
        if self.0.is_none() {
            self.0 = std::fs::File::open("/dev/null").ok();
        }
    }
}

/// One episode of failing `accept`s: the growing delay between tries, and how many were refused.
#[derive(Debug, Default)]
struct Backoff {
    delay: Option<Duration>,
    refused: u64,
}

/// At most this many waiting connections are refused with the reserve descriptor per pause.
const RESERVE_BATCH: usize = 1024;

/// The first and the longest pause between `accept`s while they fail.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let next = self.delay.map_or(BACKOFF_MIN, |d| (d * 2).min(BACKOFF_MAX));
        self.delay = Some(next);
        next
    }
}

/// `EMFILE` (this process) or `ENFILE` (the whole system).
fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
}

/// A connection waiting in the backlog, if there is one right now (never waits).
async fn accept_now(listener: &TcpListener) -> Option<TcpStream> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match listener.poll_accept(cx) {
            std::task::Poll::Ready(Ok((stream, _))) => Some(stream),
            _ => None,
        })
    })
    .await
}

/// What every connection of a server needs, shared by all of them (one `Arc` per connection).
struct Shared<S> {
    /// `serve`'s service; each hyper connection wraps a clone of it (behind a lock, so that `S`
    /// need not be `Sync`).
    service: std::sync::Mutex<S>,
    builder: auto::Builder<TokioExecutor>,
    limiter: crate::transport::limits::ConnectionLimiter,
    trusted: Arc<[Cidr]>,
    subscriptions: Arc<crate::http::peer::SubscriptionLimits>,
    idle_timeout: Duration,
    head_timeout: Duration,
    metrics: Arc<Metrics>,
    tls: Option<Acceptor>,
    /// The lean HTTP/1.1 path's service; with it, HTTP/2 is served with h2 (`transport/h2`).
    fast: Option<HubService>,
    /// HTTP/2's settings (the same as hyper's).
    h2: crate::transport::h2::conn::Settings,
    /// Turns true when the server shuts down (HTTP/2 connections served with h2 then send GOAWAY).
    closing: tokio::sync::watch::Sender<bool>,
}

/// One accepted connection: its socket, its peer, and the server's shared parts. Why so little: an
/// idle lean-path subscriber keeps its task (this, and the lean path's state) for its whole life,
/// so everything only hyper needs is made when a connection goes to hyper.
struct Conn<S> {
    stream: TcpStream,
    peer: std::net::SocketAddr,
    shared: Arc<Shared<S>>,
    /// Keeps the graceful shutdown waiting for this connection (lean or not) to finish.
    watcher: Watcher,
}

/// Serves `io` with hyper until it ends or stays idle: `serve`'s service, each request marked
/// with its client ([`Peer`]: the forwarded one behind a trusted proxy; [`Secure`] over TLS),
/// held to the forwarded client's per-IP limit, and counted for the idle timeout.
async fn serve_hyper<S, B, I>(
    shared: Arc<Shared<S>>,
    watcher: Option<Watcher>,
    peer: std::net::SocketAddr,
    io: I,
    secure: bool,
) -> Result<(), BoxError>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // Without a watcher: an in-memory connection of an HTTP/2 connection, which counts itself.
    let _open = watcher
        .is_some()
        .then(|| shared.metrics.connection_opened(secure));
    let client = Peer::new(peer.ip(), shared.subscriptions.clone());
    let trusted = shared.trusted.clone();
    let mark = move |mut req: Request<Incoming>| {
        let ip = client_ip(peer.ip(), req.headers(), &trusted);
        req.extensions_mut().insert(client.with_ip(ip));
        // The service learns the request came over TLS (for the metrics' labels).
        #[cfg(feature = "tls")]
        if secure {
            req.extensions_mut().insert(Secure);
        }
        req
    };
    let activity = Activity::default();
    let service = ForwardedService::new(
        tower::util::MapRequest::new(lock(&shared.service).clone(), mark),
        ForwardedLimit::for_peer(&shared.limiter, peer.ip()),
        activity.clone(),
    );
    let conn = shared
        .builder
        .serve_connection(io, TowerToHyperService::new(service));
    match watcher {
        Some(watcher) => {
            let served = watcher.watch(conn.into_owned());
            until_idle(served, &activity, shared.idle_timeout, peer).await
        }
        None => until_idle(conn.into_owned(), &activity, shared.idle_timeout, peer).await,
    }
}

/// Serves an HTTP/2 connection with h2 (`transport/h2`): subscriptions on the lean path, every
/// other request through hyper and `serve`'s service, over an in-memory connection each.
async fn serve_h2<S, B, T>(
    shared: Arc<Shared<S>>,
    watcher: Watcher,
    peer: std::net::SocketAddr,
    io: T,
    secure: bool,
) -> Result<(), BoxError>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Keeps the graceful shutdown waiting for the connection.
    let _watcher = watcher;
    let Some(fast) = shared.fast.clone() else {
        return Ok(());
    };
    let _open = shared.metrics.connection_opened(secure);
    let for_proxy = shared.clone();
    let proxy: crate::transport::h2::conn::Proxy = Arc::new(move |io| {
        let shared = for_proxy.clone();
        Box::pin(async move {
            let io = TokioIo::new(io);
            if let Err(e) = serve_hyper(shared, None, peer, io, secure).await {
                tracing::debug!(%peer, error = %e, "in-memory connection ended with an error");
            }
        })
    });
    let ctx = crate::transport::h2::conn::Context {
        fast,
        client: Peer::new(peer.ip(), shared.subscriptions.clone()),
        peer_ip: peer.ip(),
        trusted: shared.trusted.clone(),
        forwarded: ForwardedLimit::for_peer(&shared.limiter, peer.ip()),
        secure,
        idle_timeout: shared.idle_timeout,
        proxy,
    };
    let closing = shared.closing.subscribe();
    crate::transport::h2::conn::serve(io, shared.h2, Arc::new(ctx), closing).await?;
    Ok(())
}

/// A plain connection the lean HTTP/1.1 path did not take: HTTP/2 with prior knowledge goes to h2
/// (when the lean path is on), anything else to hyper.
async fn serve_plain_rest<S, B>(
    shared: Arc<Shared<S>>,
    watcher: Watcher,
    peer: std::net::SocketAddr,
    stream: TcpStream,
) -> Result<(), BoxError>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    if shared.fast.is_some() && starts_with_preface(&stream).await {
        return serve_h2(shared, watcher, peer, Graceful::new(stream), false).await;
    }
    let io = TokioIo::new(Graceful::new(stream));
    serve_hyper(shared, Some(watcher), peer, io, false).await
}

/// Whether a plain connection starts with HTTP/2's preface (h2c with prior knowledge). A preface
/// split over several segments goes to hyper, which waits for the rest.
async fn starts_with_preface(stream: &TcpStream) -> bool {
    let preface = crate::transport::h2::conn::PREFACE;
    let mut buf = [0u8; 24];
    matches!(stream.peek(&mut buf).await, Ok(n) if n == preface.len() && buf[..] == *preface)
}

/// Whether a TLS connection speaks HTTP/2: ALPN chose it, or its first bytes are the preface.
#[cfg(feature = "tls")]
fn is_h2(stream: &mut TlsStream) -> bool {
    let preface = crate::transport::h2::conn::PREFACE;
    if stream.prefix().starts_with(preface) {
        return true;
    }
    let (_, tls) = stream.inner_mut().get_mut();
    tls.alpn_protocol() == Some(b"h2") && stream.prefix().len() >= preface.len()
}

/// The lock on `serve`'s service (only cloned under it; a panic cannot leave it half-cloned).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S, B> Conn<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Plain TCP: a subscription goes to the lean HTTP/1.1 path when it takes it, anything else
    /// to hyper.
    async fn serve_plain(self) -> Result<(), BoxError> {
        let shared = &self.shared;
        if !crate::transport::limits::first_bytes(&self.stream, shared.head_timeout).await {
            tracing::debug!(peer = %self.peer, "no request within the header read timeout");
            shared.metrics.refused(Refused::HeaderTimeout);
            return Ok(());
        }
        let stream = match &shared.fast {
            Some(fast) => {
                let ip = self.peer.ip();
                // Behind a trusted proxy, the subscription counts for its forwarded client
                // (`forwarded.rs`); the lean path then counts only the connection's own stream.
                let (client, forwarded) = match ForwardedLimit::for_peer(&shared.limiter, ip) {
                    Some(forwarded) => (None, Some(forwarded)),
                    None => (Some(Peer::new(ip, shared.subscriptions.clone())), None),
                };
                match crate::transport::h1::conn::serve(self.stream, fast, client, forwarded).await
                {
                    Ok(()) => return Ok(()),
                    Err(stream) => stream,
                }
            }
            None => self.stream,
        };
        let peer = self.peer;
        let (shared, watcher) = (self.shared, self.watcher);
        // Boxed: hyper's connection state is large, and the lean path's subscribers (the idle
        // majority) would otherwise carry room for it (or for h2's) in their task.
        Box::pin(serve_plain_rest(shared, watcher, peer, stream)).await
    }

    /// TLS: the handshake (bounded in time), then the lean path or hyper (HTTP/1.1 or HTTP/2 by
    /// ALPN).
    ///
    /// Why in two steps: everything up to the first request (the handshake, tokio-rustls's stream,
    /// the first read) runs in a boxed future of its own that is freed before the connection is
    /// served. Kept inline, an async fn's state keeps room for all of it for as long as it lives:
    /// 10,416 B per idle lean TLS subscriber, more than rustls and the subscriber together.
    #[cfg(feature = "tls")]
    async fn serve_tls(self, acceptor: Acceptor) -> Result<(), BoxError> {
        let Conn {
            stream,
            peer,
            shared,
            watcher,
        } = self;
        match Box::pin(tls_start(stream, acceptor, &shared, peer)).await {
            TlsNext::Done => Ok(()),
            TlsNext::Lean(lean) => {
                let _open = shared.metrics.connection_opened(true);
                if let (Some(lean), Some(fast)) = (lean, &shared.fast) {
                    let (admitted, sealed) = *lean;
                    admitted.serve(sealed, fast).await;
                }
                Ok(())
            }
            TlsNext::Hyper(mut tls_stream) => {
                if shared.fast.is_some() && is_h2(&mut tls_stream) {
                    return Box::pin(serve_h2(shared, watcher, peer, *tls_stream, true)).await;
                }
                Box::pin(serve_hyper(
                    shared,
                    Some(watcher),
                    peer,
                    TokioIo::new(*tls_stream),
                    true,
                ))
                .await
            }
        }
    }

    /// Without the `tls` feature no acceptor exists.
    #[cfg(not(feature = "tls"))]
    async fn serve_tls(self, acceptor: Acceptor) -> Result<(), BoxError> {
        match acceptor {}
    }
}

/// Answers a connection over a limit: in plain text at once, or on a TLS listener over TLS once the
/// handshake is done (bounded by the handshake timeout), so the client reads a real 429/503.
async fn refuse(
    refusal: crate::transport::limits::Refusal,
    stream: TcpStream,
    timeout: Duration,
    tls: Option<Acceptor>,
) {
    #[cfg(feature = "tls")]
    if let Some(acceptor) = tls {
        if let Ok(Ok(tls_stream)) =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
        {
            refusal.serve_request(tls_stream, timeout).await;
        }
        return;
    }
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    refusal.serve(stream, timeout).await;
}

/// Where a TLS connection goes after its handshake and first read.
#[cfg(feature = "tls")]
enum TlsNext {
    /// Nothing more: the handshake failed or no request came in time.
    Done,
    /// The lean HTTP/1.1 path (`None`: the connection ends). Boxed, as hyper's: this enum stays
    /// in every TLS connection's future while it is served, so it is kept small.
    Lean(Option<Box<(crate::transport::h1::conn::Admitted, Sealed)>>),
    /// Hyper.
    Hyper(Box<TlsStream>),
}

/// The handshake (bounded in time) and the first plaintext read (bounded by the header read
/// timeout), then the choice of path.
#[cfg(feature = "tls")]
async fn tls_start<S>(
    stream: TcpStream,
    acceptor: Acceptor,
    shared: &Shared<S>,
    peer: std::net::SocketAddr,
) -> TlsNext {
    let tls_stream =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(Graceful::new(stream))).await
        {
            Ok(Ok(tls_stream)) => tls_stream,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                shared.metrics.refused(Refused::TlsHandshake);
                return TlsNext::Done;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                shared.metrics.refused(Refused::TlsHandshake);
                return TlsNext::Done;
            }
        };
    // As on plain TCP, no timer of hyper runs before the first bytes of a request: bound the time
    // from the finished handshake to them by the header read timeout.
    let Some(tls_stream) = Rewind::first_bytes(tls_stream, shared.head_timeout).await else {
        tracing::debug!(%peer, "no request within the header read timeout after the TLS handshake");
        shared.metrics.refused(Refused::HeaderTimeout);
        return TlsNext::Done;
    };
    match lean_tls(tls_stream, shared, peer) {
        Ok(lean) => TlsNext::Lean(lean.map(Box::new)),
        Err(tls_stream) => TlsNext::Hyper(Box::new(tls_stream)),
    }
}

/// A TLS connection's stream after its handshake, with the first plaintext read.
#[cfg(feature = "tls")]
type TlsStream = Rewind<tokio_rustls::server::TlsStream<Graceful>>;

/// Takes a TLS connection for the lean HTTP/1.1 path when its first request is a subscription the
/// path takes, whole in the first plaintext read and alone (nothing pipelined after it), and ALPN
/// did not choose HTTP/2; otherwise hands the stream back untouched, for hyper.
#[cfg(feature = "tls")]
// The stream goes back by value once per connection, inside the connection's boxed future.
#[allow(clippy::result_large_err)]
fn lean_tls<S>(
    mut stream: TlsStream,
    shared: &Shared<S>,
    peer: std::net::SocketAddr,
) -> Result<Option<(crate::transport::h1::conn::Admitted, Sealed)>, TlsStream> {
    let Some(_) = &shared.fast else {
        return Err(stream);
    };
    let (_, tls) = stream.inner_mut().get_mut();
    if tls.alpn_protocol().is_some_and(|p| p != b"http/1.1") || tls.wants_write() {
        return Err(stream);
    }
    // Only the keys are kept (`Sealed`): nothing rustls received may be left unread.
    match tls.process_new_packets() {
        Ok(state) if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {}
        _ => return Err(stream),
    }
    let Some((request, head_len)) = crate::transport::h1::head::parse_head(stream.prefix()) else {
        return Err(stream);
    };
    if head_len != stream.prefix().len() {
        return Err(stream);
    }
    let ip = peer.ip();
    let forwarded = ForwardedLimit::for_peer(&shared.limiter, ip);
    let client = match forwarded {
        Some(_) => None,
        None => Some(Peer::new(ip, shared.subscriptions.clone())),
    };
    let Some(mut admitted) = crate::transport::h1::conn::admit(request, client, forwarded.as_ref())
    else {
        return Err(stream);
    };
    admitted.request_mut().extensions_mut().insert(Secure);
    let (_, tls_stream) = stream.into_parts();
    let (graceful, tls) = tls_stream.into_inner();
    // `None` cannot happen (a `Graceful` holds its socket until dropped); the connection ends.
    let Some(tcp) = graceful.into_inner() else {
        return Ok(None);
    };
    match Sealed::new(tcp, tls) {
        Ok(sealed) => Ok(Some((admitted, sealed))),
        Err(e) => {
            // The acceptor's config does not allow taking the keys out (see `Server::tls`).
            tracing::warn!(%peer, error = %e, "cannot keep a TLS subscriber's keys; closing it");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;
    use crate::http::body::Body;
    use crate::hub::channel::Handle;
    use crate::hub::lent::Direct;
    use crate::hub::queue::Queue;
    use crate::hub::subscription::Subscription;

    /// What an idle lean-path subscriber is made of, in bytes (`--nocapture` prints it). Its
    /// connection's task lives as long as it does, so the task holds only the socket and shared
    /// parts: hyper's builder, `serve`'s service and the per-request wrappers are made only for
    /// connections that go to hyper.
    #[tokio::test]
    #[allow(clippy::print_stdout)] // the breakdown is the point (`--nocapture`)
    async fn an_idle_lean_subscriber_s_task_holds_only_its_socket_and_shared_parts() {
        let hub = Hub::builder().build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let server = Server::new(hub.clone()).fast_subscribe(HubService::new(hub.clone()));
        let limiter = crate::transport::limits::ConnectionLimiter::new(server.limits.clone());
        let permit = limiter.try_acquire(peer.ip()).unwrap();
        let shared = server.shared(HubService::new(hub), &limiter);
        let graceful = GracefulShutdown::new();
        let conn = Conn {
            stream,
            peer,
            shared,
            watcher: graceful.watcher(),
        };
        let task = connection_task(conn, permit);
        let parts = [
            ("connection task (future)", size_of_val(&task)),
            ("Subscription (boxed)", size_of::<Subscription>()),
            ("Queue (in an Arc)", size_of::<Queue>() + 16),
            ("Direct (boxed, while lent)", size_of::<Direct>()),
            ("channel Handle", size_of::<Handle>()),
            ("Body", size_of::<Body>()),
            (
                "TcpStream (+ its Arc'd registration)",
                size_of::<TcpStream>(),
            ),
        ];
        for (what, bytes) in parts {
            println!("{what}: {bytes} B");
        }
        // 1,784 B in a debug build, 1,728 in release (2,448 while the lean path's async fns kept
        // their arguments, the request and the response head among them, for the subscriber's
        // life: `transport/h1/conn.rs`); each connection carrying hyper's builder and its wrapped
        // service again would add over 700 B.
        assert!(
            size_of_val(&task) <= 1900,
            "an idle subscriber's task grew to {} B",
            size_of_val(&task)
        );
    }

    /// A TLS connection's future, which an idle lean TLS subscriber keeps for its whole life:
    /// the handshake and first read run in a boxed future of their own, freed before the
    /// subscriber is served, so this stays near a plain connection's (`--nocapture` prints it).
    #[cfg(feature = "tls")]
    #[tokio::test]
    #[allow(clippy::print_stdout)] // the figure is the point (`--nocapture`)
    async fn a_tls_connection_s_future_keeps_no_room_for_its_handshake() {
        let hub = Hub::builder().build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let acceptor = crate::transport::tls::tls_acceptor(
            format!("{dir}/test-cert.pem"),
            format!("{dir}/test-key.pem"),
        )
        .unwrap();
        let server = Server::new(hub.clone()).fast_subscribe(HubService::new(hub.clone()));
        let limiter = crate::transport::limits::ConnectionLimiter::new(server.limits.clone());
        let shared = server.shared(HubService::new(hub), &limiter);
        let graceful = GracefulShutdown::new();
        let conn = Conn {
            stream,
            peer,
            shared,
            watcher: graceful.watcher(),
        };
        let future = conn.serve_tls(acceptor);
        println!("TLS connection future: {} B", size_of_val(&future));
        // 1,440 B (release build); kept inline, the handshake and first read made it 10,416 B.
        assert!(
            size_of_val(&future) <= 1600,
            "a TLS connection's future grew to {} B",
            size_of_val(&future)
        );
    }
}
