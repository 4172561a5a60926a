//! The hub console at `/`, in real headless Chromium against the real binary: every item of the console
//! is checked through the DOM, and screenshots land in `target/console-*.png`.
//!
//! Missing Chromium: a `SKIPPED:` line, unless `SSE_REQUIRE_BROWSER=1` (CI), which makes it fatal.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod console_support;
mod support;

use std::process::Stdio;
use std::time::Duration;

use console_support::{Browser, Cdp, TempDir, chromium_args, chromium_or_skip, target_dir};
use serde_json::{Value, json};
use support::{Reader, WAIT, client};
use tokio::process::{Child, Command};

const TOKEN: &str = "console-secret-token-4242";

struct Hub {
    _child: Child,
    base: String,
}

async fn start_hub(extra: &[&str]) -> Hub {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--publish-token",
        TOKEN,
        "--heartbeat",
        "1",
    ])
    .args(extra)
    .env("RUST_LOG", "warn");
    let (child, base) = support::spawn_server(cmd, Stdio::null()).await;
    Hub {
        _child: child,
        base,
    }
}

impl Hub {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Publishes a JSON body to `channel` and returns the id the hub answered with.
    async fn publish(&self, channel: &str, body: Value) -> String {
        let resp = tokio::time::timeout(
            WAIT,
            client()
                .post(self.url(&format!("/events/{channel}")))
                .bearer_auth(TOKEN)
                .json(&body)
                .send(),
        )
        .await
        .expect("publish timed out")
        .unwrap();
        assert_eq!(resp.status(), 200, "publish to {channel} failed");
        let json: Value = resp.json().await.unwrap();
        json["id"].as_str().unwrap().to_owned()
    }
}

/// A JavaScript string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Types `text` into the input `id` the way a user would (an `input` event follows).
async fn type_into(page: &mut Cdp, id: &str, text: &str) {
    page.eval(&format!(
        "(() => {{ const e = document.getElementById({}); e.focus(); e.value = {}; \
         e.dispatchEvent(new Event('input', {{bubbles: true}})); return true; }})()",
        js(id),
        js(text)
    ))
    .await;
}

async fn click(page: &mut Cdp, id: &str) {
    page.eval(&format!(
        "document.getElementById({}).click(), true",
        js(id)
    ))
    .await;
}

/// Follows `target` (a channel or a pattern), resuming after `from` when given.
async fn follow(page: &mut Cdp, target: &str, from: &str) {
    type_into(page, "follow-target", target).await;
    type_into(page, "follow-from", from).await;
    click(page, "follow-btn").await;
}

/// Waits until the follow list shows `channel`'s stream open.
async fn wait_open(page: &mut Cdp, channel: &str) {
    page.wait_for(&format!(
        "[...document.querySelectorAll('#follows .stream.open')].some(s => s.dataset.channel === {})",
        js(channel)
    ))
    .await;
}

/// The log row of `channel` and `id` as `{time, channel, id, type, data, replay, reset}`, once present.
async fn log_row(page: &mut Cdp, channel: &str, id: &str) -> Value {
    page.wait_for(&format!(
        "(() => {{ const r = [...document.querySelectorAll('#log-rows tr.event')]
             .find(r => r.dataset.channel === {} && r.dataset.id === {});
           if (!r) return null;
           const c = r.cells;
           return {{ time: c[0].textContent, channel: c[1].textContent, id: c[2].textContent,
                     type: r.dataset.type, data: c[4].textContent, replay: r.dataset.replay === '1',
                     reset: r.classList.contains('reset') }}; }})()",
        js(channel),
        js(id)
    ))
    .await
}

/// Every `(channel, id)` of the log, oldest first.
async fn log_ids(page: &mut Cdp) -> Vec<(String, String)> {
    let rows = page
        .eval(
            "[...document.querySelectorAll('#log-rows tr.event')].reverse()
               .map(r => [r.dataset.channel, r.dataset.id])",
        )
        .await;
    serde_json::from_value(rows).unwrap()
}

/// The channel table's row for `name` as `[subscribers, last id]`, once it reads `want`.
async fn wait_channel_row(page: &mut Cdp, name: &str, subscribers: u32, last_id: &str) {
    page.wait_for(&format!(
        "(() => {{ const r = [...document.querySelectorAll('#channels tbody tr')]
             .find(r => r.dataset.channel === {});
           return !!r && r.querySelector('.subscribers').textContent === {}
             && r.querySelector('.last-id').textContent === {}; }})()",
        js(name),
        js(&subscribers.to_string()),
        js(last_id)
    ))
    .await;
}

/// The channel table lists channels with their live subscriber counts and last ids, and the chart
/// follows `/metrics` (the published counter and the subscriber gauge).
#[tokio::test]
async fn console_lists_channels_with_live_counts_and_charts_metrics() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let hub = start_hub(&[]).await;
    let a1 = hub.publish("alpha", json!({"data": "one"})).await;
    let mut browser = Browser::launch(&chromium).await;
    let page = &mut browser.page;
    page.open(&hub.url("/")).await;

    wait_channel_row(page, "alpha", 0, &a1).await;
    // The demo clock's channel is listed too.
    page.wait_for("!!document.querySelector('#channels tr[data-channel=\"demo\"]')")
        .await;
    // A subscriber elsewhere shows up in the count and in the chart's gauge; the last id moves.
    let reader = Reader::open(&client(), &hub.url("/events/alpha"), None).await;
    let a2 = hub.publish("alpha", json!({"data": "two"})).await;
    wait_channel_row(page, "alpha", 1, &a2).await;
    page.wait_for("document.getElementById('subs-now').textContent === '1'")
        .await;

    // The chart reads the published counter: after a burst it has caught up with the hub's count.
    for i in 0..30 {
        hub.publish("burst", json!({"data": format!("b{i}")})).await;
    }
    let metrics = client()
        .get(hub.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let published: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sse_events_published_total "))
        .expect("the hub exports sse_events_published_total")
        .trim()
        .parse()
        .unwrap();
    page.wait_for(&format!(
        "(() => {{ const s = window.consoleState.samples;
           return s.length >= 2 && s[s.length - 1].published >= {published}
             && s.some(x => x.rate > 0); }})()"
    ))
    .await;
    let chart = page
        .eval(
            "({ rate: document.getElementById('chart-rate').getAttribute('points').split(' ').length,
                subs: document.getElementById('chart-subs').getAttribute('points').split(' ').length,
                rateNow: Number(document.getElementById('rate-now').textContent),
                status: document.getElementById('chart-status').textContent })",
        )
        .await;
    assert!(chart["rate"].as_u64().unwrap() >= 2, "{chart}");
    assert!(chart["subs"].as_u64().unwrap() >= 2, "{chart}");
    assert!(
        chart["status"]
            .as_str()
            .unwrap()
            .contains("sse_events_published_total"),
        "{chart}"
    );
    page.screenshot("channels").await;

    drop(reader);
    wait_channel_row(page, "alpha", 0, &a2).await;
    page.wait_for("document.getElementById('subs-now').textContent === '0'")
        .await;
    assert!(page.errors.is_empty(), "page errors: {:?}", page.errors);
}

/// Following channels and a pattern shows their events live: time, channel, id, type and data; a
/// channel created later joins the pattern; a named type shows once the console listens to it.
#[tokio::test]
async fn console_follows_channels_and_patterns_into_a_live_log() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let hub = start_hub(&[]).await;
    hub.publish("room/1", json!({"data": "before"})).await;
    let mut browser = Browser::launch(&chromium).await;
    let page = &mut browser.page;
    page.open(&hub.url("/")).await;
    page.wait_for("!!document.querySelector('#channels tr[data-channel=\"room/1\"]')")
        .await;

    follow(page, "alpha room/*", "").await;
    wait_open(page, "alpha").await;
    wait_open(page, "room/1").await;

    let a1 = hub.publish("alpha", json!({"data": "hello alpha"})).await;
    let row = log_row(page, "alpha", &a1).await;
    assert_eq!(row["channel"], "alpha");
    assert_eq!(row["id"], a1.as_str());
    assert_eq!(row["type"], "message");
    assert_eq!(row["data"], "hello alpha");
    assert!(
        row["time"].as_str().unwrap().contains(':'),
        "no time: {row}"
    );
    let r1 = hub
        .publish("room/1", json!({"data": "in room 1", "event": "tick"}))
        .await;
    let row = log_row(page, "room/1", &r1).await;
    assert_eq!(
        (row["type"].as_str(), row["data"].as_str()),
        (Some("tick"), Some("in room 1"))
    );

    // A channel that appears later is followed by the pattern on the next /channels poll.
    hub.publish("room/2", json!({"data": "creates room 2"}))
        .await;
    wait_open(page, "room/2").await;
    let r2 = hub.publish("room/2", json!({"data": "in room 2"})).await;
    assert_eq!(log_row(page, "room/2", &r2).await["data"], "in room 2");

    // A type the console listens to after the user adds it.
    type_into(page, "types-input", "custom").await;
    click(page, "types-btn").await;
    let c1 = hub
        .publish(
            "alpha",
            json!({"data": "{\"x\":1}", "event": "custom", "id": "c-1"}),
        )
        .await;
    assert_eq!(c1, "c-1");
    let row = log_row(page, "alpha", "c-1").await;
    assert_eq!(
        (row["type"].as_str(), row["data"].as_str()),
        (Some("custom"), Some("{\"x\":1}"))
    );
    // Nothing from channels that are not followed.
    hub.publish("other", json!({"data": "not followed"})).await;
    let a2 = hub.publish("alpha", json!({"data": "last"})).await;
    log_row(page, "alpha", &a2).await;
    assert!(
        log_ids(page)
            .await
            .iter()
            .all(|(c, _)| c != "other" && c != "demo"),
        "unfollowed channels in the log"
    );
    page.screenshot("log").await;
    assert!(page.errors.is_empty(), "page errors: {:?}", page.errors);
}

/// Resuming from an id replays what followed it; an id that has left the window, or was never issued,
/// shows the hub's `sse-reset` event first.
#[tokio::test]
async fn console_resumes_from_an_id_with_replay_or_sse_reset() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let hub = start_hub(&["--replay-events", "3"]).await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(hub.publish("beta", json!({"data": format!("b{i}")})).await);
    }
    let mut browser = Browser::launch(&chromium).await;
    let page = &mut browser.page;
    page.open(&hub.url("/")).await;
    wait_channel_row(page, "beta", 0, &ids[4]).await;

    // From b3: b4 and b5 are replayed, then b6 arrives live.
    follow(page, "beta", &ids[2]).await;
    let b4 = log_row(page, "beta", &ids[3]).await;
    let b5 = log_row(page, "beta", &ids[4]).await;
    assert_eq!(
        (b4["data"].as_str(), b4["replay"].as_bool()),
        (Some("b4"), Some(true))
    );
    assert_eq!(
        (b5["data"].as_str(), b5["replay"].as_bool()),
        (Some("b5"), Some(true))
    );
    let b6 = hub.publish("beta", json!({"data": "b6"})).await;
    let live = log_row(page, "beta", &b6).await;
    assert_eq!(
        live["replay"], false,
        "a live event marked as replay: {live}"
    );
    assert_eq!(
        log_ids(page).await,
        vec![
            ("beta".to_owned(), ids[3].clone()),
            ("beta".to_owned(), ids[4].clone()),
            ("beta".to_owned(), b6.clone()),
        ]
    );

    // From b1: b2 left the window (3 events: b4..b6), so the stream starts with sse-reset.
    click(page, "log-clear").await;
    follow(page, "beta", &ids[0]).await;
    let reset = page
        .wait_for("(() => { const r = document.querySelector('#log-rows tr.reset'); return r && r.cells[4].textContent; })()")
        .await;
    let reset: Value = serde_json::from_str(reset.as_str().unwrap()).unwrap();
    assert_eq!(
        reset,
        json!({"reason": "expired", "lastEventId": ids[0], "oldest": ids[3]})
    );
    log_row(page, "beta", &b6).await;
    let types = page
        .eval("[...document.querySelectorAll('#log-rows tr.event')].reverse().map(r => r.dataset.type)")
        .await;
    assert_eq!(types, json!(["sse-reset", "message", "message", "message"]));

    // An id this hub never issued: sse-reset with reason "unknown".
    follow(page, "gamma", "not-an-id").await;
    let unknown = page
        .wait_for("(() => { const r = document.querySelector('#log-rows tr.reset[data-channel=\"gamma\"]'); return r && r.cells[4].textContent; })()")
        .await;
    let unknown: Value = serde_json::from_str(unknown.as_str().unwrap()).unwrap();
    assert_eq!(unknown["reason"], "unknown");
    assert_eq!(unknown["lastEventId"], "not-an-id");
    page.screenshot("resume").await;
    assert!(page.errors.is_empty(), "page errors: {:?}", page.errors);
}

/// The publish form sends data, event type and id with the token in the Authorization header; the
/// token lives in sessionStorage (it survives a reload of the tab) and never appears in a URL.
#[tokio::test]
async fn console_publishes_and_keeps_the_token_out_of_urls() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let hub = start_hub(&[]).await;
    let mut browser = Browser::launch(&chromium).await;
    let page = &mut browser.page;
    page.open(&hub.url("/")).await;
    follow(page, "news", "").await;
    wait_open(page, "news").await;

    // A wrong token: the hub's error is shown, nothing is published.
    type_into(page, "token", "wrong-token").await;
    type_into(page, "pub-channel", "news").await;
    type_into(page, "pub-data", "refused").await;
    click(page, "pub-btn").await;
    let refused = page
        .wait_for("document.getElementById('pub-result').className === 'err' && document.getElementById('pub-result').textContent")
        .await;
    assert!(refused.as_str().unwrap().starts_with("401"), "{refused}");

    type_into(page, "token", TOKEN).await;
    type_into(page, "pub-event", "headline").await;
    type_into(page, "pub-id", "n-1").await;
    type_into(page, "pub-data", "hello\nworld").await;
    click(page, "pub-btn").await;
    let published = page
        .wait_for("document.getElementById('pub-result').className === 'ok' && document.getElementById('pub-result').dataset.id")
        .await;
    assert_eq!(published, "n-1");
    let row = log_row(page, "news", "n-1").await;
    assert_eq!(
        (row["type"].as_str(), row["data"].as_str()),
        (Some("headline"), Some("hello\nworld"))
    );
    // The hub really has it: a resume from before sees it replayed (here: the replay window).
    let mut reader = Reader::open(&client(), &hub.url("/events/news"), Some("0-0")).await;
    let first = reader.message().await.unwrap();
    assert_eq!(first.event_type, "sse-reset");
    let replayed = reader.message().await.unwrap();
    assert_eq!(
        (replayed.data.as_str(), replayed.last_event_id.as_str()),
        ("hello\nworld", "n-1")
    );
    drop(reader);

    assert_eq!(
        page.eval("sessionStorage.getItem('sse-console-token')")
            .await,
        TOKEN
    );
    page.screenshot("publish").await;

    // A reload of the tab keeps the token and the follows (sessionStorage), not the URL.
    page.call("Page.reload", json!({})).await;
    page.wait_for(&format!(
        "document.readyState === 'complete' && document.getElementById('token').value === {}",
        js(TOKEN)
    ))
    .await;
    wait_open(page, "news").await;
    let href = page.eval("location.href").await;
    assert_eq!(href, hub.url("/"));
    assert!(
        page.requests.iter().any(|u| u.contains("/events/news")),
        "requests not recorded: {:?}",
        page.requests
    );
    for url in &page.requests {
        assert!(
            !url.contains(TOKEN) && !url.contains("wrong-token"),
            "the token leaked into a URL: {url}"
        );
    }
    // Forgetting it removes it from the tab.
    click(page, "token-forget").await;
    assert_eq!(
        page.eval("sessionStorage.getItem('sse-console-token')")
            .await,
        Value::Null
    );
    assert!(page.errors.is_empty(), "page errors: {:?}", page.errors);
}

/// `chromium --headless --screenshot URL` (and `--dump-dom`, with a virtual time budget) finish on the
/// console as is: it opens no stream until the user follows something.
#[tokio::test]
async fn headless_screenshot_and_dump_dom_of_the_console_finish() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let hub = start_hub(&[]).await;
    hub.publish("alpha", json!({"data": "one"})).await;
    let shot = target_dir().join("console-headless.png");
    let _ = std::fs::remove_file(&shot);
    for mode in [
        format!("--screenshot={}", shot.display()),
        "--dump-dom".to_owned(),
    ] {
        let profile = TempDir::new("oneshot");
        let output = tokio::time::timeout(
            Duration::from_secs(90),
            Command::new(&chromium)
                .args(chromium_args(&profile.0))
                .args(["--virtual-time-budget=5000", &mode, &hub.url("/")])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("chromium {mode} did not finish: the page never settles"))
        .unwrap();
        assert!(
            output.status.success(),
            "chromium {mode}: {:?}",
            output.status
        );
        if mode == "--dump-dom" {
            let dom = String::from_utf8_lossy(&output.stdout);
            assert!(
                dom.contains(r#"<tr data-channel="alpha">"#),
                "channels not rendered:\n{dom}"
            );
        }
    }
    let png = std::fs::read(&shot).expect("no screenshot written");
    assert!(png.starts_with(b"\x89PNG"));
}

/// The console is plain files in the binary with nothing from elsewhere; `--no-demo` turns it off.
#[tokio::test]
async fn console_is_self_contained_and_no_demo_turns_it_off() {
    let hub = start_hub(&[]).await;
    let resp = client().get(hub.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = resp.text().await.unwrap();
    for external in [
        "http://",
        "https://",
        "<script src",
        "<link",
        "@import",
        "url(",
    ] {
        assert!(!page.contains(external), "the console refers to {external}");
    }
    assert!(page.contains("<style>") && page.contains("new EventSource("));
    let off = start_hub(&["--no-demo"]).await;
    for path in ["/", "/index.html"] {
        let resp = client().get(off.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path} with --no-demo");
    }
    let resp = client().get(off.url("/channels")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the API stays on with --no-demo");
}
