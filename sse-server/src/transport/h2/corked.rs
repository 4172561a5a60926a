//! The socket an HTTP/2 connection writes through, corked: what h2 writes is gathered in one buffer
//! and reaches the socket in few large writes when the connection's task has nothing more to do
//! ([`Uncork`]), or when the buffer is full.
//!
//! Why: h2 hands any DATA frame of 256 B or more to the socket by itself (chained, not copied),
//! and it must flush before it can take the next frame. A flusher round that queues a few events
//! on each of 100 streams therefore cost 100 `writev`s (and, over TLS, 100 records), one per
//! stream, where HTTP/1.1 costs one per subscriber and nothing more. Corked, the same round costs
//! one or two writes of up to [`CAPACITY`] bytes for the whole connection.
//!
//! The buffer is allocated while there is something to write and freed when it is written, so an
//! idle connection keeps none, and it never holds more than [`CAPACITY`] bytes: a client that does
//! not read makes h2 wait (and its streams' budgets fill) as it did without the cork.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered before a write must reach the socket first. A round of 128 B events on 100
/// streams is about this much.
pub(crate) const CAPACITY: usize = 64 * 1024;

/// A write of at least this many bytes on an empty buffer goes to the socket directly (no copy).
const DIRECT: usize = 16 * 1024;

struct Inner<T> {
    io: T,
    /// Written by h2, not yet by the socket (`written..`).
    buf: Vec<u8>,
    written: usize,
}

/// The connection's socket as h2 sees it (see the module's doc).
pub(crate) struct Corked<T>(Arc<Mutex<Inner<T>>>);

/// Writes out what h2 gathered in its [`Corked`] socket: polled by the connection's task after h2.
pub(crate) struct Uncork<T>(Arc<Mutex<Inner<T>>>);

/// `io` corked for h2, and the handle that writes out what h2 gathered.
pub(crate) fn corked<T>(io: T) -> (Corked<T>, Uncork<T>) {
    let inner = Arc::new(Mutex::new(Inner {
        io,
        buf: Vec::new(),
        written: 0,
    }));
    (Corked(inner.clone()), Uncork(inner))
}

fn lock<T>(inner: &Mutex<Inner<T>>) -> MutexGuard<'_, Inner<T>> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: AsyncWrite + Unpin> Inner<T> {
    fn pending(&self) -> usize {
        self.buf.len() - self.written
    }

    /// Writes the buffer to the socket: ready once all of it is written (the buffer then freed).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room for a write: drains a full buffer (pending while the socket takes none of it).
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending() < CAPACITY {
            return Poll::Ready(Ok(()));
        }
        match self.poll_drain(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            // Part of it went out: room enough once the written part is dropped.
            Poll::Pending if self.written > 0 => {
                self.buf.drain(..self.written);
                self.written = 0;
                if self.buf.len() < CAPACITY {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if self.pending() == 0 && len >= DIRECT {
            return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        }
        ready!(self.poll_room(cx))?;
        let room = CAPACITY.saturating_sub(self.pending()).max(1);
        if self.buf.capacity() == 0 {
            // Once, whole: growing by doubling would copy and leave freed pieces behind.
            self.buf.reserve_exact(CAPACITY);
        }
        let mut taken = 0;
        for slice in bufs {
            let take = slice.len().min(room - taken);
            self.buf.extend_from_slice(&slice[..take]);
            taken += take;
            if taken == room {
                break;
            }
        }
        Poll::Ready(Ok(taken))
    }
}

impl<T: AsyncWrite + Unpin> Uncork<T> {
    /// Writes out everything gathered, and flushes the socket (TLS: its pending records). Pending
    /// while the socket is full; the task is woken when it can take more.
    pub(crate) fn poll_uncork(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = lock(&self.0);
        ready!(inner.poll_drain(cx))?;
        Pin::new(&mut inner.io).poll_flush(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Corked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Corked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.0).poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        lock(&self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// h2 flushes after every frame it could not copy; the real flush is [`Uncork`]'s, once h2 has
    /// written everything it had.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = lock(&self.0);
        ready!(inner.poll_drain(cx))?;
        ready!(Pin::new(&mut inner.io).poll_flush(cx))?;
        Pin::new(&mut inner.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_wait_in_the_buffer_until_uncorked() {
        let (near, mut far) = tokio::io::duplex(1024 * 1024);
        let (mut corked, uncork) = corked(near);
        corked.write_all(b"one ").await.unwrap();
        corked.write_all(b"two").await.unwrap();
        corked.flush().await.unwrap();
        let mut byte = [0u8; 1];
        let early = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            far.read_exact(&mut byte),
        )
        .await;
        assert!(
            early.is_err(),
            "nothing reaches the socket before the uncork"
        );
        poll_fn(|cx| uncork.poll_uncork(cx)).await.unwrap();
        let mut got = [0u8; 7];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two");
        assert_eq!(
            lock(&uncork.0).buf.capacity(),
            0,
            "an empty cork keeps no buffer"
        );
    }

    #[tokio::test]
    async fn a_full_buffer_waits_for_the_socket_and_nothing_is_lost() {
        // The socket takes 4 KiB at a time until read.
        let (near, mut far) = tokio::io::duplex(4096);
        let (mut corked, uncork) = corked(near);
        let data: Vec<u8> = (0..CAPACITY * 3).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            for piece in sent.chunks(1000) {
                corked.write_all(piece).await.unwrap();
            }
            poll_fn(|cx| uncork.poll_uncork(cx)).await.unwrap();
            let inner = lock(&uncork.0);
            assert!(inner.buf.capacity() == 0);
            drop(inner);
            corked
        });
        let mut got = vec![0u8; data.len()];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(got, data, "every byte arrives, in order");
        let _ = writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_blocked_socket_bounds_the_buffer_by_bytes() {
        let (near, _far) = tokio::io::duplex(4096);
        let (mut corked, uncork) = corked(near);
        let piece = vec![7u8; 1000];
        let mut accepted = 0;
        // Nobody reads: writes stop being accepted once the buffer is full (at most 1,000 tries,
        // so that an unbounded buffer fails the test instead of hanging it).
        for _ in 0..1000 {
            let wait = std::time::Duration::from_millis(20);
            match tokio::time::timeout(wait, corked.write(&piece)).await {
                Ok(Ok(n)) => accepted += n,
                _ => break,
            }
        }
        let inner = lock(&uncork.0);
        assert!(
            inner.pending() <= CAPACITY,
            "{} B gathered",
            inner.pending()
        );
        assert!(accepted <= CAPACITY + 4096, "{accepted} B accepted");
    }

    #[tokio::test]
    async fn shutdown_writes_what_was_gathered_first() {
        let (near, mut far) = tokio::io::duplex(1024 * 1024);
        let (mut corked, _uncork) = corked(near);
        corked.write_all(b"last words").await.unwrap();
        corked.shutdown().await.unwrap();
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");
    }
}
