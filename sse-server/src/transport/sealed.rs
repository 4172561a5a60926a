//! A TLS subscriber on the lean HTTP/1.1 path: its socket and its rustls connection, after the
//! handshake and the request head.
//!
//! Why: through tokio-rustls and hyper an idle TLS subscriber keeps hyper's 8 KiB read and 8 KiB
//! write buffers and tokio-rustls's state besides rustls's own; here it keeps only rustls's
//! connection (its keys, and the 4 KiB read buffer rustls 0.23's buffered `ServerConnection`
//! never frees, see `tests/tls_floor.rs`) and the socket. A flusher seals the chunk it framed
//! into records in its own reused buffer and writes them at once; a partial write hands the
//! ciphertext's rest back (records cannot be sealed twice), as the plain path hands back its
//! framed rest.
//!
//! Order on the wire: records leave in the order rustls sealed them. Only one side writes at a
//! time (the flusher while the socket is lent, the task otherwise), and whatever rustls has to
//! send by itself (its KeyUpdate answering a client's `update_requested`) stays in rustls's buffer
//! until the next seal, which sends it first: TLS 1.3 asks for it before the next application data,
//! not sooner.

use std::io::{self, IoSlice, Read, Write};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConnection;

use crate::hub::lent::Sink;
use crate::transport::io::{Wire, write_all};

/// A TLS subscriber's connection, shared by its task and (while lent) a flusher.
pub(crate) struct Sealed {
    stream: TcpStream,
    /// Boxed (rustls's connection is 1,168 B inline): the connection's future takes `Sealed` by
    /// value through several async fns, and each keeps room for its argument while it runs.
    tls: Mutex<Box<ServerConnection>>,
}

impl Sealed {
    /// The socket and the rustls connection that finished its handshake on it.
    pub(crate) fn new(stream: TcpStream, mut tls: ServerConnection) -> Sealed {
        // Every plaintext write is sealed and taken out at once: no limit needed, none reached.
        tls.set_buffer_limit(None);
        Sealed {
            stream,
            tls: Mutex::new(Box::new(tls)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Box<ServerConnection>> {
        self.tls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends to `out` the records sealing `bufs` (after whatever rustls had to send already).
    fn seal(tls: &mut ServerConnection, bufs: &[IoSlice<'_>], out: &mut Vec<u8>) -> io::Result<()> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        // Without a buffer limit rustls takes everything at once; the loop is for safety.
        let mut done = tls.writer().write_vectored(bufs)?;
        while done < len {
            let mut rest = bufs.to_vec();
            let mut rest = &mut rest[..];
            IoSlice::advance_slices(&mut rest, done);
            match tls.writer().write_vectored(rest)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => done += n,
            }
        }
        while tls.wants_write() {
            tls.write_tls(out)?;
        }
        Ok(())
    }

    /// Seals `bufs` and writes the records, waiting for the socket.
    async fn write_sealed(&self, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        let mut out = Vec::new();
        Self::seal(&mut self.lock(), bufs, &mut out)?;
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
        if let Err(e) = Self::seal(&mut tls, bufs, scratch) {
            // The connection failed (rustls keeps the error): the task sees it on its next
            // write. What was sealed goes with the hand-back; nothing is sealed twice.
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

/// `try_read` as `io::Read`, for rustls's `read_tls`.
struct TryRead<'a>(&'a TcpStream);

impl Read for TryRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
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
    /// own messages): records are opened (a KeyUpdate updates the keys), plaintext is dropped,
    /// and the end comes with the client's close_notify, EOF, or a TLS error.
    fn poll_gone(&self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            match self.stream.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(e),
                Poll::Ready(Ok(())) => {}
            }
            let mut tls = self.lock();
            match tls.read_tls(&mut TryRead(&self.stream)) {
                Ok(0) => return Poll::Ready(io::ErrorKind::ConnectionReset.into()),
                Ok(_) => {}
                // Readiness was cleared by `try_read`: poll it again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(e),
            }
            let state = match tls.process_new_packets() {
                Ok(state) => state,
                Err(e) => return Poll::Ready(io::Error::new(io::ErrorKind::InvalidData, e)),
            };
            let mut left = state.plaintext_bytes_to_read();
            let mut sink = [0u8; 256];
            while left > 0 {
                match tls.reader().read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
            if state.peer_has_closed() {
                return Poll::Ready(io::ErrorKind::ConnectionReset.into());
            }
        }
    }

    async fn close(self) -> io::Result<()> {
        let mut out = Vec::new();
        {
            let mut tls = self.lock();
            tls.send_close_notify();
            while tls.wants_write() {
                tls.write_tls(&mut out)?;
            }
        }
        write_all(&self.stream, &out).await?;
        let mut stream = self.stream;
        tokio::io::AsyncWriteExt::shutdown(&mut stream).await
    }
}
