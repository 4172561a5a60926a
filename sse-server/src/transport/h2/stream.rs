//! One SSE subscription on an HTTP/2 stream, driven like the lean HTTP/1.1 path's connection task
//! (`transport/h1/conn.rs`): queued events (a replay, heartbeats) are sent by the stream's task;
//! whenever nothing is queued, the stream lends the hub a [`Sink`] whose write is `send_data` on the
//! stream. A flusher's write is then no system call and no wake-up of this task: h2 queues the DATA
//! frame and the one connection task writes the frames of all its streams in few large writes.

use std::future::poll_fn;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use bytes::Bytes;
use h2::SendStream;

use crate::http::body::Body;
use crate::hub::lent::{Framing, Sink};
use crate::transport::flusher;
use crate::transport::h2::data::{Budget, Data, gone};

/// At most this many ready events per batch sent by the task (as on HTTP/1.1).
const MAX_BATCH: usize = 128;

/// A subscription's HTTP/2 stream, shared by its task and, while lent, a flusher.
pub(crate) struct StreamSink {
    send: Mutex<SendStream<Data>>,
    budget: Arc<Budget>,
}

impl StreamSink {
    fn new(send: SendStream<Data>) -> StreamSink {
        StreamSink {
            send: Mutex::new(send),
            budget: Arc::new(Budget::default()),
        }
    }

    fn stream(&self) -> MutexGuard<'_, SendStream<Data>> {
        self.send.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `events` in h2 (which writes them as the client's window allows).
    fn send(&self, events: Arc<[Bytes]>) -> Result<(), h2::Error> {
        let data = Data::new(events, Some(self.budget.clone()));
        self.stream().send_data(data, false)
    }

    /// Waits until `len` more bytes fit the stream's budget (`len` 0: until all were written), or
    /// the client reset the stream.
    async fn room(&self, len: usize) -> Result<(), h2::Error> {
        poll_fn(|cx| {
            if let Poll::Ready(reset) = self.stream().poll_reset(cx) {
                return Poll::Ready(Err(reset.map_or_else(|e| e, gone)));
            }
            self.budget.poll_room(len, cx).map(Ok)
        })
        .await
    }
}

impl Sink for StreamSink {
    fn try_write_vectored(&self, _bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // Never asked: the sink says it frames by itself.
        Err(io::ErrorKind::Unsupported.into())
    }

    fn framing(&self) -> Framing {
        Framing::Raw
    }

    fn try_write_events(&self, events: &Arc<[Bytes]>) -> io::Result<()> {
        let len = events.iter().map(Bytes::len).sum();
        if !self.budget.fits(len) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.send(events.clone()).map_err(io::Error::other)
    }
}

/// Streams a subscription's `body` on `send` until it ends, the client resets the stream, or the
/// connection goes away.
pub(crate) async fn drive(send: SendStream<Data>, mut body: Body) -> Result<(), h2::Error> {
    let sink = Arc::new(StreamSink::new(send));
    let mut lend = true;
    loop {
        match next_batch(&sink, &mut body, lend).await? {
            Some(batch) if !batch.is_empty() => {
                let len = batch.iter().map(Bytes::len).sum();
                sink.room(len).await?;
                sink.send(Arc::from(batch))?;
                lend = true;
            }
            Some(_) => {
                let Some(sub) = body.subscription_mut() else {
                    lend = false;
                    continue;
                };
                let lent: Arc<dyn Sink> = sink.clone();
                if !sub.enter_direct(lent, flusher::spawn) {
                    lend = false;
                    continue;
                }
                // A reset (or a connection gone) ends the task; dropping the subscription takes
                // the stream back from the flusher.
                poll_fn(|cx| match sink.stream().poll_reset(cx) {
                    Poll::Ready(reset) => Poll::Ready(Err(reset.map_or_else(|e| e, gone))),
                    Poll::Pending => sub.poll_direct(cx).map(Ok),
                })
                .await?;
                let owed: Vec<Bytes> = sub.leave_direct();
                if !owed.is_empty() {
                    sink.send(Arc::from(owed))?;
                }
            }
            // Boxed: its timer would otherwise take room in the task for the stream's whole life.
            None => return Box::pin(finish(&sink)).await,
        }
    }
}

/// Ends the stream after its last bytes; a client that does not take them (its window closed)
/// within the wait for room gets a reset, so h2 frees what it holds for the stream.
async fn finish(sink: &StreamSink) -> Result<(), h2::Error> {
    sink.stream().send_data(Data::empty(), true)?;
    let drained = tokio::time::timeout(crate::transport::io::CLOSE_LINGER, sink.room(0)).await;
    if !matches!(drained, Ok(Ok(()))) {
        sink.stream().send_reset(h2::Reason::CANCEL);
    }
    Ok(())
}

/// Waits for body frames while watching the stream: `Some(frames)` with as many as are ready,
/// `Some(empty)` when the body has nothing now (the stream may then be lent), `None` at the end of
/// the body, an error when the client reset the stream.
async fn next_batch(
    sink: &StreamSink,
    body: &mut Body,
    mut lend: bool,
) -> Result<Option<Vec<Bytes>>, h2::Error> {
    poll_fn(|cx| {
        if let Poll::Ready(reset) = sink.stream().poll_reset(cx) {
            return Poll::Ready(Err(reset.map_or_else(|e| e, gone)));
        }
        match body.poll_batch(cx, MAX_BATCH) {
            Poll::Ready(batch) => Poll::Ready(Ok(batch)),
            Poll::Pending if std::mem::take(&mut lend) => Poll::Ready(Ok(Some(Vec::new()))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
