//! The byte stream as TCP delivers it: line ends and UTF-8 split across writes, unfinished events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use sse_client::{Error, Event, EventSource, Message};
use support::*;

fn source(url: String) -> EventSource {
    EventSource::builder(url)
        .reconnection_time(Duration::from_millis(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn cr_lf_and_multibyte_utf8_split_across_tcp_writes() {
    let server = TestServer::start(|_, _| {
        let mut steps = vec![sse_head()];
        steps.extend(chunks(&[
            b"\xEF\xBB",
            b"\xBFdata: caf\xC3",
            b"\xA9\r",
            b"\n\r",
            b"\nevent: sm\xF0\x9F",
            b"\x98",
            b"\x80ile\rdata: a\r\rdata: b\r",
            b"\n\ndata: \xFFend\n",
            b"\n",
        ]));
        steps.push(Step::Hold);
        steps
    })
    .await;
    let mut source = source(server.url("/s"));
    assert_eq!(
        next_message(&mut source).await,
        ("message".into(), "café".into(), "".into())
    );
    assert_eq!(
        next_message(&mut source).await,
        ("sm😀ile".into(), "a".into(), "".into())
    );
    assert_eq!(next_message(&mut source).await.1, "b");
    assert_eq!(next_message(&mut source).await.1, "\u{FFFD}end");
}

#[tokio::test]
async fn unfinished_event_at_eof_is_discarded() {
    let server = TestServer::start(|n, _| match n {
        0 => vec![sse_head(), write("data: a\n\ndata: partial\n")],
        _ => vec![sse_head(), write("data: b\n\n"), Step::Hold],
    })
    .await;
    let mut source = source(server.url("/s"));
    assert_eq!(next_message(&mut source).await.1, "a");
    assert!(matches!(
        next_error(&mut source).await,
        Error::StreamEnded { .. }
    ));
    assert_eq!(
        next_message(&mut source).await.1,
        "b",
        "no trace of the partial event"
    );
}

#[tokio::test]
async fn oversized_event_is_reported_and_the_connection_continues() {
    let server = TestServer::start(|_, _| {
        vec![
            sse_head(),
            write(format!("data: {}\n\ndata: ok\n\n", "x".repeat(200))),
            Step::Hold,
        ]
    })
    .await;
    let mut source = EventSource::builder(server.url("/s"))
        .limits(sse_client::sse_proto::Limits {
            max_event_size: 100,
            ..Default::default()
        })
        .build()
        .unwrap();
    let err = next_error(&mut source).await;
    assert!(
        matches!(err, Error::Parse(_)) && err.will_retry() && err.retry_delay().is_none(),
        "{err}"
    );
    assert_eq!(next_message(&mut source).await.1, "ok");
    assert_eq!(server.requests().len(), 1);
}

/// Comments are dropped by default, and come as `Event::Comment` (text after the colon, as sent)
/// in stream order, even in the middle of an event, with `comments(true)`.
#[tokio::test]
async fn comments_are_items_only_when_asked_for() {
    let server = TestServer::start(|_, _| {
        let mut steps = vec![sse_head()];
        steps.extend(chunks(&[
            b":Hello\n",
            b"data: a\n: in the middle\n",
            b"data: b\n\n:",
            b"\n",
        ]));
        steps.push(Step::Hold);
        steps
    })
    .await;
    let mut events = EventSource::builder(server.url("/c"))
        .comments(true)
        .build()
        .unwrap();
    expect_open(&mut events).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&mut events).await.unwrap().unwrap());
    }
    assert_eq!(
        got,
        vec![
            Event::Comment("Hello".into()),
            Event::Comment(" in the middle".into()),
            Event::Message(Message {
                event_type: "message".into(),
                data: "a\nb".into(),
                last_event_id: Default::default(),
            }),
            Event::Comment(String::new()),
        ]
    );

    let server = TestServer::start(|_, _| {
        vec![
            sse_head(),
            write(":Hello\ndata: x\n\n: after\ndata: y\n\n"),
            Step::Hold,
        ]
    })
    .await;
    let mut source = source(server.url("/c"));
    expect_open(&mut source).await;
    for data in ["x", "y"] {
        match next(&mut source).await {
            Some(Ok(Event::Message(m))) => assert_eq!(m.data, data),
            other => panic!("comments are off by default: expected message {data}, got {other:?}"),
        }
    }
}
