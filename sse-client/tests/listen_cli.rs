//! The `sse-client listen` binary against scripted servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Output, Stdio};

use support::*;
use tokio::process::Command;
use tokio::time::timeout;

async fn listen(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_sse-client"))
        .arg("listen")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    timeout(LIMIT, child.wait_with_output())
        .await
        .expect("sse-client listen did not exit in time")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn json_lines_like_parse_and_exit_after_max_events() {
    let server = TestServer::start(|n, _| match n {
        0 => vec![
            sse_head(),
            write("id: 1\nevent: greeting\ndata: hello\ndata: world\n\nid: 2\ndata: \"q\"\n\nid: 3\ndata: un"),
        ],
        _ => vec![sse_head(), write("data: after\n\ndata: never printed\n\n"), Step::Hold],
    })
    .await;
    let url = server.url("/events");
    let out = listen(&[
        &url,
        "--json",
        "--max-events",
        "3",
        "--reconnection-time",
        "0.01",
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        concat!(
            r#"{"type":"greeting","data":"hello\nworld","lastEventId":"1"}"#,
            "\n",
            r#"{"type":"message","data":"\"q\"","lastEventId":"2"}"#,
            "\n",
            r#"{"type":"message","data":"after","lastEventId":"2"}"#,
            "\n",
        )
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("connected"), "{stderr}");
    assert!(stderr.contains("reconnecting in"), "{stderr}");
    assert!(stderr.contains("replaying from id \"2\""), "{stderr}");
    let r = server.requests();
    assert_eq!(r[1].header("last-event-id"), Some("2"));
}

#[tokio::test]
async fn human_output_headers_and_last_event_id() {
    let server = TestServer::start(|_, _| {
        vec![
            sse_head(),
            write("event: tick\ndata: a\ndata: b\n\n"),
            Step::Hold,
        ]
    })
    .await;
    let url = server.url("/e");
    let out = listen(&[
        &url,
        "-H",
        "Authorization: Bearer t0k",
        "--header",
        "X-Two: 2",
        "--last-event-id",
        "40",
        "--max-events",
        "1",
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        "event: tick\nid: 40\ndata: a\ndata: b\n\n"
    );
    let r = &server.requests()[0];
    assert_eq!(r.header("authorization"), Some("Bearer t0k"));
    assert_eq!(r.header("x-two"), Some("2"));
    assert_eq!(r.header("last-event-id"), Some("40"));
    assert_eq!(r.header("accept"), Some("text/event-stream"));
    assert!(text(&out.stderr).contains("replaying from id \"40\""));
}

#[tokio::test]
async fn no_content_exits_zero() {
    let server = TestServer::start(|_, _| vec![response("204 No Content", &[])]).await;
    let out = listen(&[&server.url("/e")]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn stream_then_no_content_exits_zero_after_printing() {
    let server = TestServer::start(|n, _| match n {
        0 => vec![sse_head(), write("data: last\n\n")],
        _ => vec![response("204 No Content", &[])],
    })
    .await;
    let out = listen(&[&server.url("/e"), "--json", "--reconnection-time", "0.01"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        "{\"type\":\"message\",\"data\":\"last\",\"lastEventId\":\"\"}\n"
    );
}

#[tokio::test]
async fn not_found_exits_non_zero_with_one_line() {
    let server = TestServer::start(|_, _| vec![response("404 Not Found", &[])]).await;
    let out = listen(&[&server.url("/e")]).await;
    assert!(!out.status.success(), "{out:?}");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("404"), "{stderr}");
    assert_eq!(server.requests().len(), 1, "4xx is not retried");
}

#[tokio::test]
async fn wrong_content_type_exits_non_zero() {
    let server = TestServer::start(|_, _| {
        vec![write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")]
    })
    .await;
    let out = listen(&[&server.url("/e")]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("application/json"));
}

#[tokio::test]
async fn connection_refused_exits_non_zero_after_the_retries() {
    let addr = closed_port().await;
    let url = format!("http://{addr}/e");
    let out = listen(&[&url, "--reconnection-time", "0.01", "--max-retries", "2"]).await;
    assert!(!out.status.success(), "{out:?}");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches("refused").count(), 3, "{stderr}");
    assert_eq!(stderr.matches("reconnecting in").count(), 2, "{stderr}");
    assert!(
        stderr.lines().last().unwrap().contains("gave up after 2"),
        "{stderr}"
    );
}

#[tokio::test]
async fn idle_timeout_flag_reconnects_a_silent_stream() {
    let server = TestServer::start(|n, _| match n {
        0 => vec![sse_head(), write("id: 5\ndata: one\n\n"), Step::Hold],
        _ => vec![sse_head(), write("data: two\n\n"), Step::Hold],
    })
    .await;
    let url = server.url("/e");
    let out = listen(&[
        &url,
        "--json",
        "--timeout",
        "0.2",
        "--max-events",
        "2",
        "--reconnection-time",
        "0.01",
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout).lines().count(), 2);
    assert!(text(&out.stderr).contains("idle timeout"));
    assert_eq!(server.requests()[1].header("last-event-id"), Some("5"));
}

#[tokio::test]
async fn comments_flag_prints_comment_lines_as_json_or_wire_lines() {
    let server = TestServer::start(|_, _| {
        vec![
            sse_head(),
            write(":Hello\ndata: one\n\n: \"quoted\"\ndata: two\n\n"),
            Step::Hold,
        ]
    })
    .await;
    let url = server.url("/c");
    let out = listen(&[&url, "--json", "--comments", "--max-events", "2"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        concat!(
            r#"{"comment":"Hello"}"#,
            "\n",
            r#"{"type":"message","data":"one","lastEventId":""}"#,
            "\n",
            r#"{"comment":" \"quoted\""}"#,
            "\n",
            r#"{"type":"message","data":"two","lastEventId":""}"#,
            "\n",
        )
    );

    // Off by default; SSE_COMMENTS turns it on; human form is the wire line.
    let out = listen(&[&url, "--json", "--max-events", "1"]).await;
    assert_eq!(
        text(&out.stdout),
        "{\"type\":\"message\",\"data\":\"one\",\"lastEventId\":\"\"}\n"
    );
    let child = Command::new(env!("CARGO_BIN_EXE_sse-client"))
        .args(["listen", &url, "--max-events", "1"])
        .env("SSE_COMMENTS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), ":Hello\nevent: message\ndata: one\n\n");
}
