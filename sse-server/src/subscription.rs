use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use crate::Position;
use crate::channel::{Channel, Frame};
use crate::hub::Inner;
use crate::metrics::bump;

/// The comment sent on idle streams so that proxies and clients see the connection alive.
pub(crate) const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// One subscriber's stream of encoded `text/event-stream` bytes: the `retry:` hint, a welcome event, an
/// `sse-reset` event and replayed events (when resuming), then live events and heartbeat comments.
///
/// It ends when the channel is closed, when the hub shuts down (after a randomised `retry:`), or when the
/// subscriber fell too far behind (its queue overflowed). Dropping it unsubscribes.
///
/// ```
/// use futures_util::StreamExt;
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let hub = sse_server::Hub::builder().build();
/// let mut sub = hub.subscribe("news", None).await?;
/// hub.publish("news", sse_proto::Event::message("hello")).await?;
/// let bytes = sub.next().await.unwrap();
/// assert!(bytes.ends_with(b"data: hello\n\n"));
/// # Ok::<(), sse_server::Error>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Subscription {
    prelude: VecDeque<Bytes>,
    rx: mpsc::Receiver<Frame>,
    kicked: Arc<AtomicBool>,
    /// Live events at or before this position were already replayed (or seen by the client).
    seen_through: Option<Position>,
    heartbeat: Option<(Duration, Pin<Box<Sleep>>)>,
    done: bool,
    guard: Guard,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.guard.channel.name)
            .field("pending_prelude", &self.prelude.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Unregisters the subscriber however the stream ends.
pub(crate) struct Guard {
    pub(crate) hub: Arc<Inner>,
    pub(crate) channel: Arc<Channel>,
    pub(crate) id: u64,
    pub(crate) released: bool,
}

impl Guard {
    /// Unregisters once: when the stream ends, or when it is dropped before that.
    fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        self.channel.remove(self.id);
        self.hub
            .metrics
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(hook) = &self.hub.config.hooks.on_unsubscribe {
            hook(&self.channel.name);
        }
        self.hub.release(&self.channel);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.release();
    }
}

impl Subscription {
    pub(crate) fn new(
        rx: mpsc::Receiver<Frame>,
        kicked: Arc<AtomicBool>,
        guard: Guard,
        prelude: VecDeque<Bytes>,
        seen_through: Option<Position>,
        heartbeat: Option<Duration>,
    ) -> Self {
        Subscription {
            prelude,
            rx,
            kicked,
            seen_through,
            heartbeat: heartbeat.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
            done: false,
            guard,
        }
    }

    /// The channel this subscription listens to.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// assert_eq!(hub.subscribe("news", None).await?.channel(), "news");
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn channel(&self) -> &str {
        &self.guard.channel.name
    }

    fn end(&mut self) -> Poll<Option<Bytes>> {
        self.done = true;
        self.guard.release();
        Poll::Ready(None)
    }

    fn rearm(&mut self) {
        if let Some((every, sleep)) = &mut self.heartbeat {
            sleep.as_mut().reset(Instant::now() + *every);
        }
    }
}

impl Stream for Subscription {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = &mut *self;
        if this.done || this.kicked.load(Ordering::Acquire) {
            return this.end();
        }
        if let Some(bytes) = this.prelude.pop_front() {
            this.rearm();
            return Poll::Ready(Some(bytes));
        }
        loop {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(Frame::Event(position, bytes))) => {
                    if this.seen_through.is_some_and(|seen| position <= seen) {
                        continue;
                    }
                    bump(&this.guard.hub.metrics.delivered);
                    this.rearm();
                    return Poll::Ready(Some(bytes));
                }
                Poll::Ready(Some(Frame::Final(bytes))) => {
                    this.done = true;
                    return Poll::Ready(Some(bytes));
                }
                Poll::Ready(None) => return this.end(),
                Poll::Pending => break,
            }
        }
        if let Some((_, sleep)) = &mut this.heartbeat
            && sleep.as_mut().poll(cx).is_ready()
        {
            this.rearm();
            return Poll::Ready(Some(Bytes::from_static(HEARTBEAT)));
        }
        Poll::Pending
    }
}
