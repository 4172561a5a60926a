//! One SSE subscription on an HTTP/2 stream, driven like the lean HTTP/1.1 path's connection task
//! (`transport/h1/conn.rs`): queued events (a replay, heartbeats) are sent by the stream's task;
//! whenever nothing is queued, the stream lends the hub a [`Sink`] whose write is `send_data` on the
//! stream. A flusher's write is then no system call and no wake-up of this task: h2 queues the DATA
//! frame and the one connection task writes the frames of all its streams in few large writes.

use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use h2::SendStream;

use crate::http::body::Body;
use crate::hub::lent::{Framing, Sink};
use crate::transport::flusher;
use crate::transport::h2::data::{Data, Report, STREAM_BUDGET, gone};

/// At most this many ready events per batch sent by the task (as on HTTP/1.1).
const MAX_BATCH: usize = 128;

/// The streams of one connection whose held-back events may go now (their frame in h2 was
/// written): the connection's task sends them after each pass over h2 ([`Backlog::release`]).
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    sinks: Mutex<Vec<Arc<StreamSink>>>,
    task: AtomicWaker,
}

impl Backlog {
    fn push(&self, sink: Arc<StreamSink>) {
        self.sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sink);
        self.task.wake();
    }

    /// Sends what the streams that finished a frame held back, one frame each; wakes the
    /// connection's task (`cx`) when more streams get there later.
    pub(crate) fn release(&self, cx: &mut Context<'_>) {
        self.task.register(cx.waker());
        let sinks = std::mem::take(&mut *self.sinks.lock().unwrap_or_else(|p| p.into_inner()));
        for sink in sinks {
            let mut state = sink.state();
            if sink.flow.frames.load(Ordering::SeqCst) == 0 {
                // An error is the stream's reset, which its task sees and ends on.
                let _ = sink.release(&mut state);
            }
        }
    }
}

/// A subscription's HTTP/2 stream, shared by its task and, while lent, a flusher.
///
/// Why events are held back: each frame queued in h2 costs a slot of about 300 B in the
/// connection's frame store (which never shrinks), and under load a lagging stream used to queue a
/// frame per flusher round. A stream now has at most one frame of its own in h2; what arrives
/// meanwhile waits here as references to the events (32 B each) and goes as one frame when the
/// previous one is written.
#[derive(Debug)]
pub(crate) struct StreamSink {
    state: Mutex<State>,
    flow: Arc<Flow>,
}

#[derive(Debug)]
struct State {
    send: SendStream<Data>,
    /// Events behind the frame h2 is writing, in order.
    held: Vec<Bytes>,
}

/// What the stream's frames report to as h2 writes them.
#[derive(Debug)]
struct Flow {
    /// Bytes handed to h2 or held, not written yet.
    pending: AtomicUsize,
    /// The stream's task, waiting for room.
    room: AtomicWaker,
    /// The stream's frames in h2 not written whole yet (0 or 1 but for a moment).
    frames: AtomicUsize,
    /// Events are held (`State::held` is not empty).
    holding: AtomicBool,
    sink: Weak<StreamSink>,
    backlog: Arc<Backlog>,
}

impl Report for Flow {
    fn written(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self.pending.fetch_sub(n, Ordering::AcqRel);
        // Wake the task only when a real change of room happened: half the budget freed, or all.
        if before <= STREAM_BUDGET / 2 + n || before == n {
            self.room.wake();
        }
    }

    fn finished(&self) {
        // Pairs with `StreamSink::send`: one of the two sees the other's change (both SeqCst), so
        // held events never wait for a frame that is already written.
        if self.frames.fetch_sub(1, Ordering::SeqCst) == 1
            && self.holding.load(Ordering::SeqCst)
            && let Some(sink) = self.sink.upgrade()
        {
            self.backlog.push(sink);
        }
    }
}

impl Flow {
    fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Whether `len` more bytes fit (anything fits when nothing is pending: one large event or
    /// round must not wait forever).
    fn fits(&self, len: usize) -> bool {
        let pending = self.pending();
        pending == 0 || pending.saturating_add(len) <= STREAM_BUDGET
    }

    /// Ready once `len` more bytes fit (or all were written, with `len` 0).
    fn poll_room(&self, len: usize, cx: &mut Context<'_>) -> Poll<()> {
        let ready = |flow: &Flow| flow.fits(len) && (len > 0 || flow.pending() == 0);
        if ready(self) {
            return Poll::Ready(());
        }
        self.room.register(cx.waker());
        if ready(self) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl StreamSink {
    fn new(send: SendStream<Data>, backlog: Arc<Backlog>) -> Arc<StreamSink> {
        Arc::new_cyclic(|sink| StreamSink {
            state: Mutex::new(State {
                send,
                held: Vec::new(),
            }),
            flow: Arc::new(Flow {
                pending: AtomicUsize::new(0),
                room: AtomicWaker::new(),
                frames: AtomicUsize::new(0),
                holding: AtomicBool::new(false),
                sink: sink.clone(),
                backlog,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `events` in h2 (which writes them as the client's window allows), or holds them
    /// behind the stream's frame in h2.
    fn send(&self, events: Arc<[Bytes]>) -> Result<(), h2::Error> {
        let len: usize = events.iter().map(Bytes::len).sum();
        self.flow.pending.fetch_add(len, Ordering::AcqRel);
        let mut state = self.state();
        if state.held.is_empty() && self.flow.frames.load(Ordering::SeqCst) == 0 {
            return self.send_frame(&mut state, events);
        }
        state.held.extend(events.iter().cloned());
        self.flow.holding.store(true, Ordering::SeqCst);
        if self.flow.frames.load(Ordering::SeqCst) == 0 {
            // The frame was written meanwhile, perhaps before `holding` was seen.
            return self.release(&mut state);
        }
        Ok(())
    }

    /// Sends the held events as one frame.
    fn release(&self, state: &mut State) -> Result<(), h2::Error> {
        self.flow.holding.store(false, Ordering::SeqCst);
        if state.held.is_empty() {
            return Ok(());
        }
        let held = Arc::from(std::mem::take(&mut state.held));
        self.send_frame(state, held)
    }

    fn send_frame(&self, state: &mut State, parts: Arc<[Bytes]>) -> Result<(), h2::Error> {
        self.flow.frames.fetch_add(1, Ordering::SeqCst);
        let report: Arc<dyn Report> = self.flow.clone();
        // On an error h2 drops the frame, which reports it finished.
        state.send.send_data(Data::new(parts, Some(report)), false)
    }

    /// Waits until `len` more bytes fit the stream's budget (`len` 0: until all were written), or
    /// the client reset the stream.
    async fn room(&self, len: usize) -> Result<(), h2::Error> {
        poll_fn(|cx| {
            if let Poll::Ready(reset) = self.state().send.poll_reset(cx) {
                return Poll::Ready(Err(reset.map_or_else(|e| e, gone)));
            }
            self.flow.poll_room(len, cx).map(Ok)
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
        if !self.flow.fits(len) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.send(events.clone()).map_err(io::Error::other)
    }
}

/// Streams a subscription's `body` on `send` until it ends, the client resets the stream, or the
/// connection goes away.
pub(crate) async fn drive(
    send: SendStream<Data>,
    mut body: Body,
    backlog: Arc<Backlog>,
) -> Result<(), h2::Error> {
    let sink = StreamSink::new(send, backlog);
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
                poll_fn(|cx| match sink.state().send.poll_reset(cx) {
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
    {
        let mut state = sink.state();
        sink.release(&mut state)?;
        state.send.send_data(Data::empty(), true)?;
    }
    let drained = tokio::time::timeout(crate::transport::io::CLOSE_LINGER, sink.room(0)).await;
    if !matches!(drained, Ok(Ok(()))) {
        sink.state().send.send_reset(h2::Reason::CANCEL);
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
        if let Poll::Ready(reset) = sink.state().send.poll_reset(cx) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};

    /// Events sent while the stream's frame is still in h2 wait, and leave together, in order, as
    /// the next frame once the connection's task has written the first.
    #[tokio::test]
    async fn events_sent_behind_a_frame_in_h2_go_next_as_one_frame_in_order() {
        let (near, far) = tokio::io::duplex(1 << 20);
        let client = tokio::spawn(async move {
            let (mut send, conn) = h2::client::handshake(near).await.unwrap();
            tokio::spawn(conn);
            let request = Request::get("http://x/events").body(()).unwrap();
            let (response, _) = send.send_request(request, true).unwrap();
            let mut body = response.await.unwrap().into_body();
            let mut frames = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
                // The end of the stream comes as an empty frame.
                if !chunk.is_empty() {
                    frames.push(chunk);
                }
            }
            frames
        });
        let mut conn = h2::server::Builder::new()
            .handshake::<_, Data>(far)
            .await
            .unwrap();
        let (_request, mut respond) = conn.accept().await.unwrap().unwrap();
        let send = respond.send_response(Response::new(()), false).unwrap();
        let backlog = Arc::new(Backlog::default());
        let sink = StreamSink::new(send, backlog.clone());
        for event in [&b"a"[..], b"b", b"c"] {
            sink.send(Arc::from([Bytes::from_static(event)])).unwrap();
        }
        assert_eq!(sink.state().held.len(), 2, "one frame in h2, the rest held");
        assert_eq!(sink.flow.pending(), 3);
        // The connection's task: h2's pass, then the streams whose frame was written.
        let driver = tokio::spawn(async move {
            poll_fn(|cx| {
                let closed = conn.poll_accept(cx).map(|_| ());
                backlog.release(cx);
                closed
            })
            .await;
        });
        let written = tokio::time::timeout(std::time::Duration::from_secs(10), sink.room(0)).await;
        assert!(
            matches!(written, Ok(Ok(()))),
            "the held events go once the first frame is written"
        );
        assert!(sink.state().held.is_empty());
        finish(&sink).await.unwrap();
        let frames = client.await.unwrap();
        assert_eq!(frames, [&b"a"[..], b"bc"]);
        driver.abort();
    }
}
