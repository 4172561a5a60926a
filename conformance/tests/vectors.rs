//! Every spec vector, parsed whole, at every two-chunk split point, one byte at a time, and through
//! the `EventStream` adapter.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benches fail loudly by design

use conformance::{Chunking, Vector, load_all, parse_chunks};
use futures::{StreamExt, executor::block_on, stream};

fn vectors() -> Vec<Vector> {
    let vectors = load_all().expect("the bundled vectors load");
    assert!(
        vectors.len() >= 60,
        "expected at least 60 vectors, found {}",
        vectors.len()
    );
    vectors
}

fn check(vector: &Vector, chunking: Chunking) {
    let parsed = parse_chunks(chunking.split(&vector.input))
        .unwrap_or_else(|e| panic!("{} ({chunking:?}): {e}", vector.name));
    assert_eq!(
        parsed.items, vector.expected,
        "vector {} ({}) with {chunking:?}",
        vector.name, vector.description
    );
    if let Some(id) = &vector.last_event_id {
        assert_eq!(
            &parsed.last_event_id, id,
            "final lastEventId of vector {} with {chunking:?}",
            vector.name
        );
    }
}

#[test]
fn every_vector_parses_whole() {
    for v in vectors() {
        check(&v, Chunking::Whole);
    }
}

#[test]
fn every_vector_parses_at_every_split_point() {
    for v in vectors() {
        for n in 0..=v.input.len() {
            check(&v, Chunking::SplitAt(n));
        }
    }
}

#[test]
fn every_vector_parses_one_byte_at_a_time() {
    for v in vectors() {
        check(&v, Chunking::Bytewise);
    }
}

#[test]
fn every_vector_parses_through_event_stream() {
    for v in vectors() {
        for chunking in [Chunking::Whole, Chunking::Bytewise] {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> = chunking
                .split(&v.input)
                .into_iter()
                .map(|c| Ok(c.to_vec()))
                .collect();
            let items: Vec<_> =
                block_on(sse_proto::EventStream::new(stream::iter(chunks)).collect());
            let items: Vec<_> = items
                .into_iter()
                .map(|r| r.unwrap_or_else(|e| panic!("{}: {e}", v.name)))
                .filter_map(|i| conformance::VectorItem::from_proto(&i))
                .collect();
            assert_eq!(
                items, v.expected,
                "vector {} via EventStream, {chunking:?}",
                v.name
            );
        }
    }
}

#[test]
fn vectors_cover_raw_bytes_and_every_line_ending() {
    let vectors = vectors();
    let any = |pred: &dyn Fn(&[u8]) -> bool| vectors.iter().any(|v| pred(&v.input));
    assert!(any(&|i| i.starts_with(b"\xEF\xBB\xBF")), "a leading BOM");
    assert!(any(&|i| std::str::from_utf8(i).is_err()), "invalid UTF-8");
    assert!(any(&|i| i.windows(2).any(|w| w == b"\r\n")), "CRLF");
    assert!(any(&|i| i.ends_with(b"\r")), "a lone CR at the end");
    assert!(any(&|i| i.contains(&0)), "NUL");
    assert!(vectors.iter().all(|v| !v.description.is_empty()));
}
