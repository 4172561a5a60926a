//! The head of a request the lean path takes, and the head of its response.

use http::{Request, Response};

use crate::http::body::Body;

/// Longest request head taken on this path; longer ones go to hyper (which enforces its own limit).
pub(crate) const MAX_HEAD: usize = 4096;

/// Parses a complete `GET /events/… HTTP/1.1` head without a body; `None` for anything else.
pub(crate) fn parse_head(buf: &[u8]) -> Option<(Request<Body>, usize)> {
    if !buf.starts_with(b"GET /events/") && !buf.starts_with(b"GET /events?") {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (_, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if version != "HTTP/1.1" || parts.next().is_some() {
        return None;
    }
    let mut builder = Request::get(target).version(http::Version::HTTP_11);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || (name.eq_ignore_ascii_case("content-length") && value != "0")
            || (name.eq_ignore_ascii_case("connection")
                && value.to_ascii_lowercase().contains("upgrade"))
        {
            return None;
        }
        builder = builder.header(name, value);
    }
    let request = builder.body(Body::empty()).ok()?;
    Some((request, end + 4))
}

/// The response head: status line, the response's headers, its framing, and `connection: close`.
pub(crate) fn response_head(response: &Response<Body>, length: Option<u64>) -> Vec<u8> {
    let status = response.status();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match length {
        Some(n) => out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    // One response per connection on this path: the stream (or error) is the whole conversation.
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_plain_complete_subscriptions() {
        let ok = b"GET /events/news?lastEventId=3 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n";
        let (req, len) = parse_head(ok).unwrap();
        assert_eq!(len, ok.len());
        assert_eq!(req.uri().path(), "/events/news");
        assert_eq!(req.headers()["last-event-id"], "7");
        for other in [
            &b"GET /events/news HTTP/1.1\r\nHost: x\r\n"[..],
            b"GET /events/news HTTP/1.0\r\n\r\n",
            b"POST /events/news HTTP/1.1\r\n\r\n",
            b"GET /channels HTTP/1.1\r\n\r\n",
            b"GET /events/x HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            b"GET /events/x HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd",
            b"GET /events/x HTTP/1.1\r\nbad header line\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert!(
                parse_head(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
