//! Arbitrary publish requests into the hub's body decoder (`sse_server::parse_publish_body`, compiled
//! from its source file): it must not panic, must answer 400 or 415 when it refuses, and every event it
//! accepts must reach the wire without forging fields: `parse(encode(event))` gives back its type, id,
//! data and retry exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_proto::{Item, Parser, encode};

// The decoder's own source files, compiled here as modules: they depend only on http, serde_json,
// thiserror, percent-encoding and sse-proto, so the instrumented build stays small (no tokio, hyper,
// redb or redis client, which depending on the whole sse-server crate would instrument and build for
// minutes). `http` re-exports `query` at the path publish.rs imports it from in sse-server.
#[path = "../../sse-server/src/http/publish.rs"]
#[allow(dead_code, unreachable_pub)]
mod publish;
#[path = "../../sse-server/src/http/query.rs"]
#[allow(dead_code, unreachable_pub)]
mod query;
mod http {
    pub(crate) use super::query;
}

/// Byte 0 picks the content type; byte 1's low bit says whether a query string follows the body
/// after the first 0xFF byte (0xFF never occurs in UTF-8, so it cannot split a valid body).
const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("text/plain"),
    None,
    Some("application/merge-patch+json; charset=utf-8"),
    Some("Application/JSON ; charset=latin1"),
    Some("text/plain;charset=utf-8"),
    Some("image/png"),
];

fuzz_target!(|input: &[u8]| {
    let Some((&pick, rest)) = input.split_first() else {
        return;
    };
    let Some((&flags, rest)) = rest.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    let (body, query) = match (flags & 1 == 1, rest.iter().position(|b| *b == 0xff)) {
        (true, Some(i)) => (&rest[..i], std::str::from_utf8(&rest[i + 1..]).ok()),
        _ => (rest, None),
    };
    let event = match publish::parse_publish_body(content_type, body, query) {
        Ok(event) => event,
        Err(e) => {
            assert!(matches!(e.status().as_u16(), 400 | 415), "{e}");
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    if let Some(r) = event.retry() {
        assert!(r.as_millis() <= u128::from(publish::MAX_RETRY_MS));
    }
    let wire = encode(&event);
    let mut parser = Parser::builder()
        .max_line_length(usize::MAX / 2)
        .max_event_size(usize::MAX / 2)
        .build();
    parser.feed(&wire);
    parser.finish();
    let items: Vec<Item> = parser.map(|r| r.expect("no limit")).collect();
    let mut expected = Vec::new();
    if let Some(r) = event.retry() {
        expected.push(Item::Retry(r));
    }
    let data = event.data().expect("the decoder always sets data");
    // The wire carries line breaks in data as LF-separated data lines; CR and CRLF come back as LF.
    let data = data.replace("\r\n", "\n").replace('\r', "\n");
    expected.push(Item::Message(sse_proto::Message {
        event_type: event
            .event()
            .filter(|e| !e.is_empty())
            .unwrap_or("message")
            .into(),
        data: data.into(),
        last_event_id: event.id().unwrap_or("").into(),
    }));
    assert_eq!(items, expected, "wire: {wire:?}");
});
