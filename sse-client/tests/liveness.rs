//! The idle (liveness) timeout: silence means a dead connection; heartbeats keep it alive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use sse_client::{Error, Event, EventSource};
use support::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test]
async fn idle_timeout_fires_on_a_silent_connection_and_reconnects() {
    let server = TestServer::start(|n, _| match n {
        0 => vec![sse_head(), write("id: 4\ndata: x\n\n"), Step::Hold],
        _ => vec![sse_head(), write("data: again\n\n"), Step::Hold],
    })
    .await;
    let mut source = EventSource::builder(server.url("/s"))
        .reconnection_time(ms(10))
        .idle_timeout(Some(ms(200)))
        .build()
        .unwrap();
    assert_eq!(next_message(&mut source).await.1, "x");
    let err = next_error(&mut source).await;
    assert!(
        matches!(err, Error::IdleTimeout { timeout, .. } if timeout == ms(200)),
        "{err}"
    );
    assert!(err.will_retry());
    assert_eq!(next_message(&mut source).await.1, "again");
    server.wait_client_closed(1).await;
    let r = server.wait_requests(2).await;
    assert_eq!(r[1].header("last-event-id"), Some("4"));
    assert!(r[1].at - r[0].at >= ms(200));
}

#[tokio::test]
async fn idle_timeout_covers_a_server_that_never_answers() {
    let server = TestServer::start(|n, _| match n {
        0 => vec![Step::Hold],
        _ => vec![sse_head(), write("data: ok\n\n"), Step::Hold],
    })
    .await;
    let mut source = EventSource::builder(server.url("/s"))
        .reconnection_time(ms(10))
        .idle_timeout(Some(ms(200)))
        .build()
        .unwrap();
    let err = next_error(&mut source).await;
    assert!(matches!(err, Error::IdleTimeout { .. }), "{err}");
    assert_eq!(next_message(&mut source).await.1, "ok");
}

#[tokio::test]
async fn heartbeats_keep_a_connection_alive() {
    // 15 heartbeat comments 50 ms apart (750 ms in all) under a 500 ms idle timeout.
    let server = TestServer::start(|_, _| {
        let mut steps = vec![sse_head()];
        for _ in 0..15 {
            steps.push(pause_ms(50));
            steps.push(write(":\n"));
        }
        steps.push(write("data: done\n\n"));
        steps.push(Step::Hold);
        steps
    })
    .await;
    let mut source = EventSource::builder(server.url("/s"))
        .reconnection_time(ms(10))
        .idle_timeout(Some(ms(500)))
        .build()
        .unwrap();
    expect_open(&mut source).await;
    match next(&mut source).await {
        Some(Ok(Event::Message(m))) => assert_eq!(m.data, "done"),
        other => panic!("expected the message after the heartbeats, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 1);
}
