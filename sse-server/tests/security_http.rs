//! Issue 16, the HTTP face against the real binary: private channel metadata (`GET /channels` needs
//! credentials once JWTs are on, `/metrics` can move to `--metrics-listen`), look-alike channel names,
//! and the publish body read timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod security_support;
mod support;

use std::net::SocketAddr;
use std::process::Stdio;

use security_support::{SECRET, TOKEN, WAIT, grant, hs256, raw, status_of};
use tokio::process::Command;

async fn binary(extra: &[&str]) -> (tokio::process::Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--no-demo",
        "--publish-token",
        TOKEN,
    ])
    .args(extra);
    support::spawn_server(cmd, Stdio::null()).await
}

async fn publish(base: &str, channel: &str) {
    let resp = support::client()
        .post(format!("{base}/events/{channel}"))
        .bearer_auth(TOKEN)
        .form(&[("data", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "publish to {channel}");
}

/// `GET /channels` with `auth` as bearer (if any): the status and the listed names.
async fn channels(base: &str, auth: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = support::client().get(format!("{base}/channels"));
    if let Some(token) = auth {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

fn names(list: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn with_jwt_on_the_channel_list_is_private_and_filtered_by_the_token() {
    let (child, base) = binary(&["--jwt-secret", SECRET, "--public-channel", "news"]).await;
    for channel in ["users/42/inbox", "invoice-2024-0042", "news"] {
        publish(&base, channel).await;
    }
    // Anonymous: 401 with a JSON error, no names.
    let (status, body) = channels(&base, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("credentials"),
        "{body}"
    );
    assert!(!body.to_string().contains("inbox"), "{body}");
    // A forged token: 401 too.
    let (status, _) = channels(&base, Some("not-a-jwt")).await;
    assert_eq!(status, 401);
    // The publish token sees everything.
    let (status, body) = channels(&base, Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(
        names(&body),
        ["invoice-2024-0042", "news", "users/42/inbox"]
    );
    // A JWT sees what it may subscribe to, and the public channels.
    let jwt = hs256(grant(&["users/42/*"], &[], 60));
    let (status, body) = channels(&base, Some(&jwt)).await;
    assert_eq!(status, 200);
    assert_eq!(names(&body), ["news", "users/42/inbox"]);
    // Also with ?access_token= (what EventSource pages can send).
    let resp = support::client()
        .get(format!("{base}/channels?access_token={jwt}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(child);
}

#[tokio::test]
async fn without_jwt_the_channel_list_stays_open() {
    let (child, base) = binary(&[]).await;
    publish(&base, "open").await;
    let (status, body) = channels(&base, None).await;
    assert_eq!(status, 200);
    assert_eq!(names(&body), ["open"]);
    drop(child);
}

#[tokio::test]
async fn metrics_listen_moves_metrics_off_the_public_address() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = free.local_addr().unwrap();
    drop(free);
    let (child, base) = binary(&["--metrics-listen", &metrics_addr.to_string()]).await;
    let client = support::client();
    let public = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let private = client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(private.status(), 200);
    assert!(private.text().await.unwrap().contains("# TYPE"));
    let other = client
        .get(format!("http://{metrics_addr}/channels"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    drop(child);

    // Without the flag, /metrics stays on the main address.
    let (child, base) = binary(&[]).await;
    let resp = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(child);
}

#[tokio::test]
async fn look_alike_channel_names_are_refused_with_400_naming_the_problem() {
    let (child, base) = binary(&[]).await;
    let client = support::client();
    let cases = [
        ("%E2%80%AE", "bidi"), // U+202E right-to-left override
        ("%E2%80%AA", "bidi"), // U+202A
        ("%E2%81%A6", "bidi"), // U+2066 left-to-right isolate
        ("%E2%81%A9", "bidi"), // U+2069
        ("%E2%80%A8", "line separator"),
        ("%E2%80%A9", "paragraph separator"),
        ("%E2%80%8B", "zero-width"), // U+200B
        ("%E2%80%8D", "zero-width"), // U+200D
        ("%E2%81%A0", "zero-width"), // U+2060 word joiner
        ("%EF%BB%BF", "zero-width"), // U+FEFF
    ];
    for (encoded, problem) in cases {
        let path = format!("{base}/events/pay{encoded}ments");
        let sub = client.get(&path).send().await.unwrap();
        let publish = client
            .post(&path)
            .bearer_auth(TOKEN)
            .form(&[("data", "x")])
            .send()
            .await
            .unwrap();
        for (what, resp) in [("subscribe", sub), ("publish", publish)] {
            assert_eq!(resp.status(), 400, "{what} {encoded}");
            let body: serde_json::Value = resp.json().await.unwrap();
            let message = body["error"].as_str().unwrap();
            assert!(message.contains(problem), "{what} {encoded}: {message}");
        }
    }
    // Ordinary non-ASCII names still work.
    publish(&base, "caf%C3%A9/%E6%97%A5%E6%9C%AC").await;
    drop(child);
}

#[tokio::test]
async fn an_endless_publish_body_gets_408_after_the_body_timeout() {
    let (child, base) = binary(&["--body-timeout", "1"]).await;
    let addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    // Chunked, one chunk, then nothing: the body never ends.
    let head = format!(
        "POST /events/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    );
    let resp = raw(addr, head.as_bytes(), WAIT).await;
    assert_eq!(status_of(&resp), 408, "{resp}");
    assert!(resp.contains("did not arrive within 1 s"), "{resp}");
    // A declared length that never arrives, likewise.
    let head = format!(
        "POST /events/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: text/plain\r\nContent-Length: 100\r\n\r\nabc"
    );
    let resp = raw(addr, head.as_bytes(), WAIT).await;
    assert_eq!(status_of(&resp), 408, "{resp}");
    // A prompt publish still works.
    publish(&base, "x").await;
    drop(child);
}
