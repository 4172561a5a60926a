//! The one step every store takes to turn an appended event into a [`StoredEvent`]: the id it is sent
//! with (the publisher's own, else its position's) and its bytes, encoded once.

use std::sync::Arc;

use bytes::Bytes;
use sse_proto::Event;

use crate::error::Error;
use crate::position::Position;

/// An event as stored and sent: its position, its id, and its encoding (shared by every subscriber).
///
/// ```
/// use sse_server::{Position, StoredEvent};
/// let e = StoredEvent { position: Position::new(1, 1), id: "1-1".into(), bytes: "id: 1-1\ndata: x\n\n".into() };
/// assert_eq!(&*e.id, "1-1");
/// ```
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Where the event sits in its channel.
    pub position: Position,
    /// The id clients see (hub-assigned `position.to_string()` or the publisher's own).
    pub id: Arc<str>,
    /// The event encoded once with [`sse_proto::encode`], `id:` line included.
    pub bytes: Bytes,
}

/// An appended event with its id and bytes, and whether the id was the publisher's own.
#[derive(Debug)]
pub(crate) struct Stamped {
    pub(crate) event: StoredEvent,
    /// The publisher (or a broadcast) supplied the id; it is not the position's.
    pub(crate) custom: bool,
}

/// Stamps `event`, placed at `position`, for a store that holds the whole event (memory, durable): an
/// event without an id gets `position`'s, then it is encoded once with [`sse_proto::encode`].
pub(crate) fn stamp(position: Position, mut event: Event) -> Result<Stamped, Error> {
    let custom = event.id().is_some();
    if !custom {
        event = event.with_id(position.to_string())?;
    }
    let stored = stamp_encoded(position, event.id(), |_| sse_proto::encode(&event));
    Ok(Stamped {
        event: stored,
        custom,
    })
}

/// The same rule for a store that encodes in its own way (Redis keeps the encoding split around the id
/// line): the id is `custom` when given, else `position`'s, and `encode` makes the bytes for that id.
pub(crate) fn stamp_encoded(
    position: Position,
    custom: Option<&str>,
    encode: impl FnOnce(&str) -> Bytes,
) -> StoredEvent {
    let id: Arc<str> = match custom {
        Some(id) => Arc::from(id),
        None => Arc::from(position.to_string()),
    };
    StoredEvent {
        position,
        bytes: encode(&id),
        id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_without_an_id_gets_its_position() {
        let s = stamp(Position::new(7, 3), Event::message("x")).unwrap();
        assert!(!s.custom);
        assert_eq!(&*s.event.id, "7-3");
        assert_eq!(&s.event.bytes[..], b"id: 7-3\ndata: x\n\n");
    }

    #[test]
    fn a_publisher_id_is_kept_and_encoded_once() {
        let e = Event::builder().id("mine").data("x").build().unwrap();
        let s = stamp(Position::new(7, 4), e.clone()).unwrap();
        assert!(s.custom);
        assert_eq!(&*s.event.id, "mine");
        assert_eq!(s.event.bytes, sse_proto::encode(&e));
        let r = stamp_encoded(Position::new(7, 5), None, |id| Bytes::from(id.to_owned()));
        assert_eq!((&*r.id, &r.bytes[..]), ("7-5", &b"7-5"[..]));
    }
}
