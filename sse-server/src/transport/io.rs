//! The one adapter between the transport and its sockets: every `WouldBlock` and partial-write
//! rule lives here.
//!
//! A flusher writes without waiting ([`write_now`]); a connection's own task writes and reads
//! with readiness waits ([`write_all`], [`write_all_vectored`], [`consume`]) and watches for the
//! client going away ([`client_gone`]).

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::BytesMut;
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
pub(crate) fn write_now(sink: &dyn Sink, slices: &[IoSlice<'_>]) -> Written {
    let len: usize = slices.iter().map(|s| s.len()).sum();
    if len == 0 {
        return Written::All;
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
    let mut rest = BytesMut::with_capacity(len - written);
    let mut skip = written;
    for s in slices {
        if skip >= s.len() {
            skip -= s.len();
        } else {
            rest.extend_from_slice(&s[skip..]);
            skip = 0;
        }
    }
    Written::Partial(rest.freeze())
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
