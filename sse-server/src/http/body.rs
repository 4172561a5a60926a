use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use http_body::{Frame, SizeHint};

use crate::hub::subscription::Subscription;

/// The response body of the [`HubService`](crate::http::service::HubService): a whole buffer, or a subscriber's event
/// stream (each event is its own frame, so hyper writes and flushes it as soon as it is published).
///
/// ```
/// use http_body::Body as _;
/// let body = sse_server::Body::full("ok");
/// assert_eq!(body.size_hint().exact(), Some(2));
/// ```
pub struct Body {
    kind: Kind,
    /// The stream's places among its connection's and client's subscriptions (one guard for all its
    /// entries), released with the body.
    place: Option<crate::http::peer::Place>,
}

enum Kind {
    Full(Option<Bytes>),
    Stream(Box<Subscription>),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(b) => f.debug_tuple("Body::Full").field(b).finish(),
            Kind::Stream(s) => f.debug_tuple("Body::Stream").field(s).finish(),
        }
    }
}

impl Body {
    /// A complete body.
    ///
    /// ```
    /// let _ = sse_server::Body::full(bytes::Bytes::from_static(b"{}"));
    /// ```
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        let bytes = bytes.into();
        Body {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            place: None,
        }
    }

    /// An empty body.
    ///
    /// ```
    /// use http_body::Body as _;
    /// assert!(sse_server::Body::empty().is_end_stream());
    /// ```
    pub fn empty() -> Body {
        Body {
            kind: Kind::Full(None),
            place: None,
        }
    }

    /// A body streaming a subscription.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// let _body = sse_server::Body::stream(hub.subscribe("news", None).await?);
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream(subscription: Subscription) -> Body {
        Body {
            kind: Kind::Stream(Box::new(subscription)),
            place: None,
        }
    }
}

impl Body {
    /// Holds `place` (a subscription limit's counts: one per followed entry) until the body drops.
    pub(crate) fn holding(mut self, place: Option<crate::http::peer::Place>) -> Body {
        self.place = place;
        self
    }

    /// The subscription this body streams, if it is one (the lean HTTP/1.1 path lends its socket).
    pub(crate) fn subscription_mut(&mut self) -> Option<&mut Subscription> {
        match &mut self.kind {
            Kind::Stream(sub) => Some(sub),
            Kind::Full(_) => None,
        }
    }
}

impl Body {
    /// The next piece of the body: the whole of a full body, or one event (or control line) of a
    /// stream, never copied (the lean HTTP/1.1 path writes several with one `writev`).
    pub(crate) fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take()),
            Kind::Stream(sub) => Pin::new(&mut **sub).poll_next(cx),
        }
    }

    /// Every piece that is ready now, at most `max` (the lean paths write them together):
    /// `Ready(Some(pieces))` with at least one, `Ready(None)` at the end of the body, `Pending` when
    /// nothing is ready.
    pub(crate) fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Option<Vec<Bytes>>> {
        let mut batch: Vec<Bytes> = Vec::new();
        while batch.len() < max {
            match self.poll_event(cx) {
                Poll::Ready(Some(data)) => {
                    if !data.is_empty() {
                        batch.push(data);
                    }
                }
                Poll::Ready(None) if batch.is_empty() => return Poll::Ready(None),
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        if batch.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(Some(batch))
        }
    }
}

/// The most bytes [`Body`] puts in one frame when several events are ready (an HTTP/2 frame's
/// default largest payload).
const FRAME_BATCH: usize = 16 * 1024;

/// The most events [`Body`] puts in one frame after the first (gathered on the stack, so that the
/// frame's buffer is allocated once, at its exact size).
const FRAME_PARTS: usize = 31;

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    /// Everything the stream has ready, as one frame (up to [`FRAME_BATCH`] bytes or
    /// [`FRAME_PARTS`] events): hyper makes each frame its own HTTP/2 DATA frame or HTTP/1.1 chunk,
    /// with its own header, flow-control bookkeeping and write, so a backlog goes out in few. One
    /// event alone is passed on as is (no copy); several are copied into one buffer of exactly
    /// their size (over HTTP/2 the frame waits in the stream's send queue, so room to spare there
    /// is memory per subscriber), which costs less than a frame each.
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let first = match self.poll_event(cx) {
            Poll::Ready(Some(first)) => first,
            other => return other.map(|item| item.map(|b| Ok(Frame::data(b)))),
        };
        let mut parts: [Bytes; FRAME_PARTS] = Default::default();
        let (mut count, mut len) = (0, first.len());
        while count < FRAME_PARTS && len < FRAME_BATCH {
            let Poll::Ready(Some(next)) = self.poll_event(cx) else {
                break;
            };
            len += next.len();
            parts[count] = next;
            count += 1;
        }
        if count == 0 {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        let mut batch = BytesMut::with_capacity(len);
        batch.extend_from_slice(&first);
        for part in &parts[..count] {
            batch.extend_from_slice(part);
        }
        Poll::Ready(Some(Ok(Frame::data(batch.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use http_body::Body as _;

    use super::*;
    use crate::hub::handle::Hub;

    async fn next_frame(body: &mut Body) -> Bytes {
        let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        frame.unwrap().unwrap().into_data().unwrap()
    }

    #[tokio::test]
    async fn every_event_ready_goes_out_as_one_frame() {
        let hub = Hub::builder().build();
        let mut body = Body::stream(hub.subscribe("news", None).await.unwrap());
        for i in 0..3 {
            hub.publish("news", sse_proto::Event::message(format!("e{i}")))
                .await
                .unwrap();
        }
        let frame = String::from_utf8(next_frame(&mut body).await.to_vec()).unwrap();
        assert!(
            frame.contains("data: e0\n")
                && frame.contains("data: e1\n")
                && frame.contains("data: e2\n"),
            "{frame:?}"
        );
        // One event alone is its own frame.
        hub.publish("news", sse_proto::Event::message("e3"))
            .await
            .unwrap();
        let frame = next_frame(&mut body).await;
        assert!(frame.ends_with(b"data: e3\n\n"), "{frame:?}");
        assert!(!frame.windows(2).any(|w| w == b"e2"));
    }

    #[tokio::test]
    async fn a_backlog_longer_than_one_frame_s_parts_goes_out_whole_and_in_order() {
        let hub = Hub::builder().build();
        let mut body = Body::stream(hub.subscribe("news", None).await.unwrap());
        let total = FRAME_PARTS + 9;
        for i in 0..total {
            hub.publish("news", sse_proto::Event::message(format!("e{i}")))
                .await
                .unwrap();
        }
        let first = String::from_utf8(next_frame(&mut body).await.to_vec()).unwrap();
        assert_eq!(
            first.matches("data: ").count(),
            FRAME_PARTS + 1,
            "{first:?}"
        );
        let second = String::from_utf8(next_frame(&mut body).await.to_vec()).unwrap();
        let all = first + &second;
        let data: Vec<&str> = all
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .collect();
        let expected: Vec<String> = (0..total).map(|i| format!("e{i}")).collect();
        assert_eq!(data, expected);
    }
}
