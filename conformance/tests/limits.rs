//! Limit errors: reported in stream order, the offending event discarded, parsing resumed at the next
//! event, whatever the chunking.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benches fail loudly by design

use conformance::{Chunking, VectorItem};
use sse_proto::Parser;

/// Items as comparable values: limit errors become their message.
fn run(parser: Parser, chunks: Vec<&[u8]>) -> Vec<Result<VectorItem, String>> {
    let mut parser = parser;
    let mut out = Vec::new();
    for c in chunks {
        parser.feed(c);
        out.extend(parser.by_ref().filter_map(|r| match r {
            Ok(i) => VectorItem::from_proto(&i).map(Ok),
            Err(e) => Some(Err(e.to_string())),
        }));
    }
    parser.finish();
    out
}

fn all_chunkings(input: &[u8], parser: impl Fn() -> Parser) -> Vec<Result<VectorItem, String>> {
    let whole = run(parser(), Chunking::Whole.split(input));
    for c in Chunking::all_for(input.len()) {
        assert_eq!(run(parser(), c.split(input)), whole, "{c:?} of {input:?}");
    }
    whole
}

#[test]
fn overlong_line_completed_in_a_later_chunk_does_not_swallow_the_next_line() {
    // The too-long line's end arrives in the same chunk as the blank line that ends its event.
    let input = b"data: 0123456789abcdefghijk\n\ndata: ok\n\n";
    let items = all_chunkings(input, || Parser::builder().max_line_length(16).build());
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items[0].as_ref().is_err_and(|e| e.contains("16 bytes")));
    assert_eq!(items[1], Ok(VectorItem::message("message", "ok", "")));
}

#[test]
fn oversized_event_is_discarded_and_the_next_one_parsed() {
    let input = b"id: 1\ndata: 12345\ndata: 67890\ndata: x\n\nid: 2\ndata: ok\n\n";
    let items = all_chunkings(input, || Parser::builder().max_event_size(10).build());
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items[0].as_ref().is_err_and(|e| e.contains("10 bytes")));
    // The discarded event's id never took effect.
    assert_eq!(items[1], Ok(VectorItem::message("message", "ok", "2")));
}

#[test]
fn line_exactly_at_the_limit_is_accepted() {
    let input = b"data: 0123456789\n\n"; // 16 bytes before the line end
    let items = all_chunkings(input, || Parser::builder().max_line_length(16).build());
    assert_eq!(
        items,
        vec![Ok(VectorItem::message("message", "0123456789", ""))]
    );
    let items = all_chunkings(input, || Parser::builder().max_line_length(15).build());
    assert!(matches!(items.as_slice(), [Err(_)]), "{items:?}");
}
