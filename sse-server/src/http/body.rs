use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
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
    /// The stream's place among its connection's and client's subscriptions, released with the body.
    place: Vec<crate::http::peer::Place>,
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
            place: Vec::new(),
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
            place: Vec::new(),
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
            place: Vec::new(),
        }
    }
}

impl Body {
    /// Holds `place` (a subscription limit's counts: one per followed entry) until the body drops.
    pub(crate) fn holding(mut self, place: Vec<crate::http::peer::Place>) -> Body {
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

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(sub) => Pin::new(&mut **sub)
                .poll_next(cx)
                .map(|item| item.map(|b| Ok(Frame::data(b)))),
        }
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
