//! A minimal streaming reader for `text/event-stream` over HTTP/1.1: response head, chunked or
//! identity body, and `data:` lines carrying `<seq> <timestamp-µs> <padding>`.
//!
//! It does just enough to measure a server without becoming the bottleneck: no allocation per event,
//! no full SSE parsing (only `data:` lines matter to the benchmark).

use crate::Error;

/// One benchmark payload as the publisher wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The publisher's sequence number, from 1.
    pub seq: u64,
    /// Microseconds since the benchmark's epoch when the publisher sent it.
    pub sent_us: u64,
}

/// Builds a payload of exactly `size` bytes (or the minimum that holds the numbers).
///
/// ```
/// let p = sse_bench::reader::payload(7, 1234, 32);
/// assert_eq!(p.len(), 32);
/// assert!(p.starts_with("7 1234 "));
/// ```
pub fn payload(seq: u64, sent_us: u64, size: usize) -> String {
    let mut s = format!("{seq} {sent_us} ");
    while s.len() < size {
        s.push('x');
    }
    s
}

/// Parses the value of a `data:` line (after the field name and optional space).
///
/// ```
/// let s = sse_bench::reader::parse_payload(b"12 3400 xxxx").unwrap();
/// assert_eq!((s.seq, s.sent_us), (12, 3400));
/// assert!(sse_bench::reader::parse_payload(b"hello").is_none());
/// ```
pub fn parse_payload(value: &[u8]) -> Option<Sample> {
    let mut it = value.split(|&b| b == b' ');
    let seq = parse_u64(it.next()?)?;
    let sent_us = parse_u64(it.next()?)?;
    Some(Sample { seq, sent_us })
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

/// The parsed head of an HTTP/1.1 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// `Content-Length`, when given.
    pub content_length: Option<usize>,
}

/// Parses a response head if `buf` holds a complete one; returns it and its length in bytes.
///
/// ```
/// let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n";
/// let (head, len) = sse_bench::reader::parse_head(raw).unwrap().unwrap();
/// assert_eq!(head.status, 200);
/// assert!(head.chunked);
/// assert_eq!(&raw[len..], b"5\r\n");
/// ```
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, Error> {
    let Some(end) = memfind(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err(Error::Http("response head larger than 64 KiB".into()));
        }
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Http(format!("bad status line `{status_line}`")))?;
    let mut head = Head {
        status,
        chunked: false,
        content_length: None,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().ok();
        }
    }
    Ok(Some((head, end + 4)))
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Done,
}

/// Undoes `Transfer-Encoding: chunked` incrementally, however the input is split.
///
/// ```
/// let mut d = sse_bench::reader::Dechunker::default();
/// let mut out = Vec::new();
/// d.feed(b"3\r\nabc\r\n2\r", |s| out.extend_from_slice(s)).unwrap();
/// d.feed(b"\nde\r\n0\r\n\r\n", |s| out.extend_from_slice(s)).unwrap();
/// assert_eq!(out, b"abcde");
/// assert!(d.is_done());
/// ```
#[derive(Debug, Clone)]
pub struct Dechunker {
    state: Chunk,
    size: u64,
}

impl Default for Dechunker {
    fn default() -> Self {
        Dechunker {
            state: Chunk::Size,
            size: 0,
        }
    }
}

impl Dechunker {
    /// True after the last (zero-size) chunk.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Feeds raw body bytes; `out` receives the decoded payload slices.
    pub fn feed(&mut self, mut input: &[u8], mut out: impl FnMut(&[u8])) -> Result<(), Error> {
        while !input.is_empty() {
            match self.state {
                Chunk::Data => {
                    let n = input
                        .len()
                        .min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    out(&input[..n]);
                    input = &input[n..];
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = Chunk::DataCr;
                    }
                    continue;
                }
                Chunk::Done => return Ok(()),
                _ => {}
            }
            let b = input[0];
            input = &input[1..];
            self.state = match (self.state, b) {
                (Chunk::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    let digit = (b as char).to_digit(16).unwrap_or(0);
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(digit)))
                        .ok_or_else(|| Error::Http("chunk size overflows".into()))?;
                    Chunk::Size
                }
                (Chunk::Size, b';' | b' ' | b'\t') => Chunk::Extension,
                (Chunk::Size | Chunk::Extension, b'\r') => Chunk::SizeLf,
                (Chunk::Size | Chunk::Extension | Chunk::SizeLf, b'\n') => {
                    if self.size == 0 {
                        Chunk::Done
                    } else {
                        Chunk::Data
                    }
                }
                (Chunk::Extension, _) => Chunk::Extension,
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataCr | Chunk::DataLf, b'\n') => {
                    self.size = 0;
                    Chunk::Size
                }
                (state, b) => {
                    return Err(Error::Http(format!(
                        "bad chunked encoding: byte {b:#04x} in state {state:?}"
                    )));
                }
            };
        }
        Ok(())
    }
}

/// Splits a decoded event stream into lines and hands every benchmark payload of a `data:` line on.
///
/// ```
/// let mut lines = sse_bench::reader::DataLines::default();
/// let mut seqs = Vec::new();
/// lines.feed(b"id: 1\ndata: 1 10 xx\n\n: heartbeat\n\ndata: 2 ", |s| seqs.push(s.seq));
/// lines.feed(b"20 xx\r\n\r\n", |s| seqs.push(s.seq));
/// assert_eq!(seqs, [1, 2]);
/// ```
#[derive(Debug, Default, Clone)]
pub struct DataLines {
    partial: Vec<u8>,
}

impl DataLines {
    /// Feeds decoded body bytes.
    pub fn feed(&mut self, mut input: &[u8], mut on_sample: impl FnMut(Sample)) {
        while let Some(nl) = memchr::memchr(b'\n', input) {
            let line = &input[..nl];
            input = &input[nl + 1..];
            if self.partial.is_empty() {
                Self::line(line, &mut on_sample);
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                Self::line(&whole, &mut on_sample);
                self.partial = whole;
                self.partial.clear();
            }
        }
        self.partial.extend_from_slice(input);
    }

    fn line(line: &[u8], on_sample: &mut impl FnMut(Sample)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            if let Some(sample) = parse_payload(value) {
                on_sample(sample);
            }
        }
    }
}

/// A response body decoder: chunked or identity, then [`DataLines`].
#[derive(Debug, Clone)]
pub struct BodyReader {
    dechunker: Option<Dechunker>,
    lines: DataLines,
}

impl BodyReader {
    /// A reader for a body framed as `head` says.
    pub fn new(head: &Head) -> Self {
        BodyReader {
            dechunker: head.chunked.then(Dechunker::default),
            lines: DataLines::default(),
        }
    }

    /// Feeds raw body bytes from the socket.
    pub fn feed(&mut self, input: &[u8], mut on_sample: impl FnMut(Sample)) -> Result<(), Error> {
        match &mut self.dechunker {
            Some(d) => {
                let lines = &mut self.lines;
                d.feed(input, |s| lines.feed(s, &mut on_sample))
            }
            None => {
                self.lines.feed(input, on_sample);
                Ok(())
            }
        }
    }

    /// Feeds raw body bytes; `out` receives the decoded (de-chunked) bytes, not parsed.
    pub fn feed_raw(&mut self, input: &[u8], mut out: impl FnMut(&[u8])) -> Result<(), Error> {
        match &mut self.dechunker {
            Some(d) => d.feed(input, out),
            None => {
                out(input);
                Ok(())
            }
        }
    }

    /// True when a chunked body has ended.
    pub fn is_done(&self) -> bool {
        self.dechunker.as_ref().is_some_and(Dechunker::is_done)
    }
}

/// Records which `id:` each benchmark payload carried, to resume from one later (`Last-Event-ID`).
///
/// ```
/// let mut ids = sse_bench::reader::EventIds::default();
/// ids.feed(b"id: a-1\ndata: 1 10 x\n\nid: a-2\ndata: 2 ");
/// ids.feed(b"20 x\n\n");
/// assert_eq!(ids.id_of(2), Some("a-2"));
/// assert_eq!(ids.high(), 2);
/// ```
#[derive(Debug, Default, Clone)]
pub struct EventIds {
    partial: Vec<u8>,
    current: Option<String>,
    ids: Vec<(u64, String)>,
}

impl EventIds {
    /// Feeds decoded body bytes.
    pub fn feed(&mut self, input: &[u8]) {
        self.partial.extend_from_slice(input);
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &self.partial[start..]) {
            let line = &self.partial[start..start + nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(v) = line.strip_prefix(b"id:") {
                let v = v.strip_prefix(b" ").unwrap_or(v);
                self.current = Some(String::from_utf8_lossy(v).into_owned());
            } else if let Some(v) = line.strip_prefix(b"data:") {
                let v = v.strip_prefix(b" ").unwrap_or(v);
                if let (Some(sample), Some(id)) = (parse_payload(v), &self.current) {
                    self.ids.push((sample.seq, id.clone()));
                }
            }
            start += nl + 1;
        }
        self.partial.drain(..start);
    }

    /// The id event `seq` carried.
    pub fn id_of(&self, seq: u64) -> Option<&str> {
        self.ids
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, id)| id.as_str())
    }

    /// The highest sequence number seen (0 for none).
    pub fn high(&self) -> u64 {
        self.ids.iter().map(|(s, _)| *s).max().unwrap_or(0)
    }
}
