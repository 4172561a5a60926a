//! The `stream` feature: a `Stream` of byte chunks in, a `Stream` of parsed items out.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::error::{BoxError, Error};
use crate::parser::{Item, Parser};

pin_project_lite::pin_project! {
    /// Adapts a `Stream<Item = Result<B, E>>` of byte chunks (for example `reqwest`'s
    /// `bytes_stream()` or a hyper body) into a `Stream` of parsed [`Item`]s.
    ///
    /// Limit errors come out as `Err` items and parsing continues; a transport error comes out as
    /// [`Error::Transport`] and the underlying stream is polled again afterwards. When the underlying
    /// stream ends, an unfinished event is discarded and the stream ends.
    ///
    /// ```
    /// use futures::{executor::block_on, stream, StreamExt};
    /// use sse_proto::{EventStream, Item};
    ///
    /// let chunks = stream::iter([Ok::<_, std::io::Error>(&b"data: he"[..]), Ok(&b"llo\n\n"[..])]);
    /// let items: Vec<_> = block_on(EventStream::new(chunks).collect());
    /// assert!(matches!(&items[0], Ok(Item::Message(m)) if m.data == "hello"));
    /// assert_eq!(items.len(), 1);
    /// ```
    #[derive(Debug)]
    pub struct EventStream<S> {
        #[pin]
        inner: S,
        parser: Parser,
        done: bool,
    }
}

impl<S> EventStream<S> {
    /// Wraps `inner` with a default [`Parser`].
    ///
    /// ```
    /// let s = sse_proto::EventStream::new(futures::stream::empty::<Result<Vec<u8>, std::io::Error>>());
    /// assert_eq!(s.parser().last_event_id(), "");
    /// ```
    pub fn new(inner: S) -> Self {
        Self::with_parser(inner, Parser::new())
    }

    /// Wraps `inner` with a configured parser (limits, comments, initial last event id).
    ///
    /// ```
    /// let parser = sse_proto::Parser::builder().last_event_id("3").build();
    /// let s = sse_proto::EventStream::with_parser(futures::stream::empty::<Result<Vec<u8>, std::io::Error>>(), parser);
    /// assert_eq!(s.parser().last_event_id(), "3");
    /// ```
    pub fn with_parser(inner: S, parser: Parser) -> Self {
        EventStream {
            inner,
            parser,
            done: false,
        }
    }

    /// The parser, e.g. to read the committed [`Parser::last_event_id`].
    ///
    /// ```
    /// let s = sse_proto::EventStream::new(futures::stream::empty::<Result<Vec<u8>, std::io::Error>>());
    /// assert_eq!(s.parser().last_event_id(), "");
    /// ```
    pub fn parser(&self) -> &Parser {
        &self.parser
    }

    /// Gives back the parser (to resume on a new connection) and the inner stream.
    ///
    /// ```
    /// let s = sse_proto::EventStream::new(futures::stream::empty::<Result<Vec<u8>, std::io::Error>>());
    /// let (_inner, parser) = s.into_parts();
    /// assert_eq!(parser.last_event_id(), "");
    /// ```
    pub fn into_parts(self) -> (S, Parser) {
        (self.inner, self.parser)
    }
}

impl<S, B, E> Stream for EventStream<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: Into<BoxError>,
{
    type Item = Result<Item, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(item) = this.parser.next() {
                return Poll::Ready(Some(item));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => this.parser.feed(chunk.as_ref()),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(Error::Transport(e.into()))));
                }
                Poll::Ready(None) => {
                    this.parser.finish();
                    *this.done = true;
                }
            }
        }
    }
}
