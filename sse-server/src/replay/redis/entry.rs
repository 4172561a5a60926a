//! How an event is laid out in a Redis Stream entry, and how replies are read back.
//!
//! A hub-assigned id is the entry id, known only once `XADD` answers, so an entry cannot hold the final
//! encoding. It holds the encoding split around the `id:` line instead (`h`: the comment and `retry:`
//! lines before it, `t`: the `event:` and `data:` lines after it) plus `c`, the publisher's own id when it
//! gave one. Every node rebuilds the exact [`sse_proto::encode`] output once per event by putting
//! `id: <id>` between the halves, and shares those bytes with all its subscribers.

use bytes::{BufMut, Bytes, BytesMut};
use redis::Value;
use sse_proto::Event;

use crate::error::Error;
use crate::position::Position;
use crate::replay::stored::{self, StoredEvent};

/// The two halves of an event's encoding around its `id:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Split {
    pub(super) head: Bytes,
    pub(super) tail: Bytes,
}

/// Splits `event`'s encoding around the `id:` line (the event's own id, if any, is left out).
pub(super) fn split(event: &Event) -> Result<Split, Error> {
    // Any valid id works as a placeholder: the encoder writes the id line after the comment and
    // `retry:` lines (which start with `:` and `retry`), so the first line starting with `id:` is it.
    let encoded = sse_proto::encode(&event.clone().with_id("0")?);
    let mut at = 0;
    while at < encoded.len() {
        let end = memchr_nl(&encoded[at..]).map_or(encoded.len(), |n| at + n + 1);
        if encoded[at..end].starts_with(b"id: 0\n") {
            return Ok(Split {
                head: encoded.slice(..at),
                tail: encoded.slice(end..),
            });
        }
        at = end;
    }
    Err(Error::Store(
        "internal: the encoder wrote no id line; report this bug".into(),
    ))
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Reassembles the encoding with `id`.
pub(super) fn join(head: &[u8], id: &str, tail: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(head.len() + id.len() + 5 + tail.len());
    buf.put_slice(head);
    buf.put_slice(b"id: ");
    buf.put_slice(id.as_bytes());
    buf.put_u8(b'\n');
    buf.put_slice(tail);
    buf.freeze()
}

/// One stream entry as read back: its entry id, the publisher's id if any, and the encoding halves.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) position: Position,
    pub(super) entry_id: String,
    pub(super) custom: Option<String>,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Entry {
    /// The id a client sees: the publisher's, else the entry id.
    pub(super) fn id(&self) -> &str {
        self.custom.as_deref().unwrap_or(&self.entry_id)
    }

    pub(super) fn into_stored(self) -> StoredEvent {
        stored::stamp_encoded(self.position, self.custom.as_deref(), |id| {
            join(&self.head, id, &self.tail)
        })
    }
}

pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The items of an array (or a RESP3 set); empty for nil.
pub(super) fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// Key/value pairs of a RESP2 flat array or a RESP3 map.
pub(super) fn pairs(v: &Value) -> Vec<(&Value, &Value)> {
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(a) => a.chunks_exact(2).map(|c| (&c[0], &c[1])).collect(),
        _ => Vec::new(),
    }
}

/// Reads one `[id, [field, value, ...]]` entry; entries this hub did not write are skipped.
pub(super) fn entry(v: &Value) -> Option<Entry> {
    let parts = items(v);
    let entry_id = text(parts.first()?)?;
    let position = entry_id.parse().ok()?;
    let (mut head, mut tail, mut custom) = (Vec::new(), None, None);
    for (k, val) in pairs(parts.get(1)?) {
        let raw = match val {
            Value::BulkString(b) => b.clone(),
            other => text(other)?.into_bytes(),
        };
        match text(k)?.as_str() {
            "h" => head = raw,
            "t" => tail = Some(raw),
            "c" => custom = String::from_utf8(raw).ok(),
            _ => {}
        }
    }
    Some(Entry {
        position,
        entry_id,
        custom,
        head,
        tail: tail?,
    })
}

/// The entries of an `XRANGE`/`XREVRANGE` reply.
pub(super) fn range(v: &Value) -> Vec<Entry> {
    items(v).iter().filter_map(entry).collect()
}

/// The `(key, entries)` pairs of an `XREAD` reply, unparsed: a map (RESP3) or an array of pairs
/// (RESP2); nothing when the block timed out or was interrupted.
fn streams_of(v: &Value) -> Vec<(&Value, &Value)> {
    match v {
        Value::Map(_) => pairs(v),
        Value::Array(a) => a
            .iter()
            .filter_map(|kv| match items(kv) {
                [k, e] => Some((k, e)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The `(key, entries)` of an `XREAD` reply (nil when the block timed out or was interrupted).
pub(super) fn read(v: &Value) -> Vec<(String, Vec<Entry>)> {
    let per_key = streams_of(v);
    per_key
        .into_iter()
        .filter_map(|(k, e)| Some((text(k)?, range(e))))
        .collect()
}

/// The announcements (`n`: channel names, one per line) of stream `key` in an `XREAD` reply.
pub(super) fn announced(v: &Value, key: &str) -> Vec<(Position, Vec<String>)> {
    let per_key = streams_of(v);
    let Some((_, entries)) = per_key
        .into_iter()
        .find(|(k, _)| text(k).as_deref() == Some(key))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in items(entries) {
        let parts = items(e);
        let Some(position) = parts.first().and_then(text).and_then(|t| t.parse().ok()) else {
            continue;
        };
        let names = parts.get(1).map(pairs).unwrap_or_default();
        let names = names
            .into_iter()
            .filter(|(k, _)| text(k).as_deref() == Some("n"))
            .filter_map(|(_, v)| text(v))
            .flat_map(|n| n.split('\n').map(str::to_owned).collect::<Vec<_>>())
            .collect();
        out.push((position, names));
    }
    out
}

/// From an `XINFO STREAM` reply: every entry after the returned position is still in the stream.
///
/// `max-deleted-entry-id` alone is not enough: Redis 7.0 updates it on XDEL but not when MAXLEN or MINID
/// trims. So when more entries were added than the stream holds (something was trimmed), everything
/// before the first entry counts as possibly gone, and an empty stream that had entries lost all of
/// them. This errs towards reporting a loss (a reset, a closed stream) when an id was exactly the last
/// entry trimmed; it never hides one.
pub(super) fn deleted_through(info: &Value) -> Position {
    let (mut max_deleted, mut reported) = (Position::default(), false);
    let (mut added, mut length, mut first, mut last) = (None, None, None, Position::default());
    for (k, val) in pairs(info) {
        match text(k).as_deref() {
            Some("max-deleted-entry-id") => {
                reported = true;
                max_deleted = text(val).and_then(|t| t.parse().ok()).unwrap_or_default();
            }
            Some("entries-added") => added = text(val).and_then(|t| t.parse::<u64>().ok()),
            Some("length") => length = text(val).and_then(|t| t.parse::<u64>().ok()),
            Some("first-entry") => first = entry(val).map(|e| e.position),
            Some("last-generated-id") => {
                last = text(val).and_then(|t| t.parse().ok()).unwrap_or_default();
            }
            _ => {}
        }
    }
    let trimmed = match (added, length) {
        (Some(a), Some(l)) => a > l,
        // Redis < 7 reports neither: assume the worst.
        _ => !reported,
    };
    if trimmed {
        let gone = match first {
            Some(f) => before(f),
            None => last,
        };
        max_deleted = max_deleted.max(gone);
    }
    max_deleted
}

/// The position just before `p` (every position after it includes `p`).
pub(super) fn before(p: Position) -> Position {
    match (p.major(), p.minor()) {
        (0, 0) => p,
        (ma, 0) => Position::new(ma - 1, u64::MAX),
        (ma, mi) => Position::new(ma, mi - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_reproduce_the_encoder_exactly() {
        let events = [
            Event::message("hi"),
            Event::builder()
                .comment("c1\nc2")
                .retry(std::time::Duration::from_millis(1500))
                .event("tick")
                .data("a\nid: 0\nb")
                .build()
                .unwrap(),
            Event::builder().id("mine").data("x").build().unwrap(),
            Event::builder().event("only-type").build().unwrap(),
        ];
        for e in events {
            let s = split(&e).unwrap();
            for id in ["1700000000000-3", "custom"] {
                let want = sse_proto::encode(&e.clone().with_id(id).unwrap());
                assert_eq!(join(&s.head, id, &s.tail), want, "{e:?}");
            }
        }
    }

    #[test]
    fn reads_resp2_replies_and_skips_foreign_entries() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let ours = Value::Array(vec![
            bulk("5-1"),
            Value::Array(vec![
                bulk("t"),
                bulk("data: x\n\n"),
                bulk("c"),
                bulk("mine"),
            ]),
        ]);
        let foreign = Value::Array(vec![bulk("5-2"), Value::Array(vec![bulk("k"), bulk("v")])]);
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("sse:a"),
            Value::Array(vec![ours, foreign]),
        ])]);
        let got = read(&reply);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "sse:a");
        assert_eq!(got[0].1.len(), 1);
        let e = got[0].1[0].clone().into_stored();
        assert_eq!(e.position, Position::new(5, 1));
        assert_eq!(&*e.id, "mine");
        assert_eq!(&e.bytes[..], b"id: mine\ndata: x\n\n");
        assert!(read(&Value::Nil).is_empty());
    }

    /// `XINFO STREAM` of a promoted replica that never got the dead primary's last entries: nothing
    /// was deleted, so a cursor past its last id (the live feed read them from the dead primary)
    /// is no gap; a trimmed stream is one for a cursor before its first entry.
    #[test]
    fn entries_lost_with_a_dead_primary_are_no_gap_but_a_trim_is() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let info = |added: i64, length: i64, first: &str, last: &str| {
            Value::Array(vec![
                bulk("length"),
                Value::Int(length),
                bulk("last-generated-id"),
                bulk(last),
                bulk("max-deleted-entry-id"),
                bulk("0-0"),
                bulk("entries-added"),
                Value::Int(added),
                bulk("first-entry"),
                Value::Array(vec![bulk(first), Value::Array(vec![bulk("t"), bulk("x")])]),
            ])
        };
        let cursor = Position::new(7, 9);
        let promoted = deleted_through(&info(3, 3, "5-1", "7-3"));
        assert!(promoted <= cursor, "{promoted:?}");
        let trimmed = deleted_through(&info(10, 3, "9-1", "9-3"));
        assert_eq!(trimmed, Position::new(9, 0));
        assert!(trimmed > cursor);
    }
}
