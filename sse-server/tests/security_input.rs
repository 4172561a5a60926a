//! The bad input matrix, against the real binary: each hostile or careless request gets a precise
//! status and message, the process survives, and a concurrent subscriber keeps receiving, undisturbed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod security_support;
mod support;

use std::net::SocketAddr;
use std::process::Stdio;

use security_support::{TOKEN, WAIT, raw, status_of};
use support::Reader;
use tokio::process::Command;

/// A raw request: `Connection: close` so the server ends the exchange.
fn req(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn publish(channel: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let auth = format!("Bearer {TOKEN}");
    req(
        "POST",
        &format!("/events/{channel}"),
        &[("Authorization", &auth), ("Content-Type", content_type)],
        body,
    )
}

/// The JSON `error` of a raw response, or its whole body.
fn message(resp: &str) -> String {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned())
}

#[tokio::test]
async fn every_bad_input_gets_a_precise_answer_and_disturbs_no_subscriber() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--no-demo",
        "--publish-token",
        TOKEN,
    ])
    .args(["--max-header-bytes", "8192", "--max-event-bytes", "4096"]);
    let (mut child, base) = support::spawn_server(cmd, Stdio::null()).await;
    let addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let c = reqwest::Client::new();
    let mut watcher = Reader::open(&c, &format!("{base}/events/watch"), None).await;
    let mut target = Reader::open(&c, &format!("{base}/events/x"), None).await;

    let big_header = "h".repeat(16 * 1024);
    let form = "application/x-www-form-urlencoded";
    let json = "application/json";
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed request line", b"THIS IS NOT HTTP\r\n\r\n".to_vec(), 400, ""),
        ("binary garbage", vec![0, 159, 146, 150, 255, 13, 10, 13, 10], 400, ""),
        ("bad header line", b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n".to_vec(), 400, ""),
        ("huge header", req("GET", "/healthz", &[("X-Big", &big_header)], b""), 431, ""),
        ("content-length mismatch", b"POST /events/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(), 400, ""),
        ("bad chunked body", format!("POST /events/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").into_bytes(), 400, "could not read the request body"),
        ("invalid UTF-8 text body", publish("x", "text/plain", b"ok \xff\xfe"), 400, "not valid UTF-8"),
        ("invalid UTF-8 form value", publish("x", form, b"data=%ff%fe"), 400, "not valid UTF-8"),
        ("invalid UTF-8 JSON", publish("x", json, b"{\"data\":\"\xff\"}"), 400, "not valid JSON"),
        ("invalid UTF-8 channel", publish("%ff%fe", "text/plain", b"x"), 400, "not valid UTF-8"),
        ("raw invalid UTF-8 path", b"GET /events/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, ""),
        ("LF in event (JSON)", publish("x", json, br#"{"data":"x","event":"a\nid: forged"}"#), 400, "line break (CR or LF)"),
        ("CR in id (form)", publish("x", form, b"data=x&id=1%0Devent%3Aforged"), 400, "line break (CR or LF)"),
        ("CRLF in event (query)", publish("x?event=a%0D%0Adata%3Aforged", "text/plain", b"x"), 400, "line break (CR or LF)"),
        ("NUL in id", publish("x", form, b"data=x&id=a%00b"), 400, "NUL"),
        ("negative retry", publish("x", json, br#"{"data":"x","retry":-1}"#), 400, "\"retry\""),
        ("huge retry", publish("x", form, b"data=x&retry=99999999999999999999999"), 400, "\"retry\""),
        ("fractional retry", publish("x", json, br#"{"data":"x","retry":1.5}"#), 400, "\"retry\""),
        ("JSON array", publish("x", json, b"[1,2]"), 400, "must be an object"),
        ("JSON string", publish("x", json, b"\"data\""), 400, "must be an object"),
        ("JSON event not a string", publish("x", json, br#"{"data":"x","event":5}"#), 400, "must be a string"),
        ("JSON unknown field", publish("x", json, br#"{"data":"x","channel":"y"}"#), 400, "unknown field"),
        ("JSON without data", publish("x", json, br#"{"event":"e"}"#), 400, "missing \"data\""),
        ("truncated JSON", publish("x", json, br#"{"data":"#), 400, "not valid JSON"),
        ("unsupported media type", publish("x", "image/png", b"x"), 415, "unsupported content type"),
        ("over the event size", publish("x", "text/plain", &[b'a'; 5000]), 413, "over the limit"),
        ("empty channel", publish("", "text/plain", b"x"), 400, "invalid channel name"),
        ("PUT on a channel", req("PUT", "/events/x", &[], b""), 405, "method not allowed"),
        ("PATCH on broadcast", req("PATCH", "/events", &[], b""), 405, "method not allowed"),
        ("DELETE /healthz", req("DELETE", "/healthz", &[], b""), 405, "method not allowed"),
        ("POST /channels", req("POST", "/channels", &[], b""), 405, "method not allowed"),
        ("unknown path", req("GET", "/nope/../etc/passwd", &[], b""), 404, ""),
        ("unknown API path", req("GET", "/eventsx", &[], b""), 404, ""),
        ("no token", req("POST", "/events/x", &[("Content-Type", "text/plain")], b"x"), 401, "missing publish token"),
        ("wrong token", req("POST", "/events/x", &[("Authorization", "Bearer nope")], b"x"), 401, "wrong publish token"),
    ];
    for (name, request, want, text) in &cases {
        let resp = raw(addr, request, WAIT).await;
        assert!(!resp.is_empty(), "{name}: no answer at all");
        assert_eq!(status_of(&resp), *want, "{name}: {resp}");
        assert!(
            message(&resp).contains(text),
            "{name}: message {:?}",
            message(&resp)
        );
        if *want == 405 {
            assert!(
                resp.to_ascii_lowercase().contains("\r\nallow: "),
                "{name}: {resp}"
            );
        }
    }

    // Data with line breaks is accepted but cannot forge fields: it becomes more data lines.
    let resp = raw(
        addr,
        &publish(
            "x",
            json,
            br#"{"data":"a\nevent: forged\nid: 666\r\nretry: 1\rdata"}"#,
        ),
        WAIT,
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let id: serde_json::Value =
        serde_json::from_str(resp.split_once("\r\n\r\n").unwrap().1).unwrap();
    let m = target.message().await.unwrap();
    assert_eq!(m.event_type, "message");
    assert_eq!(m.data, "a\nevent: forged\nid: 666\nretry: 1\ndata");
    assert_eq!(m.last_event_id, id["id"].as_str().unwrap());

    // A NUL or a huge Last-Event-ID resumes with an sse-reset that carries it JSON-escaped.
    for last in ["%00", &"9".repeat(4000)] {
        let mut r =
            Reader::from_request(c.get(format!("{base}/events/x?lastEventId={last}"))).await;
        let reset = r.message().await.unwrap();
        assert_eq!(reset.event_type, "sse-reset");
        let data: serde_json::Value = serde_json::from_str(&reset.data).unwrap();
        assert_eq!(data["reason"], "unknown");
    }

    // The process is alive and the subscribers got exactly what was published to them, nothing else.
    assert!(child.try_wait().unwrap().is_none(), "the binary exited");
    let health = c.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    for (channel, data) in [("watch", "after the storm"), ("x", "x after")] {
        let resp = c
            .post(format!("{base}/events/{channel}"))
            .bearer_auth(TOKEN)
            .form(&[("data", data)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(watcher.message().await.unwrap().data, "after the storm");
    assert_eq!(target.message().await.unwrap().data, "x after");
    child.kill().await.unwrap();
}
