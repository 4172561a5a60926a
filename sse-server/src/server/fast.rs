//! A lean HTTP/1.1 path for `GET /events/{channel}` on plain TCP.
//!
//! Why: hyper keeps an 8 KiB read buffer and an 8 KiB write buffer per connection for as long as the
//! connection lives, which is most of what an idle subscriber costs, and its dispatcher does per-frame
//! work an event stream does not need. A subscription request is small and arrives in one segment, so
//! it is parsed from a `peek` (nothing consumed unless it qualifies), answered by the very same
//! [`HubService`] (status codes, headers, CORS, hooks, replay are unchanged), and its body is written
//! with one chunk per wake-up: every event that is ready goes out in one `writev`, with no buffer kept
//! between writes. While it waits for live events, the connection's task lends the socket to one of
//! the hub's flushers (`flush.rs`), which write live events without waking it. Anything else — other methods and paths, HTTP/1.0, upgrades, bodies, a head split
//! over several segments — goes to hyper untouched.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower::Service;

use crate::flush::Sink;
use crate::{Body, HubService};

/// Longest request head taken on this path; longer ones go to hyper (which enforces its own limit).
const MAX_HEAD: usize = 4096;
/// At most this many ready events per write.
const MAX_BATCH: usize = 64;

/// Serves the connection when its first request is a plain subscription; otherwise hands the
/// untouched stream back.
pub(crate) async fn serve(stream: TcpStream, service: &HubService) -> Result<(), TcpStream> {
    let Some((request, head_len)) = peek_subscription(&stream).await else {
        return Err(stream);
    };
    let mut stream = stream;
    if consume(&mut stream, head_len).await.is_err() {
        return Ok(());
    }
    let Ok(response) = service.clone().call(request).await;
    if let Err(e) = respond(stream, response).await {
        tracing::debug!(error = %e, "subscriber connection ended");
    }
    Ok(())
}

async fn peek_subscription(stream: &TcpStream) -> Option<(Request<Body>, usize)> {
    let mut buf = vec![0u8; MAX_HEAD];
    let n = stream.peek(&mut buf).await.ok()?;
    parse_head(&buf[..n])
}

/// Parses a complete `GET /events/… HTTP/1.1` head without a body; `None` for anything else.
fn parse_head(buf: &[u8]) -> Option<(Request<Body>, usize)> {
    if !buf.starts_with(b"GET /events/") {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (_, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if version != "HTTP/1.1" || parts.next().is_some() {
        return None;
    }
    let mut builder = Request::get(target).version(http::Version::HTTP_11);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || (name.eq_ignore_ascii_case("content-length") && value != "0")
            || (name.eq_ignore_ascii_case("connection")
                && value.to_ascii_lowercase().contains("upgrade"))
        {
            return None;
        }
        builder = builder.header(name, value);
    }
    let request = builder.body(Body::empty()).ok()?;
    Some((request, end + 4))
}

async fn consume(stream: &mut TcpStream, mut len: usize) -> io::Result<()> {
    let mut sink = [0u8; 512];
    while len > 0 {
        stream.readable().await?;
        match stream.try_read(&mut sink[..len.min(512)]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => len -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn head_bytes(response: &Response<Body>, length: Option<u64>) -> Vec<u8> {
    let status = response.status();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match length {
        Some(n) => out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    // One response per connection on this path: the stream (or error) is the whole conversation.
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

async fn respond(stream: TcpStream, response: Response<Body>) -> io::Result<()> {
    let length = response.body().size_hint().exact();
    // Shared with a flusher while it writes live events to this subscriber (see `flush.rs`).
    let stream = Arc::new(stream);
    write_all(&stream, &head_bytes(&response, length)).await?;
    let mut body = response.into_body();
    if length.is_some() {
        while let Some(data) = next_batch(&stream, &mut body, false).await? {
            for b in data {
                write_all(&stream, &b).await?;
            }
        }
    } else {
        // Whether to report "nothing pending" (and try lending the socket) before waiting.
        let mut lend = true;
        loop {
            match next_batch(&stream, &mut body, lend).await? {
                Some(batch) if !batch.is_empty() => {
                    write_chunk(&stream, &batch).await?;
                    lend = true;
                }
                Some(_) => {
                    // Nothing pending: a flusher writes live events until this task is needed.
                    let Some(sub) = body.subscription_mut() else {
                        lend = false;
                        continue;
                    };
                    let sink: Arc<dyn Sink> = stream.clone();
                    if !sub.enter_direct(sink) {
                        lend = false;
                        continue;
                    }
                    // A client that went away ends the task; dropping the subscription takes
                    // the socket back from the flusher.
                    poll_fn(|cx| match client_gone(&stream, cx) {
                        Poll::Ready(e) => Poll::Ready(Err(e)),
                        Poll::Pending => sub.poll_direct(cx).map(Ok),
                    })
                    .await?;
                    if let Some(raw) = sub.leave_direct() {
                        write_all(&stream, &raw).await?;
                    }
                }
                None => break,
            }
        }
        write_all(&stream, b"0\r\n\r\n").await?;
    }
    drop(body);
    if let Ok(mut stream) = Arc::try_unwrap(stream) {
        stream.shutdown().await?;
    }
    Ok(())
}

/// A subscriber sends nothing after its request: readable means it closed (or misbehaves).
fn client_gone(stream: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Error> {
    loop {
        match stream.poll_read_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(e),
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 64];
                match stream.try_read(&mut probe) {
                    Ok(0) => return Poll::Ready(io::ErrorKind::ConnectionReset.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(e),
                }
            }
        }
    }
}

/// Waits for body frames while watching the client: `Some(frames)` with as many as are ready,
/// `Some(empty)` when the body has nothing now (a subscription may then lend its socket),
/// `None` at the end of the body, an error when the client went away.
async fn next_batch(
    stream: &TcpStream,
    body: &mut Body,
    mut lend: bool,
) -> io::Result<Option<Vec<Bytes>>> {
    poll_fn(|cx| {
        if let Poll::Ready(e) = client_gone(stream, cx) {
            return Poll::Ready(Err(e));
        }
        let mut batch: Vec<Bytes> = Vec::new();
        while batch.len() < MAX_BATCH {
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        batch.push(data);
                    }
                }
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) if batch.is_empty() => return Poll::Ready(Ok(None)),
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        if !batch.is_empty() {
            return Poll::Ready(Ok(Some(batch)));
        }
        // Report "nothing now" once, right after the body registered its waker, so the caller can
        // lend the socket; after that (no subscription, or not lendable) just wait.
        if std::mem::take(&mut lend) && body.subscription_mut().is_some() {
            return Poll::Ready(Ok(Some(Vec::new())));
        }
        Poll::Pending
    })
    .await
}

/// Writes all of `buf`.
async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        match stream.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `batch` as one HTTP/1.1 chunk with vectored writes (no copy of the shared event bytes).
async fn write_chunk(stream: &TcpStream, batch: &[Bytes]) -> io::Result<()> {
    let mut head = [0u8; 20];
    let mut slices = crate::chunk::slices(batch.iter(), &mut head);
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        stream.writable().await?;
        match stream.try_write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::time::timeout;

    use super::*;
    use crate::{Hub, Server};

    const WAIT: Duration = Duration::from_secs(10);

    async fn read_until(sock: &mut TcpStream, got: &mut Vec<u8>, needle: &[u8]) {
        while !got.windows(needle.len()).any(|w| w == needle) {
            let mut buf = [0u8; 4096];
            let n = timeout(WAIT, sock.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "closed early; got {}", String::from_utf8_lossy(got));
            got.extend_from_slice(&buf[..n]);
        }
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

    #[test]
    fn takes_only_plain_complete_subscriptions() {
        let ok = b"GET /events/news?lastEventId=3 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n";
        let (req, len) = parse_head(ok).unwrap();
        assert_eq!(len, ok.len());
        assert_eq!(req.uri().path(), "/events/news");
        assert_eq!(req.headers()["last-event-id"], "7");
        for other in [
            &b"GET /events/news HTTP/1.1\r\nHost: x\r\n"[..],
            b"GET /events/news HTTP/1.0\r\n\r\n",
            b"POST /events/news HTTP/1.1\r\n\r\n",
            b"GET /channels HTTP/1.1\r\n\r\n",
            b"GET /events/x HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            b"GET /events/x HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd",
            b"GET /events/x HTTP/1.1\r\nbad header line\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert!(
                parse_head(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
