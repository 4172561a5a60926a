//! `sse-client publish` and the `SSE_*` environment variables, against a real hub.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use sse_client::EventSource;
use support::cli::{TestHub, run, text};
use support::{Step, TestServer, next_message, response, sse_head, write};

const TOKEN: &str = "s3cret-t0ken";

/// A library subscriber on `channel`, connected before anything is published.
async fn subscriber(hub: &TestHub, channel: &str) -> EventSource {
    let mut source = EventSource::builder(hub.url(&format!("/events/{channel}")))
        .reconnection_time(Duration::from_millis(10))
        .build()
        .unwrap();
    support::expect_open(&mut source).await;
    hub.wait_subscribers(channel, 1).await;
    source
}

#[tokio::test]
async fn publish_prints_the_assigned_id_and_the_event_arrives() {
    let hub = TestHub::start(TOKEN).await;
    let mut source = subscriber(&hub, "news").await;
    let url = hub.url("/events/news");

    let out = run(
        &[
            "publish",
            &url,
            "--data",
            "hello\nworld",
            "--event",
            "greeting",
            "--token",
            TOKEN,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = text(&out.stdout);
    let id = stdout.strip_suffix('\n').unwrap();
    assert!(!id.is_empty() && !id.contains('\n'), "one line: {stdout:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let (event_type, data, last_id) = next_message(&mut source).await;
    assert_eq!(
        (event_type.as_str(), data.as_str(), last_id.as_str()),
        ("greeting", "hello\nworld", id)
    );

    // A chosen id is the one printed and sent; no --event means the default type.
    let out = run(
        &[
            "publish", &url, "--data", "-x-", "--id", "custom-7", "--token", TOKEN,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "custom-7\n");
    let (event_type, data, last_id) = next_message(&mut source).await;
    assert_eq!(
        (event_type.as_str(), data.as_str(), last_id.as_str()),
        ("message", "-x-", "custom-7")
    );
}

#[tokio::test]
async fn publish_to_events_broadcasts_to_every_channel() {
    let hub = TestHub::start(TOKEN).await;
    let mut a = subscriber(&hub, "a").await;
    let mut b = subscriber(&hub, "b").await;
    let out = run(
        &[
            "publish",
            &hub.url("/events"),
            "--data",
            "all",
            "--token",
            TOKEN,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(next_message(&mut a).await.1, "all");
    assert_eq!(next_message(&mut b).await.1, "all");
}

#[tokio::test]
async fn publish_with_a_wrong_or_missing_token_exits_1_with_the_hubs_message() {
    let hub = TestHub::start(TOKEN).await;
    let url = hub.url("/events/news");
    let out = run(&["publish", &url, "--data", "x", "--token", "nope"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("wrong publish token"), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = run(&["publish", &url, "--data", "x"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("missing publish token"), "{stderr}");
    assert!(
        hub.hub
            .channels()
            .await
            .unwrap()
            .iter()
            .all(|c| c.last_id.is_none())
    );
}

#[tokio::test]
async fn publish_refusals_and_failures_exit_1_with_a_reason() {
    let hub = TestHub::start(TOKEN).await;
    // The hub's 400 for a bad channel name and its 404 for an unknown route, quoted.
    let out = run(
        &[
            "publish",
            &hub.url("/events/bad%01name"),
            "--data",
            "x",
            "--token",
            TOKEN,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("400") && stderr.contains("channel"),
        "{stderr}"
    );
    let out = run(
        &[
            "publish",
            &hub.url("/nope"),
            "--data",
            "x",
            "--token",
            TOKEN,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("HTTP 404 Not Found: no route for /nope"),
        "{stderr}"
    );
    // Nothing listening: the connection error.
    let addr = support::closed_port().await;
    let out = run(
        &["publish", &format!("http://{addr}/events/x"), "--data", "x"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("refused"), "{out:?}");
    // Not http(s): refused before sending.
    let out = run(&["publish", "ftp://127.0.0.1/x", "--data", "x"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("unsupported URL scheme \"ftp\""),
        "{out:?}"
    );
}

#[tokio::test]
async fn every_publish_flag_reads_its_sse_variable() {
    let hub = TestHub::start(TOKEN).await;
    let mut source = subscriber(&hub, "env").await;
    let url = hub.url("/events/env");
    let out = run(
        &["publish"],
        &[
            ("SSE_URL", &url),
            ("SSE_DATA", "from env"),
            ("SSE_EVENT", "envtype"),
            ("SSE_ID", "env-1"),
            ("SSE_TOKEN", TOKEN),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "env-1\n");
    let (event_type, data, last_id) = next_message(&mut source).await;
    assert_eq!(
        (event_type.as_str(), data.as_str(), last_id.as_str()),
        ("envtype", "from env", "env-1")
    );

    // The command line wins over the environment.
    let out = run(
        &["publish", "--data", "from flag", "--token", "wrong"],
        &[
            ("SSE_URL", &url),
            ("SSE_DATA", "from env"),
            ("SSE_TOKEN", TOKEN),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("wrong publish token"), "{out:?}");

    // --help names every variable and never shows the token's value.
    let out = run(&["publish", "--help"], &[("SSE_TOKEN", TOKEN)]).await;
    let help = text(&out.stdout);
    for var in ["SSE_URL", "SSE_DATA", "SSE_EVENT", "SSE_ID", "SSE_TOKEN"] {
        assert!(help.contains(var), "{var} missing from\n{help}");
    }
    assert!(!help.contains(TOKEN), "{help}");
}

#[tokio::test]
async fn every_listen_flag_reads_its_sse_variable() {
    let server = TestServer::start(|n, _| match n {
        0 => vec![response("503 Service Unavailable", &[("Retry-After", "0")])],
        _ => vec![
            sse_head(),
            write("id: 2\ndata: seen\n\ndata: never\n\n"),
            Step::Hold,
        ],
    })
    .await;
    let url = server.url("/e");
    let out = run(
        &["listen"],
        &[
            ("SSE_URL", &url),
            ("SSE_JSON", "1"),
            ("SSE_MAX_EVENTS", "1"),
            ("SSE_LAST_EVENT_ID", "41"),
            ("SSE_TIMEOUT", "30"),
            ("SSE_MAX_RETRIES", "1"),
            ("SSE_RECONNECTION_TIME", "0.01"),
            ("SSE_MAX_BACKOFF", "0.05"),
            ("SSE_RETRY_SERVER_ERRORS", "true"),
            ("SSE_HEADER", "X-One: 1\nX-Two: 2"),
            ("SSE_TOKEN", "listener-token"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        "{\"type\":\"message\",\"data\":\"seen\",\"lastEventId\":\"2\"}\n"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("503") && stderr.contains("reconnecting in"),
        "{stderr}"
    );
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        2,
        "the 503 was retried once (SSE_RETRY_SERVER_ERRORS)"
    );
    let r = &requests[1];
    assert_eq!(r.header("authorization"), Some("Bearer listener-token"));
    assert_eq!(r.header("x-one"), Some("1"));
    assert_eq!(r.header("x-two"), Some("2"));
    assert_eq!(r.header("last-event-id"), Some("41"));

    // Falsey values switch a flag off; the command line wins over the environment.
    let out = run(
        &[
            "listen",
            "--max-events",
            "1",
            "-H",
            "Authorization: Basic eA==",
        ],
        &[
            ("SSE_URL", &url),
            ("SSE_JSON", "false"),
            ("SSE_RETRY_SERVER_ERRORS", "0"),
            ("SSE_MAX_EVENTS", "5"),
            ("SSE_TOKEN", "listener-token"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "event: message\nid: 2\ndata: seen\n\n");
    let r = &server.requests()[2];
    assert_eq!(
        r.header("authorization"),
        Some("Basic eA=="),
        "-H Authorization wins over the token"
    );

    let out = run(&["listen", "--help"], &[("SSE_TOKEN", "listener-token")]).await;
    let help = text(&out.stdout);
    for var in [
        "SSE_URL",
        "SSE_TOKEN",
        "SSE_HEADER",
        "SSE_LAST_EVENT_ID",
        "SSE_JSON",
        "SSE_MAX_EVENTS",
        "SSE_TIMEOUT",
        "SSE_MAX_RETRIES",
        "SSE_RECONNECTION_TIME",
        "SSE_MAX_BACKOFF",
        "SSE_RETRY_SERVER_ERRORS",
    ] {
        assert!(help.contains(var), "{var} missing from\n{help}");
    }
    assert!(!help.contains("listener-token"), "{help}");
}

#[tokio::test]
async fn a_url_without_a_scheme_means_http() {
    let hub = TestHub::start(TOKEN).await;
    let bare = format!("{}/events/bare", hub.addr);
    let listener = tokio::spawn({
        let bare = bare.clone();
        async move { run(&["listen", &bare, "--json", "--max-events", "1"], &[]).await }
    });
    hub.wait_subscribers("bare", 1).await;
    let out = run(
        &["publish", &bare, "--data", "no scheme", "--token", TOKEN],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let id = text(&out.stdout);
    let out = listener.await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        format!(
            "{{\"type\":\"message\",\"data\":\"no scheme\",\"lastEventId\":\"{}\"}}\n",
            id.trim()
        )
    );
    assert!(
        text(&out.stderr).contains(&format!("connected to http://{bare}")),
        "{out:?}"
    );

    // `localhost:PORT/...` too, which the URL standard would read as scheme `localhost`.
    let port = hub.addr.port();
    let out = run(
        &[
            "publish",
            &format!("localhost:{port}/events/bare"),
            "--data",
            "x",
            "--token",
            TOKEN,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
