use std::time::Duration;

use crate::error::Error;

/// An event a server sends: `id`, `event` type, `data`, `retry` and a `comment`, each optional.
///
/// Build one with [`Event::builder`] (or [`Event::message`] for plain data) and turn it into bytes with
/// [`encode`](crate::encode). The builder refuses what the wire cannot carry, so every `Event` encodes
/// to a stream that a spec-following parser reads back exactly:
///
/// * `data` may hold any text. CR, LF and CRLF all end a line on the wire, so the builder normalises
///   every line break in `data` to LF; [`Event::data`] returns what a client will receive.
/// * `id` may not contain CR, LF or NUL; `event` may not contain CR or LF ([`Error`] says which).
/// * An empty `event` is the same as none (clients report type `message`).
///
/// ```
/// use std::time::Duration;
/// use sse_proto::Event;
///
/// let e = Event::builder()
///     .id("42")
///     .event("update")
///     .data("line one\r\nline two")
///     .retry(Duration::from_secs(5))
///     .comment("sent by the hub")
///     .build()?;
/// assert_eq!(e.data(), Some("line one\nline two"));
/// assert_eq!(e.retry(), Some(Duration::from_secs(5)));
/// # Ok::<(), sse_proto::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Event {
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: Option<String>,
    pub(crate) retry: Option<Duration>,
    pub(crate) comment: Option<String>,
}

impl Event {
    /// Starts building an event.
    ///
    /// ```
    /// let e = sse_proto::Event::builder().data("hi").build()?;
    /// assert_eq!(e.data(), Some("hi"));
    /// # Ok::<(), sse_proto::Error>(())
    /// ```
    pub fn builder() -> EventBuilder {
        EventBuilder::default()
    }

    /// An event carrying only `data` (type `message`, no id). Cannot fail: data may hold any text.
    ///
    /// ```
    /// let e = sse_proto::Event::message("a\rb");
    /// assert_eq!(e.data(), Some("a\nb"));
    /// ```
    pub fn message(data: impl Into<String>) -> Event {
        Event {
            data: Some(normalize_line_breaks(data.into())),
            ..Event::default()
        }
    }

    /// The event id, if any. `Some("")` resets the client's last event id.
    ///
    /// ```
    /// let e = sse_proto::Event::builder().id("7").build()?;
    /// assert_eq!(e.id(), Some("7"));
    /// # Ok::<(), sse_proto::Error>(())
    /// ```
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The event type, if any (clients report `message` when there is none).
    ///
    /// ```
    /// let e = sse_proto::Event::builder().event("tick").build()?;
    /// assert_eq!(e.event(), Some("tick"));
    /// # Ok::<(), sse_proto::Error>(())
    /// ```
    pub fn event(&self) -> Option<&str> {
        self.event.as_deref()
    }

    /// The data with every line break normalised to LF, exactly as a client will receive it.
    /// `None` means no `data:` line at all, so clients fire no event (an `id` still takes effect).
    ///
    /// ```
    /// assert_eq!(sse_proto::Event::message("x\r\ny").data(), Some("x\ny"));
    /// ```
    pub fn data(&self) -> Option<&str> {
        self.data.as_deref()
    }

    /// The reconnection time hint sent as `retry:` (whole milliseconds on the wire).
    ///
    /// ```
    /// use std::time::Duration;
    /// let e = sse_proto::Event::builder().retry(Duration::from_millis(1500)).build()?;
    /// assert_eq!(e.retry(), Some(Duration::from_millis(1500)));
    /// # Ok::<(), sse_proto::Error>(())
    /// ```
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// The comment, if any (sent as `:` lines, which clients ignore).
    ///
    /// ```
    /// let e = sse_proto::Event::builder().comment("keep-alive").build()?;
    /// assert_eq!(e.comment(), Some("keep-alive"));
    /// # Ok::<(), sse_proto::Error>(())
    /// ```
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// Returns the event with `id` set, checking it as [`EventBuilder::id`] does. Useful for a hub that
    /// assigns ids to events published without one.
    ///
    /// ```
    /// let e = sse_proto::Event::message("x").with_id("9")?;
    /// assert_eq!(e.id(), Some("9"));
    /// assert!(sse_proto::Event::message("x").with_id("a\0").is_err());
    /// # Ok::<(), sse_proto::Error>(())
    /// ```
    pub fn with_id(mut self, id: impl Into<String>) -> Result<Event, Error> {
        let id = id.into();
        check_id(&id)?;
        self.id = Some(id);
        Ok(self)
    }
}

/// Builds an [`Event`]; [`EventBuilder::build`] checks the values.
///
/// ```
/// let err = sse_proto::Event::builder().event("a\rb").build().unwrap_err();
/// assert!(matches!(err, sse_proto::Error::EventTypeContainsLineBreak));
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "call .build() to get the Event"]
pub struct EventBuilder {
    event: Event,
}

impl EventBuilder {
    /// Sets the id. `build` fails if it contains CR, LF or NUL.
    ///
    /// ```
    /// assert!(sse_proto::Event::builder().id("1").build().is_ok());
    /// ```
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.event.id = Some(id.into());
        self
    }

    /// Sets the event type. `build` fails if it contains CR or LF; an empty type counts as none.
    ///
    /// ```
    /// let e = sse_proto::Event::builder().event("").build()?;
    /// assert_eq!(e.event(), None);
    /// # Ok::<(), sse_proto::Error>(())
    /// ```
    pub fn event(mut self, event: impl Into<String>) -> Self {
        let event = event.into();
        self.event.event = (!event.is_empty()).then_some(event);
        self
    }

    /// Sets the data; line breaks (CR, LF, CRLF) are normalised to LF.
    ///
    /// ```
    /// let e = sse_proto::Event::builder().data("a\r\nb\rc").build()?;
    /// assert_eq!(e.data(), Some("a\nb\nc"));
    /// # Ok::<(), sse_proto::Error>(())
    /// ```
    pub fn data(mut self, data: impl Into<String>) -> Self {
        self.event.data = Some(normalize_line_breaks(data.into()));
        self
    }

    /// Sets the reconnection time hint; it goes on the wire in whole milliseconds.
    ///
    /// ```
    /// use std::time::Duration;
    /// let e = sse_proto::Event::builder().retry(Duration::from_secs(3)).build()?;
    /// assert_eq!(sse_proto::encode(&e), &b"retry: 3000\n\n"[..]);
    /// # Ok::<(), sse_proto::Error>(())
    /// ```
    pub fn retry(mut self, retry: std::time::Duration) -> Self {
        self.event.retry = Some(retry);
        self
    }

    /// Sets a comment; a multi-line comment becomes several `:` lines.
    ///
    /// ```
    /// let e = sse_proto::Event::builder().comment("hi").build()?;
    /// assert_eq!(sse_proto::encode(&e), &b": hi\n\n"[..]);
    /// # Ok::<(), sse_proto::Error>(())
    /// ```
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.event.comment = Some(comment.into());
        self
    }

    /// Checks the values and returns the event.
    ///
    /// ```
    /// let err = sse_proto::Event::builder().id("x\ny").build().unwrap_err();
    /// assert!(err.is_invalid_event());
    /// ```
    pub fn build(self) -> Result<Event, Error> {
        if let Some(id) = &self.event.id {
            check_id(id)?;
        }
        if let Some(event) = &self.event.event
            && event.contains(['\r', '\n'])
        {
            return Err(Error::EventTypeContainsLineBreak);
        }
        Ok(self.event)
    }
}

fn check_id(id: &str) -> Result<(), Error> {
    if id.contains(['\r', '\n']) {
        return Err(Error::IdContainsLineBreak);
    }
    if id.contains('\0') {
        return Err(Error::IdContainsNull);
    }
    Ok(())
}

/// Rewrites CRLF and lone CR to LF, the only line break a parser hands back. Allocates only when a CR
/// is present.
fn normalize_line_breaks(data: String) -> String {
    if !data.contains('\r') {
        return data;
    }
    let mut out = String::with_capacity(data.len());
    let mut rest = data.as_str();
    while let Some(i) = rest.find('\r') {
        out.push_str(&rest[..i]);
        out.push('\n');
        rest = &rest[i + 1..];
        if let Some(stripped) = rest.strip_prefix('\n') {
            rest = stripped;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_the_wire_cannot_carry() {
        assert!(matches!(
            Event::builder().id("a\rb").build(),
            Err(Error::IdContainsLineBreak)
        ));
        assert!(matches!(
            Event::builder().id("a\0b").build(),
            Err(Error::IdContainsNull)
        ));
        assert!(matches!(
            Event::builder().event("a\nb").build(),
            Err(Error::EventTypeContainsLineBreak)
        ));
        assert!(Event::builder().event("a\0b").build().is_ok());
    }

    #[test]
    fn normalizes_every_line_break_to_lf() {
        assert_eq!(normalize_line_breaks("a\r\n\r\rb\n".into()), "a\n\n\nb\n");
        assert_eq!(normalize_line_breaks("\r".into()), "\n");
    }
}
