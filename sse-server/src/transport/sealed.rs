//! A TLS subscriber on the lean HTTP/1.1 path: its socket and its record layer (keys and sequence
//! numbers, `record.rs`), after the handshake and the request head.
//!
//! Why: through tokio-rustls and hyper an idle TLS subscriber keeps hyper's 8 KiB read and 8 KiB
//! write buffers and tokio-rustls's state besides rustls's own; rustls's buffered connection alone
//! keeps 7.4 KiB (its 4 KiB read buffer is never freed, see `tests/tls_floor.rs`). Here it keeps
//! only the negotiated AEAD's keys, taken out of rustls once the handshake is done, and the
//! socket. A flusher seals the chunk it framed into records in its own reused buffer and writes
//! them at once; a partial write hands the ciphertext's rest back (records cannot be sealed twice),
//! as the plain path hands back its framed rest.
//!
//! Order on the wire: records leave in the order they were sealed. Only one side writes at a
//! time (the flusher while the socket is lent, the task otherwise). A client's KeyUpdate ends the
//! connection (see `record.rs`); it reconnects with its Last-Event-ID.

use std::io::{self, IoSlice};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConnection;

use crate::hub::lent::Sink;
use crate::transport::io::{Wire, write_all};
use crate::transport::record::{Received, Records};

/// A TLS subscriber's connection, shared by its task and (while lent) a flusher.
pub(crate) struct Sealed {
    stream: TcpStream,
    tls: Mutex<Records>,
}

impl Sealed {
    /// The socket and the rustls connection that finished its handshake on it (with nothing left
    /// to send, nothing received unread): only its keys are kept.
    pub(crate) fn new(stream: TcpStream, tls: ServerConnection) -> io::Result<Sealed> {
        Ok(Sealed {
            stream,
            tls: Mutex::new(Records::from_connection(tls)?),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        self.tls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seals `bufs` and writes the records, waiting for the socket.
    async fn write_sealed(&self, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        let mut out = Vec::new();
        self.lock().seal(bufs, &mut out)?;
        write_all(&self.stream, &out).await
    }
}

impl Sink for Sealed {
    /// Never used: a flusher calls [`Sink::try_write_sealed`] on a sealing sink.
    fn try_write_vectored(&self, _bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn try_write_sealed(&self, bufs: &[IoSlice<'_>], scratch: &mut Vec<u8>) -> Option<Bytes> {
        scratch.clear();
        // The lock is held through the write: nothing else reaches the socket between the seal
        // and the write (records must leave in the order they were sealed).
        let mut tls = self.lock();
        if let Err(e) = tls.seal(bufs, scratch) {
            // Only at the confidentiality limit, which stays: the task's next write fails the
            // same way and the connection ends. What was sealed goes with the hand-back.
            tracing::debug!(error = %e, "sealing for a TLS subscriber failed");
        }
        let written = match self.stream.try_write(scratch) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                tracing::debug!(error = %e, "direct TLS write failed; handing the subscriber back");
                0
            }
        };
        drop(tls);
        Some(Bytes::copy_from_slice(
            &scratch[written.min(scratch.len())..],
        ))
    }
}

impl Wire for Sealed {
    async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        self.write_sealed(&[IoSlice::new(buf)]).await
    }

    async fn write_all_vectored(&self, slices: &mut [IoSlice<'_>]) -> io::Result<()> {
        self.write_sealed(slices).await
    }

    async fn write_raw(&self, buf: &[u8]) -> io::Result<()> {
        write_all(&self.stream, buf).await
    }

    /// Reads what the client sends while it waits (it sends nothing after its request but TLS's
    /// own messages): records are opened, plaintext is dropped, and the end comes with the
    /// client's close_notify, EOF, a KeyUpdate (see `record.rs`) or a TLS error.
    fn poll_gone(&self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let mut buf = [0u8; 512];
        loop {
            match self.stream.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(e),
                Poll::Ready(Ok(())) => {}
            }
            let n = match self.stream.try_read(&mut buf) {
                Ok(0) => return Poll::Ready(io::ErrorKind::ConnectionReset.into()),
                Ok(n) => n,
                // Readiness was cleared by `try_read`: poll it again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(e),
            };
            match self.lock().receive(&buf[..n]) {
                Ok(Received::Nothing) => {}
                Ok(Received::Closed) => {
                    return Poll::Ready(io::ErrorKind::ConnectionReset.into());
                }
                Err(e) => return Poll::Ready(e),
            }
        }
    }

    async fn close(self) -> io::Result<()> {
        let mut out = Vec::new();
        self.lock().seal_close_notify(&mut out)?;
        write_all(&self.stream, &out).await?;
        let mut stream = self.stream;
        tokio::io::AsyncWriteExt::shutdown(&mut stream).await
    }
}
