//! The one adapter between the transport and its sockets: every `WouldBlock` and partial-write
//! rule lives here.
//!
//! A flusher writes without waiting ([`write_now`]); a connection's own task writes and reads
//! with readiness waits ([`write_all`], [`write_all_vectored`], [`consume`]) and watches for the
//! client going away ([`client_gone`]).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::hub::lent::Sink;
use crate::hub::round::Written;

impl Sink for TcpStream {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, bufs)
    }
}

/// Writes what `sink` takes of `slices` now, without waiting: all, part (the unwritten rest is
/// returned, to go out first when the connection's task writes again), or nothing (the socket is
/// full, or failed: its task sees the same error on its next write and ends the stream).
///
/// `shared(i)` gives the `Bytes` behind slice `i` when there is one (an event's own bytes): the
/// rest of a partial write then holds slices of those, never a copy, so a stalled subscriber costs
/// no more than references to the events it is owed. Other slices (framing) are copied; they are
/// a few bytes.
///
/// A sealing sink (TLS, `transport/sealed.rs`) encrypts `slices` into `scratch` (the flusher's,
/// reused) first: a partial write's rest is then ciphertext, handed back whole, and never
/// [`Written::Nothing`] once sealed (the records carry the events now; writing them again would
/// repeat them).
pub(crate) fn write_now(
    sink: &dyn Sink,
    slices: &[IoSlice<'_>],
    shared: &dyn Fn(usize) -> Option<Bytes>,
    scratch: &mut Vec<u8>,
) -> Written {
    let len: usize = slices.iter().map(|s| s.len()).sum();
    if len == 0 {
        return Written::All;
    }
    if let Some(rest) = sink.try_write_sealed(slices, scratch) {
        return if rest.is_empty() {
            Written::All
        } else {
            Written::Partial(vec![rest])
        };
    }
    let written = match sink.try_write_vectored(slices) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => {
            tracing::debug!(error = %e, "direct write failed; handing the subscriber back");
            0
        }
    };
    if written == 0 {
        return Written::Nothing;
    }
    if written >= len {
        return Written::All;
    }
    let mut rest = Vec::new();
    let mut skip = written;
    for (i, s) in slices.iter().enumerate() {
        if skip >= s.len() {
            skip -= s.len();
            continue;
        }
        rest.push(match shared(i) {
            Some(bytes) if bytes.len() == s.len() => bytes.slice(skip..),
            _ => Bytes::copy_from_slice(&s[skip..]),
        });
        skip = 0;
    }
    Written::Partial(rest)
}

/// Offers `events` to a sink that frames them itself ([`Framing::Raw`](crate::hub::lent::Framing)):
/// it takes all of them now or none ([`Written::Nothing`]: its stream has no room, or failed; its
/// task sees why and waits or ends).
pub(crate) fn write_events(sink: &dyn Sink, events: &std::sync::Arc<[Bytes]>) -> Written {
    if events.is_empty() {
        return Written::All;
    }
    match sink.try_write_events(events) {
        Ok(()) => Written::All,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Written::Nothing,
        Err(e) => {
            tracing::debug!(error = %e, "direct write failed; handing the subscriber back");
            Written::Nothing
        }
    }
}

/// A subscriber's connection as the lean path's task sees it: plain TCP, or TLS
/// (`transport/sealed.rs`). Plaintext goes in (sealed on the way out with TLS); a flusher's
/// hand-back goes out as it is.
pub(crate) trait Wire: Sink + Sized + 'static {
    /// Writes all of the plaintext `buf`.
    fn write_all(&self, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes all of the plaintext `slices`.
    fn write_all_vectored(
        &self,
        slices: &mut [IoSlice<'_>],
    ) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes bytes a flusher framed (and sealed) already, as they are.
    fn write_raw(&self, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Ready when the client went away (see [`client_gone`]).
    fn poll_gone(&self, cx: &mut Context<'_>) -> Poll<io::Error>;
    /// Ends the connection after the last bytes (FIN; with TLS a close_notify first).
    fn close(self) -> impl Future<Output = io::Result<()>> + Send;
}

impl Wire for TcpStream {
    async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        write_all(self, buf).await
    }

    async fn write_all_vectored(&self, slices: &mut [IoSlice<'_>]) -> io::Result<()> {
        write_all_vectored(self, slices).await
    }

    async fn write_raw(&self, buf: &[u8]) -> io::Result<()> {
        write_all(self, buf).await
    }

    fn poll_gone(&self, cx: &mut Context<'_>) -> Poll<io::Error> {
        client_gone(self, cx)
    }

    async fn close(mut self) -> io::Result<()> {
        tokio::io::AsyncWriteExt::shutdown(&mut self).await
    }
}

/// Writes all of `buf`.
pub(crate) async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
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

/// Writes all of `slices` with vectored writes (no copy of shared bytes).
pub(crate) async fn write_all_vectored(
    stream: &TcpStream,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
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

/// Reads and drops exactly `len` bytes (a request head already parsed from a `peek`).
pub(crate) async fn consume(stream: &mut TcpStream, mut len: usize) -> io::Result<()> {
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

/// A subscriber sends nothing after its request: readable means it closed (or misbehaves).
pub(crate) fn client_gone(stream: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Error> {
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

/// Closes `stream` gracefully: sends FIN (the client reads everything written so far), then reads
/// and drops what the client still sends, until it closes, `max_bytes` were read or `max_time`
/// passed. Closing a socket with unread bytes in its receive buffer sends RST instead, and a
/// client still sending its request (a refused one, a too large body) then gets a broken pipe
/// instead of the answer.
pub(crate) async fn linger(mut stream: TcpStream, max_time: Duration, max_bytes: usize) {
    // tokio's `shutdown` on a TCP stream is `shutdown(Write)`: a FIN, reading still works.
    if tokio::time::timeout(max_time, tokio::io::AsyncWriteExt::shutdown(&mut stream))
        .await
        .is_err()
    {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 8192];
        let mut left = max_bytes;
        while left > 0 {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut sink) {
                Ok(0) => return,
                Ok(n) => left = left.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(max_time, drain).await;
}

/// How long a closing connection keeps reading (and dropping) what its client still sends.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// How much a closing connection reads (and drops) at most: a refused publish's body (the issue's
/// example is 32 MiB) must not end in RST before the client reads the answer.
pub(crate) const CLOSE_DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// A TCP stream for hyper that, when dropped, closes gracefully ([`linger`]) in a task of its own.
///
/// Why: hyper answers a request whose body it did not read (413 before the body) and drops the
/// connection; the kernel answers unread bytes with RST, and a client still sending (curl, Python's
/// `http.client`) sees a broken pipe instead of the 413.
#[derive(Debug)]
pub(crate) struct Graceful {
    stream: Option<TcpStream>,
}

impl Graceful {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Graceful {
            stream: Some(stream),
        }
    }

    /// The socket, no longer closed gracefully on drop (its new owner closes it).
    #[cfg(feature = "tls")]
    pub(crate) fn into_inner(mut self) -> Option<TcpStream> {
        self.stream.take()
    }

    fn get(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        self.stream
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl Drop for Graceful {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(linger(stream, CLOSE_LINGER, CLOSE_DRAIN_BYTES));
        }
    }
}

impl AsyncRead for Graceful {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Graceful {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get() {
            Ok(s) => s.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// A stream whose first bytes were already read (to bound the wait for them), handed back first.
#[cfg(feature = "tls")]
#[derive(Debug)]
pub(crate) struct Rewind<T> {
    prefix: bytes::Bytes,
    inner: T,
}

#[cfg(feature = "tls")]
impl<T: AsyncRead + Unpin> Rewind<T> {
    /// Waits up to `timeout` for the first bytes of `inner`; none (timeout, EOF, error) gives none.
    pub(crate) async fn first_bytes(mut inner: T, timeout: Duration) -> Option<Self> {
        let mut buf = vec![0u8; 4096];
        let n = match tokio::time::timeout(
            timeout,
            tokio::io::AsyncReadExt::read(&mut inner, &mut buf),
        )
        .await
        {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        buf.truncate(n);
        Some(Rewind {
            prefix: bytes::Bytes::from(buf),
            inner,
        })
    }

    /// The bytes read first, and the stream after them.
    pub(crate) fn into_parts(self) -> (bytes::Bytes, T) {
        (self.prefix, self.inner)
    }

    /// The bytes read first.
    pub(crate) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The stream after the bytes read first, to change.
    pub(crate) fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

#[cfg(feature = "tls")]
impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(feature = "tls")]
impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
