//! What an [`EventSource`](crate::EventSource) yields, and its connection state.

pub use sse_proto::Message;

/// An item of the [`EventSource`](crate::EventSource) stream (errors come as `Err` items).
///
/// ```
/// use sse_client::{Event, Message};
/// let e = Event::Message(Message { event_type: "message".into(), data: "hi".into(), last_event_id: "1".into() });
/// assert!(matches!(e, Event::Message(m) if m.data == "hi"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection opened: 200 with `text/event-stream`. Comes again after every reconnection.
    Open,
    /// A dispatched event: its type (`message` by default), data and the last event id in force.
    Message(Message),
    /// A comment line's text after the colon (`: ping` gives `" ping"`), only when
    /// [`EventSourceBuilder::comments`](crate::EventSourceBuilder::comments) is on (off by default,
    /// as browsers drop comments). It comes as soon as its line is read, even inside an event.
    ///
    /// ```
    /// let e = sse_client::Event::Comment(" ping".into());
    /// assert!(matches!(e, sse_client::Event::Comment(text) if text == " ping"));
    /// ```
    Comment(String),
}

/// The browser's `readyState`: where the source is in its life.
///
/// ```
/// assert_ne!(sse_client::ReadyState::Open, sse_client::ReadyState::Closed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadyState {
    /// Connecting, or waiting to reconnect.
    Connecting,
    /// A connection is open and events are being read.
    Open,
    /// Closed by [`EventSource::close`](crate::EventSource::close) or a fatal error; the stream has ended.
    Closed,
}
