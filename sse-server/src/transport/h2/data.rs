//! What goes into an HTTP/2 stream and what comes out of one: [`Data`], the events' own bytes queued
//! on a stream (shared, never copied) and counted against the stream's [`Budget`]; [`RecvBody`], a
//! request body read from a stream; [`send_body`], a whole response body sent with flow control.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use http_body::Frame;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How many bytes one stream may have handed to h2 (or held back for it) and not yet written to the
/// socket. Why a bound:
/// h2 buffers whatever `send_data` is given, without limit, until the client's flow-control window
/// and the socket take it. A round or a batch that does not fit waits (its subscriber's queue takes
/// over, and its limits disconnect a reader that never reads).
pub(crate) const STREAM_BUDGET: usize = 16 * 1024;

/// What a stream's queued bytes report to as h2 writes them (its flow: `stream.rs`). Called by h2
/// with its connection locked: take no lock that is held while calling into h2.
pub(crate) trait Report: Send + Sync + std::fmt::Debug {
    /// `n` more bytes of a frame were written to the socket (or dropped with it).
    fn written(&self, n: usize);
    /// A frame is done: all of it written, or dropped unwritten (the stream was reset).
    fn finished(&self);
}

/// Bytes queued on an HTTP/2 stream: a run of shared `Bytes` (a flusher round's events, or a batch
/// of a subscriber's queue), never copied, reported to the stream's flow ([`Report`]) as h2 writes
/// them.
#[derive(Debug)]
pub(crate) struct Data {
    parts: Arc<[Bytes]>,
    index: usize,
    offset: usize,
    remaining: usize,
    report: Option<Arc<dyn Report>>,
}

impl Data {
    /// All of `parts`, reported to `report` when there is one.
    pub(crate) fn new(parts: Arc<[Bytes]>, report: Option<Arc<dyn Report>>) -> Data {
        let remaining = parts.iter().map(Bytes::len).sum();
        let mut data = Data {
            parts,
            index: 0,
            offset: 0,
            remaining,
            report,
        };
        data.skip_empty();
        data
    }

    /// One piece, counted against no budget.
    pub(crate) fn one(bytes: Bytes) -> Data {
        Data::new(Arc::from([bytes]), None)
    }

    /// Nothing (the end of a stream).
    pub(crate) fn empty() -> Data {
        Data::new(Arc::from([]), None)
    }

    fn skip_empty(&mut self) {
        while self
            .parts
            .get(self.index)
            .is_some_and(|p| p.len() <= self.offset)
        {
            self.index += 1;
            self.offset = 0;
        }
    }
}

impl Buf for Data {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        match self.parts.get(self.index) {
            Some(part) if self.remaining > 0 => {
                let rest = part.get(self.offset..).unwrap_or_default();
                &rest[..rest.len().min(self.remaining)]
            }
            _ => &[],
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut left = self.remaining;
        let mut n = 0;
        let mut offset = self.offset;
        for part in self.parts.iter().skip(self.index) {
            if n == dst.len() || left == 0 {
                break;
            }
            let rest = part.get(offset..).unwrap_or_default();
            offset = 0;
            if rest.is_empty() {
                continue;
            }
            let take = rest.len().min(left);
            dst[n] = std::io::IoSlice::new(&rest[..take]);
            left -= take;
            n += 1;
        }
        n
    }

    fn advance(&mut self, cnt: usize) {
        let cnt = cnt.min(self.remaining);
        self.remaining -= cnt;
        let mut left = cnt;
        while left > 0 {
            let Some(part) = self.parts.get(self.index) else {
                break;
            };
            let here = part.len().saturating_sub(self.offset);
            if left < here {
                self.offset += left;
                left = 0;
            } else {
                left -= here;
                self.index += 1;
                self.offset = 0;
            }
        }
        self.skip_empty();
        if let Some(report) = &self.report {
            report.written(cnt);
            if self.remaining == 0 {
                report.finished();
                // Reported once: the drop has nothing more to say.
                self.report = None;
            }
        }
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        if let Some(report) = self.report.take() {
            report.written(self.remaining);
            report.finished();
        }
    }
}

/// A request body read from an HTTP/2 stream, its flow-control window released as it is read.
#[derive(Debug)]
pub(crate) struct RecvBody {
    stream: RecvStream,
    data_done: bool,
}

impl RecvBody {
    pub(crate) fn new(stream: RecvStream) -> RecvBody {
        RecvBody {
            stream,
            data_done: false,
        }
    }
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.stream.poll_data(cx)) {
                Some(Ok(bytes)) => {
                    let _ = self.stream.flow_control().release_capacity(bytes.len());
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.stream.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }
}

/// Why sending on a stream stopped.
pub(crate) fn gone(reason: h2::Reason) -> h2::Error {
    h2::Error::from(reason)
}

/// Waits until the stream may send (some capacity is assigned to it), or the client reset it.
async fn capacity(send: &mut SendStream<Data>, want: usize) -> Result<usize, h2::Error> {
    send.reserve_capacity(want);
    poll_fn(|cx| {
        if let Poll::Ready(reset) = send.poll_reset(cx) {
            return Poll::Ready(Err(reset.map_or_else(|e| e, gone)));
        }
        loop {
            let cap = send.capacity();
            if cap > 0 {
                return Poll::Ready(Ok(cap));
            }
            match ready!(send.poll_capacity(cx)) {
                Some(Ok(0)) => {}
                Some(Ok(n)) => return Poll::Ready(Ok(n)),
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Err(gone(h2::Reason::STREAM_CLOSED))),
            }
        }
    })
    .await
}

/// Sends `bytes` on `send` as the client's flow-control window allows, never buffering more than
/// one window's worth in h2.
pub(crate) async fn send_flowed(
    send: &mut SendStream<Data>,
    bytes: Bytes,
) -> Result<(), h2::Error> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let cap = capacity(send, rest.len().min(STREAM_BUDGET)).await?;
        let piece = rest.split_to(cap.min(rest.len()));
        send.send_data(Data::one(piece), false)?;
    }
    Ok(())
}

/// Sends a whole response body (any `http_body::Body`) with flow control, then ends the stream;
/// stops when the client resets the stream.
pub(crate) async fn send_body<B>(send: &mut SendStream<Data>, body: B) -> Result<(), BoxError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    loop {
        let frame = poll_fn(|cx| {
            if let Poll::Ready(reset) = send.poll_reset(cx) {
                return Poll::Ready(Err(BoxError::from(reset.map_or_else(|e| e, gone))));
            }
            body.as_mut()
                .poll_frame(cx)
                .map(|frame| frame.transpose().map_err(Into::into))
        })
        .await?;
        let Some(frame) = frame else {
            send.send_data(Data::empty(), true)?;
            return Ok(());
        };
        match frame.into_data() {
            Ok(mut data) => {
                let bytes = data.copy_to_bytes(data.remaining());
                send_flowed(send, bytes).await?;
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers)?;
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Log(Mutex<(usize, usize)>);

    impl Report for Log {
        fn written(&self, n: usize) {
            self.0.lock().unwrap().0 += n;
        }
        fn finished(&self) {
            self.0.lock().unwrap().1 += 1;
        }
    }

    #[test]
    fn data_walks_its_parts_and_reports_each_byte_and_its_end_once() {
        let log = Arc::new(Log::default());
        let parts: Arc<[Bytes]> = Arc::from([
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
        ]);
        let mut data = Data::new(parts.clone(), Some(log.clone()));
        assert_eq!(data.chunk(), b"ab");
        let mut slices = [std::io::IoSlice::new(&[]); 4];
        assert_eq!(data.chunks_vectored(&mut slices), 2);
        data.advance(3);
        assert_eq!(data.chunk(), b"de");
        assert_eq!(*log.0.lock().unwrap(), (3, 0));
        data.advance(2);
        assert_eq!(*log.0.lock().unwrap(), (5, 1), "written whole: finished");
        drop(data);
        assert_eq!(
            *log.0.lock().unwrap(),
            (5, 1),
            "finished once, not again on drop"
        );

        let log = Arc::new(Log::default());
        let mut data = Data::new(parts, Some(log.clone()));
        data.advance(1);
        drop(data);
        assert_eq!(
            *log.0.lock().unwrap(),
            (5, 1),
            "a frame dropped unwritten (a reset) frees its bytes and is finished"
        );
    }
}
