//! HTTP/1.1 chunked framing for event bytes that are shared, not copied: a chunk is an iovec of its
//! size line, the events' own `Bytes`, and the closing CRLF.

use std::io::IoSlice;

use bytes::Bytes;

/// Room for the longest size line: 16 hex digits and CRLF.
pub(crate) type HeadBuf = [u8; 20];

/// The chunk carrying `events` (at least one) as one `writev`'s slices; `buf` holds its size line.
pub(crate) fn slices<'a>(
    events: impl Iterator<Item = &'a Bytes> + Clone,
    buf: &'a mut HeadBuf,
) -> Vec<IoSlice<'a>> {
    let total: usize = events.clone().map(Bytes::len).sum();
    let mut out = Vec::with_capacity(events.size_hint().0 + 2);
    out.push(IoSlice::new(head(total, buf)));
    out.extend(events.map(|b| IoSlice::new(b)));
    out.push(IoSlice::new(b"\r\n"));
    out
}

/// The size line `{len:x}\r\n`, formatted into `buf` without allocating.
fn head(len: usize, buf: &mut HeadBuf) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len() - 2;
    buf[i..].copy_from_slice(b"\r\n");
    let mut n = len;
    loop {
        i -= 1;
        buf[i] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_lines_are_hex() {
        let mut buf = [0u8; 20];
        assert_eq!(head(0, &mut buf), b"0\r\n");
        assert_eq!(head(0x1a2, &mut buf), b"1a2\r\n");
        assert_eq!(
            head(usize::MAX, &mut buf),
            format!("{:x}\r\n", usize::MAX).as_bytes()
        );
    }

    #[test]
    fn a_chunk_is_size_line_events_crlf() {
        let events = [Bytes::from_static(b"data: a\n\n"), Bytes::from_static(b"x")];
        let mut buf = [0u8; 20];
        let wire: Vec<u8> = slices(events.iter(), &mut buf)
            .iter()
            .flat_map(|s| s.to_vec())
            .collect();
        assert_eq!(wire, b"a\r\ndata: a\n\nx\r\n");
    }
}
