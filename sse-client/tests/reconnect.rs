//! Reconnection: Last-Event-ID, retry:, backoff, give-up, credentials, close/drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sse_client::reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use sse_client::{Backoff, Error, EventSource, ReadyState, RetryPolicy};
use support::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn fast(url: String) -> sse_client::EventSourceBuilder {
    EventSource::builder(url)
        .reconnection_time(ms(10))
        .retry_policy(RetryPolicy::new().backoff(Backoff::new().jitter(0.0)))
}

#[tokio::test]
async fn reconnect_after_eof_sends_last_committed_id() {
    let server = TestServer::start(|n, _| match n {
        0 => vec![
            sse_head(),
            write("id: 1\ndata: a\n\nid: 2\ndata: b\n\n"),
            // The id of an event that never completes must not count.
            write("id: 3\ndata: unfinished\n"),
        ],
        _ => vec![sse_head(), write("data: c\n\n"), Step::Hold],
    })
    .await;
    let mut source = fast(server.url("/s")).build().unwrap();
    expect_open(&mut source).await;
    assert_eq!(next_message(&mut source).await.1, "a");
    assert_eq!(
        next_message(&mut source).await,
        ("message".into(), "b".into(), "2".into())
    );
    let err = next_error(&mut source).await;
    assert!(matches!(err, Error::StreamEnded { .. }), "{err}");
    assert!(err.will_retry());
    assert_eq!(source.last_event_id(), "2");
    assert_eq!(
        next_message(&mut source).await,
        ("message".into(), "c".into(), "2".into())
    );

    let requests = server.wait_requests(2).await;
    assert_eq!(
        requests[0].header("last-event-id"),
        None,
        "no id yet: no header"
    );
    assert_eq!(requests[1].header("last-event-id"), Some("2"));
    for r in &requests {
        assert_eq!(r.method, "GET");
        assert_eq!(r.header("accept"), Some("text/event-stream"));
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        assert_eq!(
            r.header_count("last-event-id"),
            usize::from(r.header("last-event-id").is_some())
        );
    }
}

#[tokio::test]
async fn reconnect_after_reset_sends_last_committed_id() {
    let server = TestServer::start(|n, _| match n {
        0 => vec![
            sse_head(),
            write("id: 7\ndata: a\n\n"),
            pause_ms(20),
            write("id: 8\ndata: half"),
            pause_ms(20),
            Step::Reset,
        ],
        _ => vec![sse_head(), Step::Hold],
    })
    .await;
    let mut source = fast(server.url("/s")).build().unwrap();
    assert_eq!(next_message(&mut source).await.2, "7");
    let err = next_error(&mut source).await;
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert!(err.retry_delay().is_some());
    expect_open(&mut source).await;
    let requests = server.wait_requests(2).await;
    assert_eq!(requests[1].header("last-event-id"), Some("7"));
}

#[tokio::test]
async fn id_only_block_is_used_and_empty_id_sends_no_header() {
    let server = TestServer::start(|n, _| match n {
        0 => vec![sse_head(), write("data: x\n\nid: 9\n\n")],
        1 => vec![sse_head(), write("id: 10\ndata: y\n\nid\n\n")],
        _ => vec![sse_head(), Step::Hold],
    })
    .await;
    let mut source = fast(server.url("/s")).build().unwrap();
    assert_eq!(next_message(&mut source).await.2, "");
    next_error(&mut source).await;
    assert_eq!(source.last_event_id(), "9");
    assert_eq!(next_message(&mut source).await.2, "10");
    next_error(&mut source).await;
    expect_open(&mut source).await;
    let requests = server.wait_requests(3).await;
    assert_eq!(requests[1].header("last-event-id"), Some("9"));
    assert_eq!(
        requests[2].header("last-event-id"),
        None,
        "an empty id resets it"
    );
}

#[tokio::test]
async fn initial_last_event_id_is_sent_and_reported() {
    let server = TestServer::start(|_, _| vec![sse_head(), write("data: x\n\n"), Step::Hold]).await;
    let mut source = fast(server.url("/s")).last_event_id("41").build().unwrap();
    assert_eq!(next_message(&mut source).await.2, "41");
    assert_eq!(server.requests()[0].header("last-event-id"), Some("41"));
}

#[tokio::test]
async fn retry_field_replaces_the_reconnection_time() {
    let server = TestServer::start(|n, _| match n {
        0 => vec![sse_head(), write("retry: 50\ndata: x\n\n")],
        _ => vec![sse_head(), Step::Hold],
    })
    .await;
    // Default reconnection time: 3 s. The server asks for 50 ms.
    let mut source = EventSource::builder(server.url("/s")).build().unwrap();
    assert_eq!(source.reconnection_time(), Duration::from_secs(3));
    next_message(&mut source).await;
    assert_eq!(source.reconnection_time(), ms(50));
    let err = next_error(&mut source).await;
    assert_eq!(err.retry_delay(), Some(ms(50)));
    expect_open(&mut source).await;
    let r = server.wait_requests(2).await;
    assert!(r[1].at - r[0].at >= ms(50));
}

#[tokio::test]
async fn backoff_grows_is_capped_and_resets_after_a_delivering_connection() {
    // Connections 0-4 fail before answering; 5 delivers an event then ends; 6 and 7 fail again.
    let server = TestServer::start(|n, _| match n {
        5 => vec![sse_head(), write("data: x\n\n")],
        0..=7 => vec![Step::Reset],
        _ => vec![sse_head(), Step::Hold],
    })
    .await;
    let policy =
        RetryPolicy::new().backoff(Backoff::new().factor(2.0).max_delay(ms(40)).jitter(0.0));
    let mut source = EventSource::builder(server.url("/s"))
        .reconnection_time(ms(10))
        .retry_policy(policy)
        .build()
        .unwrap();
    let mut delays = Vec::new();
    for _ in 0..5 {
        delays.push(next_error(&mut source).await.retry_delay().unwrap());
    }
    assert_eq!(delays, [ms(10), ms(20), ms(40), ms(40), ms(40)]);
    next_message(&mut source).await;
    let mut reset = Vec::new();
    for _ in 0..3 {
        reset.push(next_error(&mut source).await.retry_delay().unwrap());
    }
    // The end of the delivering connection waits the plain reconnection time, and the failures
    // after it start the backoff from the beginning.
    assert_eq!(reset, [ms(10), ms(10), ms(20)]);
    let r = server.wait_requests(8).await;
    for pair in r.windows(2) {
        assert!(pair[1].at - pair[0].at >= ms(10));
    }
}

#[tokio::test]
async fn jittered_backoff_stays_between_reconnection_time_and_cap() {
    let server = TestServer::start(|_, _| vec![Step::Reset]).await;
    let policy = RetryPolicy::new().backoff(Backoff::new().max_delay(ms(80)).jitter(0.5));
    let mut source = EventSource::builder(server.url("/s"))
        .reconnection_time(ms(10))
        .retry_policy(policy)
        .build()
        .unwrap();
    for n in 1..=7u32 {
        let d = next_error(&mut source).await.retry_delay().unwrap();
        let nominal = ms(10 * 2u64.pow(n - 1)).min(ms(80));
        assert!(d <= nominal, "attempt {n}: {d:?} > {nominal:?}");
        assert!(
            d >= (nominal / 2).max(ms(10)),
            "attempt {n}: {d:?} too small"
        );
    }
}

#[tokio::test]
async fn gives_up_after_max_retries_on_connection_refused() {
    let addr = closed_port().await;
    let mut source = fast(format!("http://{addr}/s"))
        .retry_policy(
            RetryPolicy::new()
                .max_retries(Some(2))
                .backoff(Backoff::new().jitter(0.0)),
        )
        .build()
        .unwrap();
    let first = next_error(&mut source).await;
    assert!(
        matches!(first, Error::Transport { .. }) && first.will_retry(),
        "{first}"
    );
    assert!(next_error(&mut source).await.will_retry());
    let last = next_error(&mut source).await;
    assert!(last.is_fatal(), "{last}");
    assert!(last.to_string().contains("refused"), "{last}");
    assert!(next(&mut source).await.is_none());
    assert_eq!(source.ready_state(), ReadyState::Closed);
}

#[tokio::test]
async fn custom_request_headers_and_credentials_are_sent_on_every_connection() {
    let server = TestServer::start(|n, _| match n {
        0 | 1 => vec![sse_head(), write("data: x\n\n")],
        _ => vec![sse_head(), Step::Hold],
    })
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let request = sse_client::reqwest::Client::new()
        .get(server.url("/s?x=1"))
        .header("x-custom", "yes");
    let mut source = EventSource::from_request(request)
        .reconnection_time(ms(10))
        .credentials(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut h = HeaderMap::new();
                h.insert(
                    AUTHORIZATION,
                    HeaderValue::from_str(&format!("Bearer token-{n}"))?,
                );
                Ok(h)
            }
        })
        .build()
        .unwrap();
    next_message(&mut source).await;
    next_error(&mut source).await;
    next_message(&mut source).await;
    next_error(&mut source).await;
    expect_open(&mut source).await;
    let r = server.wait_requests(3).await;
    for (i, req) in r.iter().take(3).enumerate() {
        assert_eq!(req.path, "/s?x=1");
        assert_eq!(req.header("x-custom"), Some("yes"));
        assert_eq!(
            req.header("authorization"),
            Some(format!("Bearer token-{i}").as_str())
        );
    }
    assert!(calls.load(Ordering::SeqCst) >= 3);
}

#[tokio::test]
async fn failing_credentials_callback_is_retried() {
    let server =
        TestServer::start(|_, _| vec![sse_head(), write("data: ok\n\n"), Step::Hold]).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut source = fast(server.url("/s"))
        .credentials(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err("token service down".into())
                } else {
                    Ok(HeaderMap::new())
                }
            }
        })
        .build()
        .unwrap();
    let err = next_error(&mut source).await;
    assert!(
        matches!(err, Error::Credentials { .. }) && err.will_retry(),
        "{err}"
    );
    assert_eq!(next_message(&mut source).await.1, "ok");
    assert_eq!(
        server.requests().len(),
        1,
        "no request was sent without credentials"
    );
}

#[tokio::test]
async fn drop_closes_the_connection_and_nothing_outlives_it() {
    let server = TestServer::start(|_, _| vec![sse_head(), write("data: x\n\n"), Step::Hold]).await;
    let mut source = fast(server.url("/s")).build().unwrap();
    next_message(&mut source).await;
    drop(source);
    server.wait_client_closed(1).await;
    tokio::time::sleep(ms(100)).await;
    assert_eq!(server.requests().len(), 1, "no reconnection after drop");
}

#[tokio::test]
async fn close_ends_the_stream_and_the_connection() {
    let server = TestServer::start(|_, _| vec![sse_head(), write("data: x\n\n"), Step::Hold]).await;
    let mut source = fast(server.url("/s")).build().unwrap();
    next_message(&mut source).await;
    assert_eq!(source.ready_state(), ReadyState::Open);
    source.close();
    assert_eq!(source.ready_state(), ReadyState::Closed);
    assert!(next(&mut source).await.is_none());
    server.wait_client_closed(1).await;
    tokio::time::sleep(ms(100)).await;
    assert_eq!(server.requests().len(), 1, "no reconnection after close");
}

#[tokio::test]
async fn close_while_waiting_to_reconnect_cancels_the_reconnection() {
    let server = TestServer::start(|_, _| vec![sse_head(), write("data: x\n\n")]).await;
    let mut source = EventSource::builder(server.url("/s"))
        .reconnection_time(ms(100))
        .build()
        .unwrap();
    next_message(&mut source).await;
    assert!(next_error(&mut source).await.will_retry());
    source.close();
    assert!(next(&mut source).await.is_none());
    tokio::time::sleep(ms(300)).await;
    assert_eq!(server.requests().len(), 1);
}
