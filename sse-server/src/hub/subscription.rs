//! A subscriber's stream, and the guard that unregisters it however the stream ends.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use tokio::time::{Instant, Sleep};

use crate::hub::channel::Channel;
use crate::hub::control;
use crate::hub::cursors::Seen;
use crate::hub::expiry::Expiry;
use crate::hub::lent::Sink;
use crate::hub::metrics::{Disconnect, Transport};
use crate::hub::queue::{Frame, QueueRx};
use crate::hub::registry::Inner;
use crate::hub::rounds::Spawn;

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
    rx: QueueRx,
    kicked: Arc<AtomicBool>,
    /// Live events at or before this position were already replayed (or seen by the client).
    seen_through: Seen,
    heartbeat: Option<(Duration, Pin<Box<Sleep>>)>,
    /// When bytes last went out: the heartbeat timer is moved lazily, when it fires, not per event
    /// (resetting a timer costs a timer-wheel update), and the clock is read once per batch (`touched`
    /// marks that something went out since), not per event.
    last_sent: Instant,
    touched: bool,
    /// Deliveries not yet added to the shared counter: it is updated once per batch, not per event.
    unreported: u64,
    done: bool,
    guard: Guard,
    /// Ends the stream with `sse-expired` when the subscriber's credentials expire.
    expiry: Option<Expiry>,
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
    /// How the stream is served (the metrics' labels).
    pub(crate) transport: Transport,
    pub(crate) channel: Arc<Channel>,
    pub(crate) id: u64,
    pub(crate) released: bool,
    /// How many channels the stream counts as in the metrics (a multi-channel stream: its entries).
    pub(crate) weight: usize,
}

impl Guard {
    /// Unregisters once: when the stream ends, or when it is dropped before that.
    fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        self.channel.remove(self.id);
        for _ in 0..self.weight {
            self.hub.metrics.unsubscribed(self.transport);
        }
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
        rx: QueueRx,
        kicked: Arc<AtomicBool>,
        guard: Guard,
        prelude: VecDeque<Bytes>,
        seen_through: impl Into<Seen>,
        heartbeat: Option<Duration>,
    ) -> Self {
        Subscription {
            prelude,
            rx,
            kicked,
            seen_through: seen_through.into(),
            heartbeat: heartbeat.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
            last_sent: Instant::now(),
            touched: false,
            unreported: 0,
            done: false,
            guard,
            expiry: None,
        }
    }

    /// The channel this subscription listens to (for a multi-channel subscription, its entries
    /// joined by commas, sorted).
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

    /// Ends the stream at `deadline` with an in-band `sse-expired` event (see
    /// [`EXPIRED_EVENT`](crate::hub::control::EXPIRED_EVENT)), for credentials that expire then; `exp` (seconds since the
    /// Unix epoch) is reported in the event's data. The client reconnects with fresh credentials and its
    /// `Last-Event-ID`, and replay fills in whatever it missed.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// let sub = hub.subscribe("news", None).await?;
    /// let mut sub = sub.expires_at(tokio::time::Instant::now(), None);
    /// let last = sub.next().await.unwrap();
    /// assert!(last.starts_with(b"event: sse-expired\n"));
    /// assert!(sub.next().await.is_none());
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn expires_at(mut self, deadline: Instant, exp: Option<u64>) -> Self {
        self.expiry = Some(Expiry::new(deadline, exp));
        self
    }

    fn report(&mut self) {
        if self.unreported > 0 {
            self.guard
                .hub
                .metrics
                .delivered
                .fetch_add(std::mem::take(&mut self.unreported), Ordering::Relaxed);
        }
    }

    fn end(&mut self) -> Poll<Option<Bytes>> {
        self.report();
        self.done = true;
        self.guard.release();
        Poll::Ready(None)
    }

    fn rearm(&mut self) {
        self.touched = true;
    }

    /// Says how the stream is served (HTTP/1.1 or HTTP/2, TLS or not), for the metrics' labels.
    pub(crate) fn served_over(&mut self, transport: Transport) {
        if self.guard.transport == Transport::Library && transport != Transport::Library {
            for _ in 0..self.guard.weight {
                self.guard.hub.metrics.moved(transport);
            }
            self.guard.transport = transport;
        }
    }

    /// Lends the subscriber's socket to one of the hub's flushers (started with `spawn` if it
    /// is not running), which then writes live events to it (see `hub/lent.rs`). Only when nothing
    /// is pending here; `false` otherwise.
    pub(crate) fn enter_direct(&mut self, sink: Arc<dyn Sink>, spawn: Spawn) -> bool {
        if self.done || self.kicked.load(Ordering::Acquire) || !self.prelude.is_empty() {
            return false;
        }
        let Some(flusher) = self.guard.hub.rounds.pick(self.guard.id, spawn) else {
            return false;
        };
        self.guard.channel.enter_direct(
            self.guard.id,
            &self.rx,
            sink,
            flusher,
            self.seen_through.clone(),
        )
    }

    /// While a flusher has the socket: ready when the task must take it back (a heartbeat or expiry
    /// is due, the subscriber was dropped, the flusher handed it back).
    pub(crate) fn poll_direct(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut take = self.kicked.load(Ordering::Acquire);
        if let Some(expiry) = &mut self.expiry
            && expiry.poll_due(cx).is_ready()
        {
            take = true;
        }
        if let Some((_, sleep)) = &mut self.heartbeat
            && sleep.as_mut().poll(cx).is_ready()
        {
            take = true;
        }
        if take {
            self.guard.channel.leave_direct(self.guard.id, &self.rx);
        }
        self.rx.poll_handback(cx)
    }

    /// Once [`Subscription::poll_direct`] is ready: the socket is back. Returns bytes of a chunk the
    /// flusher only partly wrote: they must go out first, as they are.
    pub(crate) fn leave_direct(&mut self) -> Vec<Bytes> {
        let handback = self.rx.leave_direct();
        if let Some(t) = handback.last_write
            && t > self.last_sent
        {
            self.last_sent = t;
        }
        handback.raw
    }
}

impl Stream for Subscription {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = &mut *self;
        if this.done || this.kicked.load(Ordering::Acquire) {
            return this.end();
        }
        if let Some(expiry) = &mut this.expiry
            && let Poll::Ready(farewell) = expiry.poll(cx)
        {
            this.done = true;
            this.guard.hub.metrics.disconnected(Disconnect::Expired, 1);
            return Poll::Ready(Some(farewell));
        }
        if let Some(bytes) = this.prelude.pop_front() {
            this.rearm();
            return Poll::Ready(Some(bytes));
        }
        loop {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(Frame::Event(position, bytes))) => {
                    if this.seen_through.covers(position) {
                        continue;
                    }
                    this.unreported += 1;
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
        this.report();
        if std::mem::take(&mut this.touched) && this.heartbeat.is_some() {
            this.last_sent = Instant::now();
        }
        if let Some((every, sleep)) = &mut this.heartbeat {
            while sleep.as_mut().poll(cx).is_ready() {
                let due = this.last_sent + *every;
                let now = Instant::now();
                if due <= now {
                    this.last_sent = now;
                    sleep.as_mut().reset(now + *every);
                    return Poll::Ready(Some(control::heartbeat()));
                }
                // Something was sent since the timer was set: idle time counts from then.
                sleep.as_mut().reset(due);
            }
        }
        Poll::Pending
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.report();
    }
}
