//! Headless Chromium: one `EventSource` on 20 channels over HTTP/1.1
//! (`/events?channel=room0&…&channel=room19`). The hub (with `--data-dir`) is killed under it; while
//! the page's port is down, events are published through another hub on the same data directory;
//! the hub comes back on the page's port, the browser resumes by itself with its own
//! `Last-Event-ID`, and the page holds every event exactly once, in each channel's order.
//!
//! Missing Chromium: a loud SKIPPED line, unless `SSE_REQUIRE_BROWSER=1` (CI), which makes it fatal.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod console_support;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use console_support::{Browser, chromium_or_skip};
use serde_json::json;
use tokio::process::Child;

const TOKEN: &str = "multi-browser-token";
const CHANNELS: usize = 20;

/// `sse-server` on `listen` keeping its window in `data`, serving `site` at `/`.
async fn hub(listen: &str, data: &Path, site: &Path) -> (Child, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args(["--listen", listen, "--no-demo", "--heartbeat", "1"])
        .args(["--publish-token", TOKEN])
        .arg("--data-dir")
        .arg(data)
        .arg("--static")
        .arg(site)
        .env("RUST_LOG", "warn");
    support::spawn_server(cmd, Stdio::null()).await
}

/// The page: one EventSource on every channel; it records each message's data and each `sse-reset`.
fn page(channels: &[String]) -> String {
    let query: Vec<String> = channels.iter().map(|c| format!("channel={c}")).collect();
    format!(
        r#"<!doctype html><meta charset="utf-8"><title>multi</title>
<script>
window.got = []; window.opens = 0; window.ids = [];
const es = new EventSource("/events?{}");
es.onopen = () => {{ window.opens += 1; }};
es.onmessage = (e) => {{ window.got.push(e.data); window.ids.push(e.lastEventId); }};
es.addEventListener("sse-reset", (e) => window.got.push("(reset) " + e.data));
</script>"#,
        query.join("&")
    )
}

/// Publishes `round` of every channel, interleaved; returns what each channel now owes.
async fn publish_round(
    base: &str,
    channels: &[String],
    round: usize,
    owed: &mut BTreeMap<String, Vec<String>>,
) {
    let c = support::client();
    for i in 0..3 {
        for ch in channels {
            let data = format!("{ch}|{round}.{i}");
            let resp = c
                .post(format!("{base}/events/{ch}"))
                .bearer_auth(TOKEN)
                .form(&[("data", &data)])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "publish on {ch}");
            owed.entry(ch.clone()).or_default().push(data);
        }
    }
}

/// How many subscribers the hub at `base` counts on `channel`.
async fn subscribers(base: &str, channel: &str) -> u64 {
    let list: Vec<serde_json::Value> = support::client()
        .get(format!("{base}/channels"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.iter()
        .find(|c| c["name"] == channel)
        .and_then(|c| c["subscribers"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_on_twenty_channels_resumes_after_the_hub_drops_it_with_every_event_once() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let channels: Vec<String> = (0..CHANNELS).map(|i| format!("room{i}")).collect();
    let dir = tempfile::tempdir().unwrap();
    let (data, site) = (dir.path().join("data"), dir.path().join("site"));
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), page(&channels)).unwrap();
    // A port of our own, so the hub can come back where the page's EventSource reconnects.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let (mut first, base) = hub(&listen, &data, &site).await;

    let mut browser = Browser::launch(&chromium).await;
    let page = &mut browser.page;
    page.call("Page.navigate", json!({"url": format!("{base}/")}))
        .await;
    page.wait_for("window.opens === 1").await;
    // Subscribed to all 20 (counted once per channel it follows) before anything is published.
    for ch in &channels {
        let deadline = tokio::time::Instant::now() + support::WAIT;
        while subscribers(&base, ch).await != 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{ch} never counted the page"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut owed = BTreeMap::new();
    publish_round(&base, &channels, 0, &mut owed).await;
    page.wait_for(&format!("window.got.length >= {}", 3 * CHANNELS))
        .await;

    // The hub drops the page: killed. While its port is down, another hub on the same data
    // directory takes publishes the page can only get by resuming.
    first.kill().await.unwrap();
    let (mut other, other_base) = hub("127.0.0.1:0", &data, &site).await;
    publish_round(&other_base, &channels, 1, &mut owed).await;
    other.kill().await.unwrap();
    let (_back, base) = hub(&listen, &data, &site).await;
    page.wait_for("window.opens === 2").await;
    publish_round(&base, &channels, 2, &mut owed).await;
    let total = 9 * CHANNELS;
    page.wait_for(&format!("window.got.length >= {total}"))
        .await;
    // Anything extra (a duplicate) would have arrived with the last live events.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let got: Vec<String> = serde_json::from_value(page.eval("window.got").await).unwrap();
    assert_eq!(got.len(), total, "every event once, no reset: {got:?}");
    let mut by_channel: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for data in got {
        let ch = data.split('|').next().unwrap().to_owned();
        by_channel.entry(ch).or_default().push(data);
    }
    assert_eq!(by_channel, owed, "each channel's events once, in order");
    let ids: Vec<String> = serde_json::from_value(page.eval("window.ids").await).unwrap();
    assert!(
        ids.iter().all(|id| !id.is_empty() && id.len() <= 256),
        "{ids:?}"
    );
    assert!(page.errors.is_empty(), "{:?}", page.errors);
}
