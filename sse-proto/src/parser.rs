//! Bytes → items, following the WHATWG "event stream interpretation" rules line by line.

use std::collections::VecDeque;
use std::time::Duration;

use crate::decode::{decode_into, push_str_in_pieces};
use crate::error::Error;
use crate::field::split_field;
use crate::limits::Limits;

/// A dispatched event, as a browser's `MessageEvent` would report it.
///
/// ```
/// let m = sse_proto::Message {
///     event_type: "message".into(),
///     data: "hi".into(),
///     last_event_id: String::new(),
/// };
/// assert_eq!(m.data, "hi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// The `event:` field of the event, or `message` when it had none.
    pub event_type: String,
    /// The `data:` lines joined with LF.
    pub data: String,
    /// The last event id in force when the event was dispatched (ids persist across events).
    pub last_event_id: String,
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
            buf: String::new(),
            utf8_tail: Vec::new(),
            pos: 0,
            scanned: 0,
            skipping_line: false,
            pending_cr: false,
            at_stream_start: true,
            discarding_event: false,
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            id_pending: false,
            last_event_id: self.last_event_id,
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
    /// The stream decoded: what was fed and not interpreted yet is `buf[pos..]`.
    buf: String,
    /// The start of a character the last chunk cut off (see [`decode_into`]).
    utf8_tail: Vec<u8>,
    pos: usize,
    /// `buf[pos..scanned]` holds no line end: the search resumes here, so a long line arriving in
    /// small chunks is scanned once.
    scanned: usize,
    /// The current line exceeded the limit: drop bytes until its end.
    skipping_line: bool,
    /// The previous line ended with a CR that was the last byte fed: an LF right after it belongs to it.
    pending_cr: bool,
    /// The next line is the first of the stream (it may start with a BOM).
    at_stream_start: bool,
    /// A limit was exceeded inside the current event: ignore lines up to the next blank line.
    discarding_event: bool,
    data: String,
    event_type: String,
    /// The `id:` of the current event, when `id_pending`; otherwise the spec's last event id buffer
    /// equals `last_event_id` and this is spare capacity.
    id_buffer: String,
    id_pending: bool,
    last_event_id: String,
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
        if self.pos == self.buf.len() {
            self.release_buffer();
        } else if self.pos >= self.buf.len() - self.pos {
            // Moving the unfinished tail costs at most what was consumed since the last move, so a
            // long line fed in small chunks stays linear.
            self.buf.drain(..self.pos);
            self.scanned -= self.pos;
            self.pos = 0;
        }
        decode_into(&mut self.buf, &mut self.utf8_tail, chunk);
        if self.buf.len() - self.pos > self.limits.max_line_length {
            // A caller feeding without taking items: interpret now, so what is held stays bounded
            // by the line limit (an overlong line is dropped as it arrives) plus the ready items.
            while let Some(item) = self.parse() {
                self.ready.push_back(item);
            }
        }
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
        self.release_buffer();
        // A character cut off by the end of the stream is in the unfinished line: gone with it.
        self.utf8_tail.clear();
        self.skipping_line = false;
        self.pending_cr = false;
        self.at_stream_start = true;
        self.discarding_event = false;
        self.data.clear();
        self.event_type.clear();
        self.id_pending = false;
    }

    fn release_buffer(&mut self) {
        self.pos = 0;
        self.scanned = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = String::new();
        } else {
            self.buf.clear();
        }
    }

    /// Interprets lines until one yields an item or the complete lines run out.
    fn parse(&mut self) -> Step {
        // Lines borrow from the buffer while the rest of the parser changes: lend it out meanwhile.
        let buf = std::mem::take(&mut self.buf);
        let mut item = None;
        while let Some(line) = self.take_line(&buf) {
            item = match line {
                Ok(line) => self.process_line(line),
                Err(error) => Some(Err(error)),
            };
            if item.is_some() {
                break;
            }
        }
        self.buf = buf;
        item
    }

    /// The next complete line of `buf` (which is `self.buf`, lent out), or its limit error; `None`
    /// when more bytes are needed.
    fn take_line<'b>(&mut self, text: &'b str) -> Option<Result<&'b str, LimitError>> {
        let buf = text.as_bytes();
        loop {
            if self.pending_cr {
                let &first = buf.get(self.pos)?;
                self.pending_cr = false;
                if first == b'\n' {
                    self.pos += 1;
                    self.scanned = self.pos;
                }
            }
            let start = self.pos;
            let Some(found) = find_line_end(&buf[self.scanned..]) else {
                self.scanned = buf.len();
                if self.skipping_line {
                    self.pos = buf.len();
                } else if buf.len() - start > self.limits.max_line_length {
                    self.pos = buf.len();
                    self.skipping_line = true;
                    return Some(Err(self.line_too_long()));
                }
                return None;
            };
            let end = self.scanned + found;
            self.pos = match (buf[end], buf.get(end + 1)) {
                (b'\r', Some(b'\n')) => end + 2,
                (b'\r', None) => {
                    self.pending_cr = true;
                    end + 1
                }
                _ => end + 1,
            };
            self.scanned = self.pos;
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
        self.event_type.clear();
        error
    }

    fn process_line(&mut self, mut line: &str) -> Step {
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
            None => self.dispatch().map(Ok),
            Some(b':') if self.comments => Some(Ok(Item::Comment(line[1..].to_owned()))),
            Some(b':') => None,
            Some(_) => self.field(line),
        }
    }

    fn field(&mut self, line: &str) -> Step {
        let (name, value) = split_field(line);
        match name {
            "data" => {
                if self.data.len() + value.len() + 1 > self.limits.max_event_size {
                    if self.data.capacity() > KEEP_CAPACITY {
                        self.data = String::new();
                    }
                    return Some(Err(
                        self.fail(LimitError::EventTooLarge(self.limits.max_event_size))
                    ));
                }
                if self.data.is_empty() {
                    // One exact allocation, so the LF never forces a second one.
                    self.data = String::with_capacity(value.len() + 1);
                }
                push_str_in_pieces(&mut self.data, value);
                self.data.push('\n');
            }
            "event" => {
                if self.event_type.capacity() == 0 {
                    // Handed out with the last message: one exact allocation.
                    self.event_type = value.to_owned();
                } else {
                    value.clone_into(&mut self.event_type);
                }
            }
            // An id containing NUL is ignored whole.
            "id" if memchr::memchr(0, value.as_bytes()).is_none() => {
                self.id_buffer.clear();
                self.id_buffer.push_str(value);
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

    fn dispatch(&mut self) -> Option<Item> {
        if self.id_pending {
            // Committing the new id by swapping saves a copy per event; the old id left in
            // `id_buffer` is only reused capacity.
            std::mem::swap(&mut self.last_event_id, &mut self.id_buffer);
            self.id_pending = false;
        }
        if self.data.is_empty() {
            self.event_type.clear();
            return None;
        }
        self.data.pop();
        let event_type = if self.event_type.is_empty() {
            String::from("message")
        } else {
            std::mem::take(&mut self.event_type)
        };
        let data = std::mem::take(&mut self.data);
        Some(Item::Message(Message {
            event_type,
            data,
            last_event_id: self.last_event_id.clone(),
        }))
    }
}

impl Iterator for Parser {
    type Item = Result<Item, Error>;

    /// The next item, or `None` when the parser needs more bytes.
    fn next(&mut self) -> Option<Self::Item> {
        let item = match self.ready.pop_front() {
            Some(item) => Some(item),
            None => self.parse(),
        };
        item.map(|r| r.map_err(Error::from))
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
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut at = 0;
    while let Some(word) = hay.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let word = u64::from_le_bytes(*word);
        // The lowest flagged byte is exact (false flags only sit above a true one).
        let found = zero_bytes(word ^ CRS) | zero_bytes(word ^ LFS);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
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
            assert!(p.buf.len() - p.pos <= 16 + 10, "{} bytes held", p.buf.len());
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
