//! `GET /metrics` read by a real Prometheus text-format parser (Python's `prometheus_client`):
//! every series has the `sse_` prefix, counters end in `_total`, durations are histograms in
//! seconds, and the labels say how subscribers are served and why connections and streams ended.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sse_server::Hub;
use support::{TOKEN, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "samples": [
        {"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
print(json.dumps(out))
"#;

fn parser_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("SSE_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!(
            "python3 with prometheus_client is not installed but SSE_REQUIRE_PEERS=1; run .ci/run"
        );
    }
    eprintln!(
        "\n*** SKIPPED: python3 prometheus_client not installed (set SSE_REQUIRE_PEERS=1 to make this fail) ***\n"
    );
    println!("SKIPPED: python3 prometheus_client not installed");
    false
}

/// The families `prometheus_client` parses out of `text`, by name.
fn parse(text: &str) -> BTreeMap<String, Value> {
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused:\n{text}");
    let families: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    families
        .into_iter()
        .map(|f| (f["name"].as_str().unwrap().to_owned(), f))
        .collect()
}

/// The value of `family`'s sample `name` whose labels include `labels`.
fn sample(
    families: &BTreeMap<String, Value>,
    family: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let f = families
        .get(family)
        .unwrap_or_else(|| panic!("no family {family}"));
    f["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["name"] == name
                && labels
                    .iter()
                    .all(|(k, v)| s["labels"][*k].as_str() == Some(*v))
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {f}"))["value"]
        .as_f64()
        .unwrap()
}

async fn metrics(server: &TestServer) -> String {
    reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn publish(server: &TestServer, data: &str) {
    let resp = reqwest::Client::new()
        .post(server.url("/events/m"))
        .bearer_auth(TOKEN)
        .body(data.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn metrics_follow_prometheus_conventions_with_labels_and_histograms() {
    if !parser_available() {
        return;
    }
    let server = TestServer::start(Hub::builder().replay_events(100)).await;

    // An HTTP/1.1 subscriber on the lean path (its events go out through the flushers).
    let mut h1 = TcpStream::connect(server.addr).await.unwrap();
    h1.write_all(b"GET /events/m HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(WAIT, h1.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    // An HTTP/2 (h2c) subscriber that resumes from an id the hub never issued: an `unknown` reset.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut stream = h2
        .get(server.url("/events/m"))
        .header("last-event-id", "never-issued")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.version(), reqwest::Version::HTTP_2);
    let first = tokio::time::timeout(WAIT, stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("event: sse-reset\n"),
        "{first:?}"
    );

    // Publish until a flusher has written an event (the subscriber lends its socket once idle).
    let mut published = 0;
    let families = tokio::time::timeout(WAIT, async {
        loop {
            publish(&server, "x").await;
            published += 1;
            let families = parse(&metrics(&server).await);
            if sample(
                &families,
                "sse_publish_to_write_seconds",
                "sse_publish_to_write_seconds_count",
                &[],
            ) > 0.0
            {
                return families;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("no publish-to-write latency was recorded");

    for (name, family) in &families {
        assert!(name.starts_with("sse_"), "{name} lacks the sse_ prefix");
        if family["type"] == "counter" {
            for s in family["samples"].as_array().unwrap() {
                let sample = s["name"].as_str().unwrap();
                assert!(
                    sample.ends_with("_total") || sample.ends_with("_created"),
                    "{sample}"
                );
            }
        }
    }
    let kinds: BTreeMap<&str, &str> = families
        .iter()
        .map(|(n, f)| (n.as_str(), f["type"].as_str().unwrap()))
        .collect();
    let want = [
        ("sse_subscribers", "gauge"),
        ("sse_subscriptions", "counter"),
        ("sse_connections", "gauge"),
        ("sse_connections_refused", "counter"),
        ("sse_events_published", "counter"),
        ("sse_events_delivered", "counter"),
        ("sse_events_replayed", "counter"),
        ("sse_resets", "counter"),
        ("sse_disconnects", "counter"),
        ("sse_queued_bytes", "gauge"),
        ("sse_publish_to_write_seconds", "histogram"),
        ("sse_flusher_round_seconds", "histogram"),
    ];
    for (name, kind) in want {
        assert_eq!(kinds.get(name).copied(), Some(kind), "{name}: {kinds:?}");
    }
    assert_eq!(kinds.len(), want.len(), "undocumented series: {kinds:?}");

    let subscribers = |protocol, tls| {
        sample(
            &families,
            "sse_subscribers",
            "sse_subscribers",
            &[("protocol", protocol), ("tls", tls)],
        )
    };
    assert_eq!(subscribers("h1", "false"), 1.0);
    assert_eq!(subscribers("h2", "false"), 1.0);
    assert_eq!(subscribers("h1", "true"), 0.0);
    assert_eq!(subscribers("none", "false"), 0.0);
    assert_eq!(
        sample(
            &families,
            "sse_subscriptions",
            "sse_subscriptions_total",
            &[("protocol", "h2"), ("tls", "false")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &families,
            "sse_events_published",
            "sse_events_published_total",
            &[]
        ),
        f64::from(published)
    );
    assert_eq!(
        sample(
            &families,
            "sse_resets",
            "sse_resets_total",
            &[("reason", "unknown")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &families,
            "sse_resets",
            "sse_resets_total",
            &[("reason", "expired")]
        ),
        0.0
    );
    assert!(
        sample(
            &families,
            "sse_connections",
            "sse_connections",
            &[("tls", "false")]
        ) >= 2.0
    );
    for reason in [
        "max_connections",
        "max_connections_per_ip",
        "header_timeout",
        "tls_handshake",
    ] {
        sample(
            &families,
            "sse_connections_refused",
            "sse_connections_refused_total",
            &[("reason", reason)],
        );
    }
    for reason in ["slow", "closed", "gap", "shutdown", "expired"] {
        sample(
            &families,
            "sse_disconnects",
            "sse_disconnects_total",
            &[("reason", reason)],
        );
    }
    let inf = sample(
        &families,
        "sse_flusher_round_seconds",
        "sse_flusher_round_seconds_bucket",
        &[("le", "+Inf")],
    );
    let count = sample(
        &families,
        "sse_flusher_round_seconds",
        "sse_flusher_round_seconds_count",
        &[],
    );
    assert!(count >= 1.0 && inf == count, "buckets end at the count");

    // Closing the channel ends both streams, counted by reason.
    let closed = reqwest::Client::new()
        .delete(server.url("/events/m"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 200);
    let families = parse(&metrics(&server).await);
    assert_eq!(
        sample(
            &families,
            "sse_disconnects",
            "sse_disconnects_total",
            &[("reason", "closed")]
        ),
        2.0
    );
    drop((h1, stream));
    server.stop().await;
}
