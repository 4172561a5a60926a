//! Arbitrary bytes into the parser: it must not panic, must respect its limits, and must give the
//! same items whatever the chunking (whole vs. cut at fuzzer-chosen points vs. one byte at a time).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_proto::{Item, Parser};

fn parser(settings: u8) -> Parser {
    // Small limits in half the runs, so the limit paths are fuzzed too.
    let (line, event) = if settings & 1 == 0 {
        (
            sse_proto::Limits::DEFAULT_MAX_LINE_LENGTH,
            sse_proto::Limits::DEFAULT_MAX_EVENT_SIZE,
        )
    } else {
        (
            usize::from(settings >> 4) + 1,
            usize::from(settings >> 2) * 3 + 1,
        )
    };
    Parser::builder()
        .max_line_length(line)
        .max_event_size(event)
        .comments(settings & 2 != 0)
        .build()
}

fn run(mut p: Parser, chunks: &[&[u8]]) -> (Vec<Result<Item, String>>, String) {
    let mut out = Vec::new();
    for c in chunks {
        p.feed(c);
        out.extend(p.by_ref().map(|r| r.map_err(|e| e.to_string())));
    }
    p.finish();
    (out, p.last_event_id().to_owned())
}

fuzz_target!(|data: &[u8]| {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let Some((&step, stream)) = rest.split_first() else {
        return;
    };
    let whole = run(parser(settings), &[stream]);
    let max_event = parser(settings).limits().max_event_size;
    for item in &whole.0 {
        if let Ok(Item::Message(m)) = item {
            assert!(m.data.len() < max_event);
        }
    }
    let step = usize::from(step) + 1;
    let cut: Vec<&[u8]> = stream.chunks(step).collect();
    assert_eq!(run(parser(settings), &cut), whole, "chunks of {step}");
    if stream.len() <= 4096 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(parser(settings), &bytes), whole, "bytewise");
    }
});
