//! The load side: a fleet of subscriber connections and one publisher.
//!
//! Subscribers are raw tokio sockets read with the minimal [`BodyReader`](crate::reader::BodyReader)
//! (HTTP/1.1), or streams of a few cleartext HTTP/2 connections driven by the `h2` crate directly
//! ([`Protocol::Http2`]); latencies go into a few sharded histograms once per socket read or DATA
//! frame, so the load side stays cheap.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, OnceCell, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

use crate::Error;
use crate::reader::{BodyReader, Dechunker, EventIds, Head, parse_head, payload};
use crate::stats::{Histogram, SeqTracker};

const SHARDS: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Microseconds since the benchmark's epoch (shared by publisher and subscribers).
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Where subscribers connect: `http://host:port/path`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The socket address.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// The request path (with query).
    pub path: String,
}

impl Endpoint {
    /// Parses `http://host[:port]/path` and resolves the host.
    pub async fn parse(url: &str) -> Result<Endpoint, Error> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| Error::Usage(format!("--target must be an http:// URL, got `{url}`")))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await?
            .next()
            .ok_or_else(|| Error::Usage(format!("cannot resolve `{host}`")))?;
        Ok(Endpoint {
            addr,
            host: host.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// How subscribers talk to the server. The publisher always uses plaintext HTTP/1.1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// One HTTP/1.1 connection per subscriber (`GET` with a chunked or identity body).
    #[default]
    Http1,
    /// Cleartext HTTP/2 with prior knowledge (h2c): one stream per subscriber, `streams`
    /// subscribers per TCP connection.
    Http2 {
        /// Streams (subscribers) per connection.
        streams: usize,
    },
    /// HTTP/1.1 over TLS (ALPN `http/1.1`), one connection per subscriber.
    Http1Tls,
    /// HTTP/2 over TLS (ALPN `h2`), `streams` subscribers per connection.
    Http2Tls {
        /// Streams (subscribers) per connection.
        streams: usize,
    },
}

impl Protocol {
    /// The label used in tables and plots: `1.1` or `2`.
    ///
    /// ```
    /// use sse_bench::load::Protocol;
    /// assert_eq!(Protocol::Http1.label(), "1.1");
    /// assert_eq!(Protocol::Http2 { streams: 100 }.label(), "2");
    /// ```
    pub fn label(&self) -> &'static str {
        match self {
            Protocol::Http1 => "1.1",
            Protocol::Http2 { .. } => "2",
            Protocol::Http1Tls => "1.1+TLS",
            Protocol::Http2Tls { .. } => "2+TLS",
        }
    }

    /// Subscribers per connection for the HTTP/2 variants, `None` for HTTP/1.1.
    ///
    /// ```
    /// use sse_bench::load::Protocol;
    /// assert_eq!(Protocol::Http2Tls { streams: 10 }.streams(), Some(10));
    /// assert_eq!(Protocol::Http1Tls.streams(), None);
    /// ```
    pub fn streams(&self) -> Option<usize> {
        match self {
            Protocol::Http2 { streams } | Protocol::Http2Tls { streams } => Some(*streams),
            Protocol::Http1 | Protocol::Http1Tls => None,
        }
    }

    /// Whether the subscribers speak TLS.
    ///
    /// ```
    /// assert!(sse_bench::load::Protocol::Http1Tls.is_tls());
    /// ```
    pub fn is_tls(&self) -> bool {
        matches!(self, Protocol::Http1Tls | Protocol::Http2Tls { .. })
    }
}

/// What a fleet does beyond plain subscribing: TLS, resuming, a spread-out connect (a storm).
#[derive(Debug, Clone, Default)]
pub struct FleetOptions {
    /// The client side of TLS, required by the TLS protocols.
    pub tls: Option<crate::tls::Client>,
    /// Sent as `Last-Event-ID` by every subscriber (HTTP/1.1 only).
    pub last_event_id: Option<String>,
    /// The first sequence number every subscriber expects (1 when 0).
    pub first_seq: u64,
    /// A subscriber is "ready" once it has every event up to this one; see [`Fleet::ready`].
    pub ready_seq: Option<u64>,
    /// A subscriber is "live" once it has every event up to this one; see [`Fleet::ready`].
    pub live_seq: Option<u64>,
    /// Subscriber `i` of `n` starts connecting at `i / n × spread` after [`Fleet::grow`] begins,
    /// without the usual limit of 256 connects in flight: a reconnect storm.
    pub spread: Option<Duration>,
}

/// When the subscribers of a fleet became ready (see [`FleetOptions::ready_seq`]).
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// Subscribers that became ready.
    pub ready: usize,
    /// Per subscriber: µs from its scheduled connect to ready.
    pub latency: Histogram,
    /// The moment ([`now_us`]) the last subscriber became ready.
    pub last_us: u64,
    /// Subscribers that became live ([`FleetOptions::live_seq`]).
    pub live: usize,
    /// The moment ([`now_us`]) the last subscriber became live.
    pub last_live_us: u64,
}

/// How events get published.
#[derive(Debug, Clone)]
pub enum Publish {
    /// `POST <path>` with a bearer token and a `text/plain` body, over one keep-alive connection.
    Http {
        /// The endpoint (same as the subscribers').
        endpoint: Endpoint,
        /// The bearer token.
        token: String,
    },
    /// Like `Http`, over TLS (for servers that serve only HTTPS).
    Https {
        /// The endpoint.
        endpoint: Endpoint,
        /// The bearer token.
        token: String,
        /// The TLS client.
        tls: crate::tls::Client,
    },
    /// `sh -c CMD` per event, with the payload in `$SSE_BENCH_DATA` and substituted for `{data}`.
    Command(String),
}

#[derive(Debug, Default)]
struct SubState {
    high: AtomicU64,
    /// [`now_us`] when this subscriber was scheduled to connect, and when it became ready (0: not yet).
    started_us: AtomicU64,
    ready_us: AtomicU64,
    live_us: AtomicU64,
    alive: AtomicBool,
    /// Kept here, not in the task, so that stopping the fleet can simply abort the tasks: a reader
    /// that also watched a stop signal paid a shared waiter-list lock on every read.
    tracker: Mutex<SeqTracker>,
    /// The stream failed or ended before the fleet was stopped.
    dropped: AtomicBool,
}

#[derive(Debug)]
struct Shared {
    subs: Mutex<Vec<Arc<SubState>>>,
    hist: Vec<Mutex<Histogram>>,
    progress: Notify,
    /// Whether anyone waits on `progress` (the closed loop, the drain): otherwise readers skip the
    /// notification, a compare-and-swap on a line every reader shares.
    watched: AtomicBool,
    /// Set before the tasks are aborted: what ends after it is not a dropped subscriber.
    stopping: AtomicBool,
    connected: AtomicUsize,
    failed: AtomicUsize,
    changed: Notify,
    options: FleetOptions,
}

/// What one subscriber saw.
#[derive(Debug, Clone, Copy)]
pub struct SubOutcome {
    /// Its sequence tracker.
    pub tracker: SeqTracker,
    /// The connection failed or closed before the end.
    pub dropped: bool,
}

/// One HTTP/2 connection shared by up to `streams` subscribers, opened by the first of them.
type H2Conn = OnceCell<h2::client::SendRequest<Bytes>>;

/// How one subscriber reaches the server.
#[derive(Debug)]
enum Link {
    Http1,
    Http1Tls,
    Http2 {
        conn: Arc<H2Conn>,
        /// The connection's number, for its source address.
        index: usize,
        streams: usize,
        tls: bool,
    },
}

/// A fleet of subscribers.
#[derive(Debug)]
pub struct Fleet {
    endpoint: Arc<Endpoint>,
    protocol: Protocol,
    /// HTTP/2 connections, subscriber `i` on connection `i / streams`.
    h2_conns: Vec<Arc<H2Conn>>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    gate: Arc<Semaphore>,
}

/// The outcome of a publishing run.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Events published.
    pub published: u64,
    /// Time spent publishing.
    pub publish_time: Duration,
    /// From the first publish until every live subscriber had everything (or the drain timeout).
    pub total_time: Duration,
    /// Publish-to-receive latencies in µs.
    pub latency: Histogram,
}

impl Fleet {
    /// An empty fleet of HTTP/1.1 subscribers for `endpoint`.
    pub fn new(endpoint: Endpoint) -> Fleet {
        Fleet::with_protocol(endpoint, Protocol::Http1)
    }

    /// An empty fleet whose subscribers speak `protocol`.
    pub fn with_protocol(endpoint: Endpoint, protocol: Protocol) -> Fleet {
        Fleet::with_options(endpoint, protocol, FleetOptions::default())
    }

    /// An empty fleet whose subscribers speak `protocol` as `options` say.
    pub fn with_options(endpoint: Endpoint, protocol: Protocol, options: FleetOptions) -> Fleet {
        Fleet {
            endpoint: Arc::new(endpoint),
            protocol,
            h2_conns: Vec::new(),
            shared: Arc::new(Shared {
                subs: Mutex::new(Vec::new()),
                hist: (0..SHARDS).map(|_| Mutex::default()).collect(),
                progress: Notify::new(),
                watched: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                connected: AtomicUsize::new(0),
                failed: AtomicUsize::new(0),
                changed: Notify::new(),
                options,
            }),
            tasks: Vec::new(),
            gate: Arc::new(Semaphore::new(256)),
        }
    }

    /// Subscribers connected (response head received) so far.
    pub fn connected(&self) -> usize {
        self.shared.connected.load(Ordering::Acquire)
    }

    /// Connects more subscribers until there are `total`, and waits for their response heads.
    pub async fn grow(&mut self, total: usize) -> Result<(), Error> {
        if self.shared.options.spread.is_some() {
            self.gate = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
        }
        let begin = now_us();
        let first = self.tasks.len();
        while self.tasks.len() < total {
            let i = self.tasks.len();
            let link = match self.protocol {
                Protocol::Http1 => Link::Http1,
                Protocol::Http1Tls => Link::Http1Tls,
                Protocol::Http2 { streams } | Protocol::Http2Tls { streams } => {
                    let streams = streams.max(1);
                    let index = i / streams;
                    if self.h2_conns.len() <= index {
                        self.h2_conns.push(Arc::default());
                    }
                    Link::Http2 {
                        conn: self.h2_conns[index].clone(),
                        index,
                        streams,
                        tls: self.protocol.is_tls(),
                    }
                }
            };
            let state = Arc::new(SubState::default());
            let start_us = match self.shared.options.spread {
                Some(spread) => {
                    let k = (i - first) as u128;
                    let n = (total - first).max(1) as u128;
                    begin + (spread.as_micros() * k / n) as u64
                }
                None => begin,
            };
            state.started_us.store(start_us, Ordering::Relaxed);
            *lock(&state.tracker) = SeqTracker::starting_at(self.shared.options.first_seq);
            lock(&self.shared.subs).push(state.clone());
            self.tasks.push(tokio::spawn(subscriber(
                i,
                link,
                self.endpoint.clone(),
                self.shared.clone(),
                state,
                self.gate.clone(),
            )));
        }
        let deadline = Instant::now() + CONNECT_TIMEOUT * 2;
        loop {
            let notified = self.shared.changed.notified();
            let done = self.connected() + self.shared.failed.load(Ordering::Acquire);
            if done >= total {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Http(format!(
                    "only {done} of {total} subscribers connected within {:?}",
                    CONNECT_TIMEOUT * 2
                )));
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
        Ok(())
    }

    /// Waits until every live subscriber has every event up to `seq`, at most `timeout`; true if
    /// they all did.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        self.shared.watched.store(true, Ordering::Release);
        let deadline = Instant::now() + timeout;
        let mut done = false;
        while Instant::now() < deadline {
            let notified = self.shared.progress.notified();
            if self.min_high().is_none_or(|m| m >= seq) {
                done = true;
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
        }
        self.shared.watched.store(false, Ordering::Release);
        done
    }

    /// When the subscribers became ready ([`FleetOptions::ready_seq`]).
    pub fn ready(&self) -> Readiness {
        let mut out = Readiness::default();
        for s in lock(&self.shared.subs).iter() {
            let ready = s.ready_us.load(Ordering::Acquire);
            if ready > 0 {
                out.ready += 1;
                out.latency
                    .record(ready.saturating_sub(s.started_us.load(Ordering::Relaxed)));
                out.last_us = out.last_us.max(ready);
            }
            let live = s.live_us.load(Ordering::Acquire);
            if live > 0 {
                out.live += 1;
                out.last_live_us = out.last_live_us.max(live);
            }
        }
        out
    }

    fn min_high(&self) -> Option<u64> {
        lock(&self.shared.subs)
            .iter()
            .filter(|s| s.alive.load(Ordering::Acquire))
            .map(|s| s.high.load(Ordering::Acquire))
            .min()
    }

    /// Publishes for `duration`: at `rate` events/s, or (None) as fast as the slowest live subscriber
    /// allows with at most `window` events in flight — the highest rate that loses nothing.
    pub async fn run(
        &self,
        publish: &Publish,
        size: usize,
        rate: Option<f64>,
        window: u64,
        duration: Duration,
    ) -> Result<RunStats, Error> {
        for h in &self.shared.hist {
            *lock(h) = Histogram::default();
        }
        let mut publisher = Publisher::new(publish).await?;
        let mut ticker = rate.map(|r| {
            let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / r.max(0.001)));
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            t
        });
        self.shared.watched.store(rate.is_none(), Ordering::Release);
        let start = Instant::now();
        let mut seq = 0u64;
        'publishing: while start.elapsed() < duration {
            match &mut ticker {
                Some(t) => {
                    t.tick().await;
                }
                None => loop {
                    let notified = self.shared.progress.notified();
                    match self.min_high() {
                        Some(min) if seq.saturating_sub(min) >= window => {}
                        _ => break,
                    }
                    if start.elapsed() >= duration {
                        break 'publishing;
                    }
                    let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
                },
            }
            seq += 1;
            publisher.send(&payload(seq, now_us(), size)).await?;
        }
        publisher.flush().await?;
        let publish_time = start.elapsed();
        // Drain: wait until every live subscriber has the last event.
        self.shared.watched.store(true, Ordering::Release);
        let drain_deadline = Instant::now() + Duration::from_secs(10);
        while self.min_high().is_some_and(|m| m < seq) && Instant::now() < drain_deadline {
            let notified = self.shared.progress.notified();
            let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
        }
        let total_time = start.elapsed();
        self.shared.watched.store(false, Ordering::Release);
        let mut latency = Histogram::default();
        for h in &self.shared.hist {
            latency.merge(&lock(h));
        }
        Ok(RunStats {
            published: seq,
            publish_time,
            total_time,
            latency,
        })
    }

    /// Stops every subscriber and returns what each saw, closing the books at `last` published.
    pub async fn finish(self, last: u64) -> Vec<SubOutcome> {
        self.shared.stopping.store(true, Ordering::Release);
        for t in &self.tasks {
            t.abort();
        }
        let subs = lock(&self.shared.subs).clone();
        let mut out = Vec::with_capacity(self.tasks.len());
        for (t, state) in self.tasks.into_iter().zip(subs) {
            let panicked = t.await.err().is_some_and(|e| e.is_panic());
            let mut tracker = *lock(&state.tracker);
            tracker.finish(last);
            out.push(SubOutcome {
                tracker,
                dropped: panicked || state.dropped.load(Ordering::Acquire),
            });
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Subscribers per loopback source address: real subscribers come from many addresses, and servers
/// limit connections per client IP (sse-server: 256 by default).
const PER_SOURCE_IP: usize = 200;

/// The source address for subscriber `i` of a loopback target: 127.0.x.y, 200 subscribers each.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// let t: std::net::SocketAddr = "127.0.0.1:80".parse().unwrap();
/// assert_eq!(sse_bench::load::source_ip(t, 0), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
/// assert_eq!(sse_bench::load::source_ip(t, 200 * 251), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 3))));
/// assert_eq!(sse_bench::load::source_ip("10.0.0.1:80".parse().unwrap(), 0), None);
/// ```
pub fn source_ip(target: SocketAddr, i: usize) -> Option<IpAddr> {
    match target.ip() {
        IpAddr::V4(v4) if v4.is_loopback() => {
            let k = i / PER_SOURCE_IP;
            let (hi, lo) = ((k / 250) % 250, k % 250 + 2);
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, hi as u8, lo as u8)))
        }
        _ => None,
    }
}

/// A subscriber's response body, however it is framed on the wire.
enum Source {
    /// An HTTP/1.1 socket and the buffer it is read into.
    Http1 { sock: TcpStream, buf: Box<[u8]> },
    /// An HTTP/1.1-over-TLS socket and the buffer it is read into.
    Tls {
        sock: Box<TlsStream<TcpStream>>,
        buf: Box<[u8]>,
    },
    /// An HTTP/2 stream and the last DATA frame read from it.
    Http2 { body: h2::RecvStream, frame: Bytes },
}

impl Source {
    /// The next bytes of the body; `None` at its end.
    async fn next(&mut self) -> Result<Option<&[u8]>, Error> {
        match self {
            Source::Http1 { sock, buf } => {
                let n = sock.read(buf).await?;
                Ok((n > 0).then(|| &buf[..n]))
            }
            Source::Tls { sock, buf } => {
                let n = sock.read(buf).await?;
                Ok((n > 0).then(|| &buf[..n]))
            }
            Source::Http2 { body, frame } => match body.data().await {
                None => Ok(None),
                Some(Err(e)) => Err(e.into()),
                Some(Ok(data)) => {
                    // Give the window back at once: the benchmark measures the server, not flow
                    // control.
                    body.flow_control().release_capacity(data.len())?;
                    *frame = data;
                    Ok(Some(frame))
                }
            },
        }
    }
}

async fn tcp_connect(target: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, Error> {
    let sock = match source {
        Some(ip) => {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(target).await?
        }
        None => TcpStream::connect(target).await?,
    };
    sock.set_nodelay(true)?;
    Ok(sock)
}

/// HTTP/2 windows large enough that flow control never makes the server wait for the load side.
const H2_STREAM_WINDOW: u32 = 1 << 20;
const H2_CONNECTION_WINDOW: u32 = 16 << 20;

/// Opens an HTTP/2 connection (h2c with prior knowledge, or TLS with ALPN h2 when `tls` is given)
/// and drives it on its own task.
async fn h2_connect(
    target: SocketAddr,
    source: Option<IpAddr>,
    tls: Option<&crate::tls::Client>,
) -> Result<h2::client::SendRequest<Bytes>, Error> {
    let sock = tcp_connect(target, source).await?;
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW);
    let send = match tls {
        None => {
            let (send, connection) = builder.handshake(sock).await?;
            // A connection error also ends every stream on it; the subscribers report it.
            tokio::spawn(async move {
                let _ = connection.await;
            });
            send
        }
        Some(tls) => {
            let sock = tls.connect_h2(sock).await?;
            let (send, connection) = builder.handshake(sock).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            send
        }
    };
    Ok(send)
}

/// Opens one subscriber stream on the shared connection `conn` (connecting it first if needed).
async fn connect_h2(
    endpoint: &Endpoint,
    conn: &H2Conn,
    index: usize,
    streams: usize,
    tls: Option<&crate::tls::Client>,
) -> Result<(Source, BodyReader, Vec<u8>), Error> {
    // Subscribers keep the source address they would have over HTTP/1.1 (the connection's first
    // subscriber's), so per-address limits see the same subscribers, on fewer connections.
    let source = source_ip(endpoint.addr, index * streams);
    let send = conn
        .get_or_try_init(|| h2_connect(endpoint.addr, source, tls))
        .await?
        .clone();
    let mut send = send.ready().await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let request = http::Request::get(format!("{scheme}://{}{}", endpoint.host, endpoint.path))
        .header(http::header::ACCEPT, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-cache")
        .body(())
        .map_err(|e| Error::Usage(format!("bad subscribe URL: {e}")))?;
    let (response, _) = send.send_request(request, true)?;
    let response = response.await?;
    if response.status() != http::StatusCode::OK {
        return Err(Error::Http(format!(
            "subscribe answered {} (HTTP/2)",
            response.status().as_u16()
        )));
    }
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("text/event-stream") {
        return Err(Error::Http(format!(
            "subscribe answered content-type `{content_type}` (HTTP/2), not text/event-stream"
        )));
    }
    let body = Source::Http2 {
        body: response.into_body(),
        frame: Bytes::new(),
    };
    // HTTP/2 frames the body itself: no chunked encoding inside DATA frames.
    let head = Head {
        status: 200,
        chunked: false,
        content_length: None,
    };
    Ok((body, BodyReader::new(&head), Vec::new()))
}

async fn connect(
    endpoint: &Endpoint,
    i: usize,
    link: &Link,
    options: &FleetOptions,
) -> Result<(Source, BodyReader, Vec<u8>), Error> {
    let tls = || {
        options
            .tls
            .as_ref()
            .ok_or_else(|| Error::Usage("a TLS protocol without a TLS client".into()))
    };
    match link {
        Link::Http1 => {
            let sock = tcp_connect(endpoint.addr, source_ip(endpoint.addr, i)).await?;
            let (sock, reader, rest) = request_h1(sock, endpoint, options).await?;
            let buf = vec![0u8; 16 * 1024].into_boxed_slice();
            Ok((Source::Http1 { sock, buf }, reader, rest))
        }
        Link::Http1Tls => {
            let sock = tcp_connect(endpoint.addr, source_ip(endpoint.addr, i)).await?;
            let sock = tls()?.connect_h1(sock).await?;
            let (sock, reader, rest) = request_h1(sock, endpoint, options).await?;
            let buf = vec![0u8; 16 * 1024].into_boxed_slice();
            let sock = Box::new(sock);
            Ok((Source::Tls { sock, buf }, reader, rest))
        }
        Link::Http2 {
            conn,
            index,
            streams,
            tls: with_tls,
        } => {
            let tls = if *with_tls { Some(tls()?) } else { None };
            connect_h2(endpoint, conn, *index, *streams, tls).await
        }
    }
}

/// Sends the subscribe request on `sock` and reads the response head.
async fn request_h1<S>(
    mut sock: S,
    endpoint: &Endpoint,
    options: &FleetOptions,
) -> Result<(S, BodyReader, Vec<u8>), Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let resume = options
        .last_event_id
        .as_ref()
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n{resume}\r\n",
        endpoint.path, endpoint.host
    );
    sock.write_all(req.as_bytes()).await?;
    sock.flush().await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::Http(
                "connection closed before the response head".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((head, len)) = parse_head(&buf)? {
            if head.status != 200 {
                return Err(Error::Http(format!("subscribe answered {}", head.status)));
            }
            let rest = buf[len..].to_vec();
            return Ok((sock, BodyReader::new(&head), rest));
        }
    }
}

async fn subscriber(
    i: usize,
    link: Link,
    endpoint: Arc<Endpoint>,
    shared: Arc<Shared>,
    me: Arc<SubState>,
    gate: Arc<Semaphore>,
) {
    let start_us = me.started_us.load(Ordering::Relaxed);
    let wait = start_us.saturating_sub(now_us());
    if wait > 0 {
        tokio::time::sleep(Duration::from_micros(wait)).await;
    }
    let connected = {
        let _permit = gate.acquire().await;
        let connecting = connect(&endpoint, i, &link, &shared.options);
        tokio::time::timeout(CONNECT_TIMEOUT, connecting).await
    };
    let (mut source, mut body, rest) = match connected {
        Ok(Ok(c)) => c,
        other => {
            match &other {
                Ok(Err(e)) => eprintln!("sse-bench: subscriber {i}: {e}"),
                _ => eprintln!(
                    "sse-bench: subscriber {i}: no response head within {CONNECT_TIMEOUT:?}{}",
                    match link {
                        Link::Http1 | Link::Http1Tls => "",
                        // Streams over the server's limit queue in the client until one closes.
                        Link::Http2 { .. } => {
                            " (HTTP/2: is --h2-streams above the server's SETTINGS_MAX_CONCURRENT_STREAMS?)"
                        }
                    }
                ),
            }
            me.dropped.store(true, Ordering::Release);
            shared.failed.fetch_add(1, Ordering::AcqRel);
            shared.changed.notify_one();
            return;
        }
    };
    me.alive.store(true, Ordering::Release);
    shared.connected.fetch_add(1, Ordering::AcqRel);
    shared.changed.notify_one();
    let shard = &shared.hist[i % SHARDS];
    let ready_seq = shared.options.ready_seq;
    let live_seq = shared.options.live_seq;
    let mut lats: Vec<u64> = Vec::with_capacity(256);
    let mut on_bytes = |bytes: &[u8]| -> Result<(), Error> {
        let now = now_us();
        let mut tracker = lock(&me.tracker);
        body.feed(bytes, |s| {
            tracker.record(s.seq);
            lats.push(now.saturating_sub(s.sent_us));
        })?;
        if !lats.is_empty() {
            me.high.store(tracker.high(), Ordering::Release);
            if ready_seq.is_some_and(|r| tracker.high() >= r)
                && me.ready_us.load(Ordering::Relaxed) == 0
            {
                me.ready_us.store(now, Ordering::Release);
            }
            if live_seq.is_some_and(|r| tracker.high() >= r)
                && me.live_us.load(Ordering::Relaxed) == 0
            {
                me.live_us.store(now, Ordering::Release);
            }
            drop(tracker);
            let mut h = lock(shard);
            for l in lats.drain(..) {
                h.record(l);
            }
            drop(h);
            if shared.watched.load(Ordering::Acquire) {
                shared.progress.notify_one();
            }
        }
        Ok(())
    };
    // Runs until the stream ends or fails, or the fleet aborts the task (see `Fleet::finish`).
    let mut result = on_bytes(&rest);
    while result.is_ok() {
        result = match source.next().await {
            Ok(Some(bytes)) => on_bytes(bytes),
            Ok(None) => Err(Error::Http("the server ended the stream".into())),
            Err(e) => Err(e),
        };
    }
    if !shared.stopping.load(Ordering::Acquire) {
        if let Err(e) = result {
            eprintln!("sse-bench: subscriber {i}: {e}");
        }
        me.dropped.store(true, Ordering::Release);
    }
    me.alive.store(false, Ordering::Release);
    shared.progress.notify_one();
}

/// Publishes numbered benchmark events one by one (for scenarios that publish outside
/// [`Fleet::run`], e.g. the history before a reconnect storm).
pub struct EventPublisher {
    inner: Publisher,
}

impl std::fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventPublisher")
    }
}

impl EventPublisher {
    /// Opens the publishing connection.
    pub async fn connect(publish: &Publish) -> Result<EventPublisher, Error> {
        Ok(EventPublisher {
            inner: Publisher::new(publish).await?,
        })
    }

    /// Publishes event `seq` with a `size`-byte payload stamped now.
    pub async fn send(&mut self, seq: u64, size: usize) -> Result<(), Error> {
        self.inner.send(&payload(seq, now_us(), size)).await
    }

    /// Waits until the server answered every publish.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush().await
    }
}

enum Publisher {
    /// Requests are pipelined on one keep-alive connection (HTTP/1.1 keeps their order), so the
    /// publisher is limited by the server, not by a round trip per event.
    Http {
        writer: BoxWrite,
        head: String,
        buf: Vec<u8>,
        sent: u64,
        acked: Arc<AtomicU64>,
        acks: Arc<Notify>,
        reader: JoinHandle<Result<(), Error>>,
    },
    Command(String),
}

type BoxRead = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// Requests in flight on the publishing connection.
const PIPELINE: u64 = 16;

impl Publisher {
    async fn new(publish: &Publish) -> Result<Publisher, Error> {
        Ok(match publish {
            Publish::Http { endpoint, token }
            | Publish::Https {
                endpoint, token, ..
            } => {
                let tls = match publish {
                    Publish::Https { tls, .. } => Some(tls),
                    _ => None,
                };
                let sock = TcpStream::connect(endpoint.addr).await?;
                sock.set_nodelay(true)?;
                let (mut read, writer): (BoxRead, BoxWrite) = match tls {
                    None => {
                        let (r, w) = sock.into_split();
                        (Box::new(r), Box::new(w))
                    }
                    Some(tls) => {
                        let (r, w) = tokio::io::split(tls.connect_h1(sock).await?);
                        (Box::new(r), Box::new(w))
                    }
                };
                let acked = Arc::new(AtomicU64::new(0));
                let acks = Arc::new(Notify::new());
                let reader = {
                    let (acked, acks) = (acked.clone(), acks.clone());
                    tokio::spawn(async move {
                        let mut responses = Responses::default();
                        loop {
                            let r = responses.next(&mut read).await;
                            if r.is_ok() {
                                acked.fetch_add(1, Ordering::AcqRel);
                            }
                            acks.notify_one();
                            r?;
                        }
                    })
                };
                Publisher::Http {
                    writer,
                    head: format!(
                        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: text/plain\r\n",
                        endpoint.path, endpoint.host
                    ),
                    buf: Vec::with_capacity(4096),
                    sent: 0,
                    acked,
                    acks,
                    reader,
                }
            }
            Publish::Command(cmd) => Publisher::Command(cmd.clone()),
        })
    }

    /// Waits until fewer than `depth` requests are unanswered; fails if the connection failed.
    async fn wait_acks(&mut self, depth: u64) -> Result<(), Error> {
        if let Publisher::Http {
            sent,
            acked,
            acks,
            reader,
            ..
        } = self
        {
            loop {
                let notified = acks.notified();
                if *sent - acked.load(Ordering::Acquire) < depth.max(1) {
                    return Ok(());
                }
                if reader.is_finished() {
                    return match reader.await {
                        Ok(Err(e)) => Err(e),
                        _ => Err(Error::Http("publish connection closed".into())),
                    };
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
            }
        }
        Ok(())
    }

    async fn send(&mut self, data: &str) -> Result<(), Error> {
        self.wait_acks(PIPELINE).await?;
        match self {
            Publisher::Http {
                writer,
                head,
                buf,
                sent,
                ..
            } => {
                buf.clear();
                buf.extend_from_slice(head.as_bytes());
                buf.extend_from_slice(format!("Content-Length: {}\r\n\r\n", data.len()).as_bytes());
                buf.extend_from_slice(data.as_bytes());
                writer.write_all(buf).await?;
                writer.flush().await?;
                *sent += 1;
                Ok(())
            }
            Publisher::Command(cmd) => {
                let status = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd.replace("{data}", data))
                    .env("SSE_BENCH_DATA", data)
                    .stdout(std::process::Stdio::null())
                    .status()
                    .await?;
                if status.success() {
                    Ok(())
                } else {
                    Err(Error::Usage(format!("--publish-cmd exited with {status}")))
                }
            }
        }
    }

    /// Waits for every response.
    async fn flush(&mut self) -> Result<(), Error> {
        self.wait_acks(1).await
    }
}

/// Reads consecutive HTTP/1.1 responses from one connection, keeping bytes of the next one.
#[derive(Default)]
struct Responses {
    buf: Vec<u8>,
}

impl Responses {
    async fn fill<R: tokio::io::AsyncRead + Unpin>(&mut self, read: &mut R) -> Result<(), Error> {
        let mut chunk = [0u8; 4096];
        let n = read.read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::Http("publish connection closed".into()));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The next response; an error for a status outside 2xx.
    async fn next<R: tokio::io::AsyncRead + Unpin>(&mut self, read: &mut R) -> Result<(), Error> {
        let (head, len) = loop {
            if let Some(h) = parse_head(&self.buf)? {
                break h;
            }
            self.fill(read).await?;
        };
        self.buf.drain(..len);
        if head.chunked {
            let mut d = Dechunker::default();
            loop {
                // Feed byte by byte so the bytes after the body's end stay in the buffer.
                let mut used = 0;
                for i in 0..self.buf.len() {
                    d.feed(&self.buf[i..=i], |_| {})?;
                    used = i + 1;
                    if d.is_done() {
                        break;
                    }
                }
                self.buf.drain(..used);
                if d.is_done() {
                    break;
                }
                self.fill(read).await?;
            }
        } else {
            let want = head.content_length.unwrap_or(0);
            while self.buf.len() < want {
                self.fill(read).await?;
            }
            let body = self.buf.drain(..want).collect::<Vec<u8>>();
            if !(200..300).contains(&head.status) {
                return Err(Error::Http(format!(
                    "publish answered {}: {}",
                    head.status,
                    String::from_utf8_lossy(&body)
                )));
            }
        }
        // nchan answers 201 or 202, the others 200.
        if !(200..300).contains(&head.status) {
            return Err(Error::Http(format!("publish answered {}", head.status)));
        }
        Ok(())
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Publisher::Http { reader, .. } = self {
            reader.abort();
        }
    }
}

/// One plain HTTP/1.1 subscriber that keeps every event's `id:` (see [`EventIds`]), to find the
/// `Last-Event-ID` a resuming subscriber sends.
#[derive(Debug)]
pub struct IdRecorder {
    ids: Arc<Mutex<EventIds>>,
    task: JoinHandle<()>,
}

impl IdRecorder {
    /// Subscribes to `endpoint` and waits for the response head.
    pub async fn start(endpoint: &Endpoint) -> Result<IdRecorder, Error> {
        let sock = tcp_connect(endpoint.addr, None).await?;
        let (mut sock, mut body, rest) =
            request_h1(sock, endpoint, &FleetOptions::default()).await?;
        let ids = Arc::new(Mutex::new(EventIds::default()));
        let sink = ids.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut feed = |bytes: &[u8]| body.feed_raw(bytes, |s| lock(&sink).feed(s));
            let mut ok = feed(&rest).is_ok();
            while ok {
                ok = match sock.read(&mut buf).await {
                    Ok(n) if n > 0 => feed(&buf[..n]).is_ok(),
                    _ => false,
                };
            }
        });
        Ok(IdRecorder { ids, task })
    }

    /// Waits (at most `timeout`) until event `seq` arrived and returns its id.
    pub async fn id_of(&self, seq: u64, timeout: Duration) -> Result<String, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(id) = lock(&self.ids).id_of(seq) {
                return Ok(id.to_owned());
            }
            if Instant::now() > deadline || self.task.is_finished() {
                return Err(Error::Http(format!(
                    "event {seq} never reached the id recorder (or it carried no `id:`)"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for IdRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
