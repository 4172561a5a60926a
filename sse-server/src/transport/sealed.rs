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
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConnection;

use crate::hub::lent::Sink;
use crate::transport::io::{Wire, write_all};
use crate::transport::record::{Received, Records};

/// A TLS subscriber's connection, shared by its task and (while lent) a flusher.
pub(crate) struct Sealed {
    stream: TcpStream,
    tls: Mutex<Keys>,
}

/// The record layer, and how a flusher that cannot seal any more ends the connection.
struct Keys {
    records: Records,
    /// Sealing failed (the confidentiality limit, which stays): the task ends the connection
    /// (`poll_gone`), since events handed to a flusher count as written and must not vanish.
    failed: bool,
    /// The task waiting in `poll_gone`, woken when `failed` is set.
    waker: Option<Waker>,
}

impl Sealed {
    /// The socket and the rustls connection that finished its handshake on it (with nothing left
    /// to send, nothing received unread): only its keys are kept.
    pub(crate) fn new(stream: TcpStream, tls: ServerConnection) -> io::Result<Sealed> {
        Ok(Sealed {
            stream,
            tls: Mutex::new(Keys {
                records: Records::from_connection(tls)?,
                failed: false,
                waker: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Keys> {
        self.tls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seals `bufs` and writes the records, waiting for the socket.
    async fn write_sealed(&self, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        let mut out = Vec::new();
        self.lock().records.seal(bufs, &mut out)?;
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
        if let Err(e) = tls.records.seal(bufs, scratch) {
            // Only at the confidentiality limit: what was sealed still goes out, and the task
            // ends the connection (the client resumes from the last event it got).
            tracing::debug!(error = %e, "sealing for a TLS subscriber failed; ending it");
            tls.failed = true;
            if let Some(waker) = tls.waker.take() {
                waker.wake();
            }
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
            {
                // Under the lock that `failed` is set under: no wake-up is missed.
                let mut tls = self.lock();
                if tls.failed {
                    return Poll::Ready(io::Error::other("a flusher could not seal any more"));
                }
                if !tls.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    tls.waker = Some(cx.waker().clone());
                }
            }
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
            match self.lock().records.receive(&buf[..n]) {
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
        self.lock().records.seal_close_notify(&mut out)?;
        write_all(&self.stream, &out).await?;
        let mut stream = self.stream;
        tokio::io::AsyncWriteExt::shutdown(&mut stream).await
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    use super::*;

    const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-cert.pem");
    const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-key.pem");

    /// A TLS client on loopback and the server's `Sealed` for it.
    async fn connected() -> (tokio_rustls::client::TlsStream<TcpStream>, Sealed) {
        let acceptor = crate::transport::tls::tls_acceptor(CERT, KEY).unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(CERT).unwrap())
            .unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .unwrap()
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let mut server = acceptor.accept(tcp).await.unwrap();
        // The session tickets go out first: only a connection with nothing to send gives its keys.
        server.flush().await.unwrap();
        let client = client.await.unwrap();
        let (tcp, tls) = server.into_inner();
        (client, Sealed::new(tcp, tls).unwrap())
    }

    #[tokio::test]
    async fn a_flusher_that_cannot_seal_any_more_ends_the_connection() {
        let (mut client, sealed) = connected().await;
        sealed.lock().records.limit_after(1);
        let sealed = Arc::new(sealed);
        let mut scratch = Vec::new();
        let rest = sealed.try_write_sealed(&[IoSlice::new(b"one")], &mut scratch);
        assert_eq!(rest.map(|r| r.len()), Some(0));
        let mut got = [0u8; 3];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one");

        let task = Arc::clone(&sealed);
        let gone = tokio::spawn(async move { poll_fn(|cx| task.poll_gone(cx)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!gone.is_finished(), "the client is still there");
        // Past the limit: nothing is sealed, and the waiting task is told to end the connection.
        let _ = sealed.try_write_sealed(&[IoSlice::new(b"two")], &mut scratch);
        let ended = tokio::time::timeout(Duration::from_secs(10), gone).await;
        assert!(ended.is_ok(), "the task was not woken");
    }
}
