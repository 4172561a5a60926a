//! Status and content-type handling, the 5xx/429 retry policy, and redirects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use sse_client::reqwest::StatusCode;
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

/// Expects a fatal error, the end of the stream, and no second request.
async fn expect_fatal_without_retry(server: &TestServer, source: &mut EventSource) -> Error {
    let err = next_error(source).await;
    assert!(err.is_fatal() && !err.will_retry(), "{err}");
    assert_eq!(err.retry_delay(), None);
    assert!(
        next(source).await.is_none(),
        "the stream ends after a fatal error"
    );
    assert_eq!(source.ready_state(), ReadyState::Closed);
    tokio::time::sleep(ms(100)).await;
    assert_eq!(server.requests().len(), 1, "a fatal error is not retried");
    err
}

#[tokio::test]
async fn no_content_stops_without_retry() {
    let server = TestServer::start(|_, _| vec![response("204 No Content", &[])]).await;
    let mut source = fast(server.url("/s")).build().unwrap();
    let err = expect_fatal_without_retry(&server, &mut source).await;
    assert!(err.is_no_content(), "{err}");
}

#[tokio::test]
async fn wrong_content_type_fails_without_retry() {
    let server = TestServer::start(|_, _| {
        vec![write(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\ndata: x\n\n",
        )]
    })
    .await;
    let mut source = fast(server.url("/s")).build().unwrap();
    let err = expect_fatal_without_retry(&server, &mut source).await;
    assert!(
        matches!(&err, Error::InvalidContentType { content_type } if content_type == "text/html"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_content_type_fails_without_retry() {
    let server = TestServer::start(|_, _| {
        vec![write(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndata: x\n\n",
        )]
    })
    .await;
    let mut source = fast(server.url("/s")).build().unwrap();
    let err = expect_fatal_without_retry(&server, &mut source).await;
    assert!(matches!(err, Error::InvalidContentType { .. }), "{err}");
}

#[tokio::test]
async fn content_type_parameters_are_allowed() {
    let server = TestServer::start(|_, _| {
        vec![
            write("HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\nConnection: close\r\n\r\n"),
            write("data: ok\n\n"),
            Step::Hold,
        ]
    })
    .await;
    let mut source = fast(server.url("/s")).build().unwrap();
    expect_open(&mut source).await;
    assert_eq!(next_message(&mut source).await.1, "ok");
}

#[tokio::test]
async fn not_found_fails_without_retry() {
    let server = TestServer::start(|_, _| vec![response("404 Not Found", &[])]).await;
    let mut source = fast(server.url("/s")).build().unwrap();
    let err = expect_fatal_without_retry(&server, &mut source).await;
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
}

#[tokio::test]
async fn service_unavailable_is_fatal_by_default() {
    let server = TestServer::start(|_, _| {
        vec![response("503 Service Unavailable", &[("Retry-After", "0")])]
    })
    .await;
    let mut source = fast(server.url("/s")).build().unwrap();
    let err = expect_fatal_without_retry(&server, &mut source).await;
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(err.to_string().contains("opt-in"), "{err}");
}

#[tokio::test]
async fn service_unavailable_with_retry_after_is_retried_when_the_policy_allows() {
    let server = TestServer::start(|n, _| match n {
        0 => vec![response("503 Service Unavailable", &[("Retry-After", "1")])],
        1 => vec![response("429 Too Many Requests", &[("Retry-After", "0")])],
        _ => vec![sse_head(), write("data: back\n\n"), Step::Hold],
    })
    .await;
    let policy = RetryPolicy::new()
        .retry_server_errors(true)
        .backoff(Backoff::new().jitter(0.0));
    let mut source = fast(server.url("/s")).retry_policy(policy).build().unwrap();
    let err = next_error(&mut source).await;
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(
        err.retry_delay(),
        Some(Duration::from_secs(1)),
        "Retry-After: 1 is honoured"
    );
    let err = next_error(&mut source).await;
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(
        err.retry_delay(),
        Some(ms(20)),
        "Retry-After: 0 leaves the backoff (2nd failure)"
    );
    expect_open(&mut source).await;
    assert_eq!(next_message(&mut source).await.1, "back");
    let r = server.wait_requests(3).await;
    assert!(r[1].at - r[0].at >= Duration::from_secs(1));
}

#[tokio::test]
async fn redirect_is_followed_and_reconnects_go_to_the_final_url() {
    let server = TestServer::start(|_, req| match req.path.as_str() {
        "/start" => vec![response(
            "307 Temporary Redirect",
            &[("Location", "/final")],
        )],
        "/final" => vec![sse_head(), write("id: 1\ndata: x\n\n")],
        _ => vec![response("404 Not Found", &[])],
    })
    .await;
    let mut source = fast(server.url("/start")).build().unwrap();
    expect_open(&mut source).await;
    assert_eq!(source.url().path(), "/final");
    assert_eq!(next_message(&mut source).await.1, "x");
    next_error(&mut source).await;
    expect_open(&mut source).await;
    let paths: Vec<_> = server
        .wait_requests(3)
        .await
        .into_iter()
        .map(|r| (r.path, r.headers))
        .collect();
    assert_eq!(paths[0].0, "/start");
    assert_eq!(paths[1].0, "/final");
    assert_eq!(paths[2].0, "/final", "the reconnection skips the redirect");
    let last_id = paths[2]
        .1
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("last-event-id"));
    assert_eq!(last_id.map(|(_, v)| v.as_str()), Some("1"));
}

#[tokio::test]
async fn every_redirect_status_is_followed() {
    for status in [
        "301 Moved Permanently",
        "302 Found",
        "303 See Other",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ] {
        let server = TestServer::start(move |_, req| match req.path.as_str() {
            "/start" => vec![response(status, &[("Location", "/final")])],
            _ => vec![sse_head(), write("data: x\n\n"), Step::Hold],
        })
        .await;
        let mut source = fast(server.url("/start")).build().unwrap();
        assert_eq!(next_message(&mut source).await.1, "x", "{status}");
        assert_eq!(source.url().path(), "/final", "{status}");
    }
}

#[tokio::test]
async fn invalid_url_is_refused_at_build() {
    let err = EventSource::builder("not a url").build().unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    assert!(err.is_fatal());
}
