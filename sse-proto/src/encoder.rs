//! Event → bytes. Every event is written into one exactly-sized buffer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::event::Event;

/// Encodes an event into a new, exactly-sized [`Bytes`] (one allocation).
///
/// Fields are written in the order comment, `retry`, `id`, `event`, `data`, then the blank line that
/// makes clients dispatch. Each line of data becomes its own `data:` line, and a value is always
/// preceded by `: ` so that a leading space in the value survives the parser's one-space removal.
///
/// ```
/// use sse_proto::{encode, Event};
/// let e = Event::builder().id("1").data(" indented\nsecond").build()?;
/// assert_eq!(&encode(&e)[..], b"id: 1\ndata:  indented\ndata: second\n\n");
/// # Ok::<(), sse_proto::Error>(())
/// ```
pub fn encode(event: &Event) -> Bytes {
    let mut buf = BytesMut::with_capacity(encoded_len(event));
    encode_into(event, &mut buf);
    buf.freeze()
}

/// Appends the encoding of `event` to `buf`, reserving exactly the space it needs first.
///
/// ```
/// use bytes::BytesMut;
/// use sse_proto::{encode_into, Event};
/// let mut buf = BytesMut::new();
/// encode_into(&Event::message("a"), &mut buf);
/// encode_into(&Event::message("b"), &mut buf);
/// assert_eq!(&buf[..], b"data: a\n\ndata: b\n\n");
/// ```
pub fn encode_into(event: &Event, buf: &mut BytesMut) {
    buf.reserve(encoded_len(event));
    if let Some(comment) = &event.comment {
        for line in lines(comment) {
            put_field(buf, b"", line);
        }
    }
    if let Some(retry) = event.retry {
        let mut digits = itoa_buf();
        put_field_bytes(buf, b"retry", format_u128(retry.as_millis(), &mut digits));
    }
    if let Some(id) = &event.id {
        put_field(buf, b"id", id);
    }
    if let Some(ty) = &event.event {
        put_field(buf, b"event", ty);
    }
    if let Some(data) = &event.data {
        for line in lines(data) {
            put_field(buf, b"data", line);
        }
    }
    buf.put_u8(b'\n');
}

/// The exact number of bytes [`encode`] produces for `event`.
///
/// ```
/// let e = sse_proto::Event::message("hi");
/// assert_eq!(sse_proto::encoded_len(&e), sse_proto::encode(&e).len());
/// ```
pub fn encoded_len(event: &Event) -> usize {
    let mut len = 1;
    if let Some(comment) = &event.comment {
        len += lines(comment)
            .map(|l| field_len(b"", l.len()))
            .sum::<usize>();
    }
    if let Some(retry) = event.retry {
        let mut digits = itoa_buf();
        len += field_len(b"retry", format_u128(retry.as_millis(), &mut digits).len());
    }
    if let Some(id) = &event.id {
        len += field_len(b"id", id.len());
    }
    if let Some(ty) = &event.event {
        len += field_len(b"event", ty.len());
    }
    if let Some(data) = &event.data {
        len += lines(data)
            .map(|l| field_len(b"data", l.len()))
            .sum::<usize>();
    }
    len
}

/// Splits on CR, LF and CRLF. Event data is already LF-only, but comments are not normalised.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr2(b'\r', b'\n', current.as_bytes()) {
            None => {
                rest = None;
                Some(current)
            }
            Some(i) => {
                let skip = if current.as_bytes()[i] == b'\r'
                    && current.as_bytes().get(i + 1) == Some(&b'\n')
                {
                    2
                } else {
                    1
                };
                rest = Some(&current[i + skip..]);
                Some(&current[..i])
            }
        }
    })
}

fn field_len(name: &[u8], value_len: usize) -> usize {
    if value_len == 0 {
        name.len() + 2
    } else {
        name.len() + 3 + value_len
    }
}

fn put_field(buf: &mut BytesMut, name: &[u8], value: &str) {
    put_field_bytes(buf, name, value.as_bytes());
}

/// `name: value\n`, or `name:\n` for an empty value (no trailing space).
fn put_field_bytes(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    buf.put_slice(name);
    if value.is_empty() {
        buf.put_slice(b":\n");
    } else {
        buf.put_slice(b": ");
        buf.put_slice(value);
        buf.put_u8(b'\n');
    }
}

fn itoa_buf() -> [u8; 40] {
    [0; 40]
}

fn format_u128(mut n: u128, buf: &mut [u8; 40]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn empty_data_line_has_no_trailing_space() {
        assert_eq!(&encode(&Event::message(""))[..], b"data:\n\n");
        assert_eq!(&encode(&Event::message("a\n"))[..], b"data: a\ndata:\n\n");
    }

    #[test]
    fn encoded_len_is_exact() {
        let e = Event::builder()
            .comment("c1\r\nc2\rc3")
            .retry(Duration::from_millis(0))
            .id("")
            .event("x")
            .data("\n\n ")
            .build()
            .unwrap();
        let bytes = encode(&e);
        assert_eq!(bytes.len(), encoded_len(&e));
        assert_eq!(
            &bytes[..],
            b": c1\n: c2\n: c3\nretry: 0\nid:\nevent: x\ndata:\ndata:\ndata:  \n\n"
        );
    }

    #[test]
    fn retry_is_whole_milliseconds() {
        let e = Event::builder()
            .retry(Duration::from_micros(2500))
            .build()
            .unwrap();
        assert_eq!(&encode(&e)[..], b"retry: 2\n\n");
    }
}
