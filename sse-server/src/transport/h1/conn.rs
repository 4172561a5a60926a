//! A lean HTTP/1.1 path for `GET /events/{channel}` on plain TCP.
//!
//! Why: hyper keeps an 8 KiB read buffer and an 8 KiB write buffer per connection for as long as the
//! connection lives, which is most of what an idle subscriber costs, and its dispatcher does per-frame
//! work an event stream does not need. A subscription request is small and arrives in one segment, so
//! it is parsed from a `peek` (nothing consumed unless it qualifies), answered by the very same
//! [`HubService`] (status codes, headers, CORS, hooks, replay are unchanged), and its body is written
//! with one chunk per wake-up: every event that is ready goes out in one `writev`, with no buffer kept
//! between writes. While it waits for live events, the connection's task lends the socket to one of
//! the hub's flushers (`transport/flusher.rs`), which write live events without waking it. Anything else — other methods and paths, HTTP/1.0, upgrades, bodies, a head split
//! over several segments — goes to hyper untouched.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use http::Response;
use http_body::Body as _;
use tokio::net::TcpStream;
use tower::Service;

use crate::http::body::Body;
use crate::http::peer::Peer;
use crate::http::service::HubService;
use crate::hub::lent::Sink;
use crate::transport::flusher;
use crate::transport::forwarded::ForwardedLimit;
use crate::transport::h1::chunk;
use crate::transport::h1::head::{MAX_HEAD, parse_head, response_head};
use crate::transport::io::{Wire, consume};
use crate::transport::limits::Permit as ForwardedPermit;

/// At most this many ready events per write: a replay of 100 events (a reconnect storm's) goes out
/// in one `writev` (each write to a socket costs a pass through the TCP stack; far under `IOV_MAX`).
const MAX_BATCH: usize = 128;

/// Serves the connection when its first request is a plain subscription; otherwise hands the
/// untouched stream back. The request counts for `client`'s subscription limits when there is one
/// (the [`Peer`] extension, as hyper's requests carry it). From a trusted proxy (`forwarded`), the
/// subscription also needs a place for its forwarded client; without one, hyper answers it (429).
///
/// Not an async fn: its arguments would stay in the subscriber's task for its whole life. What
/// comes before the stream (the request's peek, parse and admission) runs in a boxed future freed
/// when it is done.
pub(crate) fn serve<'a>(
    stream: TcpStream,
    service: &'a HubService,
    client: Option<Peer>,
    forwarded: Option<ForwardedLimit>,
) -> impl Future<Output = Result<(), TcpStream>> + Send + use<'a> {
    let start = Box::pin(start(stream, client, forwarded));
    async move {
        let (admitted, stream) = match start.await {
            Start::Serve(admitted, stream) => (admitted, stream),
            Start::Gone => return Ok(()),
            Start::Other(stream) => return Err(stream),
        };
        admitted.serve(stream, service).await;
        Ok(())
    }
}

/// What the request's head said (lives only until the stream starts).
#[allow(clippy::large_enum_variant)]
enum Start {
    /// A subscription this path takes; its head was read.
    Serve(Admitted, TcpStream),
    /// The connection failed while its head was read.
    Gone,
    /// Anything else: the connection, nothing read, for hyper.
    Other(TcpStream),
}

async fn start(
    mut stream: TcpStream,
    client: Option<Peer>,
    forwarded: Option<ForwardedLimit>,
) -> Start {
    let Some((request, head_len)) = peek_subscription(&stream).await else {
        return Start::Other(stream);
    };
    let Some(admitted) = admit(request, client, forwarded.as_ref()) else {
        return Start::Other(stream);
    };
    if consume(&mut stream, head_len).await.is_err() {
        return Start::Gone;
    }
    Start::Serve(admitted, stream)
}

/// A subscription this path takes, with its place under the forwarded client's limit.
pub(crate) struct Admitted {
    request: http::Request<Body>,
    _permit: Option<ForwardedPermit>,
}

/// Takes `request` for this path: it counts for `client` when there is one; from a trusted proxy
/// it needs a place for its forwarded client (`None` without one: hyper answers it, 429).
pub(crate) fn admit(
    mut request: http::Request<Body>,
    client: Option<Peer>,
    forwarded: Option<&ForwardedLimit>,
) -> Option<Admitted> {
    if let Some(client) = client {
        request.extensions_mut().insert(client);
    }
    let permit = match forwarded.map(|f| f.acquire(request.headers())) {
        Some(Err(_)) => return None,
        Some(Ok(permit)) => Some(permit),
        None => None,
    };
    Some(Admitted {
        request,
        _permit: permit,
    })
}

impl Admitted {
    /// The request, to mark (the lean TLS path adds `Secure`).
    #[cfg(feature = "tls")]
    pub(crate) fn request_mut(&mut self) -> &mut http::Request<Body> {
        &mut self.request
    }

    /// Answers the subscription on `wire` (whose request head was read) until it ends.
    ///
    /// Not an async fn: an async fn (or block) keeps its arguments for its whole life, so the
    /// request (312 B) would stay in every subscriber's task. The call is made here and only its
    /// boxed future goes into the one that streams.
    pub(crate) fn serve<W: Wire>(
        self,
        wire: W,
        service: &HubService,
    ) -> impl Future<Output = ()> + Send + use<W> {
        let Admitted { request, _permit } = self;
        let call = service.clone().call(request);
        async move {
            let _permit = _permit;
            let Ok(response) = call.await;
            if let Err(e) = respond(wire, response).await {
                tracing::debug!(error = %e, "subscriber connection ended");
            }
        }
    }
}

async fn peek_subscription(stream: &TcpStream) -> Option<(http::Request<Body>, usize)> {
    let mut buf = vec![0u8; MAX_HEAD];
    let n = stream.peek(&mut buf).await.ok()?;
    parse_head(&buf[..n])
}

/// Writes `response` on `wire`. Not an async fn, so that the response's head (its headers) is not
/// kept for the stream's life: only the wire, the encoded head and the body go into the future.
fn respond<W: Wire>(
    wire: W,
    response: Response<Body>,
) -> impl Future<Output = io::Result<()>> + Send + use<W> {
    let length = response.body().size_hint().exact();
    // Shared with a flusher while it writes live events to this subscriber (see `flusher.rs`).
    let wire = Arc::new(wire);
    let head = response_head(&response, length);
    let body = response.into_body();
    send(wire, head, body, length)
}

async fn send<W: Wire>(
    wire: Arc<W>,
    head: Vec<u8>,
    mut body: Body,
    length: Option<u64>,
) -> io::Result<()> {
    if length.is_some() {
        wire.write_all(&head).await?;
        while let Some(data) = next_batch(&*wire, &mut body, false).await? {
            for b in data {
                wire.write_all(&b).await?;
            }
        }
    } else {
        stream_body(&wire, &mut body, head).await?;
        wire.write_all(b"0\r\n\r\n").await?;
    }
    drop(body);
    if let Ok(wire) = Arc::try_unwrap(wire) {
        wire.close().await?;
    }
    Ok(())
}

/// Writes the response `head` and a chunked body's events until it ends, lending the connection to
/// a flusher whenever nothing is pending. The head goes out with the first chunk when one is ready
/// (a replay: head and events in one `writev`), else alone before the socket is lent.
async fn stream_body<W: Wire>(wire: &Arc<W>, body: &mut Body, head: Vec<u8>) -> io::Result<()> {
    let mut head = Some(head);
    // Whether to report "nothing pending" (and try lending the socket) before waiting.
    let mut lend = true;
    loop {
        match next_batch(&**wire, body, lend).await? {
            Some(batch) if !batch.is_empty() => {
                let first = head.take().unwrap_or_default();
                let mut size = [0u8; 20];
                let mut slices = chunk::slices(batch.iter(), &mut size);
                if !first.is_empty() {
                    slices.insert(0, IoSlice::new(&first));
                }
                wire.write_all_vectored(&mut slices).await?;
                lend = true;
            }
            Some(_) => {
                if let Some(head) = head.take() {
                    wire.write_all(&head).await?;
                }
                // Nothing pending: a flusher writes live events until this task is needed.
                let Some(sub) = body.subscription_mut() else {
                    lend = false;
                    continue;
                };
                let sink: Arc<dyn Sink> = wire.clone();
                if !sub.enter_direct(sink, flusher::spawn) {
                    lend = false;
                    continue;
                }
                // A client that went away ends the task; dropping the subscription takes
                // the socket back from the flusher.
                poll_fn(|cx| match wire.poll_gone(cx) {
                    Poll::Ready(e) => Poll::Ready(Err(e)),
                    Poll::Pending => sub.poll_direct(cx).map(Ok),
                })
                .await?;
                for owed in sub.leave_direct() {
                    wire.write_raw(&owed).await?;
                }
            }
            None => {
                if let Some(head) = head.take() {
                    wire.write_all(&head).await?;
                }
                return Ok(());
            }
        }
    }
}

/// Waits for body frames while watching the client: `Some(frames)` with as many as are ready,
/// `Some(empty)` when the body has nothing now (a subscription may then lend its socket),
/// `None` at the end of the body, an error when the client went away.
async fn next_batch<W: Wire>(
    wire: &W,
    body: &mut Body,
    mut lend: bool,
) -> io::Result<Option<Vec<Bytes>>> {
    poll_fn(|cx| {
        if let Poll::Ready(e) = wire.poll_gone(cx) {
            return Poll::Ready(Err(e));
        }
        // "Nothing now" is reported once, right after the body registered its waker, so the caller
        // can write the response head and lend the socket; after that (no subscription, or not
        // lendable) it just waits.
        match body.poll_batch(cx, MAX_BATCH) {
            Poll::Ready(batch) => Poll::Ready(Ok(batch)),
            Poll::Pending if std::mem::take(&mut lend) => Poll::Ready(Ok(Some(Vec::new()))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::time::timeout;

    use super::*;
    use crate::hub::handle::Hub;
    use crate::transport::server::Server;

    const WAIT: Duration = Duration::from_secs(10);

    async fn read_until(sock: &mut TcpStream, got: &mut Vec<u8>, needle: &[u8]) {
        while !got.windows(needle.len()).any(|w| w == needle) {
            let mut buf = [0u8; 4096];
            let n = timeout(WAIT, sock.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "closed early; got {}", String::from_utf8_lossy(got));
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// A wire that records each write as it was asked for.
    struct Recorder(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl Recorder {
        fn record(&self, slices: &[IoSlice<'_>]) -> usize {
            let bytes: Vec<u8> = slices.iter().flat_map(|s| s.to_vec()).collect();
            let n = bytes.len();
            self.0.lock().unwrap().push(bytes);
            n
        }
    }

    impl Sink for Recorder {
        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            Ok(self.record(bufs))
        }
    }

    impl Wire for Recorder {
        async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
            self.record(&[IoSlice::new(buf)]);
            Ok(())
        }
        async fn write_all_vectored(&self, slices: &mut [IoSlice<'_>]) -> io::Result<()> {
            self.record(slices);
            Ok(())
        }
        async fn write_raw(&self, buf: &[u8]) -> io::Result<()> {
            self.record(&[IoSlice::new(buf)]);
            Ok(())
        }
        fn poll_gone(&self, _cx: &mut std::task::Context<'_>) -> Poll<io::Error> {
            Poll::Pending
        }
        async fn close(self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_replay_goes_out_with_the_response_head_in_one_write() {
        let hub = Hub::builder().build();
        let first = hub
            .publish("news", sse_proto::Event::message("before"))
            .await
            .unwrap();
        for i in 1..=100 {
            hub.publish("news", sse_proto::Event::message(format!("replayed {i}")))
                .await
                .unwrap();
        }
        let req = format!("GET /events/news HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {first}\r\n\r\n");
        let (request, _) = parse_head(req.as_bytes()).unwrap();
        let Ok(response) = HubService::new(hub.clone()).call(request).await;
        let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn(respond(Recorder(writes.clone()), response));
        let first_write = timeout(WAIT, async {
            loop {
                if let Some(w) = writes.lock().unwrap().first() {
                    return String::from_utf8_lossy(w).into_owned();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        task.abort();
        // A reconnect storm is 10k of these: one pass through the TCP stack each, not three.
        assert!(
            first_write.starts_with("HTTP/1.1 200 OK\r\n"),
            "{first_write}"
        );
        assert!(
            first_write.contains("data: replayed 1\n")
                && first_write.contains("data: replayed 100\n"),
            "the head and the whole replay must go out in one write; the first was {first_write}"
        );
    }

    #[tokio::test]
    async fn streams_events_as_chunks_and_forgets_closed_subscribers() {
        let hub = Hub::builder().build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(Server::new(hub.clone()).serve_hub(listener, async move {
            let _ = stopped.await;
        }));
        let first = hub
            .publish("news", sse_proto::Event::message("before"))
            .await
            .unwrap();

        let mut sock = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET /events/news HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {first}\r\n\r\n");
        sock.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        read_until(&mut sock, &mut got, b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");

        // Events published back to back may share a chunk; each arrives whole and in order.
        for i in 0..3 {
            hub.publish("news", sse_proto::Event::message(format!("live {i}")))
                .await
                .unwrap();
        }
        read_until(&mut sock, &mut got, b"data: live 2\n\n").await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            !text.contains("data: before"),
            "replayed the event it resumed after"
        );
        let (a, b, c) = (
            text.find("live 0").unwrap(),
            text.find("live 1").unwrap(),
            text.find("live 2").unwrap(),
        );
        assert!(a < b && b < c);

        assert_eq!(hub.channels().await.unwrap()[0].subscribers, 1);
        drop(sock);
        timeout(WAIT, async {
            while hub
                .channels()
                .await
                .unwrap()
                .first()
                .is_some_and(|c| c.subscribers > 0)
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("a closed subscriber must be unregistered");

        // Not a subscription: hyper answers as before.
        let mut sock = TcpStream::connect(addr).await.unwrap();
        sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        read_until(&mut sock, &mut got, b"\"ok\"").await;

        // Errors from the service keep their status and body on this path too.
        let mut sock = TcpStream::connect(addr).await.unwrap();
        sock.write_all(b"GET /events/%FF HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        read_until(&mut sock, &mut got, b"}").await;
        assert!(
            got.starts_with(b"HTTP/1.1 400 "),
            "{}",
            String::from_utf8_lossy(&got)
        );

        let _ = stop.send(());
        timeout(WAIT, server).await.unwrap().unwrap().unwrap();
    }
}
