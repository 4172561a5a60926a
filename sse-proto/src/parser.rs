//! Bytes → items, following the WHATWG "event stream interpretation" rules line by line.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::decode::{decode_into, push_str_in_pieces};
use crate::error::Error;
use crate::field::split_field;
use crate::limits::Limits;
use crate::text::Text;

/// A dispatched event, as a browser's `MessageEvent` would report it.
///
/// The fields are [`Text`]s: slices of the chunk the parser decoded them from, shared rather than
/// copied. They dereference to `&str` and compare with string literals.
///
/// ```
/// let m = sse_proto::Message {
///     event_type: "message".into(),
///     data: "hi".into(),
///     last_event_id: Default::default(),
/// };
/// assert_eq!(m.data, "hi");
/// assert_eq!(m.data.as_str(), "hi");
/// assert!(m.last_event_id.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// The `event:` field of the event, or `message` when it had none.
    pub event_type: Text,
    /// The `data:` lines joined with LF.
    pub data: Text,
    /// The last event id in force when the event was dispatched (ids persist across events).
    pub last_event_id: Text,
}

/// What a [`Parser`] produces, in stream order.
///
/// ```
/// use std::time::Duration;
/// use sse_proto::{Item, Parser};
/// let mut p = Parser::new();
/// p.feed(b"retry: 2500\n");
/// assert!(matches!(p.next(), Some(Ok(Item::Retry(d))) if d == Duration::from_millis(2500)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Item {
    /// A dispatched event (a blank line ended an event whose data buffer was not empty).
    Message(Message),
    /// A valid `retry:` field (ASCII digits only): the new reconnection time.
    Retry(Duration),
    /// A comment line's text after the colon, only when [`ParserBuilder::comments`] is on.
    Comment(String),
}

/// Configures a [`Parser`].
///
/// ```
/// let parser = sse_proto::Parser::builder()
///     .max_line_length(64 * 1024)
///     .max_event_size(1024 * 1024)
///     .comments(true)
///     .last_event_id("41")
///     .build();
/// assert_eq!(parser.last_event_id(), "41");
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "call .build() to get the Parser"]
pub struct ParserBuilder {
    limits: Limits,
    comments: bool,
    last_event_id: String,
}

impl ParserBuilder {
    /// Sets both limits at once.
    ///
    /// ```
    /// let p = sse_proto::Parser::builder().limits(sse_proto::Limits::default()).build();
    /// # drop(p);
    /// ```
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Longest accepted line in bytes (default 1 MiB).
    ///
    /// ```
    /// let p = sse_proto::Parser::builder().max_line_length(4096).build();
    /// # drop(p);
    /// ```
    pub fn max_line_length(mut self, bytes: usize) -> Self {
        self.limits.max_line_length = bytes;
        self
    }

    /// Largest accepted data buffer of one event in bytes (default 16 MiB).
    ///
    /// ```
    /// let p = sse_proto::Parser::builder().max_event_size(1 << 20).build();
    /// # drop(p);
    /// ```
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.limits.max_event_size = bytes;
        self
    }

    /// Also yield comment lines as [`Item::Comment`] (default: off, as browsers do).
    ///
    /// ```
    /// use sse_proto::{Item, Parser};
    /// let mut p = Parser::builder().comments(true).build();
    /// p.feed(b":ping\n");
    /// assert_eq!(p.next().unwrap().unwrap(), Item::Comment("ping".into()));
    /// ```
    pub fn comments(mut self, on: bool) -> Self {
        self.comments = on;
        self
    }

    /// Starts with this last event id, as a client resuming a stream does.
    ///
    /// ```
    /// use sse_proto::{Item, Parser};
    /// let mut p = Parser::builder().last_event_id("7").build();
    /// p.feed(b"data: x\n\n");
    /// assert!(matches!(p.next(), Some(Ok(Item::Message(m))) if m.last_event_id == "7"));
    /// ```
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = id.into();
        self
    }

    /// Builds the parser.
    ///
    /// ```
    /// let p = sse_proto::Parser::builder().build();
    /// assert_eq!(p.last_event_id(), "");
    /// ```
    pub fn build(self) -> Parser {
        Parser {
            limits: self.limits,
            comments: self.comments,
            ready: VecDeque::new(),
            pending: String::new(),
            utf8_tail: Vec::new(),
            scanned: 0,
            frozen: None,
            pos: 0,
            skipping_line: false,
            pending_cr: false,
            at_stream_start: true,
            discarding_event: false,
            data: Field::default(),
            has_data: false,
            event_type: Field::default(),
            id_buffer: Field::default(),
            id_pending: false,
            last_event_id: Text::from(self.last_event_id),
        }
    }
}

/// An incremental event-stream parser: feed byte chunks of any size, take [`Item`]s out.
///
/// The parser follows the WHATWG rules exactly: one leading BOM is dropped; CRLF, LF and CR all end a
/// line (a CR at the end of one chunk and an LF at the start of the next are one line end); UTF-8 split
/// across chunks is reassembled and invalid sequences become U+FFFD; comments and unknown fields are
/// ignored; an `id` containing NUL is ignored; `retry` counts only when it is all ASCII digits; a blank
/// line dispatches the event, unless its data buffer is empty; the last event id persists across events.
///
/// Items come out through [`Iterator`]: after each [`feed`](Parser::feed), call `next()` until it returns
/// `None` (which only means "need more bytes"). Lines are interpreted as items are taken, one item at a
/// time, so a consumer that drops each item before taking the next keeps the allocator's per-thread
/// caches warm. A limit violation comes out as an `Err` item in stream order; the event it occurred in
/// is discarded whole and parsing goes on with the next event. Call [`finish`](Parser::finish) when the
/// stream ends: it discards an unfinished line and event (the spec's rule) and readies the parser for a
/// new connection, keeping the last event id.
///
/// Memory stays bounded by the [`Limits`]: at most one partial line and one event's data are held, plus
/// the items not taken yet. Fed bytes wait unparsed only up to the line limit (plus the last chunk):
/// beyond that, `feed` interprets them at once.
/// A taken [`Message`] is no copy: its fields are [`Text`] slices of the decoded text its lines came
/// from, so it keeps that text (at most the complete lines of one refill) alive while it lives.
///
/// ```
/// use sse_proto::{Item, Parser};
///
/// let mut parser = Parser::new();
/// for chunk in [&b"\xEF\xBB\xBFid: 1\r"[..], b"\ndata: caf\xC3", b"\xA9\r\n\r\n"] {
///     parser.feed(chunk);
/// }
/// let Some(Ok(Item::Message(m))) = parser.next() else { panic!() };
/// assert_eq!((m.data.as_str(), m.last_event_id.as_str()), ("café", "1"));
/// assert!(parser.next().is_none());
/// parser.finish();
/// assert_eq!(parser.last_event_id(), "1");
/// ```
#[derive(Debug, Clone)]
pub struct Parser {
    limits: Limits,
    comments: bool,
    /// Items interpreted ahead of `next()`: by [`Parser::finish`], or by `feed` when more than a line's
    /// worth of bytes waits unparsed. Taken before anything else.
    ready: VecDeque<Result<Item, LimitError>>,
    /// The stream decoded, after `frozen`: lines not moved to `frozen` yet, the last one unfinished.
    pending: String,
    /// The start of a character the last chunk cut off (see [`decode_into`]).
    utf8_tail: Vec<u8>,
    /// `pending[..scanned]` holds no line end: the search resumes here, so a long line arriving in
    /// small chunks is scanned once.
    scanned: usize,
    /// Complete lines (it ends with a line end), shared with the messages sliced from it; what is
    /// not interpreted yet is `frozen[pos..]`. `None` while lent out to [`Parser::parse`].
    frozen: Option<Arc<String>>,
    pos: usize,
    /// The current line exceeded the limit: drop bytes until its end.
    skipping_line: bool,
    /// The previous line ended with a CR that was the last byte of `frozen`: an LF right after it
    /// belongs to it.
    pending_cr: bool,
    /// The next line is the first of the stream (it may start with a BOM).
    at_stream_start: bool,
    /// A limit was exceeded inside the current event: ignore lines up to the next blank line.
    discarding_event: bool,
    /// The data buffer without its final LF; `has_data` tells an empty buffer from one empty line.
    data: Field,
    has_data: bool,
    event_type: Field,
    /// The `id:` of the current event, when `id_pending`.
    id_buffer: Field,
    id_pending: bool,
    last_event_id: Text,
}

/// A field value of the current event: a range of `frozen`, or a copy once it spans several lines
/// or outlived its `frozen`.
#[derive(Debug, Clone, Default)]
struct Field {
    span: Option<(usize, usize)>,
    /// The value when `span` is `None`; keeps its capacity across events.
    owned: String,
}

impl Field {
    fn get<'a>(&'a self, frozen: &'a str) -> &'a str {
        match self.span {
            Some((start, end)) => &frozen[start..end],
            None => &self.owned,
        }
    }

    /// Sets the value to `value`: a range when it is a slice of `frozen` (always, as called), a copy
    /// otherwise.
    fn set(&mut self, frozen: &str, value: &str) {
        let start = value.as_ptr().addr().wrapping_sub(frozen.as_ptr().addr());
        if start <= frozen.len() && value.len() <= frozen.len() - start {
            self.span = Some((start, start + value.len()));
        } else {
            self.span = None;
            self.owned.clear();
            self.owned.push_str(value);
        }
    }

    /// Turns a range of `frozen` into a copy, before `frozen` goes.
    fn detach(&mut self, frozen: &str) {
        if let Some((start, end)) = self.span.take() {
            self.owned.clear();
            push_str_in_pieces(&mut self.owned, &frozen[start..end]);
        }
    }

    fn clear(&mut self) {
        self.span = None;
        self.owned.clear();
        if self.owned.capacity() > KEEP_CAPACITY {
            self.owned = String::new();
        }
    }

    /// The value as a [`Text`] (`empty`'s when it is empty), leaving the field empty.
    #[inline(always)]
    fn take_text(&mut self, frozen: &Arc<String>, empty: &str) -> Text {
        match self.span.take() {
            // `owned` may hold an older value: a range wins over it.
            Some((start, end)) => {
                self.owned.clear();
                if start < end {
                    Text::shared(frozen, start, end)
                } else {
                    Text::from(empty)
                }
            }
            None => self.take_owned(empty),
        }
    }

    /// [`Field::take_text`] of a copied value, out of line (the common case is a range).
    #[inline(never)]
    fn take_owned(&mut self, empty: &str) -> Text {
        let text = match self.owned.as_str() {
            "" => Text::from(empty),
            owned => Text::from(owned),
        };
        self.clear();
        text
    }
}

/// Parser errors are only ever limit errors; keeping them `Clone` keeps the parser `Clone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LimitError {
    LineTooLong(usize),
    EventTooLarge(usize),
}

impl From<LimitError> for Error {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::LineTooLong(limit) => Error::LineTooLong { limit },
            LimitError::EventTooLarge(limit) => Error::EventTooLarge { limit },
        }
    }
}

/// What one line of the stream amounts to.
type Step = Option<Result<Item, LimitError>>;

const BOM: char = '\u{FEFF}';
/// A buffer that grew beyond this is released once empty rather than kept.
const KEEP_CAPACITY: usize = 64 * 1024;

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    /// A parser with default [`Limits`], no comment items and an empty last event id.
    ///
    /// ```
    /// let mut p = sse_proto::Parser::new();
    /// p.feed(b"data: x\n\n");
    /// assert!(p.next().is_some());
    /// ```
    pub fn new() -> Parser {
        ParserBuilder::default().build()
    }

    /// Configures a parser.
    ///
    /// ```
    /// let p = sse_proto::Parser::builder().comments(true).build();
    /// # drop(p);
    /// ```
    pub fn builder() -> ParserBuilder {
        ParserBuilder::default()
    }

    /// The last event id committed by a dispatch (a blank line), which is what a client sends as
    /// `Last-Event-ID` when it reconnects. An `id:` inside an event that has not ended yet does not count;
    /// an id-only block (`id: 9` then a blank line) does, even though it fires no event. Lines count
    /// once they are interpreted: as items are taken (until `next()` returns `None`), or at
    /// [`finish`](Parser::finish).
    ///
    /// ```
    /// let mut p = sse_proto::Parser::new();
    /// p.feed(b"id: 9\n\nid: 10\ndata: unfinished\n");
    /// assert!(p.next().is_none());
    /// assert_eq!(p.last_event_id(), "9");
    /// ```
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The limits this parser enforces.
    ///
    /// ```
    /// assert_eq!(sse_proto::Parser::new().limits(), sse_proto::Limits::default());
    /// ```
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Feeds the next chunk of the stream. Its lines are interpreted as items are taken with
    /// `next()`; an unfinished line is kept (up to the line limit) until its end arrives.
    ///
    /// ```
    /// let mut p = sse_proto::Parser::new();
    /// p.feed(b"data: a");
    /// assert!(p.next().is_none());
    /// p.feed(b"b\n\n");
    /// assert!(p.next().is_some());
    /// ```
    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        decode_into(&mut self.pending, &mut self.utf8_tail, chunk);
        if self.unparsed() > self.limits.max_line_length {
            // A caller feeding without taking items: interpret now, so what is held stays bounded
            // by the line limit (an overlong line is dropped as it arrives) plus the ready items.
            while let Some(item) = self.parse() {
                self.ready.push_back(item);
            }
        }
    }

    /// Bytes of decoded text fed and not interpreted yet.
    fn unparsed(&self) -> usize {
        let frozen = self.frozen.as_ref().map_or(0, |f| f.len() - self.pos);
        frozen + self.pending.len()
    }

    /// Ends the stream: an unfinished line or event is discarded, as the spec requires, and the parser
    /// is ready for the next connection's bytes (which may start with a BOM again). The last event id
    /// is kept. The items of the complete lines fed before stay available.
    ///
    /// ```
    /// use sse_proto::{Item, Parser};
    /// let mut p = Parser::new();
    /// p.feed(b"id: 1\ndata: never finished\n");
    /// p.finish();
    /// assert!(p.next().is_none());
    /// assert_eq!(p.last_event_id(), "");
    /// ```
    pub fn finish(&mut self) {
        while let Some(item) = self.parse() {
            self.ready.push_back(item);
        }
        self.release_frozen();
        self.pending.clear();
        if self.pending.capacity() > KEEP_CAPACITY {
            self.pending = String::new();
        }
        self.scanned = 0;
        // A character cut off by the end of the stream is in the unfinished line: gone with it.
        self.utf8_tail.clear();
        self.skipping_line = false;
        self.pending_cr = false;
        self.at_stream_start = true;
        self.discarding_event = false;
        self.data.clear();
        self.has_data = false;
        self.event_type.clear();
        self.id_buffer.clear();
        self.id_pending = false;
    }

    /// Drops `frozen` (all of it interpreted), first copying what still refers to it, so that
    /// nothing the parser keeps holds a whole chunk alive.
    fn release_frozen(&mut self) {
        let Some(frozen) = self.frozen.take() else {
            return;
        };
        self.pos = 0;
        self.data.detach(&frozen);
        self.event_type.detach(&frozen);
        self.id_buffer.detach(&frozen);
        if self.last_event_id.is_in(&frozen) {
            self.last_event_id = Text::from(self.last_event_id.as_str());
        }
    }

    /// Moves the complete lines of `pending` into a new `frozen`. `Ok(false)`: no complete line
    /// yet; an error when the unfinished line grew beyond the limit.
    fn refill(&mut self) -> Result<bool, LimitError> {
        if self.pending_cr && !self.pending.is_empty() {
            // `frozen` ended with a CR: the byte after it decides, before the unfinished line is
            // measured or dropped.
            self.pending_cr = false;
            if self.pending.starts_with('\n') {
                self.pending.drain(..1);
                self.scanned = self.scanned.saturating_sub(1);
            }
        }
        let unscanned = &self.pending.as_bytes()[self.scanned..];
        let Some(last_end) = memchr::memrchr2(b'\r', b'\n', unscanned) else {
            self.scanned = self.pending.len();
            if self.skipping_line {
                self.pending.clear();
                self.scanned = 0;
            } else if self.pending.len() > self.limits.max_line_length {
                self.pending.clear();
                self.scanned = 0;
                self.skipping_line = true;
                return Err(self.line_too_long());
            }
            return Ok(false);
        };
        let cut = self.scanned + last_end + 1;
        self.release_frozen();
        // The complete lines move into the shared buffer as they are (no copy); only the unfinished
        // last line is copied, into the next `pending`.
        let tail = &self.pending[cut..];
        let mut next =
            String::with_capacity(self.pending.capacity().min(KEEP_CAPACITY).max(tail.len()));
        next.push_str(tail);
        self.pending.truncate(cut);
        self.frozen = Some(Arc::new(std::mem::replace(&mut self.pending, next)));
        self.scanned = 0;
        Ok(true)
    }

    /// Interprets lines until one yields an item or the complete lines run out. Generic over the
    /// error type so that `next()` gets its item in the very form it returns (a conversion after
    /// the fact moved every item once more).
    fn parse<E: From<LimitError>>(&mut self) -> Option<Result<Item, E>> {
        loop {
            let pos = self.pos;
            // Nothing left to interpret (always so between bytes fed one at a time): refill.
            if let Some(frozen) = self.frozen.take_if(|frozen| frozen.len() > pos) {
                // Lines borrow from `frozen` while the rest of the parser changes: lent out meanwhile.
                let mut item = None;
                loop {
                    if let Some(message) = self.common_lines(&frozen) {
                        item = Some(Ok(message));
                        break;
                    }
                    // A line of another shape (or in another state), or the end of `frozen`.
                    let Some(line) = self.take_line(&frozen) else {
                        break;
                    };
                    item = match line {
                        Ok(line) => match self.process_line(line, &frozen) {
                            Some(Ok(line_item)) => Some(Ok(line_item)),
                            Some(Err(error)) => Some(Err(E::from(error))),
                            None => None,
                        },
                        Err(error) => Some(Err(E::from(error))),
                    };
                    if item.is_some() {
                        break;
                    }
                }
                self.frozen = Some(frozen);
                if item.is_some() {
                    return item;
                }
            }
            match self.refill() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(error) => return Some(Err(E::from(error))),
            }
        }
    }

    /// Interprets the lines of the shapes nearly every stream is made of (`data:`, `id:`, `event:`
    /// and the blank line, LF-terminated, within the limits, one `data` line per event) straight
    /// from `frozen`, dispatched on their first byte, up to the first message. It stops without
    /// touching a line of any other shape, or in any state but the plain one (a CR to resolve, a
    /// line or event being dropped, the stream's first line), for [`Parser::take_line`] and
    /// [`Parser::process_line`] to interpret; what it does interpret, it does as they would.
    #[inline(always)]
    fn common_lines(&mut self, frozen: &Arc<String>) -> Option<Item> {
        if self.pending_cr || self.skipping_line || self.at_stream_start || self.discarding_event {
            return None;
        }
        let buf = frozen.as_bytes();
        loop {
            let start = self.pos;
            let rest = buf.get(start..)?;
            let len = find_line_end(rest)?;
            if rest[len] != b'\n' || len > self.limits.max_line_length {
                return None;
            }
            let line = &rest[..len];
            // The value after `name:` and one optional space, as a range of `frozen`; the name is
            // ASCII and the line ends at an LF, so both ends are character boundaries.
            let value = |name: usize| {
                let from = if line.get(name) == Some(&b' ') {
                    name + 1
                } else {
                    name
                };
                (start + from, start + len)
            };
            match line.first() {
                None => {
                    self.pos = start + 1;
                    if let Some(item) = self.dispatch(frozen) {
                        return Some(item);
                    }
                }
                Some(b'd') if line.starts_with(b"data:") => {
                    let (from, to) = value(5);
                    if self.has_data || to - from + 1 > self.limits.max_event_size {
                        return None;
                    }
                    self.data.span = Some((from, to));
                    self.has_data = true;
                }
                Some(b'i') if line.starts_with(b"id:") => {
                    let (from, to) = value(3);
                    if buf[from..to].contains(&0) {
                        return None;
                    }
                    self.id_buffer.span = Some((from, to));
                    self.id_pending = true;
                }
                Some(b'e') if line.starts_with(b"event:") => {
                    self.event_type.span = Some(value(6));
                }
                Some(_) => return None,
            }
            self.pos = start + len + 1;
        }
    }

    /// The next line of `frozen` (lent out by [`Parser::parse`]), or its limit error; `None` when
    /// all of it is interpreted.
    fn take_line<'b>(&mut self, text: &'b str) -> Option<Result<&'b str, LimitError>> {
        let buf = text.as_bytes();
        loop {
            if self.pending_cr {
                let &first = buf.get(self.pos)?;
                self.pending_cr = false;
                if first == b'\n' {
                    self.pos += 1;
                }
            }
            let start = self.pos;
            // `frozen` ends with a line end: only an empty rest has none.
            let end = start + find_line_end(buf.get(start..)?)?;
            self.pos = match (buf[end], buf.get(end + 1)) {
                (b'\r', Some(b'\n')) => end + 2,
                (b'\r', None) => {
                    self.pending_cr = true;
                    end + 1
                }
                _ => end + 1,
            };
            if self.skipping_line {
                // The rest of an overlong line, already reported: the next line is a new one.
                self.skipping_line = false;
                continue;
            }
            // Both ends are next to a CR or LF, so on character boundaries.
            let line = &text[start..end];
            if line.len() > self.limits.max_line_length {
                return Some(Err(self.line_too_long()));
            }
            return Some(Ok(line));
        }
    }

    fn line_too_long(&mut self) -> LimitError {
        self.at_stream_start = false;
        self.fail(LimitError::LineTooLong(self.limits.max_line_length))
    }

    /// Discards the event a limit error happened in.
    fn fail(&mut self, error: LimitError) -> LimitError {
        self.discarding_event = true;
        self.data.clear();
        self.has_data = false;
        self.event_type.clear();
        error
    }

    fn process_line(&mut self, mut line: &str, frozen: &Arc<String>) -> Step {
        if self.at_stream_start {
            self.at_stream_start = false;
            if let Some(rest) = line.strip_prefix(BOM) {
                line = rest;
            }
        }
        if self.discarding_event {
            if line.is_empty() {
                self.discarding_event = false;
                self.id_pending = false;
            }
            return None;
        }
        match line.as_bytes().first() {
            None => self.dispatch(frozen).map(Ok),
            Some(b':') if self.comments => Some(Ok(Item::Comment(line[1..].to_owned()))),
            Some(b':') => None,
            Some(_) => self.field(line, frozen),
        }
    }

    fn field(&mut self, line: &str, frozen: &str) -> Step {
        let (name, value) = split_field(line);
        match name {
            "data" => return self.data_line(value, frozen),
            "event" => self.event_type.set(frozen, value),
            // An id containing NUL is ignored whole.
            "id" if memchr::memchr(0, value.as_bytes()).is_none() => {
                self.id_buffer.set(frozen, value);
                self.id_pending = true;
            }
            // Only an all-digit value counts; overlong values saturate instead of wrapping.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                let millis = value.bytes().fold(0u64, |acc, d| {
                    acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                return Some(Ok(Item::Retry(Duration::from_millis(millis))));
            }
            _ => {}
        }
        None
    }

    fn data_line(&mut self, value: &str, frozen: &str) -> Step {
        // The spec's buffer holds an LF after every line: count it as the limit always did.
        let held = if self.has_data {
            self.data.get(frozen).len() + 1
        } else {
            0
        };
        if held + value.len() + 1 > self.limits.max_event_size {
            return Some(Err(
                self.fail(LimitError::EventTooLarge(self.limits.max_event_size))
            ));
        }
        if !self.has_data {
            // The common case, one data line: a range of `frozen`, no copy.
            self.has_data = true;
            self.data.set(frozen, value);
            return None;
        }
        self.data.detach(frozen);
        self.data.owned.push('\n');
        push_str_in_pieces(&mut self.data.owned, value);
        None
    }

    fn dispatch(&mut self, frozen: &Arc<String>) -> Option<Item> {
        if self.id_pending {
            self.id_pending = false;
            let id = self.id_buffer.take_text(frozen, "");
            // The new id is stored before the old one is dropped (a call): built and held on the
            // stack across it, it was read back in halves that stalled store forwarding.
            drop(std::mem::replace(&mut self.last_event_id, id));
        }
        if !self.has_data {
            self.event_type.clear();
            return None;
        }
        self.has_data = false;
        // Built last, straight into the item: nothing that may call out runs in between.
        Some(Item::Message(Message {
            event_type: self.event_type.take_text(frozen, "message"),
            data: self.data.take_text(frozen, ""),
            last_event_id: self.last_event_id.clone(),
        }))
    }
}

impl Iterator for Parser {
    type Item = Result<Item, Error>;

    /// The next item, or `None` when the parser needs more bytes.
    fn next(&mut self) -> Option<Self::Item> {
        match self.ready.pop_front() {
            Some(item) => Some(item.map_err(Error::from)),
            None => self.parse(),
        }
    }
}

/// The first CR or LF in `hay`. Most lines are short: eight bytes at a time in a register finds
/// their end before a SIMD search gets going (memchr2 was ~12% of the small-event case, mostly call
/// and setup cost); lines longer than 64 bytes go on with the SIMD search.
fn find_line_end(hay: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const CRS: u64 = u64::from_ne_bytes([b'\r'; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    const ABOVE_CR: u64 = u64::from_ne_bytes([b'\r' + 1; 8]);
    // The lowest flagged byte is exact (false flags only sit above a true one).
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut at = 0;
    while let Some(word) = hay.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let word = u64::from_le_bytes(*word);
        // One test first: is any byte below 0x0E? Text rarely holds such bytes but CR and LF, so
        // the two exact tests run only on a word that has one.
        let low = word.wrapping_sub(ABOVE_CR) & !word & HIGHS;
        if low != 0 {
            let found = zero_bytes(word ^ CRS) | zero_bytes(word ^ LFS);
            if found != 0 {
                return Some(at + (found.trailing_zeros() / 8) as usize);
            }
        }
        at += 8;
        if at == 64 {
            return memchr::memchr2(b'\r', b'\n', &hay[at..]).map(|i| at + i);
        }
    }
    let rest = hay.get(at..).unwrap_or_default();
    rest.iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<Result<Item, String>> {
        let mut p = Parser::builder().max_line_length(16).build();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c);
            out.extend(p.by_ref().map(|r| r.map_err(|e| e.to_string())));
        }
        out
    }

    #[test]
    fn line_end_search_finds_the_first_cr_or_lf_at_every_position() {
        for len in 0..150 {
            for end in 0..=len {
                for mark in [b'\r', b'\n'] {
                    let mut hay = vec![b'x'; len];
                    // Bytes one off from CR and LF, to catch a sloppy bit trick.
                    hay.iter_mut().step_by(3).for_each(|b| *b = 0x0c);
                    hay.iter_mut().skip(1).step_by(5).for_each(|b| *b = 0x8d);
                    if end < len {
                        hay[end] = mark;
                        hay[len - 1] = if mark == b'\r' { b'\n' } else { b'\r' };
                        hay[end] = mark;
                    }
                    let want = memchr::memchr2(b'\r', b'\n', &hay);
                    assert_eq!(find_line_end(&hay), want, "len {len} end {end}");
                }
            }
        }
    }

    #[test]
    fn feeding_without_taking_items_keeps_the_buffer_within_the_line_limit() {
        let mut p = Parser::builder().max_line_length(16).build();
        p.feed(
            b"data: first

",
        );
        for _ in 0..1000 {
            p.feed(b"0123456789");
            assert!(p.unparsed() <= 16 + 10, "{} bytes held", p.unparsed());
        }
        p.feed(
            b"

data: ok

",
        );
        let items: Vec<_> = p.map(|r| r.map_err(|e| e.to_string())).collect();
        assert_eq!(items.len(), 3, "{items:?}");
        assert!(matches!(&items[0], Ok(Item::Message(m)) if m.data == "first"));
        assert!(items[1].is_err());
        assert!(matches!(&items[2], Ok(Item::Message(m)) if m.data == "ok"));
    }

    #[test]
    fn an_event_split_across_chunks_keeps_its_fields_and_the_id_persists() {
        let mut p = Parser::new();
        p.feed(b"id: a-long-identifier-1\nevent: a-long-event-type\ndata: first line of data\n");
        assert!(p.next().is_none());
        p.feed(b"data: second\n\n");
        let Some(Ok(Item::Message(m))) = p.next() else {
            panic!("no message")
        };
        let fields = (
            m.event_type.as_str(),
            m.data.as_str(),
            m.last_event_id.as_str(),
        );
        assert_eq!(
            fields,
            (
                "a-long-event-type",
                "first line of data\nsecond",
                "a-long-identifier-1"
            )
        );
        p.feed(b"data: x\n\n");
        let Some(Ok(Item::Message(next))) = p.next() else {
            panic!("no message")
        };
        assert_eq!(
            (next.event_type.as_str(), next.last_event_id.as_str()),
            ("message", "a-long-identifier-1")
        );
        assert_eq!(m.data, "first line of data\nsecond");
    }

    #[test]
    fn an_empty_event_or_id_after_a_copied_one_is_empty_not_the_copy() {
        let mut p = Parser::new();
        // Each value is copied when its chunk's text is released, then an empty one follows.
        p.feed(b"event: first-type\nid: first-id\n");
        assert!(p.next().is_none());
        p.feed(b"event:\nid\ndata: x\n\n");
        let Some(Ok(Item::Message(m))) = p.next() else {
            panic!("no message")
        };
        assert_eq!(
            (m.event_type.as_str(), m.last_event_id.as_str()),
            ("message", "")
        );
        p.feed(b"event: second-type\n");
        assert!(p.next().is_none());
        p.feed(b"event\r\ndata: y\r\n\r\n");
        let Some(Ok(Item::Message(m))) = p.next() else {
            panic!("no message")
        };
        assert_eq!(m.event_type, "message");
    }

    #[test]
    fn a_single_data_line_is_shared_with_the_fed_text_not_copied() {
        let mut p = Parser::new();
        p.feed(b"data: a value longer than seven bytes\n\ndata: another value of some length\n\n");
        let items: Vec<_> = p.by_ref().collect();
        let frozen = p.frozen.clone().expect("lines were interpreted");
        for item in &items {
            let Ok(Item::Message(m)) = item else {
                panic!("{item:?}")
            };
            assert!(m.data.is_in(&frozen), "{m:?}");
        }
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn a_cr_ending_a_chunk_then_an_overlong_line_fed_bytewise_ends_at_the_next_lf() {
        let bytes = b"\revent\ndatadata";
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        let mut p = Parser::builder().max_line_length(1).build();
        let mut errors = 0;
        for c in chunks {
            p.feed(c);
            errors += p.by_ref().filter(Result::is_err).count();
        }
        assert_eq!(errors, 2);
    }

    #[test]
    fn cr_and_lf_in_different_chunks_are_one_line_end() {
        let items = parse_all(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(items.len(), 1);
        assert!(matches!(&items[0], Ok(Item::Message(m)) if m.data == "a\nb"));
    }

    #[test]
    fn long_line_ending_in_a_later_chunk_does_not_swallow_the_next_line() {
        let items = parse_all(&[b"data: 0123", b"456789abcdefghijk\n\ndata: ok\n\n"]);
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(items[0].is_err());
        assert!(matches!(&items[1], Ok(Item::Message(m)) if m.data == "ok"));
    }

    #[test]
    fn long_line_discards_its_event_and_parser_recovers() {
        let items = parse_all(&[
            b"id: 5\ndata: 0123",
            b"456789abcdefghijk\ndata: x\n\ndata: ok\n\n",
        ]);
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(items[0].is_err());
        assert!(
            matches!(&items[1], Ok(Item::Message(m)) if m.data == "ok" && m.last_event_id.is_empty())
        );
    }
}
