/// A boxed error from a transport, carried by [`Error::Transport`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in this crate.
///
/// Building an [`Event`](crate::Event) fails with one of the `Id*`/`EventType*` variants; parsing
/// reports [`Error::LineTooLong`] or [`Error::EventTooLarge`] in stream order and then goes on with the
/// next event; [`EventStream`](crate) wraps a transport failure in [`Error::Transport`].
///
/// ```
/// use sse_proto::{Error, Event};
/// let err = Event::builder().id("a\nb").build().unwrap_err();
/// assert!(matches!(err, Error::IdContainsLineBreak));
/// assert!(err.is_invalid_event());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The event id contains CR or LF, which would end the `id:` line early.
    #[error(
        "event id contains a line break (CR or LF), which the event-stream format cannot carry; remove it or encode the id (e.g. percent-encoding)"
    )]
    IdContainsLineBreak,
    /// The event id contains U+0000, which makes every browser ignore the `id:` field.
    #[error(
        "event id contains U+0000 NULL, which makes clients ignore the id field; remove the NUL character"
    )]
    IdContainsNull,
    /// The event type contains CR or LF, which would end the `event:` line early.
    #[error(
        "event type contains a line break (CR or LF), which the event-stream format cannot carry; use a single-line event name"
    )]
    EventTypeContainsLineBreak,
    /// A line was longer than the parser's limit; the event it belonged to was discarded.
    #[error(
        "a line exceeded the maximum line length of {limit} bytes, so its event was discarded; raise the limit with ParserBuilder::max_line_length if the stream is trusted"
    )]
    LineTooLong {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// An event's data grew beyond the parser's limit; the event was discarded.
    #[error(
        "an event's data exceeded the maximum event size of {limit} bytes, so the event was discarded; raise the limit with ParserBuilder::max_event_size if the stream is trusted"
    )]
    EventTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The byte stream under an [`EventStream`](crate) failed.
    #[error("the underlying byte stream failed: {0}")]
    Transport(#[source] BoxError),
}

impl Error {
    /// True for the errors an [`EventBuilder`](crate::EventBuilder) returns for values the wire cannot carry.
    pub fn is_invalid_event(&self) -> bool {
        matches!(
            self,
            Error::IdContainsLineBreak | Error::IdContainsNull | Error::EventTypeContainsLineBreak
        )
    }

    /// True when a parser limit was exceeded ([`Error::LineTooLong`] or [`Error::EventTooLarge`]).
    ///
    /// ```
    /// use sse_proto::{Item, Parser};
    /// let mut p = Parser::builder().max_line_length(10).build();
    /// p.feed(b"data: too long\n\ndata: ok\n\n");
    /// assert!(p.next().unwrap().unwrap_err().is_limit());
    /// assert!(matches!(p.next(), Some(Ok(Item::Message(m))) if m.data == "ok"));
    /// ```
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Error::LineTooLong { .. } | Error::EventTooLarge { .. }
        )
    }

    /// True when the transport under an [`EventStream`](crate) failed.
    pub fn is_transport(&self) -> bool {
        matches!(self, Error::Transport(_))
    }
}
