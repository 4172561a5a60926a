//! The hub's own in-band messages, all encoded by `sse_proto`: the `sse-reset` and `sse-expired`
//! control events, the heartbeat comment and the `retry:` hints.

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use sse_proto::Event;

use crate::error::Error;
use crate::replay::Reset;

/// The type of the in-band event that tells a resuming subscriber its `Last-Event-ID` could not be placed.
///
/// ```
/// assert_eq!(sse_server::RESET_EVENT, "sse-reset");
/// ```
pub const RESET_EVENT: &str = "sse-reset";

/// The type of the in-band event that ends a stream whose token expired.
///
/// Its data is JSON `{"reason":"token expired","exp":<the token's exp>}`; it carries no `id`, so the
/// client's last event id stays that of the last event it received.
///
/// ```
/// assert_eq!(sse_server::EXPIRED_EVENT, "sse-expired");
/// ```
pub const EXPIRED_EVENT: &str = "sse-expired";

/// The comment sent on idle streams so that proxies and clients see the connection alive.
pub(crate) fn heartbeat() -> Bytes {
    static HEARTBEAT: LazyLock<Bytes> =
        LazyLock::new(|| encode_fixed(Event::builder().comment("heartbeat").build()));
    HEARTBEAT.clone()
}

/// A `retry:` hint alone (no event is dispatched).
pub(crate) fn retry(after: Duration) -> Result<Bytes, Error> {
    Ok(sse_proto::encode(&Event::builder().retry(after).build()?))
}

/// The `sse-reset` event for a subscriber that sent `last_event_id`: its data explains why, and its
/// id is the position just before the window, so a client that reconnects at once resumes from the
/// start of the window.
pub(crate) fn reset(reset: &Reset, last_event_id: &str) -> Result<Bytes, Error> {
    reset_at(reset, last_event_id, reset.floor.to_string())
}

/// [`reset`] with `id` as its id instead of the floor (a multi-channel stream's cursor vector).
pub(crate) fn reset_at(reset: &Reset, last_event_id: &str, id: String) -> Result<Bytes, Error> {
    let data = serde_json::json!({
        "reason": reset.reason.as_str(),
        "lastEventId": last_event_id,
        "oldest": reset.oldest.as_deref(),
    });
    let event = Event::builder()
        .event(RESET_EVENT)
        .id(id)
        .data(data.to_string())
        .build()?;
    Ok(sse_proto::encode(&event))
}

/// The `sse-expired` event; `exp` (seconds since the epoch, when known) goes into its data. It has
/// no `id:` line, so the client's last event id stays that of the last real event.
pub(crate) fn expired(exp: Option<u64>) -> Bytes {
    let data = serde_json::json!({ "reason": "token expired", "exp": exp });
    encode_fixed(
        Event::builder()
            .event(EXPIRED_EVENT)
            .data(data.to_string())
            .build(),
    )
}

/// Encodes an event whose fields are fixed here (constants, one-line JSON), which the builder
/// always accepts; were it ever to refuse one, the stream gets nothing rather than a broken event.
fn encode_fixed(event: Result<Event, sse_proto::Error>) -> Bytes {
    match event {
        Ok(event) => sse_proto::encode(&event),
        Err(e) => {
            tracing::error!(error = %e, "a control event could not be encoded");
            Bytes::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_are_what_clients_always_received() {
        assert_eq!(&heartbeat()[..], b": heartbeat\n\n");
        assert_eq!(
            &retry(Duration::from_millis(2500)).unwrap()[..],
            b"retry: 2500\n\n"
        );
        assert_eq!(
            &expired(Some(7))[..],
            b"event: sse-expired\ndata: {\"exp\":7,\"reason\":\"token expired\"}\n\n"
        );
    }
}
