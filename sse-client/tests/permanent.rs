//! Permanent errors end `listen` and the library's `EventSource` at once, with the server's
//! explanation: an unsupported scheme, a TLS or protocol mismatch, any 4xx but 429. Temporary ones
//! (5xx/429 with the opt-in, connection failures) keep the `RetryPolicy` rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sse_client::proto::{Action, Config, Connection};
use sse_client::reqwest::StatusCode;
use sse_client::reqwest::header::HeaderMap;
use sse_client::{Error, EventSource, RetryPolicy};
use support::cli::{TestHub, run, run_within, text};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// With the default reconnection time (3 s) a single retry would take longer than this, so
/// finishing within it means no retry was waited for. A hang guard, not a timing measurement: the
/// tests also check that no retry was announced or made.
const NO_RETRY_BOUND: Duration = Duration::from_secs(5);

/// A plain TCP server that answers every connection with `answer` (after reading what the client
/// sent first) and closes; counts the connections.
async fn raw_server(answer: &'static [u8]) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, count)
}

fn assert_not_retried(out: &std::process::Output) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("reconnecting in"), "{stderr}");
    assert!(!stderr.contains("gave up"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn listen_to_an_unsupported_scheme_fails_at_once() {
    for url in ["ftp://127.0.0.1/events/x", "ws://127.0.0.1:1/x"] {
        let out = run_within(NO_RETRY_BOUND, &["listen", url], &[]).await;
        assert_not_retried(&out);
        let stderr = text(&out.stderr);
        assert!(stderr.contains("unsupported URL scheme"), "{stderr}");
        assert!(stderr.contains("http://"), "says what to use: {stderr}");
    }
}

#[tokio::test]
async fn listen_with_https_to_a_plaintext_port_fails_without_retrying() {
    // The real hub on plain HTTP.
    let hub = TestHub::start("t").await;
    let url = format!("https://{}/events/x", hub.addr);
    let out = run_within(NO_RETRY_BOUND, &["listen", &url], &[]).await;
    assert_not_retried(&out);
    assert!(text(&out.stderr).contains("TLS"), "{out:?}");

    // A plain HTTP server that answers the TLS hello with a 400: one connection, no second.
    let (addr, connections) =
        raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
    let url = format!("https://{addr}/events/x");
    let out = run_within(
        NO_RETRY_BOUND,
        &["listen", &url, "--reconnection-time", "0.01"],
        &[],
    )
    .await;
    assert_not_retried(&out);
    assert!(
        text(&out.stderr).contains("TLS handshake failed"),
        "{out:?}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn listen_to_a_server_that_does_not_speak_http_fails_without_retrying() {
    for answer in [
        &b"hello\n"[..],
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 abc\r\n\r\n",
    ] {
        let answer: &'static [u8] = answer;
        let (addr, connections) = raw_server(answer).await;
        let url = format!("http://{addr}/events/x");
        let out = run_within(
            NO_RETRY_BOUND,
            &["listen", &url, "--reconnection-time", "0.01"],
            &[],
        )
        .await;
        assert_not_retried(&out);
        assert!(text(&out.stderr).contains("not HTTP"), "{out:?}");
        assert_eq!(connections.load(Ordering::SeqCst), 1, "{answer:?}");
    }
}

#[tokio::test]
async fn listen_to_a_4xx_prints_the_error_body_and_does_not_retry() {
    for status in [
        "401 Unauthorized",
        "403 Forbidden",
        "404 Not Found",
        "410 Gone",
    ] {
        let server = TestServer::start(move |_, _| {
            let body = r#"{"error":"missing token: send the header Authorization: Bearer <token>"}"#;
            vec![write(format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ))]
        })
        .await;
        let out = run_within(
            NO_RETRY_BOUND,
            &[
                "listen",
                &server.url("/events/x"),
                "--reconnection-time",
                "0.01",
            ],
            &[],
        )
        .await;
        assert_not_retried(&out);
        let stderr = text(&out.stderr);
        assert!(stderr.contains(status), "{stderr}");
        assert!(
            stderr.contains(
                r#"{"error":"missing token: send the header Authorization: Bearer <token>"}"#
            ),
            "{stderr}"
        );
        assert_eq!(server.requests().len(), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn listen_to_the_hubs_404_prints_its_json_error() {
    let hub = TestHub::start("t").await;
    let out = run_within(NO_RETRY_BOUND, &["listen", &hub.url("/nope")], &[]).await;
    assert_not_retried(&out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("404"), "{stderr}");
    assert!(
        stderr.contains(r#"{"error":"no route for /nope: subscribe with GET /events/{channel}"}"#),
        "{stderr}"
    );
}

#[tokio::test]
async fn too_many_requests_is_retried_only_with_the_opt_in() {
    let script = |n: usize, _: &Request| match n {
        0 => vec![response("429 Too Many Requests", &[("Retry-After", "0")])],
        _ => vec![sse_head(), write("data: in\n\n"), Step::Hold],
    };
    let server = TestServer::start(script).await;
    let out = run(
        &["listen", &server.url("/e"), "--reconnection-time", "0.01"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "fatal by default: {out:?}");
    assert!(text(&out.stderr).contains("429"), "{out:?}");
    assert_eq!(server.requests().len(), 1);
    let server = TestServer::start(script).await;
    let url = server.url("/e");
    let out = run(
        &[
            "listen",
            &url,
            "--reconnection-time",
            "0.01",
            "--retry-server-errors",
            "--max-events",
            "1",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stderr).contains("429"), "{out:?}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn the_library_refuses_an_unsupported_scheme_at_build() {
    let err = EventSource::builder("ftp://127.0.0.1/x")
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedScheme { scheme, .. } if scheme == "ftp"),
        "{err}"
    );
    assert!(err.is_fatal());
    let err = EventSource::builder("localhost:8080/x")
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("did you mean http://localhost:8080/x"),
        "{err}"
    );
    let request = reqwest::Client::new().get("ftp://127.0.0.1/x");
    let err = EventSource::from_request(request).build().unwrap_err();
    assert!(matches!(err, Error::UnsupportedScheme { .. }), "{err}");
}

#[tokio::test]
async fn the_library_ends_on_a_protocol_mismatch_even_when_retrying_forever() {
    let (addr, connections) = raw_server(b"hello\n").await;
    let mut source = EventSource::builder(format!("http://{addr}/x"))
        .reconnection_time(Duration::from_millis(10))
        .retry_policy(RetryPolicy::new().retry_server_errors(true))
        .build()
        .unwrap();
    let err = next_error(&mut source).await;
    assert!(matches!(err, Error::Protocol { .. }), "{err}");
    assert!(err.is_fatal(), "{err}");
    assert!(next(&mut source).await.is_none(), "the stream ended");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_library_error_for_a_4xx_carries_the_body() {
    let server = TestServer::start(|_, _| {
        vec![write(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 21\r\nConnection: close\r\n\r\n{\"error\":\"not yours\"}",
        )]
    })
    .await;
    let mut source = EventSource::builder(server.url("/e"))
        .retry_policy(RetryPolicy::new().retry_server_errors(true))
        .build()
        .unwrap();
    let err = next_error(&mut source).await;
    match &err {
        Error::InvalidStatus { status, body, .. } => {
            assert_eq!(*status, StatusCode::FORBIDDEN);
            assert_eq!(body, r#"{"error":"not yours"}"#);
        }
        other => panic!("{other}"),
    }
    assert!(err.is_fatal());
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn the_machine_never_retries_a_permanent_failure() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::new().retry_policy(RetryPolicy::new()));
    assert!(matches!(conn.poll(now), Some(Action::Connect { .. })));
    conn.response_with_body(
        now,
        StatusCode::UNAUTHORIZED,
        &HeaderMap::new(),
        SystemTime::now(),
        b"{\"error\":\"wrong token\"}",
    );
    let Some(Action::Error(err)) = conn.poll(now) else {
        panic!("expected an error")
    };
    assert!(
        err.is_fatal() && err.to_string().contains("wrong token"),
        "{err}"
    );
    assert!(conn.poll(now).is_none());
    assert_eq!(conn.poll_timeout(), None, "no reconnection scheduled");
}
