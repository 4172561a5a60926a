//! Property tests: encode→parse round trip, chunking independence, no panics on arbitrary bytes.
//!
//! Case counts are explicit (see each `ProptestConfig`) and sized so the file runs in seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benches fail loudly by design

use std::time::Duration;

use conformance::VectorItem;
use proptest::prelude::*;
use proptest::test_runner::Config;
use sse_proto::{Event, Item, Parser, encode};

/// Cases for the round trip and chunking properties.
const CASES: u32 = 2000;
/// Cases for the no-panic property (cheap, so more of them).
const PANIC_CASES: u32 = 4000;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Text that exercises the wire: line breaks of every kind, leading spaces, colons, BOMs, NULs,
/// multi-byte characters; mixed with fully arbitrary Unicode.
fn wire_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ \r\n:aZ9é☕😀\u{feff}\u{0}\t]{0,24}",
        "( ?(\r\n|\r|\n)?){0,6}",
    ]
}

#[derive(Debug, Clone)]
struct Spec {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry_ms: Option<u64>,
    comment: Option<String>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::option::of(wire_text().prop_map(|s| s.replace(['\r', '\n', '\0'], ""))),
        proptest::option::of(wire_text().prop_map(|s| s.replace(['\r', '\n'], ""))),
        proptest::option::of(wire_text()),
        proptest::option::of(prop_oneof![0..10_000u64, any::<u64>()]),
        proptest::option::of(wire_text()),
    )
        .prop_map(|(id, event, data, retry_ms, comment)| Spec {
            id,
            event,
            data,
            retry_ms,
            comment,
        })
}

fn build(spec: &Spec) -> Event {
    let mut b = Event::builder();
    if let Some(id) = &spec.id {
        b = b.id(id.clone());
    }
    if let Some(event) = &spec.event {
        b = b.event(event.clone());
    }
    if let Some(data) = &spec.data {
        b = b.data(data.clone());
    }
    if let Some(ms) = spec.retry_ms {
        b = b.retry(Duration::from_millis(ms));
    }
    if let Some(c) = &spec.comment {
        b = b.comment(c.clone());
    }
    b.build().expect("the strategy only makes valid events")
}

/// Splits `bytes` at the given (unsorted, possibly out of range) points.
fn chunks<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts {
        out.push(&bytes[start..cut]);
        start = cut;
    }
    out.push(&bytes[start..]);
    out
}

/// Everything a parser yields for one chunking, errors as their messages, plus the final last event id.
fn run(mut parser: Parser, chunks: &[&[u8]]) -> (Vec<Result<Item, String>>, String) {
    let mut out = Vec::new();
    for c in chunks {
        parser.feed(c);
        out.extend(parser.by_ref().map(|r| r.map_err(|e| e.to_string())));
    }
    parser.finish();
    out.extend(parser.by_ref().map(|r| r.map_err(|e| e.to_string())));
    (out, parser.last_event_id().to_owned())
}

/// Comment lines as the parser reports them: the encoder writes `: text` (or `:` when empty) per line.
fn comment_items(comment: &str) -> Vec<Item> {
    let normalised = comment.replace("\r\n", "\n").replace('\r', "\n");
    normalised
        .split('\n')
        .map(|l| {
            Item::Comment(if l.is_empty() {
                String::new()
            } else {
                format!(" {l}")
            })
        })
        .collect()
}

proptest! {
    #![proptest_config(config(CASES))]

    /// parse(encode(events)) gives back every event exactly, as far as the wire can tell events apart
    /// (no id and an empty id both leave lastEventId ""; no type reads as "message").
    #[test]
    fn parse_of_encode_gives_back_the_events(
        specs in proptest::collection::vec(spec(), 1..6),
        points in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let events: Vec<Event> = specs.iter().map(build).collect();
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        let mut last_id = String::new();
        for e in &events {
            wire.extend_from_slice(&encode(e));
            if let Some(c) = e.comment() {
                expected.extend(comment_items(c).into_iter().map(Ok));
            }
            if let Some(r) = e.retry() {
                expected.push(Ok(Item::Retry(r)));
            }
            if let Some(id) = e.id() {
                last_id = id.to_owned();
            }
            if let Some(data) = e.data() {
                expected.push(Ok(Item::Message(sse_proto::Message {
                    event_type: e.event().unwrap_or("message").into(),
                    data: data.into(),
                    last_event_id: last_id.as_str().into(),
                })));
            }
        }
        let parser = Parser::builder().comments(true).build();
        let (items, final_id) = run(parser, &chunks(&wire, &points));
        prop_assert_eq!(items, expected);
        prop_assert_eq!(final_id, last_id);
    }

    /// The builder's normalisation is what a client receives: data with CR/CRLF reads back with LF.
    #[test]
    fn data_reads_back_with_line_breaks_normalised(data in wire_text()) {
        let e = Event::message(data.clone());
        let (items, _) = run(Parser::new(), &[&encode(&e)]);
        let want = data.replace("\r\n", "\n").replace('\r', "\n");
        prop_assert_eq!(items, vec![Ok(Item::Message(sse_proto::Message {
            event_type: "message".into(),
            data: want.as_str().into(),
            last_event_id: Default::default(),
        }))]);
    }
}

/// Byte streams made of the pieces the parser cares about, plus arbitrary bytes.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data".to_vec()),
        Just(b"id".to_vec()),
        Just(b"event".to_vec()),
        Just(b"retry".to_vec()),
        Just(b":".to_vec()),
        Just(b": ".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\0".to_vec()),
        Just("é😀".as_bytes().to_vec()),
        Just(b"\xF0\x9F".to_vec()),
        Just(b"\xFF".to_vec()),
        "[0-9]{1,3}".prop_map(String::into_bytes),
        "[a-z]{1,12}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 1..8),
    ];
    proptest::collection::vec(piece, 0..48).prop_map(|v| v.concat())
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    max_line: usize,
    max_event: usize,
    comments: bool,
}

fn settings() -> impl Strategy<Value = Settings> {
    prop_oneof![
        Just((
            sse_proto::Limits::DEFAULT_MAX_LINE_LENGTH,
            sse_proto::Limits::DEFAULT_MAX_EVENT_SIZE
        )),
        (1usize..48, 1usize..96),
    ]
    .prop_flat_map(|(max_line, max_event)| {
        any::<bool>().prop_map(move |comments| Settings {
            max_line,
            max_event,
            comments,
        })
    })
}

fn parser(s: Settings) -> Parser {
    Parser::builder()
        .max_line_length(s.max_line)
        .max_event_size(s.max_event)
        .comments(s.comments)
        .build()
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Items, limit errors and the final last event id do not depend on how the stream is chunked.
    #[test]
    fn parse_is_independent_of_chunking(
        bytes in sse_bytes(),
        points in proptest::collection::vec(any::<usize>(), 0..12),
        s in settings(),
    ) {
        let whole = run(parser(s), &[&bytes]);
        let split = run(parser(s), &chunks(&bytes, &points));
        prop_assert_eq!(&split, &whole);
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(&run(parser(s), &bytewise), &whole);
    }
}

proptest! {
    #![proptest_config(config(PANIC_CASES))]

    /// Arbitrary bytes in arbitrary chunks never panic, with any limits, across a reconnection, and
    /// never yield more data than the event limit allows.
    #[test]
    fn parser_never_panics_on_arbitrary_bytes(
        first in proptest::collection::vec(any::<u8>(), 0..512),
        second in proptest::collection::vec(any::<u8>(), 0..128),
        points in proptest::collection::vec(any::<usize>(), 0..16),
        s in settings(),
    ) {
        let mut p = parser(s);
        for c in chunks(&first, &points) {
            p.feed(c);
        }
        p.finish();
        p.feed(&second);
        for item in p.by_ref() {
            if let Ok(Item::Message(m)) = item {
                prop_assert!(m.data.len() < s.max_event);
            }
        }
    }
}

#[test]
fn vector_items_convert_from_parser_items() {
    // Keeps the conformance crate's conversion honest for the shapes the proptests rely on.
    let (items, _) = run(Parser::new(), &[b"retry: 5\ndata: x\n\n"]);
    let converted: Vec<_> = items
        .iter()
        .filter_map(|i| i.as_ref().ok().and_then(VectorItem::from_proto))
        .collect();
    assert_eq!(
        converted,
        vec![
            VectorItem::retry(5),
            VectorItem::message("message", "x", "")
        ]
    );
}
